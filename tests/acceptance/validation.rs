//! Every invalid value SPEC names is refused by `terraform plan`, with the
//! attribute path and what is allowed, and a failed plan creates nothing.

use super::provider;
use crate::support::aws::{Aws, CATALOG_BUCKET};
use crate::support::terraform::oldest_terraform;
use crate::support::{Moto, Workdir, provider_binary};

const WORKER: &str = r#"
resource "coffer_worker_configuration" "use1" {
  name = "use1"
}
"#;

/// A policy with `rule_body` as its only rule and `extra` at the top level.
fn policy(kind: &str, regions: &str, rule_body: &str) -> String {
    format!(
        r#"
resource "coffer_backup_policy" "bad" {{
  name = "bad"
  type = "{kind}"
  source {{
    regions = {regions}
    ids     = []
  }}
  rule {{
    name = "r"
{rule_body}
  }}
  worker_configuration_ids = ["lt-0123456789abcdef0"]
}}
"#
    )
}

const SNAPSHOT_7: &str = "snapshot {\n retain {\n count = 7\n }\n }";

fn normalized(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// (what is wrong, HCL, texts the error must contain)
fn cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let rule = |cron: &str, tz: &str, actions: &str| format!("cron = \"{cron}\"\n timezone = \"{tz}\"\n {actions}");
    vec![
        (
            "cron syntax",
            policy("ec2", r#"["us-east-1"]"#, &rule("0 25 * * *", "UTC", SNAPSHOT_7)),
            vec!["rule[0].cron", "not a valid cron expression"],
        ),
        (
            "cron with six fields",
            policy("ec2", r#"["us-east-1"]"#, &rule("0 0 2 * * *", "UTC", SNAPSHOT_7)),
            vec!["rule[0].cron", "minute hour day-of-month month day-of-week"],
        ),
        (
            "cron restricting day-of-month and day-of-week",
            policy("ec2", r#"["us-east-1"]"#, &rule("0 2 1 * 1", "UTC", SNAPSHOT_7)),
            vec!["rule[0].cron", "EventBridge Scheduler can only restrict one"],
        ),
        (
            "timezone",
            policy("ec2", r#"["us-east-1"]"#, &rule("0 2 * * *", "Mars/Olympus_Mons", SNAPSHOT_7)),
            vec!["rule[0].timezone", "IANA time zone", "Europe/Berlin"],
        ),
        (
            "region name shape",
            policy("ec2", r#"["useast1"]"#, &rule("0 2 * * *", "UTC", SNAPSHOT_7)),
            vec!["source.regions", "not an AWS region name", "us-east-1"],
        ),
        (
            "dead-letter queue ARN",
            policy("ec2", r#"["us-east-1"]"#, &rule("0 2 * * *", "UTC", SNAPSHOT_7)).replace(
                "  worker_configuration_ids",
                "  dead_letter_queue_arn = \"arn:aws:sns:us-east-1:123456789012:alerts\"\n  worker_configuration_ids",
            ),
            vec!["dead_letter_queue_arn", "is not an SQS queue ARN"],
        ),
        (
            "max run time out of range",
            policy("ec2", r#"["us-east-1"]"#, &rule("0 2 * * *", "UTC", SNAPSHOT_7))
                .replace("  worker_configuration_ids", "  max_run_time = \"200h\"\n  worker_configuration_ids"),
            vec!["max_run_time", "\"200h\" is outside the allowed 1m to 168h (7 days)."],
        ),
        (
            "region not enabled",
            policy("ec2", r#"["xx-nowhere-1"]"#, &rule("0 2 * * *", "UTC", SNAPSHOT_7)),
            vec!["source.regions", "is not enabled for this account", "enabled regions:"],
        ),
        (
            "retain with count and days",
            policy(
                "ec2",
                r#"["us-east-1"]"#,
                &rule("0 2 * * *", "UTC", "snapshot {\n retain {\n count = 7\n days = 3\n }\n }"),
            ),
            vec!["rule[0].snapshot.retain", "exactly one of count or days"],
        ),
        (
            "retain with neither",
            policy("ec2", r#"["us-east-1"]"#, &rule("0 2 * * *", "UTC", "snapshot {\n retain {\n }\n }")),
            vec!["exactly one of count or days"],
        ),
        (
            "policy type",
            policy("ebs", r#"["us-east-1"]"#, &rule("0 2 * * *", "UTC", SNAPSHOT_7)),
            vec!["type", r#""ec2", "rds""#],
        ),
        (
            "backup of RDS",
            policy(
                "rds",
                r#"["us-east-1"]"#,
                &rule("0 2 * * *", "UTC", "backup {\n repository_id = \"x\"\n retain {\n days = 3\n }\n }"),
            ),
            vec!["rule[0].backup", "needs type = \"ec2\""],
        ),
        (
            "replicate without snapshot",
            policy(
                "ec2",
                r#"["us-east-1"]"#,
                &rule("0 2 * * *", "UTC", "replicate {\n region_mapping_ids = [\"dr\"]\n retain {\n count = 1\n }\n }"),
            ),
            vec!["rule[0].replicate", "add a snapshot block"],
        ),
        (
            "repository storage class",
            r#"
resource "coffer_repository" "bad" {
  name          = "bad"
  bucket        = "bad-bucket"
  storage_class = "COLD"
  encryption {
    password = "long enough password"
  }
}
"#
            .to_string(),
            vec!["storage_class", r#""STANDARD", "STANDARD_IA", "GLACIER", "DEEP_ARCHIVE""#],
        ),
        (
            "repository encryption with two secrets",
            r#"
resource "coffer_repository" "bad" {
  name   = "bad"
  bucket = "bad-bucket"
  encryption {
    password    = "long enough password"
    kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/abc"
  }
}
"#
            .to_string(),
            vec!["exactly one of kms_key_arn, password or password_wo"],
        ),
        (
            "immutability mode",
            r#"
resource "coffer_repository" "bad" {
  name   = "bad"
  bucket = "bad-bucket"
  encryption {
    password = "long enough password"
  }
  immutability {
    days = 7
    mode = "LEGAL_HOLD"
  }
}
"#
            .to_string(),
            vec!["immutability.mode", r#""COMPLIANCE", "GOVERNANCE""#],
        ),
        (
            "mapping to its own region",
            r#"
resource "coffer_region_mapping" "bad" {
  name          = "bad"
  source_region = "us-east-1"
  target_region = "us-east-1"
}
"#
            .to_string(),
            vec!["target_region must differ from source_region"],
        ),
        (
            "mapping role ARN",
            r#"
resource "coffer_region_mapping" "bad" {
  name            = "bad"
  source_region   = "us-east-1"
  target_region   = "eu-west-1"
  target_role_arn = "arn:aws:iam::2222:user/copier"
}
"#
            .to_string(),
            vec!["target_role_arn", "arn:aws:iam::<12-digit account>:role/<name>"],
        ),
        (
            "mapping KMS key outside the target region",
            r#"
resource "coffer_region_mapping" "bad" {
  name          = "bad"
  source_region = "us-east-1"
  target_region = "eu-west-1"
  kms_key_arn   = "arn:aws:kms:us-east-1:123456789012:key/abc"
}
"#
            .to_string(),
            vec!["kms_key_arn must be a key in target_region"],
        ),
        (
            // KMS DescribeKey in target_region answers NotFoundException: every copy would fail.
            "mapping KMS key that does not exist",
            r#"
resource "coffer_region_mapping" "bad" {
  name          = "bad"
  source_region = "us-east-1"
  target_region = "eu-west-1"
  kms_key_arn   = "arn:aws:kms:eu-west-1:123456789012:key/0d7c2b3e-aaaa-bbbb-cccc-1234567890ab"
}
"#
            .to_string(),
            vec![
                "Unusable KMS key",
                "kms_key_arn: there is no KMS key arn:aws:kms:eu-west-1:123456789012:key/0d7c2b3e-aaaa-bbbb-cccc-1234567890ab in eu-west-1, as seen by the provider's credentials",
            ],
        ),
        (
            "mapping encrypt value",
            r#"
resource "coffer_region_mapping" "bad" {
  name          = "bad"
  source_region = "us-east-1"
  target_region = "eu-west-1"
  encrypt       = "some"
}
"#
            .to_string(),
            vec!["encrypt", r#""all", "encrypted_only""#],
        ),
    ]
}

#[test]
fn invalid_values_fail_the_plan_with_the_path_and_what_is_allowed() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let tf = oldest_terraform();
    let wd = Workdir::new(&tf, &provider_binary());
    wd.write("main.tf", &provider(&moto));
    wd.init();
    let mut failures = Vec::new();
    for (what, hcl, expected) in cases() {
        wd.write("main.tf", &(provider(&moto) + &hcl));
        match wd.try_plan() {
            Ok(output) => failures.push(format!("{what}: the plan succeeded:\n{output}")),
            Err(output) => {
                let text = normalized(&output);
                for needle in expected {
                    if !text.contains(needle) {
                        failures.push(format!("{what}: error lacks {needle:?}:\n{text}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(!aws.bucket_exists(CATALOG_BUCKET), "a failed plan creates nothing, not even the catalog");
    assert!(aws.schedule_names().is_empty());
}

/// Checks that need the catalog: a repository of the wrong storage class,
/// a region mapping that does not start in a source region.
#[test]
fn references_of_the_wrong_kind_fail_the_plan() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let tf = oldest_terraform();
    let wd = Workdir::new(&tf, &provider_binary());
    let prerequisites = r#"
resource "coffer_repository" "cold" {
  name          = "cold"
  bucket        = "coffer-cold"
  create_bucket = true
  storage_class = "GLACIER"
  encryption {
    password = "long enough password"
  }
}

resource "coffer_region_mapping" "back" {
  name          = "back"
  source_region = "eu-west-1"
  target_region = "us-east-1"
}
"#;
    wd.write("main.tf", &(provider(&moto) + WORKER + prerequisites));
    wd.init();
    wd.apply();
    let us = r#"["us-east-1"]"#;
    let cases = [
        (
            us,
            "backup {\n repository_id = coffer_repository.cold.id\n retain {\n days = 30\n }\n }",
            vec!["rule[0].backup.repository_id", "STANDARD or STANDARD_IA", "is GLACIER", "Use it in archive instead"],
        ),
        (
            us,
            "snapshot {\n retain {\n count = 1\n }\n }\n replicate {\n region_mapping_ids = [coffer_region_mapping.back.id]\n retain {\n count = 1\n }\n }",
            vec![
                "rule[0].replicate.region_mapping_ids",
                "copies from \"eu-west-1\", which is not in source.regions (us-east-1)",
            ],
        ),
        // Volumes are read by a worker in their region: eu-west-1 has no worker configuration.
        (
            r#"["us-east-1", "eu-west-1"]"#,
            "archive {\n repository_id = coffer_repository.cold.id\n retain {\n days = 30\n }\n }",
            vec![
                "Error: No worker configuration in a source region",
                "worker_configuration_ids: source.regions includes eu-west-1",
                "none of worker_configuration_ids is in eu-west-1: add a coffer_worker_configuration with region = \"eu-west-1\"",
            ],
        ),
    ];
    for (regions, actions, expected) in cases {
        let hcl = policy("ec2", regions, &format!("cron = \"0 2 * * *\"\n {actions}"))
            .replace(r#"["lt-0123456789abcdef0"]"#, "[coffer_worker_configuration.use1.id]");
        wd.write("main.tf", &(provider(&moto) + WORKER + prerequisites + &hcl));
        let text = normalized(&wd.try_plan().expect_err("the plan must fail"));
        for needle in expected {
            assert!(text.contains(needle), "error lacks {needle:?}:\n{text}");
        }
    }
    assert!(aws.get(CATALOG_BUCKET, "policies/bad.json").is_none(), "no policy written");
    assert!(aws.schedule_names().is_empty(), "no schedule made");
}
