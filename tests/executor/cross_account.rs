//! Replication sequences the emulator cannot show, with mocked clients: moto
//! does not let a second account see a snapshot shared with it (AWS does),
//! and ignores the key and presigned URL an encrypted cross-region RDS copy
//! needs on AWS. So the sequences — share from the source account, copy as
//! the target account, wait, revoke the share (after success and after
//! failure); an encrypted RDS copy into another region with its destination
//! key and presigned URL, or refused before anything is shared when the
//! mapping has no key; a snapshot under an AWS managed key, which AWS never
//! shares (moto does), reaching the other account through a staging copy
//! under the mapping's key that is revoked and deleted after — are checked
//! call by call here. The same-account paths run against moto in `run.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use aws_smithy_types::error::ErrorMetadata;
use coffer_aws::snapshots::{CopyEncryption, Engine, Service, State, StoredSnapshot};
use coffer_executor::Settings;
use coffer_executor::replication::{CopyClients, CopySpec, Replica, ReplicationError, replicate_ebs, replicate_rds};
use coffer_model::region_mapping::Encrypt;

const TARGET_ACCOUNT: &str = "222222222222";
const TARGET_KEY: &str = "arn:aws:kms:eu-west-1:222222222222:key/0d7c2b3e-aaaa-bbbb-cccc-1234567890ab";

/// A client of `$sdk` in `$region` that answers from `$rules`, in order, and sends nothing.
macro_rules! mock_client_in {
    ($sdk:ident, $region:expr, $rules:expr) => {{
        let interceptor =
            $rules.iter().fold(MockResponseInterceptor::new().rule_mode(RuleMode::Sequential), |i, r| i.with_rule(r));
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new($region.to_string()))
                .credentials_provider(Credentials::new("mock", "mock", None, None, "mock"))
                .interceptor(interceptor)
                .http_client(create_mock_http_client())
                .build(),
        )
    }};
}

fn ec2_client(region: &str, rules: &[&Rule]) -> aws_sdk_ec2::Client {
    mock_client_in!(aws_sdk_ec2, region, rules)
}

fn kms_client(region: &str, rules: &[&Rule]) -> aws_sdk_kms::Client {
    mock_client_in!(aws_sdk_kms, region, rules)
}

fn rds_client(region: &str, rules: &[&Rule]) -> aws_sdk_rds::Client {
    mock_client_in!(aws_sdk_rds, region, rules)
}

fn source_credentials() -> Option<SharedCredentialsProvider> {
    Some(SharedCredentialsProvider::new(Credentials::new("AKIDSOURCE", "source-secret", None, None, "s")))
}

fn credentials() -> Option<SharedCredentialsProvider> {
    Some(SharedCredentialsProvider::new(Credentials::new(
        "AKIDTARGET",
        "target-secret",
        Some("token".into()),
        None,
        "t",
    )))
}

/// The revoke of a share with the target account, recorded by `revoked`.
fn ebs_revoke(revoked: &Arc<AtomicBool>) -> Rule {
    let revoked = revoked.clone();
    mock!(aws_sdk_ec2::Client::modify_snapshot_attribute)
        .match_requests(|r| {
            r.snapshot_id() == Some("snap-source")
                && r.user_ids() == [TARGET_ACCOUNT]
                && r.operation_type() == Some(&aws_sdk_ec2::types::OperationType::Remove)
        })
        .then_output(move || {
            revoked.store(true, Ordering::SeqCst);
            aws_sdk_ec2::operation::modify_snapshot_attribute::ModifySnapshotAttributeOutput::builder().build()
        })
}

fn rds_revoke(snapshot_id: &'static str, revoked: &Arc<AtomicBool>) -> Rule {
    let revoked = revoked.clone();
    mock!(aws_sdk_rds::Client::modify_db_snapshot_attribute)
        .match_requests(move |r| {
            r.db_snapshot_identifier() == Some(snapshot_id)
                && r.attribute_name() == Some("restore")
                && r.values_to_remove() == [TARGET_ACCOUNT]
                && r.values_to_add().is_empty()
        })
        .then_output(move || {
            revoked.store(true, Ordering::SeqCst);
            aws_sdk_rds::operation::modify_db_snapshot_attribute::ModifyDbSnapshotAttributeOutput::builder().build()
        })
}

/// A copy of `snapshot` to eu-west-1 as `coffer-prod-copy` (`account`: into another account).
fn rds_spec<'a>(
    snapshot: &'a StoredSnapshot,
    encryption: &'a CopyEncryption,
    tags: &'a BTreeMap<String, String>,
    account: Option<&'a str>,
) -> CopySpec<'a> {
    CopySpec {
        target_region: "eu-west-1",
        target_account: account,
        snapshot,
        encryption,
        tags,
        description: String::new(),
        rds_target_id: "coffer-prod-copy".into(),
        look_for_earlier: true,
        rds_staging_id: "coffer-prod-stage".into(),
        target_credentials: credentials(),
        source_credentials: source_credentials(),
        source_kms: None,
    }
}

/// The EBS snapshot `snap-source` in us-east-1, encrypted with `key` when there is one.
fn ebs_snapshot(key: Option<&str>) -> StoredSnapshot {
    StoredSnapshot {
        id: "snap-source".into(),
        region: "us-east-1".into(),
        service: Service::Ebs,
        state: State::Complete,
        encrypted: key.is_some(),
        kms_key_id: key.map(str::to_string),
        arn: None,
        volume_id: Some("vol-1".into()),
        engine: None,
        tags: BTreeMap::new(),
    }
}

