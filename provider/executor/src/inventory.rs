//! The restore points of a policy, read back from AWS by their tags: EBS
//! snapshots (one point per instance and run), DB and DB cluster snapshots,
//! in the policy's regions and, for replicas, in each mapping's target
//! region and account.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{Executor, TAG_KIND, TAG_MAPPING, TAG_POLICY, TAG_RULE, TAG_RUN, TAG_SOURCE, TAG_SOURCE_REGION, TAG_TIME};
use coffer_aws::snapshots::{self, Service, State, StoredSnapshot};
use coffer_aws::{AwsClients, AwsError, rds};
pub use coffer_model::point_id::PointId;
use coffer_model::policy::{PolicyDocument, PolicyType};
use coffer_model::region_mapping::RegionMappingDocument;
use coffer_model::session::ResourceKind;
pub use coffer_model::session::SnapshotKind;

/// One restore point: what one run made of one resource in one place.
#[derive(Debug, Clone)]
pub struct RestorePoint {
    pub policy: String,
    pub resource_id: String,
    /// Where the resource is (RDS identifiers are unique per region only).
    pub resource_region: String,
    pub kind: SnapshotKind,
    pub region: String,
    /// The account holding it (another one for cross-account replicas).
    pub account: String,
    pub mapping: Option<String>,
    pub run_id: String,
    pub time: DateTime<Utc>,
    pub rules: BTreeSet<String>,
    pub snapshots: Vec<StoredSnapshot>,
    /// Which clients reach it (the mapping's target role, if any).
    pub role: Option<String>,
}

impl RestorePoint {
    pub fn complete(&self) -> bool {
        self.snapshots.iter().all(|s| s.state == State::Complete)
    }

    /// The id `coffer points` shows and `coffer restore --point` takes.
    pub fn id(&self) -> PointId {
        PointId {
            policy: self.policy.clone(),
            kind: self.kind.into(),
            place: self.mapping.clone().unwrap_or_else(|| self.region.clone()),
            resource_id: self.resource_id.clone(),
            run_id: self.run_id.clone(),
        }
    }

    /// What the point is of: an EC2 instance, a DB instance or a DB cluster.
    pub fn resource_kind(&self) -> ResourceKind {
        match self.snapshots.first().map(|s| s.service) {
            Some(Service::RdsInstance) => ResourceKind::RdsInstance,
            Some(Service::RdsCluster) => ResourceKind::RdsCluster,
            _ => ResourceKind::Ec2Instance,
        }
    }

    /// The targets `coffer restore` can turn it into.
    pub fn restore_targets(&self) -> &'static [&'static str] {
        match self.resource_kind() {
            // The original's volumes are swapped only where they are: its region and account.
            ResourceKind::Ec2Instance if self.region == self.resource_region && self.role.is_none() => {
                &["volume", "instance", "original"]
            }
            ResourceKind::Ec2Instance => &["volume", "instance"],
            ResourceKind::RdsInstance => &["db-instance"],
            ResourceKind::RdsCluster => &["db-cluster"],
        }
    }

    /// Points of one series share this: retention decides per series.
    pub fn series(&self) -> (String, SnapshotKind, String, String, Option<String>) {
        (self.resource_id.clone(), self.kind, self.account.clone(), self.region.clone(), self.mapping.clone())
    }
}

/// A place to look: an account (through a role, or ours) and a region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Place {
    pub(crate) role: Option<String>,
    pub(crate) region: String,
}

