//! `coffer_backup_policy`: what is protected, when, and how long. The policy
//! is a catalog document (read by workers) plus one EventBridge Scheduler
//! schedule per rule, `coffer-<policy>-<rule>` in group `coffer` of the home
//! region, whose target launches a worker from the home-region worker
//! configuration with user data that runs `coffer run --policy P --rule R --scheduled`.

use coffer_model::CatalogDocument;
use coffer_model::CatalogLocation;
use coffer_model::policy::{Keep, PolicyDocument, PolicyType, Replicate, Retain, Rule, Source, ToRepository};
use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, ScheduleState,
    Target,
};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::conns::Coffer;
use crate::resources::preflight::{self, Stage};
use crate::resources::worker_configuration::check_architecture;
use crate::resources::{catalog_write_error, check_regions_enabled, expand_enum};
use coffer_aws::catalog::{CatalogError, Kind};
use coffer_aws::preflight::Concern;
use coffer_aws::{AwsError, ec2, scheduler};
use coffer_model::cron;
use coffer_model::region_mapping::RegionMappingDocument;
use coffer_model::repository::{RepositoryEntry, StorageClass};
use coffer_model::validation;
use coffer_tfplugin::framework::validators::{Each, IntBetween, Keys, OneOf, string};
use coffer_tfplugin::framework::{
    Attribute, AttributePath, Block, Diagnostics, Import, ModifyPlan, NestedBlock, PlanRequest, Private, Resource,
    Schema, Value,
};
use strum::VariantNames;

pub const TYPE_NAME: &str = "coffer_backup_policy";
/// The schedule group every Coffer schedule lives in.
pub const SCHEDULE_GROUP: &str = "coffer";
/// EventBridge Scheduler's universal target for EC2 RunInstances.
pub const RUN_INSTANCES_TARGET: &str = "arn:aws:scheduler:::aws-sdk:ec2:runInstances";
const ETAG: &str = "etag";
/// The home-region launch template the schedules launch, as last resolved.
const LAUNCH_TEMPLATE: &str = "launch_template_id";
/// EventBridge Scheduler names: 1-64 of `[0-9a-zA-Z-_.]`.
const MAX_SCHEDULE_NAME: usize = 64;

// ------------------------------------------------------------------ schema

fn retain_block() -> NestedBlock {
    NestedBlock::single(
        "retain",
        Block::new("How long to keep what this action makes: exactly one of `count` or `days`.")
            .attribute(
                Attribute::number("count")
                    .optional()
                    .describe("Keep the newest `count` restore points this rule made (1-10000).")
                    .validate(IntBetween(1, 10_000)),
            )
            .attribute(
                Attribute::number("days")
                    .optional()
                    .describe("Keep restore points this rule made for `days` days (1-36500).")
                    .validate(IntBetween(1, 36_500)),
            ),
    )
    .items(1, 1)
}

fn repository_action(name: &str, what: &str) -> NestedBlock {
    NestedBlock::single(
        name,
        Block::new(what)
            .attribute(
                Attribute::string("repository_id").required().describe("`id` of the `coffer_repository` to write to."),
            )
            .block(retain_block()),
    )
}

fn rule_block() -> Block {
    Block::new("A schedule and what runs on it. One EventBridge Scheduler schedule per rule.")
        .attribute(
            Attribute::string("name")
                .required()
                .describe("Rule name, unique in the policy; the schedule is `coffer-<policy>-<rule>` (at most 64 characters in all).")
                .validate(string(validation::coffer_name)),
        )
        .attribute(
            Attribute::string("cron")
                .required()
                .describe(
                    "Five-field cron expression (`minute hour day-of-month month day-of-week`), evaluated in `timezone`. \
                     Day-of-month and day-of-week cannot both be restricted (EventBridge Scheduler allows one).",
                )
                .validate(string(cron::check)),
        )
        .attribute(
            Attribute::string("timezone")
                .default("UTC")
                .describe("IANA time zone the cron expression is evaluated in. Default `UTC`.")
                .validate(string(cron::check_timezone)),
        )
        .block(NestedBlock::single(
            "snapshot",
            Block::new("Take a cloud-native snapshot (EC2 CreateSnapshots per instance, RDS DB/cluster snapshots).")
                .block(retain_block()),
        ))
        .block(NestedBlock::single(
            "replicate",
            Block::new("Copy this rule's snapshots to other regions or accounts through region mappings. Needs `snapshot`.")
                .attribute(
                    Attribute::string_set("region_mapping_ids")
                        .required()
                        .describe("`id`s of `coffer_region_mapping`s whose `source_region` is in `source.regions`."),
                )
                .block(retain_block()),
        ))
        .block(repository_action(
            "backup",
            "Back EC2 volumes up image-level (incremental, deduplicated, encrypted) into a repository of storage class `STANDARD` or `STANDARD_IA`. `type = \"ec2\"` only.",
        ))
        .block(repository_action(
            "archive",
            "Copy image-level backups into an archive repository (storage class `GLACIER` or `DEEP_ARCHIVE`). `type = \"ec2\"` only.",
        ))
}