/// A copy of `snapshot` into the target account in eu-west-1.
fn ebs_spec<'a>(
    snapshot: &'a StoredSnapshot,
    encryption: &'a CopyEncryption,
    tags: &'a BTreeMap<String, String>,
    source_kms: Option<&'a aws_sdk_kms::Client>,
) -> CopySpec<'a> {
    CopySpec {
        target_region: "eu-west-1",
        target_account: Some(TARGET_ACCOUNT),
        snapshot,
        encryption,
        tags,
        description: "Coffer policy prod".into(),
        rds_target_id: String::new(),
        look_for_earlier: true,
        rds_staging_id: "coffer-prod-stage".into(),
        target_credentials: credentials(),
        source_credentials: source_credentials(),
        source_kms,
    }
}

/// Replicates with a staging client that answers nothing: no staging copy is expected.
fn ebs_without_staging(
    source: &aws_sdk_ec2::Client,
    target: &aws_sdk_ec2::Client,
    spec: &CopySpec<'_>,
) -> Result<Replica, ReplicationError> {
    let staging = ec2_client("eu-west-1", &[]);
    crate::support::block_on(replicate_ebs(&CopyClients { source, staging: &staging, target }, spec, &settings()))
}

fn rds_without_staging(
    source: &aws_sdk_rds::Client,
    target: &aws_sdk_rds::Client,
    spec: &CopySpec<'_>,
) -> Result<Replica, ReplicationError> {
    let staging = rds_client("eu-west-1", &[]);
    crate::support::block_on(replicate_rds(&CopyClients { source, staging: &staging, target }, spec, &settings()))
}

fn settings() -> Settings {
    Settings {
        concurrency: 1,
        wait_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(1),
        ..Settings::default()
    }
}

