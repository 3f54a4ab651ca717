# Every restore point of one policy: snapshots and replicas.
data "coffer_restore_points" "prod" {
  policy = "prod-ec2"
}

# The replicas of one database, in the regions and accounts of the policy's
# region mappings.
data "coffer_restore_points" "orders_replicas" {
  policy      = "prod-rds"
  resource_id = "orders-db"
  kind        = "replica"
}

locals {
  orders_replicas = [
    for p in data.coffer_restore_points.orders_replicas.restore_points : p if p.complete
  ]
}

output "restore_points" {
  description = "Every restore point of prod-ec2, oldest first per instance."
  value       = data.coffer_restore_points.prod.restore_points
}

output "orders_latest_replica" {
  description = "The newest complete replica of orders-db (null when there is none)."
  value = length(local.orders_replicas) == 0 ? null : {
    region      = local.orders_replicas[length(local.orders_replicas) - 1].region
    account_id  = local.orders_replicas[length(local.orders_replicas) - 1].account_id
    created_at  = local.orders_replicas[length(local.orders_replicas) - 1].created_at
    snapshot_id = local.orders_replicas[length(local.orders_replicas) - 1].snapshot_ids[0]
  }
}
