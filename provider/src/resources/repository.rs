//! `coffer_repository`: where image-level backups live. An S3 bucket
//! (created or adopted) and prefix holding a repository whose config object
//! (`<prefix>config`) carries the format version, the repository's UUID and
//! its master key, wrapped by a password (Argon2id) or a KMS key. The
//! catalog gets an entry (`repositories/<id>.json`) so policies and workers
//! find it by id.

use coffer_model::CatalogDocument;
use coffer_model::repository::{Encryption, RepositoryEntry, StorageClass};
use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::types::{
    DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule, Tag, Tagging,
};

use crate::conns::Coffer;
use crate::resources::{check_regions_enabled, expand_enum, tags};
use coffer_aws::AwsError;
use coffer_aws::catalog::{CatalogError, Kind};
use coffer_aws::kms_keys::KmsKeys;
use coffer_aws::s3::{self, Precondition, WriteError};
use coffer_model::validation;
use coffer_repository::KeyService;
use coffer_repository::config::KmsWrappedKey;
use coffer_repository::{
    CONFIG_KEY, FORMAT_VERSION, Immutability, KeyEnvelope, LockMode, MasterKey, OWNED_FOLDERS, RepositoryConfig,
};
use coffer_tfplugin::framework::validators::{IntBetween, Keys, OneOf, string};
use coffer_tfplugin::framework::{
    Attribute, AttributePath, Block, Diagnostics, Import, ModifyPlan, NestedBlock, PlanRequest, Private, Resource,
    Schema, Value,
};
use strum::VariantNames;

pub const TYPE_NAME: &str = "coffer_repository";
const ETAG: &str = "config_etag";
/// S3 allows ten tags per object; the config object carries the tags.
const MAX_OBJECT_TAGS: usize = 10;
const MIN_PASSWORD_LEN: usize = 8;

pub struct Repository;

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Where image-level backups live: a bucket and prefix in S3 holding a deduplicated, compressed, encrypted \
             Coffer repository. Its config object (`<prefix>config`) holds the repository's UUID and its master key, \
             wrapped by a password (Argon2id) or a KMS key.",
        )
        .attribute(Attribute::string("id").computed().use_state_for_unknown().describe("The repository's UUID, stored in its config object."))
        .attribute(
            Attribute::string("name")
                .required()
                .describe("Name of the repository (shown in sessions and restore points). 1-64 letters, digits, `-`, `_`, `.`.")
                .validate(string(validation::coffer_name)),
        )
        .attribute(
            Attribute::string("bucket")
                .required()
                .requires_replace()
                .describe("S3 bucket of the repository.")
                .validate(string(validation::bucket_name)),
        )
        .attribute(
            Attribute::string("prefix")
                .default("")
                .requires_replace()
                .describe("Key prefix of the repository inside the bucket, without leading or trailing `/`. Default empty (the bucket's root).")
                .validate(string(validation::repository_prefix)),
        )
        .attribute(
            Attribute::string("region")
                .optional()
                .computed()
                .requires_replace()
                .use_state_for_unknown()
                .describe("Region of the bucket. Default: the provider's region.")
                .validate(string(validation::region)),
        )
        .attribute(Attribute::bool("create_bucket").default(false).describe(
            "Create the bucket (versioned, encrypted, public access blocked, pruned versions expiring after 7 days and unfinished \
             uploads aborted after 1, with Object Lock when `immutability` is set). Default false: adopt an existing bucket.",
        ))
        .attribute(
            Attribute::string("storage_class")
                .default("STANDARD")
                .requires_replace()
                .describe("Storage class of the repository's data: `STANDARD` (default), `STANDARD_IA`, or `GLACIER` / `DEEP_ARCHIVE`, which make an archive repository (for `archive` rules).")
                .validate(OneOf(StorageClass::VARIANTS)),
        )
        .attribute(Attribute::bool("force_destroy").default(false).describe(
            "On destroy, delete the repository's objects (its restore points) too. Default false: destroy only removes \
             the repository from the catalog and keeps its data.",
        ))
        .attribute(
            Attribute::string_map("tags")
                .optional()
                .describe("Tags of the config object (and of the bucket when Coffer creates it). At most 10 with `default_tags`.")
                .validate(Keys(string(validation::tag_key))),
        )
        .attribute(Attribute::string_map("tags_all").computed().describe("`tags` merged over the provider's `default_tags`."))
        .attribute(Attribute::number("format_version").computed().use_state_for_unknown().describe("Repository format version in the config object."))
        .attribute(Attribute::string("created_at").computed().use_state_for_unknown().describe("When the repository was initialized (RFC 3339, UTC)."))
        .attribute(
            Attribute::string("worker_kms_key_arn")
                .optional()
                .describe(
                    "Password repositories: a KMS key (full ARN) that also wraps the master key, so workers open \
                     the repository without the password (their role needs `kms:Decrypt` on it). Adding, changing \
                     or removing it needs the password in `encryption`. Not for KMS repositories, whose key \
                     workers use already.",
                )
                .validate(string(validation::kms_key_arn)),
        )
        .block(
            NestedBlock::single(
                "encryption",
                Block::new("How the master key is protected: exactly one of `kms_key_arn`, `password` or `password_wo`. Changing the kind replaces the repository.")
                    .attribute(
                        Attribute::string("kms_key_arn")
                            .optional()
                            .describe("KMS key that wraps the master key (GenerateDataKey/Decrypt).")
                            .validate(string(validation::kms_key_arn)),
                    )
                    .attribute(
                        Attribute::string("password")
                            .optional()
                            .sensitive()
                            .describe("Password the master key is wrapped with (Argon2id); at least 8 characters. Stored in state as a sensitive value; prefer `password_wo` on Terraform 1.11+.")
                    )
                    .attribute(
                        Attribute::string("password_wo")
                            .optional()
                            .sensitive()
                            .write_only()
                            .describe("Write-only password (Terraform 1.11+): never stored in plan or state. Bump `password_wo_version` to make Terraform use a new value.")
                    )
                    .attribute(
                        Attribute::number("password_wo_version")
                            .optional()
                            .describe("Any number; changing it makes Terraform apply `password_wo` again.")
                    ),
            )
            .items(1, 1),
        )
        .block(NestedBlock::single(
            "immutability",
            Block::new("S3 Object Lock retention for everything the repository writes. The bucket must have Object Lock (Coffer enables it when it creates the bucket).")
                .attribute(Attribute::number("days").required().describe("Retention in days, 1-36500.").validate(IntBetween(1, 36_500)))
                .attribute(
                    Attribute::string("mode")
                        .required()
                        .describe("`COMPLIANCE` (nobody can shorten it) or `GOVERNANCE` (users with s3:BypassGovernanceRetention can).")
                        .validate(OneOf(LockMode::VARIANTS)),
                ),
        )),
    )
}

