//! The worker task contract: the boot script a worker instance runs (user
//! data), which fetches the published `coffer` binary from the catalog and
//! runs one task — a `coffer` command line — with the catalog's location in
//! its environment; and the record a scheduled worker leaves of its start and
//! end (`workers/<policy>/<started>-<instance id>.json`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogDocument, CatalogLocation, Kind};
use crate::session::BackupRecord;

/// How late after a rule's due time a scheduled worker may start and still run that firing
/// (`coffer run --scheduled` looks back this far). A schedule's RetryPolicy gives up on a
/// launch after the same time: a worker started later would find nothing to run.
pub const SCHEDULED_START_WINDOW_SECS: i64 = 3600;

/// How much longer than its policy's `max_run_time` the boot script lets `coffer` run before
/// it kills it: `coffer` stops itself at the limit and records why; this is for a `coffer`
/// that cannot.
pub const KILL_AFTER_LIMIT_SECS: u64 = 600;

/// The worker's boot script for hand launches. The task comes from the instance's
/// `coffer:task` tag (set by whoever launches it), so one launch template
/// serves every policy and rule. Such workers upload their log but write no worker record:
/// no schedule expects them.
pub fn user_data(catalog: &CatalogLocation, home_region: &str) -> String {
    boot_script(
        catalog,
        home_region,
        "TASK=$(imds tags/instance/coffer:task) || fail \"no coffer:task tag in instance metadata\"",
    )
}

/// The boot script of a rule's schedule: the task is `coffer run --scheduled` of that rule,
/// bounded by the policy's `max_run_time`, and the worker records its start and end in the
/// catalog. Policy and rule names are limited to letters, digits and `-_.` (checked at plan).
pub fn user_data_for_rule(
    catalog: &CatalogLocation,
    home_region: &str,
    policy: &str,
    rule: &str,
    max_run_time: Duration,
) -> String {
    boot_script(
        catalog,
        home_region,
        &format!(
            "POLICY='{policy}' RULE='{rule}' MAX_RUN_SECS={}\nTASK=\"run --policy $POLICY --rule $RULE --scheduled\"",
            max_run_time.as_secs()
        ),
    )
}

/// The boot script of a region's worker for one scheduled run: the task is `coffer run
/// --part <region>` of that run (with `--slice K/N` when the region's work is spread over
/// several workers), which makes the image-level points of its share of the run's snapshots in
/// `region` and records them as the run's part; the worker records its start and end as a
/// scheduled worker does, under the rule that launched the run (`launched_for`).
pub fn user_data_for_part(
    catalog: &CatalogLocation,
    home_region: &str,
    part: &PartTask<'_>,
    max_run_time: Duration,
) -> String {
    let rules: String = part.rules.iter().map(|r| format!(" --rule {r}")).collect();
    let slice = if part.slice.count > 1 { format!(" --slice {}", part.slice) } else { String::new() };
    boot_script(
        catalog,
        home_region,
        &format!(
            "POLICY='{policy}' RULE='{launched_for}' PART='{label}' MAX_RUN_SECS={secs}\n\
             TASK=\"run --policy $POLICY{rules} --run-id {run_id} --part {region}{slice}\"",
            policy = part.policy,
            launched_for = part.launched_for,
            label = part.slice.label(part.region),
            region = part.region,
            run_id = part.run_id,
            secs = max_run_time.as_secs(),
        ),
    )
}

/// What a region's worker is launched to do: its part of one run.
#[derive(Debug, Clone, Copy)]
pub struct PartTask<'a> {
    pub policy: &'a str,
    /// The rule whose schedule launched the run.
    pub launched_for: &'a str,
    pub rules: &'a [String],
    /// The run's id (lowercase letters, digits and `-`: checked by the executor).
    pub run_id: &'a str,
    pub region: &'a str,
    pub slice: Slice,
}

/// One worker's share of a region's image-level work in a run: slice `index` (from 0) of
/// `count`. Written `K/N`, from 1, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub index: usize,
    pub count: usize,
}

impl Slice {
    /// All of a region's work, on one worker.
    pub const WHOLE: Slice = Slice { index: 0, count: 1 };

    /// The name of a region's part of a run: the region, or `<region>-<K>of<N>` for one of
    /// several slices.
    pub fn label(&self, region: &str) -> String {
        if self.count > 1 { format!("{region}-{}of{}", self.index + 1, self.count) } else { region.to_string() }
    }
}