fn run_tags() -> BTreeMap<String, String> {
    [("coffer:run", "20261123-0200"), ("coffer:kind", "replica"), ("coffer:policy", "prod")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn an_ebs_snapshot_is_shared_with_the_target_account_before_that_account_copies_it() {
    let shared = Arc::new(AtomicBool::new(false));
    let share = {
        let shared = shared.clone();
        mock!(aws_sdk_ec2::Client::modify_snapshot_attribute)
            .match_requests(|r| {
                r.snapshot_id() == Some("snap-source")
                    && r.user_ids() == [TARGET_ACCOUNT]
                    && r.attribute() == Some(&aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
                    && r.operation_type() == Some(&aws_sdk_ec2::types::OperationType::Add)
            })
            .then_output(move || {
                shared.store(true, Ordering::SeqCst);
                aws_sdk_ec2::operation::modify_snapshot_attribute::ModifySnapshotAttributeOutput::builder().build()
            })
    };
    let no_earlier_copy = mock!(aws_sdk_ec2::Client::describe_snapshots)
        .match_requests(|r| r.filters().iter().any(|f| f.name() == Some("tag:coffer:source-snapshot")))
        .then_output(|| aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput::builder().build());
    let copy = {
        let shared = shared.clone();
        mock!(aws_sdk_ec2::Client::copy_snapshot)
            .match_requests(move |r| {
                shared.load(Ordering::SeqCst)
                    && r.source_region() == Some("us-east-1")
                    && r.source_snapshot_id() == Some("snap-source")
                    && r.kms_key_id() == Some(TARGET_KEY)
                    && r.encrypted() == Some(true)
            })
            .then_output(|| {
                aws_sdk_ec2::operation::copy_snapshot::CopySnapshotOutput::builder().snapshot_id("snap-copy").build()
            })
    };
    let completed = mock!(aws_sdk_ec2::Client::describe_snapshots)
        .match_requests(|r| r.snapshot_ids() == ["snap-copy"])
        .then_output(|| {
            aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput::builder()
                .snapshots(
                    aws_sdk_ec2::types::Snapshot::builder()
                        .snapshot_id("snap-copy")
                        .state(aws_sdk_ec2::types::SnapshotState::Completed)
                        .encrypted(true)
                        .kms_key_id(TARGET_KEY)
                        .build(),
                )
                .build()
        });
    let revoked = Arc::new(AtomicBool::new(false));
    let revoke = ebs_revoke(&revoked);
    let source = ec2_client("us-east-1", &[&share, &revoke]);
    let target = ec2_client("eu-west-1", &[&no_earlier_copy, &copy, &completed]);

    let snapshot = StoredSnapshot {
        id: "snap-source".into(),
        region: "us-east-1".into(),
        service: Service::Ebs,
        state: State::Complete,
        encrypted: true,
        kms_key_id: Some("arn:aws:kms:us-east-1:123456789012:key/source".into()),
        arn: None,
        volume_id: Some("vol-1".into()),
        engine: None,
        tags: BTreeMap::new(),
    };
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, Some(TARGET_KEY), true);
    let tags = run_tags();
    let spec = ebs_spec(&snapshot, &encryption, &tags, None);
    let replica = ebs_without_staging(&source, &target, &spec).unwrap();
    assert_eq!(replica.snapshot.id, "snap-copy");
    assert_eq!(replica.snapshot.kms_key_id.as_deref(), Some(TARGET_KEY));
    assert!(!replica.reused);
    assert_eq!(share.num_calls(), 1);
    assert_eq!(copy.num_calls(), 1, "CopySnapshot must come after the share");
    assert_eq!(completed.num_calls(), 1);
    assert!(revoked.load(Ordering::SeqCst), "the share is revoked once the copy completed");
    assert_eq!(replica.share_left, None);
}

#[test]
fn a_db_snapshot_is_shared_then_copied_by_arn_into_the_target_account() {
    let source_arn = "arn:aws:rds:us-east-1:123456789012:snapshot:coffer-prod-20261123-0200-orders-db";
    let shared = Arc::new(AtomicBool::new(false));
    let share = {
        let shared = shared.clone();
        mock!(aws_sdk_rds::Client::modify_db_snapshot_attribute)
            .match_requests(|r| {
                r.db_snapshot_identifier() == Some("coffer-prod-20261123-0200-orders-db")
                    && r.attribute_name() == Some("restore")
                    && r.values_to_add() == [TARGET_ACCOUNT]
            })
            .then_output(move || {
                shared.store(true, Ordering::SeqCst);
                aws_sdk_rds::operation::modify_db_snapshot_attribute::ModifyDbSnapshotAttributeOutput::builder().build()
            })
    };
    let not_yet = db_snapshot_not_found();
    let copy = {
        let shared = shared.clone();
        mock!(aws_sdk_rds::Client::copy_db_snapshot)
            .match_requests(move |r| {
                shared.load(Ordering::SeqCst)
                    && r.source_db_snapshot_identifier() == Some(source_arn)
                    && r.target_db_snapshot_identifier() == Some("coffer-prod-copy")
                    && r.kms_key_id() == Some(TARGET_KEY)
            })
            .then_output(|| aws_sdk_rds::operation::copy_db_snapshot::CopyDbSnapshotOutput::builder().build())
    };
    let available = copy_available();
    let revoked = Arc::new(AtomicBool::new(false));
    let revoke = rds_revoke("coffer-prod-20261123-0200-orders-db", &revoked);
    let source = rds_client("us-east-1", &[&share, &revoke]);
    let target = rds_client("eu-west-1", &[&not_yet, &copy, &available]);

    let snapshot = StoredSnapshot {
        id: "coffer-prod-20261123-0200-orders-db".into(),
        region: "us-east-1".into(),
        service: Service::RdsInstance,
        state: State::Complete,
        encrypted: false,
        kms_key_id: None,
        arn: Some(source_arn.into()),
        volume_id: None,
        engine: None,
        tags: BTreeMap::new(),
    };
    let encryption = CopyEncryption::for_mapping(Encrypt::All, Some(TARGET_KEY), false);
    let tags = run_tags();
    let spec = rds_spec(&snapshot, &encryption, &tags, Some(TARGET_ACCOUNT));
    let replica = rds_without_staging(&source, &target, &spec).unwrap();
    assert_eq!(replica.snapshot.id, "coffer-prod-copy");
    assert_eq!(replica.snapshot.kms_key_id.as_deref(), Some(TARGET_KEY));
    assert!(!replica.reused);
    assert_eq!(share.num_calls(), 1);
    assert_eq!(copy.num_calls(), 1, "CopyDBSnapshot must come after the share");
    assert!(revoked.load(Ordering::SeqCst), "the share is revoked once the copy is available");
}

fn encrypted_db_snapshot(arn: &str) -> StoredSnapshot {
    StoredSnapshot {
        id: "coffer-prod-20261123-0200-orders-db".into(),
        region: "us-east-1".into(),
        service: Service::RdsInstance,
        state: State::Complete,
        encrypted: true,
        kms_key_id: Some("arn:aws:kms:us-east-1:123456789012:key/source".into()),
        arn: Some(arn.into()),
        volume_id: None,
        engine: None,
        tags: BTreeMap::new(),
    }
}

/// The copy `coffer-prod-copy`, available and encrypted with the target key.
fn copy_available() -> Rule {
    mock!(aws_sdk_rds::Client::describe_db_snapshots).then_output(|| {
        aws_sdk_rds::operation::describe_db_snapshots::DescribeDbSnapshotsOutput::builder()
            .db_snapshots(
                aws_sdk_rds::types::DbSnapshot::builder()
                    .db_snapshot_identifier("coffer-prod-copy")
                    .status("available")
                    .encrypted(true)
                    .kms_key_id(TARGET_KEY)
                    .build(),
            )
            .build()
    })
}

fn db_snapshot_not_found() -> Rule {
    mock!(aws_sdk_rds::Client::describe_db_snapshots).then_error(|| {
        aws_sdk_rds::operation::describe_db_snapshots::DescribeDBSnapshotsError::DbSnapshotNotFoundFault(
            aws_sdk_rds::types::error::DbSnapshotNotFoundFault::builder()
                .meta(ErrorMetadata::builder().code("DBSnapshotNotFound").build())
                .build(),
        )
    })
}

/// AWS: "If you copy an encrypted snapshot to a different AWS Region, then you must specify a
/// KMS key for the destination AWS Region", and the request carries a PreSignedUrl for
/// CopyDBSnapshot in the source region with DestinationRegion and KmsKeyId (RDS API reference,
/// CopyDBSnapshot). moto accepts the copy without either.
#[test]
fn an_encrypted_db_snapshot_goes_to_another_region_with_the_destination_key_and_a_presigned_url() {
    let source_arn = "arn:aws:rds:us-east-1:123456789012:snapshot:coffer-prod-20261123-0200-orders-db";
    let copy = mock!(aws_sdk_rds::Client::copy_db_snapshot)
        .match_requests(move |r| {
            let Some(url) = r.pre_signed_url() else { return false };
            let (base, query) = url.split_once('?').unwrap_or_default();
            let query: BTreeMap<String, String> =
                form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            let param = |name: &str| query.get(name).map(String::as_str);
            r.kms_key_id() == Some(TARGET_KEY)
                && r.source_db_snapshot_identifier() == Some(source_arn)
                && base == "https://rds.us-east-1.amazonaws.com/"
                && param("Action") == Some("CopyDBSnapshot")
                && param("SourceDBSnapshotIdentifier") == Some(source_arn)
                && param("TargetDBSnapshotIdentifier") == Some("coffer-prod-copy")
                && param("KmsKeyId") == Some(TARGET_KEY)
                && param("DestinationRegion") == Some("eu-west-1")
                && param("X-Amz-Credential")
                    .is_some_and(|c| c.starts_with("AKIDTARGET/") && c.contains("/us-east-1/rds/"))
                && param("X-Amz-Signature").is_some()
        })
        .then_output(|| aws_sdk_rds::operation::copy_db_snapshot::CopyDbSnapshotOutput::builder().build());
    let available = copy_available();
    let not_yet = db_snapshot_not_found();
    let source = rds_client("us-east-1", &[]);
    let target = rds_client("eu-west-1", &[&not_yet, &copy, &available]);
    let snapshot = encrypted_db_snapshot(source_arn);
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, Some(TARGET_KEY), true);
    let tags = run_tags();
    let spec = rds_spec(&snapshot, &encryption, &tags, None);
    let replica = rds_without_staging(&source, &target, &spec).unwrap();
    assert_eq!(replica.snapshot.id, "coffer-prod-copy");
    assert_eq!(copy.num_calls(), 1, "CopyDBSnapshot with the destination key and the presigned URL");
}

#[test]
fn an_encrypted_db_snapshot_through_a_mapping_without_a_key_is_refused_before_anything_is_made() {
    let source_arn = "arn:aws:rds:us-east-1:123456789012:snapshot:coffer-prod-20261123-0200-orders-db";
    let copy = mock!(aws_sdk_rds::Client::copy_db_snapshot)
        .then_output(|| aws_sdk_rds::operation::copy_db_snapshot::CopyDbSnapshotOutput::builder().build());
    let not_yet = db_snapshot_not_found();
    let source = rds_client("us-east-1", &[]);
    let target = rds_client("eu-west-1", &[&not_yet, &copy]);
    let snapshot = encrypted_db_snapshot(source_arn);
    // The default mapping: encrypt = "encrypted_only", no kms_key_arn.
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, None, true);
    let tags = run_tags();
    let spec = rds_spec(&snapshot, &encryption, &tags, None);
    let error = rds_without_staging(&source, &target, &spec).unwrap_err().to_string();
    assert!(
        error.contains("coffer-prod-20261123-0200-orders-db is encrypted")
            && error.contains("needs a KMS key of eu-west-1 (kms_key_arn of the region mapping)"),
        "{error}"
    );
    assert_eq!(copy.num_calls(), 0, "no copy AWS would refuse");
}

