//! Session records (`sessions/<policy>/<run id>.json`): what one run did,
//! per resource. A re-run with the same id replaces its record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogDocument, Kind};
use crate::configuration::ResourceConfiguration;

crate::names! {
    /// A snapshot in the policy's own region, or a replica a region mapping made of one.
    pub enum SnapshotKind as "lowercase" {
        Snapshot,
        Replica,
    }
}

crate::names! {
    /// An image-level restore point: by the rule's `backup` block or its `archive` block.
    pub enum BackupKind as "lowercase" {
        Backup,
        Archive,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    Ec2Instance,
    RdsInstance,
    /// Aurora or Multi-AZ DB cluster: snapshotted as a whole.
    RdsCluster,
}

impl ResourceKind {
    pub fn noun(self) -> &'static str {
        match self {
            ResourceKind::Ec2Instance => "EC2 instance",
            ResourceKind::RdsInstance => "DB instance",
            ResourceKind::RdsCluster => "DB cluster",
        }
    }
}

/// Ordered from best to worst, so `max` is the worse of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    Success,
    /// Done, with something the user should look at (a resource failed, a
    /// replica was not made, retention could not delete).
    Warning,
    Failed,
    /// The run never happened: nothing started it by its due time and the grace after.
    /// Never written by a run; the session history shows it in place of the missing record.
    Missed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Success => "Success",
            Outcome::Warning => "Warning",
            Outcome::Failed => "Failed",
            Outcome::Missed => "Missed",
        })
    }
}

/// One snapshot or replica a run made (or found from an earlier attempt of
/// the same run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: String,
    pub region: String,
    pub kind: SnapshotKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// Replicas: the region mapping, and the account when it is another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Made by an earlier attempt of this run, not by this one.
    #[serde(default)]
    pub reused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub id: String,
    pub region: String,
    pub kind: ResourceKind,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    #[serde(default)]
    pub snapshots: Vec<SnapshotRecord>,
    /// Image-level restore points (backup, archive) made of its volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What a restore of this run's points rebuilds the resource from
    /// (format 2 on; absent in older records and when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ResourceConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRecord {
    /// Snapshot and replica ids deleted.
    pub deleted: Vec<String>,
    /// Restore points kept.
    pub kept: usize,
    /// Of those, points no rule of the policy manages any more.
    pub unmanaged: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub format_version: u32,
    pub policy: String,
    pub run_id: String,
    pub rules: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: Outcome,
    /// Run-level notes: regions that could not be listed, an empty scope,
    /// steps not available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    pub resources: Vec<ResourceRecord>,
    pub retention: RetentionRecord,
}

impl Session {
    /// Success when everything worked; Failed when nothing did (every
    /// resource failed, or there was nothing to do because listing failed);
    /// Warning in between.
    pub fn decide_outcome(
        resources: &[ResourceRecord],
        messages: &[String],
        retention: &RetentionRecord,
        listing_failed: bool,
    ) -> Outcome {
        let failed = resources.iter().filter(|r| r.outcome == Outcome::Failed).count();
        if (!resources.is_empty() && failed == resources.len()) || (resources.is_empty() && listing_failed) {
            Outcome::Failed
        } else if failed > 0
            || resources.iter().any(|r| r.outcome == Outcome::Warning)
            || !messages.is_empty()
            || !retention.errors.is_empty()
        {
            Outcome::Warning
        } else {
            Outcome::Success
        }
    }

    /// The record of a run that could not start: Failed, with why.
    pub fn not_started(policy: &str, run_id: String, rules: Vec<String>, why: &str) -> Self {
        let now = Utc::now();
        Self {
            format_version: Self::FORMAT_VERSION,
            policy: policy.to_string(),
            run_id,
            rules,
            started_at: now,
            finished_at: now,
            outcome: Outcome::Failed,
            messages: vec![format!("the run could not start: {why}")],
            resources: Vec::new(),
            retention: RetentionRecord::default(),
        }
    }

    /// The session's name in its folder: `<policy>/<run id>`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.policy, self.run_id)
    }
}

impl CatalogDocument for Session {
    const KIND: Kind = Kind::Session;
    /// 2: resources carry their `configuration`.
    const FORMAT_VERSION: u32 = 2;
}

/// One restore point made (or found from an earlier attempt) by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub kind: BackupKind,
    pub repository_id: String,
    pub point_id: String,
    pub volume_id: String,
    pub snapshot_id: String,
    /// Read only the blocks changed since the parent point's snapshot.
    pub incremental: bool,
    pub blocks_read: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub duration_ms: u64,
    #[serde(default)]
    pub reused: bool,
    /// The worker instance that made it, when a scheduled worker did (`coffer run` by hand
    /// and `coffer agent` make points in-process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}