/// Every restore point of `policy`, and the places that could not be read.
pub async fn list(
    executor: &Executor,
    policy: &PolicyDocument,
    mappings: &BTreeMap<String, RegionMappingDocument>,
) -> (Vec<RestorePoint>, Vec<String>) {
    let mut places: BTreeSet<Place> =
        policy.source.regions.iter().map(|r| Place { role: None, region: r.clone() }).collect();
    for mapping in mappings.values() {
        places.insert(Place { role: mapping.target_role_arn.clone(), region: mapping.target_region.clone() });
    }
    let reads = places.into_iter().map(|place| async move {
        let clients = match executor.clients_for(place.role.as_deref()).await {
            Ok(Some(clients)) => clients,
            Ok(None) => return (place.clone(), list_place(&executor.aws, policy, &place).await),
            Err(e) => return (place, Err(AwsError::Api(e.to_string()))),
        };
        let found = list_place(&clients, policy, &place).await;
        (place, found)
    });
    let mut points = Vec::new();
    let mut errors = Vec::new();
    for (place, found) in futures::future::join_all(reads).await {
        match found {
            Ok(found) => points.extend(found),
            Err(e) => errors.push(format!(
                "listing the restore points in {}{}: {e}",
                place.region,
                place.role.as_deref().map(|r| format!(" as {r}")).unwrap_or_default()
            )),
        }
    }
    points.sort_by(|a, b| (&a.resource_id, a.time, &a.region).cmp(&(&b.resource_id, b.time, &b.region)));
    (points, errors)
}

pub(crate) async fn list_place(
    aws: &AwsClients,
    policy: &PolicyDocument,
    place: &Place,
) -> Result<Vec<RestorePoint>, AwsError> {
    let region = place.region.as_str();
    let found: Vec<StoredSnapshot> = match policy.kind {
        PolicyType::Rds => {
            let client = aws.rds(region);
            let (instances, clusters) = tokio::try_join!(
                rds::list_manual_db_snapshots(&client),
                rds::list_manual_db_cluster_snapshots(&client)
            )?;
            instances
                .iter()
                .map(|s| snapshots::from_db_snapshot(region, s))
                .chain(clusters.iter().map(|s| snapshots::from_db_cluster_snapshot(region, s)))
                .filter(|s| s.tags.get(TAG_POLICY) == Some(&policy.name))
                .collect()
        }
        PolicyType::Ec2 => {
            snapshots::find_ebs_snapshots(&aws.ec2(region), region, &[(TAG_POLICY, &policy.name)]).await?
        }
    };
    Ok(group(found, &policy.name, &aws.account_id, place.role.as_deref()))
}

/// Groups snapshots into points: an instance's volume snapshots from one
/// run are one point. Snapshots without Coffer's tags are not points.
fn group(found: Vec<StoredSnapshot>, policy: &str, account: &str, role: Option<&str>) -> Vec<RestorePoint> {
    let mut points: BTreeMap<(String, String, SnapshotKind, Option<String>), RestorePoint> = BTreeMap::new();
    for snapshot in found {
        let tag = |k: &str| snapshot.tags.get(k).cloned();
        let (Some(source), Some(run), Some(kind), Some(time)) =
            (tag(TAG_SOURCE), tag(TAG_RUN), tag(TAG_KIND), tag(TAG_TIME))
        else {
            continue;
        };
        let Ok(kind) = kind.parse::<SnapshotKind>() else { continue };
        let Ok(time) = DateTime::parse_from_rfc3339(&time) else { continue };
        let rules = tag(TAG_RULE).unwrap_or_default().split_whitespace().map(str::to_string).collect();
        let mapping = tag(TAG_MAPPING);
        let resource_region = tag(TAG_SOURCE_REGION).unwrap_or_else(|| snapshot.region.clone());
        let key = (source.clone(), run.clone(), kind, mapping.clone());
        points
            .entry(key)
            .or_insert_with(|| RestorePoint {
                policy: policy.to_string(),
                resource_id: source,
                resource_region,
                kind,
                region: snapshot.region.clone(),
                account: account.to_string(),
                mapping,
                run_id: run,
                time: time.to_utc(),
                rules,
                snapshots: Vec::new(),
                role: role.map(str::to_string),
            })
            .snapshots
            .push(snapshot);
    }
    points.into_values().collect()
}

/// Deletes every snapshot of a point.
pub async fn delete(aws: &AwsClients, point: &RestorePoint) -> Result<(), AwsError> {
    for snapshot in &point.snapshots {
        match snapshot.service {
            Service::Ebs => snapshots::delete_ebs_snapshot(&aws.ec2(&snapshot.region), &snapshot.id).await?,
            service => snapshots::delete_rds_snapshot(&aws.rds(&snapshot.region), service, &snapshot.id).await?,
        }
    }
    Ok(())
}