fn source_block() -> Block {
    Block::new("What the policy protects: `ids` ∪ resources carrying all of `tags`, minus `exclude_ids`, in each of `regions`.")
        .attribute(
            Attribute::string_set("regions")
                .required()
                .describe("Regions to find resources in.")
                .validate(Each(string(validation::region))),
        )
        .attribute(
            Attribute::string_set("ids")
                .optional()
                .describe("EC2 instance ids (`type = \"ec2\"`) or RDS DB instance / Aurora cluster identifiers (`type = \"rds\"`)."),
        )
        .attribute(
            Attribute::string_map("tags")
                .optional()
                .describe("A resource is in scope when it carries all of these tags.")
                .validate(Keys(string(validation::tag_key))),
        )
        .attribute(Attribute::string_set("exclude_ids").optional().describe("Ids never in scope, even when tagged."))
}

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "What is protected, when, and how long. A policy document in the catalog plus one EventBridge Scheduler \
             schedule per rule (`coffer-<policy>-<rule>` in schedule group `coffer`), which launches a worker from \
             the home-region worker configuration to run `coffer run --policy <name> --rule <rule> --scheduled`.",
        )
        .attribute(Attribute::string("id").computed().use_state_for_unknown().describe("The policy's name."))
        .attribute(
            Attribute::string("name")
                .required()
                .requires_replace()
                .describe("Policy name, unique in the catalog. 1-64 letters, digits, `-`, `_`, `.`.")
                .validate(string(validation::coffer_name)),
        )
        .attribute(
            Attribute::string("type")
                .required()
                .describe("`ec2` (instances and their EBS volumes) or `rds` (DB instances and Aurora clusters).")
                .validate(OneOf(PolicyType::VARIANTS)),
        )
        .attribute(Attribute::string("description").optional().describe("Free text, kept in the policy document."))
        .attribute(Attribute::bool("enabled").default(true).describe("Schedules are `ENABLED` when true (default), `DISABLED` when false."))
        .attribute(
            Attribute::string_set("worker_configuration_ids")
                .required()
                .describe("`id`s of `coffer_worker_configuration`s; the one in the provider's home region is what the schedules launch.")
                .validate(Each(string(validation::launch_template_id))),
        )
        .attribute(
            Attribute::string("scheduler_role_arn")
                .optional()
                .computed()
                .describe("IAM role EventBridge Scheduler assumes to launch workers. Default: the provider's `scheduler_role_arn`.")
                .validate(string(validation::role_arn)),
        )
        .attribute(
            Attribute::string("dead_letter_queue_arn")
                .optional()
                .describe(
                    "SQS queue that EventBridge Scheduler sends a rule's launch to when RunInstances failed on every \
                     retry (capacity, vCPU quota, a role it may not pass): alarm on its depth. The scheduler role \
                     needs `sqs:SendMessage` on it. Default: none.",
                )
                .validate(string(validation::sqs_queue_arn)),
        )
        .attribute(
            Attribute::string("max_run_time")
                .optional()
                .describe(
                    "How long one run may take, e.g. `6h`, `90m` (1m to 168h). A run still going then is stopped and \
                     recorded as Failed (timed out) with the resources it finished, and its worker terminates. \
                     Default: `12h`.",
                )
                .validate(string(validation::max_run_time)),
        )
        .attribute(
            Attribute::string("snapshot_instance_type")
                .default(coffer_model::policy::DEFAULT_SNAPSHOT_INSTANCE_TYPE)
                .describe(
                    "EC2 instance type the schedule of a rule that moves no data (only `snapshot` and \
                     `replicate`, which AWS carries out) launches: x86_64, offered in the home region. Rules \
                     with `backup` or `archive` launch the worker configuration's `instance_type`, and their \
                     worker also runs the rules due at the same minute. Default `t3.micro`.",
                )
                .validate(string(validation::instance_type)),
        )
        .attribute(
            Attribute::number("volumes_per_worker")
                .default(i64::from(coffer_model::policy::DEFAULT_VOLUMES_PER_WORKER))
                .describe(
                    "How many volumes one worker reads in a scheduled run (1-1000). A region whose instances \
                     have more volumes is spread over several workers in that region, each with its own slice \
                     of the instances, at most 20 per region. Default `50`.",
                )
                .validate(IntBetween(1, 1000)),
        )
        .attribute(
            Attribute::string_map("tags")
                .optional()
                .describe("Tags put on every snapshot, replica and restore point the policy makes.")
                .validate(Keys(string(validation::tag_key))),
        )
        .attribute(
            Attribute::string_map("schedule_arns")
                .computed()
                .describe("Rule name → ARN of its EventBridge Scheduler schedule."),
        )
        .attribute(Attribute::string("schedules_fingerprint").computed().describe(
            "SHA-256 over what each schedule launches (target, launch template, boot script), which no argument shows; \
             a schedule whose target was edited outside Terraform shows up here in `terraform plan`.",
        ))
        .block(NestedBlock::single("source", source_block()).items(1, 1))
        .block(NestedBlock::list("rule", rule_block()).items(1, 0)),
    )
}

// ------------------------------------------------------- value ↔ document

fn sorted(v: &Value) -> Vec<String> {
    let mut items = v.strings();
    items.sort();
    items.dedup();
    items
}

fn retain_from(v: &Value) -> Retain {
    Retain { count: v.get("count").as_i64(), days: v.get("days").as_i64() }
}

fn retain_value(r: &Retain) -> Value {
    let number = |n: Option<i64>| n.map(Value::from).unwrap_or(Value::Null);
    Value::object([("count", number(r.count)), ("days", number(r.days))])
}

fn expand_rule(v: &Value) -> Rule {
    let keep = |b: &Value| (!b.is_null()).then(|| Keep { retain: retain_from(b.get("retain")) });
    let to_repository = |b: &Value| {
        (!b.is_null()).then(|| ToRepository {
            repository_id: b.get("repository_id").as_str().unwrap_or_default().to_string(),
            retain: retain_from(b.get("retain")),
        })
    };
    let replicate = v.get("replicate");
    Rule {
        name: v.get("name").as_str().unwrap_or_default().to_string(),
        cron: v.get("cron").as_str().unwrap_or_default().to_string(),
        timezone: v.get("timezone").as_str().unwrap_or("UTC").to_string(),
        snapshot: keep(v.get("snapshot")),
        replicate: (!replicate.is_null()).then(|| Replicate {
            region_mapping_ids: sorted(replicate.get("region_mapping_ids")),
            retain: retain_from(replicate.get("retain")),
        }),
        backup: to_repository(v.get("backup")),
        archive: to_repository(v.get("archive")),
    }
}

fn flatten_rule(r: &Rule) -> Value {
    let to_repository = |b: &Option<ToRepository>| match b {
        None => Value::Null,
        Some(b) => Value::object([
            ("repository_id", Value::from(b.repository_id.as_str())),
            ("retain", retain_value(&b.retain)),
        ]),
    };
    Value::object([
        ("name", Value::from(r.name.as_str())),
        ("cron", Value::from(r.cron.as_str())),
        ("timezone", Value::from(r.timezone.as_str())),
        (
            "snapshot",
            r.snapshot.as_ref().map(|k| Value::object([("retain", retain_value(&k.retain))])).unwrap_or(Value::Null),
        ),
        (
            "replicate",
            r.replicate
                .as_ref()
                .map(|k| {
                    Value::object([
                        ("region_mapping_ids", Value::string_list(k.region_mapping_ids.iter().cloned())),
                        ("retain", retain_value(&k.retain)),
                    ])
                })
                .unwrap_or(Value::Null),
        ),
        ("backup", to_repository(&r.backup)),
        ("archive", to_repository(&r.archive)),
    ])
}

