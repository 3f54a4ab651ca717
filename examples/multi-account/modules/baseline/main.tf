# The backup baseline of one account: workers in the home region, a
# repository, replicas in Ireland, and a daily policy for instances tagged
# Backup = daily. The account is the one of the coffer provider passed in.

terraform {
  required_version = ">= 1.0"
  required_providers {
    coffer = {
      source = "coffer/coffer"
    }
  }
}

variable "repository_bucket" {
  description = "Bucket the repository creates; S3 bucket names are global, so one per account."
  type        = string
}

variable "repository_password" {
  description = "Password the repository's master key is wrapped with."
  type        = string
  sensitive   = true
}

variable "worker_kms_key_arn" {
  description = "KMS key (full ARN) that also wraps the repository's master key, so scheduled workers open it without the password; their role needs kms:Decrypt on it. Null: the policy's backup rule is refused at apply, since workers could not open the repository."
  type        = string
  default     = null
}

resource "coffer_worker_configuration" "home" {
  name   = "home"
  region = "us-east-1"
}

resource "coffer_repository" "main" {
  name          = "main"
  bucket        = var.repository_bucket
  create_bucket = true

  worker_kms_key_arn = var.worker_kms_key_arn

  encryption {
    password = var.repository_password
  }
}

resource "coffer_region_mapping" "use1_to_euw1" {
  name          = "use1-to-euw1"
  source_region = "us-east-1"
  target_region = "eu-west-1"
}

resource "coffer_backup_policy" "daily" {
  name = "baseline"
  type = "ec2"

  source {
    regions = ["us-east-1"]
    tags    = { Backup = "daily" }
  }

  rule {
    name = "daily"
    cron = "0 2 * * *"

    snapshot {
      retain { count = 7 }
    }

    replicate {
      region_mapping_ids = [coffer_region_mapping.use1_to_euw1.id]
      retain { count = 3 }
    }

    backup {
      repository_id = coffer_repository.main.id
      retain { days = 30 }
    }
  }

  worker_configuration_ids = [coffer_worker_configuration.home.id]
}

output "policy_id" {
  description = "The backup policy's id (its name)."
  value       = coffer_backup_policy.daily.id
}

output "schedule_arns" {
  description = "Rule name → EventBridge Scheduler schedule ARN."
  value       = coffer_backup_policy.daily.schedule_arns
}

output "repository_id" {
  description = "The repository's UUID."
  value       = coffer_repository.main.id
}

output "worker_configuration_id" {
  description = "The worker launch template id."
  value       = coffer_worker_configuration.home.id
}
