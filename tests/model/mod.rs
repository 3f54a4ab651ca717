//! Golden files of every catalog document kind: the JSON the provider and
//! the workers exchange through the catalog, exactly as written (the
//! catalog writes `serde_json::to_vec_pretty`). A worker of another build
//! reads these bytes, so a change here is a format change: it needs a new
//! `format_version`, not a new golden.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use coffer_model::CatalogLocation;
use coffer_model::agent::{Marks, RunClaim};
use coffer_model::configuration::{
    DbClusterConfiguration, DbInstanceConfiguration, InstanceConfiguration, ResourceConfiguration, VolumeConfiguration,
};
use coffer_model::policy::{Keep, PolicyDocument, PolicyType, Replicate, Retain, Rule, Source, ToRepository};
use coffer_model::region_mapping::{Encrypt, RegionMappingDocument};
use coffer_model::repository::{Encryption, RepositoryEntry, StorageClass};
use coffer_model::session::{
    BackupKind, BackupRecord, Outcome, ResourceKind, ResourceRecord, RetentionRecord, Session, SnapshotKind,
    SnapshotRecord,
};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, hour, minute, 0).unwrap()
}

/// The bytes the catalog writes, after checking they read back as the same
/// document.
fn pretty<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(document: &T) -> String {
    let bytes = serde_json::to_vec_pretty(document).unwrap();
    assert_eq!(&serde_json::from_slice::<T>(&bytes).unwrap(), document, "the document does not read back as written");
    String::from_utf8(bytes).unwrap()
}

/// Every field set, every kind of rule.
fn full_policy() -> PolicyDocument {
    PolicyDocument {
        format_version: 1,
        name: "prod".into(),
        kind: PolicyType::Ec2,
        description: Some("Production instances".into()),
        enabled: true,
        source: Source {
            regions: vec!["eu-west-1".into(), "us-east-1".into()],
            ids: vec!["i-0123456789abcdef0".into()],
            tags: BTreeMap::from([("backup".into(), "daily".into())]),
            exclude_ids: vec!["i-0fedcba9876543210".into()],
        },
        rules: vec![
            Rule {
                name: "daily".into(),
                cron: "0 3 * * *".into(),
                timezone: "Europe/Dublin".into(),
                snapshot: Some(Keep { retain: Retain { count: Some(7), days: None } }),
                replicate: Some(Replicate {
                    region_mapping_ids: vec!["eu-to-us".into()],
                    retain: Retain { count: None, days: Some(30) },
                }),
                backup: Some(ToRepository {
                    repository_id: "0a1b2c3d".into(),
                    retain: Retain { count: Some(14), days: None },
                }),
                archive: None,
            },
            Rule {
                name: "monthly".into(),
                cron: "0 4 1 * *".into(),
                timezone: "UTC".into(),
                snapshot: None,
                replicate: None,
                backup: None,
                archive: Some(ToRepository {
                    repository_id: "4e5f6a7b".into(),
                    retain: Retain { count: None, days: Some(365) },
                }),
            },
        ],
        worker_configuration_ids: vec!["lt-0123456789abcdef0".into()],
        scheduler_role_arn: Some("arn:aws:iam::123456789012:role/coffer-scheduler".into()),
        tags: BTreeMap::from([("team".into(), "platform".into())]),
        max_run_time: Some("6h".into()),
        snapshot_instance_type: Some("t3.small".into()),
        volumes_per_worker: None,
    }
}

#[test]
fn policy_document() {
    insta::assert_snapshot!("policy_document", pretty(&full_policy()));
}

#[test]
fn policy_document_minimal() {
    let policy = PolicyDocument {
        format_version: 1,
        name: "db".into(),
        kind: PolicyType::Rds,
        description: None,
        enabled: false,
        source: Source { regions: vec!["us-east-1".into()], ids: vec![], tags: BTreeMap::new(), exclude_ids: vec![] },
        rules: vec![Rule {
            name: "nightly".into(),
            cron: "30 1 * * *".into(),
            timezone: "UTC".into(),
            snapshot: Some(Keep { retain: Retain { count: Some(3), days: None } }),
            replicate: None,
            backup: None,
            archive: None,
        }],
        worker_configuration_ids: vec![],
        scheduler_role_arn: None,
        tags: BTreeMap::new(),
        max_run_time: None,
        snapshot_instance_type: None,
        volumes_per_worker: None,
    };
    insta::assert_snapshot!("policy_document_minimal", pretty(&policy));
}