fn expand_policy(planned: &Value, diags: &mut Diagnostics) -> Option<PolicyDocument> {
    let source = planned.get("source");
    let optional = |v: &Value| v.as_str().map(str::to_string);
    Some(PolicyDocument {
        format_version: PolicyDocument::FORMAT_VERSION,
        name: planned.get("name").as_str().unwrap_or_default().to_string(),
        kind: expand_enum(planned.get("type"), AttributePath::attr("type"), None, diags)?,
        description: optional(planned.get("description")),
        enabled: planned.get("enabled").as_bool().unwrap_or(true),
        source: Source {
            regions: sorted(source.get("regions")),
            ids: sorted(source.get("ids")),
            tags: source.get("tags").string_map(),
            exclude_ids: sorted(source.get("exclude_ids")),
        },
        rules: planned.get("rule").as_list().iter().map(expand_rule).collect(),
        worker_configuration_ids: sorted(planned.get("worker_configuration_ids")),
        scheduler_role_arn: optional(planned.get("scheduler_role_arn")),
        tags: planned.get("tags").string_map(),
        max_run_time: optional(planned.get("max_run_time")),
        snapshot_instance_type: optional(planned.get("snapshot_instance_type")),
        volumes_per_worker: planned.get("volumes_per_worker").as_i64().and_then(|n| u32::try_from(n).ok()),
    })
}

/// The state for a document, before the schedules are looked at.
fn flatten_policy(document: &PolicyDocument, prior: &Value) -> Value {
    let set = |items: &[String]| {
        if items.is_empty() { Value::Null } else { Value::string_list(items.iter().cloned()) }
    };
    // Empty and absent are the same to the document; keep what the user wrote.
    let map_like_prior = |map: &BTreeMap<String, String>, prior: &Value| {
        if map.is_empty() && prior.is_null() { Value::Null } else { Value::string_map_or_null(map).or_empty() }
    };
    let s = &document.source;
    Value::object([
        ("id", Value::from(document.name.as_str())),
        ("name", Value::from(document.name.as_str())),
        ("type", Value::from(document.kind.as_str())),
        ("description", document.description.as_deref().map(Value::from).unwrap_or(Value::Null)),
        ("enabled", Value::from(document.enabled)),
        ("worker_configuration_ids", Value::string_list(document.worker_configuration_ids.iter().cloned())),
        ("scheduler_role_arn", document.scheduler_role_arn.as_deref().map(Value::from).unwrap_or(Value::Null)),
        ("max_run_time", document.max_run_time.as_deref().map(Value::from).unwrap_or(Value::Null)),
        ("snapshot_instance_type", Value::from(document.snapshot_instance_type())),
        ("volumes_per_worker", Value::from(i64::from(document.volumes_per_worker()))),
        ("tags", map_like_prior(&document.tags, prior.get("tags"))),
        (
            "source",
            Value::object([
                ("regions", Value::string_list(s.regions.iter().cloned())),
                ("ids", set(&s.ids)),
                ("tags", map_like_prior(&s.tags, prior.get("source").get("tags"))),
                ("exclude_ids", set(&s.exclude_ids)),
            ]),
        ),
        ("rule", Value::List(document.rules.iter().map(flatten_rule).collect())),
    ])
}

trait OrEmpty {
    fn or_empty(self) -> Value;
}

impl OrEmpty for Value {
    /// A null map as an empty one (the user wrote `{}`).
    fn or_empty(self) -> Value {
        if self.is_null() { Value::Map(BTreeMap::new()) } else { self }
    }
}

// --------------------------------------------------------------- schedules

pub fn schedule_name(policy: &str, rule: &str) -> String {
    format!("coffer-{policy}-{rule}")
}

pub fn schedule_arn(region: &str, account: &str, policy: &str, rule: &str) -> String {
    format!(
        "arn:{}:scheduler:{region}:{account}:schedule/{SCHEDULE_GROUP}/{}",
        coffer_aws::partition(region),
        schedule_name(policy, rule)
    )
}

/// What a rule's schedule launches, besides the launch template.
struct Launch<'a> {
    policy: &'a str,
    rule: &'a str,
    max_run_time: std::time::Duration,
    /// The instance type overriding the template's: for rules that move no data.
    instance_type: Option<&'a str>,
}

impl<'a> Launch<'a> {
    fn of(document: &'a PolicyDocument, rule: &'a Rule) -> Self {
        Self {
            policy: &document.name,
            rule: &rule.name,
            max_run_time: document.max_run_time(),
            instance_type: (!rule.moves_data()).then(|| document.snapshot_instance_type()),
        }
    }
}

/// The RunInstances input of a rule's schedule: the launch template's
/// default version, one instance (of the snapshot instance type for a rule
/// that moves no data), a boot script that runs the rule.
fn run_instances_input(
    catalog: &CatalogLocation,
    home_region: &str,
    launch_template_id: &str,
    launch: &Launch<'_>,
) -> String {
    let user_data =
        coffer_model::worker::user_data_for_rule(catalog, home_region, launch.policy, launch.rule, launch.max_run_time);
    let mut input = serde_json::json!({
        "LaunchTemplate": { "LaunchTemplateId": launch_template_id, "Version": "$Default" },
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": base64::engine::general_purpose::STANDARD.encode(user_data),
    });
    if let Some(instance_type) = launch.instance_type {
        input["InstanceType"] = serde_json::Value::from(instance_type);
    }
    input.to_string()
}

/// What a schedule launches, per rule, hashed: the part of a schedule no
/// argument shows.
fn fingerprint<'a>(targets: impl Iterator<Item = (&'a str, &'a str, &'a str, &'a str)>) -> String {
    let mut hash = Sha256::new();
    for (rule, arn, input, retry) in targets {
        for part in [rule, arn, input, retry] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn expected_fingerprint(data: &Coffer, launch_template_id: &str, document: &PolicyDocument) -> String {
    let inputs: Vec<(String, String)> = document
        .rules
        .iter()
        .map(|rule| {
            (
                rule.name.clone(),
                run_instances_input(
                    &data.catalog,
                    &data.aws.home_region,
                    launch_template_id,
                    &Launch::of(document, rule),
                ),
            )
        })
        .collect();
    let retry = retry_description(Some(&launch_retry_policy()));
    fingerprint(
        inputs.iter().map(|(rule, input)| (rule.as_str(), RUN_INSTANCES_TARGET, input.as_str(), retry.as_str())),
    )
}

/// How many times Scheduler retries a failed launch (RunInstances throttled, out of capacity).
const LAUNCH_RETRY_ATTEMPTS: i32 = 20;

/// Scheduler retries a failed launch with backoff, but only as long as the worker it starts
/// would still run the firing (`coffer run --scheduled` looks back
/// [`SCHEDULED_START_WINDOW_SECS`](coffer_model::worker::SCHEDULED_START_WINDOW_SECS)); after
/// that the launch goes to the dead-letter queue, if the policy names one.
fn launch_retry_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .maximum_retry_attempts(LAUNCH_RETRY_ATTEMPTS)
        .maximum_event_age_in_seconds(coffer_model::worker::SCHEDULED_START_WINDOW_SECS as i32)
        .build()
}

