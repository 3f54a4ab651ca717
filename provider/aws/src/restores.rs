//! The AWS calls a restore makes, and their undoing: volumes from EBS
//! snapshots, an image of a point's snapshots and an instance from it, DB
//! instances and clusters from DB snapshots. Each waits until AWS says the
//! resource is usable, or failed, or the wait ran out.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{
    ArchitectureValues, BlockDeviceMapping, BootModeValues, EbsBlockDevice, EbsInstanceBlockDeviceSpecification,
    IamInstanceProfileSpecification, InstanceBlockDeviceMappingSpecification, InstanceStateName, Placement,
    ResourceType, Tag, TagSpecification, Tenancy, VolumeAttachmentState, VolumeState, VolumeType,
};

use super::AwsError;

fn tag_specification(resource: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
        .build()
}

/// Polls `state` until it says done (`Some(Ok)`), failed (`Some(Err)`), or
/// `timeout` passes; the delay doubles from `first` up to 30 s.
pub async fn wait_for<F, Fut>(what: &str, first: Duration, timeout: Duration, mut state: F) -> Result<(), AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<Result<(), String>>, AwsError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = first;
    loop {
        match state().await? {
            Some(Ok(())) => return Ok(()),
            Some(Err(why)) => return Err(AwsError::Api(format!("{what}: {why}"))),
            None => {}
        }
        if tokio::time::Instant::now() + delay > deadline {
            return Err(AwsError::Api(format!("{what}: still not ready after {}s", timeout.as_secs())));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

// ------------------------------------------------------------------- EBS

/// A new volume's settings; `None` keeps what the snapshot or AWS gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeSpec {
    pub volume_type: Option<String>,
    pub size_gib: Option<i32>,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    /// Encrypt with this key (a snapshot encrypted already keeps its key otherwise).
    pub kms_key_id: Option<String>,
}

/// Whether a volume type takes an IOPS or a throughput figure (AWS refuses one it does not).
fn takes_iops(volume_type: &str) -> bool {
    matches!(volume_type, "io1" | "io2" | "gp3")
}

pub async fn create_volume(
    client: &aws_sdk_ec2::Client,
    snapshot_id: &str,
    availability_zone: &str,
    spec: &VolumeSpec,
    tags: &BTreeMap<String, String>,
) -> Result<String, AwsError> {
    let volume_type = spec.volume_type.as_deref();
    let out = client
        .create_volume()
        .snapshot_id(snapshot_id)
        .availability_zone(availability_zone)
        .set_volume_type(volume_type.map(VolumeType::from))
        .set_size(spec.size_gib)
        .set_iops(spec.iops.filter(|_| volume_type.is_some_and(takes_iops)))
        .set_throughput(spec.throughput.filter(|_| volume_type == Some("gp3")))
        .set_kms_key_id(spec.kms_key_id.clone())
        .set_encrypted(spec.kms_key_id.as_ref().map(|_| true))
        .tag_specifications(tag_specification(ResourceType::Volume, tags))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    out.volume_id().map(str::to_string).ok_or_else(|| AwsError::Api("CreateVolume returned no volume id".into()))
}

pub async fn wait_volume_available(
    client: &aws_sdk_ec2::Client,
    volume_id: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    wait_for(&format!("volume {volume_id}"), Duration::from_secs(1), timeout, || async move {
        let out =
            client.describe_volumes().volume_ids(volume_id).send().await.map_err(|e| AwsError::from_sdk(e, &[]))?;
        Ok(match out.volumes().first().and_then(|v| v.state()) {
            Some(VolumeState::Available) => Some(Ok(())),
            Some(VolumeState::Error) => Some(Err("AWS reports the volume in error".to_string())),
            _ => None,
        })
    })
    .await
}

pub async fn delete_volume(client: &aws_sdk_ec2::Client, volume_id: &str) -> Result<(), AwsError> {
    match client.delete_volume().volume_id(volume_id).send().await {
        Ok(_) => Ok(()),
        Err(e) => match AwsError::from_sdk(e, &["InvalidVolume.NotFound"]) {
            AwsError::NotFound => Ok(()),
            e => Err(e),
        },
    }
}

// ------------------------------------------------------- images, instances

/// An image registered from a point's snapshots: the launch of a restored
/// instance (AWS does not let `RunInstances` change the root device's snapshot).
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub name: String,
    pub description: String,
    pub architecture: String,
    pub root_device_name: String,
    pub ena_support: bool,
    pub boot_mode: Option<String>,
    pub virtualization_type: Option<String>,
    pub devices: Vec<DeviceSpec>,
}