#[test]
fn a_failed_ebs_copy_still_revokes_the_share() {
    let share = mock!(aws_sdk_ec2::Client::modify_snapshot_attribute)
        .match_requests(|r| r.operation_type() == Some(&aws_sdk_ec2::types::OperationType::Add))
        .then_output(|| {
            aws_sdk_ec2::operation::modify_snapshot_attribute::ModifySnapshotAttributeOutput::builder().build()
        });
    let revoked = Arc::new(AtomicBool::new(false));
    let revoke = ebs_revoke(&revoked);
    let no_earlier_copy = mock!(aws_sdk_ec2::Client::describe_snapshots)
        .then_output(|| aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput::builder().build());
    let refused = mock!(aws_sdk_ec2::Client::copy_snapshot).then_error(|| {
        aws_sdk_ec2::operation::copy_snapshot::CopySnapshotError::generic(
            ErrorMetadata::builder().code("ResourceLimitExceeded").message("too many copies in progress").build(),
        )
    });
    let source = ec2_client("us-east-1", &[&share, &revoke]);
    let target = ec2_client("eu-west-1", &[&no_earlier_copy, &refused]);
    let snapshot = ebs_snapshot(None);
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, None, false);
    let tags = run_tags();
    let spec = ebs_spec(&snapshot, &encryption, &tags, None);
    let error = ebs_without_staging(&source, &target, &spec).unwrap_err().to_string();
    assert!(error.starts_with("copying snap-source to eu-west-1: "), "{error}");
    assert_eq!(share.num_calls(), 1);
    assert!(revoked.load(Ordering::SeqCst), "the share is revoked after the failed copy");
}

