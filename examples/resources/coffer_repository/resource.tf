# A repository in an existing bucket, its master key wrapped by a KMS key.
resource "coffer_repository" "main" {
  name   = "main"
  bucket = "acme-backups-eu"
  prefix = "coffer/main"
  region = "eu-west-1"

  encryption {
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }

  tags = {
    Team = "platform"
  }
}

# A bucket Coffer creates, with Object Lock, and a password-wrapped key.
# On Terraform 1.11+, prefer `password_wo` (with `password_wo_version`),
# which is never stored in plan or state.
variable "repository_password" {
  type      = string
  sensitive = true
}

resource "coffer_repository" "immutable" {
  name          = "immutable"
  bucket        = "acme-backups-immutable"
  create_bucket = true
  force_destroy = false

  encryption {
    password = var.repository_password
  }

  immutability {
    days = 30
    mode = "COMPLIANCE"
  }
}

# An archive repository, for the `archive` action of policy rules.
resource "coffer_repository" "cold" {
  name          = "cold"
  bucket        = "acme-backups-archive"
  region        = "eu-west-1"
  storage_class = "DEEP_ARCHIVE"

  encryption {
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }
}
