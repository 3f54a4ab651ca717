//! `coffer_sessions`: the recent runs of a policy, from the session
//! records in the catalog.

use async_trait::async_trait;

use super::{listed, object, strings};
use crate::conns::Coffer;
use coffer_executor::{history, session};
use coffer_tfplugin::framework::{Attribute, Block, DataSource, Diagnostics, Schema, Type, Value};

pub const TYPE_NAME: &str = "coffer_sessions";

pub struct Sessions;

fn resource_type() -> Type {
    Type::Object(
        [
            ("id", Type::String),
            ("region", Type::String),
            ("kind", Type::String),
            ("outcome", Type::String),
            ("error", Type::String),
            ("warnings", Type::List(Box::new(Type::String))),
            ("duration_ms", Type::Number),
            ("snapshot_ids", Type::List(Box::new(Type::String))),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect(),
    )
}

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new("The recent sessions (runs) of a backup policy, newest first, with each resource's outcome; a scheduled worker that ended before its run recorded a session is a `Failed` entry with the worker's reason, and a due firing nothing started in time is a `Missed` one.")
            .attribute(Attribute::string("id").computed().describe("The policy name."))
            .attribute(Attribute::string("policy").required().describe("The backup policy's name."))
            .attribute(Attribute::number("limit").optional().describe("How many sessions, newest first. Default 10."))
            .attribute(
                Attribute::object_list(
                    "sessions",
                    &[
                        ("run_id", Type::String),
                        ("rules", Type::List(Box::new(Type::String))),
                        ("started_at", Type::String),
                        ("finished_at", Type::String),
                        ("outcome", Type::String),
                        ("messages", Type::List(Box::new(Type::String))),
                        ("resources", Type::List(Box::new(resource_type()))),
                        ("snapshots_deleted", Type::Number),
                    ],
                )
                .computed()
                .describe("`run_id`, `rules`, `started_at`, `finished_at`, `outcome` (`Success`, `Warning`, `Failed`, or `Missed` for a due firing nothing ran), `messages`, `resources` (each: `id`, `region`, `kind`, `outcome`, `error`, `warnings`, `duration_ms`, `snapshot_ids` of its snapshots and replicas), `snapshots_deleted` by retention."),
            ),
    )
}

#[async_trait]
impl DataSource<Coffer> for Sessions {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        if let Some(limit) = config.get("limit").as_i64() {
            if !(1..=1000).contains(&limit) {
                diags.attribute_error(
                    coffer_tfplugin::framework::AttributePath::attr("limit"),
                    "Invalid limit",
                    format!("limit must be between 1 and 1000, got {limit}"),
                );
            }
        }
    }

    async fn read(&self, data: &Coffer, config: &Value, diags: &mut Diagnostics) -> Option<Value> {
        let executor = &data.executor;
        let policy = config.get("policy").as_str().unwrap_or_default().to_string();
        let limit = config.get("limit").as_i64().unwrap_or(10).clamp(1, 1000) as usize;
        let document = match executor.policy(&policy).await {
            Ok(document) => document,
            Err(e) => {
                diags.error(format!("Cannot read backup policy {policy}"), e.to_string());
                return None;
            }
        };
        let sessions = match history::history(executor, &document, limit, chrono::Utc::now()).await {
            Ok(sessions) => sessions,
            Err(e) => {
                diags.error(format!("Cannot read the sessions of {policy}"), e.to_string());
                return None;
            }
        };
        let rows = sessions.iter().map(session_value).collect();
        Some(listed(config, policy, "sessions", rows))
    }
}

fn session_value(s: &session::Session) -> Value {
    let resources = s
        .resources
        .iter()
        .map(|r| {
            object(vec![
                ("id", Value::from(r.id.as_str())),
                ("region", r.region.as_str().into()),
                (
                    "kind",
                    serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(Value::from)).unwrap_or(Value::Null),
                ),
                ("outcome", r.outcome.to_string().into()),
                ("error", r.error.clone().map(Value::from).unwrap_or(Value::Null)),
                ("warnings", strings(r.warnings.iter())),
                ("duration_ms", (r.duration_ms as i64).into()),
                ("snapshot_ids", strings(r.snapshots.iter().map(|s| &s.id))),
            ])
        })
        .collect();
    object(vec![
        ("run_id", Value::from(s.run_id.as_str())),
        ("rules", strings(s.rules.iter())),
        ("started_at", s.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into()),
        ("finished_at", s.finished_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into()),
        ("outcome", s.outcome.to_string().into()),
        ("messages", strings(s.messages.iter())),
        ("resources", Value::List(resources)),
        ("snapshots_deleted", (s.retention.deleted.len() as i64).into()),
    ])
}