/// The source region's KMS, for which `key` is AWS managed (`aws/ebs`, `aws/rds`).
fn aws_managed(key: &'static str) -> Rule {
    mock!(aws_sdk_kms::Client::describe_key).match_requests(move |r| r.key_id() == Some(key)).then_output(move || {
        aws_sdk_kms::operation::describe_key::DescribeKeyOutput::builder()
            .key_metadata(
                aws_sdk_kms::types::KeyMetadata::builder()
                    .key_id(key)
                    .key_manager(aws_sdk_kms::types::KeyManagerType::Aws)
                    .build()
                    .unwrap(),
            )
            .build()
    })
}

const AWS_EBS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/aws-ebs-default";

/// AWS refuses to share a snapshot under an AWS managed key (EC2 and RDS user guides on
/// sharing snapshots); moto shares it. Without a mapping key to re-encrypt it under, Coffer
/// says so before sharing anything.
#[test]
fn a_snapshot_under_the_aws_managed_key_is_not_shared_and_the_warning_says_what_to_do() {
    let described = aws_managed(AWS_EBS_KEY);
    let share = mock!(aws_sdk_ec2::Client::modify_snapshot_attribute).then_output(|| {
        aws_sdk_ec2::operation::modify_snapshot_attribute::ModifySnapshotAttributeOutput::builder().build()
    });
    let no_earlier_copy = mock!(aws_sdk_ec2::Client::describe_snapshots)
        .then_output(|| aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput::builder().build());
    let copy = mock!(aws_sdk_ec2::Client::copy_snapshot)
        .then_output(|| aws_sdk_ec2::operation::copy_snapshot::CopySnapshotOutput::builder().snapshot_id("x").build());
    let kms = kms_client("us-east-1", &[&described]);
    let source = ec2_client("us-east-1", &[&share]);
    let target = ec2_client("eu-west-1", &[&no_earlier_copy, &copy]);
    let snapshot = ebs_snapshot(Some(AWS_EBS_KEY));
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, None, true);
    let tags = run_tags();
    let spec = ebs_spec(&snapshot, &encryption, &tags, Some(&kms));
    let error = ebs_without_staging(&source, &target, &spec).unwrap_err().to_string();
    assert!(
        error.contains("snap-source is encrypted with the AWS managed key")
            && error.contains("nothing was shared or copied")
            && error.contains("Set kms_key_arn on the region mapping")
            && error.contains("customer managed key whose key policy lets account 222222222222 use it"),
        "{error}"
    );
    assert_eq!(described.num_calls(), 1);
    assert_eq!(share.num_calls(), 0, "nothing shared, nothing to revoke");
    assert_eq!(copy.num_calls(), 0);
}

/// `flag` is set when the request is answered.
fn ebs_attribute(snapshot: &'static str, operation: aws_sdk_ec2::types::OperationType, flag: &Arc<AtomicBool>) -> Rule {
    let flag = flag.clone();
    mock!(aws_sdk_ec2::Client::modify_snapshot_attribute)
        .match_requests(move |r| {
            r.snapshot_id() == Some(snapshot)
                && r.user_ids() == [TARGET_ACCOUNT]
                && r.operation_type() == Some(&operation)
        })
        .then_output(move || {
            flag.store(true, Ordering::SeqCst);
            aws_sdk_ec2::operation::modify_snapshot_attribute::ModifySnapshotAttributeOutput::builder().build()
        })
}

/// `id`, completed under the mapping's key; `flag` is set when it is answered.
fn ebs_completed(id: &'static str, flag: &Arc<AtomicBool>) -> Rule {
    let flag = flag.clone();
    mock!(aws_sdk_ec2::Client::describe_snapshots).match_requests(move |r| r.snapshot_ids() == [id]).then_output(
        move || {
            flag.store(true, Ordering::SeqCst);
            aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput::builder()
                .snapshots(
                    aws_sdk_ec2::types::Snapshot::builder()
                        .snapshot_id(id)
                        .state(aws_sdk_ec2::types::SnapshotState::Completed)
                        .encrypted(true)
                        .kms_key_id(TARGET_KEY)
                        .build(),
                )
                .build()
        },
    )
}

fn ebs_found(kind: &'static str, id: Option<&'static str>) -> Rule {
    mock!(aws_sdk_ec2::Client::describe_snapshots)
        .match_requests(move |r| {
            r.filters().iter().any(|f| f.name() == Some("tag:coffer:kind") && f.values() == [kind])
                && r.filters().iter().any(|f| f.name() == Some("tag:coffer:source-snapshot"))
        })
        .then_output(move || {
            let found = id.map(|id| {
                aws_sdk_ec2::types::Snapshot::builder()
                    .snapshot_id(id)
                    .state(aws_sdk_ec2::types::SnapshotState::Completed)
                    .build()
            });
            aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput::builder()
                .set_snapshots(found.map(|f| vec![f]))
                .build()
        })
}

fn ebs_deleted(id: &'static str, after: &Arc<AtomicBool>) -> Rule {
    let after = after.clone();
    mock!(aws_sdk_ec2::Client::delete_snapshot)
        .match_requests(move |r| r.snapshot_id() == Some(id) && after.load(Ordering::SeqCst))
        .then_output(|| aws_sdk_ec2::operation::delete_snapshot::DeleteSnapshotOutput::builder().build())
}

