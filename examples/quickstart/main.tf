# Coffer quickstart: worker configurations in two regions, a repository,
# a region mapping and a daily backup policy, applied against the local AWS
# emulator by `make demo` (or against AWS: drop endpoint_url, and set a real
# scheduler role, bucket name and password).

terraform {
  required_version = ">= 1.0"
  required_providers {
    coffer = {
      source = "coffer/coffer"
    }
  }
}

variable "endpoint_url" {
  description = "AWS endpoint for every service; the demo's local emulator. Set to null for real AWS."
  type        = string
  default     = "http://127.0.0.1:4566"
}

variable "repository_password" {
  description = "Password of the demo repository. DEMO ONLY: the default is public; pass a real secret (TF_VAR_repository_password) anywhere else."
  type        = string
  sensitive   = true
  default     = "coffer-quickstart-demo-only"
}

variable "worker_kms_key_arn" {
  description = "KMS key (full ARN) that also wraps the repository's master key, so scheduled workers open it without the password; their role needs kms:Decrypt on it. Null: the policy's backup rule is refused at apply, since workers could not open the repository."
  type        = string
  default     = null
}

provider "coffer" {
  region            = "us-east-1"
  endpoint_url      = var.endpoint_url
  s3_use_path_style = true

  # The role EventBridge Scheduler assumes to launch workers (see the
  # coffer_iam_policy data source below for its permissions).
  scheduler_role_arn = "arn:aws:iam::123456789012:role/coffer-scheduler"

  default_tags = {
    ManagedBy = "coffer"
  }
}

# Workers in the home region: default VPC subnet, latest Amazon Linux 2023.
resource "coffer_worker_configuration" "use1" {
  name   = "use1"
  region = "us-east-1"

  tags = {
    Team = "platform"
  }
}

# Workers in Ireland, a size up (x86_64: arm64 types are refused until an arm64 worker build exists).
resource "coffer_worker_configuration" "euw1" {
  name          = "euw1"
  region        = "eu-west-1"
  instance_type = "m6i.large"
}

# Where image-level backups (a rule's `backup` block) go: deduplicated and
# encrypted, in a bucket Coffer creates.
resource "coffer_repository" "main" {
  name          = "main"
  bucket        = "coffer-quickstart-repo"
  create_bucket = true

  worker_kms_key_arn = var.worker_kms_key_arn

  encryption {
    password = var.repository_password
  }
}

# Snapshot copies from Virginia to Ireland.
resource "coffer_region_mapping" "use1_to_euw1" {
  name          = "use1-to-euw1"
  source_region = "us-east-1"
  target_region = "eu-west-1"
}

# Instances tagged Backup = daily in Virginia and Ireland, every night at
# 02:00 Berlin time: 7 snapshots, and 3 copies in Ireland of the Virginia
# ones. One EventBridge Scheduler schedule, coffer-quickstart-daily in group
# coffer. (`make demo` runs it at once with `coffer run`.)
resource "coffer_backup_policy" "quickstart" {
  name = "quickstart"
  type = "ec2"

  source {
    regions = ["us-east-1", "eu-west-1"]
    tags    = { Backup = "daily" }
  }

  rule {
    name     = "daily"
    cron     = "0 2 * * *"
    timezone = "Europe/Berlin"

    snapshot {
      retain { count = 7 }
    }

    replicate {
      region_mapping_ids = [coffer_region_mapping.use1_to_euw1.id]
      retain { count = 3 }
    }
  }

  # Sundays: the daily and weekly rules fall due together and make one
  # restore point that both keep (7 daily + 4 weekly = GFS).
  rule {
    name     = "weekly"
    cron     = "0 2 * * 0"
    timezone = "Europe/Berlin"

    snapshot {
      retain { count = 4 }
    }
  }

  worker_configuration_ids = [coffer_worker_configuration.use1.id]
  tags                     = { Team = "platform" }
}

# RDS instances and Aurora clusters tagged Backup = daily: DB and DB cluster
# snapshots every night, copies in Ireland of the Virginia ones.
resource "coffer_backup_policy" "quickstart_rds" {
  name = "quickstart-rds"
  type = "rds"

  source {
    regions = ["us-east-1", "eu-west-1"]
    tags    = { Backup = "daily" }
  }

  rule {
    name = "nightly"
    cron = "30 1 * * *"

    snapshot {
      retain { days = 14 }
    }

    replicate {
      region_mapping_ids = [coffer_region_mapping.use1_to_euw1.id]
      retain { days = 7 }
    }
  }

  worker_configuration_ids = [coffer_worker_configuration.use1.id]
}

# The IAM policies the provider, scheduler, worker and backup roles need.
data "coffer_iam_policy" "all" {}

output "worker_configurations" {
  description = "Launch templates Coffer's workers start from, by name."
  value = {
    for w in [coffer_worker_configuration.use1, coffer_worker_configuration.euw1] : w.name => {
      id                      = w.id
      region                  = w.region
      launch_template_version = w.launch_template_version
      instance_type           = w.instance_type
      ami_id                  = w.ami_id
      subnet_id               = w.subnet_id
    }
  }
}

output "repository" {
  description = "The repository image-level backups go to."
  value = {
    id             = coffer_repository.main.id
    name           = coffer_repository.main.name
    location       = "s3://${coffer_repository.main.bucket}/${coffer_repository.main.prefix}"
    region         = coffer_repository.main.region
    storage_class  = coffer_repository.main.storage_class
    format_version = coffer_repository.main.format_version
    created_at     = coffer_repository.main.created_at
  }
}

output "region_mappings" {
  description = "Where snapshots are replicated, by mapping id."
  value = {
    (coffer_region_mapping.use1_to_euw1.id) = {
      source_region = coffer_region_mapping.use1_to_euw1.source_region
      target_region = coffer_region_mapping.use1_to_euw1.target_region
    }
  }
}

output "backup_policies" {
  description = "Backup policies and their EventBridge Scheduler schedules, by name."
  value = {
    for p in [coffer_backup_policy.quickstart, coffer_backup_policy.quickstart_rds] : p.name => {
      type    = p.type
      enabled = p.enabled
      rules = {
        for r in p.rule : r.name => {
          cron         = r.cron
          timezone     = r.timezone
          schedule_arn = p.schedule_arns[r.name]
        }
      }
    }
  }
}

output "iam_policies" {
  description = "IAM policy documents for Coffer's roles (JSON)."
  value = {
    provider  = data.coffer_iam_policy.all.provider_policy_json
    scheduler = data.coffer_iam_policy.all.scheduler_policy_json
    worker    = data.coffer_iam_policy.all.worker_policy_json
    backup    = data.coffer_iam_policy.all.backup_policy_json
  }
}
