//! Copying one snapshot through a region mapping: into another region, another account, or
//! both, in the sequence AWS accepts for its encryption (docs/resources/region_mapping.md has
//! the table of cases). The AWS rules each step follows are cited where the step is made; the
//! emulator cannot show most of them, so `tests/executor/cross_account.rs` checks the
//! sequences call by call with the SDK's mock clients.

use std::collections::BTreeMap;

use aws_credential_types::provider::SharedCredentialsProvider;
use coffer_aws::AwsError;
use coffer_aws::rds;
use coffer_aws::rds_presign::{self, CrossRegionCopy, PresignError};
use coffer_aws::snapshots::{self, CopyEncryption, Service, StoredSnapshot, WaitError};
use coffer_model::session::SnapshotKind;

use super::{Settings, TAG_KIND, TAG_RUN, TAG_SOURCE_SNAPSHOT};

/// `coffer:kind` of a staging copy: the re-encrypted copy a snapshot under an AWS managed key
/// needs before it can be shared. It is no restore point (the inventory skips kinds it does
/// not know) and lives only until the target account's copy is complete.
pub const KIND_STAGING: &str = "staging";

/// One snapshot to copy through a mapping.
pub struct CopySpec<'a> {
    pub target_region: &'a str,
    /// Set when the target is another account: the snapshot is shared first.
    pub target_account: Option<&'a str>,
    pub snapshot: &'a StoredSnapshot,
    pub encryption: &'a CopyEncryption,
    pub tags: &'a BTreeMap<String, String>,
    pub description: String,
    /// RDS: the copy's identifier (the same on a re-run).
    pub rds_target_id: String,
    /// RDS: the staging copy's identifier (the same on a re-run).
    pub rds_staging_id: String,
    /// Look for a copy an earlier attempt of the run made (re-runs).
    pub look_for_earlier: bool,
    /// The target account's credentials, to presign a cross-region RDS copy with.
    pub target_credentials: Option<SharedCredentialsProvider>,
    /// The source account's credentials, to presign a cross-region staging copy with.
    pub source_credentials: Option<SharedCredentialsProvider>,
    /// KMS in the source region, to see whether the source's key can be shared at all.
    pub source_kms: Option<&'a aws_sdk_kms::Client>,
}

/// The clients of one service a copy involves.
pub struct CopyClients<'a, C> {
    /// The source account in the source region: the snapshot and its share.
    pub source: &'a C,
    /// The source account in the target region: where a staging copy is made and shared.
    pub staging: &'a C,
    /// Whoever owns the copies (the target role's account, or the source account), in the
    /// target region.
    pub target: &'a C,
}