/// AWS's way around the AWS managed key (RDS user guide, "Sharing encrypted snapshots"; EC2
/// user guide, "Share an Amazon EBS snapshot"): the source account copies the snapshot under a
/// key the other account may use — here the mapping's key, in the target region — shares that
/// copy, the target account copies it there; then the staging copy's share is revoked and the
/// staging copy deleted, only once the target's copy is complete.
#[test]
fn an_ebs_snapshot_under_the_aws_managed_key_is_shared_through_a_staging_copy_under_the_mapping_key() {
    let described = aws_managed(AWS_EBS_KEY);
    let (staged_done, shared, copy_done, revoked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let no_earlier_staging = ebs_found("staging", None);
    let stage = mock!(aws_sdk_ec2::Client::copy_snapshot)
        .match_requests(|r| {
            let tags: BTreeMap<_, _> =
                r.tag_specifications()[0].tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
            r.source_region() == Some("us-east-1")
                && r.source_snapshot_id() == Some("snap-source")
                && r.kms_key_id() == Some(TARGET_KEY)
                && r.encrypted() == Some(true)
                && tags.get("coffer:kind") == Some(&"staging")
                && tags.get("coffer:run") == Some(&"20261123-0200")
        })
        .then_output(|| {
            aws_sdk_ec2::operation::copy_snapshot::CopySnapshotOutput::builder().snapshot_id("snap-staging").build()
        });
    let staging_complete = ebs_completed("snap-staging", &staged_done);
    let share = ebs_attribute("snap-staging", aws_sdk_ec2::types::OperationType::Add, &shared);
    let revoke = ebs_attribute("snap-staging", aws_sdk_ec2::types::OperationType::Remove, &revoked);
    let delete = ebs_deleted("snap-staging", &copy_done);
    let no_earlier_copy = ebs_found("replica", None);
    let copy = {
        let shared = shared.clone();
        mock!(aws_sdk_ec2::Client::copy_snapshot)
            .match_requests(move |r| {
                shared.load(Ordering::SeqCst)
                    && r.source_region() == Some("eu-west-1")
                    && r.source_snapshot_id() == Some("snap-staging")
                    && r.kms_key_id() == Some(TARGET_KEY)
            })
            .then_output(|| {
                aws_sdk_ec2::operation::copy_snapshot::CopySnapshotOutput::builder().snapshot_id("snap-copy").build()
            })
    };
    let copy_complete = ebs_completed("snap-copy", &copy_done);
    let kms = kms_client("us-east-1", &[&described]);
    let source = ec2_client("us-east-1", &[]);
    let staging = ec2_client("eu-west-1", &[&no_earlier_staging, &stage, &staging_complete, &share, &revoke, &delete]);
    let target = ec2_client("eu-west-1", &[&no_earlier_copy, &copy, &copy_complete]);
    let snapshot = ebs_snapshot(Some(AWS_EBS_KEY));
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, Some(TARGET_KEY), true);
    let tags = run_tags();
    let spec = ebs_spec(&snapshot, &encryption, &tags, Some(&kms));
    let clients = CopyClients { source: &source, staging: &staging, target: &target };
    let replica = crate::support::block_on(replicate_ebs(&clients, &spec, &settings())).unwrap();
    assert_eq!(replica.snapshot.id, "snap-copy");
    assert_eq!(replica.share_left, None);
    assert_eq!(stage.num_calls(), 1, "the staging copy: into eu-west-1 under the mapping's key, tagged as staging");
    assert!(staged_done.load(Ordering::SeqCst) && shared.load(Ordering::SeqCst), "shared once complete");
    assert_eq!(copy.num_calls(), 1, "the target account copies the shared staging copy in its region");
    assert!(revoked.load(Ordering::SeqCst), "the staging copy's share is revoked");
    assert_eq!(delete.num_calls(), 1, "and the staging copy deleted, after the target's copy completed");
}

/// A re-run after the wait timed out finds the target's copy and the staging copy the first
/// attempt made, and ends what the first attempt could not: the share and the staging copy.
#[test]
fn a_rerun_that_finds_the_copy_removes_the_staging_copy_the_first_attempt_left() {
    let (copy_done, revoked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let earlier_copy = ebs_found("replica", Some("snap-copy"));
    let copy_complete = ebs_completed("snap-copy", &copy_done);
    let earlier_staging = ebs_found("staging", Some("snap-staging"));
    let revoke = ebs_attribute("snap-staging", aws_sdk_ec2::types::OperationType::Remove, &revoked);
    let delete = ebs_deleted("snap-staging", &copy_done);
    let source = ec2_client("us-east-1", &[]);
    let staging = ec2_client("eu-west-1", &[&earlier_staging, &revoke, &delete]);
    let target = ec2_client("eu-west-1", &[&earlier_copy, &copy_complete]);
    let snapshot = ebs_snapshot(Some(AWS_EBS_KEY));
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, Some(TARGET_KEY), true);
    let tags = run_tags();
    let spec = ebs_spec(&snapshot, &encryption, &tags, None);
    let clients = CopyClients { source: &source, staging: &staging, target: &target };
    let replica = crate::support::block_on(replicate_ebs(&clients, &spec, &settings())).unwrap();
    assert!(replica.reused);
    assert!(revoked.load(Ordering::SeqCst));
    assert_eq!(delete.num_calls(), 1, "the staging copy is deleted once the copy is complete");
}

