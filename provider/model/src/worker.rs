//! The worker task contract: the boot script a worker instance runs (user
//! data), which fetches the published `coffer` binary from the catalog and
//! runs one task — a `coffer` command line — with the catalog's location in
//! its environment.

use crate::catalog::CatalogLocation;

/// How late after a rule's due time a scheduled worker may start and still run that firing
/// (`coffer run --scheduled` looks back this far). A schedule's RetryPolicy gives up on a
/// launch after the same time: a worker started later would find nothing to run.
pub const SCHEDULED_START_WINDOW_SECS: i64 = 3600;

/// The worker's boot script. The task comes from the instance's
/// `coffer:task` tag (set by whoever launches it), so one launch template
/// serves every policy and rule.
pub fn user_data(catalog: &CatalogLocation, home_region: &str) -> String {
    boot_script(
        catalog,
        home_region,
        "TASK=$(imds tags/instance/coffer:task) \\\n    || { echo \"coffer-worker: no coffer:task tag in instance metadata\"; exit 1; }",
    )
}

/// The boot script with the task fixed, for launches that pass their own
/// user data (the schedules of a backup policy). `task` is a coffer command
/// line made of names limited to letters, digits and `-_.`.
pub fn user_data_for_task(catalog: &CatalogLocation, home_region: &str, task: &str) -> String {
    boot_script(catalog, home_region, &format!("TASK='{task}'"))
}

/// The catalog key of a worker's log: `<prefix>worker-logs/<instance id>.log`.
pub fn log_key(catalog: &CatalogLocation, instance_id: &str) -> String {
    format!("{}{LOG_FOLDER}/{instance_id}.log", catalog.prefix)
}

/// The catalog folder workers upload their logs to.
pub const LOG_FOLDER: &str = "worker-logs";

/// Everything the script and the task print goes to one log file, which the exit trap
/// uploads to the catalog and hands to the system log before the instance shuts down — on
/// success and on every failure, so a worker that could not start its task still leaves its
/// reason where `coffer` and the user can read it after the instance is gone.
fn boot_script(catalog: &CatalogLocation, home_region: &str, task_line: &str) -> String {
    format!(
        r#"#!/bin/bash
# Coffer worker bootstrap, written by terraform-provider-coffer.
set -uo pipefail
export COFFER_CATALOG_BUCKET='{bucket}' COFFER_CATALOG_PREFIX='{prefix}' AWS_REGION='{home_region}'
LOG=$(mktemp /tmp/coffer-worker.XXXXXX)
exec >>"$LOG" 2>&1
INSTANCE_ID=unknown
finish() {{
    echo "coffer-worker: exit status $?; shutting down"
    aws s3 cp --only-show-errors "$LOG" "s3://{bucket}/{prefix}{logs}/$INSTANCE_ID.log" \
        || echo "coffer-worker: the log could not be uploaded"
    logger -t coffer -f "$LOG"
    shutdown -h now
}}
trap finish EXIT
imds() {{ curl -fsS -H "X-aws-ec2-metadata-token: $TOKEN" "http://169.254.169.254/latest/meta-data/$1"; }}
TOKEN=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 3600' http://169.254.169.254/latest/api/token) \
    || {{ echo "coffer-worker: no instance metadata (IMDSv2 token)"; exit 1; }}
INSTANCE_ID=$(imds instance-id) || {{ echo "coffer-worker: no instance id from instance metadata"; exit 1; }}
{task_line}
echo "coffer-worker: instance $INSTANCE_ID, task: $TASK"
BINARY="s3://{bucket}/{prefix}bin/coffer-linux-$(uname -m)"
aws s3 cp --only-show-errors "$BINARY" /usr/local/bin/coffer \
    || {{ echo "coffer-worker: cannot fetch $BINARY (run coffer publish, and check the instance profile)"; exit 1; }}
chmod +x /usr/local/bin/coffer
# The task is a coffer command line, e.g. "run --policy prod --rule daily".
/usr/local/bin/coffer $TASK
"#,
        bucket = catalog.bucket,
        prefix = catalog.prefix,
        logs = LOG_FOLDER,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both scripts are valid bash (`bash -n` parses without running).
    #[test]
    fn both_boot_scripts_parse() {
        let catalog = CatalogLocation::new(Some("coffer-catalog"), Some("team"), "123456789012", "eu-west-1");
        for script in [user_data(&catalog, "eu-west-1"), user_data_for_task(&catalog, "eu-west-1", "run --policy p")] {
            let out = std::process::Command::new("bash").args(["-n", "-c", &script]).output().unwrap();
            assert!(out.status.success(), "{}\n{script}", String::from_utf8_lossy(&out.stderr));
            assert!(script.contains("trap finish EXIT"));
        }
        assert_eq!(log_key(&catalog, "i-0abc"), "team/worker-logs/i-0abc.log");
    }
}
