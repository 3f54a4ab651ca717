//! What a run records of a resource for its restores, flattened from what
//! `DescribeInstances`/`DescribeVolumes`, `DescribeDBInstances` and
//! `DescribeDBClusters` report.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Instance, Volume};
use aws_sdk_rds::types::{DbCluster, DbInstance};
use coffer_model::configuration::{
    DbClusterConfiguration, DbInstanceConfiguration, InstanceConfiguration, VolumeConfiguration,
};

use super::AwsError;

/// The volumes with these ids, every page read.
pub async fn list_volumes(client: &aws_sdk_ec2::Client, ids: &[String]) -> Result<Vec<Volume>, AwsError> {
    let mut all = Vec::new();
    // DescribeVolumes takes at most 500 ids per call (and no MaxResults with ids).
    for chunk in ids.chunks(500) {
        let out = client
            .describe_volumes()
            .set_volume_ids(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, &[]))?;
        all.extend(out.volumes().iter().cloned());
    }
    Ok(all)
}

/// The volume ids an instance has attached.
pub fn attached_volume_ids(instance: &Instance) -> Vec<String> {
    instance.block_device_mappings().iter().filter_map(|m| m.ebs()?.volume_id().map(str::to_string)).collect()
}

pub fn instance_configuration(instance: &Instance, volumes: &[Volume]) -> InstanceConfiguration {
    let root_device_name = instance.root_device_name().unwrap_or_default().to_string();
    let volumes = instance
        .block_device_mappings()
        .iter()
        .filter_map(|mapping| {
            let ebs = mapping.ebs()?;
            let volume_id = ebs.volume_id()?.to_string();
            let device_name = mapping.device_name().unwrap_or_default().to_string();
            let described = volumes.iter().find(|v| v.volume_id() == Some(volume_id.as_str()));
            Some(VolumeConfiguration {
                root: device_name == root_device_name,
                device_name,
                delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
                size_gib: described.and_then(|v| v.size()),
                volume_type: described.and_then(|v| v.volume_type()).map(|t| t.as_str().to_string()),
                iops: described.and_then(|v| v.iops()),
                throughput: described.and_then(|v| v.throughput()),
                encrypted: described.and_then(|v| v.encrypted()).unwrap_or(false),
                kms_key_id: described.and_then(|v| v.kms_key_id()).map(str::to_string),
                volume_id,
            })
        })
        .collect();
    InstanceConfiguration {
        instance_type: instance.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        image_id: instance.image_id().unwrap_or_default().to_string(),
        architecture: instance.architecture().map(|a| a.as_str().to_string()).unwrap_or_default(),
        availability_zone: instance.placement().and_then(|p| p.availability_zone()).unwrap_or_default().to_string(),
        subnet_id: instance.subnet_id().map(str::to_string),
        security_group_ids: instance
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
        key_name: instance.key_name().map(str::to_string),
        instance_profile_arn: instance.iam_instance_profile().and_then(|p| p.arn()).map(str::to_string),
        tags: ec2_tags(instance.tags()),
        ebs_optimized: instance.ebs_optimized().unwrap_or(false),
        tenancy: instance.placement().and_then(|p| p.tenancy()).map(|t| t.as_str().to_string()),
        root_device_name,
        ena_support: instance.ena_support().unwrap_or(false),
        boot_mode: instance.boot_mode().map(|m| m.as_str().to_string()),
        virtualization_type: instance.virtualization_type().map(|v| v.as_str().to_string()),
        volumes,
    }
}

pub fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

fn rds_tags(tags: &[aws_sdk_rds::types::Tag]) -> BTreeMap<String, String> {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

pub fn db_instance_configuration(db: &DbInstance) -> DbInstanceConfiguration {
    DbInstanceConfiguration {
        engine: db.engine().unwrap_or_default().to_string(),
        engine_version: db.engine_version().unwrap_or_default().to_string(),
        instance_class: db.db_instance_class().unwrap_or_default().to_string(),
        db_subnet_group: db.db_subnet_group().and_then(|g| g.db_subnet_group_name()).map(str::to_string),
        vpc_security_group_ids: db
            .vpc_security_groups()
            .iter()
            .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
            .collect(),
        parameter_group: db.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name()).map(str::to_string),
        option_group: db.option_group_memberships().first().and_then(|g| g.option_group_name()).map(str::to_string),
        port: db.endpoint().and_then(|e| e.port()).or(db.db_instance_port().filter(|p| *p != 0)),
        multi_az: db.multi_az().unwrap_or(false),
        availability_zone: db.availability_zone().map(str::to_string),
        storage_type: db.storage_type().map(str::to_string),
        allocated_storage_gib: db.allocated_storage(),
        iops: db.iops(),
        storage_encrypted: db.storage_encrypted().unwrap_or(false),
        kms_key_id: db.kms_key_id().map(str::to_string),
        iam_database_authentication: db.iam_database_authentication_enabled().unwrap_or(false),
        publicly_accessible: db.publicly_accessible().unwrap_or(false),
        deletion_protection: db.deletion_protection().unwrap_or(false),
        tags: rds_tags(db.tag_list()),
    }
}

/// `members`: every DB instance of the region (the cluster's members' classes
/// come from them, writer first).
pub fn db_cluster_configuration(cluster: &DbCluster, members: &[DbInstance]) -> DbClusterConfiguration {
    let mut member_list: Vec<(bool, String)> = cluster
        .db_cluster_members()
        .iter()
        .filter_map(|m| {
            let id = m.db_instance_identifier()?;
            let class = members.iter().find(|db| db.db_instance_identifier() == Some(id))?.db_instance_class()?;
            Some((!m.is_cluster_writer().unwrap_or(false), class.to_string()))
        })
        .collect();
    member_list.sort_by_key(|(reader, _)| *reader);
    DbClusterConfiguration {
        engine: cluster.engine().unwrap_or_default().to_string(),
        engine_version: cluster.engine_version().unwrap_or_default().to_string(),
        engine_mode: cluster.engine_mode().map(str::to_string),
        db_subnet_group: cluster.db_subnet_group().map(str::to_string),
        vpc_security_group_ids: cluster
            .vpc_security_groups()
            .iter()
            .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
            .collect(),
        cluster_parameter_group: cluster.db_cluster_parameter_group().map(str::to_string),
        port: cluster.port(),
        db_cluster_instance_class: cluster.db_cluster_instance_class().map(str::to_string),
        storage_type: cluster.storage_type().map(str::to_string),
        allocated_storage_gib: cluster.allocated_storage(),
        iops: cluster.iops(),
        storage_encrypted: cluster.storage_encrypted().unwrap_or(false),
        kms_key_id: cluster.kms_key_id().map(str::to_string),
        iam_database_authentication: cluster.iam_database_authentication_enabled().unwrap_or(false),
        deletion_protection: cluster.deletion_protection().unwrap_or(false),
        tags: rds_tags(cluster.tag_list()),
        member_instance_classes: member_list.into_iter().map(|(_, class)| class).collect(),
    }
}