impl std::fmt::Display for Slice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl std::str::FromStr for Slice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed = text.split_once('/').and_then(|(k, n)| Some((k.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
        match parsed {
            Some((k, n)) if (1..=n).contains(&k) => Ok(Slice { index: k - 1, count: n }),
            _ => Err(format!("{text:?} is not a slice: write K/N with 1 <= K <= N, e.g. 2/5")),
        }
    }
}

/// The image-level work a region's worker did for one run (`coffer run --part`): the points
/// it made of each instance's snapshots, and what went wrong. The run's session takes it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPart {
    pub format_version: u32,
    pub policy: String,
    pub run_id: String,
    pub region: String,
    /// Which share of the region's work (`K/N`), when it was spread over several workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    /// The worker instance that did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub resources: Vec<PartResource>,
    /// What stopped the part as a whole (a repository that would not open is per resource).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
}

/// One instance's image-level points in a [`RunPart`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartResource {
    pub id: String,
    pub backups: Vec<BackupRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RunPart {
    /// The part's name in its folder: `<policy>/<run id>/<label>` ([`Slice::label`]).
    pub fn name(policy: &str, run_id: &str, label: &str) -> String {
        format!("{policy}/{run_id}/{label}")
    }
}

impl CatalogDocument for RunPart {
    const KIND: Kind = Kind::RunPart;
    const FORMAT_VERSION: u32 = 1;
}

/// The catalog key of a worker's log: `<prefix>worker-logs/<instance id>.log`.
pub fn log_key(catalog: &CatalogLocation, instance_id: &str) -> String {
    format!("{}{LOG_FOLDER}/{instance_id}.log", catalog.prefix)
}

/// The catalog folder workers upload their logs to.
pub const LOG_FOLDER: &str = "worker-logs";

/// What a scheduled worker wrote of itself: once when it booted (no `ended_at`), again when
/// it ended, whatever ended it. The boot script writes it with the AWS CLI, so every field
/// is one the script knows without `coffer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub format_version: u32,
    pub instance_id: String,
    pub policy: String,
    /// The rule whose schedule launched it.
    pub rule: String,
    pub task: String,
    pub started_at: DateTime<Utc>,
    /// Where its log is (uploaded when it ends).
    pub log_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// Why it ended early, in the script's words; empty when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The part of a run it was launched for ([`Slice::label`]: the region, or one slice of
    /// it); none for the worker a schedule launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
}

impl WorkerRecord {
    /// The record's name in its folder: `<policy>/<started, compact UTC>-<instance id>`, so a
    /// policy's records sort by start time like its sessions.
    pub fn name(&self) -> String {
        format!("{}/{}-{}", self.policy, self.started_at.format("%Y%m%dT%H%M%SZ"), self.instance_id)
    }

    /// Why it ended early, if it said.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref().filter(|r| !r.is_empty())
    }
}

impl CatalogDocument for WorkerRecord {
    const KIND: Kind = Kind::WorkerRecord;
    const FORMAT_VERSION: u32 = 1;
}

