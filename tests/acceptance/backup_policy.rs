//! coffer_backup_policy: the catalog document plus one EventBridge
//! Scheduler schedule per rule that launches a worker.

use base64::Engine;
use serde_json::json;

use super::{planned_actions, provider, state_of};
use crate::support::aws::{ACCOUNT, Aws, CATALOG_BUCKET, SCHEDULER_ROLE};
use crate::support::terraform::Terraform;
use crate::support::{Moto, Workdir, block_on, provider_binary, terraform_versions};

const ADDRESS: &str = "coffer_backup_policy.prod";
const KEY: &str = "policies/prod.json";

const DEPENDENCIES: &str = r#"
resource "coffer_worker_configuration" "use1" {
  name = "use1"
}

resource "coffer_worker_configuration" "euw1" {
  name   = "euw1"
  region = "eu-west-1"
}

resource "coffer_region_mapping" "dr" {
  name          = "dr"
  source_region = "us-east-1"
  target_region = "eu-west-1"
}
"#;

const DEAD_LETTERS: &str = "arn:aws:sqs:us-east-1:123456789012:coffer-launch-failures";

fn policy(enabled: bool, daily_cron: &str, extra_rule: &str) -> String {
    format!(
        r#"
resource "coffer_backup_policy" "prod" {{
  name        = "prod"
  type        = "ec2"
  description = "production volumes"
  enabled     = {enabled}

  source {{
    regions = ["us-east-1"]
    tags    = {{ Backup = "daily" }}
  }}

  rule {{
    name     = "daily"
    cron     = "{daily_cron}"
    timezone = "Europe/Berlin"
    snapshot {{
      retain {{
        count = 7
      }}
    }}
    replicate {{
      region_mapping_ids = [coffer_region_mapping.dr.id]
      retain {{
        count = 3
      }}
    }}
  }}
{extra_rule}
  worker_configuration_ids = [coffer_worker_configuration.euw1.id, coffer_worker_configuration.use1.id]
  dead_letter_queue_arn    = "{DEAD_LETTERS}"
  tags                     = {{ Team = "platform" }}
}}
"#
    )
}

const WEEKLY: &str = r#"
  rule {
    name = "weekly"
    cron = "30 4 * * 1-5"
    snapshot {
      retain {
        days = 30
      }
    }
  }
"#;

fn decoded_user_data(input: &str) -> String {
    let input: serde_json::Value = serde_json::from_str(input).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(input["UserData"].as_str().unwrap()).unwrap();
    String::from_utf8(bytes).unwrap()
}

