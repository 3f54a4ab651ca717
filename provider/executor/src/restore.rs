//! Restores of cloud-native points (snapshots and replicas): into volumes,
//! a new instance rebuilt from the configuration its run recorded, a new
//! DB instance or DB cluster. A point restores where it is (a replica in
//! its mapping's region and account). Nothing touches the original
//! resource; a restore that fails removes what it made and says so.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::InstanceStateName;
use coffer_aws::ebs_blocks::EbsSnapshotSink;
use coffer_aws::restores::{self, AttachedVolume, DbSpec, DeviceSpec, ImageSpec, InstanceSpec, VolumeSpec};
use coffer_aws::snapshots::{self, StoredSnapshot};
use coffer_aws::{AwsClients, AwsError};
use coffer_model::configuration::{
    DbClusterConfiguration, DbInstanceConfiguration, InstanceConfiguration, ResourceConfiguration,
};
use coffer_model::point_id::{PointId, PointKind};
use coffer_model::session::{ResourceKind, Session, SnapshotKind};
use coffer_repository::Repository;
use serde::Serialize;

use super::image::{self, ImagePoint};
use super::inventory::{self, Place, RestorePoint};
use super::{Executor, ExecutorError, TAG_VOLUME};

/// Put on everything a restore makes: the point it came from.
pub const TAG_RESTORED_FROM: &str = "coffer:restored-from";
/// And the restore that made it (one id per `coffer restore`).
pub const TAG_RESTORE: &str = "coffer:restore";
/// Put on a volume `--to-original` replaced (kept): the restore that replaced it.
pub const TAG_REPLACED_BY: &str = "coffer:replaced-by-restore";

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error("looking up restore point {id}: {cause}")]
    Lookup { id: String, cause: String },
    #[error("restore point {0} is not there (retention may have deleted it); `coffer points` lists those there are")]
    NoPoint(String),
    /// Refused before anything was made: the flag and what is allowed.
    #[error("{0}")]
    Refused(String),
    /// Failed after making or changing something: what was removed, what
    /// was put back as it was, and what could not be.
    #[error("{error}{}{}{}", removed_text(.removed), put_back_text(.put_back), left_text(.left))]
    Failed { error: String, removed: Vec<String>, put_back: Vec<String>, left: Vec<String> },
}

fn removed_text(removed: &[String]) -> String {
    if removed.is_empty() {
        String::new()
    } else {
        format!("; removed what the restore had made: {}", removed.join(", "))
    }
}

fn put_back_text(put_back: &[String]) -> String {
    if put_back.is_empty() { String::new() } else { format!("; put back as it was: {}", put_back.join(", ")) }
}

fn left_text(left: &[String]) -> String {
    if left.is_empty() { String::new() } else { format!("; COULD NOT REMOVE (delete by hand): {}", left.join("; ")) }
}

/// A new volume's settings, over the recorded volume's.
pub type VolumeOverrides = VolumeSpec;

/// A restored instance's settings, over the recorded ones.
#[derive(Debug, Clone, Default)]
pub struct InstanceOverrides {
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub instance_type: Option<String>,
    pub key_name: Option<String>,
    /// The `Name` tag (default: the original's).
    pub name: Option<String>,
    /// Leave it running (default: stopped as soon as it runs).
    pub start: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DbOverrides {
    pub instance_class: Option<String>,
    pub db_subnet_group: Option<String>,
    pub vpc_security_group_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Target {
    /// One volume per snapshot of the point (or only `volume`: the original
    /// volume's id or device name).
    Volumes {
        availability_zone: Option<String>,
        volume: Option<String>,
        overrides: VolumeOverrides,
    },
    Instance(InstanceOverrides),
    DbInstance {
        identifier: String,
        overrides: DbOverrides,
    },
    DbCluster {
        identifier: String,
        overrides: DbOverrides,
    },
    /// The original instance's volumes (or only `volume`'s) replaced by
    /// restored ones: stopped, swapped, started again if it was running; the
    /// replaced volumes are kept. Refused unless `confirmed`.
    Original {
        volume: Option<String>,
        confirmed: bool,
    },
    /// Image-level points: one new EBS snapshot per volume (or only `volume`'s).
    Snapshots {
        volume: Option<String>,
    },
}

/// One thing a restore made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Made {
    /// `volume`, `instance`, `image`, `db-instance` or `db-cluster`.
    pub kind: &'static str,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// --to-original: the instance the volume is attached to, and the volume
    /// it replaced there (kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
    /// Made only to get there (a launch image, a staged snapshot): removed
    /// when the restore ends, however it ends.
    #[serde(skip)]
    pub scaffolding: bool,
}

impl std::fmt::Display for Made {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.id)?;
        if let Some(device) = &self.device {
            write!(f, " ({device})")?;
        }
        if let Some(instance) = &self.attached_to {
            write!(f, " on {instance}")?;
        }
        if let Some(replaced) = &self.replaced {
            write!(f, ", replacing {replaced}")?;
        }
        Ok(())
    }
}

/// What `coffer restore` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub point: String,
    pub restore_id: String,
    pub region: String,
    pub account: String,
    pub made: Vec<Made>,
    /// Recorded settings left out (another region or account) and why.
    pub notes: Vec<String>,
}

/// What the restore tells the user while it works.
pub trait RestoreProgress: Sync {
    fn step(&self, what: &str);
}

impl RestoreProgress for () {
    fn step(&self, _: &str) {}
}

/// A point `coffer points` lists: in EBS or RDS, or in a repository.
pub enum Point {
    Cloud(RestorePoint),
    Image(ImagePoint),
}

/// A point found, with what its run recorded and the clients reaching it.
pub struct FoundPoint {
    pub point: Point,
    pub configuration: Option<ResourceConfiguration>,
    pub clients: std::sync::Arc<AwsClients>,
}

impl Executor {
    /// The point `id` names, read from the one place it can be (a replica's
    /// region and account come from its mapping, a backup's repository from
    /// the id), with the configuration its run recorded (none for runs
    /// before session format 2).
    pub async fn find_point(&self, id: &PointId) -> Result<FoundPoint, RestoreError> {
        let policy = self.policy(&id.policy).await?;
        let lookup = |cause: String| RestoreError::Lookup { id: id.to_string(), cause };
        let (point, clients) = if id.kind.image_level() {
            let (points, errors) = image::list_points(self, &policy).await;
            match points.into_iter().find(|p| &p.id() == id) {
                Some(point) => (Point::Image(point), self.aws.clone()),
                None if !errors.is_empty() => return Err(lookup(errors.join("; "))),
                None => return Err(RestoreError::NoPoint(id.to_string())),
            }
        } else {
            let place = match id.kind {
                PointKind::Replica => {
                    let mapping = self.region_mapping(&id.place).await?;
                    Place { role: mapping.target_role_arn.clone(), region: mapping.target_region.clone() }
                }
                _ => Place { role: None, region: id.place.clone() },
            };
            let clients = self.clients_for(place.role.as_deref()).await?.unwrap_or_else(|| self.aws.clone());
            let point = inventory::list_place(&clients, &policy, &place)
                .await
                .map_err(|e| lookup(e.to_string()))?
                .into_iter()
                .find(|p| &p.id() == id)
                .ok_or_else(|| RestoreError::NoPoint(id.to_string()))?;
            (Point::Cloud(point), clients)
        };
        let configuration = match self.catalog().get::<Session>(&format!("{}/{}", id.policy, id.run_id)).await {
            Ok(session) => {
                session.body.resources.into_iter().find(|r| r.id == id.resource_id).and_then(|r| r.configuration)
            }
            Err(coffer_aws::catalog::CatalogError::NotFound) => None,
            Err(e) => return Err(lookup(format!("its session: {e}"))),
        };
        Ok(FoundPoint { point, configuration, clients })
    }

