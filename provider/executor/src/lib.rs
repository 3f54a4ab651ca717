//! The executor: what `coffer run` and `coffer agent` do with a backup
//! policy. A run resolves the policy's scope in every region
//! ([`scope`]), snapshots each resource and replicates the snapshots
//! through the rule's region mappings ([`run`], [`replication`], over `coffer_aws::snapshots`), applies
//! retention ([`retention`], a pure function, over [`inventory`]), and
//! records a [`session`] in the catalog.
//!
//! Everything a run makes is tagged (see the `TAG_*` constants), and the
//! tags are the source of truth: the inventory, retention, the data sources
//! and idempotency (a re-run with the same run id reuses what the first
//! attempt made) all read them back from AWS.

pub mod agent;
pub mod history;
pub mod image;
pub mod inventory;
pub mod limits;
pub mod parts;
pub mod preflight;
pub mod replication;
pub mod restore;
pub mod retention;
pub mod run;
pub mod scope;
pub mod session;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::Mutex;

use coffer_aws::catalog::{Catalog, CatalogError, Kind};
use coffer_aws::{AssumeRole, AwsClients};
use coffer_model::CatalogLocation;
use coffer_model::policy::PolicyDocument;
use coffer_model::region_mapping::RegionMappingDocument;

/// The policy a restore point belongs to.
pub const TAG_POLICY: &str = "coffer:policy";
/// The rules that made it, separated by spaces (rules due in the same
/// minute run once, so a point can carry several).
pub const TAG_RULE: &str = "coffer:rule";
/// The run that made it.
pub const TAG_RUN: &str = "coffer:run";
/// `snapshot` or `replica`.
pub const TAG_KIND: &str = "coffer:kind";
/// The protected resource: EC2 instance id, DB instance or cluster identifier.
pub const TAG_SOURCE: &str = "coffer:source";
/// The run's time (RFC 3339, UTC): a replica keeps its original's time.
pub const TAG_TIME: &str = "coffer:time";
/// On replicas: the snapshot copied, its region, and the mapping used.
pub const TAG_SOURCE_SNAPSHOT: &str = "coffer:source-snapshot";
pub const TAG_SOURCE_REGION: &str = "coffer:source-region";
pub const TAG_MAPPING: &str = "coffer:mapping";
/// On EBS replicas: the volume the original snapshot is of (EBS reports
/// `vol-ffffffff` as a copy's volume).
pub const TAG_VOLUME: &str = "coffer:volume";

#[derive(Debug, Error)]
pub enum ExecutorError {
    // Every variant but `Catalog` is a configuration problem that the
    // same run would hit again; `Catalog` may pass (see `is_lasting`).
    #[error("backup policy {0} is not in the catalog (s3://{1}); apply it with Terraform first")]
    UnknownPolicy(String, String),
    #[error("backup policy {policy} has no rule {rule}; its rules: {known}")]
    UnknownRule { policy: String, rule: String, known: String },
    #[error("reading {what} from the catalog: {cause}")]
    Catalog { what: String, cause: CatalogError },
    #[error("region mapping {0} used by the policy is not in the catalog")]
    UnknownMapping(String),
    #[error("assuming {role}: {cause}")]
    AssumeRole { role: String, cause: String },
    #[error(
        "invalid run id {0:?}: use 1-40 lowercase letters, digits and single hyphens, starting with a letter or digit"
    )]
    InvalidRunId(String),
}

impl ExecutorError {
    /// Whether trying the same run again later cannot help (a policy, rule
    /// or mapping that is not there, a role that cannot be assumed).
    pub fn is_lasting(&self) -> bool {
        !matches!(self, ExecutorError::Catalog { .. })
    }
}

/// How hard a run pushes AWS.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Resources whose snapshots are started at once in one region.
    pub concurrency: usize,
    /// How long to wait for one snapshot or copy to complete.
    pub wait_timeout: Duration,
    /// First delay between completion checks; it doubles up to a minute.
    pub poll_interval: Duration,
    /// Opens repositories encrypted with a password (KMS ones need none).
    pub repository_password: Option<String>,
    /// The worker instance this process runs on ([`WORKER_INSTANCE_ENV`], set by the boot
    /// script): named in the session beside each restore point it makes.
    pub worker_instance_id: Option<String>,
    /// The rule whose schedule launched this process's worker (`coffer run --scheduled`). Such
    /// a worker, in the home region, hands the image-level work of the policy's other regions
    /// to workers it launches there ([`parts`]); without it a run does everything in-process.
    pub launched_for: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            wait_timeout: Duration::from_secs(4 * 3600),
            poll_interval: Duration::from_secs(5),
            repository_password: None,
            worker_instance_id: None,
            launched_for: None,
        }
    }
}

/// The environment variable that opens password repositories, for the
/// `coffer` command and for the provider's data sources alike.
pub const REPOSITORY_PASSWORD_ENV: &str = "COFFER_REPOSITORY_PASSWORD";

/// Set by the worker boot script to the instance's id.
pub const WORKER_INSTANCE_ENV: &str = "COFFER_WORKER_INSTANCE_ID";

/// The worker instance id from [`WORKER_INSTANCE_ENV`], when set and not empty.
pub fn worker_instance_from_env() -> Option<String> {
    std::env::var(WORKER_INSTANCE_ENV).ok().filter(|id| !id.is_empty())
}

