//! coffer_repository: bucket, config object with a wrapped master key,
//! catalog entry; passwords (sensitive and write-only), KMS, Object Lock.

use coffer_repository::{Encryption, RepositoryConfig};
use serde_json::json;

use super::{planned_actions, provider, state_of};
use crate::support::aws::{Aws, CATALOG_BUCKET};
use crate::support::terraform::Terraform;
use crate::support::{Moto, Workdir, block_on, provider_binary, terraform_versions};

const ADDRESS: &str = "coffer_repository.main";
const BUCKET: &str = "coffer-acc-repo";

fn repository(password: &str, team: &str) -> String {
    format!(
        r#"
resource "coffer_repository" "main" {{
  name          = "main"
  bucket        = "{BUCKET}"
  prefix        = "backups"
  create_bucket = true
  force_destroy = true
  encryption {{
    password = "{password}"
  }}
  tags = {{ Team = "{team}" }}
}}
"#
    )
}

fn config_of(aws: &Aws) -> RepositoryConfig {
    serde_json::from_slice(&aws.get(BUCKET, "backups/config").expect("config object")).unwrap()
}

fn config_tags(aws: &Aws) -> serde_json::Value {
    let out = block_on(aws.s3.get_object_tagging().bucket(BUCKET).key("backups/config").send()).unwrap();
    let tags: serde_json::Map<String, serde_json::Value> =
        out.tag_set().iter().map(|t| (t.key().to_string(), json!(t.value()))).collect();
    serde_json::Value::Object(tags)
}