// --------------------------------------------------------------- helpers

#[derive(Debug, Clone, PartialEq)]
enum Secret {
    Kms(String),
    Password(String),
}

impl Secret {
    fn kind(&self) -> &'static str {
        match self {
            Secret::Kms(_) => "kms",
            Secret::Password(_) => "password",
        }
    }
}

/// What `encryption` asks for; `password_wo` is in `planned` during apply
/// (the framework copies it from the configuration).
fn secret_of(value: &Value) -> Option<Secret> {
    let e = value.get("encryption");
    if let Some(arn) = e.get("kms_key_arn").as_str() {
        return Some(Secret::Kms(arn.to_string()));
    }
    e.get("password").as_str().or_else(|| e.get("password_wo").as_str()).map(|p| Secret::Password(p.to_string()))
}

/// The kind of encryption a state records: a password cannot be read
/// back, so an encryption block without a KMS key is a password.
fn stored_kind(state: &Value) -> Option<&'static str> {
    match state.get("encryption") {
        Value::Null | Value::Unknown => None,
        e if e.get("kms_key_arn").is_null() => Some("password"),
        _ => Some("kms"),
    }
}

/// The kind of encryption a configuration names, without needing the
/// (possibly write-only) secret.
fn kind_of(value: &Value) -> Option<&'static str> {
    let e = value.get("encryption");
    if !e.get("kms_key_arn").is_null() {
        Some("kms")
    } else if !e.get("password").is_null() || !e.get("password_wo").is_null() || !e.get("password_wo_version").is_null()
    {
        Some("password")
    } else {
        None
    }
}

fn config_key(prefix: &str) -> String {
    format!("{}{CONFIG_KEY}", normalized_prefix(prefix))
}

fn normalized_prefix(prefix: &str) -> String {
    match prefix.trim_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    }
}

fn location(bucket: &str, prefix: &str) -> String {
    format!("s3://{bucket}/{}", normalized_prefix(prefix))
}

/// The `immutability` block, `None` without one; an invalid mode is reported in `diags`.
fn expand_immutability(value: &Value, diags: &mut Diagnostics) -> Option<Immutability> {
    let block = value.get("immutability");
    let days = block.get("days").as_i64()?;
    let mode = expand_enum(block.get("mode"), AttributePath::attr("immutability").then_attr("mode"), None, diags)?;
    Some(Immutability { days, mode })
}

fn s3_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter().filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok()).collect()
}

fn tagging(tags: &BTreeMap<String, String>) -> Result<Tagging, String> {
    Tagging::builder().set_tag_set(Some(s3_tags(tags))).build().map_err(|e| e.to_string())
}

/// Target of a repository's calls: region and names.
struct Place {
    region: String,
    bucket: String,
    prefix: String,
}

impl Place {
    fn of(data: &Coffer, value: &Value) -> Self {
        Self {
            region: value.get("region").as_str().unwrap_or(&data.aws.home_region).to_string(),
            bucket: value.get("bucket").as_str().unwrap_or_default().to_string(),
            prefix: value.get("prefix").as_str().unwrap_or_default().to_string(),
        }
    }

    fn s3(&self, data: &Coffer) -> aws_sdk_s3::Client {
        data.aws.s3(&self.region)
    }

    fn label(&self) -> String {
        location(&self.bucket, &self.prefix)
    }
}

// ------------------------------------------------------------ key wrapping

async fn seal(
    data: &Coffer,
    config: &mut RepositoryConfig,
    master: Option<&MasterKey>,
    secret: &Secret,
) -> Result<(), String> {
    match secret {
        Secret::Password(password) => {
            let fresh;
            let master = match master {
                Some(m) => m,
                None => {
                    fresh = MasterKey::random();
                    &fresh
                }
            };
            config.seal_with_password(master, password).map_err(|e| e.to_string())
        }
        Secret::Kms(arn) => {
            let kms = data.aws.kms(validation::arn_region(arn).unwrap_or(&data.aws.home_region));
            let kms = KmsKeys::new(kms);
            config.key = match master {
                // A new key: KMS makes it and returns it wrapped.
                None => kms.generate(arn, config).await,
                Some(master) => kms.wrap(arn, config, master).await,
            }
            .map_err(|e| e.to_string())?;
            Ok(())
        }
    }
}

