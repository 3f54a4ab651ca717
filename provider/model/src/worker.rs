//! The worker task contract: the boot script a worker instance runs (user
//! data), which fetches the published `coffer` binary from the catalog and
//! runs one task — a `coffer` command line — with the catalog's location in
//! its environment.

use crate::catalog::CatalogLocation;

/// The worker's boot script. The task comes from the instance's
/// `coffer:task` tag (set by whoever launches it), so one launch template
/// serves every policy and rule.
pub fn user_data(catalog: &CatalogLocation, home_region: &str) -> String {
    boot_script(catalog, home_region, "TASK=$(imds tags/instance/coffer:task)")
}

/// The boot script with the task fixed, for launches that pass their own
/// user data (the schedules of a backup policy). `task` is a coffer command
/// line made of names limited to letters, digits and `-_.`.
pub fn user_data_for_task(catalog: &CatalogLocation, home_region: &str, task: &str) -> String {
    boot_script(catalog, home_region, &format!("TASK='{task}'"))
}

fn boot_script(catalog: &CatalogLocation, home_region: &str, task_line: &str) -> String {
    format!(
        r#"#!/bin/bash
# Coffer worker bootstrap, written by terraform-provider-coffer.
set -uo pipefail
trap 'shutdown -h now' EXIT
imds() {{ curl -fsS -H "X-aws-ec2-metadata-token: $TOKEN" "http://169.254.169.254/latest/meta-data/$1"; }}
TOKEN=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 3600' http://169.254.169.254/latest/api/token)
{task_line}
export COFFER_CATALOG_BUCKET='{bucket}' COFFER_CATALOG_PREFIX='{prefix}' AWS_REGION='{home_region}'
aws s3 cp "s3://{bucket}/{prefix}bin/coffer-linux-$(uname -m)" /usr/local/bin/coffer
chmod +x /usr/local/bin/coffer
# The task is a coffer command line, e.g. "run --policy prod --rule daily".
/usr/local/bin/coffer $TASK 2>&1 | logger -t coffer
"#,
        bucket = catalog.bucket,
        prefix = catalog.prefix,
    )
}
