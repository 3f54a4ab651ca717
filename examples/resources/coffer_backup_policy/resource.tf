# Production EC2 instances tagged Backup = daily, in two regions: daily
# snapshots copied to Ireland and backed up image-level, monthly backups
# kept a year and archived.
resource "coffer_backup_policy" "prod" {
  name        = "prod-ec2"
  type        = "ec2"
  description = "Production instances, tagged Backup = daily"

  source {
    regions     = ["us-east-1", "eu-west-1"]
    tags        = { Backup = "daily" }
    exclude_ids = ["i-0fedcba9876543210"]
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

    backup {
      repository_id = coffer_repository.main.id
      retain { days = 30 }
    }
  }

  rule {
    name = "monthly"
    cron = "0 3 1 * *"

    backup {
      repository_id = coffer_repository.main.id
      retain { count = 12 }
    }

    archive {
      repository_id = coffer_repository.cold.id
      retain { days = 365 }
    }
  }

  worker_configuration_ids = [coffer_worker_configuration.use1.id]
  scheduler_role_arn       = "arn:aws:iam::123456789012:role/coffer-scheduler"

  tags = {
    Team = "platform"
  }
}

# RDS databases by identifier: snapshots on weekdays, copies in Ireland.
resource "coffer_backup_policy" "databases" {
  name    = "prod-rds"
  type    = "rds"
  enabled = true

  source {
    regions = ["us-east-1"]
    ids     = ["orders-db", "billing-cluster"]
  }

  rule {
    name = "nightly"
    cron = "30 1 * * 1-5"

    snapshot {
      retain { days = 14 }
    }

    replicate {
      region_mapping_ids = [coffer_region_mapping.use1_to_euw1.id]
      retain { days = 7 }
    }
  }

  worker_configuration_ids = [coffer_worker_configuration.use1.id]
  scheduler_role_arn       = "arn:aws:iam::123456789012:role/coffer-scheduler"
}

# What the policies refer to.
resource "coffer_worker_configuration" "use1" {
  name             = "use1"
  region           = "us-east-1"
  instance_profile = "coffer-worker"
}

resource "coffer_region_mapping" "use1_to_euw1" {
  name          = "use1-to-euw1"
  source_region = "us-east-1"
  target_region = "eu-west-1"
}

resource "coffer_repository" "main" {
  name   = "main"
  bucket = "acme-backups-us"
  region = "us-east-1"

  encryption {
    kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }
}

resource "coffer_repository" "cold" {
  name          = "cold"
  bucket        = "acme-backups-archive"
  region        = "us-east-1"
  storage_class = "DEEP_ARCHIVE"

  encryption {
    kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }
}