/// A schedule's retry policy, as it enters the fingerprint.
fn retry_description(retry: Option<&RetryPolicy>) -> String {
    match retry {
        Some(r) => format!("retry {:?} {:?}", r.maximum_retry_attempts(), r.maximum_event_age_in_seconds()),
        None => "retry default".to_string(),
    }
}

/// Finds which of the policy's worker configurations is in the home region.
async fn home_launch_template(data: &Coffer, ids: &[String]) -> Result<String, String> {
    let home = &data.aws.home_region;
    match ec2::find_launch_template_among(&data.aws.ec2(home), ids).await {
        Ok(id) => Ok(id),
        Err(AwsError::NotFound) => Err(format!(
            "none of the worker configurations {} is in the home region {home}; the schedules launch workers there, so add a coffer_worker_configuration with region = {home:?}.",
            ids.join(", "),
        )),
        Err(e) => Err(format!("looking up the launch templates {} in {home}: {e}", ids.join(", "))),
    }
}

fn scheduler_role(data: &Coffer, planned: &Value) -> Option<String> {
    planned.get("scheduler_role_arn").as_str().map(str::to_string).or_else(|| data.scheduler_role_arn.clone())
}

/// Creates or updates every rule's schedule and deletes those of rules that
/// went away. Stops at the first failure.
async fn put_schedules(
    data: &Coffer,
    document: &PolicyDocument,
    role_arn: &str,
    write: &ScheduleWrite<'_>,
) -> Result<(), String> {
    let launch_template_id = write.launch_template;
    let client = data.aws.scheduler(&data.aws.home_region);
    data.schedule_group_ready
        .get_or_try_init(|| scheduler::ensure_group(&client, SCHEDULE_GROUP))
        .await
        .map_err(|e| format!("creating schedule group {SCHEDULE_GROUP} in {}: {e}", data.aws.home_region))?;
    for rule in &document.rules {
        let name = schedule_name(&document.name, &rule.name);
        let expression = cron::to_eventbridge(&rule.cron).map_err(|e| format!("rule {}: {e}", rule.name))?;
        let target = Target::builder()
            .arn(RUN_INSTANCES_TARGET)
            .role_arn(role_arn)
            .input(run_instances_input(
                &data.catalog,
                &data.aws.home_region,
                launch_template_id,
                &Launch::of(document, rule),
            ))
            .retry_policy(launch_retry_policy())
            .set_dead_letter_config(write.dead_letter_queue.map(|arn| DeadLetterConfig::builder().arn(arn).build()))
            .build()
            .map_err(|e| e.to_string())?;
        let window =
            FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().map_err(|e| e.to_string())?;
        let state = if document.enabled { ScheduleState::Enabled } else { ScheduleState::Disabled };
        let description = format!("Coffer backup policy {}, rule {}", document.name, rule.name);
        // Both calls take the whole definition; try the one that most likely
        // applies (update for rules the state knows) and fall back to the other.
        macro_rules! definition {
            ($request:expr) => {
                $request
                    .group_name(SCHEDULE_GROUP)
                    .name(&name)
                    .description(&description)
                    .schedule_expression(&expression)
                    .schedule_expression_timezone(&rule.timezone)
                    .state(state.clone())
                    .flexible_time_window(window.clone())
                    .target(target.clone())
                    .action_after_completion(ActionAfterCompletion::None)
                    .send()
                    .await
            };
        }
        // A conflict on create means the schedule exists: reported as
        // NotFound-of-a-free-name, so both fallbacks read alike.
        let create = || async {
            definition!(client.create_schedule()).map(|_| ()).map_err(|e| AwsError::from_sdk(e, &["ConflictException"]))
        };
        let update = || async {
            definition!(client.update_schedule()).map(|_| ()).map_err(|e| AwsError::from_sdk(e, scheduler::NOT_FOUND))
        };
        let result = if write.prior_rules.contains(&rule.name) {
            match update().await {
                Err(AwsError::NotFound) => create().await,
                other => other,
            }
        } else {
            match create().await {
                // Already there (made by hand or left by a failed apply): take it over.
                Err(AwsError::NotFound) => update().await,
                other => other,
            }
        };
        let result = result.map_err(|e| format!("writing schedule {name}: {e}"));
        result?;
        tracing::debug!(schedule = %name, %expression, "schedule written");
    }
    for rule in write.removed_rules {
        delete_schedule(data, &schedule_name(&document.name, rule)).await?;
    }
    Ok(())
}

async fn delete_schedule(data: &Coffer, name: &str) -> Result<(), String> {
    let client = data.aws.scheduler(&data.aws.home_region);
    match client.delete_schedule().group_name(SCHEDULE_GROUP).name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) => match AwsError::from_sdk(e, scheduler::NOT_FOUND) {
            AwsError::NotFound => Ok(()),
            e => Err(format!("deleting schedule {name}: {e}")),
        },
    }
}

// -------------------------------------------------------------- read back