#[test]
fn region_mapping_document() {
    let full = RegionMappingDocument {
        format_version: 1,
        name: "eu-to-us".into(),
        source_region: "eu-west-1".into(),
        target_region: "us-east-1".into(),
        target_role_arn: Some("arn:aws:iam::210987654321:role/coffer-dr".into()),
        kms_key_arn: Some("arn:aws:kms:us-east-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab".into()),
        encrypt: Encrypt::All,
    };
    let minimal = RegionMappingDocument {
        target_role_arn: None,
        kms_key_arn: None,
        encrypt: Encrypt::EncryptedOnly,
        ..full.clone()
    };
    insta::assert_snapshot!("region_mapping_document", format!("{}\n{}", pretty(&full), pretty(&minimal)));
}

#[test]
fn repository_entry() {
    let entry = RepositoryEntry {
        format_version: 1,
        id: "0a1b2c3d".into(),
        name: "primary".into(),
        bucket: "coffer-backups".into(),
        prefix: "team/".into(),
        region: "eu-west-1".into(),
        storage_class: StorageClass::StandardIa,
        encryption: Encryption::Kms,
    };
    insta::assert_snapshot!("repository_entry", pretty(&entry));
}

#[test]
fn session() {
    let session = Session {
        format_version: 2,
        policy: "prod".into(),
        run_id: "20261130-0300".into(),
        rules: vec!["daily".into()],
        started_at: at(3, 0),
        finished_at: at(3, 7),
        outcome: Outcome::Warning,
        messages: vec!["region ap-south-1 could not be listed: AccessDenied".into()],
        resources: vec![
            ResourceRecord {
                id: "i-0123456789abcdef0".into(),
                region: "eu-west-1".into(),
                kind: ResourceKind::Ec2Instance,
                outcome: Outcome::Success,
                started_at: at(3, 0),
                finished_at: at(3, 5),
                duration_ms: 300_000,
                snapshots: vec![
                    SnapshotRecord {
                        id: "snap-0123456789abcdef0".into(),
                        region: "eu-west-1".into(),
                        kind: SnapshotKind::Snapshot,
                        volume_id: Some("vol-0123456789abcdef0".into()),
                        mapping: None,
                        account: None,
                        kms_key_id: None,
                        reused: false,
                    },
                    SnapshotRecord {
                        id: "snap-0fedcba9876543210".into(),
                        region: "us-east-1".into(),
                        kind: SnapshotKind::Replica,
                        volume_id: Some("vol-0123456789abcdef0".into()),
                        mapping: Some("eu-to-us".into()),
                        account: Some("210987654321".into()),
                        kms_key_id: Some("arn:aws:kms:us-east-1:210987654321:key/1234abcd".into()),
                        reused: true,
                    },
                ],
                backups: vec![BackupRecord {
                    kind: BackupKind::Backup,
                    repository_id: "0a1b2c3d".into(),
                    point_id: "5f3c2a1b".into(),
                    volume_id: "vol-0123456789abcdef0".into(),
                    snapshot_id: "snap-0123456789abcdef0".into(),
                    incremental: true,
                    blocks_read: 12,
                    bytes_read: 6_291_456,
                    bytes_written: 1_048_576,
                    duration_ms: 4_200,
                    reused: false,
                    worker: Some("i-0fedcba9876543210".into()),
                }],
                error: None,
                warnings: vec!["the replica to eu-to-us was made by an earlier attempt".into()],
                configuration: Some(ResourceConfiguration::Ec2Instance(InstanceConfiguration {
                    instance_type: "m5.large".into(),
                    image_id: "ami-0123456789abcdef0".into(),
                    architecture: "x86_64".into(),
                    availability_zone: "eu-west-1b".into(),
                    subnet_id: Some("subnet-0123456789abcdef0".into()),
                    security_group_ids: vec!["sg-0123456789abcdef0".into()],
                    key_name: Some("ops".into()),
                    instance_profile_arn: Some("arn:aws:iam::123456789012:instance-profile/web".into()),
                    tags: BTreeMap::from([("Name".into(), "web-1".into())]),
                    ebs_optimized: true,
                    tenancy: Some("default".into()),
                    root_device_name: "/dev/xvda".into(),
                    ena_support: true,
                    boot_mode: Some("uefi-preferred".into()),
                    virtualization_type: Some("hvm".into()),
                    volumes: vec![VolumeConfiguration {
                        volume_id: "vol-0123456789abcdef0".into(),
                        device_name: "/dev/xvda".into(),
                        root: true,
                        delete_on_termination: true,
                        size_gib: Some(8),
                        volume_type: Some("gp3".into()),
                        iops: Some(3000),
                        throughput: Some(125),
                        encrypted: true,
                        kms_key_id: Some("arn:aws:kms:eu-west-1:123456789012:key/1234abcd".into()),
                    }],
                })),
            },
            ResourceRecord {
                id: "database-1".into(),
                region: "eu-west-1".into(),
                kind: ResourceKind::RdsInstance,
                outcome: Outcome::Failed,
                started_at: at(3, 0),
                finished_at: at(3, 1),
                duration_ms: 60_000,
                snapshots: vec![],
                backups: vec![],
                error: Some("CreateDBSnapshot: InvalidDBInstanceState".into()),
                warnings: vec![],
                configuration: Some(ResourceConfiguration::RdsInstance(DbInstanceConfiguration {
                    engine: "postgres".into(),
                    engine_version: "16.4".into(),
                    instance_class: "db.t3.micro".into(),
                    db_subnet_group: Some("private".into()),
                    vpc_security_group_ids: vec!["sg-0fedcba9876543210".into()],
                    parameter_group: Some("default.postgres16".into()),
                    option_group: Some("default:postgres-16".into()),
                    port: Some(5432),
                    multi_az: false,
                    availability_zone: Some("eu-west-1a".into()),
                    storage_type: Some("gp3".into()),
                    allocated_storage_gib: Some(20),
                    iops: None,
                    storage_encrypted: true,
                    kms_key_id: None,
                    iam_database_authentication: true,
                    publicly_accessible: false,
                    deletion_protection: true,
                    tags: BTreeMap::new(),
                })),
            },
            ResourceRecord {
                id: "cluster-1".into(),
                region: "eu-west-1".into(),
                kind: ResourceKind::RdsCluster,
                outcome: Outcome::Success,
                started_at: at(3, 1),
                finished_at: at(3, 7),
                duration_ms: 360_000,
                snapshots: vec![],
                backups: vec![],
                error: None,
                warnings: vec![],
                configuration: Some(ResourceConfiguration::RdsCluster(DbClusterConfiguration {
                    engine: "aurora-postgresql".into(),
                    engine_version: "16.4".into(),
                    engine_mode: Some("provisioned".into()),
                    port: Some(5432),
                    storage_encrypted: true,
                    member_instance_classes: vec!["db.r6g.large".into(), "db.r6g.large".into()],
                    ..Default::default()
                })),
            },
        ],
        retention: RetentionRecord {
            deleted: vec!["snap-0aaaaaaaaaaaaaaaa".into()],
            kept: 9,
            unmanaged: 2,
            errors: vec!["snap-0bbbbbbbbbbbbbbbb: InvalidSnapshot.InUse".into()],
        },
    };
    let empty = Session {
        outcome: Outcome::Success,
        messages: vec![],
        resources: vec![],
        retention: RetentionRecord::default(),
        ..session.clone()
    };
    insta::assert_snapshot!("session", format!("{}\n{}", pretty(&session), pretty(&empty)));
}

#[test]
fn agent_marks() {
    let marks =
        Marks { format_version: 1, rules: BTreeMap::from([("daily".into(), at(3, 0)), ("monthly".into(), at(4, 0))]) };
    insta::assert_snapshot!("agent_marks", pretty(&marks));
}

#[test]
fn run_claim() {
    let claim = RunClaim {
        claimed_at: at(3, 1),
        launched_for: "daily".into(),
        rules: vec!["daily".into(), "weekly".into()],
        run_id: "20261130-0300".into(),
    };
    insta::assert_snapshot!("run_claim", pretty(&claim));
}

#[test]
fn worker_boot_script_and_task() {
    let catalog = CatalogLocation::new(Some("coffer-catalog"), Some("team"), "123456789012", "eu-west-1");
    let script = coffer_model::worker::user_data_for_rule(
        &catalog,
        "eu-west-1",
        "prod",
        "daily",
        std::time::Duration::from_secs(6 * 3600),
    );
    insta::assert_snapshot!("worker_boot_script", script);
}