/// The workers' envelope of `master`, by the KMS key `arn`.
async fn wrap_for_workers(
    data: &Coffer,
    config: &RepositoryConfig,
    master: &MasterKey,
    arn: &str,
) -> Result<KmsWrappedKey, String> {
    let kms = KmsKeys::new(data.aws.kms(validation::arn_region(arn).unwrap_or(&data.aws.home_region)));
    kms.wrap_for_workers(arn, config, master).await.map_err(|e| format!("wrapping the workers' key: {e}"))
}

/// Unwraps the master key with the given secret.
async fn open(data: &Coffer, config: &RepositoryConfig, secret: &Secret) -> Result<MasterKey, String> {
    match (&config.key, secret) {
        (KeyEnvelope::Password { .. }, Secret::Password(password)) => {
            config.open_with_password(password).map_err(|e| e.to_string())
        }
        (KeyEnvelope::Kms { kms_key_arn, .. }, _) => {
            let kms = data.aws.kms(validation::arn_region(kms_key_arn).unwrap_or(&data.aws.home_region));
            KmsKeys::new(kms).unwrap(config).await.map_err(|e| e.to_string())
        }
        (KeyEnvelope::Password { .. }, Secret::Kms(_)) => {
            Err("the repository is encrypted with a password, not a KMS key".into())
        }
    }
}

// ------------------------------------------------------------------ bucket

async fn prepare_bucket(
    data: &Coffer,
    planned: &Value,
    place: &Place,
    immutability: Option<&Immutability>,
    tags_all: &BTreeMap<String, String>,
) -> Result<(), String> {
    let client = place.s3(data);
    let bucket = &place.bucket;
    if planned.get("create_bucket").as_bool() == Some(true) {
        match s3::find_bucket(&client, bucket).await {
            // Still there from before (the repository is re-created after
            // its config object was deleted): use it as it is.
            Ok(()) => {
                if immutability.is_some() {
                    require_object_lock(&client, bucket).await?;
                }
                return Ok(());
            }
            Err(AwsError::NotFound) => {}
            Err(e) => return Err(format!("checking bucket {bucket}: {e}")),
        }
        s3::create_bucket(&client, bucket, &place.region, immutability.is_some())
            .await
            .map_err(|e| format!("creating bucket {bucket} in {}: {e}", place.region))?;
        s3::harden_bucket(&client, bucket).await.map_err(|e| format!("configuring bucket {bucket}: {e}"))?;
        s3::put_repository_lifecycle(&client, bucket)
            .await
            .map_err(|e| format!("setting the lifecycle of bucket {bucket}: {e}"))?;
        put_bucket_tags(&client, bucket, tags_all).await?;
        if let Some(lock) = immutability {
            put_default_retention(&client, bucket, lock).await?;
        }
        tracing::info!(%bucket, region = %place.region, "created repository bucket");
        return Ok(());
    }
    match s3::find_bucket(&client, bucket).await {
        Ok(()) => {}
        Err(AwsError::NotFound) => {
            return Err(format!(
                "bucket {bucket} does not exist in {}; create it, or set create_bucket = true",
                place.region
            ));
        }
        Err(e) => return Err(format!("checking bucket {bucket}: {e}")),
    }
    if immutability.is_some() {
        require_object_lock(&client, bucket).await?;
    }
    Ok(())
}

async fn require_object_lock(client: &aws_sdk_s3::Client, bucket: &str) -> Result<(), String> {
    let enabled = match client.get_object_lock_configuration().bucket(bucket).send().await {
        Ok(out) => {
            out.object_lock_configuration().and_then(|c| c.object_lock_enabled()) == Some(&ObjectLockEnabled::Enabled)
        }
        Err(e) => match AwsError::from_sdk(e, &["ObjectLockConfigurationNotFoundError"]) {
            AwsError::NotFound => false,
            e => return Err(format!("reading the Object Lock configuration of bucket {bucket}: {e}")),
        },
    };
    if enabled {
        Ok(())
    } else {
        Err(format!(
            "immutability needs S3 Object Lock, and bucket {bucket} does not have it enabled. Enable Object Lock on the bucket \
             (aws s3api put-object-lock-configuration --bucket {bucket} --object-lock-configuration ObjectLockEnabled=Enabled), \
             or let Coffer create a bucket with it (create_bucket = true)"
        ))
    }
}

async fn put_default_retention(client: &aws_sdk_s3::Client, bucket: &str, lock: &Immutability) -> Result<(), String> {
    let retention = DefaultRetention::builder()
        .mode(ObjectLockRetentionMode::from(lock.mode.as_str()))
        .days(lock.days as i32)
        .build();
    client
        .put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(ObjectLockRule::builder().default_retention(retention).build())
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("setting Object Lock retention on bucket {bucket}: {}", AwsError::from_sdk(e, &[])))
}