/// Why a snapshot was not replicated, naming the step and the snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("looking for an earlier copy of {snapshot}: {cause}")]
    FindEarlier { snapshot: String, cause: AwsError },
    #[error("sharing {snapshot} with account {account}: {cause}")]
    Share { snapshot: String, account: String, cause: AwsError },
    #[error("snapshot {0} has no ARN")]
    NoArn(String),
    /// `to` is the target region (and, for RDS, the copy's identifier).
    #[error("copying {snapshot} to {to}: {cause}")]
    Copy { snapshot: String, to: String, cause: AwsError },
    #[error("waiting for copy {copy}: {cause}")]
    Wait { copy: String, cause: WaitError },
    #[error("copy {0} disappeared")]
    Disappeared(String),
    #[error(
        "snapshot {snapshot} is encrypted: a copy {reason} needs a KMS key of {region} (kms_key_arn of the region mapping); nothing was copied"
    )]
    NoDestinationKey { snapshot: String, region: String, reason: &'static str },
    #[error(
        "cluster snapshot {snapshot} is of {engine} {version}, which {region} does not offer (DescribeDBEngineVersions there), so AWS cannot copy it there; nothing was copied. Upgrade the cluster to a version both regions offer, or replicate to another region"
    )]
    EngineVersionNotOffered { snapshot: String, engine: String, version: String, region: String },
    #[error(transparent)]
    Presign(#[from] PresignError),
    #[error(
        "snapshot {snapshot} is encrypted with the AWS managed key {key}, which no other account may use, so AWS does not let it be shared with account {account}; nothing was shared or copied. Set kms_key_arn on the region mapping (a key of {region} that this account and account {account} may use: runs then re-encrypt a copy under it before sharing), or encrypt the source with a customer managed key whose key policy lets account {account} use it (kms:Decrypt, kms:DescribeKey, kms:CreateGrant)"
    )]
    AwsManagedKey { snapshot: String, key: String, account: String, region: String },
    #[error(
        "re-encrypting {snapshot} under {key} in {region} before sharing it (its AWS managed key cannot be shared): {cause}. The key policy of {key} must let this account use it: merge target_key_policy_statements_json of coffer_iam_policy into it"
    )]
    Stage { snapshot: String, key: String, region: String, cause: AwsError },
    #[error("revoking the share of {snapshot} with account {account}: {cause}; it stays shared")]
    Revoke { snapshot: String, account: String, cause: AwsError },
    #[error("deleting the staging copy {staging} in {region}: {cause}; it is left there, delete it by hand")]
    DeleteStaging { staging: String, region: String, cause: AwsError },
    #[error("{cause}; and {cleanup}")]
    AndCleanup { cause: Box<ReplicationError>, cleanup: Box<ReplicationError> },
}

impl ReplicationError {
    /// Raised before the source was shared: there is no share to take back.
    fn before_share(&self) -> bool {
        matches!(
            self,
            ReplicationError::FindEarlier { .. }
                | ReplicationError::NoDestinationKey { .. }
                | ReplicationError::AwsManagedKey { .. }
                | ReplicationError::EngineVersionNotOffered { .. }
                | ReplicationError::Presign(_)
                | ReplicationError::Stage { .. }
        )
    }

    fn still_copying(&self) -> bool {
        matches!(self, ReplicationError::Wait { cause: WaitError::StillPending { .. }, .. })
    }
}

/// A copy [`replicate_ebs`] or [`replicate_rds`] made, or found from an earlier attempt.
#[derive(Debug)]
pub struct Replica {
    pub snapshot: StoredSnapshot,
    pub reused: bool,
    /// What the copy left behind that it should not have, with why: a share that could not
    /// be revoked, a staging copy that could not be deleted.
    pub share_left: Option<String>,
}

/// How the source reaches another account.
enum Sharing {
    /// The source itself is shared (or there is no other account).
    Direct,
    /// The source is under an AWS managed key, which AWS never lets another account use:
    /// "You can't share a snapshot that has been encrypted using the default KMS key of the
    /// AWS account that shared the snapshot" (RDS user guide, "Sharing encrypted snapshots";
    /// the EC2 user guide says the same of `aws/ebs` under "Share an Amazon EBS snapshot").
    /// AWS's workaround, from the same page: copy it in the source account under a customer
    /// managed key the other account may use, share the copy, copy that in the target
    /// account. Coffer makes that staging copy in the target region under the mapping's key,
    /// so the target account's copy is a same-region copy of a snapshot under its own key.
    Staged { key: String },
}