/// Reads the document and each rule's schedule. A rule whose schedule is
/// gone is left out of the state (the plan adds it back); a schedule edited
/// outside Terraform shows through the rule's `cron`/`timezone`, `enabled`,
/// `scheduler_role_arn` and `schedules_fingerprint`.
async fn read_policy(
    data: &Coffer,
    name: &str,
    prior: &Value,
    private: &mut Private,
    diags: &mut Diagnostics,
) -> Option<Value> {
    let document = match data.catalog().get::<PolicyDocument>(name).await {
        Ok(document) => document,
        Err(CatalogError::NotFound) => return None,
        Err(e) => {
            diags.error(format!("Reading backup policy {name}"), format!("reading backup policy {name}: {e}"));
            return None;
        }
    };
    private.set(ETAG, Some(&document.etag));
    let mut body = document.body;
    let client = data.aws.scheduler(&data.aws.home_region);
    let mut arns = BTreeMap::new();
    let mut targets = Vec::new();
    let mut role = None;
    let mut dead_letter_queue = None;
    let mut enabled_drift = None;
    let mut rules = Vec::new();
    for mut rule in std::mem::take(&mut body.rules) {
        let schedule_name = schedule_name(&body.name, &rule.name);
        let schedule = match scheduler::find_schedule(&client, SCHEDULE_GROUP, &schedule_name).await {
            Ok(schedule) => schedule,
            Err(AwsError::NotFound) => {
                tracing::info!(schedule = %schedule_name, "schedule gone");
                continue;
            }
            Err(e) => {
                diags.error(
                    format!("Reading backup policy {name}"),
                    format!("reading schedule {schedule_name} of backup policy {name}: {e}"),
                );
                return None;
            }
        };
        let expression = schedule.schedule_expression().unwrap_or_default();
        if cron::to_eventbridge(&rule.cron).ok().as_deref() != Some(expression) {
            rule.cron = cron::from_eventbridge(expression);
        }
        rule.timezone = schedule.schedule_expression_timezone().unwrap_or("UTC").to_string();
        let enabled = schedule.state() == Some(&ScheduleState::Enabled);
        if enabled != body.enabled {
            enabled_drift = Some(enabled);
        }
        let target = schedule.target();
        if role.is_none() {
            role = target.map(|t| t.role_arn().to_string());
        }
        targets.push((
            rule.name.clone(),
            target.map(|t| t.arn().to_string()).unwrap_or_default(),
            target.and_then(|t| t.input()).unwrap_or_default().to_string(),
            retry_description(target.and_then(|t| t.retry_policy())),
        ));
        if dead_letter_queue.is_none() {
            dead_letter_queue = target.and_then(|t| t.dead_letter_config()).and_then(|d| d.arn()).map(str::to_string);
        }
        arns.insert(rule.name.clone(), schedule.arn().unwrap_or_default().to_string());
        rules.push(rule);
    }
    body.rules = rules;
    if let Some(enabled) = enabled_drift {
        body.enabled = enabled;
    }
    let mut state = flatten_policy(&body, prior);
    if let Some(role) = role.or_else(|| body.scheduler_role_arn.clone()).or_else(|| data.scheduler_role_arn.clone()) {
        state.set("scheduler_role_arn", role.as_str());
    }
    state.set("schedule_arns", Value::Map(arns.into_iter().map(|(k, v)| (k, Value::from(v))).collect()));
    state.set(
        "schedules_fingerprint",
        fingerprint(targets.iter().map(|(r, a, i, t)| (r.as_str(), a.as_str(), i.as_str(), t.as_str()))).as_str(),
    );
    state.set("dead_letter_queue_arn", dead_letter_queue.as_deref().map(Value::from).unwrap_or(Value::Null));
    Some(state)
}

// ------------------------------------------------------------- validation

/// An error at `path` whose text starts with the path, as the schema
/// validators' do.
fn error_at(diags: &mut Diagnostics, path: AttributePath, summary: &str, detail: impl Into<String>) {
    let detail = format!("{path}: {}", detail.into());
    diags.attribute_error(path, summary, detail);
}

/// A shape check for a resource id.
type IdCheck = fn(&str) -> Result<(), String>;

