//! Scope resolution: the resources a policy protects, per region.
//! scope = ids ∪ resources carrying all of `source.tags` − `exclude_ids`.

use std::collections::{BTreeMap, BTreeSet};

use coffer_aws::configuration::{self as flatten, attached_volume_ids};
use coffer_aws::{AwsClients, AwsError, ec2, rds};
use coffer_model::configuration::ResourceConfiguration;
use coffer_model::policy::{PolicyDocument, PolicyType};
pub use coffer_model::session::ResourceKind;

/// One protected resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: String,
    pub region: String,
    pub kind: ResourceKind,
    /// Its tags (copied onto its snapshots, under Coffer's own).
    pub tags: BTreeMap<String, String>,
    /// RDS: the identifier's ARN, for CopyDB*Snapshot's source.
    pub arn: Option<String>,
    /// What its restores rebuild it from, recorded in the session.
    pub configuration: Option<ResourceConfiguration>,
}

/// What a policy covers right now.
#[derive(Debug, Default)]
pub struct Scope {
    pub resources: Vec<Resource>,
    /// Ids named in `source.ids` found in none of the policy's regions.
    pub missing_ids: Vec<String>,
    /// Regions that could not be listed, with why.
    pub failed_regions: Vec<(String, String)>,
}

pub async fn resolve(aws: &AwsClients, policy: &PolicyDocument) -> Scope {
    let lookups = policy.source.regions.iter().map(|region| async move {
        let found = match policy.kind {
            PolicyType::Rds => rds_candidates(aws, region).await,
            PolicyType::Ec2 => ec2_candidates(aws, region, policy).await,
        };
        (region.clone(), found)
    });
    let mut scope = Scope::default();
    let mut seen_ids = BTreeSet::new();
    for (region, found) in futures::future::join_all(lookups).await {
        match found {
            Ok(candidates) => {
                for resource in candidates {
                    let named = policy.source.ids.contains(&resource.id);
                    if named {
                        seen_ids.insert(resource.id.clone());
                    }
                    if select(&resource, policy, named) {
                        scope.resources.push(resource);
                    }
                }
            }
            Err(e) => scope.failed_regions.push((region, e.to_string())),
        }
    }
    // An id can only be called missing when every region was listed.
    if scope.failed_regions.is_empty() {
        scope.missing_ids = policy
            .source
            .ids
            .iter()
            .filter(|id| !seen_ids.contains(*id) && !policy.source.exclude_ids.contains(id))
            .cloned()
            .collect();
    }
    scope.resources.sort_by(|a, b| (&a.region, &a.id).cmp(&(&b.region, &b.id)));
    scope
}

fn select(resource: &Resource, policy: &PolicyDocument, named: bool) -> bool {
    let tagged =
        !policy.source.tags.is_empty() && policy.source.tags.iter().all(|(k, v)| resource.tags.get(k) == Some(v));
    (named || tagged) && !policy.source.exclude_ids.contains(&resource.id)
}

/// Instances named by id or carrying all of the policy's tags;
/// EC2 filters both server-side, `select` decides.
async fn ec2_candidates(aws: &AwsClients, region: &str, policy: &PolicyDocument) -> Result<Vec<Resource>, AwsError> {
    let client = aws.ec2(region);
    let mut instances = Vec::new();
    if !policy.source.tags.is_empty() {
        let filters = policy.source.tags.iter().map(|(k, v)| ec2::tag_filter(k, v)).collect();
        instances.extend(ec2::list_instances(&client, filters).await?);
    }
    if !policy.source.ids.is_empty() {
        // A filter, not InstanceIds: an id from another region is not an error.
        let by_id = aws_sdk_ec2::types::Filter::builder()
            .name("instance-id")
            .set_values(Some(policy.source.ids.clone()))
            .build();
        instances.extend(ec2::list_instances(&client, vec![by_id]).await?);
    }
    // The volumes' types, sizes and keys, for the restores' block device
    // mapping; without them the configuration still says each device.
    let volume_ids: Vec<String> = instances.iter().flat_map(attached_volume_ids).collect();
    let volumes = if volume_ids.is_empty() {
        Vec::new()
    } else {
        flatten::list_volumes(&client, &volume_ids).await.unwrap_or_else(|e| {
            tracing::warn!(region, error = %e, "describing the instances' volumes: their restores get AWS's defaults");
            Vec::new()
        })
    };
    let mut resources: BTreeMap<String, Resource> = BTreeMap::new();
    for instance in instances {
        let Some(id) = instance.instance_id() else { continue };
        resources.entry(id.to_string()).or_insert_with(|| Resource {
            id: id.to_string(),
            region: region.to_string(),
            kind: ResourceKind::Ec2Instance,
            tags: flatten::ec2_tags(instance.tags()),
            arn: None,
            configuration: Some(ResourceConfiguration::Ec2Instance(flatten::instance_configuration(
                &instance, &volumes,
            ))),
        });
    }
    Ok(resources.into_values().collect())
}

/// Every DB instance that is not a cluster member, and every DB cluster:
/// RDS has no server-side tag filter, so `select` decides.
async fn rds_candidates(aws: &AwsClients, region: &str) -> Result<Vec<Resource>, AwsError> {
    let client = aws.rds(region);
    let (instances, clusters) = tokio::try_join!(rds::list_db_instances(&client), rds::list_db_clusters(&client))?;
    let tags = |list: &[aws_sdk_rds::types::Tag]| -> BTreeMap<String, String> {
        list.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
    };
    let mut resources = Vec::new();
    for db in &instances {
        // Aurora members are snapshotted through their cluster.
        if db.db_cluster_identifier().is_some() {
            continue;
        }
        let Some(id) = db.db_instance_identifier() else { continue };
        resources.push(Resource {
            id: id.to_string(),
            region: region.to_string(),
            kind: ResourceKind::RdsInstance,
            tags: tags(db.tag_list()),
            arn: db.db_instance_arn().map(str::to_string),
            configuration: Some(ResourceConfiguration::RdsInstance(flatten::db_instance_configuration(db))),
        });
    }
    for cluster in clusters {
        let Some(id) = cluster.db_cluster_identifier() else { continue };
        resources.push(Resource {
            id: id.to_string(),
            region: region.to_string(),
            kind: ResourceKind::RdsCluster,
            tags: tags(cluster.tag_list()),
            arn: cluster.db_cluster_arn().map(str::to_string),
            configuration: Some(ResourceConfiguration::RdsCluster(flatten::db_cluster_configuration(
                &cluster, &instances,
            ))),
        });
    }
    Ok(resources)
}