/// One device of a restored instance.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub device_name: String,
    pub snapshot_id: String,
    pub delete_on_termination: bool,
    pub volume: VolumeSpec,
}

pub async fn register_image(client: &aws_sdk_ec2::Client, spec: &ImageSpec) -> Result<String, AwsError> {
    let mappings = spec.devices.iter().map(|d| {
        let volume_type = d.volume.volume_type.as_deref();
        BlockDeviceMapping::builder()
            .device_name(&d.device_name)
            .ebs(
                EbsBlockDevice::builder()
                    .snapshot_id(&d.snapshot_id)
                    .delete_on_termination(d.delete_on_termination)
                    .set_volume_type(volume_type.map(VolumeType::from))
                    .set_volume_size(d.volume.size_gib)
                    .set_iops(d.volume.iops.filter(|_| volume_type.is_some_and(takes_iops)))
                    .set_throughput(d.volume.throughput.filter(|_| volume_type == Some("gp3")))
                    .build(),
            )
            .build()
    });
    let out = client
        .register_image()
        .name(&spec.name)
        .description(&spec.description)
        .architecture(ArchitectureValues::from(spec.architecture.as_str()))
        .root_device_name(&spec.root_device_name)
        .ena_support(spec.ena_support)
        .set_boot_mode(spec.boot_mode.as_deref().map(BootModeValues::from))
        .set_virtualization_type(spec.virtualization_type.clone())
        .set_block_device_mappings(Some(mappings.collect()))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    out.image_id().map(str::to_string).ok_or_else(|| AwsError::Api("RegisterImage returned no image id".into()))
}

/// Deregisters an image; the snapshots it names stay (they are the point's).
pub async fn deregister_image(client: &aws_sdk_ec2::Client, image_id: &str) -> Result<(), AwsError> {
    match client.deregister_image().image_id(image_id).send().await {
        Ok(_) => Ok(()),
        Err(e) => match AwsError::from_sdk(e, &["InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"]) {
            AwsError::NotFound => Ok(()),
            e => Err(e),
        },
    }
}

/// A restored instance's launch settings.
#[derive(Debug, Clone, Default)]
pub struct InstanceSpec {
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: Option<String>,
    pub availability_zone: Option<String>,
    pub security_group_ids: Vec<String>,
    pub key_name: Option<String>,
    pub instance_profile_arn: Option<String>,
    pub ebs_optimized: bool,
    pub tenancy: Option<String>,
    pub tags: BTreeMap<String, String>,
}

pub async fn run_instance(client: &aws_sdk_ec2::Client, spec: &InstanceSpec) -> Result<String, AwsError> {
    let placement = (spec.availability_zone.is_some() || spec.tenancy.is_some()).then(|| {
        Placement::builder()
            .set_availability_zone(spec.availability_zone.clone())
            .set_tenancy(spec.tenancy.as_deref().map(Tenancy::from))
            .build()
    });
    let out = client
        .run_instances()
        .image_id(&spec.image_id)
        .instance_type(spec.instance_type.as_str().into())
        .min_count(1)
        .max_count(1)
        .set_subnet_id(spec.subnet_id.clone())
        .set_security_group_ids((!spec.security_group_ids.is_empty()).then(|| spec.security_group_ids.clone()))
        .set_key_name(spec.key_name.clone())
        .set_iam_instance_profile(
            spec.instance_profile_arn.as_ref().map(|arn| IamInstanceProfileSpecification::builder().arn(arn).build()),
        )
        .ebs_optimized(spec.ebs_optimized)
        .set_placement(placement)
        .tag_specifications(tag_specification(ResourceType::Instance, &spec.tags))
        .tag_specifications(tag_specification(ResourceType::Volume, &spec.tags))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    out.instances()
        .first()
        .and_then(|i| i.instance_id())
        .map(str::to_string)
        .ok_or_else(|| AwsError::Api("RunInstances returned no instance".into()))
}

