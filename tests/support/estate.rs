//! Seeds a small estate into moto for executor tests: EC2 instances with
//! volumes, RDS instances and Aurora clusters, tagged; and an in-process
//! [`Executor`] wired to the same emulator.

use std::path::Path;
use std::time::Duration;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, InstanceType, ResourceType, Tag, TagSpecification, VolumeType,
};
use coffer_aws::{AwsClients, AwsSettings};
use coffer_executor::{Executor, Settings};
use coffer_model::CatalogLocation;

use super::Moto;
use super::aws::ACCOUNT;

/// An [`Executor`] against `moto`, home region us-east-1, with fast polling.
/// Credentials come from files in `dir` so nothing of the developer's
/// environment leaks in (and no process-wide variables are set).
pub async fn executor(moto: &Moto, dir: &Path, concurrency: usize) -> Executor {
    let credentials = dir.join("credentials");
    let config = dir.join("config");
    std::fs::write(&credentials, "[default]\naws_access_key_id = test\naws_secret_access_key = test\n").unwrap();
    std::fs::write(&config, "[default]\nregion = us-east-1\n").unwrap();
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(moto.endpoint.clone()),
        s3_use_path_style: true,
        shared_credentials_files: vec![credentials.display().to_string()],
        shared_config_files: vec![config.display().to_string()],
        max_attempts: Some(3),
        ..AwsSettings::default()
    };
    let aws = AwsClients::connect(settings).await.expect("connect to moto");
    let catalog = CatalogLocation::new(None, None, ACCOUNT, "us-east-1");
    Executor::new(
        aws,
        catalog,
        Settings {
            concurrency,
            wait_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(50),
            ..Settings::default()
        },
    )
}

/// The `coffer` binary cargo built, configured for `endpoint` through the
/// environment as a user would, with nothing of the developer's AWS set-up.
pub fn coffer_command(endpoint: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("COFFER_S3_USE_PATH_STYLE", "true");
    command
}

pub fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An instance with an 8 GiB root volume and `data_volumes` more (10 GiB
/// each, encrypted under `kms_key` when given); returns its id.
pub async fn instance(
    ec2: &aws_sdk_ec2::Client,
    tags: &[(String, String)],
    data_volumes: usize,
    kms_key: Option<&str>,
) -> String {
    let mut mappings = vec![
        BlockDeviceMapping::builder()
            .device_name("/dev/sda1")
            .ebs(EbsBlockDevice::builder().volume_size(8).volume_type(VolumeType::Gp3).build())
            .build(),
    ];
    for n in 0..data_volumes {
        let mut ebs = EbsBlockDevice::builder().volume_size(10).volume_type(VolumeType::Gp3);
        if let Some(key) = kms_key {
            ebs = ebs.encrypted(true).kms_key_id(key);
        }
        mappings.push(
            BlockDeviceMapping::builder()
                .device_name(format!("/dev/sd{}", (b'f' + n as u8) as char))
                .ebs(ebs.build())
                .build(),
        );
    }
    let out = ec2
        .run_instances()
        // moto checks no AMI when its default AMIs are not loaded.
        .image_id("ami-0c0ffee0c0ffee000")
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .set_block_device_mappings(Some(mappings))
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
                .build(),
        )
        .send()
        .await
        .expect("RunInstances");
    out.instances()[0].instance_id().unwrap().to_string()
}

fn rds_tags(tags: &[(String, String)]) -> Vec<aws_sdk_rds::types::Tag> {
    tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build()).collect()
}

pub async fn db_instance(rds: &aws_sdk_rds::Client, id: &str, tags: &[(String, String)]) {
    rds.create_db_instance()
        .db_instance_identifier(id)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("coffer")
        // Emulator only.
        .master_user_password("not-a-secret-emulator-only")
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .expect("CreateDBInstance");
}

/// An Aurora PostgreSQL cluster with one writer instance (untagged: the
/// cluster is what is protected).
pub async fn db_cluster(rds: &aws_sdk_rds::Client, id: &str, tags: &[(String, String)]) {
    rds.create_db_cluster()
        .db_cluster_identifier(id)
        .engine("aurora-postgresql")
        .master_username("coffer")
        .master_user_password("not-a-secret-emulator-only")
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .expect("CreateDBCluster");
    rds.create_db_instance()
        .db_instance_identifier(format!("{id}-1"))
        .db_cluster_identifier(id)
        .engine("aurora-postgresql")
        .db_instance_class("db.r6g.large")
        .send()
        .await
        .expect("CreateDBInstance (cluster member)");
}

/// A KMS key in `region`; returns its ARN.
pub async fn kms_key(kms: &aws_sdk_kms::Client) -> String {
    kms.create_key().send().await.expect("CreateKey").key_metadata().unwrap().arn().unwrap().to_string()
}

/// Writes `data` (at most 512 KiB; zero-padded) as block `index` of
/// `volume_id`, as the instance using the volume would: later snapshots of
/// the volume hold it. Goes through the test-only endpoint of our moto
/// launcher (`tests/support/moto_server.py`).
pub fn write_volume_block(moto_port: u16, volume_id: &str, index: u64, data: &[u8]) {
    volume_block_request(moto_port, "PUT", volume_id, index, data);
}

/// Makes block `index` of `volume_id` hold no data (it reads as zeros and
/// later snapshots do not list it).
pub fn zero_volume_block(moto_port: u16, volume_id: &str, index: u64) {
    volume_block_request(moto_port, "DELETE", volume_id, index, &[]);
}

/// What block `index` of `volume_id` holds (`None`: never written), as the
/// instance using the volume would read it.
pub fn read_volume_block(moto_port: u16, volume_id: &str, index: u64) -> Option<Vec<u8>> {
    let path = format!("/_coffer/volumes/{volume_id}/blocks/{index}");
    match super::moto::http_request_with_body(moto_port, "GET", &path, &[]) {
        Ok((200, body)) => Some(body.into_bytes()),
        Ok((204, _)) => None,
        Ok((status, body)) => panic!("GET {path} answered HTTP {status}: {body}"),
        Err(e) => panic!("GET {path}: {e}"),
    }
}

fn volume_block_request(moto_port: u16, method: &str, volume_id: &str, index: u64, data: &[u8]) {
    let path = format!("/_coffer/volumes/{volume_id}/blocks/{index}");
    match super::moto::http_request_with_body(moto_port, method, &path, data) {
        Ok((204, _)) => {}
        Ok((status, body)) => panic!("{method} {path} answered HTTP {status}: {body}"),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// The ids of the volumes attached to `instance_id`, in the order EC2 lists
/// its block device mappings.
pub async fn volume_ids(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> Vec<String> {
    let out = ec2.describe_instances().instance_ids(instance_id).send().await.expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.block_device_mappings())
        .filter_map(|m| m.ebs().and_then(|e| e.volume_id()).map(str::to_string))
        .collect()
}
