# Every instance in the scope of prod-ec2, and whether its rules are met.
data "coffer_protection" "prod" {
  policy = "prod-ec2"
}

output "all_rules_met" {
  description = "True when every resource in scope has a recent snapshot for every rule."
  value       = data.coffer_protection.prod.all_rules_met
}

output "unprotected" {
  description = "Resource id => the rules it does not meet."
  value = {
    for r in data.coffer_protection.prod.resources : r.id => r.unmet_rules if !r.rules_met
  }
}

output "last_restore_points" {
  description = "Resource id => time of its newest restore point (null when it has none)."
  value       = { for r in data.coffer_protection.prod.resources : r.id => r.last_restore_point_at }
}
