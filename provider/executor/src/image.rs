//! The image-level steps of a run: each EC2 volume snapshot of the run is
//! read through the EBS direct APIs into the repositories of the rules'
//! `backup` (and `archive`) blocks, incrementally against the volume's
//! previous restore point there; then retention on restore points and a
//! prune of each repository.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Mutex;

use super::retention::{self, Retain, Verdict};
use super::run::Plan;
use super::scope::Resource;
use super::{Executor, REPOSITORY_PASSWORD_ENV, TAG_VOLUME};
use coffer_aws::catalog::CatalogError;
use coffer_aws::ebs_blocks::EbsSnapshotSource;
use coffer_aws::s3_storage::S3Storage;
use coffer_aws::snapshots::StoredSnapshot;
use coffer_model::policy::{PolicyDocument, Retain as RetainDocument, Rule};
use coffer_model::repository::RepositoryEntry;
use coffer_model::session::{BackupKind, BackupRecord};
use coffer_repository::KeyService;
use coffer_repository::lock::Lock;
use coffer_repository::manifest::{Manifest, Source};
use coffer_repository::prune;
use coffer_repository::{KeyEnvelope, KeyError, MasterKey, PointMeta, RepoError, Repository, RepositoryConfig};

/// Blocks read (and processed) at once per volume.
const BLOCKS_IN_FLIGHT: usize = 16;

/// Where a set of rules sends image-level copies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub repository_id: String,
    pub archive: bool,
    pub rules: Vec<String>,
}

/// The repositories a run's rules write to, grouped so that rules due
/// together make one restore point per volume and repository.
pub fn targets(rules: &[&Rule]) -> Vec<Target> {
    let mut by_repo: BTreeMap<(String, bool), Vec<String>> = BTreeMap::new();
    for rule in rules {
        if let Some(b) = &rule.backup {
            by_repo.entry((b.repository_id.clone(), false)).or_default().push(rule.name.clone());
        }
        if let Some(a) = &rule.archive {
            by_repo.entry((a.repository_id.clone(), true)).or_default().push(rule.name.clone());
        }
    }
    by_repo.into_iter().map(|((repository_id, archive), rules)| Target { repository_id, archive, rules }).collect()
}

/// An image-level restore point as listed: what one run made of one
/// resource in one repository (one repository point per volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImagePoint {
    pub policy: String,
    pub resource_id: String,
    /// The resource's region.
    pub region: String,
    pub kind: BackupKind,
    pub repository_id: String,
    pub run_id: String,
    pub time: DateTime<Utc>,
    pub rules: BTreeSet<String>,
    /// The repository's restore points, one per volume (`coffer restore --point`).
    pub point_ids: Vec<String>,
    pub volume_ids: Vec<String>,
}

impl ImagePoint {
    /// The id `coffer points` shows and `coffer restore --point` takes.
    pub fn id(&self) -> coffer_model::point_id::PointId {
        coffer_model::point_id::PointId {
            policy: self.policy.clone(),
            kind: self.kind.into(),
            place: self.repository_id.clone(),
            resource_id: self.resource_id.clone(),
            run_id: self.run_id.clone(),
        }
    }

    /// What `coffer restore --point` turns it into (one volume's point also
    /// restores to a file, with `--repository` and its id in `point_ids`).
    pub fn restore_targets(&self) -> &'static [&'static str] {
        &["volume", "instance", "original", "snapshot"]
    }
}