/// The same for a DB snapshot under `aws/rds`, into another account and region: the source
/// account's staging copy into the target region carries the mapping's key and a URL the
/// source account presigns; the target account's copy of the shared staging copy is a
/// same-region copy, with the key and no URL (RDS API reference, CopyDBSnapshot).
#[test]
fn a_db_snapshot_under_the_aws_managed_key_is_shared_through_a_staging_copy_in_the_target_region() {
    let aws_rds_key: &'static str = "arn:aws:kms:us-east-1:123456789012:key/aws-rds-default";
    let source_arn = "arn:aws:rds:us-east-1:123456789012:snapshot:coffer-prod-20261123-0200-orders-db";
    let staging_arn = "arn:aws:rds:eu-west-1:123456789012:snapshot:coffer-prod-stage";
    let described = aws_managed(aws_rds_key);
    let (shared, copied, revoked) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let no_staging_yet = db_snapshot_not_found();
    let stage = mock!(aws_sdk_rds::Client::copy_db_snapshot)
        .match_requests(move |r| {
            let Some(url) = r.pre_signed_url() else { return false };
            let query: BTreeMap<String, String> = form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            r.source_db_snapshot_identifier() == Some(source_arn)
                && r.target_db_snapshot_identifier() == Some("coffer-prod-stage")
                && r.kms_key_id() == Some(TARGET_KEY)
                && r.tags().iter().any(|t| t.key() == Some("coffer:kind") && t.value() == Some("staging"))
                && query.get("TargetDBSnapshotIdentifier").map(String::as_str) == Some("coffer-prod-stage")
                && query.get("DestinationRegion").map(String::as_str) == Some("eu-west-1")
                && query.get("X-Amz-Credential").is_some_and(|c| c.starts_with("AKIDSOURCE/"))
        })
        .then_output(|| aws_sdk_rds::operation::copy_db_snapshot::CopyDbSnapshotOutput::builder().build());
    let staging_available = mock!(aws_sdk_rds::Client::describe_db_snapshots)
        .match_requests(|r| r.db_snapshot_identifier() == Some("coffer-prod-stage"))
        .then_output(move || {
            aws_sdk_rds::operation::describe_db_snapshots::DescribeDbSnapshotsOutput::builder()
                .db_snapshots(
                    aws_sdk_rds::types::DbSnapshot::builder()
                        .db_snapshot_identifier("coffer-prod-stage")
                        .db_snapshot_arn(staging_arn)
                        .status("available")
                        .encrypted(true)
                        .kms_key_id(TARGET_KEY)
                        .build(),
                )
                .build()
        });
    let share = {
        let shared = shared.clone();
        mock!(aws_sdk_rds::Client::modify_db_snapshot_attribute)
            .match_requests(|r| {
                r.db_snapshot_identifier() == Some("coffer-prod-stage") && r.values_to_add() == [TARGET_ACCOUNT]
            })
            .then_output(move || {
                shared.store(true, Ordering::SeqCst);
                aws_sdk_rds::operation::modify_db_snapshot_attribute::ModifyDbSnapshotAttributeOutput::builder().build()
            })
    };
    let revoke = rds_revoke("coffer-prod-stage", &revoked);
    let delete = {
        let copied = copied.clone();
        mock!(aws_sdk_rds::Client::delete_db_snapshot)
            .match_requests(move |r| {
                r.db_snapshot_identifier() == Some("coffer-prod-stage") && copied.load(Ordering::SeqCst)
            })
            .then_output(|| aws_sdk_rds::operation::delete_db_snapshot::DeleteDbSnapshotOutput::builder().build())
    };
    let not_yet = db_snapshot_not_found();
    let copy = {
        let (shared, copied) = (shared.clone(), copied.clone());
        mock!(aws_sdk_rds::Client::copy_db_snapshot)
            .match_requests(move |r| {
                shared.load(Ordering::SeqCst)
                    && r.source_db_snapshot_identifier() == Some(staging_arn)
                    && r.target_db_snapshot_identifier() == Some("coffer-prod-copy")
                    && r.kms_key_id() == Some(TARGET_KEY)
                    && r.pre_signed_url().is_none()
            })
            .then_output(move || {
                copied.store(true, Ordering::SeqCst);
                aws_sdk_rds::operation::copy_db_snapshot::CopyDbSnapshotOutput::builder().build()
            })
    };
    let available = copy_available();
    let kms = kms_client("us-east-1", &[&described]);
    let source = rds_client("us-east-1", &[]);
    let staging = rds_client("eu-west-1", &[&no_staging_yet, &stage, &staging_available, &share, &revoke, &delete]);
    let target = rds_client("eu-west-1", &[&not_yet, &copy, &available]);
    let snapshot = StoredSnapshot { kms_key_id: Some(aws_rds_key.into()), ..encrypted_db_snapshot(source_arn) };
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, Some(TARGET_KEY), true);
    let tags = run_tags();
    let spec = CopySpec { source_kms: Some(&kms), ..rds_spec(&snapshot, &encryption, &tags, Some(TARGET_ACCOUNT)) };
    let clients = CopyClients { source: &source, staging: &staging, target: &target };
    let replica = crate::support::block_on(replicate_rds(&clients, &spec, &settings())).unwrap();
    assert_eq!(replica.snapshot.id, "coffer-prod-copy");
    assert_eq!(replica.share_left, None);
    assert_eq!(stage.num_calls(), 1, "the staging copy, with the mapping's key and the source account's presigned URL");
    assert_eq!(share.num_calls(), 1, "the staging copy is shared, never the source");
    assert_eq!(copy.num_calls(), 1, "the target copies the staging copy by ARN, with the key and no URL");
    assert!(revoked.load(Ordering::SeqCst));
    assert_eq!(delete.num_calls(), 1, "the staging copy is deleted after the target's copy");
}

