//! examples/multi-account: one module applied to two accounts through
//! provider aliases with assume_role. moto lets AssumeRole into
//! `arn:aws:iam::<account>:role/…` act as that account, so each account's
//! objects can be looked for where they belong, and not elsewhere.

use crate::docs_and_examples::copy_configuration;
use crate::support::aws::{ACCOUNT, assumed_config, kms_key_of};
use crate::support::terraform::oldest_terraform;
use crate::support::tools::repo_root;
use crate::support::{Moto, Workdir, block_on, provider_binary, terraform_versions};

/// SDK clients acting in `account` through the example's role.
struct Account {
    s3: aws_sdk_s3::Client,
    scheduler: aws_sdk_scheduler::Client,
    ec2: aws_sdk_ec2::Client,
}

impl Account {
    fn assume(moto: &Moto, account: &str) -> Self {
        let config = if account == ACCOUNT {
            block_on(moto.sdk_config("us-east-1"))
        } else {
            assumed_config(moto, &format!("arn:aws:iam::{account}:role/coffer"), "us-east-1")
        };
        Self {
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
            ),
            scheduler: aws_sdk_scheduler::Client::new(&config),
            ec2: aws_sdk_ec2::Client::new(&config),
        }
    }

    fn buckets(&self) -> Vec<String> {
        let out = block_on(self.s3.list_buckets().send()).unwrap();
        out.buckets().iter().filter_map(|b| b.name().map(str::to_string)).collect()
    }

    fn has_object(&self, bucket: &str, key: &str) -> bool {
        block_on(self.s3.head_object().bucket(bucket).key(key).send()).is_ok()
    }

    fn schedules(&self) -> Vec<String> {
        match block_on(self.scheduler.list_schedules().group_name("coffer").send()) {
            Ok(out) => out.schedules().iter().filter_map(|s| s.arn().map(str::to_string)).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn launch_templates(&self) -> Vec<String> {
        let out = block_on(self.ec2.describe_launch_templates().send()).unwrap();
        out.launch_templates().iter().filter_map(|t| t.launch_template_name().map(str::to_string)).collect()
    }
}

fn apply_and_destroy(tf: &crate::support::Terraform) {
    let moto = Moto::start();
    let mut wd = Workdir::new(tf, &provider_binary());
    copy_configuration(&repo_root().join("examples/multi-account"), wd.path());
    wd.set_env("TF_VAR_endpoint_url", &moto.endpoint);
    // Each account's workers open its repository with a key of that account.
    let keys = serde_json::json!({
        "account_a": kms_key_of(&moto, "arn:aws:iam::111111111111:role/coffer", "us-east-1"),
        "account_b": kms_key_of(&moto, "arn:aws:iam::222222222222:role/coffer", "us-east-1"),
    });
    wd.set_env("TF_VAR_worker_kms_key_arns", &keys.to_string());
    wd.init();
    wd.apply();
    wd.assert_no_changes();

    let outputs = wd.output_json();
    for (output, account) in [("account_a", "111111111111"), ("account_b", "222222222222")] {
        let owner = Account::assume(&moto, account);
        let catalog = format!("coffer-catalog-{account}-us-east-1");
        let buckets = owner.buckets();
        assert!(buckets.contains(&catalog), "{account} owns its catalog: {buckets:?}");
        assert!(
            buckets.contains(&format!("coffer-repo-{account}")),
            "{account} owns its repository bucket: {buckets:?}"
        );
        assert!(owner.has_object(&catalog, "policies/baseline.json"), "the policy is in {account}'s catalog");
        assert!(owner.has_object(&catalog, "region-mappings/use1-to-euw1.json"));
        let schedules = owner.schedules();
        assert_eq!(schedules.len(), 1, "{account}: {schedules:?}");
        assert!(schedules[0].contains(&format!(":{account}:schedule/coffer/coffer-baseline-daily")), "{schedules:?}");
        assert!(owner.launch_templates().contains(&"coffer-home".to_string()));
        let arns = outputs[output]["value"].to_string();
        assert!(arns.contains(&format!(":{account}:schedule/")), "{output} output names {account}: {arns}");
    }
    // Nothing landed in the account the credentials started in.
    let origin = Account::assume(&moto, ACCOUNT);
    assert!(origin.schedules().is_empty(), "no schedules in {ACCOUNT}");
    assert!(origin.launch_templates().is_empty(), "no launch templates in {ACCOUNT}");
    assert!(!origin.buckets().iter().any(|b| b.contains(ACCOUNT)), "no catalog in {ACCOUNT}");

    wd.destroy();
    for account in ["111111111111", "222222222222"] {
        let owner = Account::assume(&moto, account);
        assert!(owner.schedules().is_empty(), "{account}: schedules left after destroy");
        assert!(owner.launch_templates().is_empty(), "{account}: launch templates left after destroy");
        let catalog = format!("coffer-catalog-{account}-us-east-1");
        assert!(!owner.has_object(&catalog, "policies/baseline.json"), "{account}: policy document left");
    }
}

#[test]
fn multi_account_example_applies_and_destroys_cleanly() {
    let versions = terraform_versions();
    // The example is plain HCL; the oldest Terraform is the stricter reader.
    let tf = versions.into_iter().next().unwrap_or_else(oldest_terraform);
    apply_and_destroy(&tf);
}
