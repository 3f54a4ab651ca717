//! The backup policy document (`policies/<name>.json`): what is protected,
//! when, and how long — written by `coffer_backup_policy`, run by workers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogDocument, Kind};

crate::names! {
    /// What a policy protects: the `type` attribute, one service per policy.
    pub enum PolicyType as "lowercase" {
        /// EC2 instances: EBS snapshots of their volumes, replicas, image-level backups.
        Ec2,
        /// DB instances and clusters: DB (cluster) snapshots and replicas.
        Rds,
    }
}

/// The catalog document workers run from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    pub format_version: u32,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: PolicyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub enabled: bool,
    pub source: Source,
    pub rules: Vec<Rule>,
    pub worker_configuration_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_role_arn: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// How long a run may take before it is stopped and recorded as Failed, as the user
    /// wrote it (`6h`, `90m`); absent: [`DEFAULT_MAX_RUN_TIME`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_time: Option<String>,
    /// The instance type schedules launch for firings that move no data; absent:
    /// [`DEFAULT_SNAPSHOT_INSTANCE_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_instance_type: Option<String>,
    /// How many volumes one worker reads in a scheduled run before the region's image-level
    /// work is spread over more workers; absent: [`DEFAULT_VOLUMES_PER_WORKER`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes_per_worker: Option<u32>,
}

/// A run's time limit when the policy sets none.
pub const DEFAULT_MAX_RUN_TIME: &str = "12h";

/// Workers of firings without image-level steps only call AWS APIs (snapshots, copies,
/// tags, the catalog): the smallest current x86_64 type that boots Amazon Linux 2023 with
/// room for the AWS CLI, offered in every commercial region.
pub const DEFAULT_SNAPSHOT_INSTANCE_TYPE: &str = "t3.micro";

/// A worker reads one volume at a time per repository: 50 volumes keep one worker's queue to
/// a night for incremental volumes of typical size. A chosen bound, not a measured one.
pub const DEFAULT_VOLUMES_PER_WORKER: u32 = 50;

/// The most workers one region's image-level work of a run is spread over, whatever its
/// size: each is an instance against the account's vCPU quota.
pub const MAX_WORKERS_PER_REGION: usize = 20;

impl PolicyDocument {
    /// See [`DEFAULT_VOLUMES_PER_WORKER`].
    pub fn volumes_per_worker(&self) -> u32 {
        self.volumes_per_worker.filter(|n| *n > 0).unwrap_or(DEFAULT_VOLUMES_PER_WORKER)
    }

    /// The policy's run time limit. A document whose text does not parse (written by hand)
    /// gets the default rather than no limit.
    pub fn max_run_time(&self) -> std::time::Duration {
        self.max_run_time
            .as_deref()
            .and_then(|t| crate::validation::parse_duration(t).ok())
            .unwrap_or_else(Self::default_max_run_time)
    }

    /// The instance type of workers launched for rules that move no data.
    pub fn snapshot_instance_type(&self) -> &str {
        self.snapshot_instance_type.as_deref().unwrap_or(DEFAULT_SNAPSHOT_INSTANCE_TYPE)
    }

    /// [`DEFAULT_MAX_RUN_TIME`] as a duration.
    pub fn default_max_run_time() -> std::time::Duration {
        crate::validation::parse_duration(DEFAULT_MAX_RUN_TIME).expect("the default parses")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub regions: Vec<String>,
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub exclude_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Keep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicate: Option<Replicate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<ToRepository>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ToRepository>,
}

impl Rule {
    /// Whether the rule reads volume data through its worker (image-level `backup` or
    /// `archive`); snapshots and replicas are made by AWS.
    pub fn moves_data(&self) -> bool {
        self.backup.is_some() || self.archive.is_some()
    }
}

/// How long restore points of one kind are kept: exactly one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retain {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    pub retain: Retain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicate {
    pub region_mapping_ids: Vec<String>,
    pub retain: Retain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToRepository {
    pub repository_id: String,
    pub retain: Retain,
}

impl CatalogDocument for PolicyDocument {
    const KIND: Kind = Kind::Policy;
    const FORMAT_VERSION: u32 = 1;
}
