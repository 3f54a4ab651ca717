# Every feature, narrowed to this account's catalog, schedules and roles.
data "coffer_iam_policy" "all" {}

# Only what EC2 snapshots, cross-account replicas and image-level backups need,
# narrowed to the repository bucket, the roles Coffer passes and the DR role.
data "coffer_iam_policy" "ec2" {
  features           = ["ec2", "replicate", "backup", "kms", "cross_account"]
  repository_buckets = ["acme-backups-eu"]
  passed_role_arns = [
    "arn:aws:iam::123456789012:role/coffer-worker",
    "arn:aws:iam::123456789012:role/coffer-scheduler",
  ]
  target_role_arns = ["arn:aws:iam::222222222222:role/coffer-backup"]
}

output "provider_policy_json" {
  description = "For the role Terraform runs the coffer provider as."
  value       = data.coffer_iam_policy.ec2.provider_policy_json
}

output "scheduler_policy_json" {
  description = "For scheduler_role_arn (trusts scheduler.amazonaws.com)."
  value       = data.coffer_iam_policy.ec2.scheduler_policy_json
}

output "worker_policy_json" {
  description = "For the workers' instance-profile role (trusts ec2.amazonaws.com)."
  value       = data.coffer_iam_policy.ec2.worker_policy_json
}

output "backup_policy_json" {
  description = "For the workers' role and the target_role_arn roles of region mappings."
  value       = data.coffer_iam_policy.ec2.backup_policy_json
}

output "source_key_policy_statements_json" {
  description = "Statements to merge into the key policies of the keys encrypting protected volumes and databases."
  value       = data.coffer_iam_policy.ec2.source_key_policy_statements_json
}

output "target_key_policy_statements_json" {
  description = "Statements to merge into the key policies of the kms_key_arn keys of cross-account region mappings."
  value       = data.coffer_iam_policy.ec2.target_key_policy_statements_json
}