async fn instance_state(
    client: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> Result<Option<InstanceStateName>, AwsError> {
    let out = client
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &["InvalidInstanceID.NotFound"]))?;
    Ok(out.reservations().iter().flat_map(|r| r.instances()).find_map(|i| i.state()?.name().cloned()))
}

/// Waits for `wanted`; an instance that ends up terminated instead failed.
pub async fn wait_instance(
    client: &aws_sdk_ec2::Client,
    instance_id: &str,
    wanted: InstanceStateName,
    timeout: Duration,
) -> Result<(), AwsError> {
    let waiting_for_termination = wanted == InstanceStateName::Terminated;
    let wanted = &wanted;
    wait_for(&format!("instance {instance_id}"), Duration::from_secs(2), timeout, || async move {
        Ok(match instance_state(client, instance_id).await? {
            Some(state) if &state == wanted => Some(Ok(())),
            Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown) if !waiting_for_termination => {
                Some(Err("the instance was terminated (its state reason is in the EC2 console)".to_string()))
            }
            _ => None,
        })
    })
    .await
}

pub async fn stop_instance(client: &aws_sdk_ec2::Client, instance_id: &str) -> Result<(), AwsError> {
    client.stop_instances().instance_ids(instance_id).send().await.map_err(|e| AwsError::from_sdk(e, &[]))?;
    Ok(())
}

pub async fn terminate_instance(client: &aws_sdk_ec2::Client, instance_id: &str) -> Result<(), AwsError> {
    match client.terminate_instances().instance_ids(instance_id).send().await {
        Ok(_) => Ok(()),
        Err(e) => match AwsError::from_sdk(e, &["InvalidInstanceID.NotFound"]) {
            AwsError::NotFound => Ok(()),
            e => Err(e),
        },
    }
}

/// An instance as `--to-original` finds it now: its state, zone and what
/// is attached on each device.
#[derive(Debug, Clone)]
pub struct LiveInstance {
    pub state: InstanceStateName,
    pub availability_zone: String,
    pub root_device_name: Option<String>,
    pub devices: Vec<AttachedVolume>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedVolume {
    pub device_name: String,
    pub volume_id: String,
    pub delete_on_termination: bool,
}

/// The instance, or `NotFound` (also when it is terminated: nothing can be
/// attached to it any more).
pub async fn find_live_instance(client: &aws_sdk_ec2::Client, instance_id: &str) -> Result<LiveInstance, AwsError> {
    let out = client
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &["InvalidInstanceID.NotFound"]))?;
    let instance = out.reservations().iter().flat_map(|r| r.instances()).next().ok_or(AwsError::NotFound)?;
    let state = instance.state().and_then(|s| s.name()).cloned().ok_or(AwsError::NotFound)?;
    if matches!(state, InstanceStateName::Terminated | InstanceStateName::ShuttingDown) {
        return Err(AwsError::NotFound);
    }
    let devices = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| {
            let ebs = m.ebs()?;
            Some(AttachedVolume {
                device_name: m.device_name()?.to_string(),
                volume_id: ebs.volume_id()?.to_string(),
                delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
            })
        })
        .collect();
    Ok(LiveInstance {
        state,
        availability_zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_string)
            .unwrap_or_default(),
        root_device_name: instance.root_device_name().map(str::to_string),
        devices,
    })
}

pub async fn start_instance(client: &aws_sdk_ec2::Client, instance_id: &str) -> Result<(), AwsError> {
    client.start_instances().instance_ids(instance_id).send().await.map_err(|e| AwsError::from_sdk(e, &[]))?;
    Ok(())
}