async fn put_bucket_tags(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    tags_all: &BTreeMap<String, String>,
) -> Result<(), String> {
    if tags_all.is_empty() {
        return client
            .delete_bucket_tagging()
            .bucket(bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("removing the tags of bucket {bucket}: {}", AwsError::from_sdk(e, &[])));
    }
    client
        .put_bucket_tagging()
        .bucket(bucket)
        .tagging(tagging(tags_all)?)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("tagging bucket {bucket}: {}", AwsError::from_sdk(e, &[])))
}

async fn put_config_tags(
    client: &aws_sdk_s3::Client,
    place: &Place,
    tags_all: &BTreeMap<String, String>,
) -> Result<(), String> {
    if tags_all.is_empty() {
        return client
            .delete_object_tagging()
            .bucket(&place.bucket)
            .key(config_key(&place.prefix))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!("removing the tags of the config object of {}: {}", place.label(), AwsError::from_sdk(e, &[]))
            });
    }
    client
        .put_object_tagging()
        .bucket(&place.bucket)
        .key(config_key(&place.prefix))
        .tagging(tagging(tags_all)?)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("tagging the config object of {}: {}", place.label(), AwsError::from_sdk(e, &[])))
}

fn already_initialized(place: &Place) -> String {
    format!(
        "{} already holds a Coffer repository (its config object exists). Import it instead: terraform import coffer_repository.<address> {}",
        place.label(),
        place.label()
    )
}

async fn write_config(
    client: &aws_sdk_s3::Client,
    place: &Place,
    config: &RepositoryConfig,
    precondition: Precondition<'_>,
) -> Result<String, String> {
    let body = serde_json::to_vec_pretty(config).expect("config serializes");
    match s3::put_object(client, &place.bucket, &config_key(&place.prefix), body, "application/json", precondition)
        .await
    {
        Ok(etag) => Ok(etag),
        Err(WriteError::PreconditionFailed) => Err(match precondition {
            Precondition::Absent => already_initialized(place),
            Precondition::Unchanged(_) | Precondition::Any => format!(
                "the config object of {} was changed by someone else since Terraform last read it; run `terraform apply` again",
                place.label()
            ),
        }),
        Err(WriteError::Aws(e)) => Err(format!("writing the config object of {}: {e}", place.label())),
    }
}

// -------------------------------------------------------------- read back

struct Found {
    config: RepositoryConfig,
    etag: String,
    tags: BTreeMap<String, String>,
}

async fn find_repository(data: &Coffer, place: &Place) -> Result<Found, AwsError> {
    let client = place.s3(data);
    s3::find_bucket(&client, &place.bucket).await?;
    let object = s3::find_object(&client, &place.bucket, &config_key(&place.prefix)).await?;
    let config: RepositoryConfig = serde_json::from_slice(&object.body).map_err(|e| {
        AwsError::Api(format!("the config object of {} is not a Coffer repository config: {e}", place.label()))
    })?;
    let tags = client
        .get_object_tagging()
        .bucket(&place.bucket)
        .key(config_key(&place.prefix))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, s3::NOT_FOUND))?
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    Ok(Found { config, etag: object.etag, tags })
}

fn flatten_repository(data: &Coffer, place: &Place, found: &Found, prior: &Value, name: Option<String>) -> Value {
    let config = &found.config;
    let encryption = match &config.key {
        KeyEnvelope::Kms { kms_key_arn, .. } => Value::object([("kms_key_arn", Value::from(kms_key_arn.as_str()))]),
        // Passwords cannot be read back: keep what the state had, if it
        // was a password then.
        KeyEnvelope::Password { .. } => {
            let prior_encryption = prior.get("encryption");
            let mut e = Value::object([("kms_key_arn", Value::Null)]);
            e.set("password", prior_encryption.get("password").clone());
            e.set("password_wo_version", prior_encryption.get("password_wo_version").clone());
            e
        }
    };
    let immutability = match &config.immutability {
        Some(lock) => Value::object([("days", Value::from(lock.days)), ("mode", Value::from(lock.mode.as_str()))]),
        None => Value::Null,
    };
    let prior_own = prior.get("tags").string_map();
    let own = tags::without_defaults(&found.tags, &data.default_tags, &prior_own);
    let own_value = if own.is_empty() && prior.get("tags").is_null() {
        Value::Null
    } else {
        Value::Map(own.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect())
    };
    let flag = |name: &str| prior.get(name).as_bool().unwrap_or(false);
    Value::object([
        ("id", Value::from(config.id.as_str())),
        ("name", name.map(Value::from).unwrap_or_else(|| prior.get("name").clone())),
        ("bucket", Value::from(place.bucket.as_str())),
        ("prefix", Value::from(place.prefix.as_str())),
        ("region", Value::from(place.region.as_str())),
        ("create_bucket", Value::from(flag("create_bucket"))),
        ("storage_class", Value::from(config.storage_class.as_str())),
        ("force_destroy", Value::from(flag("force_destroy"))),
        ("tags", own_value),
        ("tags_all", Value::Map(found.tags.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect())),
        ("format_version", Value::from(i64::from(config.format_version))),
        ("created_at", Value::from(config.created_at.as_str())),
        ("encryption", encryption),
        (
            "worker_kms_key_arn",
            config.worker_key.as_ref().map(|k| Value::from(k.kms_key_arn.as_str())).unwrap_or(Value::Null),
        ),
        ("immutability", immutability),
    ])
}