    pub async fn restore_point(
        &self,
        found: &FoundPoint,
        target: &Target,
        progress: &dyn RestoreProgress,
    ) -> Result<Restored, RestoreError> {
        let (point_id, region, account) = match &found.point {
            Point::Cloud(p) => (p.id().to_string(), p.region.clone(), p.account.clone()),
            Point::Image(p) => (p.id().to_string(), p.region.clone(), self.aws.account_id.clone()),
        };
        let mut work = Work {
            clients: &found.clients,
            region,
            timeout: self.settings.wait_timeout.max(Duration::from_secs(60)),
            made: Vec::new(),
            notes: Vec::new(),
            restore_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            point_id,
            swaps: Vec::new(),
            restart: None,
        };
        let result = match &found.point {
            Point::Cloud(point) => work.cloud(found, point, target, progress).await,
            Point::Image(point) => self.image(&mut work, found, point, target, progress).await,
        };
        match result {
            Ok(()) => {
                // The launch image and the snapshots an image-level point was
                // staged in are the restore's scaffolding, kept by no outcome.
                let scaffolding: Vec<Made> = work.made.iter().filter(|m| m.scaffolding).cloned().collect();
                work.made.retain(|m| !m.scaffolding);
                for made in scaffolding.iter().rev() {
                    if let Err(e) = work.remove(made).await {
                        work.notes.push(format!("removing {made} (the restore's scaffolding): {e}; delete it by hand"));
                    }
                }
                Ok(Restored {
                    point: work.point_id.clone(),
                    restore_id: work.restore_id.clone(),
                    region: work.region.clone(),
                    account,
                    made: work.made,
                    notes: work.notes,
                })
            }
            Err(e) if work.made.is_empty() && work.swaps.is_empty() && work.restart.is_none() => Err(e),
            Err(e) => {
                progress.step("the restore failed: removing what it made");
                let error = match e {
                    RestoreError::Failed { error, .. } => error,
                    e => e.to_string(),
                };
                let undone = work.undo().await;
                Err(RestoreError::Failed {
                    error,
                    removed: undone.removed,
                    put_back: undone.put_back,
                    left: undone.left,
                })
            }
        }
    }

    /// An image-level point: each volume's point is written into a new EBS
    /// snapshot (the repository shared-locked meanwhile), and those restore
    /// as a snapshot point's do; for `--to-snapshot` they are the result.
    async fn image(
        &self,
        work: &mut Work<'_>,
        found: &FoundPoint,
        point: &ImagePoint,
        target: &Target,
        progress: &dyn RestoreProgress,
    ) -> Result<(), RestoreError> {
        let only = match target {
            Target::Volumes { volume, .. } => volume.as_deref(),
            Target::Snapshots { volume } => volume.as_deref(),
            Target::Original { volume, .. } => volume.as_deref(),
            Target::Instance(_) => None,
            Target::DbInstance { .. } | Target::DbCluster { .. } => {
                return Err(RestoreError::Refused(format!(
                    "restore point {} is an image-level backup of EC2 instance {}: it restores with --to-volume, --to-instance, --to-original or --to-snapshot",
                    work.point_id, point.resource_id
                )));
            }
        };
        let recorded = found.instance();
        let device = |volume: &str| recorded.and_then(|c| c.volume(volume)).map(|v| v.device_name.clone());
        let chosen: Vec<(&String, &String)> = point
            .point_ids
            .iter()
            .zip(&point.volume_ids)
            .filter(|(_, volume)| only.is_none_or(|v| volume.as_str() == v || device(volume).as_deref() == Some(v)))
            .collect();
        if chosen.is_empty() {
            let known: Vec<String> = point
                .volume_ids
                .iter()
                .map(|v| device(v).map(|d| format!("{v} ({d})")).unwrap_or_else(|| v.clone()))
                .collect();
            return Err(RestoreError::Refused(format!(
                "--volume {}: restore point {} holds no backup of it; its volumes: {}",
                only.unwrap_or_default(),
                work.point_id,
                known.join(", ")
            )));
        }
        let mut staged_point = RestorePoint {
            policy: point.policy.clone(),
            resource_id: point.resource_id.clone(),
            resource_region: point.region.clone(),
            kind: SnapshotKind::Snapshot,
            region: point.region.clone(),
            account: self.aws.account_id.clone(),
            mapping: None,
            run_id: point.run_id.clone(),
            time: point.time,
            rules: point.rules.clone(),
            snapshots: Vec::new(),
            role: None,
        };
        if let Target::Original { confirmed, .. } = target {
            // Refused before a block is staged, as for snapshot points.
            let volumes: Vec<&str> = chosen.iter().map(|(_, volume)| volume.as_str()).collect();
            let plan = work.plan_original(&staged_point, recorded, &volumes).await?;
            if !confirmed {
                return Err(RestoreError::Refused(plan.refusal(&work.point_id)));
            }
        }
        let (repo, lock) = self
            .open_repository(&point.repository_id, "restore")
            .await
            .map_err(|e| RestoreError::Lookup { id: work.point_id.clone(), cause: e.to_string() })?;
        let staged = work.stage(&repo, &chosen, device, matches!(target, Target::Snapshots { .. }), progress).await;
        if let Err(e) = lock.release().await {
            work.notes.push(format!("releasing the repository's lock: {e} (a later prune removes it)"));
        }
        staged_point.snapshots = staged?;
        match target {
            Target::Volumes { availability_zone, overrides, .. } => {
                work.volumes(&staged_point, recorded, availability_zone.as_deref(), None, overrides, progress).await
            }
            Target::Instance(overrides) => match recorded {
                Some(config) => work.instance(&staged_point, config, false, overrides, progress).await,
                None => Err(no_configuration(&staged_point)),
            },
            Target::Original { confirmed, .. } => {
                work.original(&staged_point, recorded, None, *confirmed, progress).await
            }
            _ => Ok(()),
        }
    }
}

