//! Every AWS operation Coffer calls, with the IAM action it needs, the role
//! that needs it and the feature it serves. The `coffer_iam_policy` data
//! source builds its documents from this one table, and a test checks that
//! every SDK operation in the source code has a row here.

/// Who makes the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Terraform running the coffer provider: provisions templates,
    /// schedules, catalog documents and repositories.
    Provider,
    /// EventBridge Scheduler launching a worker.
    Scheduler,
    /// A worker's instance profile: catalog, repositories, EBS direct, KMS.
    Worker,
    /// What a run does to the protected resources: snapshots, copies,
    /// retention. Attach to the worker role, and to `target_role_arn`
    /// roles of cross-account region mappings.
    Backup,
    /// Whoever runs `coffer restore` of snapshots and replicas: volumes,
    /// instances, DB instances and clusters made from them (and removed
    /// again when a restore fails).
    Restore,
}

/// What a configuration uses; a document holds the rows of the features
/// asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feature {
    /// Always needed.
    Core,
    Ec2,
    Rds,
    Replicate,
    /// Image-level backups and archives in repositories.
    ImageBackup,
    Kms,
    CrossAccount,
    Immutability,
}

impl Feature {
    pub const SELECTABLE: &'static [(&'static str, Feature)] = &[
        ("ec2", Feature::Ec2),
        ("rds", Feature::Rds),
        ("replicate", Feature::Replicate),
        ("backup", Feature::ImageBackup),
        ("kms", Feature::Kms),
        ("cross_account", Feature::CrossAccount),
        ("immutability", Feature::Immutability),
    ];
}

/// Which resources an action can be narrowed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `*`: the action takes no resource, or the resource is not known
    /// in advance (instances and snapshots found by tags).
    Any,
    /// The catalog bucket.
    CatalogBucket,
    /// Objects in the catalog bucket.
    CatalogObjects,
    /// Repository buckets.
    RepositoryBuckets,
    /// Objects in repository buckets.
    RepositoryObjects,
    /// Coffer's schedules and schedule group.
    Schedules,
    /// The roles a caller passes (worker instance profile role, scheduler role).
    PassedRoles,
    /// Roles assumed in other accounts.
    TargetRoles,
}

#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub role: Role,
    pub feature: Feature,
    /// The SDK operation (snake case), or `-` for an action implied by
    /// another call (such as iam:PassRole).
    pub operation: &'static str,
    /// The IAM action.
    pub action: &'static str,
    pub scope: Scope,
}

const fn p(role: Role, feature: Feature, operation: &'static str, action: &'static str, scope: Scope) -> Permission {
    Permission { role, feature, operation, action, scope }
}

use Feature::*;
use Role::*;
use Scope::*;