async fn read_repository(
    data: &Coffer,
    state: &Value,
    private: &mut Private,
    diags: &mut Diagnostics,
) -> Option<Value> {
    let place = Place::of(data, state);
    let found = match find_repository(data, &place).await {
        Ok(found) => found,
        Err(AwsError::NotFound) => return None,
        Err(e) => {
            diags.error(
                format!("Reading repository {}", place.label()),
                format!("reading repository {}: {e}", place.label()),
            );
            return None;
        }
    };
    // Another repository initialized in the same place is not this one.
    if let Some(id) = state.get("id").as_str()
        && id != found.config.id
    {
        tracing::info!(expected = %id, found = %found.config.id, "a different repository lives at {}", place.label());
        return None;
    }
    private.set(ETAG, Some(&found.etag));
    // The catalog entry is what policies find the repository by: a missing
    // one reads as no name, so the plan writes it again.
    let name = match data.catalog().get::<RepositoryEntry>(&found.config.id).await {
        Ok(entry) => Some(entry.body.name),
        Err(CatalogError::NotFound) => None,
        Err(e) => {
            diags.error(
                format!("Reading repository {}", place.label()),
                format!("reading the catalog entry of repository {}: {e}", found.config.id),
            );
            return None;
        }
    };
    let mut state = flatten_repository(data, &place, &found, state, name.clone());
    if name.is_none() {
        state.set("name", Value::Null);
    }
    Some(state)
}

fn expand_entry(planned: &Value, config: &RepositoryConfig, place: &Place) -> RepositoryEntry {
    RepositoryEntry {
        format_version: RepositoryEntry::FORMAT_VERSION,
        id: config.id.clone(),
        name: planned.get("name").as_str().unwrap_or_default().to_string(),
        bucket: place.bucket.clone(),
        prefix: normalized_prefix(&place.prefix),
        region: place.region.clone(),
        storage_class: config.storage_class,
        encryption: config.key.kind(),
    }
}

/// Creates or replaces the catalog entry (entries are keyed by the
/// repository's UUID, so only this resource writes its own).
async fn put_entry(data: &Coffer, entry: &RepositoryEntry) -> Result<(), CatalogError> {
    let catalog = data.catalog();
    match catalog.get::<RepositoryEntry>(&entry.id).await {
        Ok(existing) if existing.body == *entry => Ok(()),
        Ok(existing) => catalog.replace(&entry.id, entry, &existing.etag).await.map(|_| ()),
        Err(CatalogError::NotFound) => catalog.create(&entry.id, entry).await.map(|_| ()),
        Err(e) => Err(e),
    }
}

// ------------------------------------------------------------- validation

fn check(config: &Value, diags: &mut Diagnostics) {
    let e = config.get("encryption");
    if e.is_null() || !e.is_wholly_known() {
        return;
    }
    let set: Vec<&str> =
        ["kms_key_arn", "password", "password_wo"].into_iter().filter(|a| !e.get(a).is_null()).collect();
    if set.len() != 1 {
        diags.attribute_error(
            AttributePath::attr("encryption"),
            "Invalid encryption",
            format!(
                "encryption takes exactly one of kms_key_arn, password or password_wo; {}.",
                if set.is_empty() { "none is set".to_string() } else { format!("{} are set", set.join(" and ")) }
            ),
        );
    }
    for attribute in ["password", "password_wo"] {
        if let Some(p) = e.get(attribute).as_str()
            && p.chars().count() < MIN_PASSWORD_LEN
        {
            diags.attribute_error(
                AttributePath::attr("encryption").then_attr(attribute),
                "Password too short",
                format!("encryption.{attribute} must have at least {MIN_PASSWORD_LEN} characters."),
            );
        }
    }
    if !config.get("worker_kms_key_arn").is_null() && !e.get("kms_key_arn").is_null() {
        diags.attribute_error(
            AttributePath::attr("worker_kms_key_arn"),
            "worker_kms_key_arn on a KMS repository",
            "worker_kms_key_arn is for password repositories; workers open a KMS repository with encryption.kms_key_arn (grant their role kms:Decrypt on it) — remove worker_kms_key_arn.",
        );
    }
    if !e.get("password_wo_version").is_null() && e.get("password_wo").is_null() && set.len() == 1 {
        diags.attribute_error(
            AttributePath::attr("encryption").then_attr("password_wo_version"),
            "password_wo_version without password_wo",
            "password_wo_version only tells Terraform when to apply password_wo; set password_wo too, or remove it.",
        );
    }
}

fn tags_all_of(data: &Coffer, planned: &Value) -> BTreeMap<String, String> {
    tags::merge(&data.default_tags, &planned.get("tags").string_map())
}

// --------------------------------------------------------------- resource

