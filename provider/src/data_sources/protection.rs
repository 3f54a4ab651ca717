//! `coffer_protection`: every resource in a policy's scope, its last
//! restore point, and whether each rule's latest due run made one.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::{listed, object, policies, strings};
use crate::conns::Coffer;
use coffer_executor::agent::latest_due;
use coffer_executor::history;
use coffer_executor::inventory::{self, RestorePoint, SnapshotKind};
use coffer_executor::scope;
use coffer_executor::session::Outcome;
use coffer_model::policy::PolicyDocument;
use coffer_tfplugin::framework::{Attribute, Block, DataSource, Diagnostics, Schema, Type, Value};

pub const TYPE_NAME: &str = "coffer_protection";
/// How long after a rule falls due its run may take before the rule counts
/// as unmet.
const GRACE: TimeDelta = TimeDelta::hours(1);

/// How many entries of the history are read for `missed_runs`.
const MISSED_LISTED: usize = 100;

pub struct Protection;

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Every resource in a backup policy's scope right now, with its newest restore point and whether its \
             rules are met: a rule with a `snapshot` block is met when the resource has a complete snapshot made \
             by that rule at or after the rule's latest due time (allowing the run an hour).",
        )
        .attribute(Attribute::string("id").computed().describe("The policy name."))
        .attribute(Attribute::string("policy").required().describe("The backup policy's name."))
        .attribute(Attribute::bool("all_rules_met").computed().describe("True when every resource in scope meets every rule and no due run was missed."))
        .attribute(
            Attribute::object_list("missed_runs", &[("run_id", Type::String), ("rules", Type::List(Box::new(Type::String))), ("due_at", Type::String), ("message", Type::String)])
                .computed()
                .describe("Due firings of the last 7 days that nothing ran (the `Missed` entries of `coffer_sessions`), newest first: `run_id` (the due minute), `rules`, `due_at`, `message` (what to check)."),
        )
        .attribute(
            Attribute::object_list(
                "resources",
                &[
                    ("id", Type::String),
                    ("region", Type::String),
                    ("kind", Type::String),
                    ("restore_points", Type::Number),
                    ("last_restore_point_at", Type::String),
                    ("last_run_id", Type::String),
                    ("rules_met", Type::Bool),
                    ("unmet_rules", Type::List(Box::new(Type::String))),
                ],
            )
            .computed()
            .describe("Per resource in scope: `id`, `region`, `kind` (`ec2-instance`, `rds-instance`, `rds-cluster`), `restore_points` (complete snapshots and replicas), `last_restore_point_at` and `last_run_id` (null when it has none), `rules_met`, `unmet_rules`."),
        ),
    )
}

#[async_trait]
impl DataSource<Coffer> for Protection {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn read(&self, data: &Coffer, config: &Value, diags: &mut Diagnostics) -> Option<Value> {
        let executor = &data.executor;
        let name = config.get("policy").as_str().unwrap_or_default().to_string();
        let (policy, mappings) = policies(executor, Some(&name), diags).await?.pop()?;
        let in_scope = scope::resolve(&executor.aws, &policy).await;
        if let Some((region, error)) = in_scope.failed_regions.first() {
            diags.error(format!("Cannot list the resources of {name} in {region}"), error);
            return None;
        }
        let (points, errors) = inventory::list(executor, &policy, &mappings).await;
        if let Some(error) = errors.first() {
            diags.error(format!("Cannot list the restore points of {name}"), error);
            return None;
        }
        let mut by_resource: BTreeMap<(&str, &str), Vec<&RestorePoint>> = BTreeMap::new();
        for point in points.iter().filter(|p| p.complete()) {
            by_resource.entry((&point.resource_region, &point.resource_id)).or_default().push(point);
        }
        let now = Utc::now();
        let mut all_met = true;
        let rows = in_scope
            .resources
            .iter()
            .map(|resource| {
                let points = by_resource
                    .get(&(resource.region.as_str(), resource.id.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let unmet = unmet_rules(&policy, points, now);
                all_met &= unmet.is_empty();
                let newest = points.iter().max_by_key(|p| p.time);
                object(vec![
                    ("id", Value::from(resource.id.as_str())),
                    ("region", resource.region.as_str().into()),
                    (
                        "kind",
                        serde_json::to_value(resource.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(Value::from))
                            .unwrap_or(Value::Null),
                    ),
                    ("restore_points", (points.len() as i64).into()),
                    (
                        "last_restore_point_at",
                        newest
                            .map(|p| p.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into())
                            .unwrap_or(Value::Null),
                    ),
                    ("last_run_id", newest.map(|p| p.run_id.as_str().into()).unwrap_or(Value::Null)),
                    ("rules_met", unmet.is_empty().into()),
                    ("unmet_rules", strings(unmet.iter())),
                ])
            })
            .collect();
        let history = match history::history(executor, &policy, MISSED_LISTED, now).await {
            Ok(history) => history,
            Err(e) => {
                diags.error(format!("Cannot read the sessions of {name}"), e.to_string());
                return None;
            }
        };
        let missed: Vec<Value> = history
            .iter()
            .filter(|s| s.outcome == Outcome::Missed)
            .map(|s| {
                object(vec![
                    ("run_id", Value::from(s.run_id.as_str())),
                    ("rules", strings(s.rules.iter())),
                    ("due_at", s.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into()),
                    ("message", s.messages.first().map(|m| Value::from(m.as_str())).unwrap_or(Value::Null)),
                ])
            })
            .collect();
        let mut value = listed(config, name, "resources", rows);
        if let Value::Map(fields) = &mut value {
            fields.insert("all_rules_met".into(), (all_met && missed.is_empty()).into());
            fields.insert("missed_runs".into(), Value::List(missed));
        }
        Some(value)
    }
}

/// The snapshot rules whose latest due time (at least [`GRACE`] ago) has
/// no complete snapshot of the resource made by that rule since.
fn unmet_rules(policy: &PolicyDocument, points: &[&RestorePoint], now: DateTime<Utc>) -> Vec<String> {
    policy
        .rules
        .iter()
        .filter(|rule| rule.snapshot.is_some())
        .filter(|rule| {
            let Some(due) = latest_due(rule, now - TimeDelta::days(366), now - GRACE) else {
                return false;
            };
            !points.iter().any(|p| p.kind == SnapshotKind::Snapshot && p.rules.contains(&rule.name) && p.time >= due)
        })
        .map(|rule| rule.name.clone())
        .collect()
}