/// Everything the script and the task print goes to one log file, which the exit trap
/// uploads to the catalog and hands to the system log before the instance shuts down — on
/// success and on every failure, so a worker that could not start its task still leaves its
/// reason where `coffer` and the user can read it after the instance is gone. A log that
/// cannot be uploaded (no credentials, no route to S3) goes to the serial console, which
/// EC2 keeps after the instance (`aws ec2 get-console-output`).
fn boot_script(catalog: &CatalogLocation, home_region: &str, task_line: &str) -> String {
    format!(
        r#"#!/bin/bash
# Coffer worker bootstrap, written by terraform-provider-coffer.
set -uo pipefail
export COFFER_CATALOG_BUCKET='{bucket}' COFFER_CATALOG_PREFIX='{prefix}' AWS_REGION='{home_region}'
LOG=$(mktemp /tmp/coffer-worker.XXXXXX)
exec >>"$LOG" 2>&1
INSTANCE_ID=unknown POLICY= RULE= PART= TASK= MAX_RUN_SECS= REASON= RECORD= STARTED_AT=
fail() {{ REASON=$1; echo "coffer-worker: $1"; exit "${{2:-1}}"; }}
json() {{ local s; s=$(printf '%s' "$1" | tr -d '\000-\037'); s=${{s//\\/\\\\}}; printf '"%s"' "${{s//\"/\\\"}}"; }}
# A scheduled worker's record in the catalog: written when it starts, again when it ends.
record() {{
    [ -n "$RECORD" ] || return 0
    printf '{{"format_version": 1, "instance_id": %s, "policy": %s, "rule": %s, "task": %s, "started_at": %s, "log_key": %s%s%s}}\n' \
        "$(json "$INSTANCE_ID")" "$(json "$POLICY")" "$(json "$RULE")" "$(json "$TASK")" "$(json "$STARTED_AT")" \
        "$(json "{prefix}{logs}/$INSTANCE_ID.log")" "${{PART:+, \"part\": $(json "$PART")}}" "${{1:-}}" \
        | aws s3 cp --only-show-errors - "s3://{bucket}/$RECORD" \
        || echo "coffer-worker: the worker record could not be written"
}}
finish() {{
    local status=$?
    echo "coffer-worker: exit status $status; shutting down"
    record ", \"ended_at\": $(json "$(date -u +%Y-%m-%dT%H:%M:%SZ)"), \"exit_status\": $status, \"reason\": $(json "$REASON")"
    aws s3 cp --only-show-errors "$LOG" "s3://{bucket}/{prefix}{logs}/$INSTANCE_ID.log" || {{
        echo "coffer-worker: the log could not be uploaded"
        if [ -w /dev/console ]; then cat "$LOG" >/dev/console; fi
    }}
    logger -t coffer -f "$LOG"
    shutdown -h now
}}
trap finish EXIT
imds() {{ curl -fsS -H "X-aws-ec2-metadata-token: $TOKEN" "http://169.254.169.254/latest/meta-data/$1"; }}
TOKEN=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' http://169.254.169.254/latest/api/token) \
    || fail "no instance metadata (IMDSv2 token)"
INSTANCE_ID=$(imds instance-id) || fail "no instance id from instance metadata"
# coffer names the worker that made each restore point in its session.
export COFFER_WORKER_INSTANCE_ID="$INSTANCE_ID"
{task_line}
if [ -n "$POLICY" ]; then
    NOW=$(date -u +%s)
    STARTED_AT=$(date -u -d "@$NOW" +%Y-%m-%dT%H:%M:%SZ)
    RECORD="{prefix}{records}/$POLICY/$(date -u -d "@$NOW" +%Y%m%dT%H%M%SZ)-$INSTANCE_ID.json"
    record
fi
echo "coffer-worker: instance $INSTANCE_ID, task: $TASK"
BINARY="s3://{bucket}/{prefix}bin/coffer-linux-$(uname -m)"
aws s3 cp --only-show-errors "$BINARY" /usr/local/bin/coffer \
    || fail "cannot fetch $BINARY (run coffer publish, and check the instance profile)"
chmod +x /usr/local/bin/coffer
# The task is a coffer command line, e.g. "run --policy prod --rule daily --scheduled". It
# stops itself at the policy's max_run_time; the timeout is for a coffer that cannot.
if [ -n "$MAX_RUN_SECS" ]; then
    timeout --kill-after=60 "$((MAX_RUN_SECS + {kill_after}))" /usr/local/bin/coffer $TASK
else
    /usr/local/bin/coffer $TASK
fi
STATUS=$?
case $STATUS in
    0 | 3) exit "$STATUS" ;; # 3: done with warnings, which its session names
    124 | 137) fail "coffer ran {kill_after} s past its max_run_time of $MAX_RUN_SECS s and was killed" "$STATUS" ;;
    *) fail "coffer exited with status $STATUS: $(grep -v '^coffer-worker:' "$LOG" | tail -n 1)" "$STATUS" ;;
esac
"#,
        bucket = catalog.bucket,
        prefix = catalog.prefix,
        logs = LOG_FOLDER,
        records = Kind::WorkerRecord.folder(),
        kill_after = KILL_AFTER_LIMIT_SECS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> CatalogLocation {
        CatalogLocation::new(Some("coffer-catalog"), Some("team"), "123456789012", "eu-west-1")
    }

    /// Both scripts are valid bash (`bash -n` parses without running).
    #[test]
    fn both_boot_scripts_parse() {
        let catalog = catalog();
        let scheduled = user_data_for_rule(&catalog, "eu-west-1", "p", "daily", Duration::from_secs(3600));
        let rules = ["daily".to_string(), "weekly".to_string()];
        let part = PartTask {
            policy: "p",
            launched_for: "daily",
            rules: &rules,
            run_id: "20261204-0300",
            region: "us-east-2",
            slice: "2/3".parse().unwrap(),
        };
        let part = user_data_for_part(&catalog, "eu-west-1", &part, Duration::from_secs(3600));
        assert!(
            part.contains(
                "PART='us-east-2-2of3' MAX_RUN_SECS=3600\nTASK=\"run --policy $POLICY --rule daily --rule weekly --run-id \
                 20261204-0300 --part us-east-2 --slice 2/3\""
            ),
            "{part}"
        );
        for script in [user_data(&catalog, "eu-west-1"), scheduled, part] {
            let out = std::process::Command::new("bash").args(["-n", "-c", &script]).output().unwrap();
            assert!(out.status.success(), "{}\n{script}", String::from_utf8_lossy(&out.stderr));
            assert!(script.contains("trap finish EXIT"));
        }
        assert_eq!(log_key(&catalog, "i-0abc"), "team/worker-logs/i-0abc.log");
    }

    /// The script's `json` helper makes strings serde reads back, whatever the reason text.
    #[test]
    fn the_scripts_json_strings_read_back() {
        let script = boot_script(&catalog(), "eu-west-1", "");
        let helper = script.lines().find(|l| l.starts_with("json()")).unwrap();
        for text in ["plain", r#"with "quotes" and \ backslash"#, "tab\tand\nnewline", ""] {
            let out = std::process::Command::new("bash")
                .args(["-c", &format!("{helper}\njson \"$1\""), "json", text])
                .output()
                .unwrap();
            let read: String = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{text:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
            assert_eq!(read, text.replace(['\t', '\n'], ""), "{text:?}");
        }
    }

    #[test]
    fn slices_read_as_written_and_name_their_part() {
        let slice: Slice = "2/5".parse().unwrap();
        assert_eq!(slice, Slice { index: 1, count: 5 });
        assert_eq!(slice.to_string(), "2/5");
        assert_eq!(slice.label("eu-west-1"), "eu-west-1-2of5");
        assert_eq!(Slice::WHOLE.label("eu-west-1"), "eu-west-1");
        for bad in ["0/5", "6/5", "2", "a/b", "1/0"] {
            assert!(bad.parse::<Slice>().unwrap_err().contains("write K/N"), "{bad}");
        }
    }

    /// The record the script writes reads back as a [`WorkerRecord`], with the part when
    /// there is one.
    #[test]
    fn the_scripts_record_reads_back() {
        let script = boot_script(&catalog(), "eu-west-1", "");
        let helper = |name: &str| {
            let start = script.find(&format!("{name}() {{")).unwrap();
            let end = start + script[start..].find("\n}\n").unwrap() + 3;
            script[start..end].to_string()
        };
        let json = script.lines().find(|l| l.starts_with("json()")).unwrap();
        for part in ["", "us-east-2"] {
            // `aws s3 cp - <key>` stands for the upload: it prints what it was given.
            let program = format!(
                "aws() {{ cat; }}\n{json}\n{}\nINSTANCE_ID=i-0abc POLICY=prod RULE=daily PART='{part}' TASK=run \
                 STARTED_AT=2026-12-04T03:00:05Z RECORD=k\nrecord ', \"exit_status\": 0'",
                helper("record")
            );
            let out = std::process::Command::new("bash").args(["-c", &program]).output().unwrap();
            let record: WorkerRecord = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
            assert_eq!(record.part.as_deref(), Some(part).filter(|p| !p.is_empty()));
            assert_eq!(record.exit_status, Some(0));
        }
    }

    #[test]
    fn a_records_name_sorts_by_start_time() {
        let record: WorkerRecord = serde_json::from_str(
            r#"{"format_version": 1, "instance_id": "i-0abc", "policy": "prod", "rule": "daily",
                "task": "run", "started_at": "2026-11-30T03:04:05Z", "log_key": "k", "reason": ""}"#,
        )
        .unwrap();
        assert_eq!(record.name(), "prod/20261130T030405Z-i-0abc");
        assert_eq!(record.reason(), None, "an empty reason is none");
    }
}