/// Decides, before anything is shared, how the source reaches the target account. When the
/// key cannot be described (no `kms:DescribeKey` on it), the source is shared and AWS's
/// answer is what the session shows.
async fn sharing(copy: &CopySpec<'_>) -> Result<Sharing, ReplicationError> {
    let snapshot = copy.snapshot;
    let (Some(account), Some(kms), Some(key), true) =
        (copy.target_account, copy.source_kms, snapshot.kms_key_id.as_deref(), snapshot.encrypted)
    else {
        return Ok(Sharing::Direct);
    };
    match snapshots::is_aws_managed_key(kms, key).await {
        Ok(false) => Ok(Sharing::Direct),
        Ok(true) => match &copy.encryption.kms_key_id {
            Some(mapping_key) => Ok(Sharing::Staged { key: mapping_key.clone() }),
            None => Err(ReplicationError::AwsManagedKey {
                snapshot: snapshot.id.clone(),
                key: key.to_string(),
                account: account.to_string(),
                region: copy.target_region.to_string(),
            }),
        },
        Err(e) => {
            tracing::warn!(snapshot = %snapshot.id, key, error = %e, "describing the source key; sharing anyway");
            Ok(Sharing::Direct)
        }
    }
}

/// The tags that find what one attempt of the run made of `snapshot`, of one kind.
fn attempt_tags<'a>(copy: &'a CopySpec<'_>, kind: &'a str) -> [(&'a str, &'a str); 3] {
    [
        (TAG_RUN, copy.tags.get(TAG_RUN).map(String::as_str).unwrap_or_default()),
        (TAG_SOURCE_SNAPSHOT, copy.snapshot.id.as_str()),
        (TAG_KIND, kind),
    ]
}

/// A staging copy carries the replica's tags but its own kind, so retention never counts it.
fn staging_tags(copy: &CopySpec<'_>) -> BTreeMap<String, String> {
    let mut tags = copy.tags.clone();
    tags.insert(TAG_KIND.to_string(), KIND_STAGING.to_string());
    tags.insert(TAG_SOURCE_SNAPSHOT.to_string(), copy.snapshot.id.clone());
    tags
}

/// What a service's snapshots can be asked to do once a copy has ended.
trait Snapshots {
    async fn revoke_share(&self, service: Service, snapshot_id: &str, account: &str) -> Result<(), AwsError>;
    async fn delete(&self, service: Service, snapshot_id: &str) -> Result<(), AwsError>;
}

impl Snapshots for aws_sdk_ec2::Client {
    async fn revoke_share(&self, _: Service, snapshot_id: &str, account: &str) -> Result<(), AwsError> {
        snapshots::revoke_ebs_share(self, snapshot_id, account).await
    }

    async fn delete(&self, _: Service, snapshot_id: &str) -> Result<(), AwsError> {
        snapshots::delete_ebs_snapshot(self, snapshot_id).await
    }
}

impl Snapshots for aws_sdk_rds::Client {
    async fn revoke_share(&self, service: Service, snapshot_id: &str, account: &str) -> Result<(), AwsError> {
        snapshots::revoke_rds_share(self, service, snapshot_id, account).await
    }

    async fn delete(&self, service: Service, snapshot_id: &str) -> Result<(), AwsError> {
        snapshots::delete_rds_snapshot(self, service, snapshot_id).await
    }
}

