# One backup baseline, applied to two AWS accounts through provider aliases.
# By default it runs against the local AWS emulator (see README.md); for real
# accounts, set endpoint_url = null and give the roles real trust policies.

terraform {
  required_version = ">= 1.0"
  required_providers {
    coffer = {
      source = "coffer/coffer"
    }
  }
}

variable "endpoint_url" {
  description = "AWS endpoint for every service: the local emulator. Set to null for real AWS."
  type        = string
  default     = "http://127.0.0.1:4566"
}

variable "repository_password" {
  description = "Password of the repositories. DEMO ONLY: the default is public; pass a real secret (TF_VAR_repository_password) for anything else."
  type        = string
  sensitive   = true
  default     = "coffer-demo-only-password"
}

variable "worker_kms_key_arns" {
  description = "Per account (account_a, account_b): the KMS key (full ARN, in that account) that also wraps its repository's master key, so scheduled workers open it without the password. A policy's backup rule on a password repository without one is refused at apply."
  type        = map(string)
}

provider "coffer" {
  alias             = "account_a"
  region            = "us-east-1"
  endpoint_url      = var.endpoint_url
  s3_use_path_style = true

  assume_role {
    role_arn = "arn:aws:iam::111111111111:role/coffer"
  }

  scheduler_role_arn = "arn:aws:iam::111111111111:role/coffer-scheduler"

  default_tags = {
    ManagedBy = "coffer"
  }
}

provider "coffer" {
  alias             = "account_b"
  region            = "us-east-1"
  endpoint_url      = var.endpoint_url
  s3_use_path_style = true

  assume_role {
    role_arn = "arn:aws:iam::222222222222:role/coffer"
  }

  scheduler_role_arn = "arn:aws:iam::222222222222:role/coffer-scheduler"

  default_tags = {
    ManagedBy = "coffer"
  }
}

module "account_a" {
  source    = "./modules/baseline"
  providers = { coffer = coffer.account_a }

  repository_bucket   = "coffer-repo-111111111111"
  repository_password = var.repository_password
  worker_kms_key_arn  = var.worker_kms_key_arns["account_a"]
}

module "account_b" {
  source    = "./modules/baseline"
  providers = { coffer = coffer.account_b }

  repository_bucket   = "coffer-repo-222222222222"
  repository_password = var.repository_password
  worker_kms_key_arn  = var.worker_kms_key_arns["account_b"]
}

output "account_a" {
  description = "What the baseline made in account 111111111111."
  value = {
    policy_id               = module.account_a.policy_id
    schedule_arns           = module.account_a.schedule_arns
    repository_id           = module.account_a.repository_id
    worker_configuration_id = module.account_a.worker_configuration_id
  }
}

output "account_b" {
  description = "What the baseline made in account 222222222222."
  value = {
    policy_id               = module.account_b.policy_id
    schedule_arns           = module.account_b.schedule_arns
    repository_id           = module.account_b.repository_id
    worker_configuration_id = module.account_b.worker_configuration_id
  }
}