/// The image-level restore points of `policy` in the repositories its rules
/// write to, oldest first per resource, read without a lock; and the
/// repositories that could not be read.
pub async fn list_points(executor: &Executor, policy: &PolicyDocument) -> (Vec<ImagePoint>, Vec<String>) {
    let rules: Vec<&Rule> = policy.rules.iter().collect();
    // Per repository, the rules archiving into it: a point made for them is
    // an archive (a repository may take both from different rules).
    let mut repositories: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for target in targets(&rules) {
        let archiving = repositories.entry(target.repository_id.clone()).or_default();
        if target.archive {
            archiving.extend(target.rules.iter().cloned());
        }
    }
    // One point per resource, time and run, region, kind and repository: oldest first per resource.
    type PointKey = (String, DateTime<Utc>, String, String, BackupKind, String);
    let mut points: BTreeMap<PointKey, ImagePoint> = BTreeMap::new();
    let mut errors = Vec::new();
    for (repository_id, archiving) in &repositories {
        let manifests = match executor.read_repository(repository_id).await {
            Ok(repo) => repo.manifests().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let manifests = match manifests {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("reading repository {repository_id}: {e}"));
                continue;
            }
        };
        for m in manifests.into_iter().filter(|m| m.policy == policy.name) {
            let kind =
                if m.rules.iter().any(|r| archiving.contains(r)) { BackupKind::Archive } else { BackupKind::Backup };
            let key = (
                m.source.resource_id.clone(),
                m.time,
                m.run.clone(),
                m.source.region.clone(),
                kind,
                repository_id.clone(),
            );
            let point = points.entry(key).or_insert_with(|| ImagePoint {
                policy: policy.name.clone(),
                resource_id: m.source.resource_id.clone(),
                region: m.source.region.clone(),
                kind,
                repository_id: repository_id.clone(),
                run_id: m.run.clone(),
                time: m.time,
                rules: BTreeSet::new(),
                point_ids: Vec::new(),
                volume_ids: Vec::new(),
            });
            point.rules.extend(m.rules.iter().cloned());
            point.point_ids.push(m.id.clone());
            point.volume_ids.push(m.source.volume_id.clone());
        }
    }
    (points.into_values().collect(), errors)
}

/// A repository opened for a run: shared-locked, with its restore points.
pub struct OpenRepository {
    pub repo: Repository,
    pub manifests: Vec<Manifest>,
    lock: Option<Lock>,
}

/// The run's open repositories, opened on first use.
#[derive(Default)]
pub struct Repositories {
    open: Mutex<HashMap<String, OpenedOrError>>,
}

/// A repository opened for the run (one backup at a time writes to it), or
/// why it could not be.
type OpenedOrError = Result<Arc<Mutex<OpenRepository>>, String>;

impl Repositories {
    pub async fn get(&self, executor: &Executor, id: &str) -> Result<Arc<Mutex<OpenRepository>>, String> {
        let mut open = self.open.lock().await;
        if let Some(found) = open.get(id) {
            return found.clone();
        }
        let opened = async {
            let (repo, lock) = executor.open_repository(id, "backup").await.map_err(|e| e.to_string())?;
            let manifests = repo.manifests().await.map_err(|e| e.to_string())?;
            Ok(Arc::new(Mutex::new(OpenRepository { repo, manifests, lock: Some(lock) })))
        }
        .await
        .map_err(|e: String| format!("opening repository {id}: {e}"));
        open.insert(id.to_string(), opened.clone());
        opened
    }

