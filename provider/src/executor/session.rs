//! Session records: what one run did, per resource, stored in the catalog
//! as `sessions/<policy>/<run id>.json` (a re-run with the same id replaces
//! its record).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::scope::ResourceKind;
use crate::catalog::{Catalog, CatalogError, Kind};

pub const FORMAT_VERSION: u32 = 1;

/// Ordered from best to worst, so `max` is the worse of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    Success,
    /// Done, with something the user should look at (a resource failed, a
    /// replica was not made, retention could not delete).
    Warning,
    Failed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Success => "Success",
            Outcome::Warning => "Warning",
            Outcome::Failed => "Failed",
        })
    }
}

/// One snapshot or replica a run made (or found from an earlier attempt of
/// the same run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: String,
    pub region: String,
    /// `snapshot` or `replica`.
    pub kind: String,
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
    pub backups: Vec<super::image::BackupRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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

    /// The record of a scheduled run that could not start.
    pub fn not_started(firing: &super::agent::Firing, why: String) -> Self {
        let now = Utc::now();
        Self {
            format_version: FORMAT_VERSION,
            policy: firing.policy.clone(),
            run_id: firing.run_id(),
            rules: firing.rules.clone(),
            started_at: now,
            finished_at: now,
            outcome: Outcome::Failed,
            messages: vec![format!("the run could not start: {why}")],
            resources: Vec::new(),
            retention: RetentionRecord::default(),
        }
    }

    pub async fn save(&self, catalog: &Catalog<'_>) -> Result<(), CatalogError> {
        catalog.put(Kind::Session, &format!("{}/{}", self.policy, self.run_id), self).await.map(|_| ())
    }
}

/// The newest `limit` sessions of a policy, newest first (run ids sort by
/// time).
pub async fn recent(catalog: &Catalog<'_>, policy: &str, limit: usize) -> Result<Vec<Session>, CatalogError> {
    let names = catalog.list(Kind::Session, &format!("{policy}/")).await?;
    let mut sessions = Vec::new();
    for name in names.iter().rev().take(limit) {
        match catalog.get::<Session>(Kind::Session, name).await {
            Ok(doc) => sessions.push(doc.body),
            Err(CatalogError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sessions)
}