#[async_trait]
impl Resource<Coffer> for Repository {
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
        let place = Place::of(data, planned);
        let label = place.label();
        let fail = |diags: &mut Diagnostics, why: String| {
            diags.error(format!("Creating repository {label}"), format!("creating repository {label}: {why}"))
        };
        let Some(secret) = secret_of(planned) else {
            fail(diags, "no encryption.kms_key_arn, password or password_wo".into());
            return None;
        };
        let storage_class = expand_enum(
            planned.get("storage_class"),
            AttributePath::attr("storage_class"),
            Some(StorageClass::default()),
            diags,
        )?;
        let immutability = expand_immutability(planned, diags);
        if diags.has_errors() {
            return None;
        }
        let tags_all = tags_all_of(data, planned);
        if let Err(why) = prepare_bucket(data, planned, &place, immutability.as_ref(), &tags_all).await {
            fail(diags, why);
            return None;
        }
        let client = place.s3(data);
        // Refuse early (before the KMS call) when a repository is there.
        if s3::find_object(&client, &place.bucket, &config_key(&place.prefix)).await.is_ok() {
            fail(diags, already_initialized(&place));
            return None;
        }
        let mut config = RepositoryConfig {
            format_version: FORMAT_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            storage_class,
            immutability,
            key: KeyEnvelope::Kms { kms_key_arn: String::new(), wrapped_master_key: String::new() },
            worker_key: None,
        };
        // A password repository's master key is made here, so the workers' envelope can wrap it.
        let master = matches!(secret, Secret::Password(_)).then(MasterKey::random);
        if let Err(why) = seal(data, &mut config, master.as_ref(), &secret).await {
            fail(diags, why);
            return None;
        }
        if let (Some(master), Some(arn)) = (&master, planned.get("worker_kms_key_arn").as_str()) {
            match wrap_for_workers(data, &config, master, arn).await {
                Ok(envelope) => config.worker_key = Some(envelope),
                Err(why) => {
                    fail(diags, why);
                    return None;
                }
            }
        }
        if let Err(why) = write_config(&client, &place, &config, Precondition::Absent).await {
            fail(diags, why);
            return None;
        }
        tracing::info!(id = %config.id, location = %label, kind = secret.kind(), "initialized repository");
        let mut problems = Vec::new();
        if let Err(why) = put_config_tags(&client, &place, &tags_all).await {
            problems.push(why);
        }
        if let Err(e) = put_entry(data, &expand_entry(planned, &config, &place)).await {
            problems.push(format!("recording it in the catalog: {e}"));
        }
        for why in problems {
            fail(diags, why);
        }
        let mut seed = planned.clone();
        seed.set("id", config.id.as_str());
        match read_repository(data, &seed, private, diags).await {
            Some(mut state) => {
                carry_arguments(&mut state, planned);
                Some(state)
            }
            None => Some(seed.unknowns_to_null()),
        }
    }

    async fn read(
        &self,
        data: &Coffer,
        state: &Value,
        private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        read_repository(data, state, private, diags).await
    }

    async fn update(
        &self,
        data: &Coffer,
        prior: &Value,
        planned: &Value,
        private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let place = Place::of(data, prior);
        let label = place.label();
        let fail = |diags: &mut Diagnostics, why: String| {
            diags.error(format!("Updating repository {label}"), format!("updating repository {label}: {why}"))
        };
        let mut found = match find_repository(data, &place).await {
            Ok(found) => found,
            Err(e) => {
                fail(diags, format!("reading its config object: {e}"));
                return None;
            }
        };
        let client = place.s3(data);
        let mut config = found.config.clone();

        // Encryption: a new secret of the same kind re-wraps the master key
        // (opened with the old one); a secret the state does not know
        // (after import, or write-only) must open the repository as it is.
        // A write-only password is applied only when its version changes,
        // as Terraform intends: otherwise it is not even compared.
        let wo_unchanged = planned.get("encryption").get("password").is_null()
            && planned.get("encryption").get("kms_key_arn").is_null()
            && planned
                .get("encryption")
                .get("password_wo_version")
                .same_as(prior.get("encryption").get("password_wo_version"));
        let new_secret = if wo_unchanged { None } else { secret_of(planned) };
        let old_secret = secret_of(prior);
        if let Some(new_secret) = &new_secret
            && old_secret.as_ref() != Some(new_secret)
        {
            match open(data, &config, new_secret).await {
                Ok(_) if matches!(new_secret, Secret::Password(_)) => {}
                _ => {
                    let master = match &old_secret {
                        Some(old) => open(data, &config, old).await,
                        None => Err("Terraform has no record of the previous password".into()),
                    };
                    let master = match master {
                        Ok(master) => master,
                        Err(why) => {
                            fail(
                                diags,
                                format!(
                                    "the new encryption settings do not open the repository, and the previous ones cannot be used to re-wrap its key ({why}); nothing was changed"
                                ),
                            );
                            return None;
                        }
                    };
                    if let Err(why) = seal(data, &mut config, Some(&master), new_secret).await {
                        fail(diags, why);
                        return None;
                    }
                }
            }
        }
        // The workers' envelope follows worker_kms_key_arn; making one needs the master key,
        // opened with the password the configuration has now.
        let wanted = planned.get("worker_kms_key_arn").as_str();
        if wanted != config.worker_key.as_ref().map(|k| k.kms_key_arn.as_str()) {
            config.worker_key = match wanted {
                None => None,
                Some(arn) => {
                    let master = match secret_of(planned) {
                        Some(secret @ Secret::Password(_)) => open(data, &config, &secret).await,
                        _ => Err("worker_kms_key_arn needs the repository's password in encryption".to_string()),
                    };
                    match master {
                        Ok(master) => match wrap_for_workers(data, &config, &master, arn).await {
                            Ok(envelope) => Some(envelope),
                            Err(why) => {
                                fail(diags, format!("{why}; nothing was changed"));
                                return None;
                            }
                        },
                        Err(why) => {
                            fail(diags, format!("adding the workers' key {arn}: {why}; nothing was changed"));
                            return None;
                        }
                    }
                }
            };
        }
        let immutability = expand_immutability(planned, diags);
        if diags.has_errors() {
            return None;
        }
        if immutability != config.immutability {
            if let Some(lock) = &immutability {
                let result = if planned.get("create_bucket").as_bool() == Some(true) {
                    put_default_retention(&client, &place.bucket, lock).await
                } else {
                    require_object_lock(&client, &place.bucket).await
                };
                if let Err(why) = result {
                    fail(diags, why);
                    return None;
                }
            }
            config.immutability = immutability;
        }
        if config != found.config {
            let etag = private.get(ETAG).unwrap_or(&found.etag).to_string();
            match write_config(&client, &place, &config, Precondition::Unchanged(&etag)).await {
                Ok(etag) => found.etag = etag,
                Err(why) => {
                    fail(diags, why);
                    return None;
                }
            }
        }
        let tags_all = tags_all_of(data, planned);
        if tags_all != found.tags || config != found.config {
            // A new config version starts without tags.
            if let Err(why) = put_config_tags(&client, &place, &tags_all).await {
                fail(diags, why);
            }
            if planned.get("create_bucket").as_bool() == Some(true)
                && let Err(why) = put_bucket_tags(&client, &place.bucket, &tags_all).await
            {
                fail(diags, why);
            }
        }
        if let Err(e) = put_entry(data, &expand_entry(planned, &config, &place)).await {
            fail(diags, format!("recording it in the catalog: {e}"));
        }
        let mut state = read_repository(data, planned, private, diags).await?;
        carry_arguments(&mut state, planned);
        Some(state)
    }

    async fn delete(&self, data: &Coffer, state: &Value, diags: &mut Diagnostics) {
        let place = Place::of(data, state);
        let label = place.label();
        let id = state.get("id").as_str().unwrap_or_default().to_string();
        if state.get("force_destroy").as_bool() == Some(true) {
            let client = place.s3(data);
            let prefix = normalized_prefix(&place.prefix);
            let mut versions = Vec::new();
            for owned in OWNED_FOLDERS.iter().copied().chain([CONFIG_KEY]) {
                match s3::list_versions(&client, &place.bucket, &format!("{prefix}{owned}")).await {
                    Ok(found) => versions.extend(
                        found
                            .into_iter()
                            .filter(|(key, _)| owned != CONFIG_KEY || key == &format!("{prefix}{CONFIG_KEY}")),
                    ),
                    Err(AwsError::NotFound) => {}
                    Err(e) => {
                        diags.error(
                            format!("Deleting repository {label}"),
                            format!("listing the objects of repository {label}: {e}"),
                        );
                        return;
                    }
                }
            }
            let refused = s3::delete_versions(&client, &place.bucket, &versions).await;
            if let Some((key, why)) = refused.first() {
                diags.error(
                    format!("Deleting repository {label}"),
                    format!(
                        "deleting repository {label}: S3 refused to delete {} of {} object versions (first: {key}: {why}). \
                         Object Lock keeps them until their retention ends; the repository stays in state.",
                        refused.len(),
                        versions.len()
                    ),
                );
                return;
            }
            if state.get("create_bucket").as_bool() == Some(true)
                && let Err(e) = client.delete_bucket().bucket(&place.bucket).send().await
            {
                diags.warning(
                    format!("Bucket {} kept", place.bucket),
                    format!(
                        "the repository's objects are deleted, but bucket {} could not be: {}",
                        place.bucket,
                        AwsError::from_sdk(e, &[])
                    ),
                );
            }
            tracing::info!(%id, location = %label, objects = versions.len(), "deleted repository data");
        }
        if !id.is_empty()
            && let Err(e) = data.catalog().delete(Kind::Repository, &id).await
        {
            diags.error(
                format!("Deleting repository {label}"),
                format!("removing repository {id} from the catalog: {e}"),
            );
        }
    }

    fn importer(&self) -> Option<&dyn Import<Coffer>> {
        Some(self)
    }

    fn plan_modifier(&self) -> Option<&dyn ModifyPlan<Coffer>> {
        Some(self)
    }
}