pub async fn detach_volume(client: &aws_sdk_ec2::Client, volume_id: &str, instance_id: &str) -> Result<(), AwsError> {
    client
        .detach_volume()
        .volume_id(volume_id)
        .instance_id(instance_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    Ok(())
}

pub async fn attach_volume(
    client: &aws_sdk_ec2::Client,
    volume_id: &str,
    instance_id: &str,
    device: &str,
) -> Result<(), AwsError> {
    client
        .attach_volume()
        .volume_id(volume_id)
        .instance_id(instance_id)
        .device(device)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    Ok(())
}

/// Waits until AWS says `volume_id` is attached, then sets its
/// delete-on-termination (AttachVolume always leaves it off).
pub async fn wait_volume_attached(
    client: &aws_sdk_ec2::Client,
    volume_id: &str,
    instance_id: &str,
    device: &str,
    delete_on_termination: bool,
    timeout: Duration,
) -> Result<(), AwsError> {
    wait_for(&format!("volume {volume_id} on {device}"), Duration::from_secs(1), timeout, || async move {
        let out =
            client.describe_volumes().volume_ids(volume_id).send().await.map_err(|e| AwsError::from_sdk(e, &[]))?;
        let attachment = out.volumes().first().and_then(|v| v.attachments().first());
        Ok(match attachment.and_then(|a| a.state()) {
            Some(VolumeAttachmentState::Attached) => Some(Ok(())),
            _ => None,
        })
    })
    .await?;
    if delete_on_termination {
        client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .block_device_mappings(
                InstanceBlockDeviceMappingSpecification::builder()
                    .device_name(device)
                    .ebs(EbsInstanceBlockDeviceSpecification::builder().delete_on_termination(true).build())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, &[]))?;
    }
    Ok(())
}

pub async fn tag_resource(
    client: &aws_sdk_ec2::Client,
    resource_id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    client
        .create_tags()
        .resources(resource_id)
        .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    Ok(())
}

// ------------------------------------------------------------------- RDS

/// A restored DB instance's or cluster's settings; `None` leaves AWS's
/// default (for most of them: the snapshot's).
#[derive(Debug, Clone, Default)]
pub struct DbSpec {
    pub identifier: String,
    pub snapshot_id: String,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub instance_class: Option<String>,
    pub db_subnet_group: Option<String>,
    pub vpc_security_group_ids: Vec<String>,
    pub parameter_group: Option<String>,
    pub option_group: Option<String>,
    pub port: Option<i32>,
    pub multi_az: Option<bool>,
    pub availability_zone: Option<String>,
    pub storage_type: Option<String>,
    pub iops: Option<i32>,
    pub iam_database_authentication: Option<bool>,
    pub publicly_accessible: Option<bool>,
    pub tags: BTreeMap<String, String>,
}

fn rds_tags(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_rds::types::Tag> {
    tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build()).collect()
}

fn security_groups(ids: &[String]) -> Option<Vec<String>> {
    (!ids.is_empty()).then(|| ids.to_vec())
}

pub async fn restore_db_instance(client: &aws_sdk_rds::Client, spec: &DbSpec) -> Result<(), AwsError> {
    client
        .restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&spec.identifier)
        .db_snapshot_identifier(&spec.snapshot_id)
        .set_db_instance_class(spec.instance_class.clone())
        .set_db_subnet_group_name(spec.db_subnet_group.clone())
        .set_vpc_security_group_ids(security_groups(&spec.vpc_security_group_ids))
        .set_db_parameter_group_name(spec.parameter_group.clone())
        .set_option_group_name(spec.option_group.clone())
        .set_port(spec.port)
        .set_multi_az(spec.multi_az)
        .set_availability_zone(spec.availability_zone.clone())
        .set_storage_type(spec.storage_type.clone())
        .set_iops(spec.iops)
        .set_enable_iam_database_authentication(spec.iam_database_authentication)
        .set_publicly_accessible(spec.publicly_accessible)
        .set_tags(Some(rds_tags(&spec.tags)))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    Ok(())
}