/// Static cross-attribute rules, checked at plan time.
fn check(config: &Value, diags: &mut Diagnostics) {
    let policy = config.get("name").as_str();
    // An unknown type is reported by the attribute's own validator.
    let kind: Option<PolicyType> = config.get("type").as_str().and_then(|name| name.parse().ok());
    let source = config.get("source");
    if let Some(kind) = kind {
        let check_id: IdCheck = match kind {
            PolicyType::Rds => validation::db_identifier,
            PolicyType::Ec2 => validation::instance_id,
        };
        let what = kind.as_str();
        for attribute in ["ids", "exclude_ids"] {
            for id in source.get(attribute).strings() {
                if let Err(why) = check_id(&id) {
                    error_at(
                        diags,
                        AttributePath::attr("source").then_attr(attribute),
                        "Invalid value",
                        format!("source.{attribute} (type = {what:?}): {why}"),
                    );
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, rule) in config.get("rule").as_list().iter().enumerate() {
        let path = AttributePath::attr("rule").then_index(i);
        if let Some(rule_name) = rule.get("name").as_str() {
            if !seen.insert(rule_name.to_string()) {
                error_at(
                    diags,
                    path.then_attr("name"),
                    "Duplicate rule name",
                    format!("rule names must be unique in a policy; {rule_name:?} appears more than once."),
                );
            }
            if let Some(policy) = policy {
                let schedule = schedule_name(policy, rule_name);
                if schedule.len() > MAX_SCHEDULE_NAME {
                    error_at(
                        diags,
                        path.then_attr("name"),
                        "Name too long",
                        format!(
                            "the schedule name {schedule:?} is {} characters; EventBridge Scheduler allows {MAX_SCHEDULE_NAME}. Shorten the policy or rule name.",
                            schedule.len()
                        ),
                    );
                }
            }
        }
        let actions = ["snapshot", "replicate", "backup", "archive"];
        if actions.iter().all(|a| rule.get(a).is_null()) {
            error_at(
                diags,
                path.clone(),
                "Rule does nothing",
                "a rule needs at least one of the blocks snapshot, replicate, backup or archive.",
            );
        }
        if !rule.get("replicate").is_null() && rule.get("snapshot").is_null() {
            error_at(
                diags,
                path.then_attr("replicate"),
                "replicate needs snapshot",
                "replicate copies the snapshots this rule takes; add a snapshot block to the rule.",
            );
        }
        for action in actions {
            let retain = rule.get(action).get("retain");
            if rule.get(action).is_null() || !retain.is_wholly_known() {
                continue;
            }
            if retain.get("count").is_null() == retain.get("days").is_null() {
                error_at(
                    diags,
                    path.then_attr(action).then_attr("retain"),
                    "Invalid retain",
                    "takes exactly one of count or days.",
                );
            }
        }
        if kind == Some(PolicyType::Rds) {
            for action in ["backup", "archive"] {
                if !rule.get(action).is_null() {
                    error_at(
                        diags,
                        path.then_attr(action),
                        "Not for RDS",
                        format!(
                            "{action} makes image-level backups of EBS volumes, so it needs type = \"ec2\"; RDS is protected by snapshot and replicate."
                        ),
                    );
                }
            }
        }
    }
}

/// Checks against the catalog and AWS: regions enabled, region mappings
/// that start in a source region, repositories of the right storage class,
/// a worker configuration in the home region, a scheduler role. At plan
/// time a mapping or repository may not exist yet (it is created in the same
/// apply), so only `at_apply` counts its absence as an error.
async fn check_references(
    data: &Coffer,
    config: &Value,
    at_apply: bool,
    judge_workers: bool,
    diags: &mut Diagnostics,
) -> Option<String> {
    let source_regions = config.get("source").get("regions");
    if source_regions.is_wholly_known() {
        let regions: Vec<_> = source_regions
            .strings()
            .into_iter()
            .map(|r| (AttributePath::attr("source").then_attr("regions"), r))
            .collect();
        check_regions_enabled(data, &regions, diags).await;
    }
    let catalog = data.catalog();
    for (i, rule) in config.get("rule").as_list().iter().enumerate() {
        let path = AttributePath::attr("rule").then_index(i);
        let mapping_ids = rule.get("replicate").get("region_mapping_ids");
        if mapping_ids.is_wholly_known() {
            for id in mapping_ids.strings() {
                let at = path.then_attr("replicate").then_attr("region_mapping_ids");
                match catalog.get::<RegionMappingDocument>(&id).await {
                    Ok(mapping) => {
                        // AWS copies an encrypted DB snapshot into another region only with a
                        // key of that region (RDS API reference, CopyDBSnapshot, KmsKeyId).
                        // Whether the databases are encrypted is known only at run time.
                        let rds = config.get("type").as_str() == Some(PolicyType::Rds.as_str());
                        if rds && mapping.body.kms_key_arn.is_none() && !at_apply {
                            let detail = format!(
                                "{at}: region mapping {id:?} has no kms_key_arn. AWS copies an encrypted DB snapshot \
                                 into {} only with a KMS key of that region, so runs will copy unencrypted databases \
                                 and report each encrypted one as a warning. Set kms_key_arn on the mapping.",
                                mapping.body.target_region
                            );
                            diags.attribute_warning(at.clone(), "Encrypted databases will not be replicated", detail);
                        }
                        let from = &mapping.body.source_region;
                        if source_regions.is_wholly_known() && !source_regions.strings().contains(from) {
                            error_at(
                                diags,
                                at,
                                "Region mapping does not start in a source region",
                                format!(
                                    "region mapping {id:?} copies from {from:?}, which is not in source.regions ({}).",
                                    source_regions.strings().join(", ")
                                ),
                            );
                        }
                    }
                    Err(CatalogError::NotFound) if at_apply => error_at(
                        diags,
                        at,
                        "Unknown region mapping",
                        format!("no coffer_region_mapping with id {id:?} exists in the catalog."),
                    ),
                    Err(CatalogError::NotFound) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "reading region mapping {id}; skipping its check")
                    }
                }
            }
        }
        let workers = config.get("worker_configuration_ids");
        let has_workers = !workers.is_wholly_known() || !workers.strings().is_empty();
        for (action, allowed) in [("backup", StorageClass::BACKUP), ("archive", StorageClass::ARCHIVE)] {
            let Some(id) = rule.get(action).get("repository_id").as_str() else {
                continue;
            };
            let at = path.then_attr(action).then_attr("repository_id");
            match catalog.get::<RepositoryEntry>(id).await {
                Ok(entry) if !allowed.contains(&entry.body.storage_class) => error_at(
                    diags,
                    at,
                    "Repository of the wrong storage class",
                    format!(
                        "{action} needs a repository of storage class {}; repository {id:?} ({}) is {}.{}",
                        allowed.iter().map(|class| class.as_str()).collect::<Vec<_>>().join(" or "),
                        entry.body.name,
                        entry.body.storage_class,
                        if action == "backup" { " Use it in archive instead." } else { " Use it in backup instead." }
                    ),
                ),
                // Schedules launch workers, which have no password: a password repository
                // needs its workers' envelope. At plan it may gain one in this apply.
                Ok(entry) if has_workers && judge_workers => match data.executor.workers_can_open(&entry.body).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let detail = format!(
                            "{at}: repository {id:?} ({}) is encrypted with a password and has no \
                             worker_kms_key_arn. Scheduled workers have no password, so every {action} of rule {} \
                             would fail to open it. Set worker_kms_key_arn on the coffer_repository (workers \
                             then open it with that KMS key), or use a KMS-encrypted repository.",
                            entry.body.name,
                            rule.get("name").as_str().unwrap_or_default()
                        );
                        let summary = "Workers cannot open the repository";
                        if at_apply {
                            diags.attribute_error(at, summary, detail);
                        } else {
                            diags.attribute_warning(at, summary, detail);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the config of repository {id}; skipping its check"),
                },
                Ok(_) => {}
                Err(CatalogError::NotFound) if at_apply => error_at(
                    diags,
                    at,
                    "Unknown repository",
                    format!("no coffer_repository with id {id:?} exists in the catalog."),
                ),
                Err(CatalogError::NotFound) => {}
                Err(e) => tracing::warn!(error = %e, "reading repository {id}; skipping its check"),
            }
        }
    }
    let role = config.get("scheduler_role_arn");
    if role.is_null() && data.scheduler_role_arn.is_none() {
        error_at(
            diags,
            AttributePath::attr("scheduler_role_arn"),
            "No scheduler role",
            "the schedules need an IAM role for EventBridge Scheduler to launch workers with: set scheduler_role_arn here or in the provider block (see the coffer_iam_policy data source for its permissions).",
        );
    }
    let ids = config.get("worker_configuration_ids");
    if !ids.is_wholly_known() {
        return None;
    }
    let ids = sorted(ids);
    if judge_workers && source_regions.is_wholly_known() && config.get("rule").is_wholly_known() {
        check_region_workers(data, config, &source_regions.strings(), &ids, diags).await;
    }
    match home_launch_template(data, &ids).await {
        Ok(id) => Some(id),
        Err(why) => {
            error_at(
                diags,
                AttributePath::attr("worker_configuration_ids"),
                "No worker configuration in the home region",
                why,
            );
            None
        }
    }
}

/// Image-level work runs on a worker in the region of the data: an EC2 policy with `backup`
/// or `archive` rules needs a worker configuration in each of its source regions (the home
/// region's is `home_launch_template`'s concern).
async fn check_region_workers(
    data: &Coffer,
    config: &Value,
    regions: &[String],
    ids: &[String],
    diags: &mut Diagnostics,
) {
    let moves_data =
        config.get("rule").as_list().iter().any(|r| !r.get("backup").is_null() || !r.get("archive").is_null());
    if config.get("type").as_str() != Some(PolicyType::Ec2.as_str()) || !moves_data {
        return;
    }
    for region in regions.iter().filter(|r| **r != data.aws.home_region) {
        match ec2::find_launch_template_among(&data.aws.ec2(region), ids).await {
            Ok(_) => {}
            Err(AwsError::NotFound) => error_at(
                diags,
                AttributePath::attr("worker_configuration_ids"),
                "No worker configuration in a source region",
                format!(
                    "source.regions includes {region}, and this policy's backup/archive rules read its volumes on a \
                     worker in {region} (where the data is), but none of worker_configuration_ids is in {region}: add \
                     a coffer_worker_configuration with region = {region:?} to worker_configuration_ids."
                ),
            ),
            Err(e) => tracing::warn!(%region, error = %e, "looking up the worker configurations; skipping the check"),
        }
    }
}

/// The preflight of the policy's workers (`coffer_executor::preflight`):
/// the services its rules use, each worker configuration's instance
/// profile, and the scheduler role's PassRole on the home region's. Checked
/// only once the rules, worker configurations and role are known.
async fn check_workers(data: &Coffer, planned: &Value, stage: Stage, diags: &mut Diagnostics) {
    let known = ["type", "source", "rule", "worker_configuration_ids", "scheduler_role_arn"];
    if !known.iter().all(|a| planned.get(a).is_wholly_known()) {
        return;
    }
    let Some(document) = expand_policy(planned, &mut Diagnostics::default()) else {
        return;
    };
    for worker in coffer_executor::preflight::policy_checks(&data.executor, &document).await {
        // No worker configuration in the home region is check_references' error.
        if worker.worker_configuration_id.is_empty() {
            continue;
        }
        let subject = format!(
            "worker configuration {} ({})",
            worker.worker_configuration_id,
            worker.region.as_deref().unwrap_or("no region")
        );
        preflight::report(diags, stage, &subject, &worker.checks, worker.instance_profile.is_some(), |concern| {
            AttributePath::attr(match concern {
                Concern::SchedulerRole => "scheduler_role_arn",
                _ => "worker_configuration_ids",
            })
        });
    }
}

/// The arguments the references and the workers' preflight depend on: both are judged
/// when one of them changes (and on create).
const JUDGED_WITH: [&str; 4] = ["source", "rule", "worker_configuration_ids", "scheduler_role_arn"];

// --------------------------------------------------------------- resource

pub struct BackupPolicy;

/// What the schedules are written against: the home-region launch template
/// (resolved by `check_references`) and the rules the prior state had.
struct ScheduleWrite<'a> {
    launch_template: &'a str,
    /// The policy's `dead_letter_queue_arn`.
    dead_letter_queue: Option<&'a str>,
    prior_rules: &'a [String],
    removed_rules: &'a [String],
}

