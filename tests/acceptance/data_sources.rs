//! coffer_restore_points, coffer_sessions and coffer_protection read
//! through real terraform after a run of the executor.

use chrono::Utc;
use coffer_executor::run::{Quiet, RunRequest};

use super::provider;
use crate::executor::{count, policy, put_mapping, put_policy, rule};
use crate::support::estate::{db_instance, executor, instance, tags};
use crate::support::{Moto, Workdir, block_on, provider_binary, terraform_versions};

const DATA_SOURCES: &str = r#"
data "coffer_restore_points" "web" {
  policy = "web"
}

data "coffer_restore_points" "replicas" {
  policy = "web"
  kind   = "replica"
}

data "coffer_sessions" "web" {
  policy = "web"
  limit  = 5
}

data "coffer_protection" "web" {
  policy = "web"
}

output "points" { value = data.coffer_restore_points.web.restore_points }
output "replicas" { value = data.coffer_restore_points.replicas.restore_points }
output "sessions" { value = data.coffer_sessions.web.sessions }
output "protection" { value = data.coffer_protection.web.resources }
output "all_rules_met" { value = data.coffer_protection.web.all_rules_met }

data "coffer_protection" "dbs" {
  policy = "dbs"
}

output "db_protection" { value = data.coffer_protection.dbs.resources }
"#;

#[test]
fn data_sources_show_points_sessions_and_protection_after_a_run() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let (protected, run_id, newcomer) = block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        let protected = instance(&ec2, &tags(&[("Backup", "daily")]), 1, None).await;
        let executor = executor(&moto, dir.path(), 4).await;
        put_mapping(&executor, "use1-to-euw1", "us-east-1", "eu-west-1", None, "encrypted_only").await;
        let rules = vec![rule("daily", "0 2 * * *", Some(count(7)), Some((&["use1-to-euw1"][..], count(3))))];
        put_policy(&executor, &policy("web", "ec2", &["us-east-1"], &[("Backup", "daily")], rules)).await;
        let session = executor
            .run(RunRequest { policy: "web".into(), rules: vec![], run_id: None, time: Utc::now() }, &Quiet)
            .await
            .unwrap();
        // Tagged after the run: in scope, but no restore point yet.
        let newcomer = instance(&ec2, &tags(&[("Backup", "daily")]), 0, None).await;

        // RDS identifiers are unique per region only: the eu-west-1
        // orders-db, made after the run, must not borrow the us-east-1
        // one's restore point.
        let rds = aws_sdk_rds::Client::new(&moto.sdk_config("us-east-1").await);
        db_instance(&rds, "orders-db", &tags(&[("Backup", "db")])).await;
        let rules = vec![rule("nightly", "0 1 * * *", Some(count(7)), None)];
        put_policy(&executor, &policy("dbs", "rds", &["us-east-1", "eu-west-1"], &[("Backup", "db")], rules)).await;
        executor
            .run(RunRequest { policy: "dbs".into(), rules: vec![], run_id: None, time: Utc::now() }, &Quiet)
            .await
            .unwrap();
        let rds_eu = aws_sdk_rds::Client::new(&moto.sdk_config("eu-west-1").await);
        db_instance(&rds_eu, "orders-db", &tags(&[("Backup", "db")])).await;
        (protected, session.run_id, newcomer)
    });

    for tf in terraform_versions() {
        let wd = Workdir::new(&tf, &provider_binary());
        wd.write("main.tf", &(provider(&moto) + DATA_SOURCES));
        wd.init();
        wd.apply();
        let outputs = wd.output_json();

        let points = outputs["points"]["value"].as_array().unwrap();
        assert_eq!(points.len(), 2, "a snapshot point and a replica point: {points:#?}");
        let snapshot = points.iter().find(|p| p["kind"] == "snapshot").unwrap();
        assert_eq!(snapshot["resource_id"], protected.as_str());
        assert_eq!(snapshot["run_id"], run_id.as_str());
        assert_eq!(snapshot["rules"], serde_json::json!(["daily"]));
        assert_eq!(snapshot["complete"], true);
        assert_eq!(snapshot["snapshot_ids"].as_array().unwrap().len(), 2, "one per volume");
        let replicas = outputs["replicas"]["value"].as_array().unwrap();
        assert_eq!(replicas.len(), 1);
        assert_eq!(replicas[0]["region"], "eu-west-1");
        assert_eq!(replicas[0]["region_mapping_id"], "use1-to-euw1");

        let sessions = outputs["sessions"]["value"].as_array().unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0]["outcome"], "Success");
        assert_eq!(sessions[0]["resources"][0]["id"], protected.as_str());
        assert_eq!(
            sessions[0]["resources"][0]["snapshot_ids"].as_array().unwrap().len(),
            4,
            "2 snapshots + 2 replicas"
        );

        let protection = outputs["protection"]["value"].as_array().unwrap();
        let row = |id: &str| protection.iter().find(|r| r["id"] == id).unwrap().clone();
        assert_eq!(row(&protected)["rules_met"], true);
        assert_eq!(row(&protected)["last_run_id"], run_id.as_str());
        assert_eq!(row(&newcomer)["rules_met"], false);
        assert_eq!(row(&newcomer)["unmet_rules"], serde_json::json!(["daily"]));
        assert!(row(&newcomer)["last_restore_point_at"].is_null());
        assert_eq!(outputs["all_rules_met"]["value"], false);

        let dbs = outputs["db_protection"]["value"].as_array().unwrap();
        let db = |region: &str| dbs.iter().find(|r| r["region"] == region && r["id"] == "orders-db").unwrap().clone();
        assert_eq!(db("us-east-1")["rules_met"], true, "{dbs:#?}");
        assert_eq!(db("eu-west-1")["rules_met"], false, "{dbs:#?}");
        assert_eq!(db("eu-west-1")["restore_points"], 0);
    }
}