impl Work<'_> {
    /// A snapshot or replica point into `target`.
    async fn cloud(
        &mut self,
        found: &FoundPoint,
        point: &RestorePoint,
        target: &Target,
        progress: &dyn RestoreProgress,
    ) -> Result<(), RestoreError> {
        if !point.complete() {
            return Err(RestoreError::Refused(format!(
                "restore point {} is not complete yet (its snapshots are still pending); try again when `coffer points` no longer says incomplete",
                self.point_id
            )));
        }
        let kind = point.resource_kind();
        let wanted = match target {
            Target::Volumes { .. } | Target::Instance(_) | Target::Original { .. } => ResourceKind::Ec2Instance,
            Target::DbInstance { .. } => ResourceKind::RdsInstance,
            Target::DbCluster { .. } => ResourceKind::RdsCluster,
            Target::Snapshots { .. } => {
                return Err(RestoreError::Refused(format!(
                    "--to-snapshot restores image-level points; restore point {} is already a snapshot (restore it with --to-volume or --to-instance)",
                    self.point_id
                )));
            }
        };
        if kind != wanted {
            return Err(RestoreError::Refused(format!(
                "restore point {} is of {} {}: it restores with {}",
                self.point_id,
                kind.noun(),
                point.resource_id,
                match kind {
                    ResourceKind::Ec2Instance => "--to-volume, --to-instance or --to-original",
                    ResourceKind::RdsInstance => "--to-db-instance NEW_ID",
                    ResourceKind::RdsCluster => "--to-db-cluster NEW_ID",
                }
            )));
        }
        let other_region = point.region != point.resource_region;
        match target {
            Target::Volumes { availability_zone, volume, overrides } => {
                self.volumes(
                    point,
                    found.instance(),
                    availability_zone.as_deref(),
                    volume.as_deref(),
                    overrides,
                    progress,
                )
                .await
            }
            Target::Instance(overrides) => match found.instance() {
                Some(config) => self.instance(point, config, other_region, overrides, progress).await,
                None => Err(no_configuration(point)),
            },
            Target::Original { volume, confirmed } => {
                self.original(point, found.instance(), volume.as_deref(), *confirmed, progress).await
            }
            Target::DbInstance { identifier, overrides } => {
                let recorded = match &found.configuration {
                    Some(ResourceConfiguration::RdsInstance(c)) => Some(c),
                    _ => None,
                };
                self.db_instance(point, recorded, other_region, identifier, overrides, progress).await
            }
            Target::DbCluster { identifier, overrides } => {
                let recorded = match &found.configuration {
                    Some(ResourceConfiguration::RdsCluster(c)) => Some(c),
                    _ => None,
                };
                self.db_cluster(point, recorded, other_region, identifier, overrides, progress).await
            }
            Target::Snapshots { .. } => Ok(()),
        }
    }

    /// Writes each chosen volume point of an image-level point into a new EBS
    /// snapshot in the point's region, and waits for them to complete.
    async fn stage(
        &mut self,
        repo: &Repository,
        chosen: &[(&String, &String)],
        device: impl Fn(&str) -> Option<String>,
        kept: bool,
        progress: &dyn RestoreProgress,
    ) -> Result<Vec<StoredSnapshot>, RestoreError> {
        let (ebs, ec2) = (self.clients.ebs(&self.region), self.clients.ec2(&self.region));
        let mut ids = Vec::new();
        let mut volumes = BTreeMap::new();
        for (manifest_id, volume) in chosen {
            let manifest =
                repo.manifest(manifest_id).await.map_err(|e| failed_text(format!("reading {manifest_id}: {e}")))?;
            progress.step(&format!("thawing {manifest_id} (archives only)"));
            repo.thaw(&manifest, Duration::from_secs(60), self.timeout)
                .await
                .map_err(|e| failed_text(format!("thawing {manifest_id}: {e}")))?;
            let mut tags: Vec<(String, String)> = self.tags().into_iter().collect();
            tags.push((TAG_VOLUME.to_string(), volume.to_string()));
            let sink = EbsSnapshotSink::start(
                ebs.clone(),
                manifest.volume_size,
                &format!("coffer restore of {} ({volume})", self.point_id),
                tags,
                None,
                60,
            )
            .await
            .map_err(|e| failed_text(format!("starting a snapshot for {volume}: {e}")))?
            .deleting_on_abort(ec2.clone());
            self.made.push(Made {
                kind: "snapshot",
                id: sink.snapshot_id().to_string(),
                device: device(volume),
                snapshot_id: None,
                scaffolding: !kept,
                attached_to: None,
                replaced: None,
            });
            progress.step(&format!("writing {volume}'s blocks from {manifest_id} into {}", sink.snapshot_id()));
            let id = repo
                .restore(&manifest, &sink, 16, &|_, _| {})
                .await
                .map_err(|e| failed_text(format!("restoring {manifest_id} into a snapshot: {e}")))?;
            volumes.insert(id.clone(), volume.to_string());
            ids.push(id);
        }
        let mut snapshots = snapshots::wait_until_complete(
            || snapshots::describe_ebs_snapshots(&ec2, &self.region, &ids),
            Duration::from_secs(1),
            self.timeout,
        )
        .await
        .map_err(|e| failed_text(format!("waiting for the staged snapshots: {e}")))?;
        for snapshot in &mut snapshots {
            if let Some(volume) = volumes.get(&snapshot.id) {
                snapshot.tags.insert(TAG_VOLUME.to_string(), volume.clone());
            }
        }
        Ok(snapshots)
    }
}