/// Ends a cross-account copy: what was shared is revoked once the copy is complete or has
/// failed, so production snapshots do not stay readable by the other account, and a staging
/// copy is deleted ("If you delete a source snapshot before the target snapshot becomes
/// available, the snapshot copy might fail", RDS user guide, "Copying a DB snapshot": so not
/// before). A copy still pending (the wait timed out) keeps both: taking them away could fail
/// the copy, and a re-run of the run finds the copy and cleans up then.
async fn end_copy<C: Snapshots>(
    copied: Result<(StoredSnapshot, bool), ReplicationError>,
    copy: &CopySpec<'_>,
    clients: &CopyClients<'_, C>,
    staging: Option<String>,
) -> Result<Replica, ReplicationError> {
    let still_copying = matches!(&copied, Err(e) if e.still_copying());
    let nothing_shared = matches!(&copied, Err(e) if e.before_share());
    let service = copy.snapshot.service;
    let cleaned = match (copy.target_account, staging) {
        _ if still_copying => Ok(()),
        (Some(account), Some(staging)) => {
            // Deleting the staging copy ends its share too; the revoke first makes sure the
            // share ends even when the delete is refused.
            let revoked = clients.staging.revoke_share(service, &staging, account).await;
            let region = copy.target_region.to_string();
            match (clients.staging.delete(service, &staging).await, revoked) {
                (Ok(()), _) => Ok(()),
                (Err(cause), Ok(())) => Err(ReplicationError::DeleteStaging { staging, region, cause }),
                (Err(cause), Err(revoke)) => Err(ReplicationError::AndCleanup {
                    cause: Box::new(ReplicationError::DeleteStaging { staging: staging.clone(), region, cause }),
                    cleanup: Box::new(ReplicationError::Revoke {
                        snapshot: staging,
                        account: account.to_string(),
                        cause: revoke,
                    }),
                }),
            }
        }
        (Some(account), None) if !nothing_shared => {
            clients.source.revoke_share(service, &copy.snapshot.id, account).await.map_err(|cause| {
                ReplicationError::Revoke { snapshot: copy.snapshot.id.clone(), account: account.to_string(), cause }
            })
        }
        _ => Ok(()),
    };
    match (copied, cleaned) {
        (Ok((snapshot, reused)), cleaned) => {
            Ok(Replica { snapshot, reused, share_left: cleaned.err().map(|e| e.to_string()) })
        }
        (Err(cause), Ok(())) => Err(cause),
        (Err(cause), Err(cleanup)) => {
            Err(ReplicationError::AndCleanup { cause: Box::new(cause), cleanup: Box::new(cleanup) })
        }
    }
}

fn share_error(snapshot_id: &str, account: &str, cause: AwsError) -> ReplicationError {
    ReplicationError::Share { snapshot: snapshot_id.to_string(), account: account.to_string(), cause }
}

// ------------------------------------------------------------------- EBS

/// Copies one EBS snapshot: found from an earlier attempt of the run, or shared (another
/// account; through a staging copy when its key is AWS managed) and copied; then waited for.
pub async fn replicate_ebs(
    clients: &CopyClients<'_, aws_sdk_ec2::Client>,
    copy: &CopySpec<'_>,
    settings: &Settings,
) -> Result<Replica, ReplicationError> {
    let mut staging = None;
    let copied = copy_ebs(clients, copy, settings, &mut staging).await;
    end_copy(copied, copy, clients, staging).await
}

async fn copy_ebs(
    clients: &CopyClients<'_, aws_sdk_ec2::Client>,
    copy: &CopySpec<'_>,
    settings: &Settings,
    staging: &mut Option<String>,
) -> Result<(StoredSnapshot, bool), ReplicationError> {
    let region = copy.target_region;
    let snapshot = copy.snapshot;
    let find_earlier = |client, kind| async move {
        if !copy.look_for_earlier {
            return Ok(None);
        }
        let found = snapshots::find_ebs_snapshots(client, region, &attempt_tags(copy, kind))
            .await
            .map_err(|cause| ReplicationError::FindEarlier { snapshot: snapshot.id.clone(), cause })?;
        Ok::<_, ReplicationError>(found.into_iter().next())
    };
    let (id, reused) = match find_earlier(clients.target, SnapshotKind::Replica.as_str()).await? {
        Some(found) => {
            if copy.target_account.is_some() {
                *staging = find_earlier(clients.staging, KIND_STAGING).await?.map(|s| s.id);
            }
            (found.id, true)
        }
        None => {
            let (from_region, from_id) = match sharing(copy).await? {
                Sharing::Direct => {
                    if let Some(account) = copy.target_account {
                        snapshots::share_ebs_snapshot(clients.source, &snapshot.id, account)
                            .await
                            .map_err(|cause| share_error(&snapshot.id, account, cause))?;
                    }
                    (snapshot.region.clone(), snapshot.id.clone())
                }
                Sharing::Staged { key } => {
                    let staged = match find_earlier(clients.staging, KIND_STAGING).await? {
                        Some(found) => found.id,
                        None => stage_ebs(clients.staging, copy, &key).await?,
                    };
                    *staging = Some(staged.clone());
                    let staged = wait_for_ebs(clients.staging, region, staged, settings).await?;
                    let account = copy.target_account.unwrap_or_default();
                    snapshots::share_ebs_snapshot(clients.staging, &staged.id, account)
                        .await
                        .map_err(|cause| share_error(&staged.id, account, cause))?;
                    (staged.region, staged.id)
                }
            };
            let id = snapshots::copy_ebs_snapshot(
                clients.target,
                &from_region,
                &from_id,
                copy.encryption,
                &copy.description,
                copy.tags,
            )
            .await
            .map_err(|cause| ReplicationError::Copy {
                snapshot: from_id,
                to: region.to_string(),
                cause,
            })?;
            (id, false)
        }
    };
    wait_for_ebs(clients.target, region, id, settings).await.map(|s| (s, reused))
}