/// AWS copies an Aurora cluster snapshot only to a region that offers its engine version
/// (Aurora user guide, "DB cluster snapshot copying"); moto has no engine versions at all.
#[test]
fn a_cluster_snapshot_of_an_engine_version_the_target_region_lacks_is_not_copied() {
    let versions_there = mock!(aws_sdk_rds::Client::describe_db_engine_versions)
        .match_requests(|r| r.engine() == Some("aurora-postgresql") && r.engine_version() == Some("11.9"))
        .then_output(|| {
            aws_sdk_rds::operation::describe_db_engine_versions::DescribeDbEngineVersionsOutput::builder().build()
        });
    let not_yet = mock!(aws_sdk_rds::Client::describe_db_cluster_snapshots).then_error(|| {
        aws_sdk_rds::operation::describe_db_cluster_snapshots::DescribeDBClusterSnapshotsError::DbClusterSnapshotNotFoundFault(
            aws_sdk_rds::types::error::DbClusterSnapshotNotFoundFault::builder()
                .meta(ErrorMetadata::builder().code("DBClusterSnapshotNotFoundFault").build())
                .build(),
        )
    });
    let copy = mock!(aws_sdk_rds::Client::copy_db_cluster_snapshot).then_output(|| {
        aws_sdk_rds::operation::copy_db_cluster_snapshot::CopyDbClusterSnapshotOutput::builder().build()
    });
    let source = rds_client("us-east-1", &[]);
    let target = rds_client("eu-west-1", &[&not_yet, &versions_there, &copy]);
    let snapshot = StoredSnapshot {
        id: "coffer-prod-20261123-0200-ledger".into(),
        region: "us-east-1".into(),
        service: Service::RdsCluster,
        state: State::Complete,
        encrypted: false,
        kms_key_id: None,
        arn: Some("arn:aws:rds:us-east-1:123456789012:cluster-snapshot:coffer-prod-20261123-0200-ledger".into()),
        volume_id: None,
        engine: Some(Engine { name: "aurora-postgresql".into(), version: "11.9".into() }),
        tags: BTreeMap::new(),
    };
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, None, false);
    let tags = run_tags();
    let spec = rds_spec(&snapshot, &encryption, &tags, None);
    let error = rds_without_staging(&source, &target, &spec).unwrap_err().to_string();
    assert!(
        error.contains("coffer-prod-20261123-0200-ledger is of aurora-postgresql 11.9, which eu-west-1 does not offer"),
        "{error}"
    );
    assert_eq!(versions_there.num_calls(), 1);
    assert_eq!(copy.num_calls(), 0);
}

/// Into another account in the same region, an encrypted DB snapshot is shared and copied
/// with a key (RDS API reference, CopyDBSnapshot: a key is required for an encrypted snapshot
/// shared from another account) and without a presigned URL ("Don't specify PreSignedUrl
/// when copying an encrypted DB snapshot in the same AWS Region"); the share is revoked after.
#[test]
fn an_encrypted_db_snapshot_goes_to_another_account_in_its_region_with_a_key_and_no_presigned_url() {
    let source_arn = "arn:aws:rds:us-east-1:123456789012:snapshot:coffer-prod-20261123-0200-orders-db";
    let same_region_key = "arn:aws:kms:us-east-1:222222222222:key/0d7c2b3e-aaaa-bbbb-cccc-1234567890ab";
    let share = mock!(aws_sdk_rds::Client::modify_db_snapshot_attribute)
        .match_requests(|r| r.values_to_add() == [TARGET_ACCOUNT])
        .then_output(|| {
            aws_sdk_rds::operation::modify_db_snapshot_attribute::ModifyDbSnapshotAttributeOutput::builder().build()
        });
    let revoked = Arc::new(AtomicBool::new(false));
    let revoke = rds_revoke("coffer-prod-20261123-0200-orders-db", &revoked);
    let copy = mock!(aws_sdk_rds::Client::copy_db_snapshot)
        .match_requests(move |r| {
            r.kms_key_id() == Some(same_region_key)
                && r.pre_signed_url().is_none()
                && r.source_db_snapshot_identifier() == Some(source_arn)
        })
        .then_output(|| aws_sdk_rds::operation::copy_db_snapshot::CopyDbSnapshotOutput::builder().build());
    let not_yet = db_snapshot_not_found();
    let available = copy_available();
    let source = rds_client("us-east-1", &[&share, &revoke]);
    let target = rds_client("us-east-1", &[&not_yet, &copy, &available]);
    let snapshot = encrypted_db_snapshot(source_arn);
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, Some(same_region_key), true);
    let tags = run_tags();
    let spec = CopySpec { target_region: "us-east-1", ..rds_spec(&snapshot, &encryption, &tags, Some(TARGET_ACCOUNT)) };
    let replica = rds_without_staging(&source, &target, &spec).unwrap();
    assert_eq!(replica.snapshot.id, "coffer-prod-copy");
    assert_eq!(share.num_calls(), 1);
    assert_eq!(copy.num_calls(), 1, "CopyDBSnapshot with the key and no presigned URL");
    assert!(revoked.load(Ordering::SeqCst));
}
