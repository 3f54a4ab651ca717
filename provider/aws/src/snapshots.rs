//! Snapshots of the three kinds Coffer makes — EBS snapshots of an EC2
//! instance's volumes, DB snapshots, DB cluster snapshots — behind one
//! record, with the calls that create, copy, share, find and delete them.
//! Clients are passed in, so a copy into another account is the same code
//! with the target account's client.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{
    CopyTagsFromSource, InstanceSpecification, OperationType, ResourceType, SnapshotAttributeName, SnapshotState,
    TagSpecification,
};

use crate::{AwsError, ec2, rds};
use coffer_model::region_mapping::Encrypt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    Ebs,
    RdsInstance,
    RdsCluster,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Complete,
    Pending,
    Failed(String),
}

/// A snapshot as AWS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub id: String,
    pub region: String,
    pub service: Service,
    pub state: State,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    /// RDS: the snapshot's ARN (the source of a copy).
    pub arn: Option<String>,
    /// EBS: the volume it is of.
    pub volume_id: Option<String>,
    /// RDS: the engine and its version the snapshot was taken with.
    pub engine: Option<Engine>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub name: String,
    pub version: String,
}

impl Engine {
    fn of(name: Option<&str>, version: Option<&str>) -> Option<Engine> {
        Some(Engine { name: name?.to_string(), version: version?.to_string() })
    }
}

/// How a copy is encrypted, from the region mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyEncryption {
    pub encrypted: bool,
    /// A key in the target region; `None` keeps the service default.
    pub kms_key_id: Option<String>,
}

impl CopyEncryption {
    /// `encrypt = "all"` puts every copy under the key; `encrypted_only`
    /// only copies of encrypted sources (the others stay unencrypted).
    pub fn for_mapping(encrypt: Encrypt, kms_key_arn: Option<&str>, source_encrypted: bool) -> Self {
        match kms_key_arn {
            Some(key) if encrypt == Encrypt::All || source_encrypted => {
                Self { encrypted: true, kms_key_id: Some(key.to_string()) }
            }
            _ => Self { encrypted: source_encrypted, kms_key_id: None },
        }
    }
}

fn ec2_tags(tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .set_tags(Some(tags.iter().map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build()).collect()))
        .build()
}

fn rds_tags(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_rds::types::Tag> {
    tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build()).collect()
}

fn from_ebs(region: &str, s: &aws_sdk_ec2::types::Snapshot) -> StoredSnapshot {
    let state = match s.state() {
        Some(SnapshotState::Completed) => State::Complete,
        Some(SnapshotState::Error) | Some(SnapshotState::Recoverable) => {
            State::Failed(s.state_message().unwrap_or("snapshot in error").to_string())
        }
        _ => State::Pending,
    };
    StoredSnapshot {
        id: s.snapshot_id().unwrap_or_default().to_string(),
        region: region.to_string(),
        service: Service::Ebs,
        state,
        encrypted: s.encrypted().unwrap_or(false),
        kms_key_id: s.kms_key_id().map(str::to_string),
        arn: None,
        volume_id: s.volume_id().map(str::to_string),
        engine: None,
        tags: s
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
            .collect(),
    }
}

fn rds_state(status: Option<&str>) -> State {
    match status {
        Some("available") => State::Complete,
        Some("creating") | Some("copying") | Some("pending") | None => State::Pending,
        Some(other) => State::Failed(format!("status {other}")),
    }
}

fn rds_tag_map(list: &[aws_sdk_rds::types::Tag]) -> BTreeMap<String, String> {
    list.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

pub fn from_db_snapshot(region: &str, s: &aws_sdk_rds::types::DbSnapshot) -> StoredSnapshot {
    StoredSnapshot {
        id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
        region: region.to_string(),
        service: Service::RdsInstance,
        state: rds_state(s.status()),
        encrypted: s.encrypted().unwrap_or(false),
        kms_key_id: s.kms_key_id().filter(|_| s.encrypted() == Some(true)).map(str::to_string),
        arn: s.db_snapshot_arn().map(str::to_string),
        volume_id: None,
        engine: Engine::of(s.engine(), s.engine_version()),
        tags: rds_tag_map(s.tag_list()),
    }
}

pub fn from_db_cluster_snapshot(region: &str, s: &aws_sdk_rds::types::DbClusterSnapshot) -> StoredSnapshot {
    StoredSnapshot {
        id: s.db_cluster_snapshot_identifier().unwrap_or_default().to_string(),
        region: region.to_string(),
        service: Service::RdsCluster,
        state: rds_state(s.status()),
        encrypted: s.storage_encrypted().unwrap_or(false),
        kms_key_id: s.kms_key_id().filter(|_| s.storage_encrypted() == Some(true)).map(str::to_string),
        arn: s.db_cluster_snapshot_arn().map(str::to_string),
        volume_id: None,
        engine: Engine::of(s.engine(), s.engine_version()),
        tags: rds_tag_map(s.tag_list()),
    }
}

// ------------------------------------------------------------------- EBS

/// Crash-consistent snapshots of every volume attached to `instance_id`;
/// the instance's volume tags are copied, then `tags` on top.
pub async fn create_ebs_snapshots(
    client: &aws_sdk_ec2::Client,
    instance_id: &str,
    description: &str,
    tags: &BTreeMap<String, String>,
) -> Result<Vec<String>, AwsError> {
    let out = client
        .create_snapshots()
        .instance_specification(InstanceSpecification::builder().instance_id(instance_id).build())
        .description(description)
        .copy_tags_from_source(CopyTagsFromSource::Volume)
        .tag_specifications(ec2_tags(tags))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &["InvalidInstanceID.NotFound"]))?;
    Ok(out.snapshots().iter().filter_map(|s| s.snapshot_id().map(str::to_string)).collect())
}