/// The staging copy of an EBS snapshot: the source account copies it into the target region
/// under the mapping's key, which the target account may use.
async fn stage_ebs(client: &aws_sdk_ec2::Client, copy: &CopySpec<'_>, key: &str) -> Result<String, ReplicationError> {
    let snapshot = copy.snapshot;
    let encryption = CopyEncryption { encrypted: true, kms_key_id: Some(key.to_string()) };
    snapshots::copy_ebs_snapshot(
        client,
        &snapshot.region,
        &snapshot.id,
        &encryption,
        &format!("Coffer staging copy of {} for sharing", snapshot.id),
        &staging_tags(copy),
    )
    .await
    .map_err(|cause| ReplicationError::Stage {
        snapshot: snapshot.id.clone(),
        key: key.to_string(),
        region: copy.target_region.to_string(),
        cause,
    })
}

async fn wait_for_ebs(
    client: &aws_sdk_ec2::Client,
    region: &str,
    id: String,
    settings: &Settings,
) -> Result<StoredSnapshot, ReplicationError> {
    let ids = [id];
    let mut done = snapshots::wait_until_complete(
        || snapshots::describe_ebs_snapshots(client, region, &ids),
        settings.poll_interval,
        settings.wait_timeout,
    )
    .await
    .map_err(|cause| ReplicationError::Wait { copy: ids[0].clone(), cause })?;
    let [id] = ids;
    done.pop().ok_or(ReplicationError::Disappeared(id))
}

// ------------------------------------------------------------------- RDS

/// The same for a DB or DB cluster snapshot.
pub async fn replicate_rds(
    clients: &CopyClients<'_, aws_sdk_rds::Client>,
    copy: &CopySpec<'_>,
    settings: &Settings,
) -> Result<Replica, ReplicationError> {
    let mut staging = None;
    let copied = copy_rds(clients, copy, settings, &mut staging).await;
    end_copy(copied, copy, clients, staging).await
}

/// What an RDS copy of an encrypted snapshot needs besides the source: AWS requires a key of
/// the destination region for a copy into another region, and a key for a copy of a snapshot
/// shared from another account (RDS API reference, CopyDBSnapshot and CopyDBClusterSnapshot,
/// `KmsKeyId`); a cross-region copy also takes the presigned URL ([`rds_presign`]). Checked
/// before anything is shared, so a copy that cannot be made leaves nothing behind.
///
/// Into another account *and* region, the shared snapshot is copied by the target account in
/// one `Copy…Snapshot` called in the target region: "You can copy snapshots to another AWS
/// Region or account in a single step" (RDS user guide, "Copying a DB snapshot"; Aurora user
/// guide, "DB cluster snapshot copying"), with the key of the target region and the URL
/// presigned by the target account, as the AWS CLI would send it from that account.
async fn rds_copy_encryption(copy: &CopySpec<'_>) -> Result<(Option<String>, Option<String>), ReplicationError> {
    let snapshot = copy.snapshot;
    let cross_region = snapshot.region != copy.target_region;
    let key = copy.encryption.kms_key_id.clone();
    if !snapshot.encrypted {
        return Ok((key, None));
    }
    let reason = match (cross_region, copy.target_account.is_some()) {
        (false, false) => return Ok((key, None)),
        (true, _) => "into another region",
        (false, true) => "into another account",
    };
    let Some(key) = key else {
        return Err(ReplicationError::NoDestinationKey {
            snapshot: snapshot.id.clone(),
            region: copy.target_region.to_string(),
            reason,
        });
    };
    let url = if cross_region {
        Some(presigned_url(copy, &copy.rds_target_id, &key, copy.target_credentials.as_ref()).await?)
    } else {
        None
    };
    Ok((Some(key), url))
}