/// Arguments that have no remote counterpart come from the plan.
fn carry_arguments(state: &mut Value, planned: &Value) {
    for name in ["create_bucket", "force_destroy", "name"] {
        state.set(name, planned.get(name).clone());
    }
    let planned_encryption = planned.get("encryption");
    if state.get("encryption").get("kms_key_arn").is_null() {
        let mut e = state.get("encryption").clone();
        e.set("password", planned_encryption.get("password").clone());
        e.set("password_wo_version", planned_encryption.get("password_wo_version").clone());
        state.set("encryption", e);
    }
}

#[async_trait]
impl Import<Coffer> for Repository {
    async fn import(&self, data: &Coffer, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        if let Some(rest) = id.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if let Err(why) = validation::bucket_name(bucket) {
                diags.error("Invalid import id", format!("importing {TYPE_NAME} {id:?}: {why}"));
                return None;
            }
            let region = match bucket_region(data, bucket).await {
                Ok(region) => region,
                Err(why) => {
                    diags.error("Cannot import repository", format!("importing {TYPE_NAME} {id:?}: {why}"));
                    return None;
                }
            };
            return Some(Value::object([
                ("bucket", Value::from(bucket)),
                ("prefix", Value::from(normalized_prefix(prefix).trim_end_matches('/'))),
                ("region", Value::from(region.as_str())),
            ]));
        }
        if uuid::Uuid::parse_str(id).is_err() {
            diags.error(
                "Invalid import id",
                format!("importing {TYPE_NAME}: {id:?} is neither a repository id (a UUID) nor a location s3://<bucket>/<prefix>."),
            );
            return None;
        }
        match data.catalog().get::<RepositoryEntry>(id).await {
            Ok(entry) => Some(Value::object([
                ("id", Value::from(id)),
                ("name", Value::from(entry.body.name.as_str())),
                ("bucket", Value::from(entry.body.bucket.as_str())),
                ("prefix", Value::from(entry.body.prefix.trim_end_matches('/'))),
                ("region", Value::from(entry.body.region.as_str())),
            ])),
            Err(CatalogError::NotFound) => {
                diags.error(
                    "Cannot import repository",
                    format!("importing {TYPE_NAME}: no repository with id {id} is in the catalog; import it by location instead: s3://<bucket>/<prefix>."),
                );
                None
            }
            Err(e) => {
                diags.error("Cannot import repository", format!("importing {TYPE_NAME} {id}: {e}"));
                None
            }
        }
    }
}