fn lifecycle(tf: &Terraform) {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let wd = Workdir::new(tf, &provider_binary());
    wd.write("main.tf", &(provider(&moto) + &repository("correct horse battery", "a")));
    wd.init();

    // Create: bucket, config object that opens with the password, catalog entry.
    wd.apply();
    let state = state_of(&wd, ADDRESS);
    let id = state["id"].as_str().unwrap().to_string();
    let config = config_of(&aws);
    assert_eq!(config.id, id);
    assert_eq!(config.format_version, 1);
    assert_eq!(state["format_version"], 1);
    assert_eq!(config.key.kind(), Encryption::Password);
    assert!(config.open_with_password("correct horse battery").is_ok());
    assert!(config.open_with_password("wrong password").is_err());
    assert!(aws.versioning_enabled(BUCKET), "a created bucket is versioned");
    // ... so what prune deletes must expire, or it stays billed for ever;
    // and a killed backup's unfinished multipart upload must be aborted.
    let rules = block_on(aws.s3.get_bucket_lifecycle_configuration().bucket(BUCKET).send()).unwrap().rules;
    let rules: Vec<String> = rules
        .unwrap_or_default()
        .iter()
        .map(|r| {
            format!(
                "{}: noncurrent days {:?}, delete markers {:?}, abort uploads after {:?}",
                r.id().unwrap_or_default(),
                r.noncurrent_version_expiration().and_then(|n| n.noncurrent_days()),
                r.expiration().and_then(|e| e.expired_object_delete_marker()),
                r.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            "coffer-expire-pruned-versions: noncurrent days Some(7), delete markers Some(true), abort uploads after None",
            "coffer-abort-incomplete-uploads: noncurrent days None, delete markers None, abort uploads after Some(1)",
        ]
    );
    let entry = aws.get_json(CATALOG_BUCKET, &format!("repositories/{id}.json")).expect("catalog entry");
    assert_eq!(entry["bucket"], BUCKET);
    assert_eq!(entry["storage_class"], "STANDARD");
    let raw_config = String::from_utf8(aws.get(BUCKET, "backups/config").unwrap()).unwrap();
    assert!(!raw_config.contains("correct horse"), "the password never reaches S3");
    wd.assert_no_changes();

    // Import by location and by id into fresh states. The password cannot be
    // read back, so the first apply after import checks it (a wrong one is
    // refused at plan time) and changes nothing remote.
    for import_id in [format!("s3://{BUCKET}/backups"), id.clone()] {
        let imported = wd.fresh_state_copy();
        imported.init();
        imported.import(ADDRESS, &import_id);
        assert_eq!(state_of(&imported, ADDRESS)["id"], id.as_str());
        imported.write("main.tf", &(provider(&moto) + &repository("not the password", "a")));
        let error = imported.try_plan().expect_err("a wrong password must fail the plan");
        let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(error.contains("encryption.password does not open repository"), "{error}");
        imported.write("main.tf", &(provider(&moto) + &repository("correct horse battery", "a")));
        imported.apply();
        imported.assert_no_changes();
        assert_eq!(config_of(&aws), config, "import and its first apply change nothing in S3");
    }

    // Tags and the password change in place; the master key stays the same.
    let master = config.open_with_password("correct horse battery").unwrap();
    wd.write("main.tf", &(provider(&moto) + &repository("a new passphrase", "b")));
    assert_eq!(planned_actions(&wd, ADDRESS), json!(["update"]));
    wd.apply();
    let rewrapped = config_of(&aws);
    assert!(rewrapped.open_with_password("correct horse battery").is_err(), "the old password is retired");
    assert_eq!(rewrapped.open_with_password("a new passphrase").unwrap(), master, "same master key, re-wrapped");
    assert_eq!(config_tags(&aws), json!({ "Owner": "platform", "Team": "b" }));
    wd.assert_no_changes();

    // Tags changed out of band: shown and healed in place.
    block_on(
        aws.s3
            .put_object_tagging()
            .bucket(BUCKET)
            .key("backups/config")
            .tagging(
                aws_sdk_s3::types::Tagging::builder()
                    .tag_set(aws_sdk_s3::types::Tag::builder().key("Team").value("by-hand").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send(),
    )
    .unwrap();
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    assert!(output.contains(r#""by-hand" -> "b""#), "{output}");
    assert_eq!(planned_actions(&wd, ADDRESS), json!(["update"]));
    wd.apply();
    assert_eq!(config_tags(&aws), json!({ "Owner": "platform", "Team": "b" }));
    wd.assert_no_changes();

    // Catalog entry deleted out of band (policies could no longer find the
    // repository): shown, and written again in place.
    let entry_key = format!("repositories/{id}.json");
    aws.delete(CATALOG_BUCKET, &entry_key);
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    assert_eq!(planned_actions(&wd, ADDRESS), json!(["update"]));
    wd.apply();
    assert_eq!(aws.get_json(CATALOG_BUCKET, &entry_key).expect("entry written again")["name"], "main");
    wd.assert_no_changes();

    // Config object deleted out of band: the plan re-creates the repository.
    aws.delete(BUCKET, "backups/config");
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("will be created"), "{output}");
    wd.apply();
    let recreated = state_of(&wd, ADDRESS)["id"].as_str().unwrap().to_string();
    assert_ne!(recreated, id, "a new repository, with a new id");
    wd.assert_no_changes();

    // Destroy with force_destroy: the repository's objects and the bucket go.
    aws.put(BUCKET, "backups/data/00/0000", b"pack".to_vec());
    wd.destroy();
    assert!(!aws.bucket_exists(BUCKET), "force_destroy removes a bucket Coffer created");
    assert!(aws.get(CATALOG_BUCKET, &format!("repositories/{recreated}.json")).is_none());
}

#[test]
fn repository_lifecycle_on_every_terraform() {
    for tf in terraform_versions() {
        lifecycle(&tf);
    }
}

/// Without force_destroy, destroy forgets the repository and keeps its data;
/// a second repository at the same place is refused with a hint to import.
#[test]
fn destroy_keeps_data_and_an_initialized_place_is_not_overwritten() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    block_on(aws.s3.create_bucket().bucket("adopted").send()).unwrap();
    let tf = crate::support::terraform::oldest_terraform();
    let wd = Workdir::new(&tf, &provider_binary());
    let adopted = r#"
resource "coffer_repository" "main" {
  name   = "adopted"
  bucket = "adopted"
  encryption {
    password = "long enough password"
  }
}
"#;
    wd.write("main.tf", &(provider(&moto) + adopted));
    wd.init();
    wd.apply();
    let config = aws.get(BUCKET_ADOPTED, "config").expect("config at the bucket root");
    wd.destroy();
    assert_eq!(aws.get(BUCKET_ADOPTED, "config"), Some(config), "destroy keeps the repository's data");
    assert!(aws.bucket_exists(BUCKET_ADOPTED));

    let error = wd.try_apply().expect_err("the place holds a repository");
    let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(error.contains("already holds a Coffer repository"), "{error}");
    assert!(error.contains("terraform import coffer_repository.<address> s3://adopted/"), "{error}");
}

const BUCKET_ADOPTED: &str = "adopted";

#[test]
fn kms_and_object_lock() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let key = aws.kms_key();
    block_on(aws.s3.create_bucket().bucket("no-lock").send()).unwrap();
    let tf = crate::support::terraform::oldest_terraform();
    let wd = Workdir::new(&tf, &provider_binary());
    let locked = format!(
        r#"
resource "coffer_repository" "locked" {{
  name          = "locked"
  bucket        = "coffer-locked"
  create_bucket = true
  encryption {{
    kms_key_arn = "{key}"
  }}
  immutability {{
    days = 30
    mode = "GOVERNANCE"
  }}
}}
"#
    );
    wd.write("main.tf", &(provider(&moto) + &locked));
    wd.init();
    wd.apply();
    let config: RepositoryConfig = serde_json::from_slice(&aws.get("coffer-locked", "config").unwrap()).unwrap();
    assert_eq!(config.key.kind(), Encryption::Kms);
    assert_eq!(config.immutability.as_ref().map(|i| i.days), Some(30));
    let lock = block_on(aws.s3.get_object_lock_configuration().bucket("coffer-locked").send()).unwrap();
    let rule = lock.object_lock_configuration().unwrap().rule().unwrap().default_retention().unwrap();
    assert_eq!(rule.days(), Some(30));
    assert_eq!(rule.mode().map(|m| m.as_str()), Some("GOVERNANCE"));
    wd.assert_no_changes();

    // An adopted bucket without Object Lock: a clear error, nothing written.
    let unlocked = r#"
resource "coffer_repository" "unlocked" {
  name   = "unlocked"
  bucket = "no-lock"
  encryption {
    password = "long enough password"
  }
  immutability {
    days = 7
    mode = "COMPLIANCE"
  }
}
"#;
    wd.write("main.tf", &(provider(&moto) + &locked + unlocked));
    let error = wd.try_apply().expect_err("no Object Lock on the bucket");
    let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(error.contains("bucket no-lock does not have it enabled"), "{error}");
    assert!(aws.get("no-lock", "config").is_none(), "nothing half-written");
}

/// Terraform 1.11+ keeps `password_wo` out of plan and state; older
/// Terraform is told to use `password`.
#[test]
fn write_only_password() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let with_wo = |version: u32| {
        format!(
            r#"
resource "coffer_repository" "wo" {{
  name          = "wo"
  bucket        = "coffer-wo"
  create_bucket = true
  encryption {{
    password_wo         = "write only secret"
    password_wo_version = {version}
  }}
}}
"#
        )
    };
    for tf in terraform_versions() {
        moto.reset();
        let wd = Workdir::new(&tf, &provider_binary());
        wd.write("main.tf", &(provider(&moto) + &with_wo(1)));
        wd.init();
        if !tf.at_least(1, 11) {
            let error = wd.try_plan().expect_err("write-only needs Terraform 1.11");
            let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(error.contains("Write-only attribute needs Terraform 1.11 or later"), "{error}");
            assert!(!aws.bucket_exists("coffer-wo"), "nothing created by a failed plan");
            continue;
        }
        // (The plan's `configuration` section echoes the HCL as written;
        // what Terraform plans and stores is what must lack the secret.)
        let plan = wd.plan_json();
        for section in ["planned_values", "resource_changes", "prior_state"] {
            assert!(!plan[section].to_string().contains("write only secret"), "the plan's {section} holds it");
        }
        wd.apply();
        let state = wd.state_json();
        assert!(!state.to_string().contains("write only secret"), "the state never holds it");
        let raw_state = std::fs::read_to_string(wd.path().join("terraform.tfstate")).unwrap();
        assert!(!raw_state.contains("write only secret"));
        let config: RepositoryConfig = serde_json::from_slice(&aws.get("coffer-wo", "config").unwrap()).unwrap();
        assert!(config.open_with_password("write only secret").is_ok());
        wd.assert_no_changes();
        // A version bump with a password that does not open it: refused at plan.
        wd.write("main.tf", &(provider(&moto) + &with_wo(2).replace("write only secret", "another secret")));
        let error = wd.try_plan().expect_err("wrong write-only password");
        let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(error.contains("encryption.password_wo does not open repository"), "{error}");
        wd.write("main.tf", &(provider(&moto) + &with_wo(2)));
        wd.apply();
        wd.assert_no_changes();
        wd.destroy();
    }
}

/// Issue 21, defect 3: when the answer to the config object's create-only
/// write was lost, the SDK's retry met the object that very apply wrote and
/// the apply failed ("already holds a Coffer repository … Import it"), as
/// did every apply after it. Now the write is read back and recognised.
#[test]
fn an_apply_whose_config_write_lost_its_response_succeeds() {
    use crate::support::fault_proxy::{Fault, FaultProxy, Rule};
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let proxy = FaultProxy::start(&moto);
    let lost = proxy.add(
        Rule::new(Fault::DropResponse)
            .method("PUT")
            .path_contains("/backups/config")
            .with_header("if-none-match")
            .times(1),
    );
    let tf = terraform_versions().into_iter().next().expect("a terraform");
    let wd = Workdir::new(&tf, &provider_binary());
    let through_proxy = provider(&moto).replace(&moto.endpoint, &proxy.endpoint);
    wd.write("main.tf", &(through_proxy + &repository("correct horse battery", "a")));
    wd.init();
    wd.apply();
    assert_eq!(proxy.injected(lost), 1, "the fault was not injected");
    assert_eq!(state_of(&wd, ADDRESS)["id"].as_str().unwrap(), config_of(&aws).id);
    wd.assert_no_changes();
}

/// `worker_kms_key_arn` gives a password repository a second envelope of its master key,
/// wrapped by KMS: a worker without the password opens it, and the envelope follows the
/// argument (made at create, added, removed).
#[test]
fn workers_open_a_password_repository_with_its_kms_envelope() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let key = aws.kms_key();
    let born_with = format!(
        r#"
resource "coffer_repository" "born" {{
  name               = "born"
  bucket             = "coffer-born"
  create_bucket      = true
  force_destroy      = true
  worker_kms_key_arn = "{key}"
  encryption {{
    password = "long enough password"
  }}
}}
"#
    );
    let tf = crate::support::terraform::oldest_terraform();
    let wd = Workdir::new(&tf, &provider_binary());
    wd.write("main.tf", &(provider(&moto) + &repository("correct horse battery", "a") + &born_with));
    wd.init();
    wd.apply();
    assert!(config_of(&aws).worker_key.is_none(), "no envelope unless asked for");
    let born: RepositoryConfig = serde_json::from_slice(&aws.get("coffer-born", "config").unwrap()).unwrap();
    assert_eq!(born.worker_key.as_ref().map(|k| k.kms_key_arn.as_str()), Some(key.as_str()));
    assert_eq!(state_of(&wd, "coffer_repository.born")["worker_kms_key_arn"], key.as_str());
    let dir = tempfile::tempdir().unwrap();
    // What a worker does: no password in its settings, the envelope opened with KMS.
    let worker_opens = |config: &RepositoryConfig| {
        block_on(async {
            let executor = crate::support::estate::executor(&moto, dir.path(), 1).await;
            executor.repository_key(config).await.map_err(|e| e.to_string())
        })
    };
    assert_eq!(
        worker_opens(&born).unwrap(),
        born.open_with_password("long enough password").unwrap(),
        "the envelope holds the repository's own master key"
    );
    let without = worker_opens(&config_of(&aws)).unwrap_err();
    assert!(
        without.contains("set COFFER_REPOSITORY_PASSWORD, or worker_kms_key_arn on its coffer_repository"),
        "{without}"
    );
    wd.assert_no_changes();

    // Added to an existing repository: the same master key, wrapped for workers.
    let with_key = repository("correct horse battery", "a")
        .replace("  encryption {", &format!("  worker_kms_key_arn = \"{key}\"\n  encryption {{"));
    wd.write("main.tf", &(provider(&moto) + &with_key + &born_with));
    assert_eq!(planned_actions(&wd, ADDRESS), json!(["update"]));
    wd.apply();
    let config = config_of(&aws);
    assert_eq!(worker_opens(&config).unwrap(), config.open_with_password("correct horse battery").unwrap());
    assert!(!aws.get(BUCKET, "backups/config").unwrap().windows(7).any(|w| w == b"correct"));
    wd.assert_no_changes();

    // The envelope cannot stand in for the main one: KMS refuses it under the main binding.
    let mut swapped = config.clone();
    if let Some(worker) = &config.worker_key {
        swapped.key = coffer_repository::KeyEnvelope::Kms {
            kms_key_arn: worker.kms_key_arn.clone(),
            wrapped_master_key: worker.wrapped_master_key.clone(),
        };
    }
    swapped.worker_key = None;
    assert!(worker_opens(&swapped).is_err(), "the worker envelope is bound to its own context");

    // Removed: the envelope goes, the password still opens it.
    wd.write("main.tf", &(provider(&moto) + &repository("correct horse battery", "a") + &born_with));
    wd.apply();
    let config = config_of(&aws);
    assert!(config.worker_key.is_none());
    assert!(config.open_with_password("correct horse battery").is_ok());
    wd.assert_no_changes();

    // On a KMS repository it is refused at plan, naming the attribute.
    let kms_with_worker_key = format!(
        r#"
resource "coffer_repository" "kms" {{
  name               = "kms"
  bucket             = "coffer-kms"
  create_bucket      = true
  worker_kms_key_arn = "{key}"
  encryption {{
    kms_key_arn = "{key}"
  }}
}}
"#
    );
    wd.write("main.tf", &(provider(&moto) + &kms_with_worker_key));
    let error = wd.try_plan().expect_err("worker_kms_key_arn on a KMS repository");
    let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(error.contains("worker_kms_key_arn is for password repositories"), "{error}");
}