    /// Reads the repository's restore points again (other workers added some), opening it if
    /// the run has not.
    pub async fn reload(&self, executor: &Executor, id: &str) -> Result<(), String> {
        let opened = self.open.lock().await.get(id).cloned();
        match opened {
            Some(Ok(open)) => {
                let mut open = open.lock().await;
                open.manifests = open.repo.manifests().await.map_err(|e| e.to_string())?;
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => self.get(executor, id).await.map(drop),
        }
    }

    /// Releases the shared locks (before prune takes the exclusive one).
    pub async fn release(&self) -> Vec<(String, Arc<Mutex<OpenRepository>>)> {
        let mut out = Vec::new();
        for (id, open) in self.open.lock().await.drain() {
            if let Ok(open) = open {
                if let Some(lock) = open.lock().await.lock.take()
                    && let Err(e) = lock.release().await
                {
                    tracing::warn!(repository = %id, "releasing the repository lock: {e}");
                }
                out.push((id, open));
            }
        }
        out
    }
}

/// Why a repository named by id could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenRepositoryError {
    #[error("reading repository {id} from the catalog: {cause}")]
    Catalog { id: String, cause: CatalogError },
    #[error(transparent)]
    Repository(#[from] RepoError),
    #[error("repository {name} ({id}): {cause}")]
    Key { name: String, id: String, cause: RepositoryKeyError },
}

/// Why a repository's master key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryKeyError {
    #[error(
        "the repository is encrypted with a password and has no workers' key: set {REPOSITORY_PASSWORD_ENV}, or worker_kms_key_arn on its coffer_repository so workers open it with KMS"
    )]
    NoPassword,
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl Executor {
    /// A repository's storage, config and master key, by id (the catalog
    /// says where it is): KMS repositories unwrap their key with KMS,
    /// password ones need `COFFER_REPOSITORY_PASSWORD`
    /// (settings.repository_password).
    async fn unlock_repository(
        &self,
        id: &str,
    ) -> Result<(Arc<S3Storage>, RepositoryConfig, MasterKey), OpenRepositoryError> {
        let entry = self
            .catalog()
            .get::<RepositoryEntry>(id)
            .await
            .map_err(|cause| OpenRepositoryError::Catalog { id: id.to_string(), cause })?
            .body;
        let (storage, config) = self.repository_config(&entry).await?;
        let master = self.repository_key(&config).await.map_err(|cause| OpenRepositoryError::Key {
            name: entry.name.clone(),
            id: id.to_string(),
            cause,
        })?;
        Ok((storage, config, master))
    }

    /// A repository's master key: unwrapped with KMS (the worker's or
    /// caller's credentials), or opened with `COFFER_REPOSITORY_PASSWORD`
    /// (settings.repository_password), or — a password repository without the password —
    /// unwrapped from its workers' envelope with KMS.
    pub async fn repository_key(&self, config: &RepositoryConfig) -> Result<MasterKey, RepositoryKeyError> {
        match &config.key {
            KeyEnvelope::Kms { kms_key_arn, .. } => {
                let kms =
                    self.aws.kms(coffer_model::validation::arn_region(kms_key_arn).unwrap_or(&self.aws.home_region));
                Ok(coffer_aws::kms_keys::KmsKeys::new(kms).unwrap(config).await?)
            }
            KeyEnvelope::Password { .. } => match (&self.settings.repository_password, &config.worker_key) {
                (Some(password), _) => Ok(config.open_with_password(password)?),
                // Workers: the envelope a KMS key their role may use wraps.
                (None, Some(envelope)) => {
                    let region =
                        coffer_model::validation::arn_region(&envelope.kms_key_arn).unwrap_or(&self.aws.home_region);
                    let kms = coffer_aws::kms_keys::KmsKeys::new(self.aws.kms(region));
                    Ok(kms.unwrap_for_workers(config, envelope).await?)
                }
                (None, None) => Err(RepositoryKeyError::NoPassword),
            },
        }
    }

    /// The storage a catalog entry points at, and the config object there.
    async fn repository_config(
        &self,
        entry: &RepositoryEntry,
    ) -> Result<(Arc<S3Storage>, RepositoryConfig), OpenRepositoryError> {
        let storage = Arc::new(S3Storage::new(self.aws.s3(&entry.region), &entry.bucket, &entry.prefix));
        let config = Repository::read_config(storage.as_ref()).await?;
        Ok((storage, config))
    }

    /// Whether a worker, which has no password, can open the repository: KMS-encrypted, or
    /// a password repository with its workers' envelope (read from its config object, the
    /// truth, not from the catalog entry).
    pub async fn workers_can_open(&self, entry: &RepositoryEntry) -> Result<bool, OpenRepositoryError> {
        let (_, config) = self.repository_config(entry).await?;
        Ok(matches!(config.key, KeyEnvelope::Kms { .. }) || config.worker_key.is_some())
    }

    /// Opens a repository by id, holding a shared lock for `purpose` until
    /// the returned lock is released.
    pub async fn open_repository(&self, id: &str, purpose: &str) -> Result<(Repository, Lock), OpenRepositoryError> {
        let (storage, config, master) = self.unlock_repository(id).await?;
        Ok(Repository::open_locked(storage, config, &master, purpose).await?)
    }

    /// Opens a repository by id to read it, without a lock (listing points).
    pub async fn read_repository(&self, id: &str) -> Result<Repository, OpenRepositoryError> {
        let (storage, config, master) = self.unlock_repository(id).await?;
        Ok(Repository::open_with_key(storage, config, &master).await?)
    }

    /// Backs up the volume snapshots of one instance into every target.
    pub(super) async fn image_backups(
        &self,
        plan: &Plan<'_>,
        resource: &Resource,
        snapshots: &[StoredSnapshot],
    ) -> (Vec<BackupRecord>, Vec<String>) {
        let (policy, run_id, time) = (plan.policy, plan.run_id.as_str(), plan.time);
        let (targets, repositories) = (&plan.targets, &plan.repositories);
        let mut records = Vec::new();
        let mut warnings = Vec::new();
        for target in targets {
            let open = match repositories.get(self, &target.repository_id).await {
                Ok(open) => open,
                Err(e) => {
                    warnings.push(e);
                    continue;
                }
            };
            for snapshot in snapshots {
                let volume =
                    snapshot.tags.get(TAG_VOLUME).cloned().or_else(|| snapshot.volume_id.clone()).unwrap_or_default();
                match self.backup_volume(policy, run_id, time, target, &open, resource, snapshot, &volume).await {
                    Ok(record) => {
                        records.push(BackupRecord { worker: self.settings.worker_instance_id.clone(), ..record })
                    }
                    Err(e) => warnings.push(format!(
                        "{} of {volume} ({}) into repository {}: {e}",
                        if target.archive { "archiving" } else { "backing up" },
                        snapshot.id,
                        target.repository_id
                    )),
                }
            }
        }
        (records, warnings)
    }

    #[allow(clippy::too_many_arguments)]
    async fn backup_volume(
        &self,
        policy: &PolicyDocument,
        run_id: &str,
        time: DateTime<Utc>,
        target: &Target,
        open: &Mutex<OpenRepository>,
        resource: &Resource,
        snapshot: &StoredSnapshot,
        volume: &str,
    ) -> Result<BackupRecord, String> {
        let clock = Instant::now();
        let kind = if target.archive { BackupKind::Archive } else { BackupKind::Backup };
        let mut open = open.lock().await;
        let same_volume = |m: &&Manifest| {
            m.source.volume_id == volume && m.source.resource_id == resource.id && m.source.region == resource.region
        };
        // A re-run of the same run finds what its first attempt made.
        if let Some(done) = open.manifests.iter().filter(same_volume).find(|m| m.run == run_id) {
            return Ok(record(kind, target, done, snapshot, false, clock, true));
        }
        let parent = open.manifests.iter().filter(same_volume).max_by_key(|m| (m.time, m.id.clone())).cloned();
        let source = EbsSnapshotSource::new(self.aws.ebs(&resource.region), &snapshot.id);
        let meta = PointMeta {
            time: Some(time),
            policy: policy.name.clone(),
            rules: target.rules.clone(),
            run: run_id.to_string(),
            tags: policy.tags.clone(),
            source: Source {
                kind: "ebs-snapshot".into(),
                name: String::new(),
                resource_id: resource.id.clone(),
                volume_id: volume.to_string(),
                device: String::new(),
                region: resource.region.clone(),
            },
        };
        let manifest = open
            .repo
            .backup(&source, parent.as_ref(), meta, BLOCKS_IN_FLIGHT, &|_, _| {})
            .await
            .map_err(|e| e.to_string())?;
        let incremental = manifest.stats.incremental;
        tracing::info!(volume, point = %manifest.id, blocks_read = manifest.stats.blocks_read, "restore point made");
        let made = record(kind, target, &manifest, snapshot, incremental, clock, false);
        open.manifests.push(manifest);
        Ok(made)
    }

    /// Retention on the restore points this policy made in `repository`,
    /// then a prune. Returns (points deleted, errors).
    pub(super) async fn repository_retention(
        &self,
        policy: &PolicyDocument,
        archive: bool,
        open: &Mutex<OpenRepository>,
        now: DateTime<Utc>,
    ) -> (Vec<String>, Vec<String>) {
        let mut open = open.lock().await;
        let retain = repository_retention_of(policy, archive);
        let mut series: BTreeMap<(String, String, String), Vec<&Manifest>> = BTreeMap::new();
        for m in open.manifests.iter().filter(|m| m.policy == policy.name) {
            series
                .entry((m.source.region.clone(), m.source.resource_id.clone(), m.source.volume_id.clone()))
                .or_default()
                .push(m);
        }
        let mut doomed = Vec::new();
        for points in series.values() {
            let candidates: Vec<retention::Point> = points
                .iter()
                .map(|m| retention::Point {
                    id: m.id.clone(),
                    time: m.time,
                    rules: m.rules.iter().cloned().collect::<BTreeSet<_>>(),
                    complete: true,
                })
                .collect();
            for (m, verdict) in points.iter().zip(retention::decide(&candidates, &retain, now)) {
                if verdict == Verdict::Delete {
                    doomed.push(m.id.clone());
                }
            }
        }
        let mut errors = Vec::new();
        let mut deleted = Vec::new();
        if !doomed.is_empty() {
            match open.repo.forget(&doomed).await {
                Ok(held) => {
                    for (id, until) in &held {
                        errors.push(format!("restore point {id} is under S3 Object Lock until {until}; kept"));
                    }
                    deleted = doomed.into_iter().filter(|id| !held.iter().any(|(h, _)| h == id)).collect();
                    open.manifests.retain(|m| !deleted.contains(&m.id));
                }
                Err(e) => errors.push(format!("deleting restore points: {e}")),
            }
        }
        match prune::prune(&mut open.repo, prune::DEFAULT_GRACE, now.max(Utc::now())).await {
            Ok(report) => tracing::info!(marked = report.marked, deleted = report.deleted, "pruned"),
            Err(e) => errors.push(format!("pruning: {e}")),
        }
        (deleted, errors)
    }
}