async fn write_schedules(
    data: &Coffer,
    planned: &Value,
    document: &PolicyDocument,
    write: ScheduleWrite<'_>,
    private: &mut Private,
    action: &str,
    diags: &mut Diagnostics,
) -> bool {
    let name = &document.name;
    private.set(LAUNCH_TEMPLATE, Some(write.launch_template));
    let Some(role) = scheduler_role(data, planned) else {
        diags.error(
            format!("{action} backup policy {name}"),
            format!("{action} backup policy {name}: no scheduler_role_arn on the policy or the provider."),
        );
        return false;
    };
    if let Err(why) = put_schedules(data, document, &role, &write).await {
        diags.error(format!("{action} backup policy {name}"), format!("{action} backup policy {name}: {why}"));
        return false;
    }
    true
}

#[async_trait]
impl Resource<Coffer> for BackupPolicy {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        check(config, diags);
    }

    async fn create(
        &self,
        data: &Coffer,
        planned: &Value,
        private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let document = expand_policy(planned, diags)?;
        let name = document.name.clone();
        let launch_template = check_references(data, planned, true, true, diags).await;
        if !diags.has_errors() {
            check_workers(data, planned, Stage::Apply, diags).await;
        }
        let launch_template = launch_template.filter(|_| !diags.has_errors())?;
        if let Err(e) = data.catalog().create(&name, &document).await {
            catalog_write_error(diags, "creating", Kind::Policy, &name, e);
            return None;
        }
        tracing::info!(%name, rules = document.rules.len(), "created backup policy document");
        // A failure now leaves the document: return what exists so Terraform
        // keeps it (tainted) and can replace or destroy it.
        let write = ScheduleWrite {
            launch_template: &launch_template,
            dead_letter_queue: planned.get("dead_letter_queue_arn").as_str(),
            prior_rules: &[],
            removed_rules: &[],
        };
        write_schedules(data, planned, &document, write, private, "creating", diags).await;
        read_policy(data, &name, planned, private, diags).await
    }

    async fn read(
        &self,
        data: &Coffer,
        state: &Value,
        private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let name = state.get("name").as_str()?.to_string();
        read_policy(data, &name, state, private, diags).await
    }

    async fn update(
        &self,
        data: &Coffer,
        prior: &Value,
        planned: &Value,
        private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let document = expand_policy(planned, diags)?;
        let name = document.name.clone();
        let Some(etag) = private.get(ETAG).map(str::to_string) else {
            diags.error(
                format!("Updating backup policy {name}"),
                format!("updating backup policy {name}: no record of the document version Terraform last read; run `terraform apply -refresh-only` first."),
            );
            return None;
        };
        // What plan judges only when these change, apply judges only then too: an update of
        // anything else never fails on what the plan did not look at.
        let judge_workers = !JUDGED_WITH.iter().all(|a| planned.get(a).same_as(prior.get(a)));
        let launch_template = check_references(data, planned, true, judge_workers, diags).await;
        if judge_workers && !diags.has_errors() {
            check_workers(data, planned, Stage::Apply, diags).await;
        }
        let launch_template = launch_template.filter(|_| !diags.has_errors())?;
        if let Err(e) = data.catalog().replace(&name, &document, &etag).await {
            catalog_write_error(diags, "updating", Kind::Policy, &name, e);
            return None;
        }
        let kept: Vec<&str> = document.rules.iter().map(|r| r.name.as_str()).collect();
        let prior_rules: Vec<String> =
            prior.get("rule").as_list().iter().filter_map(|r| r.get("name").as_str()).map(str::to_string).collect();
        let removed: Vec<String> = prior_rules.iter().filter(|r| !kept.contains(&r.as_str())).cloned().collect();
        let write = ScheduleWrite {
            launch_template: &launch_template,
            dead_letter_queue: planned.get("dead_letter_queue_arn").as_str(),
            prior_rules: &prior_rules,
            removed_rules: &removed,
        };
        write_schedules(data, planned, &document, write, private, "updating", diags).await;
        read_policy(data, &name, planned, private, diags).await
    }

    async fn delete(&self, data: &Coffer, state: &Value, diags: &mut Diagnostics) {
        let Some(name) = state.get("name").as_str() else {
            return;
        };
        let mut rules: Vec<String> =
            state.get("rule").as_list().iter().filter_map(|r| r.get("name").as_str()).map(str::to_string).collect();
        rules.extend(state.get("schedule_arns").string_map().into_keys());
        rules.sort();
        rules.dedup();
        for rule in rules {
            if let Err(why) = delete_schedule(data, &schedule_name(name, &rule)).await {
                diags.error(format!("Deleting backup policy {name}"), format!("deleting backup policy {name}: {why}"));
                return;
            }
        }
        if let Err(e) = data.catalog().delete(Kind::Policy, name).await {
            diags.error(format!("Deleting backup policy {name}"), format!("deleting backup policy {name}: {e}"));
        }
    }

    fn importer(&self) -> Option<&dyn Import<Coffer>> {
        Some(self)
    }

    fn plan_modifier(&self) -> Option<&dyn ModifyPlan<Coffer>> {
        Some(self)
    }
}

