//! `coffer_restore_points`: the restore points of one or every policy,
//! read back from AWS by their tags (snapshots and replicas) and from the
//! repositories the policy's rules write to (backups and archives).

use async_trait::async_trait;

use super::{listed, object, policies, strings};
use crate::conns::Coffer;
use coffer_executor::{image, inventory};
use coffer_tfplugin::framework::validators::OneOf;
use coffer_tfplugin::framework::{Attribute, Block, DataSource, Diagnostics, Schema, Type, Value};

pub const TYPE_NAME: &str = "coffer_restore_points";
const KINDS: &[&str] = &["snapshot", "replica", "backup", "archive"];

pub struct RestorePoints;

pub fn point_type() -> Vec<(&'static str, Type)> {
    vec![
        ("point_id", Type::String),
        ("restore_targets", Type::List(Box::new(Type::String))),
        ("policy", Type::String),
        ("resource_id", Type::String),
        ("kind", Type::String),
        ("region", Type::String),
        ("account_id", Type::String),
        ("region_mapping_id", Type::String),
        ("run_id", Type::String),
        ("created_at", Type::String),
        ("rules", Type::List(Box::new(Type::String))),
        ("complete", Type::Bool),
        ("snapshot_ids", Type::List(Box::new(Type::String))),
        ("repository_id", Type::String),
        ("point_ids", Type::List(Box::new(Type::String))),
    ]
}

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Restore points Coffer made: EBS snapshots (one point per instance and run), DB and DB cluster \
             snapshots, and their replicas in other regions and accounts, read from AWS by their `coffer:*` tags; \
             and image-level backups and archives, read from the repositories the policy's rules write to.",
        )
        .attribute(Attribute::string("id").computed().describe("The filters, joined."))
        .attribute(Attribute::string("policy").optional().describe("Only this backup policy's points. Default: every policy in the catalog."))
        .attribute(Attribute::string("resource_id").optional().describe("Only this resource's points: an instance id, or a DB instance or cluster identifier."))
        .attribute(
            Attribute::string("kind")
                .optional()
                .describe("Only points of this kind: `snapshot`, `replica`, `backup` or `archive` (image-level restore points in repositories: KMS repositories open with the provider's credentials, password repositories need `COFFER_REPOSITORY_PASSWORD` in Terraform's environment).")
                .validate(OneOf(KINDS)),
        )
        .attribute(
            Attribute::object_list("restore_points", &point_type())
                .computed()
                .describe("The points, oldest first per resource and kind: `policy`, `resource_id`, `kind`, `region`, `account_id`, `region_mapping_id` (replicas), `run_id`, `created_at` (RFC 3339, the run's time), `rules` (the rules that made it), `complete` (false while pending or failed), `snapshot_ids` (snapshots and replicas), `repository_id` and `point_ids` (backups and archives: the repository's restore points, one per volume, for `coffer restore --point`)."),
        ),
    )
}

#[async_trait]
impl DataSource<Coffer> for RestorePoints {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn read(&self, data: &Coffer, config: &Value, diags: &mut Diagnostics) -> Option<Value> {
        let executor = &data.executor;
        let policy = config.get("policy").as_str().map(str::to_string);
        let resource = config.get("resource_id").as_str();
        let kind = config.get("kind").as_str();
        let mut rows = Vec::new();
        for (policy, mappings) in policies(executor, policy.as_deref(), diags).await? {
            let (points, errors) = inventory::list(executor, &policy, &mappings).await;
            if let Some(error) = errors.first() {
                diags.error(format!("Cannot list the restore points of {}", policy.name), error);
                return None;
            }
            rows.extend(
                points
                    .iter()
                    .filter(|p| resource.is_none_or(|r| p.resource_id == r))
                    .filter(|p| kind.is_none_or(|k| p.kind.as_str() == k))
                    .map(point_value),
            );
            if kind.is_some_and(|k| k != "backup" && k != "archive") {
                continue;
            }
            let (images, errors) = image::list_points(executor, &policy).await;
            for error in &errors {
                // Asked for image points: no answer without them. Asked
                // for everything: the snapshots still answer.
                if kind.is_some() {
                    diags.error(format!("Cannot list the image-level restore points of {}", policy.name), error);
                    return None;
                }
                diags.warning(format!("Image-level restore points of {} left out", policy.name), error);
            }
            rows.extend(
                images
                    .iter()
                    .filter(|p| resource.is_none_or(|r| p.resource_id == r))
                    .filter(|p| kind.is_none_or(|k| p.kind.as_str() == k))
                    .map(|p| image_point_value(p, &executor.aws.account_id)),
            );
        }
        let id = [config.get("policy").as_str(), resource, kind]
            .iter()
            .map(|v| v.unwrap_or("*"))
            .collect::<Vec<_>>()
            .join("/");
        Some(listed(config, id, "restore_points", rows))
    }
}

pub fn point_value(p: &inventory::RestorePoint) -> Value {
    object(vec![
        ("point_id", Value::from(p.id().to_string())),
        ("restore_targets", Value::List(p.restore_targets().iter().map(|t| Value::from(*t)).collect())),
        ("policy", Value::from(p.policy.as_str())),
        ("resource_id", p.resource_id.as_str().into()),
        ("kind", p.kind.as_str().into()),
        ("region", p.region.as_str().into()),
        ("account_id", p.account.as_str().into()),
        ("region_mapping_id", p.mapping.clone().map(Value::from).unwrap_or(Value::Null)),
        ("run_id", p.run_id.as_str().into()),
        ("created_at", p.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into()),
        ("rules", strings(p.rules.iter())),
        ("complete", p.complete().into()),
        ("snapshot_ids", strings(p.snapshots.iter().map(|s| &s.id))),
        ("repository_id", Value::Null),
        ("point_ids", Value::List(Vec::new())),
    ])
}

/// `account`: the repository's, which is the provider's (repositories live
/// in the account whose catalog names them).
pub fn image_point_value(p: &image::ImagePoint, account: &str) -> Value {
    object(vec![
        ("point_id", Value::from(p.id().to_string())),
        ("restore_targets", Value::List(p.restore_targets().iter().map(|t| Value::from(*t)).collect())),
        ("policy", Value::from(p.policy.as_str())),
        ("resource_id", p.resource_id.as_str().into()),
        ("kind", p.kind.as_str().into()),
        ("region", p.region.as_str().into()),
        ("account_id", account.into()),
        ("region_mapping_id", Value::Null),
        ("run_id", p.run_id.as_str().into()),
        ("created_at", p.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into()),
        ("rules", strings(p.rules.iter())),
        ("complete", true.into()),
        ("snapshot_ids", Value::List(Vec::new())),
        ("repository_id", p.repository_id.as_str().into()),
        ("point_ids", strings(p.point_ids.iter())),
    ])
}
