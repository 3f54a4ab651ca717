# The five newest runs of a policy.
data "coffer_sessions" "prod" {
  policy = "prod-ec2"
  limit  = 5
}

output "last_outcome" {
  description = "Success, Warning or Failed; \"no run yet\" before the first run."
  value       = try(data.coffer_sessions.prod.sessions[0].outcome, "no run yet")
}

output "failed_resources" {
  description = "Resource id => why it failed, in the newest run."
  value = {
    for r in try(data.coffer_sessions.prod.sessions[0].resources, []) :
    r.id => r.error if r.outcome == "Failed"
  }
}

output "outcomes" {
  description = "Run id => outcome, newest first."
  value       = { for s in data.coffer_sessions.prod.sessions : s.run_id => s.outcome }
}