/// This account's EBS snapshots carrying every tag of `tags`.
pub async fn find_ebs_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    tags: &[(&str, &str)],
) -> Result<Vec<StoredSnapshot>, AwsError> {
    let filters = tags.iter().map(|(k, v)| ec2::tag_filter(k, v)).collect();
    Ok(ec2::list_own_snapshots(client, filters, &[]).await?.iter().map(|s| from_ebs(region, s)).collect())
}

pub async fn describe_ebs_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    ids: &[String],
) -> Result<Vec<StoredSnapshot>, AwsError> {
    Ok(ec2::list_own_snapshots(client, Vec::new(), ids).await?.iter().map(|s| from_ebs(region, s)).collect())
}

/// Lets `account` copy the snapshot (cross-account replication).
pub async fn share_ebs_snapshot(
    client: &aws_sdk_ec2::Client,
    snapshot_id: &str,
    account: &str,
) -> Result<(), AwsError> {
    modify_ebs_share(client, snapshot_id, account, OperationType::Add).await
}

/// Whether the KMS key `key_id` is AWS managed (`aws/ebs`, `aws/rds`). No other account may
/// use such a key, so AWS refuses to share a snapshot encrypted with it (EC2 user guide, "Share
/// an Amazon EBS snapshot": snapshots encrypted with the default AWS managed key can't be
/// shared; RDS user guide, "Sharing a DB snapshot": a snapshot encrypted with the default AWS
/// KMS key can't be shared).
pub async fn is_aws_managed_key(kms: &aws_sdk_kms::Client, key_id: &str) -> Result<bool, AwsError> {
    let out =
        kms.describe_key().key_id(key_id).send().await.map_err(|e| AwsError::from_sdk(e, &["NotFoundException"]))?;
    Ok(out.key_metadata().and_then(|m| m.key_manager()) == Some(&aws_sdk_kms::types::KeyManagerType::Aws))
}

/// Takes back what [`share_ebs_snapshot`] gave, once the copy is done or failed: production
/// snapshots do not stay shared with the other account. A snapshot already gone is no error.
pub async fn revoke_ebs_share(client: &aws_sdk_ec2::Client, snapshot_id: &str, account: &str) -> Result<(), AwsError> {
    match modify_ebs_share(client, snapshot_id, account, OperationType::Remove).await {
        Err(AwsError::NotFound) => Ok(()),
        other => other,
    }
}

async fn modify_ebs_share(
    client: &aws_sdk_ec2::Client,
    snapshot_id: &str,
    account: &str,
    operation: OperationType,
) -> Result<(), AwsError> {
    client
        .modify_snapshot_attribute()
        .snapshot_id(snapshot_id)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .operation_type(operation)
        .user_ids(account)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, ec2::SNAPSHOT_NOT_FOUND))?;
    Ok(())
}

/// Copies `snapshot_id` from `source_region` with the client of the target
/// region (and account).
pub async fn copy_ebs_snapshot(
    target: &aws_sdk_ec2::Client,
    source_region: &str,
    snapshot_id: &str,
    encryption: &CopyEncryption,
    description: &str,
    tags: &BTreeMap<String, String>,
) -> Result<String, AwsError> {
    let out = target
        .copy_snapshot()
        .source_region(source_region)
        .source_snapshot_id(snapshot_id)
        .description(description)
        .encrypted(encryption.encrypted)
        .set_kms_key_id(encryption.kms_key_id.clone())
        .tag_specifications(ec2_tags(tags))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, ec2::SNAPSHOT_NOT_FOUND))?;
    out.snapshot_id().map(str::to_string).ok_or_else(|| AwsError::Api("CopySnapshot returned no snapshot id".into()))
}

