# Coffer quickstart: worker configurations in two regions, applied against
# the local AWS emulator by `make demo` (or against AWS: drop endpoint_url).

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

provider "coffer" {
  region            = "us-east-1"
  endpoint_url      = var.endpoint_url
  s3_use_path_style = true

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

# Graviton workers in Ireland: the default AMI follows the architecture.
resource "coffer_worker_configuration" "euw1" {
  name          = "euw1"
  region        = "eu-west-1"
  instance_type = "m7g.large"
}

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