/// The repository password from [`REPOSITORY_PASSWORD_ENV`], when set and
/// not empty.
pub fn repository_password_from_env() -> Option<String> {
    std::env::var(REPOSITORY_PASSWORD_ENV).ok().filter(|p| !p.is_empty())
}

/// The AWS clients and catalog a run works with.
pub struct Executor {
    pub aws: Arc<AwsClients>,
    pub catalog_location: CatalogLocation,
    catalog_ready: tokio::sync::OnceCell<()>,
    pub settings: Settings,
    /// Clients acting through region mappings' target roles, by role ARN.
    assumed: Mutex<HashMap<String, Arc<AwsClients>>>,
}

impl Executor {
    pub fn new(aws: impl Into<Arc<AwsClients>>, catalog_location: CatalogLocation, settings: Settings) -> Self {
        Self {
            aws: aws.into(),
            catalog_location,
            catalog_ready: tokio::sync::OnceCell::new(),
            settings,
            assumed: Mutex::default(),
        }
    }

    pub fn catalog(&self) -> Catalog<'_> {
        Catalog::new(&self.aws, &self.catalog_location, &self.catalog_ready)
    }

    pub async fn policy(&self, name: &str) -> Result<PolicyDocument, ExecutorError> {
        match self.catalog().get::<PolicyDocument>(name).await {
            Ok(doc) => Ok(doc.body),
            Err(CatalogError::NotFound) => Err(ExecutorError::UnknownPolicy(
                name.to_string(),
                format!("{}/{}", self.catalog_location.bucket, self.catalog_location.prefix),
            )),
            Err(cause) => Err(ExecutorError::Catalog { what: format!("backup policy {name}"), cause }),
        }
    }

    /// Every policy in the catalog, by name.
    pub async fn policies(&self) -> Result<BTreeMap<String, PolicyDocument>, ExecutorError> {
        let catalog = self.catalog();
        let names = catalog
            .list(Kind::Policy, "")
            .await
            .map_err(|cause| ExecutorError::Catalog { what: "the backup policies".into(), cause })?;
        let mut policies = BTreeMap::new();
        for name in names {
            match catalog.get::<PolicyDocument>(&name).await {
                Ok(doc) => {
                    policies.insert(name, doc.body);
                }
                // Deleted between listing and reading.
                Err(CatalogError::NotFound) => {}
                Err(cause) => return Err(ExecutorError::Catalog { what: format!("backup policy {name}"), cause }),
            }
        }
        Ok(policies)
    }

    pub async fn region_mapping(&self, id: &str) -> Result<RegionMappingDocument, ExecutorError> {
        match self.catalog().get::<RegionMappingDocument>(id).await {
            Ok(doc) => Ok(doc.body),
            Err(CatalogError::NotFound) => Err(ExecutorError::UnknownMapping(id.to_string())),
            Err(cause) => Err(ExecutorError::Catalog { what: format!("region mapping {id}"), cause }),
        }
    }

    /// The region mappings `rules` replicate through, by id.
    pub async fn region_mappings<'r>(
        &self,
        rules: impl IntoIterator<Item = &'r coffer_model::policy::Rule>,
    ) -> Result<BTreeMap<String, RegionMappingDocument>, ExecutorError> {
        let mut mappings = BTreeMap::new();
        for id in rules.into_iter().filter_map(|r| r.replicate.as_ref()).flat_map(|r| &r.region_mapping_ids) {
            if !mappings.contains_key(id) {
                mappings.insert(id.clone(), self.region_mapping(id).await?);
            }
        }
        Ok(mappings)
    }

    /// The clients of a mapping's target account: these clients, or the
    /// same ones acting through `role`.
    pub async fn clients_for(&self, role: Option<&str>) -> Result<Option<Arc<AwsClients>>, ExecutorError> {
        let Some(role) = role else { return Ok(None) };
        let mut assumed = self.assumed.lock().await;
        if let Some(clients) = assumed.get(role) {
            return Ok(Some(clients.clone()));
        }
        let clients = self
            .aws
            .assuming(AssumeRole {
                role_arn: role.to_string(),
                external_id: None,
                session_name: Some("coffer-replicate".into()),
                duration: None,
            })
            .await
            .map_err(|e| ExecutorError::AssumeRole { role: role.to_string(), cause: e.to_string() })?;
        let clients = Arc::new(clients);
        assumed.insert(role.to_string(), clients.clone());
        Ok(Some(clients))
    }
}

/// Checks a run id: it becomes part of tags and RDS snapshot identifiers.
pub fn check_run_id(id: &str) -> Result<(), ExecutorError> {
    let ok = (1..=40).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
        && !id.contains("--");
    if ok { Ok(()) } else { Err(ExecutorError::InvalidRunId(id.to_string())) }
}

/// A fresh run id: the UTC time to the second and a random suffix, so ids
/// sort by time.
pub fn new_run_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..4];
    format!("{}-{suffix}", now.format("%Y%m%d-%H%M%S"))
}

/// The run id of a scheduled firing: the due minute, so a firing repeated
/// after a crash reuses what the first attempt made.
pub fn scheduled_run_id(due: chrono::DateTime<chrono::Utc>) -> String {
    due.format("%Y%m%d-%H%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_safe_in_tags_and_rds_identifiers() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T02:00:05Z").unwrap().to_utc();
        assert!(check_run_id(&new_run_id(now)).is_ok());
        assert_eq!(scheduled_run_id(now), "20261123-0200");
        for bad in ["", "-a", "a-", "a--b", "A1", "a_b", &"a".repeat(41)] {
            assert!(check_run_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}
