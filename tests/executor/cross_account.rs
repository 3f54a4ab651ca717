//! Cross-account replication with mocked clients: moto does not let a
//! second account see a snapshot shared with it (AWS does), so the
//! sequence — share from the source account, copy as the target account,
//! wait — is checked call by call here. The same-account path runs against
//! moto in `run.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use aws_smithy_types::error::ErrorMetadata;
use coffer_aws::snapshots::{CopyEncryption, Service, State, StoredSnapshot};
use coffer_executor::Settings;
use coffer_executor::run::{CopySpec, replicate_ebs, replicate_rds};
use coffer_model::region_mapping::Encrypt;

const TARGET_ACCOUNT: &str = "222222222222";
const TARGET_KEY: &str = "arn:aws:kms:eu-west-1:222222222222:key/0d7c2b3e-aaaa-bbbb-cccc-1234567890ab";

fn ec2_client(region: &str, rules: &[&Rule]) -> aws_sdk_ec2::Client {
    let interceptor =
        rules.iter().fold(MockResponseInterceptor::new().rule_mode(RuleMode::Sequential), |i, r| i.with_rule(r));
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(Credentials::new("mock", "mock", None, None, "mock"))
            .interceptor(interceptor)
            .http_client(create_mock_http_client())
            .build(),
    )
}

fn rds_client(region: &str, rules: &[&Rule]) -> aws_sdk_rds::Client {
    let interceptor =
        rules.iter().fold(MockResponseInterceptor::new().rule_mode(RuleMode::Sequential), |i, r| i.with_rule(r));
    aws_sdk_rds::Client::from_conf(
        aws_sdk_rds::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(Credentials::new("mock", "mock", None, None, "mock"))
            .interceptor(interceptor)
            .http_client(create_mock_http_client())
            .build(),
    )
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
    let source = ec2_client("us-east-1", &[&share]);
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
        tags: BTreeMap::new(),
    };
    let encryption = CopyEncryption::for_mapping(Encrypt::EncryptedOnly, Some(TARGET_KEY), true);
    let tags = run_tags();
    let spec = CopySpec {
        target_region: "eu-west-1",
        target_account: Some(TARGET_ACCOUNT),
        snapshot: &snapshot,
        encryption: &encryption,
        tags: &tags,
        description: "Coffer policy prod".into(),
        rds_target_id: String::new(),
        look_for_earlier: true,
    };
    let (replica, reused) = crate::support::block_on(replicate_ebs(&source, &target, &spec, &settings())).unwrap();
    assert_eq!(replica.id, "snap-copy");
    assert_eq!(replica.kms_key_id.as_deref(), Some(TARGET_KEY));
    assert!(!reused);
    assert_eq!(share.num_calls(), 1);
    assert_eq!(copy.num_calls(), 1, "CopySnapshot must come after the share");
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
    let not_yet = mock!(aws_sdk_rds::Client::describe_db_snapshots).then_error(|| {
        aws_sdk_rds::operation::describe_db_snapshots::DescribeDBSnapshotsError::DbSnapshotNotFoundFault(
            aws_sdk_rds::types::error::DbSnapshotNotFoundFault::builder()
                .meta(ErrorMetadata::builder().code("DBSnapshotNotFound").build())
                .build(),
        )
    });
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
    let available = mock!(aws_sdk_rds::Client::describe_db_snapshots).then_output(|| {
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
    });
    let source = rds_client("us-east-1", &[&share]);
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
        tags: BTreeMap::new(),
    };
    let encryption = CopyEncryption::for_mapping(Encrypt::All, Some(TARGET_KEY), false);
    let tags = run_tags();
    let spec = CopySpec {
        target_region: "eu-west-1",
        target_account: Some(TARGET_ACCOUNT),
        snapshot: &snapshot,
        encryption: &encryption,
        tags: &tags,
        description: String::new(),
        rds_target_id: "coffer-prod-copy".into(),
        look_for_earlier: true,
    };
    let (replica, reused) =
        crate::support::block_on(replicate_rds(&source, &target, Service::RdsInstance, &spec, &settings())).unwrap();
    assert_eq!(replica.id, "coffer-prod-copy");
    assert_eq!(replica.kms_key_id.as_deref(), Some(TARGET_KEY));
    assert!(!reused);
    assert_eq!(share.num_calls(), 1);
    assert_eq!(copy.num_calls(), 1, "CopyDBSnapshot must come after the share");
}