#[test]
fn an_unknown_policy_is_a_clear_error() {
    let moto = Moto::start();
    let tf = terraform_versions().pop().unwrap();
    let wd = Workdir::new(&tf, &provider_binary());
    wd.write("main.tf", &(provider(&moto) + "data \"coffer_sessions\" \"x\" {\n  policy = \"nope\"\n  limit = 0\n}\n"));
    wd.init();
    let error = wd.try_apply().unwrap_err();
    assert!(error.contains("limit must be between 1 and 1000, got 0"), "{error}");
    wd.write("main.tf", &(provider(&moto) + "data \"coffer_protection\" \"x\" {\n  policy = \"nope\"\n}\n"));
    let error = wd.try_apply().unwrap_err();
    assert!(error.contains("backup policy nope is not in the catalog"), "{error}");
}

/// What `coffer_iam_policy` gives for cross-account copies, read by Terraform: key policy
/// statements naming the target roles (as a JSON string, to merge with `jsondecode`), and
/// null when there is no role to name.
#[test]
fn the_iam_policy_gives_source_key_statements_for_the_target_roles() {
    let moto = Moto::start();
    let tf = crate::support::terraform::oldest_terraform();
    let wd = Workdir::new(&tf, &provider_binary());
    let config = r#"
data "coffer_iam_policy" "dr" {
  features         = ["ec2", "replicate", "kms", "cross_account"]
  target_role_arns = ["arn:aws:iam::222222222222:role/coffer-copy"]
}

data "coffer_iam_policy" "no_roles" {
  features = ["ec2", "replicate", "kms", "cross_account"]
}

output "statements" {
  value = jsondecode(data.coffer_iam_policy.dr.source_key_policy_statements_json)
}

output "without_roles" {
  value = data.coffer_iam_policy.no_roles.source_key_policy_statements_json
}

output "mapping_key_statements" {
  value = jsondecode(data.coffer_iam_policy.no_roles.target_key_policy_statements_json)
}
"#;
    wd.write("main.tf", &(provider(&moto) + config));
    wd.init();
    wd.apply();
    let outputs = wd.output_json();
    let statements = outputs["statements"]["value"].as_array().expect("a list of statements").clone();
    assert_eq!(statements.len(), 2, "{statements:#?}");
    for statement in &statements {
        assert_eq!(statement["Principal"]["AWS"], "arn:aws:iam::222222222222:role/coffer-copy");
    }
    assert!(statements[0]["Action"].as_array().unwrap().iter().any(|a| a == "kms:Decrypt"));
    assert_eq!(statements[1]["Condition"]["Bool"]["kms:GrantIsForAWSResource"], "true");
    assert!(outputs["without_roles"]["value"].is_null(), "{outputs:#?}");
    // The mapping keys let this (moto's) account make staging copies, roles or not.
    let mapping_key = outputs["mapping_key_statements"]["value"].as_array().expect("statements").clone();
    assert_eq!(mapping_key[0]["Principal"]["AWS"], "arn:aws:iam::123456789012:root", "{mapping_key:#?}");
    assert!(mapping_key[0]["Action"].as_array().unwrap().iter().any(|a| a == "kms:Encrypt"));
}