pub async fn restore_db_cluster(client: &aws_sdk_rds::Client, spec: &DbSpec) -> Result<(), AwsError> {
    client
        .restore_db_cluster_from_snapshot()
        .db_cluster_identifier(&spec.identifier)
        .snapshot_identifier(&spec.snapshot_id)
        .set_engine(spec.engine.clone())
        .set_engine_version(spec.engine_version.clone())
        .set_db_cluster_instance_class(spec.instance_class.clone())
        .set_db_subnet_group_name(spec.db_subnet_group.clone())
        .set_vpc_security_group_ids(security_groups(&spec.vpc_security_group_ids))
        .set_db_cluster_parameter_group_name(spec.parameter_group.clone())
        .set_port(spec.port)
        .set_storage_type(spec.storage_type.clone())
        .set_iops(spec.iops)
        .set_enable_iam_database_authentication(spec.iam_database_authentication)
        .set_tags(Some(rds_tags(&spec.tags)))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    Ok(())
}

/// A member of a restored Aurora cluster (a cluster restore makes none).
pub async fn create_cluster_member(
    client: &aws_sdk_rds::Client,
    identifier: &str,
    cluster: &str,
    engine: &str,
    instance_class: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    client
        .create_db_instance()
        .db_instance_identifier(identifier)
        .db_cluster_identifier(cluster)
        .engine(engine)
        .db_instance_class(instance_class)
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    Ok(())
}

/// RDS statuses a new DB instance or cluster cannot leave by itself.
fn failed_status(status: &str) -> bool {
    matches!(
        status,
        "failed"
            | "incompatible-restore"
            | "incompatible-parameters"
            | "incompatible-network"
            | "restore-error"
            | "inaccessible-encryption-credentials"
    )
}

pub async fn wait_db_instance_available(
    client: &aws_sdk_rds::Client,
    id: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    wait_for(&format!("DB instance {id}"), Duration::from_secs(5), timeout, || async move {
        let out = client
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, &[]))?;
        let status = out.db_instances().first().and_then(|d| d.db_instance_status()).unwrap_or_default().to_string();
        Ok(match status.as_str() {
            "available" => Some(Ok(())),
            s if failed_status(s) => Some(Err(format!("RDS reports it {s}"))),
            _ => None,
        })
    })
    .await
}

pub async fn wait_db_cluster_available(
    client: &aws_sdk_rds::Client,
    id: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    wait_for(&format!("DB cluster {id}"), Duration::from_secs(5), timeout, || async move {
        let out = client
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, &[]))?;
        let status = out.db_clusters().first().and_then(|d| d.status()).unwrap_or_default().to_string();
        Ok(match status.as_str() {
            "available" => Some(Ok(())),
            s if failed_status(s) => Some(Err(format!("RDS reports it {s}"))),
            _ => None,
        })
    })
    .await
}

/// Deletes a DB instance a failed restore made, without a final snapshot.
pub async fn delete_db_instance(client: &aws_sdk_rds::Client, id: &str) -> Result<(), AwsError> {
    match client.delete_db_instance().db_instance_identifier(id).skip_final_snapshot(true).send().await {
        Ok(_) => Ok(()),
        Err(e) => match AwsError::from_sdk(e, &["DBInstanceNotFound", "DBInstanceNotFoundFault"]) {
            AwsError::NotFound => Ok(()),
            e => Err(e),
        },
    }
}

pub async fn delete_db_cluster(client: &aws_sdk_rds::Client, id: &str) -> Result<(), AwsError> {
    match client.delete_db_cluster().db_cluster_identifier(id).skip_final_snapshot(true).send().await {
        Ok(_) => Ok(()),
        Err(e) => match AwsError::from_sdk(e, &["DBClusterNotFoundFault", "DBClusterNotFound"]) {
            AwsError::NotFound => Ok(()),
            e => Err(e),
        },
    }
}