#[async_trait]
impl Import<Coffer> for BackupPolicy {
    async fn import(&self, _data: &Coffer, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        crate::resources::import_by_name(TYPE_NAME, "policy", id, diags)
    }
}

#[async_trait]
impl ModifyPlan<Coffer> for BackupPolicy {
    async fn modify_plan(
        &self,
        data: Option<&Coffer>,
        request: PlanRequest<'_>,
        planned: &mut Value,
        _requires_replace: &mut Vec<AttributePath>,
        diags: &mut Diagnostics,
    ) {
        let name = planned.get("name").as_str().map(str::to_string);
        if let Some(name) = &name {
            planned.set("id", name.as_str());
        }
        let Some(data) = data else { return };
        let config = request.config;
        if config.get("scheduler_role_arn").is_null() {
            let role = data.scheduler_role_arn.as_deref().map(Value::from).unwrap_or(Value::Null);
            planned.set("scheduler_role_arn", role);
        }
        let rules = planned.get("rule");
        let rule_names: Option<Vec<String>> =
            rules.as_list().iter().map(|r| r.get("name").as_str().map(str::to_string)).collect();
        let (Some(name), Some(rule_names)) = (name, rule_names.filter(|_| !rules.is_unknown())) else {
            planned.set("schedule_arns", Value::Unknown);
            planned.set("schedules_fingerprint", Value::Unknown);
            return;
        };
        let arns = rule_names
            .iter()
            .map(|rule| {
                (rule.clone(), Value::from(schedule_arn(&data.aws.home_region, &data.aws.account_id, &name, rule)))
            })
            .collect();
        planned.set("schedule_arns", Value::Map(arns));

        // Look things up only when something they depend on changes; an
        // unchanged policy reuses the launch template resolved at apply.
        let prior = request.prior;
        let unchanged = !prior.is_null()
            && JUDGED_WITH
                .iter()
                // The plan, with defaults filled in, against the prior state.
                .all(|a| planned.get(a).same_as(prior.get(a)));
        let launch_template = match request.prior_private.get(LAUNCH_TEMPLATE) {
            Some(id) if unchanged => Some(id.to_string()),
            _ => {
                let found = check_references(data, config, false, true, diags).await;
                if found.is_some() && !diags.has_errors() {
                    check_workers(data, planned, Stage::Plan, diags).await;
                }
                found
            }
        };
        // Workers of rules that move no data are of the snapshot instance type.
        let snapshot_type = planned.get("snapshot_instance_type");
        if let Some(instance_type) = snapshot_type.as_str()
            && (prior.is_null() || !snapshot_type.same_as(prior.get("snapshot_instance_type")))
        {
            let at = AttributePath::attr("snapshot_instance_type");
            check_architecture(data, &data.aws.home_region, instance_type, at, diags).await;
        }
        // The boot script carries the time limit and the input the instance type: unknown
        // until they are.
        let known = ["max_run_time", "snapshot_instance_type"].iter().all(|a| !planned.get(a).is_unknown());
        let document = if known { expand_policy(planned, &mut Diagnostics::default()) } else { None };
        let fingerprint = match (launch_template, document) {
            (Some(id), Some(document)) => Value::from(expected_fingerprint(data, &id, &document).as_str()),
            _ => Value::Unknown,
        };
        planned.set("schedules_fingerprint", fingerprint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_names_and_arns() {
        assert_eq!(schedule_name("prod", "daily"), "coffer-prod-daily");
        assert_eq!(
            schedule_arn("eu-west-1", "123456789012", "prod", "daily"),
            "arn:aws:scheduler:eu-west-1:123456789012:schedule/coffer/coffer-prod-daily"
        );
        assert!(schedule_arn("cn-north-1", "1", "p", "r").starts_with("arn:aws-cn:"));
    }

    #[test]
    fn only_rules_that_move_no_data_launch_the_snapshot_instance_type() {
        let catalog = CatalogLocation::new(Some("cat"), None, "123456789012", "eu-west-1");
        let mut document = sample();
        document.snapshot_instance_type = Some("t3.small".into());
        let input = |rule: &Rule| -> serde_json::Value {
            let input = run_instances_input(&catalog, "eu-west-1", "lt-0abc", &Launch::of(&document, rule));
            serde_json::from_str(&input).unwrap()
        };
        let mut rule = document.rules[0].clone();
        rule.backup = None;
        rule.archive = None;
        assert_eq!(input(&rule)["InstanceType"], "t3.small");
        rule.backup =
            Some(ToRepository { repository_id: "0123".into(), retain: Retain { count: Some(1), days: None } });
        assert!(input(&rule).get("InstanceType").is_none(), "the template's type for image-level work");
    }

    fn sample() -> PolicyDocument {
        PolicyDocument {
            format_version: 1,
            name: "prod".into(),
            kind: PolicyType::Ec2,
            description: Some("d".into()),
            enabled: true,
            source: Source {
                regions: vec!["us-east-1".into()],
                ids: vec!["i-0123456789abcdef0".into()],
                tags: BTreeMap::from([("Backup".into(), "daily".into())]),
                exclude_ids: vec![],
            },
            rules: vec![Rule {
                name: "daily".into(),
                cron: "0 2 * * *".into(),
                timezone: "UTC".into(),
                snapshot: Some(Keep { retain: Retain { count: Some(7), days: None } }),
                replicate: Some(Replicate {
                    region_mapping_ids: vec!["dr".into()],
                    retain: Retain { count: None, days: Some(3) },
                }),
                backup: None,
                archive: Some(ToRepository {
                    repository_id: "r".into(),
                    retain: Retain { count: None, days: Some(365) },
                }),
            }],
            worker_configuration_ids: vec!["lt-0123456789abcdef0".into()],
            scheduler_role_arn: None,
            tags: BTreeMap::new(),
            max_run_time: Some("6h".into()),
            snapshot_instance_type: Some("t3.micro".into()),
            volumes_per_worker: Some(50),
        }
    }

    #[test]
    fn documents_round_trip_through_state() {
        let document = sample();
        let state = flatten_policy(&document, &Value::Null);
        assert_eq!(expand_policy(&state, &mut Diagnostics::new()), Some(document));
    }
}