async fn bucket_region(data: &Coffer, bucket: &str) -> Result<String, String> {
    let client = data.aws.s3(&data.aws.home_region);
    let out = client.get_bucket_location().bucket(bucket).send().await.map_err(|e| {
        match AwsError::from_sdk(e, s3::NOT_FOUND) {
            AwsError::NotFound => format!("bucket {bucket} does not exist"),
            e => format!("finding the region of bucket {bucket}: {e}"),
        }
    })?;
    // S3 reports us-east-1 as no constraint at all.
    Ok(out
        .location_constraint()
        .map(|c| c.as_str().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "us-east-1".to_string()))
}

#[async_trait]
impl ModifyPlan<Coffer> for Repository {
    async fn modify_plan(
        &self,
        data: Option<&Coffer>,
        request: PlanRequest<'_>,
        planned: &mut Value,
        requires_replace: &mut Vec<AttributePath>,
        diags: &mut Diagnostics,
    ) {
        let (prior, config) = (request.prior, request.config);
        if prior.is_null() && config.get("region").is_null() {
            let home = data.map(|d| Value::from(d.aws.home_region.as_str())).unwrap_or(Value::Unknown);
            planned.set("region", home);
        }
        if !prior.is_null() && stored_kind(prior) != kind_of(config) && kind_of(config).is_some() {
            requires_replace.push(AttributePath::attr("encryption"));
            for computed in ["id", "format_version", "created_at"] {
                planned.set(computed, Value::Unknown);
            }
        }
        let Some(data) = data else { return };
        let own = planned.get("tags");
        if own.is_wholly_known() {
            let all = tags::merge(&data.default_tags, &own.string_map());
            if all.len() > MAX_OBJECT_TAGS {
                diags.attribute_error(
                    AttributePath::attr("tags"),
                    "Too many tags",
                    format!("S3 objects take at most {MAX_OBJECT_TAGS} tags; tags with the provider's default_tags make {}.", all.len()),
                );
            }
            planned.set("tags_all", Value::Map(all.into_iter().map(|(k, v)| (k, Value::from(v))).collect()));
        } else {
            planned.set("tags_all", Value::Unknown);
        }
        if (prior.is_null() || !config.get("region").same_as(prior.get("region")))
            && let Some(region) = config.get("region").as_str()
        {
            check_regions_enabled(data, &[(AttributePath::attr("region"), region.to_string())], diags).await;
        }
        verify_unrecorded_password(data, &request, diags).await;
    }
}

/// After an import, or when a write-only password is (re)applied, the
/// configured password must open the repository: say so at plan time, before
/// anything changes.
async fn verify_unrecorded_password(data: &Coffer, request: &PlanRequest<'_>, diags: &mut Diagnostics) {
    let (prior, config) = (request.prior, request.config);
    if prior.is_null() || prior.get("id").is_null() {
        return;
    }
    let (pe, ce) = (prior.get("encryption"), config.get("encryption"));
    let unrecorded_password =
        !ce.get("password").is_null() && pe.get("password").is_null() && pe.get("password_wo_version").is_null();
    // With the previous password in state, apply re-wraps the key instead.
    let reapplied_wo = !ce.get("password_wo").is_null()
        && !ce.get("password_wo_version").same_as(pe.get("password_wo_version"))
        && pe.get("password").is_null();
    if !unrecorded_password && !reapplied_wo {
        return;
    }
    let Some(Secret::Password(password)) = secret_of(config).filter(|_| ce.is_wholly_known()) else { return };
    let place = Place::of(data, prior);
    let Ok(found) = find_repository(data, &place).await else { return };
    if found.config.key.kind() != Encryption::Password {
        return;
    }
    let attribute = if ce.get("password").is_null() { "password_wo" } else { "password" };
    // Argon2id takes a moment: keep it off the async workers.
    let config_object = found.config.clone();
    let opened = tokio::task::spawn_blocking(move || config_object.open_with_password(&password)).await;
    if let Ok(Err(e)) = opened {
        diags.attribute_error(
            AttributePath::attr("encryption").then_attr(attribute),
            "Wrong repository password",
            format!(
                "encryption.{attribute} does not open repository {} ({e}). Set the password it was created with; nothing was changed.",
                place.label()
            ),
        );
    }
}
