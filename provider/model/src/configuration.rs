//! What a restore needs to know about a resource, recorded by the run that
//! backed it up (in the session's resource record, so every point of the
//! run, its replicas included, restores with its original's settings):
//! an EC2 instance's launch settings and block device mapping, a DB
//! instance's or DB cluster's settings. Every field is what AWS reported at
//! backup time; a field AWS did not report is absent, not guessed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ResourceConfiguration {
    Ec2Instance(InstanceConfiguration),
    RdsInstance(DbInstanceConfiguration),
    RdsCluster(DbClusterConfiguration),
}

/// An EC2 instance as `RunInstances` and `RegisterImage` need it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceConfiguration {
    pub instance_type: String,
    pub image_id: String,
    /// `x86_64`, `arm64`…
    pub architecture: String,
    pub availability_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile_arn: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub ebs_optimized: bool,
    /// `default`, `dedicated` or `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenancy: Option<String>,
    pub root_device_name: String,
    #[serde(default)]
    pub ena_support: bool,
    /// `legacy-bios`, `uefi` or `uefi-preferred`, when AWS says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_mode: Option<String>,
    /// `hvm` or `paravirtual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualization_type: Option<String>,
    #[serde(default)]
    pub volumes: Vec<VolumeConfiguration>,
}

/// One attached EBS volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeConfiguration {
    pub volume_id: String,
    pub device_name: String,
    /// The instance's root device.
    #[serde(default)]
    pub root: bool,
    #[serde(default)]
    pub delete_on_termination: bool,
    /// The rest comes from `DescribeVolumes`; absent when that call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gib: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i32>,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl InstanceConfiguration {
    /// The recorded volume a snapshot of `volume_id` was taken of.
    pub fn volume(&self, volume_id: &str) -> Option<&VolumeConfiguration> {
        self.volumes.iter().find(|v| v.volume_id == volume_id)
    }
}

/// A DB instance as `RestoreDBInstanceFromDBSnapshot` needs it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInstanceConfiguration {
    pub engine: String,
    pub engine_version: String,
    pub instance_class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_subnet_group: Option<String>,
    #[serde(default)]
    pub vpc_security_group_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default)]
    pub multi_az: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_storage_gib: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i32>,
    #[serde(default)]
    pub storage_encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub iam_database_authentication: bool,
    #[serde(default)]
    pub publicly_accessible: bool,
    #[serde(default)]
    pub deletion_protection: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A DB cluster as `RestoreDBClusterFromSnapshot` needs it again, with its
/// members (a restored Aurora cluster has none until they are created).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbClusterConfiguration {
    pub engine: String,
    pub engine_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_subnet_group: Option<String>,
    #[serde(default)]
    pub vpc_security_group_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_parameter_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Multi-AZ DB clusters (not Aurora): the class of every member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_cluster_instance_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_storage_gib: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i32>,
    #[serde(default)]
    pub storage_encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub iam_database_authentication: bool,
    #[serde(default)]
    pub deletion_protection: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Aurora: the members' classes, writer first (a restore recreates them).
    #[serde(default)]
    pub member_instance_classes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_names_its_type_and_leaves_out_what_aws_did_not_say() {
        let config = ResourceConfiguration::Ec2Instance(InstanceConfiguration {
            instance_type: "t3.micro".into(),
            image_id: "ami-1".into(),
            architecture: "x86_64".into(),
            availability_zone: "us-east-1a".into(),
            root_device_name: "/dev/xvda".into(),
            volumes: vec![VolumeConfiguration {
                volume_id: "vol-1".into(),
                device_name: "/dev/xvda".into(),
                root: true,
                ..Default::default()
            }],
            ..Default::default()
        });
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["type"], "ec2-instance");
        assert!(json.get("key_name").is_none());
        assert!(json["volumes"][0].get("size_gib").is_none());
        let back: ResourceConfiguration = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
        let ResourceConfiguration::Ec2Instance(instance) = back else { unreachable!() };
        assert_eq!(instance.volume("vol-1").map(|v| v.root), Some(true));
        assert!(instance.volume("vol-2").is_none());
    }
}