pub const PERMISSIONS: &[Permission] = &[
    // The provider: account and regions.
    p(Provider, Core, "describe_regions", "ec2:DescribeRegions", Any),
    // Worker configurations.
    p(Provider, Core, "create_launch_template", "ec2:CreateLaunchTemplate", Any),
    p(Provider, Core, "create_launch_template_version", "ec2:CreateLaunchTemplateVersion", Any),
    p(Provider, Core, "modify_launch_template", "ec2:ModifyLaunchTemplate", Any),
    p(Provider, Core, "delete_launch_template", "ec2:DeleteLaunchTemplate", Any),
    p(Provider, Core, "delete_launch_template_versions", "ec2:DeleteLaunchTemplateVersions", Any),
    p(Provider, Core, "describe_launch_templates", "ec2:DescribeLaunchTemplates", Any),
    p(Provider, Core, "describe_launch_template_versions", "ec2:DescribeLaunchTemplateVersions", Any),
    p(Provider, Core, "describe_instance_types", "ec2:DescribeInstanceTypes", Any),
    p(Provider, Core, "describe_instance_type_offerings", "ec2:DescribeInstanceTypeOfferings", Any),
    p(Provider, Core, "describe_vpcs", "ec2:DescribeVpcs", Any),
    p(Provider, Core, "describe_subnets", "ec2:DescribeSubnets", Any),
    p(Provider, Core, "create_tags", "ec2:CreateTags", Any),
    p(Provider, Core, "delete_tags", "ec2:DeleteTags", Any),
    p(Provider, Core, "get_parameter", "ssm:GetParameter", Any),
    // Preflight of worker networks, instance profiles and the scheduler role
    // (plan time and `coffer preflight`).
    p(Provider, Core, "describe_route_tables", "ec2:DescribeRouteTables", Any),
    p(Provider, Core, "describe_vpc_attribute", "ec2:DescribeVpcAttribute", Any),
    p(Provider, Core, "describe_vpc_endpoints", "ec2:DescribeVpcEndpoints", Any),
    p(Provider, Core, "get_instance_profile", "iam:GetInstanceProfile", Any),
    p(Provider, Core, "simulate_principal_policy", "iam:SimulatePrincipalPolicy", Any),
    p(Provider, Core, "-", "iam:PassRole", PassedRoles),
    // The catalog.
    p(Provider, Core, "head_bucket", "s3:ListBucket", CatalogBucket),
    p(Provider, Core, "create_bucket", "s3:CreateBucket", CatalogBucket),
    p(Provider, Core, "put_bucket_versioning", "s3:PutBucketVersioning", CatalogBucket),
    p(Provider, Core, "put_bucket_encryption", "s3:PutEncryptionConfiguration", CatalogBucket),
    p(Provider, Core, "put_public_access_block", "s3:PutBucketPublicAccessBlock", CatalogBucket),
    p(Provider, Core, "get_object", "s3:GetObject", CatalogObjects),
    // Which worker binary is published (its SHA-256 metadata).
    p(Provider, Core, "head_object", "s3:GetObject", CatalogObjects),
    p(Provider, Core, "put_object", "s3:PutObject", CatalogObjects),
    p(Provider, Core, "delete_object", "s3:DeleteObject", CatalogObjects),
    // Schedules.
    p(Provider, Core, "get_schedule_group", "scheduler:GetScheduleGroup", Schedules),
    p(Provider, Core, "create_schedule_group", "scheduler:CreateScheduleGroup", Schedules),
    p(Provider, Core, "get_schedule", "scheduler:GetSchedule", Schedules),
    p(Provider, Core, "create_schedule", "scheduler:CreateSchedule", Schedules),
    p(Provider, Core, "update_schedule", "scheduler:UpdateSchedule", Schedules),
    p(Provider, Core, "delete_schedule", "scheduler:DeleteSchedule", Schedules),
    // Repositories.
    p(Provider, ImageBackup, "head_bucket", "s3:ListBucket", RepositoryBuckets),
    p(Provider, ImageBackup, "get_bucket_location", "s3:GetBucketLocation", RepositoryBuckets),
    p(Provider, ImageBackup, "create_bucket", "s3:CreateBucket", RepositoryBuckets),
    p(Provider, ImageBackup, "delete_bucket", "s3:DeleteBucket", RepositoryBuckets),
    p(Provider, ImageBackup, "put_bucket_versioning", "s3:PutBucketVersioning", RepositoryBuckets),
    p(Provider, ImageBackup, "put_bucket_encryption", "s3:PutEncryptionConfiguration", RepositoryBuckets),
    p(Provider, ImageBackup, "put_public_access_block", "s3:PutBucketPublicAccessBlock", RepositoryBuckets),
    p(Provider, ImageBackup, "put_bucket_lifecycle_configuration", "s3:PutLifecycleConfiguration", RepositoryBuckets),
    p(Provider, ImageBackup, "put_bucket_tagging", "s3:PutBucketTagging", RepositoryBuckets),
    p(Provider, ImageBackup, "delete_bucket_tagging", "s3:PutBucketTagging", RepositoryBuckets),
    p(Provider, ImageBackup, "list_object_versions", "s3:ListBucketVersions", RepositoryBuckets),
    p(Provider, ImageBackup, "get_object", "s3:GetObject", RepositoryObjects),
    p(Provider, ImageBackup, "put_object", "s3:PutObject", RepositoryObjects),
    p(Provider, ImageBackup, "delete_object", "s3:DeleteObject", RepositoryObjects),
    p(Provider, ImageBackup, "delete_object", "s3:DeleteObjectVersion", RepositoryObjects),
    p(Provider, ImageBackup, "get_object_tagging", "s3:GetObjectTagging", RepositoryObjects),
    p(Provider, ImageBackup, "put_object_tagging", "s3:PutObjectTagging", RepositoryObjects),
    p(Provider, ImageBackup, "delete_object_tagging", "s3:DeleteObjectTagging", RepositoryObjects),
    p(
        Provider,
        Immutability,
        "get_object_lock_configuration",
        "s3:GetBucketObjectLockConfiguration",
        RepositoryBuckets,
    ),
    p(
        Provider,
        Immutability,
        "put_object_lock_configuration",
        "s3:PutBucketObjectLockConfiguration",
        RepositoryBuckets,
    ),
    p(Provider, Kms, "generate_data_key", "kms:GenerateDataKey", Any),
    p(Provider, Kms, "encrypt", "kms:Encrypt", Any),
    p(Provider, Kms, "decrypt", "kms:Decrypt", Any),
    // EventBridge Scheduler launching workers.
    p(Scheduler, Core, "run_instances", "ec2:RunInstances", Any),
    p(Scheduler, Core, "-", "ec2:CreateTags", Any),
    p(Scheduler, Core, "-", "iam:PassRole", PassedRoles),
    // Launches that failed every retry go to the policy's dead_letter_queue_arn.
    p(Scheduler, Core, "-", "sqs:SendMessage", Any),
    // Workers: the catalog and the executor's own binary in it.
    p(Worker, Core, "get_object", "s3:GetObject", CatalogObjects),
    p(Worker, Core, "put_object", "s3:PutObject", CatalogObjects),
    p(Worker, Core, "list_objects_v2", "s3:ListBucket", CatalogBucket),
    // Workers: repositories and the EBS direct APIs.
    p(Worker, ImageBackup, "list_objects_v2", "s3:ListBucket", RepositoryBuckets),
    p(Worker, ImageBackup, "get_object", "s3:GetObject", RepositoryObjects),
    p(Worker, ImageBackup, "put_object", "s3:PutObject", RepositoryObjects),
    p(Worker, ImageBackup, "delete_object", "s3:DeleteObject", RepositoryObjects),
    p(Worker, ImageBackup, "restore_object", "s3:RestoreObject", RepositoryObjects),
    p(Worker, ImageBackup, "head_object", "s3:GetObject", RepositoryObjects),
    p(Worker, ImageBackup, "create_multipart_upload", "s3:PutObject", RepositoryObjects),
    p(Worker, ImageBackup, "upload_part", "s3:PutObject", RepositoryObjects),
    p(Worker, ImageBackup, "complete_multipart_upload", "s3:PutObject", RepositoryObjects),
    p(Worker, ImageBackup, "abort_multipart_upload", "s3:AbortMultipartUpload", RepositoryObjects),
    p(Worker, ImageBackup, "create_volume", "ec2:CreateVolume", Any),
    p(Worker, Immutability, "head_object", "s3:GetObjectRetention", RepositoryObjects),
    p(Worker, ImageBackup, "list_snapshot_blocks", "ebs:ListSnapshotBlocks", Any),
    p(Worker, ImageBackup, "list_changed_blocks", "ebs:ListChangedBlocks", Any),
    p(Worker, ImageBackup, "get_snapshot_block", "ebs:GetSnapshotBlock", Any),
    p(Worker, ImageBackup, "start_snapshot", "ebs:StartSnapshot", Any),
    p(Worker, ImageBackup, "put_snapshot_block", "ebs:PutSnapshotBlock", Any),
    p(Worker, ImageBackup, "complete_snapshot", "ebs:CompleteSnapshot", Any),
    p(Worker, Immutability, "put_object_retention", "s3:PutObjectRetention", RepositoryObjects),
    // A scheduled worker launches the workers of the policy's other regions, from their
    // launch templates, for their image-level work.
    p(Worker, ImageBackup, "describe_launch_templates", "ec2:DescribeLaunchTemplates", Any),
    p(Worker, ImageBackup, "describe_launch_template_versions", "ec2:DescribeLaunchTemplateVersions", Any),
    p(Worker, ImageBackup, "run_instances", "ec2:RunInstances", Any),
    p(Worker, ImageBackup, "-", "ec2:CreateTags", Any),
    p(Worker, ImageBackup, "-", "iam:PassRole", PassedRoles),
    p(Worker, Kms, "decrypt", "kms:Decrypt", Any),
    p(Worker, Kms, "generate_data_key", "kms:GenerateDataKey", Any),
    p(Worker, Kms, "encrypt", "kms:Encrypt", Any),
    p(Worker, CrossAccount, "assume_role", "sts:AssumeRole", TargetRoles),
    // Backups of the protected resources: EC2.
    p(Backup, Ec2, "describe_instances", "ec2:DescribeInstances", Any),
    p(Backup, Ec2, "describe_volumes", "ec2:DescribeVolumes", Any),
    p(Backup, Ec2, "describe_snapshots", "ec2:DescribeSnapshots", Any),
    p(Backup, Ec2, "create_snapshots", "ec2:CreateSnapshots", Any),
    p(Backup, Ec2, "create_snapshot", "ec2:CreateSnapshot", Any),
    p(Backup, Ec2, "delete_snapshot", "ec2:DeleteSnapshot", Any),
    p(Backup, Ec2, "create_tags", "ec2:CreateTags", Any),
    p(Backup, Replicate, "copy_snapshot", "ec2:CopySnapshot", Any),
    p(Backup, Replicate, "modify_snapshot_attribute", "ec2:ModifySnapshotAttribute", Any),
    // RDS.
    p(Backup, Rds, "describe_db_instances", "rds:DescribeDBInstances", Any),
    p(Backup, Rds, "describe_db_clusters", "rds:DescribeDBClusters", Any),
    p(Backup, Rds, "describe_db_snapshots", "rds:DescribeDBSnapshots", Any),
    p(Backup, Rds, "describe_db_cluster_snapshots", "rds:DescribeDBClusterSnapshots", Any),
    p(Backup, Rds, "create_db_snapshot", "rds:CreateDBSnapshot", Any),
    p(Backup, Rds, "create_db_cluster_snapshot", "rds:CreateDBClusterSnapshot", Any),
    p(Backup, Rds, "delete_db_snapshot", "rds:DeleteDBSnapshot", Any),
    p(Backup, Rds, "delete_db_cluster_snapshot", "rds:DeleteDBClusterSnapshot", Any),
    p(Backup, Rds, "add_tags_to_resource", "rds:AddTagsToResource", Any),
    p(Backup, Rds, "list_tags_for_resource", "rds:ListTagsForResource", Any),
    p(Backup, Rds, "copy_db_snapshot", "rds:CopyDBSnapshot", Any),
    p(Backup, Rds, "describe_db_engine_versions", "rds:DescribeDBEngineVersions", Any),
    p(Backup, Rds, "copy_db_cluster_snapshot", "rds:CopyDBClusterSnapshot", Any),
    p(Backup, Kms, "create_grant", "kms:CreateGrant", Any),
    p(Backup, Kms, "describe_key", "kms:DescribeKey", Any),
    p(Backup, Kms, "-", "kms:ReEncrypt*", Any),
    // Copies re-encrypted with customer-managed keys use them on the caller's behalf.
    p(Backup, Kms, "-", "kms:Decrypt", Any),
    p(Backup, Kms, "-", "kms:Encrypt", Any),
    p(Backup, Kms, "-", "kms:GenerateDataKeyWithoutPlaintext", Any),
    p(Backup, CrossAccount, "modify_db_snapshot_attribute", "rds:ModifyDBSnapshotAttribute", Any),
    p(Backup, CrossAccount, "modify_db_cluster_snapshot_attribute", "rds:ModifyDBClusterSnapshotAttribute", Any),
    // Restores (`coffer restore --point`): finding the point and its run's record.
    p(Restore, Core, "get_object", "s3:GetObject", CatalogObjects),
    p(Restore, Core, "list_objects_v2", "s3:ListBucket", CatalogBucket),
    p(Restore, CrossAccount, "assume_role", "sts:AssumeRole", TargetRoles),
    p(Restore, Ec2, "describe_snapshots", "ec2:DescribeSnapshots", Any),
    p(Restore, Ec2, "describe_volumes", "ec2:DescribeVolumes", Any),
    p(Restore, Ec2, "describe_instances", "ec2:DescribeInstances", Any),
    p(Restore, Ec2, "create_volume", "ec2:CreateVolume", Any),
    p(Restore, Ec2, "delete_volume", "ec2:DeleteVolume", Any),
    p(Restore, Ec2, "create_tags", "ec2:CreateTags", Any),
    // An instance launches from an image of the point's snapshots, deregistered once it runs.
    p(Restore, Ec2, "register_image", "ec2:RegisterImage", Any),
    p(Restore, Ec2, "deregister_image", "ec2:DeregisterImage", Any),
    p(Restore, Ec2, "run_instances", "ec2:RunInstances", Any),
    p(Restore, Ec2, "stop_instances", "ec2:StopInstances", Any),
    p(Restore, Ec2, "terminate_instances", "ec2:TerminateInstances", Any),
    // --to-original: the original stopped, its volumes swapped for restored ones, started again.
    p(Restore, Ec2, "start_instances", "ec2:StartInstances", Any),
    p(Restore, Ec2, "detach_volume", "ec2:DetachVolume", Any),
    p(Restore, Ec2, "attach_volume", "ec2:AttachVolume", Any),
    p(Restore, Ec2, "modify_instance_attribute", "ec2:ModifyInstanceAttribute", Any),
    // The original's instance profile, on the restored instance.
    p(Restore, Ec2, "-", "iam:PassRole", PassedRoles),
    p(Restore, Rds, "describe_db_snapshots", "rds:DescribeDBSnapshots", Any),
    p(Restore, Rds, "describe_db_cluster_snapshots", "rds:DescribeDBClusterSnapshots", Any),
    p(Restore, Rds, "list_tags_for_resource", "rds:ListTagsForResource", Any),
    p(Restore, Rds, "describe_db_instances", "rds:DescribeDBInstances", Any),
    p(Restore, Rds, "describe_db_clusters", "rds:DescribeDBClusters", Any),
    p(Restore, Rds, "restore_db_instance_from_db_snapshot", "rds:RestoreDBInstanceFromDBSnapshot", Any),
    p(Restore, Rds, "restore_db_cluster_from_snapshot", "rds:RestoreDBClusterFromSnapshot", Any),
    p(Restore, Rds, "create_db_instance", "rds:CreateDBInstance", Any),
    p(Restore, Rds, "delete_db_instance", "rds:DeleteDBInstance", Any),
    p(Restore, Rds, "delete_db_cluster", "rds:DeleteDBCluster", Any),
    p(Restore, Rds, "add_tags_to_resource", "rds:AddTagsToResource", Any),
    // Image-level points: read under a shared lock, staged in new EBS snapshots
    // (deleted once volumes or an instance exist).
    p(Restore, ImageBackup, "list_objects_v2", "s3:ListBucket", RepositoryBuckets),
    p(Restore, ImageBackup, "get_object", "s3:GetObject", RepositoryObjects),
    p(Restore, ImageBackup, "put_object", "s3:PutObject", RepositoryObjects),
    p(Restore, ImageBackup, "delete_object", "s3:DeleteObject", RepositoryObjects),
    p(Restore, ImageBackup, "restore_object", "s3:RestoreObject", RepositoryObjects),
    p(Restore, ImageBackup, "head_object", "s3:GetObject", RepositoryObjects),
    p(Restore, ImageBackup, "start_snapshot", "ebs:StartSnapshot", Any),
    p(Restore, ImageBackup, "put_snapshot_block", "ebs:PutSnapshotBlock", Any),
    p(Restore, ImageBackup, "complete_snapshot", "ebs:CompleteSnapshot", Any),
    p(Restore, ImageBackup, "delete_snapshot", "ec2:DeleteSnapshot", Any),
    // Encrypted snapshots restore through their keys; KMS repositories open with theirs.
    p(Restore, Kms, "create_grant", "kms:CreateGrant", Any),
    p(Restore, Kms, "-", "kms:Decrypt", Any),
    p(Restore, Kms, "-", "kms:DescribeKey", Any),
    p(Restore, Kms, "-", "kms:GenerateDataKeyWithoutPlaintext", Any),
    p(Restore, Kms, "-", "kms:ReEncrypt*", Any),
];

/// Whether a row belongs in a document for these features.
pub fn applies(permission: &Permission, features: &[Feature]) -> bool {
    permission.feature == Feature::Core || features.contains(&permission.feature)
}