fn lifecycle(tf: &Terraform) {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let wd = Workdir::new(tf, &provider_binary());
    let base = provider(&moto) + DEPENDENCIES;
    wd.write("main.tf", &(base.clone() + &policy(true, "0 2 * * *", "")));
    wd.init();

    // Create: document and one schedule per rule, launching the home-region
    // worker configuration with user data that runs the rule.
    wd.apply();
    let state = state_of(&wd, ADDRESS);
    let home_template = state_of(&wd, "coffer_worker_configuration.use1")["id"].as_str().unwrap().to_string();
    let arn = format!("arn:aws:scheduler:us-east-1:{ACCOUNT}:schedule/coffer/coffer-prod-daily");
    assert_eq!(state["schedule_arns"], json!({ "daily": arn }));
    assert_eq!(state["scheduler_role_arn"], SCHEDULER_ROLE, "the provider's role is the default");
    let document = aws.get_json(CATALOG_BUCKET, KEY).expect("policy document");
    assert_eq!(document["rules"][0]["snapshot"]["retain"]["count"], 7);
    assert_eq!(document["rules"][0]["replicate"]["region_mapping_ids"], json!(["dr"]));
    assert_eq!(document["source"]["tags"], json!({ "Backup": "daily" }));
    let schedule = aws.schedule("coffer-prod-daily").expect("schedule of rule daily");
    assert_eq!(schedule.schedule_expression(), Some("cron(0 2 * * ? *)"));
    assert_eq!(schedule.schedule_expression_timezone(), Some("Europe/Berlin"));
    assert_eq!(schedule.state().map(|s| s.as_str()), Some("ENABLED"));
    let target = schedule.target().unwrap();
    assert_eq!(target.arn(), "arn:aws:scheduler:::aws-sdk:ec2:runInstances");
    assert_eq!(target.role_arn(), SCHEDULER_ROLE);
    let input: serde_json::Value = serde_json::from_str(target.input().unwrap()).unwrap();
    assert_eq!(input["LaunchTemplate"]["LaunchTemplateId"], home_template.as_str());
    assert_eq!(input["MinCount"], 1);
    // A rule that only snapshots and replicates moves no data: its worker is small.
    assert_eq!(input["InstanceType"], "t3.micro");
    assert_eq!(state["snapshot_instance_type"], "t3.micro");
    // The worker runs the rule, bounded by the default max_run_time (12h).
    assert!(
        decoded_user_data(target.input().unwrap()).contains("POLICY='prod' RULE='daily' MAX_RUN_SECS=43200\n"),
        "{}",
        decoded_user_data(target.input().unwrap())
    );
    // A failed launch is retried for as long as its worker would still run the firing, then
    // goes to the dead-letter queue.
    let retry = target.retry_policy().expect("a retry policy");
    assert_eq!((retry.maximum_retry_attempts(), retry.maximum_event_age_in_seconds()), (Some(20), Some(3600)));
    assert_eq!(target.dead_letter_config().and_then(|d| d.arn()), Some(DEAD_LETTERS));
    assert_eq!(state["dead_letter_queue_arn"], DEAD_LETTERS);
    wd.assert_no_changes();

    // Import everything into a fresh state (the policy by name): nothing to change.
    let imported = wd.fresh_state_copy();
    imported.init();
    for worker in ["use1", "euw1"] {
        let address = format!("coffer_worker_configuration.{worker}");
        let id = state_of(&wd, &address)["id"].as_str().unwrap().to_string();
        let region = state_of(&wd, &address)["region"].as_str().unwrap().to_string();
        imported.import(&address, &format!("{region}/{id}"));
    }
    imported.import("coffer_region_mapping.dr", "dr");
    imported.import(ADDRESS, "prod");
    imported.assert_no_changes();
    drop(imported);

    // Update in place: a changed cron, a new rule, disabled, a shorter time limit.
    let updated = policy(false, "15 3 * * *", WEEKLY)
        .replace("  dead_letter_queue_arn", "  max_run_time             = \"3h\"\n  dead_letter_queue_arn");
    assert!(updated.contains("max_run_time"));
    wd.write("main.tf", &(base.clone() + &updated));
    assert_eq!(planned_actions(&wd, ADDRESS), json!(["update"]));
    wd.apply();
    assert_eq!(aws.schedule_names(), vec!["coffer-prod-daily", "coffer-prod-weekly"]);
    let daily = aws.schedule("coffer-prod-daily").unwrap();
    assert_eq!(daily.schedule_expression(), Some("cron(15 3 * * ? *)"));
    assert_eq!(daily.state().map(|s| s.as_str()), Some("DISABLED"));
    let weekly = aws.schedule("coffer-prod-weekly").unwrap();
    assert_eq!(weekly.schedule_expression(), Some("cron(30 4 ? * MON,TUE,WED,THU,FRI *)"));
    assert_eq!(weekly.schedule_expression_timezone(), Some("UTC"));
    let user_data = decoded_user_data(daily.target().unwrap().input().unwrap());
    assert!(user_data.contains("MAX_RUN_SECS=10800\n"), "the boot script has the new limit: {user_data}");
    assert_eq!(aws.get_json(CATALOG_BUCKET, KEY).unwrap()["max_run_time"], "3h");
    wd.assert_no_changes();

    // Removing a rule deletes its schedule.
    wd.write("main.tf", &(base.clone() + &policy(true, "15 3 * * *", "")));
    wd.apply();
    assert_eq!(aws.schedule_names(), vec!["coffer-prod-daily"]);
    assert_eq!(aws.get_json(CATALOG_BUCKET, KEY).unwrap()["rules"].as_array().unwrap().len(), 1);
    wd.assert_no_changes();

    // A schedule edited out of band (cron, state, target): the plan shows
    // each, apply heals them.
    let current = aws.schedule("coffer-prod-daily").unwrap();
    let mut target = current.target().unwrap().clone();
    target.input =
        Some(r#"{"LaunchTemplate":{"LaunchTemplateId":"lt-0aaaaaaaaaaaaaaaa"},"MinCount":1,"MaxCount":1}"#.into());
    block_on(
        aws.scheduler
            .update_schedule()
            .group_name("coffer")
            .name("coffer-prod-daily")
            .schedule_expression("cron(0 5 * * ? *)")
            .schedule_expression_timezone("UTC")
            .state(aws_sdk_scheduler::types::ScheduleState::Disabled)
            .set_flexible_time_window(current.flexible_time_window().cloned())
            .target(target)
            .send(),
    )
    .unwrap();
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    assert!(output.contains(r#""0 5 * * *" -> "15 3 * * *""#), "cron drift: {output}");
    assert!(output.contains(r#""UTC" -> "Europe/Berlin""#), "timezone drift: {output}");
    assert!(output.contains("enabled") && output.contains("false -> true"), "state drift: {output}");
    assert!(output.contains("schedules_fingerprint"), "target drift: {output}");
    wd.apply();
    let healed = aws.schedule("coffer-prod-daily").unwrap();
    assert_eq!(healed.schedule_expression(), Some("cron(15 3 * * ? *)"));
    assert_eq!(healed.state().map(|s| s.as_str()), Some("ENABLED"));
    assert!(healed.target().unwrap().input().unwrap().contains(&home_template));
    wd.assert_no_changes();

    // A schedule deleted out of band: planned back.
    block_on(aws.scheduler.delete_schedule().group_name("coffer").name("coffer-prod-daily").send()).unwrap();
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    wd.apply();
    assert!(aws.schedule("coffer-prod-daily").is_some());
    wd.assert_no_changes();

    // The policy document changed out of band: the plan shows it.
    let mut edited = aws.get_json(CATALOG_BUCKET, KEY).unwrap();
    edited["rules"][0]["snapshot"]["retain"]["count"] = json!(1);
    edited["description"] = json!("edited by hand");
    aws.put_json(CATALOG_BUCKET, KEY, &edited);
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    assert!(output.contains(r#""edited by hand" -> "production volumes""#), "{output}");
    assert!(output.contains("1 -> 7"), "{output}");
    wd.apply();
    assert_eq!(aws.get_json(CATALOG_BUCKET, KEY).unwrap()["rules"][0]["snapshot"]["retain"]["count"], 7);
    wd.assert_no_changes();

    // Deleted document: the whole policy is planned again.
    aws.delete(CATALOG_BUCKET, KEY);
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("will be created"), "{output}");
    wd.apply();
    wd.assert_no_changes();

    wd.destroy();
    assert!(aws.schedule_names().is_empty(), "destroy deletes the schedules");
    assert!(aws.get(CATALOG_BUCKET, KEY).is_none(), "destroy deletes the document");
}

#[test]
fn backup_policy_lifecycle_on_every_terraform() {
    for tf in terraform_versions() {
        lifecycle(&tf);
    }
}

fn replicating_policy(kind: &str) -> String {
    format!(
        r#"
resource "coffer_backup_policy" "dbs" {{
  name = "dbs"
  type = "{kind}"

  source {{
    regions = ["us-east-1"]
    tags    = {{ Backup = "daily" }}
  }}

  rule {{
    name = "daily"
    cron = "0 2 * * *"
    snapshot {{
      retain {{
        count = 7
      }}
    }}
    replicate {{
      region_mapping_ids = ["dr"]
      retain {{
        count = 3
      }}
    }}
  }}

  worker_configuration_ids = [coffer_worker_configuration.use1.id]
}}
"#
    )
}

/// AWS copies an encrypted DB snapshot into another region only with a key of that region;
/// whether the databases are encrypted is known at run time only, so the plan warns.
#[test]
fn an_rds_policy_replicating_through_a_mapping_without_a_key_is_warned_about_at_plan() {
    let moto = Moto::start();
    let tf = crate::support::terraform::oldest_terraform();
    let wd = Workdir::new(&tf, &provider_binary());
    let base = provider(&moto) + DEPENDENCIES;
    wd.write("main.tf", &base);
    wd.init();
    wd.apply();

    const WARNING: &str = "Warning: Encrypted databases will not be replicated";
    wd.write("main.tf", &(base.clone() + &replicating_policy("ec2")));
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    assert!(!output.contains(WARNING), "EBS copies need no key:\n{output}");

    wd.write("main.tf", &(base + &replicating_policy("rds")));
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "{output}");
    assert!(output.contains(WARNING), "{output}");
    // Terraform wraps the detail to the terminal's width.
    let detail = output.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        detail.contains("region mapping \"dr\" has no kms_key_arn")
            && detail.contains("into eu-west-1 only with a KMS key of that region"),
        "{output}"
    );
}

fn snapshot_policy(description: &str, cron: &str) -> String {
    format!(
        r#"
resource "coffer_worker_configuration" "use1" {{
  name             = "use1"
  instance_profile = "coffer-worker"
}}

resource "coffer_backup_policy" "nightly" {{
  name        = "nightly"
  type        = "ec2"
  description = "{description}"

  source {{
    regions = ["us-east-1"]
    tags    = {{ Backup = "nightly" }}
  }}

  rule {{
    name = "nightly"
    cron = "{cron}"
    snapshot {{
      retain {{
        count = 7
      }}
    }}
  }}

  worker_configuration_ids = [coffer_worker_configuration.use1.id]
}}
"#
    )
}

/// Preflight of a policy's workers, from Terraform and from `coffer preflight`: the
/// scheduler role must be allowed to pass the workers' role (IAM's policy simulator), and
/// a snapshot-only policy needs S3 and EC2 only. A grant removed out of band makes
/// `coffer preflight` fail naming both roles, and the next apply that changes what the
/// checks depend on an error at scheduler_role_arn.
#[test]
fn preflight_checks_that_the_scheduler_role_may_pass_the_workers_role() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.worker_iam();
    let tf = crate::support::terraform::oldest_terraform();
    let wd = Workdir::new(&tf, &provider_binary());
    wd.write("main.tf", &(provider(&moto) + &snapshot_policy("nightly snapshots", "0 1 * * *")));
    wd.init();
    let applied = wd.apply();
    assert!(!applied.contains("Workers cannot work"), "{applied}");

    let preflight = |json: bool| {
        let mut command = crate::support::estate::coffer_command(&moto.endpoint);
        command.args(["preflight", "--policy", "nightly"]);
        if json {
            command.arg("--json");
        }
        let out = command.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, printed) = preflight(false);
    assert_eq!(code, Some(0), "{printed}");
    for line in
        ["ok    reach s3", "ok    reach ec2", "ok    instance profile", "ok    scheduler may pass the workers' role"]
    {
        assert!(printed.contains(line), "{line:?} missing from:\n{printed}");
    }
    assert!(!printed.contains("reach ebs"), "a snapshot-only policy reads no blocks:\n{printed}");

    block_on(
        aws.iam
            .delete_role_policy()
            .role_name("coffer-scheduler")
            .policy_name(crate::support::aws::PASS_WORKER_ROLE)
            .send(),
    )
    .unwrap();
    let denied = format!("{SCHEDULER_ROLE} is not allowed iam:PassRole on {}", crate::support::aws::WORKER_ROLE);
    let (code, printed) = preflight(false);
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("FAIL") && printed.contains(&denied), "{printed}");
    let (_, printed) = preflight(true);
    let workers: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let failed: Vec<&serde_json::Value> =
        workers[0]["checks"].as_array().unwrap().iter().filter(|c| c["verdict"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{printed}");
    assert_eq!(failed[0]["concern"], "scheduler_role");

    // A change the checks do not depend on is not judged, at plan or at apply.
    wd.write("main.tf", &(provider(&moto) + &snapshot_policy("nightly snapshots of production", "0 1 * * *")));
    wd.apply();
    // A changed rule is: refused, and nothing of the change written.
    wd.write("main.tf", &(provider(&moto) + &snapshot_policy("nightly snapshots of production", "30 1 * * *")));
    let failed = wd.try_apply().expect_err("the apply must fail");
    let failed = failed.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(failed.contains("Error: Workers cannot work: scheduler may pass the workers' role"), "{failed}");
    assert!(failed.contains(&denied), "{failed}");
    assert!(failed.contains("scheduler_role_arn"), "{failed}");
    let document = aws.get_json(CATALOG_BUCKET, "policies/nightly.json").unwrap();
    assert_eq!(document["rules"][0]["cron"], "0 1 * * *", "a refused update writes nothing");
}