pub async fn delete_ebs_snapshot(client: &aws_sdk_ec2::Client, snapshot_id: &str) -> Result<(), AwsError> {
    match client.delete_snapshot().snapshot_id(snapshot_id).send().await {
        Ok(_) => Ok(()),
        Err(e) => match AwsError::from_sdk(e, ec2::SNAPSHOT_NOT_FOUND) {
            AwsError::NotFound => Ok(()),
            e => Err(e),
        },
    }
}

// ------------------------------------------------------------------- RDS

pub async fn create_rds_snapshot(
    client: &aws_sdk_rds::Client,
    service: Service,
    source_id: &str,
    snapshot_id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    match service {
        Service::RdsCluster => client
            .create_db_cluster_snapshot()
            .db_cluster_identifier(source_id)
            .db_cluster_snapshot_identifier(snapshot_id)
            .set_tags(Some(rds_tags(tags)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, &["DBClusterNotFoundFault"])),
        _ => client
            .create_db_snapshot()
            .db_instance_identifier(source_id)
            .db_snapshot_identifier(snapshot_id)
            .set_tags(Some(rds_tags(tags)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, &["DBInstanceNotFound"])),
    }
}

pub async fn find_rds_snapshot(
    client: &aws_sdk_rds::Client,
    region: &str,
    service: Service,
    snapshot_id: &str,
) -> Result<StoredSnapshot, AwsError> {
    match service {
        Service::RdsCluster => {
            rds::find_db_cluster_snapshot(client, snapshot_id).await.map(|s| from_db_cluster_snapshot(region, &s))
        }
        _ => rds::find_db_snapshot(client, snapshot_id).await.map(|s| from_db_snapshot(region, &s)),
    }
}

/// Lets `account` restore and copy the snapshot.
pub async fn share_rds_snapshot(
    client: &aws_sdk_rds::Client,
    service: Service,
    snapshot_id: &str,
    account: &str,
) -> Result<(), AwsError> {
    modify_rds_share(client, service, snapshot_id, account, true).await
}

/// Takes back what [`share_rds_snapshot`] gave (see [`revoke_ebs_share`]).
pub async fn revoke_rds_share(
    client: &aws_sdk_rds::Client,
    service: Service,
    snapshot_id: &str,
    account: &str,
) -> Result<(), AwsError> {
    match modify_rds_share(client, service, snapshot_id, account, false).await {
        Err(AwsError::NotFound) => Ok(()),
        other => other,
    }
}

/// The `restore` attribute names the accounts that may restore or copy the snapshot.
async fn modify_rds_share(
    client: &aws_sdk_rds::Client,
    service: Service,
    snapshot_id: &str,
    account: &str,
    add: bool,
) -> Result<(), AwsError> {
    let (to_add, to_remove) =
        if add { (Some(vec![account.to_string()]), None) } else { (None, Some(vec![account.to_string()])) };
    match service {
        Service::RdsCluster => client
            .modify_db_cluster_snapshot_attribute()
            .db_cluster_snapshot_identifier(snapshot_id)
            .attribute_name("restore")
            .set_values_to_add(to_add)
            .set_values_to_remove(to_remove)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, rds::DB_CLUSTER_SNAPSHOT_NOT_FOUND)),
        _ => client
            .modify_db_snapshot_attribute()
            .db_snapshot_identifier(snapshot_id)
            .attribute_name("restore")
            .set_values_to_add(to_add)
            .set_values_to_remove(to_remove)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, rds::DB_SNAPSHOT_NOT_FOUND)),
    }
}

/// Copies the snapshot `source_arn` into the target client's region (and
/// account) as `target_id`. An encrypted snapshot from another region takes
/// the destination key and a presigned URL ([`crate::rds_presign`]).
pub async fn copy_rds_snapshot(
    target: &aws_sdk_rds::Client,
    service: Service,
    source_arn: &str,
    target_id: &str,
    kms_key_id: Option<&str>,
    pre_signed_url: Option<String>,
    tags: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    match service {
        Service::RdsCluster => target
            .copy_db_cluster_snapshot()
            .source_db_cluster_snapshot_identifier(source_arn)
            .target_db_cluster_snapshot_identifier(target_id)
            .set_kms_key_id(kms_key_id.map(str::to_string))
            .set_pre_signed_url(pre_signed_url)
            .set_tags(Some(rds_tags(tags)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, rds::DB_CLUSTER_SNAPSHOT_NOT_FOUND)),
        _ => target
            .copy_db_snapshot()
            .source_db_snapshot_identifier(source_arn)
            .target_db_snapshot_identifier(target_id)
            .set_kms_key_id(kms_key_id.map(str::to_string))
            .set_pre_signed_url(pre_signed_url)
            .set_tags(Some(rds_tags(tags)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, rds::DB_SNAPSHOT_NOT_FOUND)),
    }
}