/// The presigned URL of a copy of the source into the target region as `target_id`, signed
/// with `credentials`: those of the account that calls the copy.
async fn presigned_url(
    copy: &CopySpec<'_>,
    target_id: &str,
    key: &str,
    credentials: Option<&SharedCredentialsProvider>,
) -> Result<String, ReplicationError> {
    let snapshot = copy.snapshot;
    let source_arn = snapshot.arn.as_deref().ok_or_else(|| ReplicationError::NoArn(snapshot.id.clone()))?;
    let request = CrossRegionCopy {
        service: snapshot.service,
        source_region: &snapshot.region,
        destination_region: copy.target_region,
        source_arn,
        target_id,
        kms_key_id: key,
    };
    let credentials = credentials.ok_or_else(|| PresignError::Credentials("no credentials to sign with".into()))?;
    Ok(rds_presign::presigned_copy_url_with(credentials, &request).await?)
}

/// Refuses, before anything is shared, a cluster snapshot whose engine version the target
/// region does not offer (see [`rds::engine_version_offered`]). When the versions cannot be
/// listed, the copy goes ahead and AWS's answer is what the session shows.
async fn check_engine_offered(target: &aws_sdk_rds::Client, copy: &CopySpec<'_>) -> Result<(), ReplicationError> {
    let snapshot = copy.snapshot;
    let Some(engine) = snapshot.engine.as_ref().filter(|_| snapshot.service == Service::RdsCluster) else {
        return Ok(());
    };
    match rds::engine_version_offered(target, &engine.name, &engine.version).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ReplicationError::EngineVersionNotOffered {
            snapshot: snapshot.id.clone(),
            engine: engine.name.clone(),
            version: engine.version.clone(),
            region: copy.target_region.to_string(),
        }),
        Err(e) => {
            tracing::warn!(snapshot = %snapshot.id, error = %e, "listing engine versions in {}; copying anyway", copy.target_region);
            Ok(())
        }
    }
}

/// An RDS snapshot made by an earlier attempt of the run, by its identifier.
async fn find_earlier_rds(
    client: &aws_sdk_rds::Client,
    copy: &CopySpec<'_>,
    id: &str,
) -> Result<Option<StoredSnapshot>, ReplicationError> {
    if !copy.look_for_earlier {
        return Ok(None);
    }
    match snapshots::find_rds_snapshot(client, copy.target_region, copy.snapshot.service, id).await {
        Ok(found) => Ok(Some(found)),
        Err(AwsError::NotFound) => Ok(None),
        Err(cause) => Err(ReplicationError::FindEarlier { snapshot: copy.snapshot.id.clone(), cause }),
    }
}