impl FoundPoint {
    /// An image-level point's repository and the point of its volume `volume`
    /// (id or recorded device; needed when it holds several); `None` for
    /// snapshots and replicas.
    pub fn volume_point(&self, volume: Option<&str>) -> Result<Option<(String, String)>, RestoreError> {
        let Point::Image(point) = &self.point else { return Ok(None) };
        let device = |v: &str| self.instance().and_then(|c| c.volume(v)).map(|c| c.device_name.clone());
        let named = |v: &str| match device(v) {
            Some(d) => format!("{v} ({d})"),
            None => v.to_string(),
        };
        let chosen: Vec<(&String, &String)> = point
            .point_ids
            .iter()
            .zip(&point.volume_ids)
            .filter(|(_, v)| volume.is_none_or(|wanted| v.as_str() == wanted || device(v).as_deref() == Some(wanted)))
            .collect();
        match (chosen.as_slice(), volume) {
            ([(manifest, _)], _) => Ok(Some((point.repository_id.clone(), manifest.to_string()))),
            ([], Some(wanted)) => Err(RestoreError::Refused(format!(
                "--volume {wanted}: restore point {} holds no backup of it; its volumes: {}",
                point.id(),
                point.volume_ids.iter().map(|v| named(v)).collect::<Vec<_>>().join(", ")
            ))),
            _ => Err(RestoreError::Refused(format!(
                "--to-file restores one volume: name it with --volume (restore point {} holds {})",
                point.id(),
                point.volume_ids.iter().map(|v| named(v)).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn instance(&self) -> Option<&InstanceConfiguration> {
        match &self.configuration {
            Some(ResourceConfiguration::Ec2Instance(c)) => Some(c),
            _ => None,
        }
    }
}

fn no_configuration(point: &RestorePoint) -> RestoreError {
    RestoreError::Refused(format!(
        "--to-instance: run {} recorded no configuration of {} (runs before Coffer recorded it, or its session is gone); \
         restore its volumes with --to-volume and attach them to an instance",
        point.run_id, point.resource_id
    ))
}

/// A failure after something was made (the undo runs on it).
fn failed(what: impl std::fmt::Display, e: AwsError) -> RestoreError {
    failed_text(format!("{what}: {e}"))
}

fn failed_text(error: String) -> RestoreError {
    RestoreError::Failed { error, removed: Vec::new(), put_back: Vec::new(), left: Vec::new() }
}

/// The volume a snapshot of the point is of (a replica says it in a tag).
fn snapshot_volume(snapshot: &StoredSnapshot) -> Option<&str> {
    snapshot.tags.get(TAG_VOLUME).or(snapshot.volume_id.as_ref()).map(String::as_str)
}

/// A parameter or option group of the user's own: RDS's default ones
/// (`default.postgres16`, `default:postgres-16`) are left for RDS to pick,
/// which gives the restored database its engine version's default, as the
/// original had.
fn custom_group(name: &str) -> bool {
    !name.starts_with("default.") && !name.starts_with("default:")
}

/// Tags AWS lets nobody set (`aws:`) are left out of copies.
fn user_tags(tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    tags.iter().filter(|(k, _)| !k.starts_with("aws:")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

struct Work<'a> {
    clients: &'a AwsClients,
    region: String,
    timeout: Duration,
    made: Vec<Made>,
    notes: Vec<String>,
    restore_id: String,
    point_id: String,
    /// --to-original: the devices swapped so far, and the instance to start
    /// again however the restore ends (it was running).
    swaps: Vec<Swap>,
    restart: Option<String>,
}

/// `--to-original`, checked: the instance as it is now and each device to swap.
struct OriginalPlan {
    instance_id: String,
    live: restores::LiveInstance,
    devices: Vec<PlannedDevice>,
}

struct PlannedDevice {
    original_volume: String,
    device: String,
    /// What is attached there now (the original volume, or one an earlier restore put there).
    current: Option<AttachedVolume>,
    recorded: Option<coffer_model::configuration::VolumeConfiguration>,
}

impl OriginalPlan {
    /// Why nothing happens without `--yes`: what would.
    fn refusal(&self, point_id: &str) -> String {
        let state = match self.live.state {
            InstanceStateName::Stopped => "stopped: it stays stopped".to_string(),
            ref state => format!("{}: it is stopped for the swap and started again", state.as_str()),
        };
        let devices: Vec<String> = self
            .devices
            .iter()
            .map(|d| match &d.current {
                Some(c) => format!("{} ({}, now {})", d.device, d.original_volume, c.volume_id),
                None => format!("{} ({}, now empty)", d.device, d.original_volume),
            })
            .collect();
        format!(
            "--to-original replaces volumes of instance {} ({state}) by volumes restored from {point_id}: {}; \
             the replaced volumes are kept. Give --yes to go ahead, or restore beside it with --to-volume or --to-instance",
            self.instance_id,
            devices.join(", ")
        )
    }
}

/// One device of the original instance whose volume a restore replaced.
struct Swap {
    instance_id: String,
    device: String,
    old: Option<AttachedVolume>,
    new: String,
    /// The new volume is (or may be) attached: detach it before the old goes back.
    attached: bool,
}

/// What undoing a failed restore did.
#[derive(Default)]
struct Undone {
    removed: Vec<String>,
    put_back: Vec<String>,
    left: Vec<String>,
}

impl Work<'_> {
    fn tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_RESTORED_FROM.to_string(), self.point_id.clone()),
            (TAG_RESTORE.to_string(), self.restore_id.clone()),
        ])
    }

    async fn volumes(
        &mut self,
        point: &RestorePoint,
        recorded: Option<&InstanceConfiguration>,
        availability_zone: Option<&str>,
        only: Option<&str>,
        overrides: &VolumeOverrides,
        progress: &dyn RestoreProgress,
    ) -> Result<(), RestoreError> {
        let zone = match (availability_zone, recorded) {
            (Some(zone), _) => zone.to_string(),
            (None, Some(c)) if point.region == point.resource_region => c.availability_zone.clone(),
            _ => {
                return Err(RestoreError::Refused(format!(
                    "--availability-zone: say where the volumes go (a zone of {}, where the point is)",
                    point.region
                )));
            }
        };
        let device = |s: &StoredSnapshot| {
            let volume = snapshot_volume(s)?;
            recorded?.volume(volume)
        };
        let chosen: Vec<&StoredSnapshot> = point
            .snapshots
            .iter()
            .filter(|s| {
                only.is_none_or(|v| snapshot_volume(s) == Some(v) || device(s).is_some_and(|d| d.device_name == v))
            })
            .collect();
        if chosen.is_empty() {
            let known: Vec<String> = point
                .snapshots
                .iter()
                .map(|s| {
                    let volume = snapshot_volume(s).unwrap_or("?");
                    match device(s) {
                        Some(d) => format!("{volume} ({})", d.device_name),
                        None => volume.to_string(),
                    }
                })
                .collect();
            return Err(RestoreError::Refused(format!(
                "--volume {}: restore point {} holds no snapshot of it; its volumes: {}",
                only.unwrap_or_default(),
                point.id(),
                known.join(", ")
            )));
        }
        let ec2 = self.clients.ec2(&self.region);
        for snapshot in chosen {
            let recorded_volume = device(snapshot);
            let spec = VolumeSpec {
                volume_type: overrides
                    .volume_type
                    .clone()
                    .or_else(|| recorded_volume.and_then(|v| v.volume_type.clone())),
                size_gib: overrides.size_gib.or_else(|| recorded_volume.and_then(|v| v.size_gib)),
                iops: overrides.iops.or_else(|| recorded_volume.and_then(|v| v.iops)),
                throughput: overrides.throughput.or_else(|| recorded_volume.and_then(|v| v.throughput)),
                kms_key_id: overrides.kms_key_id.clone(),
            };
            let mut tags = self.tags();
            if let Some(d) = recorded_volume {
                tags.insert("coffer:device".into(), d.device_name.clone());
            }
            progress.step(&format!("creating a volume from {} in {zone}", snapshot.id));
            let id = restores::create_volume(&ec2, &snapshot.id, &zone, &spec, &tags)
                .await
                .map_err(|e| failed(format_args!("creating a volume from {} in {zone}", snapshot.id), e))?;
            self.made.push(Made {
                kind: "volume",
                id: id.clone(),
                device: recorded_volume.map(|d| d.device_name.clone()),
                snapshot_id: Some(snapshot.id.clone()),
                scaffolding: false,
                attached_to: None,
                replaced: None,
            });
            restores::wait_volume_available(&ec2, &id, self.timeout).await.map_err(|e| failed("waiting", e))?;
        }
        Ok(())
    }

    async fn instance(
        &mut self,
        point: &RestorePoint,
        recorded: &InstanceConfiguration,
        other_region: bool,
        overrides: &InstanceOverrides,
        progress: &dyn RestoreProgress,
    ) -> Result<(), RestoreError> {
        let other_account = point.role.is_some();
        let mut devices = Vec::new();
        for snapshot in &point.snapshots {
            let volume = snapshot_volume(snapshot).unwrap_or_default();
            let Some(v) = recorded.volume(volume) else {
                return Err(RestoreError::Refused(format!(
                    "--to-instance: snapshot {} is of volume {volume}, which run {} did not record on {}; restore it with --to-volume",
                    snapshot.id, point.run_id, point.resource_id
                )));
            };
            devices.push(DeviceSpec {
                device_name: v.device_name.clone(),
                snapshot_id: snapshot.id.clone(),
                delete_on_termination: v.delete_on_termination,
                volume: VolumeSpec {
                    volume_type: v.volume_type.clone(),
                    size_gib: v.size_gib,
                    iops: v.iops,
                    throughput: v.throughput,
                    kms_key_id: None,
                },
            });
        }
        if !devices.iter().any(|d| d.device_name == recorded.root_device_name) {
            return Err(RestoreError::Refused(format!(
                "--to-instance: restore point {} holds no snapshot of the root device {}; restore its volumes with --to-volume",
                point.id(),
                recorded.root_device_name
            )));
        }
        devices.sort_by(|a, b| a.device_name.cmp(&b.device_name));
        // What is per region (subnets, security groups, key pairs) or per
        // account (instance profiles) stays behind unless named again.
        let mut keep = |what: &str, flag: &str, value: Option<String>| -> Option<String> {
            let value = value?;
            // IAM is per account, the rest per region and account.
            let elsewhere = if what == "instance profile" { other_account } else { other_region || other_account };
            if elsewhere {
                let rename = if flag.is_empty() { String::new() } else { format!("; name one with {flag}") };
                let account = if other_account { " in this account" } else { "" };
                self.notes
                    .push(format!("the original's {what} {value} is not used in {}{account}{rename}", self.region));
                None
            } else {
                Some(value)
            }
        };
        let subnet_id =
            overrides.subnet_id.clone().or_else(|| keep("subnet", "--subnet-id", recorded.subnet_id.clone()));
        let security_group_ids = if !overrides.security_group_ids.is_empty() {
            overrides.security_group_ids.clone()
        } else if other_region || other_account {
            if !recorded.security_group_ids.is_empty() {
                let groups = recorded.security_group_ids.join(", ");
                keep("security groups", "--security-group-ids", Some(groups));
            }
            Vec::new()
        } else {
            recorded.security_group_ids.clone()
        };
        let key_name = overrides.key_name.clone().or_else(|| keep("key pair", "--key-name", recorded.key_name.clone()));
        let instance_profile_arn = keep("instance profile", "", recorded.instance_profile_arn.clone());
        let mut tags = user_tags(&recorded.tags);
        if let Some(name) = &overrides.name {
            tags.insert("Name".into(), name.clone());
        }
        tags.extend(self.tags());

        let ec2 = self.clients.ec2(&self.region);
        progress.step(&format!("registering an image of {} snapshots", devices.len()));
        let image = ImageSpec {
            name: format!("coffer-restore-{}-{}", point.resource_id, self.restore_id),
            description: format!("coffer restore of {} (deregistered once the instance runs)", self.point_id),
            architecture: recorded.architecture.clone(),
            root_device_name: recorded.root_device_name.clone(),
            ena_support: recorded.ena_support,
            boot_mode: recorded.boot_mode.clone(),
            virtualization_type: recorded.virtualization_type.clone(),
            devices: devices.clone(),
        };
        let image_id =
            restores::register_image(&ec2, &image).await.map_err(|e| failed("registering the restore's image", e))?;
        self.made.push(Made {
            kind: "image",
            id: image_id.clone(),
            device: None,
            snapshot_id: None,
            scaffolding: true,
            attached_to: None,
            replaced: None,
        });
        let instance_type = overrides.instance_type.clone().unwrap_or_else(|| recorded.instance_type.clone());
        progress.step(&format!("launching a {instance_type} instance"));
        let spec = InstanceSpec {
            image_id,
            instance_type,
            // A subnet decides the zone; without one the original's zone, in its region.
            availability_zone: (subnet_id.is_none() && !other_region).then(|| recorded.availability_zone.clone()),
            subnet_id,
            security_group_ids,
            key_name,
            instance_profile_arn,
            ebs_optimized: recorded.ebs_optimized,
            tenancy: recorded.tenancy.clone().filter(|t| t != "default"),
            tags,
        };
        let instance_id = restores::run_instance(&ec2, &spec).await.map_err(|e| failed("launching the instance", e))?;
        self.made.push(Made {
            kind: "instance",
            id: instance_id.clone(),
            device: None,
            snapshot_id: None,
            scaffolding: false,
            attached_to: None,
            replaced: None,
        });
        restores::wait_instance(&ec2, &instance_id, InstanceStateName::Running, self.timeout)
            .await
            .map_err(|e| failed("waiting for it to run", e))?;
        if !overrides.start {
            progress.step(&format!("stopping {instance_id} (--start leaves it running)"));
            restores::stop_instance(&ec2, &instance_id).await.map_err(|e| failed("stopping it", e))?;
            restores::wait_instance(&ec2, &instance_id, InstanceStateName::Stopped, self.timeout)
                .await
                .map_err(|e| failed("waiting for it to stop", e))?;
        }
        Ok(())
    }

    /// What `--to-original` will do to the instance `point` is of, checked
    /// before anything is made: each of `volumes` (original volume ids) on
    /// the device it was recorded on, and what is on that device now.
    async fn plan_original(
        &self,
        point: &RestorePoint,
        recorded: Option<&InstanceConfiguration>,
        volumes: &[&str],
    ) -> Result<OriginalPlan, RestoreError> {
        if point.region != point.resource_region || point.role.is_some() {
            let account = if point.role.is_some() { format!(" of account {}", point.account) } else { String::new() };
            return Err(RestoreError::Refused(format!(
                "--to-original: restore point {} is a replica in {}{account}; instance {} is in {}, where its volumes must be made. \
                 Restore a snapshot point of {} with --to-original, or this one with --to-instance or --to-volume",
                self.point_id, point.region, point.resource_id, point.resource_region, point.resource_region
            )));
        }
        let ec2 = self.clients.ec2(&self.region);
        let instance_id = point.resource_id.clone();
        let live = match restores::find_live_instance(&ec2, &instance_id).await {
            Ok(live) => live,
            Err(AwsError::NotFound) => {
                return Err(RestoreError::Refused(format!(
                    "--to-original: instance {instance_id} is gone (terminated or deleted); rebuild it with --to-instance"
                )));
            }
            Err(e) => {
                return Err(RestoreError::Lookup {
                    id: self.point_id.clone(),
                    cause: format!("instance {instance_id}: {e}"),
                });
            }
        };
        let mut devices = Vec::new();
        for volume in volumes {
            let recorded_volume = recorded.and_then(|c| c.volume(volume));
            let device = match recorded_volume {
                Some(v) => v.device_name.clone(),
                None => match live.devices.iter().find(|d| d.volume_id == *volume) {
                    Some(d) => d.device_name.clone(),
                    None => {
                        return Err(RestoreError::Refused(format!(
                            "--to-original: run {} recorded no device for volume {volume}, and it is not on {instance_id} any more; \
                             restore it with --to-volume and attach it yourself",
                            point.run_id
                        )));
                    }
                },
            };
            let current = live.devices.iter().find(|d| d.device_name == device).cloned();
            devices.push(PlannedDevice {
                original_volume: volume.to_string(),
                device,
                current,
                recorded: recorded_volume.cloned(),
            });
        }
        Ok(OriginalPlan { instance_id, live, devices })
    }

    /// The original instance's volumes replaced by ones restored from the
    /// point: made in its zone, the instance stopped (if running), each
    /// device swapped, the instance started again. The replaced volumes stay,
    /// tagged with the restore.
    async fn original(
        &mut self,
        point: &RestorePoint,
        recorded: Option<&InstanceConfiguration>,
        only: Option<&str>,
        confirmed: bool,
        progress: &dyn RestoreProgress,
    ) -> Result<(), RestoreError> {
        let device_of = |s: &StoredSnapshot| recorded.and_then(|c| c.volume(snapshot_volume(s)?));
        let chosen: Vec<&StoredSnapshot> = point
            .snapshots
            .iter()
            .filter(|s| {
                only.is_none_or(|v| snapshot_volume(s) == Some(v) || device_of(s).is_some_and(|d| d.device_name == v))
            })
            .collect();
        if chosen.is_empty() {
            return Err(RestoreError::Refused(format!(
                "--volume {}: restore point {} holds no snapshot of it",
                only.unwrap_or_default(),
                self.point_id
            )));
        }
        let volumes: Vec<&str> = chosen.iter().map(|s| snapshot_volume(s).unwrap_or_default()).collect();
        let plan = self.plan_original(point, recorded, &volumes).await?;
        if !confirmed {
            return Err(RestoreError::Refused(plan.refusal(&self.point_id)));
        }
        let ec2 = self.clients.ec2(&self.region);
        let instance_id = plan.instance_id.clone();
        // The new volumes first, while the instance still runs.
        let mut new_volumes = Vec::new();
        for (snapshot, planned) in chosen.iter().zip(&plan.devices) {
            let spec = VolumeSpec {
                volume_type: planned.recorded.as_ref().and_then(|v| v.volume_type.clone()),
                size_gib: planned.recorded.as_ref().and_then(|v| v.size_gib),
                iops: planned.recorded.as_ref().and_then(|v| v.iops),
                throughput: planned.recorded.as_ref().and_then(|v| v.throughput),
                kms_key_id: None,
            };
            let mut tags = self.tags();
            tags.insert("coffer:device".into(), planned.device.clone());
            let zone = &plan.live.availability_zone;
            progress.step(&format!("creating a volume from {} in {zone} for {}", snapshot.id, planned.device));
            let id = restores::create_volume(&ec2, &snapshot.id, zone, &spec, &tags)
                .await
                .map_err(|e| failed(format_args!("creating a volume from {} in {zone}", snapshot.id), e))?;
            self.made.push(Made {
                kind: "volume",
                id: id.clone(),
                device: Some(planned.device.clone()),
                snapshot_id: Some(snapshot.id.clone()),
                scaffolding: false,
                attached_to: None,
                replaced: None,
            });
            restores::wait_volume_available(&ec2, &id, self.timeout).await.map_err(|e| failed("waiting", e))?;
            new_volumes.push(id);
        }
        self.stop_original(&ec2, &plan.live, &instance_id, progress).await?;
        let replaced_tags = BTreeMap::from([
            (TAG_REPLACED_BY.to_string(), self.restore_id.clone()),
            (TAG_RESTORED_FROM.to_string(), self.point_id.clone()),
        ]);
        for (new, planned) in new_volumes.iter().zip(&plan.devices) {
            let device = &planned.device;
            if let Some(current) = &planned.current {
                progress.step(&format!("detaching {} from {device}", current.volume_id));
                restores::detach_volume(&ec2, &current.volume_id, &instance_id).await.map_err(|e| {
                    failed(format_args!("detaching {} from {instance_id} ({device})", current.volume_id), e)
                })?;
            }
            self.swaps.push(Swap {
                instance_id: instance_id.clone(),
                device: device.clone(),
                old: planned.current.clone(),
                new: new.clone(),
                attached: false,
            });
            if let Some(current) = &planned.current {
                restores::wait_volume_available(&ec2, &current.volume_id, self.timeout)
                    .await
                    .map_err(|e| failed("waiting for the detach", e))?;
                restores::tag_resource(&ec2, &current.volume_id, &replaced_tags)
                    .await
                    .map_err(|e| failed(format_args!("tagging the replaced volume {}", current.volume_id), e))?;
            }
            progress.step(&format!("attaching {new} on {device}"));
            restores::attach_volume(&ec2, new, &instance_id, device)
                .await
                .map_err(|e| failed(format_args!("attaching {new} to {instance_id} ({device})"), e))?;
            if let Some(swap) = self.swaps.last_mut() {
                swap.attached = true;
            }
            let delete_on_termination = match (&planned.recorded, &planned.current) {
                (Some(v), _) => v.delete_on_termination,
                (None, Some(current)) => current.delete_on_termination,
                (None, None) => false,
            };
            restores::wait_volume_attached(&ec2, new, &instance_id, device, delete_on_termination, self.timeout)
                .await
                .map_err(|e| failed("waiting for the attach", e))?;
        }
        if let Some(instance) = self.restart.clone() {
            progress.step(&format!("starting {instance} again"));
            self.start_again(&ec2, &instance).await.map_err(|e| failed(format_args!("starting {instance}"), e))?;
            self.restart = None;
        }
        // Done: what was swapped is the result, not something to undo.
        self.swaps.clear();
        for (made, planned) in self.made.iter_mut().filter(|m| m.kind == "volume").zip(&plan.devices) {
            made.attached_to = Some(instance_id.clone());
            made.replaced = planned.current.as_ref().map(|c| c.volume_id.clone());
        }
        let kept: Vec<String> = plan
            .devices
            .iter()
            .filter_map(|d| Some(format!("{} ({})", d.current.as_ref()?.volume_id, d.device)))
            .collect();
        if !kept.is_empty() {
            self.notes.push(format!(
                "the replaced volumes are kept, tagged {TAG_REPLACED_BY}={}: {}; delete them once the restore is verified",
                self.restore_id,
                kept.join(", ")
            ));
        }
        Ok(())
    }

    /// Stops the original for the swap; a running one is started again
    /// however the restore ends.
    async fn stop_original(
        &mut self,
        ec2: &aws_sdk_ec2::Client,
        live: &restores::LiveInstance,
        instance_id: &str,
        progress: &dyn RestoreProgress,
    ) -> Result<(), RestoreError> {
        let running = match live.state {
            InstanceStateName::Stopped => false,
            InstanceStateName::Stopping => {
                restores::wait_instance(ec2, instance_id, InstanceStateName::Stopped, self.timeout)
                    .await
                    .map_err(|e| failed("waiting for it to stop", e))?;
                false
            }
            _ => {
                // A pending instance cannot be stopped yet.
                restores::wait_instance(ec2, instance_id, InstanceStateName::Running, self.timeout)
                    .await
                    .map_err(|e| failed("waiting for it to run", e))?;
                true
            }
        };
        if running {
            progress.step(&format!("stopping {instance_id}"));
            restores::stop_instance(ec2, instance_id)
                .await
                .map_err(|e| failed(format_args!("stopping {instance_id}"), e))?;
            self.restart = Some(instance_id.to_string());
            restores::wait_instance(ec2, instance_id, InstanceStateName::Stopped, self.timeout)
                .await
                .map_err(|e| failed("waiting for it to stop", e))?;
        }
        Ok(())
    }

    async fn db_instance(
        &mut self,
        point: &RestorePoint,
        recorded: Option<&DbInstanceConfiguration>,
        other_region: bool,
        identifier: &str,
        overrides: &DbOverrides,
        progress: &dyn RestoreProgress,
    ) -> Result<(), RestoreError> {
        coffer_model::validation::db_identifier(identifier)
            .map_err(|problem| RestoreError::Refused(format!("--to-db-instance: {problem}")))?;
        let snapshot = &point.snapshots[0];
        let same_region = |value: Option<String>| value.filter(|_| !other_region);
        let spec = DbSpec {
            identifier: identifier.to_string(),
            snapshot_id: snapshot.id.clone(),
            instance_class: overrides.instance_class.clone().or_else(|| recorded.map(|c| c.instance_class.clone())),
            db_subnet_group: overrides
                .db_subnet_group
                .clone()
                .or_else(|| same_region(recorded.and_then(|c| c.db_subnet_group.clone()))),
            vpc_security_group_ids: if !overrides.vpc_security_group_ids.is_empty() || other_region {
                overrides.vpc_security_group_ids.clone()
            } else {
                recorded.map(|c| c.vpc_security_group_ids.clone()).unwrap_or_default()
            },
            parameter_group: same_region(recorded.and_then(|c| c.parameter_group.clone()).filter(|g| custom_group(g))),
            option_group: same_region(recorded.and_then(|c| c.option_group.clone()).filter(|g| custom_group(g))),
            port: recorded.and_then(|c| c.port),
            multi_az: recorded.map(|c| c.multi_az),
            availability_zone: same_region(recorded.filter(|c| !c.multi_az).and_then(|c| c.availability_zone.clone())),
            storage_type: recorded.and_then(|c| c.storage_type.clone()),
            iops: recorded.and_then(|c| c.iops),
            iam_database_authentication: recorded.map(|c| c.iam_database_authentication),
            publicly_accessible: recorded.map(|c| c.publicly_accessible),
            tags: recorded.map(|c| user_tags(&c.tags)).unwrap_or_default().into_iter().chain(self.tags()).collect(),
            ..DbSpec::default()
        };
        if recorded.is_none() {
            self.notes.push(format!(
                "run {} recorded no configuration of {}: RDS's defaults apply",
                point.run_id, point.resource_id
            ));
        } else if other_region {
            self.notes.push(format!(
                "the original's subnet group, security groups, parameter and option groups are of {}: {} uses the defaults of {} unless named",
                point.resource_region, identifier, self.region
            ));
        }
        let rds = self.clients.rds(&self.region);
        progress.step(&format!("restoring DB instance {identifier} from {}", snapshot.id));
        restores::restore_db_instance(&rds, &spec).await.map_err(|e| {
            RestoreError::Refused(format!("restoring DB instance {identifier} from {}: {e}", snapshot.id))
        })?;
        self.made.push(Made {
            kind: "db-instance",
            id: identifier.to_string(),
            device: None,
            snapshot_id: Some(snapshot.id.clone()),
            scaffolding: false,
            attached_to: None,
            replaced: None,
        });
        progress.step(&format!("waiting for {identifier} to be available"));
        restores::wait_db_instance_available(&rds, identifier, self.timeout).await.map_err(|e| failed("waiting", e))
    }

    async fn db_cluster(
        &mut self,
        point: &RestorePoint,
        recorded: Option<&DbClusterConfiguration>,
        other_region: bool,
        identifier: &str,
        overrides: &DbOverrides,
        progress: &dyn RestoreProgress,
    ) -> Result<(), RestoreError> {
        coffer_model::validation::db_identifier(identifier)
            .map_err(|problem| RestoreError::Refused(format!("--to-db-cluster: {problem}")))?;
        let snapshot = &point.snapshots[0];
        let engine = recorded.map(|c| c.engine.clone()).or_else(|| snapshot.engine.as_ref().map(|e| e.name.clone()));
        let Some(engine) = engine else {
            return Err(RestoreError::Refused(format!(
                "--to-db-cluster: snapshot {} does not say its engine",
                snapshot.id
            )));
        };
        let multi_az_cluster = recorded.and_then(|c| c.db_cluster_instance_class.clone());
        let members: Vec<String> = match (&overrides.instance_class, recorded) {
            _ if multi_az_cluster.is_some() => Vec::new(),
            (Some(class), Some(c)) if !c.member_instance_classes.is_empty() => {
                vec![class.clone(); c.member_instance_classes.len()]
            }
            (Some(class), _) => vec![class.clone()],
            (None, Some(c)) if !c.member_instance_classes.is_empty() => c.member_instance_classes.clone(),
            _ => {
                return Err(RestoreError::Refused(format!(
                    "--db-instance-class: run {} recorded no member of {}; name the class of the restored cluster's writer",
                    point.run_id, point.resource_id
                )));
            }
        };
        let same_region = |value: Option<String>| value.filter(|_| !other_region);
        let tags: BTreeMap<String, String> =
            recorded.map(|c| user_tags(&c.tags)).unwrap_or_default().into_iter().chain(self.tags()).collect();
        let spec = DbSpec {
            identifier: identifier.to_string(),
            snapshot_id: snapshot.id.clone(),
            engine: Some(engine.clone()),
            engine_version: snapshot.engine.as_ref().map(|e| e.version.clone()),
            instance_class: overrides
                .instance_class
                .clone()
                .filter(|_| multi_az_cluster.is_some())
                .or(multi_az_cluster),
            db_subnet_group: overrides
                .db_subnet_group
                .clone()
                .or_else(|| same_region(recorded.and_then(|c| c.db_subnet_group.clone()))),
            vpc_security_group_ids: if !overrides.vpc_security_group_ids.is_empty() || other_region {
                overrides.vpc_security_group_ids.clone()
            } else {
                recorded.map(|c| c.vpc_security_group_ids.clone()).unwrap_or_default()
            },
            parameter_group: same_region(
                recorded.and_then(|c| c.cluster_parameter_group.clone()).filter(|g| custom_group(g)),
            ),
            port: recorded.and_then(|c| c.port),
            storage_type: recorded.and_then(|c| c.storage_type.clone()),
            iops: recorded.and_then(|c| c.iops),
            iam_database_authentication: recorded.map(|c| c.iam_database_authentication),
            tags: tags.clone(),
            ..DbSpec::default()
        };
        let rds = self.clients.rds(&self.region);
        progress.step(&format!("restoring DB cluster {identifier} from {}", snapshot.id));
        restores::restore_db_cluster(&rds, &spec).await.map_err(|e| {
            RestoreError::Refused(format!("restoring DB cluster {identifier} from {}: {e}", snapshot.id))
        })?;
        self.made.push(Made {
            kind: "db-cluster",
            id: identifier.to_string(),
            device: None,
            snapshot_id: Some(snapshot.id.clone()),
            scaffolding: false,
            attached_to: None,
            replaced: None,
        });
        restores::wait_db_cluster_available(&rds, identifier, self.timeout).await.map_err(|e| failed("waiting", e))?;
        for (n, class) in members.iter().enumerate() {
            let member = format!("{identifier}-{}", n + 1);
            progress.step(&format!("creating member {member} ({class})"));
            restores::create_cluster_member(&rds, &member, identifier, &engine, class, &tags)
                .await
                .map_err(|e| failed(format_args!("creating cluster member {member}"), e))?;
            self.made.push(Made {
                kind: "db-instance",
                id: member.clone(),
                device: None,
                snapshot_id: None,
                scaffolding: false,
                attached_to: None,
                replaced: None,
            });
            restores::wait_db_instance_available(&rds, &member, self.timeout)
                .await
                .map_err(|e| failed("waiting", e))?;
        }
        Ok(())
    }

    /// Puts the original's volumes back, removes what the restore made
    /// (newest first), and starts the original again if it was running.
    async fn undo(&mut self) -> Undone {
        let mut undone = Undone::default();
        let ec2 = self.clients.ec2(&self.region);
        let swaps: Vec<Swap> = self.swaps.drain(..).rev().collect();
        for swap in swaps {
            match self.unswap(&ec2, &swap).await {
                Ok(Some(text)) => undone.put_back.push(text),
                Ok(None) => {}
                Err(e) => undone.left.push(format!(
                    "{} of {}: {e} (the volume it had is {})",
                    swap.device,
                    swap.instance_id,
                    swap.old.as_ref().map_or("none", |o| o.volume_id.as_str())
                )),
            }
        }
        let made: Vec<Made> = self.made.drain(..).rev().collect();
        for made in made {
            match self.remove(&made).await {
                Ok(()) => undone.removed.push(made.to_string()),
                Err(e) => undone.left.push(format!("{made}: {e}")),
            }
        }
        if let Some(instance_id) = self.restart.take() {
            match self.start_again(&ec2, &instance_id).await {
                Ok(()) => undone.put_back.push(format!("{instance_id} started again")),
                Err(e) => undone.left.push(format!("starting {instance_id} again: {e}")),
            }
        }
        undone
    }

    /// A swapped device back to the volume it had: `Some(what)` when anything changed.
    async fn unswap(&self, ec2: &aws_sdk_ec2::Client, swap: &Swap) -> Result<Option<String>, AwsError> {
        if swap.attached {
            restores::detach_volume(ec2, &swap.new, &swap.instance_id).await?;
            restores::wait_volume_available(ec2, &swap.new, self.timeout).await?;
        }
        let Some(old) = &swap.old else { return Ok(None) };
        restores::wait_volume_available(ec2, &old.volume_id, self.timeout).await?;
        restores::attach_volume(ec2, &old.volume_id, &swap.instance_id, &swap.device).await?;
        restores::wait_volume_attached(
            ec2,
            &old.volume_id,
            &swap.instance_id,
            &swap.device,
            old.delete_on_termination,
            self.timeout,
        )
        .await?;
        Ok(Some(format!("{} on {} ({})", old.volume_id, swap.instance_id, swap.device)))
    }

    async fn start_again(&self, ec2: &aws_sdk_ec2::Client, instance_id: &str) -> Result<(), AwsError> {
        restores::start_instance(ec2, instance_id).await?;
        restores::wait_instance(ec2, instance_id, InstanceStateName::Running, self.timeout).await
    }

    async fn remove(&self, made: &Made) -> Result<(), AwsError> {
        let ec2 = self.clients.ec2(&self.region);
        let rds = self.clients.rds(&self.region);
        match made.kind {
            "volume" => delete_volume_when_settled(&ec2, &made.id, self.timeout).await,
            "instance" => terminate_with_volumes(&ec2, &made.id, &self.restore_id, self.timeout).await,
            "image" => restores::deregister_image(&ec2, &made.id).await,
            "snapshot" => snapshots::delete_ebs_snapshot(&ec2, &made.id).await,
            "db-instance" => restores::delete_db_instance(&rds, &made.id).await,
            "db-cluster" => restores::delete_db_cluster(&rds, &made.id).await,
            _ => Ok(()),
        }
    }
}

/// A volume still being created cannot be deleted: wait for it first.
async fn delete_volume_when_settled(ec2: &aws_sdk_ec2::Client, id: &str, timeout: Duration) -> Result<(), AwsError> {
    if restores::delete_volume(ec2, id).await.is_ok() {
        return Ok(());
    }
    let _ = restores::wait_volume_available(ec2, id, timeout).await;
    restores::delete_volume(ec2, id).await
}

/// Terminates a restored instance, then deletes its volumes that outlive it
/// (devices recorded without delete-on-termination), found by the restore's tag.
async fn terminate_with_volumes(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
    restore_id: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    restores::terminate_instance(ec2, instance_id).await?;
    restores::wait_instance(ec2, instance_id, InstanceStateName::Terminated, timeout).await?;
    let out = ec2
        .describe_volumes()
        .filters(coffer_aws::ec2::tag_filter(TAG_RESTORE, restore_id))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    for volume in out.volumes() {
        if let Some(id) = volume.volume_id() {
            delete_volume_when_settled(ec2, id, timeout).await?;
        }
    }
    Ok(())
}