pub async fn delete_rds_snapshot(
    client: &aws_sdk_rds::Client,
    service: Service,
    snapshot_id: &str,
) -> Result<(), AwsError> {
    let result = match service {
        Service::RdsCluster => client
            .delete_db_cluster_snapshot()
            .db_cluster_snapshot_identifier(snapshot_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, rds::DB_CLUSTER_SNAPSHOT_NOT_FOUND)),
        _ => client
            .delete_db_snapshot()
            .db_snapshot_identifier(snapshot_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, rds::DB_SNAPSHOT_NOT_FOUND)),
    };
    match result {
        Err(AwsError::NotFound) => Ok(()),
        other => other,
    }
}

/// An RDS snapshot identifier for one resource in one run: readable, and
/// the same on a re-run (so a re-run finds what the first attempt made).
/// RDS allows 1-255 letters, digits and single hyphens, starting with a
/// letter and not ending with a hyphen.
pub fn rds_snapshot_id(policy: &str, run_id: &str, source_id: &str) -> String {
    let raw = format!("coffer-{policy}-{run_id}-{source_id}");
    let mut id = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' };
        if !(c == '-' && id.ends_with('-')) {
            id.push(c);
        }
    }
    if id.len() > 255 {
        // Distinct long names must stay distinct: keep a hash of the whole.
        use sha2::Digest;
        let digest = sha2::Sha256::digest(raw.as_bytes());
        let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        id.truncate(255 - 13);
        id = format!("{}-{hash}", id.trim_end_matches('-'));
    }
    id.trim_end_matches('-').to_string()
}

/// Why snapshots did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("snapshot {id} failed: {why}")]
    Failed { id: String, why: String },
    #[error("{} still pending after {}s", pending.join(", "), waited.as_secs())]
    StillPending { pending: Vec<String>, waited: Duration },
}

/// Polls `check` until every snapshot is complete, one fails, or `timeout`
/// passes; the delay between checks doubles from `first` up to a minute.
pub async fn wait_until_complete<F, Fut>(
    mut check: F,
    first: Duration,
    timeout: Duration,
) -> Result<Vec<StoredSnapshot>, WaitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<StoredSnapshot>, AwsError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = first;
    loop {
        let snapshots = check().await?;
        if let Some(failed) = snapshots.iter().find_map(|s| match &s.state {
            State::Failed(why) => Some(WaitError::Failed { id: s.id.clone(), why: why.clone() }),
            _ => None,
        }) {
            return Err(failed);
        }
        if snapshots.iter().all(|s| s.state == State::Complete) {
            return Ok(snapshots);
        }
        if tokio::time::Instant::now() + delay > deadline {
            let pending = snapshots.iter().filter(|s| s.state != State::Complete).map(|s| s.id.clone()).collect();
            return Err(WaitError::StillPending { pending, waited: timeout });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_snapshot_ids_are_valid_and_stable() {
        assert_eq!(rds_snapshot_id("prod_db", "20261123-0200", "orders-db"), "coffer-prod-db-20261123-0200-orders-db");
        let long = rds_snapshot_id(&"p".repeat(200), "20261123-0200", &"d".repeat(63));
        assert!(long.len() <= 255 && !long.ends_with('-'), "{long}");
        assert_ne!(long, rds_snapshot_id(&"p".repeat(200), "20261123-0200", &"e".repeat(63)));
    }

    #[test]
    fn copies_take_the_mapping_key_per_encrypt() {
        let key = Some("arn:aws:kms:eu-west-1:1:key/k");
        assert_eq!(CopyEncryption::for_mapping(Encrypt::All, key, false).kms_key_id.as_deref(), key);
        assert!(CopyEncryption::for_mapping(Encrypt::All, key, false).encrypted);
        assert_eq!(
            CopyEncryption::for_mapping(Encrypt::EncryptedOnly, key, false),
            CopyEncryption { encrypted: false, kms_key_id: None }
        );
        assert_eq!(CopyEncryption::for_mapping(Encrypt::EncryptedOnly, key, true).kms_key_id.as_deref(), key);
        assert_eq!(
            CopyEncryption::for_mapping(Encrypt::All, None, true),
            CopyEncryption { encrypted: true, kms_key_id: None }
        );
    }
}