fn record(
    kind: BackupKind,
    target: &Target,
    m: &Manifest,
    snapshot: &StoredSnapshot,
    incremental: bool,
    clock: Instant,
    reused: bool,
) -> BackupRecord {
    BackupRecord {
        kind,
        repository_id: target.repository_id.clone(),
        point_id: m.id.clone(),
        volume_id: m.source.volume_id.clone(),
        snapshot_id: snapshot.id.clone(),
        incremental,
        blocks_read: if reused { 0 } else { m.stats.blocks_read },
        bytes_read: if reused { 0 } else { m.stats.bytes_read },
        bytes_written: if reused { 0 } else { m.stats.bytes_written },
        duration_ms: clock.elapsed().as_millis() as u64,
        reused,
        worker: None,
    }
}

pub fn to_retain(retain: &RetainDocument) -> Option<Retain> {
    match (retain.count, retain.days) {
        (Some(n), _) => Some(Retain::Count(n.clamp(0, u32::MAX as i64) as u32)),
        (None, Some(d)) => Some(Retain::Days(d.clamp(0, u32::MAX as i64) as u32)),
        (None, None) => None,
    }
}

/// Each rule's retention for backup (or archive) restore points.
pub fn repository_retention_of(policy: &PolicyDocument, archive: bool) -> BTreeMap<String, Retain> {
    policy
        .rules
        .iter()
        .filter_map(|rule| {
            let target = if archive { rule.archive.as_ref()? } else { rule.backup.as_ref()? };
            Some((rule.name.clone(), to_retain(&target.retain)?))
        })
        .collect()
}
