//! coffer_region_mapping: a catalog document, written conditionally.

use serde_json::json;

use super::{planned_actions, provider, state_of};
use crate::support::aws::{Aws, CATALOG_BUCKET, kms_key_of};
use crate::support::terraform::Terraform;
use crate::support::{Moto, Workdir, provider_binary, terraform_versions};

const ADDRESS: &str = "coffer_region_mapping.dr";
const KEY: &str = "region-mappings/dr.json";

const TARGET_ROLE: &str = "arn:aws:iam::222222222222:role/coffer-copy";

fn mapping(target: &str, key: &str, encrypt: &str) -> String {
    format!(
        r#"
resource "coffer_region_mapping" "dr" {{
  name            = "dr"
  source_region   = "us-east-1"
  target_region   = "{target}"
  target_role_arn = "{TARGET_ROLE}"
  kms_key_arn     = "{key}"
  encrypt         = "{encrypt}"
}}
"#
    )
}

fn lifecycle(tf: &Terraform) {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let wd = Workdir::new(tf, &provider_binary());
    // The copies' keys, in the target account (the one target_role_arn is in).
    let key_euw1 = kms_key_of(&moto, TARGET_ROLE, "eu-west-1");
    let key_euc1 = kms_key_of(&moto, TARGET_ROLE, "eu-central-1");

    // A key the target role cannot find fails the plan, before anything is written.
    let missing = "arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    wd.write("main.tf", &(provider(&moto) + &mapping("eu-west-1", missing, "all")));
    wd.init();
    let (code, output) = wd.plan_exit_code();
    let detail = output.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(code, 1, "{output}");
    assert!(detail.contains("Unusable KMS key"), "{output}");
    assert!(detail.contains(&format!("no KMS key {missing} in eu-west-1, as seen by role {TARGET_ROLE}")), "{output}");

    wd.write("main.tf", &(provider(&moto) + &mapping("eu-west-1", &key_euw1, "all")));

    // Create: the catalog bucket appears (versioned, encrypted) with the document.
    assert!(!aws.bucket_exists(CATALOG_BUCKET));
    wd.apply();
    let document = aws.get_json(CATALOG_BUCKET, KEY).expect("mapping document in the catalog");
    assert_eq!(document["target_region"], "eu-west-1");
    assert_eq!(document["encrypt"], "all");
    assert_eq!(document["target_role_arn"], "arn:aws:iam::222222222222:role/coffer-copy");
    assert!(aws.versioning_enabled(CATALOG_BUCKET), "the catalog is versioned");
    let encryption = crate::support::block_on(aws.s3.get_bucket_encryption().bucket(CATALOG_BUCKET).send());
    assert!(encryption.is_ok(), "the catalog has default encryption");
    let state = state_of(&wd, ADDRESS);
    assert_eq!(state["id"], "dr");
    wd.assert_no_changes();

    // Import by name into a fresh state: nothing to change.
    let imported = wd.fresh_state_copy();
    imported.init();
    imported.import(ADDRESS, "dr");
    imported.assert_no_changes();
    assert_eq!(state_of(&imported, ADDRESS), state);
    drop(imported);

    // Update in place.
    wd.write("main.tf", &(provider(&moto) + &mapping("eu-central-1", &key_euc1, "encrypted_only")));
    assert_eq!(planned_actions(&wd, ADDRESS), json!(["update"]));
    wd.apply();
    assert_eq!(aws.get_json(CATALOG_BUCKET, KEY).unwrap()["target_region"], "eu-central-1");
    wd.assert_no_changes();

    // Edited out of band: the plan shows it, apply heals it.
    let mut edited = aws.get_json(CATALOG_BUCKET, KEY).unwrap();
    edited["target_region"] = json!("ap-south-1");
    aws.put_json(CATALOG_BUCKET, KEY, &edited);
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    assert!(output.contains(r#""ap-south-1" -> "eu-central-1""#), "{output}");
    wd.apply();
    assert_eq!(aws.get_json(CATALOG_BUCKET, KEY).unwrap()["target_region"], "eu-central-1");

    // Written by someone else between plan and apply: the conditional write
    // refuses and says so; the other write survives.
    wd.write("main.tf", &(provider(&moto) + &mapping("eu-west-1", &key_euw1, "encrypted_only")));
    wd.run(&["plan", "-input=false", "-no-color", "-out=race.tfplan"]);
    let mut theirs = aws.get_json(CATALOG_BUCKET, KEY).unwrap();
    theirs["encrypt"] = json!("all");
    aws.put_json(CATALOG_BUCKET, KEY, &theirs);
    let out = wd.run(&["apply", "-input=false", "-no-color", "race.tfplan"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!out.status.success(), "a stale plan must not overwrite: {text}");
    assert!(text.contains("was changed by someone else"), "{text}");
    assert_eq!(aws.get_json(CATALOG_BUCKET, KEY).unwrap()["encrypt"], "all", "their write survives");
    wd.apply();
    assert_eq!(aws.get_json(CATALOG_BUCKET, KEY).unwrap()["target_region"], "eu-west-1");
    wd.assert_no_changes();

    // Deleted out of band: planned as a create.
    aws.delete(CATALOG_BUCKET, KEY);
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("will be created"), "{output}");
    wd.apply();
    wd.assert_no_changes();

    wd.destroy();
    assert!(aws.get(CATALOG_BUCKET, KEY).is_none(), "destroy removes the document");
}

#[test]
fn region_mapping_lifecycle_on_every_terraform() {
    for tf in terraform_versions() {
        lifecycle(&tf);
    }
}