async fn copy_rds(
    clients: &CopyClients<'_, aws_sdk_rds::Client>,
    copy: &CopySpec<'_>,
    settings: &Settings,
    staging: &mut Option<String>,
) -> Result<(StoredSnapshot, bool), ReplicationError> {
    let snapshot = copy.snapshot;
    let service = snapshot.service;
    let id = copy.rds_target_id.as_str();
    let reused = match find_earlier_rds(clients.target, copy, id).await? {
        Some(_) => {
            if copy.target_account.is_some() {
                *staging = find_earlier_rds(clients.staging, copy, &copy.rds_staging_id).await?.map(|s| s.id);
            }
            true
        }
        None => {
            check_engine_offered(clients.target, copy).await?;
            let (from, key, pre_signed_url) = match sharing(copy).await? {
                Sharing::Direct => {
                    let (key, url) = rds_copy_encryption(copy).await?;
                    if let Some(account) = copy.target_account {
                        snapshots::share_rds_snapshot(clients.source, service, &snapshot.id, account)
                            .await
                            .map_err(|cause| share_error(&snapshot.id, account, cause))?;
                    }
                    (snapshot.clone(), key, url)
                }
                Sharing::Staged { key } => {
                    let staging_id = copy.rds_staging_id.clone();
                    if find_earlier_rds(clients.staging, copy, &staging_id).await?.is_none() {
                        stage_rds(clients.staging, copy, &key).await?;
                    }
                    *staging = Some(staging_id.clone());
                    let staged = wait_for_rds(clients.staging, copy, &staging_id, settings).await?;
                    let account = copy.target_account.unwrap_or_default();
                    snapshots::share_rds_snapshot(clients.staging, service, &staging_id, account)
                        .await
                        .map_err(|cause| share_error(&staging_id, account, cause))?;
                    // A same-region copy of a snapshot shared from another account: the key is
                    // required, a presigned URL is not sent (RDS API reference, CopyDBSnapshot).
                    (staged, Some(key), None)
                }
            };
            let arn = from.arn.as_deref().ok_or_else(|| ReplicationError::NoArn(from.id.clone()))?;
            snapshots::copy_rds_snapshot(clients.target, service, arn, id, key.as_deref(), pre_signed_url, copy.tags)
                .await
                .map_err(|cause| ReplicationError::Copy {
                    snapshot: from.id.clone(),
                    to: format!("{} as {id}", copy.target_region),
                    cause,
                })?;
            false
        }
    };
    wait_for_rds(clients.target, copy, id, settings).await.map(|s| (s, reused))
}

/// The staging copy of a DB or DB cluster snapshot (see [`Sharing::Staged`]): the source
/// account copies it into the target region under the mapping's key, with a URL it presigns
/// itself when that is another region.
async fn stage_rds(client: &aws_sdk_rds::Client, copy: &CopySpec<'_>, key: &str) -> Result<(), ReplicationError> {
    let snapshot = copy.snapshot;
    let staging_id = &copy.rds_staging_id;
    let url = if snapshot.region != copy.target_region {
        Some(presigned_url(copy, staging_id, key, copy.source_credentials.as_ref()).await?)
    } else {
        None
    };
    let arn = snapshot.arn.as_deref().ok_or_else(|| ReplicationError::NoArn(snapshot.id.clone()))?;
    snapshots::copy_rds_snapshot(client, snapshot.service, arn, staging_id, Some(key), url, &staging_tags(copy))
        .await
        .map_err(|cause| ReplicationError::Stage {
            snapshot: snapshot.id.clone(),
            key: key.to_string(),
            region: copy.target_region.to_string(),
            cause,
        })
}

async fn wait_for_rds(
    client: &aws_sdk_rds::Client,
    copy: &CopySpec<'_>,
    id: &str,
    settings: &Settings,
) -> Result<StoredSnapshot, ReplicationError> {
    let (region, service) = (copy.target_region, copy.snapshot.service);
    let mut done = snapshots::wait_until_complete(
        || async { snapshots::find_rds_snapshot(client, region, service, id).await.map(|s| vec![s]) },
        settings.poll_interval,
        settings.wait_timeout,
    )
    .await
    .map_err(|cause| ReplicationError::Wait { copy: id.to_string(), cause })?;
    done.pop().ok_or_else(|| ReplicationError::Disappeared(id.to_string()))
}
