//! `coffer_worker_configuration`: an EC2 launch template that boots a
//! data-moving worker. The worker fetches the `coffer` binary from the
//! catalog, runs the task its launch's user data names, and terminates
//! itself. Applying one publishes the provider's worker build to the catalog.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateInstanceMetadataTagsState,
    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest, LaunchTemplateTagSpecificationRequest,
    RequestLaunchTemplateData, ResourceType, ShutdownBehavior, Tag, TagSpecification,
};
use base64::Engine;

use crate::conns::Coffer;
use crate::resources::preflight::{self, Stage};
use crate::resources::tags;
use coffer_aws::ec2::{LAUNCH_TEMPLATE_NOT_FOUND, LaunchTemplateWithData, find_launch_template_by_id};
use coffer_aws::preflight::{Concern, Placement, Service, placement_checks};
use coffer_aws::{AwsError, ssm};
use coffer_model::CatalogLocation;
use coffer_model::validation;
use coffer_model::worker_binary::WorkerArch;
use coffer_tfplugin::framework::validators::{Each, Keys, string};
use coffer_tfplugin::framework::{
    Attribute, AttributePath, Block, Diagnostics, Import, ModifyPlan, PlanRequest, Private, Resource, Schema, Value,
};

pub const TYPE_NAME: &str = "coffer_worker_configuration";
/// Launch templates are named `coffer-<name>`.
const NAME_PREFIX: &str = "coffer-";
const DEFAULT_INSTANCE_TYPE: &str = "c5.large";

pub struct WorkerConfiguration;

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Where data-moving workers run: an EC2 launch template (named `coffer-<name>`) that boots a worker, \
             which fetches the `coffer` binary from the catalog, runs the task it was launched for and terminates itself.",
        )
        .attribute(
            Attribute::string("name")
                .required()
                .requires_replace()
                .describe("Name of the worker configuration; the launch template is `coffer-<name>`. 1-64 letters, digits, `-`, `_`, `.`.")
                .validate(string(validation::coffer_name)),
        )
        .attribute(
            Attribute::string("region")
                .optional()
                .computed()
                .requires_replace()
                .use_state_for_unknown()
                .describe("Region the workers run in. Default: the provider's region.")
                .validate(string(validation::region)),
        )
        .attribute(
            Attribute::string("subnet_id")
                .optional()
                .computed()
                .use_state_for_unknown()
                .describe("Subnet the workers start in. Default: a default-VPC subnet in an availability zone that offers `instance_type`.")
                .validate(string(validation::subnet_id)),
        )
        .attribute(
            Attribute::string_set("security_group_ids")
                .optional()
                .describe("Security groups of the workers' network interface. Default: the VPC's default group.")
                .validate(Each(string(validation::security_group_id))),
        )
        .attribute(
            Attribute::string("instance_type")
                .default(DEFAULT_INSTANCE_TYPE)
                .describe("EC2 instance type of the workers of rules with `backup` or `archive` (snapshot-only rules launch their policy's `snapshot_instance_type`), of x86_64 processors (arm64 types are refused at plan until an arm64 worker build exists). Default `c5.large`.")
                .validate(string(validation::instance_type)),
        )
        .attribute(
            Attribute::string("ami_id")
                .optional()
                .computed()
                .use_state_for_unknown()
                .describe("AMI the workers boot. Default: the latest Amazon Linux 2023 (x86_64) for the region, resolved when created.")
                .validate(string(validation::ami_id)),
        )
        .attribute(
            Attribute::string("instance_profile")
                .optional()
                .describe("IAM instance profile (name or ARN) giving workers their permissions; see the `coffer_iam_policy` data source.")
                .validate(string(validation::instance_profile)),
        )
        .attribute(
            Attribute::bool("associate_public_ip")
                .default(true)
                .describe("Give workers a public IP address (needed in public subnets without a NAT gateway). Default true."),
        )
        .attribute(
            Attribute::string_map("tags")
                .optional()
                .describe("Tags of the launch template and of the workers and volumes it launches. Workers read their tags from instance metadata, so keys may not contain spaces or `/`.")
                .validate(Keys(string(validation::instance_tag_key))),
        )
        .attribute(
            Attribute::string_map("tags_all")
                .computed()
                .describe("`tags` merged with the provider's `default_tags`."),
        )
        .attribute(
            Attribute::string("id")
                .computed()
                .use_state_for_unknown()
                .describe("Launch template id."),
        )
        .attribute(
            Attribute::string("template_fingerprint")
                .computed()
                .describe(
                    "SHA-256 of the launch template settings Coffer manages that have no argument of their own: \
                     the worker boot script (which names the catalog), IMDSv2 and instance-tag metadata, \
                     shutdown behaviour `terminate`, and the worker and volume tags. An out-of-band change to \
                     any of them shows in `terraform plan` as a change of this value.",
                ),
        )
        .attribute(
            Attribute::number("launch_template_version")
                .computed()
                .describe("The launch template's default version, which workers are launched from."),
        )
        .attribute(
            Attribute::string(WORKER_BINARY_SHA256)
                .computed()
                .describe(
                    "SHA-256 of the `coffer` build workers fetch from the catalog (`bin/coffer-linux-x86_64`); null \
                     while none is published. When the provider has a worker build (its `worker_binary`, or the one \
                     shipped beside it), creating or updating this resource publishes that build first, uploading \
                     only when the catalog holds another; a build replaced out of band shows in `terraform plan` \
                     as a change of this value, and apply puts the provider's back.",
                ),
        ),
    )
}

const WORKER_BINARY_SHA256: &str = "worker_binary_sha256";

/// What the configuration asks for, resolved (defaults looked up).
struct Desired {
    name: String,
    region: String,
    subnet_id: String,
    security_group_ids: Vec<String>,
    instance_type: String,
    ami_id: String,
    instance_profile: Option<String>,
    associate_public_ip: bool,
    tags_all: BTreeMap<String, String>,
}

impl Desired {
    fn placement(&self) -> Placement {
        Placement {
            region: self.region.clone(),
            subnet_id: Some(self.subnet_id.clone()),
            public_ip: self.associate_public_ip,
            instance_profile: self.instance_profile.clone(),
        }
    }

    fn launch_template_name(&self) -> String {
        format!("{NAME_PREFIX}{}", self.name)
    }

    fn template_data(&self, catalog: &CatalogLocation, home_region: &str) -> RequestLaunchTemplateData {
        let interface = LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
            .device_index(0)
            .subnet_id(&self.subnet_id)
            .set_groups((!self.security_group_ids.is_empty()).then(|| self.security_group_ids.clone()))
            .associate_public_ip_address(self.associate_public_ip)
            .delete_on_termination(true)
            .build();
        let profile = self.instance_profile.as_ref().map(|p| {
            let builder = LaunchTemplateIamInstanceProfileSpecificationRequest::builder();
            if p.starts_with("arn:") { builder.arn(p) } else { builder.name(p) }.build()
        });
        let worker_tags = worker_tags(&self.name, &self.tags_all);
        let tag_specifications = WORKER_TAGGED.map(|kind| {
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(kind)
                .set_tags(Some(ec2_tags(&worker_tags)))
                .build()
        });
        RequestLaunchTemplateData::builder()
            .image_id(&self.ami_id)
            .instance_type(InstanceType::from(self.instance_type.as_str()))
            .network_interfaces(interface)
            .set_iam_instance_profile(profile)
            .instance_initiated_shutdown_behavior(SHUTDOWN_BEHAVIOR)
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(HTTP_TOKENS)
                    .instance_metadata_tags(METADATA_TAGS)
                    .build(),
            )
            .set_tag_specifications(Some(tag_specifications.to_vec()))
            .user_data(encoded_user_data(catalog, home_region))
            .build()
    }
}

/// Workers terminate themselves when their task is done.
const SHUTDOWN_BEHAVIOR: ShutdownBehavior = ShutdownBehavior::Terminate;
/// IMDSv2 only.
const HTTP_TOKENS: LaunchTemplateHttpTokensState = LaunchTemplateHttpTokensState::Required;
/// Workers read their task from the `coffer:task` tag through instance metadata.
const METADATA_TAGS: LaunchTemplateInstanceMetadataTagsState = LaunchTemplateInstanceMetadataTagsState::Enabled;
/// What the template tags at launch.
const WORKER_TAGGED: [ResourceType; 2] = [ResourceType::Instance, ResourceType::Volume];

fn encoded_user_data(catalog: &CatalogLocation, home_region: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(coffer_model::worker::user_data(catalog, home_region))
}

/// Tags of workers and their volumes: `tags_all` and the configuration's
/// name, less keys instance metadata cannot carry (possible only through the
/// provider's `default_tags`; the resource's own tags are validated).
fn worker_tags(name: &str, tags_all: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = tags_all
        .iter()
        .filter(|(k, _)| validation::instance_tag_key(k).is_ok())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tags.insert("coffer:worker-configuration".to_string(), name.to_string());
    tags
}

/// The launch template settings Coffer manages that have no argument of
/// their own, in a canonical form that both what we send and what EC2
/// returns map to, so a fingerprint of it detects out-of-band edits.
#[derive(Debug, PartialEq, serde::Serialize)]
struct ManagedSettings {
    user_data: Option<String>,
    shutdown_behavior: Option<String>,
    http_tokens: Option<String>,
    instance_metadata_tags: Option<String>,
    delete_on_termination: Option<bool>,
    tag_specifications: BTreeMap<String, BTreeMap<String, String>>,
}

impl ManagedSettings {
    fn expected(name: &str, tags_all: &BTreeMap<String, String>, catalog: &CatalogLocation, home_region: &str) -> Self {
        let tags = worker_tags(name, tags_all);
        Self {
            user_data: Some(encoded_user_data(catalog, home_region)),
            shutdown_behavior: Some(SHUTDOWN_BEHAVIOR.as_str().to_string()),
            http_tokens: Some(HTTP_TOKENS.as_str().to_string()),
            instance_metadata_tags: Some(METADATA_TAGS.as_str().to_string()),
            delete_on_termination: Some(true),
            tag_specifications: WORKER_TAGGED.iter().map(|kind| (kind.as_str().to_string(), tags.clone())).collect(),
        }
    }

    fn found(data: &aws_sdk_ec2::types::ResponseLaunchTemplateData) -> Self {
        let metadata = data.metadata_options();
        Self {
            user_data: data.user_data().map(str::to_string),
            shutdown_behavior: data.instance_initiated_shutdown_behavior().map(|b| b.as_str().to_string()),
            http_tokens: metadata.and_then(|m| m.http_tokens()).map(|t| t.as_str().to_string()),
            instance_metadata_tags: metadata.and_then(|m| m.instance_metadata_tags()).map(|t| t.as_str().to_string()),
            delete_on_termination: data.network_interfaces().first().and_then(|i| i.delete_on_termination()),
            // Only the kinds Coffer tags at launch: other tag specifications
            // are not ours to manage.
            tag_specifications: data
                .tag_specifications()
                .iter()
                .filter(|spec| spec.resource_type().is_some_and(|kind| WORKER_TAGGED.contains(kind)))
                .map(|spec| {
                    let kind = spec.resource_type().map(|k| k.as_str().to_string()).unwrap_or_default();
                    let tags = spec
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                        .collect();
                    (kind, tags)
                })
                .collect(),
        }
    }

    fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_vec(self).expect("settings serialize");
        Sha256::digest(&canonical).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Defaults Coffer resolved (not written in the configuration), kept in
/// private state so that an out-of-band change to them is planned back
/// instead of silently taken into state. Same order as in `remember_defaults`.
const REMEMBERED_DEFAULTS: [&str; 2] = ["ami_id", "subnet_id"];

/// Records the defaults just resolved: a value planned as unknown was
/// resolved here; a known one that differs from what was remembered came
/// from the configuration, and the memory of the old default is dropped.
fn remember_defaults(private: &mut Private, planned: &Value, desired: &Desired) {
    let resolved = [desired.ami_id.as_str(), desired.subnet_id.as_str()];
    for (attribute, resolved) in REMEMBERED_DEFAULTS.into_iter().zip(resolved) {
        match planned.get(attribute) {
            Value::Unknown => private.set(attribute, Some(resolved)),
            planned_value if planned_value.as_str() != private.get(attribute) => private.set(attribute, None),
            _ => {}
        }
    }
}

/// How many versions of a template updates keep (EC2 allows 10,000).
const VERSIONS_KEPT: i64 = 5;

/// Each update deletes the version that falls out of the window of the
/// newest [`VERSIONS_KEPT`], so versions do not pile up. Best effort: a
/// failure is logged, the update stands.
async fn prune_old_version(ec2: &aws_sdk_ec2::Client, id: &str, newest: i64) {
    let stale = newest - VERSIONS_KEPT;
    if stale < 1 {
        return;
    }
    match ec2.delete_launch_template_versions().launch_template_id(id).versions(stale.to_string()).send().await {
        Ok(out) => {
            for failed in out.unsuccessfully_deleted_launch_template_versions() {
                tracing::debug!(%id, version = stale, error = ?failed.response_error(), "old launch template version not deleted");
            }
        }
        Err(e) => {
            tracing::warn!(%id, version = stale, error = %AwsError::from_sdk(e, &[]), "deleting an old launch template version")
        }
    }
}

/// An idempotency token for one create call: the SDK resends the same one
/// on retries, so a create that succeeded but timed out is not repeated.
fn client_token(name: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let mut token = format!("coffer-{nanos:x}-{:x}-{name}", std::process::id());
    token.truncate(64);
    token
}

fn ec2_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

fn region_of(data: &Coffer, state: &Value) -> String {
    state.get("region").as_str().map(str::to_string).unwrap_or_else(|| data.aws.home_region.clone())
}

/// Resolves the planned values, looking up the defaults AWS decides.
async fn desired(data: &Coffer, planned: &Value, diags: &mut Diagnostics) -> Option<Desired> {
    let name = planned.get("name").as_str().unwrap_or_default().to_string();
    let region = region_of(data, planned);
    let ec2 = data.aws.ec2(&region);
    let instance_type = planned.get("instance_type").as_str().unwrap_or(DEFAULT_INSTANCE_TYPE).to_string();
    let subnet_id = match planned.get("subnet_id").as_str() {
        Some(subnet) => subnet.to_string(),
        None => match coffer_aws::ec2::find_default_subnet(&ec2, &instance_type).await {
            Ok(subnet) => subnet,
            Err(AwsError::NotFound) => {
                diags.attribute_error(
                    AttributePath::attr("subnet_id"),
                    "No default subnet",
                    format!("Region {region} has no default VPC with a default subnet; set subnet_id."),
                );
                return None;
            }
            Err(e) => {
                diags.error("Finding the default subnet", format!("finding the default subnet in {region}: {e}"));
                return None;
            }
        },
    };
    let ami_id = match planned.get("ami_id").as_str() {
        Some(ami) => ami.to_string(),
        None => match default_ami(data, &region, &instance_type).await {
            Ok(ami) => ami,
            Err(DefaultAmiError::NoSuchInstanceType) => {
                diags.attribute_error(
                    AttributePath::attr("instance_type"),
                    "Unknown instance type",
                    format!("EC2 in {region} does not offer instance type {instance_type:?}."),
                );
                return None;
            }
            Err(DefaultAmiError::Lookup(e)) => {
                diags.attribute_error(
                    AttributePath::attr("ami_id"),
                    "Cannot find the default AMI",
                    format!(
                        "finding the latest Amazon Linux 2023 AMI for {instance_type} in {region}: {e}. Set ami_id."
                    ),
                );
                return None;
            }
        },
    };
    Some(Desired {
        name,
        region,
        subnet_id,
        security_group_ids: planned.get("security_group_ids").strings(),
        instance_type,
        ami_id,
        instance_profile: planned.get("instance_profile").as_str().map(str::to_string),
        associate_public_ip: planned.get("associate_public_ip").as_bool().unwrap_or(true),
        tags_all: tags::merge(&data.default_tags, &planned.get("tags").string_map()),
    })
}

enum DefaultAmiError {
    NoSuchInstanceType,
    Lookup(AwsError),
}

/// The architecture of the worker binary `coffer publish` puts in the catalog: the one
/// workers can run (as EC2 spells it).
const WORKER_ARCHITECTURE: &str = "x86_64";

/// Refuses an instance type that cannot run the published worker binary (arm64 until an
/// arm64 build exists), asking EC2 which architectures the type has.
pub(crate) async fn check_architecture(
    data: &Coffer,
    region: &str,
    instance_type: &str,
    at: AttributePath,
    diags: &mut Diagnostics,
) {
    match coffer_aws::ec2::find_instance_type_architectures(&data.aws.ec2(region), instance_type).await {
        Ok(architectures) if !architectures.is_empty() && !architectures.iter().any(|a| a == WORKER_ARCHITECTURE) => {
            diags.attribute_error(
                at.clone(),
                "Instance type not supported",
                format!(
                    "{instance_type} has {} processors; Coffer builds its worker binary for {WORKER_ARCHITECTURE} \
                     only so far (an arm64 worker would find no coffer-linux-aarch64 to run), so choose an \
                     {WORKER_ARCHITECTURE} type such as c5.large or m6i.large.",
                    architectures.join("/")
                ),
            );
        }
        Ok(_) => {}
        Err(AwsError::NotFound) => diags.attribute_error(
            at.clone(),
            "Unknown instance type",
            format!("EC2 in {region} does not offer instance type {instance_type:?}."),
        ),
        Err(e) => {
            tracing::warn!(error = %e, %instance_type, "describing the instance type; skipping the architecture check")
        }
    }
}

/// The placement a plan describes, the default subnet resolved as create
/// will; `None` while any of it is known only at apply.
async fn planned_placement(
    data: &Coffer,
    region: &str,
    planned: &Value,
    config: &Value,
    instance_type: Option<&str>,
) -> Option<Placement> {
    let subnet_id = match planned.get("subnet_id") {
        // Unset: the default subnet; set but unknown: known at apply.
        Value::Unknown if config.get("subnet_id").is_null() => {
            coffer_aws::ec2::find_default_subnet(&data.aws.ec2(region), instance_type?).await.ok()?
        }
        subnet => subnet.as_str()?.to_string(),
    };
    let public_ip = planned.get("associate_public_ip").as_bool()?;
    let instance_profile = match planned.get("instance_profile") {
        Value::Unknown => return None,
        profile => profile.as_str().map(str::to_string),
    };
    Some(Placement { region: region.to_string(), subnet_id: Some(subnet_id), public_ip, instance_profile })
}

/// The arguments that place workers: preflight runs when one of them changes.
const PLACEMENT: [&str; 4] = ["subnet_id", "associate_public_ip", "instance_profile", "region"];

/// What every worker needs, whatever its rules: the catalog and the binary
/// (S3), and EC2. Backup policies check the services their rules add.
const BASE_SERVICES: [Service; 2] = [Service::S3, Service::Ec2];

fn preflight_path(concern: Concern) -> AttributePath {
    AttributePath::attr(match concern {
        Concern::PublicIp => "associate_public_ip",
        Concern::InstanceProfile => "instance_profile",
        Concern::Subnet | Concern::SchedulerRole | Concern::WorkerRole => "subnet_id",
    })
}

/// The preflight of a placement (see `resources::preflight` for plan against apply).
async fn check_placement(data: &Coffer, name: &str, placement: &Placement, stage: Stage, diags: &mut Diagnostics) {
    let checks = placement_checks(&data.aws, placement, &BASE_SERVICES, None).await.checks;
    let subject = format!(
        "worker configuration {name} ({}, {})",
        placement.region,
        placement.subnet_id.as_deref().unwrap_or("default subnet")
    );
    preflight::report(diags, stage, &subject, &checks, placement.instance_profile.is_some(), preflight_path);
}

async fn default_ami(data: &Coffer, region: &str, instance_type: &str) -> Result<String, DefaultAmiError> {
    // The type must exist; other architectures than the workers' are refused at plan
    // ([`check_architecture`]).
    coffer_aws::ec2::find_instance_type_architectures(&data.aws.ec2(region), instance_type).await.map_err(
        |e| match e {
            AwsError::NotFound => DefaultAmiError::NoSuchInstanceType,
            other => DefaultAmiError::Lookup(other),
        },
    )?;
    ssm::find_latest_al2023_ami(&data.aws.ssm(region), WORKER_ARCHITECTURE).await.map_err(DefaultAmiError::Lookup)
}

/// The state that describes `found`. `prior` decides how tags split between
/// `tags` and the provider's defaults, and keeps empty collections empty
/// where the configuration wrote them so.
fn flatten_launch_template(
    data: &Coffer,
    region: &str,
    found: &LaunchTemplateWithData,
    prior: &Value,
    published: Value,
) -> Value {
    let template = &found.template;
    let lt_data = &found.data;
    let interface = lt_data.network_interfaces().first();
    let tags_all: BTreeMap<String, String> = template
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect();
    let own_tags = tags::without_defaults(&tags_all, &data.default_tags, &prior.get("tags").string_map());
    let name =
        template.launch_template_name().unwrap_or_default().strip_prefix(NAME_PREFIX).unwrap_or_default().to_string();
    let groups: Vec<String> = interface.map(|i| i.groups().to_vec()).unwrap_or_default();
    let profile = lt_data.iam_instance_profile().and_then(|p| p.name().or(p.arn())).map(str::to_string);
    Value::object([
        ("id", Value::from(template.launch_template_id().map(str::to_string))),
        ("name", Value::from(name)),
        ("region", Value::from(region)),
        ("subnet_id", Value::from(interface.and_then(|i| i.subnet_id()).map(str::to_string))),
        ("security_group_ids", keep_empty(Value::string_list(groups), prior.get("security_group_ids"))),
        ("instance_type", Value::from(lt_data.instance_type().map(|t| t.as_str().to_string()))),
        ("ami_id", Value::from(lt_data.image_id().map(str::to_string))),
        ("instance_profile", Value::from(profile)),
        ("associate_public_ip", Value::from(interface.and_then(|i| i.associate_public_ip_address()).unwrap_or(false))),
        ("tags", keep_empty(Value::string_map_or_null(&own_tags), prior.get("tags"))),
        ("tags_all", Value::string_map_or_null(&tags_all)),
        ("template_fingerprint", Value::from(ManagedSettings::found(lt_data).fingerprint())),
        ("launch_template_version", Value::from(found.default_version)),
        (WORKER_BINARY_SHA256, published),
    ])
}

/// An empty collection reads back as null, unless the configuration wrote
/// it as empty (Terraform tells `[]` from null).
fn keep_empty(read: Value, prior: &Value) -> Value {
    let read_empty = match &read {
        Value::List(items) => items.is_empty(),
        Value::Map(map) => map.is_empty(),
        Value::Null => true,
        _ => false,
    };
    let prior_empty = match prior {
        Value::List(items) => items.is_empty(),
        Value::Map(map) => map.is_empty(),
        _ => false,
    };
    match (read_empty, prior_empty) {
        (true, true) => prior.clone(),
        (true, false) => Value::Null,
        _ => read,
    }
}

/// The SHA-256 of the build workers fetch, as state shows it. A lookup that fails keeps what
/// `prior` says (null if it says nothing known) and warns: refresh should not fail on it.
async fn published_sha256(data: &Coffer, prior: &Value, diags: &mut Diagnostics) -> Value {
    match data.catalog().published_binary(WorkerArch::X86_64).await {
        Ok(sha256) => Value::from(sha256),
        Err(e) => {
            diags.warning(
                "Cannot tell which worker binary is published",
                format!("reading the worker binary's metadata in the catalog: {e}"),
            );
            prior.get(WORKER_BINARY_SHA256).clone().unknowns_to_null()
        }
    }
}

/// Publishes the provider's worker build, if it has one, before the template that would launch
/// it is written: a failure leaves nothing half made.
async fn publish_worker_binary(data: &Coffer, diags: &mut Diagnostics) {
    let Some(binary) = &data.worker_binary else {
        return;
    };
    match data.catalog().publish_binary(binary).await {
        Ok(published) if published.uploaded => {
            tracing::info!(url = %published.url, sha256 = %binary.sha256, "published the worker binary")
        }
        Ok(_) => {}
        Err(e) => diags.error(
            "Publishing the worker binary",
            format!("publishing {} (the provider's worker_binary) to the catalog: {e}", binary.path.display()),
        ),
    }
}

/// Reads the template back after a write. EC2 is eventually consistent: a
/// template just created may not be found for a moment, so NotFound is
/// retried for a while.
async fn read_back(
    data: &Coffer,
    region: &str,
    id: &str,
    version: Option<i64>,
    planned: &Value,
    action: &str,
    diags: &mut Diagnostics,
) -> Option<Value> {
    let ec2 = data.aws.ec2(region);
    let mut pause = std::time::Duration::from_millis(250);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match find_launch_template_by_id(&ec2, id, version).await {
            Ok(found) => {
                let published = published_sha256(data, planned, diags).await;
                return Some(flatten_launch_template(data, region, &found, planned, published));
            }
            Err(AwsError::NotFound) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => {
                diags.error(
                    format!("Reading launch template {id} after {action}"),
                    format!("reading launch template {id} in {region} after {action}: {e}"),
                );
                return None;
            }
        }
    }
}

#[async_trait]
impl Resource<Coffer> for WorkerConfiguration {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn create(
        &self,
        data: &Coffer,
        planned: &Value,
        private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let desired = desired(data, planned, diags).await?;
        check_placement(data, &desired.name, &desired.placement(), Stage::Apply, diags).await;
        if diags.has_errors() {
            return None;
        }
        publish_worker_binary(data, diags).await;
        if diags.has_errors() {
            return None;
        }
        remember_defaults(private, planned, &desired);
        let lt_name = desired.launch_template_name();
        let ec2 = data.aws.ec2(&desired.region);
        let created = ec2
            .create_launch_template()
            .launch_template_name(&lt_name)
            .version_description("coffer worker configuration")
            .client_token(client_token(&desired.name))
            .launch_template_data(desired.template_data(&data.catalog, &data.aws.home_region))
            .set_tag_specifications((!desired.tags_all.is_empty()).then(|| {
                vec![
                    TagSpecification::builder()
                        .resource_type(ResourceType::LaunchTemplate)
                        .set_tags(Some(ec2_tags(&desired.tags_all)))
                        .build(),
                ]
            }))
            .send()
            .await;
        let id = match created {
            Ok(out) => out.launch_template().and_then(|t| t.launch_template_id()).unwrap_or_default().to_string(),
            Err(e) => {
                let exists = e.code() == Some("InvalidLaunchTemplateName.AlreadyExistsException");
                let hint = if exists {
                    format!(
                        " A launch template of that name exists already: choose another name, or adopt it with \
                         `terraform import {TYPE_NAME}.<address> {}/<its lt- id>`.",
                        desired.region
                    )
                } else {
                    String::new()
                };
                diags.error(
                    format!("Creating launch template {lt_name}"),
                    format!(
                        "creating launch template {lt_name} in {}: {}.{hint}",
                        desired.region,
                        AwsError::from_sdk(e, &[])
                    ),
                );
                return None;
            }
        };
        tracing::info!(%id, name = %lt_name, region = %desired.region, "created launch template");
        match read_back(data, &desired.region, &id, None, planned, "creating it", diags).await {
            Some(state) => Some(state),
            // Created but unreadable: keep the id so Terraform tracks (and
            // can destroy) what exists, with what we know we asked for.
            None => {
                let mut partial = planned.clone();
                partial.set("id", id.as_str());
                partial.set("region", desired.region.as_str());
                partial.set("subnet_id", desired.subnet_id.as_str());
                partial.set("ami_id", desired.ami_id.as_str());
                Some(partial.unknowns_to_null())
            }
        }
    }

    async fn read(
        &self,
        data: &Coffer,
        state: &Value,
        _private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let id = state.get("id").as_str()?.to_string();
        let region = region_of(data, state);
        match find_launch_template_by_id(&data.aws.ec2(&region), &id, None).await {
            Ok(found) => {
                let published = published_sha256(data, state, diags).await;
                Some(flatten_launch_template(data, &region, &found, state, published))
            }
            Err(AwsError::NotFound) => None,
            Err(e) => {
                diags.error(
                    format!("Reading launch template {id}"),
                    format!("reading launch template {id} in {region}: {e}"),
                );
                None
            }
        }
    }

    async fn update(
        &self,
        data: &Coffer,
        prior: &Value,
        planned: &Value,
        private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let id = prior.get("id").as_str()?.to_string();
        let desired = desired(data, planned, diags).await?;
        // As at plan: only a change of placement is checked, so an update of anything else
        // never fails on a network the plan did not look at.
        if PLACEMENT.iter().any(|a| !planned.get(a).same_as(prior.get(a))) {
            check_placement(data, &desired.name, &desired.placement(), Stage::Apply, diags).await;
            if diags.has_errors() {
                return None;
            }
        }
        publish_worker_binary(data, diags).await;
        if diags.has_errors() {
            return None;
        }
        remember_defaults(private, planned, &desired);
        let ec2 = data.aws.ec2(&desired.region);
        // The version stays known only when nothing the template holds changes (e.g. only the
        // published binary does): then there is no new version to make.
        if !matches!(planned.get("launch_template_version"), Value::Unknown) {
            return read_back(data, &desired.region, &id, None, planned, "updating it", diags).await;
        }

        let version = ec2
            .create_launch_template_version()
            .launch_template_id(&id)
            .client_token(client_token(&desired.name))
            .version_description("coffer worker configuration")
            .launch_template_data(desired.template_data(&data.catalog, &data.aws.home_region))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, &[]))
            .map(|out| out.launch_template_version().and_then(|v| v.version_number()));
        let version = match version {
            Ok(Some(version)) => version,
            Ok(None) => {
                diags.error(
                    "Updating launch template",
                    format!("updating launch template {id}: AWS returned no version number"),
                );
                return None;
            }
            Err(e) => {
                diags.error(
                    format!("Updating launch template {id}"),
                    format!("creating a new version of launch template {id} in {}: {e}", desired.region),
                );
                return None;
            }
        };
        if let Err(e) =
            ec2.modify_launch_template().launch_template_id(&id).default_version(version.to_string()).send().await
        {
            diags.error(
                format!("Updating launch template {id}"),
                format!("making version {version} the default of launch template {id}: {}", AwsError::from_sdk(e, &[])),
            );
            return None;
        }

        prune_old_version(&ec2, &id, version).await;

        let old_tags = prior.get("tags_all").string_map();
        if let Err(e) = tags::sync_ec2(&ec2, &id, &old_tags, &desired.tags_all).await {
            diags.error(format!("Updating tags of launch template {id}"), format!("tagging launch template {id}: {e}"));
        }
        read_back(data, &desired.region, &id, Some(version), planned, "updating it", diags).await
    }

    async fn delete(&self, data: &Coffer, state: &Value, diags: &mut Diagnostics) {
        let Some(id) = state.get("id").as_str() else {
            return;
        };
        let region = region_of(data, state);
        let result = data.aws.ec2(&region).delete_launch_template().launch_template_id(id).send().await;
        match result.map_err(|e| AwsError::from_sdk(e, LAUNCH_TEMPLATE_NOT_FOUND)) {
            Ok(_) | Err(AwsError::NotFound) => {}
            Err(e) => diags.error(
                format!("Deleting launch template {id}"),
                format!("deleting launch template {id} in {region}: {e}"),
            ),
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
impl Import<Coffer> for WorkerConfiguration {
    /// `lt-0123…` (in the provider's region) or `eu-west-1/lt-0123…`.
    async fn import(&self, data: &Coffer, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        let (region, lt_id) = match id.split_once('/') {
            Some((region, lt_id)) => (region.to_string(), lt_id.to_string()),
            None => (data.aws.home_region.clone(), id.to_string()),
        };
        if !lt_id.starts_with("lt-") {
            diags.error(
                "Invalid import id",
                format!("{id:?} is not a launch template id; import with lt-<id> or <region>/lt-<id>."),
            );
            return None;
        }
        match find_launch_template_by_id(&data.aws.ec2(&region), &lt_id, None).await {
            Ok(found) if !found.template.launch_template_name().unwrap_or_default().starts_with(NAME_PREFIX) => {
                diags.error(
                    "Not a Coffer worker configuration",
                    format!(
                        "launch template {lt_id} is named {:?}; Coffer's worker configurations are named {NAME_PREFIX}<name>.",
                        found.template.launch_template_name().unwrap_or_default()
                    ),
                );
                None
            }
            Ok(_) => Some(Value::object([("id", Value::from(lt_id)), ("region", Value::from(region))])),
            Err(AwsError::NotFound) => {
                diags.error(
                    "Cannot import non-existent remote object",
                    format!("launch template {lt_id} does not exist in {region}."),
                );
                None
            }
            Err(e) => {
                diags.error(
                    format!("Importing launch template {lt_id}"),
                    format!("reading launch template {lt_id} in {region}: {e}"),
                );
                None
            }
        }
    }
}

#[async_trait]
impl ModifyPlan<Coffer> for WorkerConfiguration {
    async fn modify_plan(
        &self,
        data: Option<&Coffer>,
        request: PlanRequest<'_>,
        planned: &mut Value,
        _requires_replace: &mut Vec<AttributePath>,
        diags: &mut Diagnostics,
    ) {
        let prior = request.prior;
        if request.config.get("region").is_null() && prior.is_null() {
            let home = data.map(|d| Value::from(d.aws.home_region.as_str())).unwrap_or(Value::Unknown);
            planned.set("region", home);
        }
        if let (Some(data), Some(region)) = (data, planned.get("region").as_str())
            && !request.config.get("region").is_null()
        {
            match data.aws.enabled_regions().await {
                Ok(regions) if !regions.iter().any(|r| r == region) => diags.attribute_error(
                    AttributePath::attr("region"),
                    "Unknown region",
                    format!(
                        "region {region:?} is not enabled for this account; enabled regions: {}.",
                        regions.join(", ")
                    ),
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "listing regions; skipping the region check"),
            }
        }

        if let (Some(data), Some(region)) = (data, planned.get("region").as_str()) {
            let instance_type = match planned.get("instance_type") {
                Value::Unknown => None,
                t => Some(t.as_str().unwrap_or(DEFAULT_INSTANCE_TYPE).to_string()),
            };
            if let Some(instance_type) = &instance_type
                && (prior.is_null() || !planned.get("instance_type").same_as(prior.get("instance_type")))
            {
                check_architecture(data, region, instance_type, AttributePath::attr("instance_type"), diags).await;
            }
            if !diags.has_errors()
                && (prior.is_null() || PLACEMENT.iter().any(|a| !planned.get(a).same_as(prior.get(a))))
                && let Some(placement) =
                    planned_placement(data, region, planned, request.config, instance_type.as_deref()).await
            {
                let name = planned.get("name").as_str().unwrap_or_default().to_string();
                check_placement(data, &name, &placement, Stage::Plan, diags).await;
            }
        }

        // A default changed out of band is planned back to what was resolved.
        if !prior.is_null() {
            for attribute in REMEMBERED_DEFAULTS {
                let remembered = request.prior_private.get(attribute);
                if let (true, Some(remembered), Some(current)) =
                    (request.config.get(attribute).is_null(), remembered, planned.get(attribute).as_str())
                    && current != remembered
                {
                    planned.set(attribute, remembered);
                    planned.set("launch_template_version", Value::Unknown);
                }
            }
        }

        // A default AMI follows the architecture: re-resolve it when the
        // instance type changes.
        if !prior.is_null()
            && request.config.get("ami_id").is_null()
            && !planned.get("instance_type").same_as(prior.get("instance_type"))
        {
            planned.set("ami_id", Value::Unknown);
        }

        let own_tags = planned.get("tags");
        let tags_all = match data {
            Some(data) if own_tags.is_wholly_known() => Some(tags::merge(&data.default_tags, &own_tags.string_map())),
            _ => None,
        };
        let fingerprint = match (data, &tags_all, planned.get("name").as_str()) {
            (Some(data), Some(tags_all), Some(name)) => {
                for key in tags_all.keys().filter(|k| validation::instance_tag_key(k).is_err()) {
                    diags.warning(
                        "Default tag left off workers",
                        format!(
                            "the provider's default tag {key:?} goes on the launch template, but not on workers and their \
                             volumes: workers read their tags from instance metadata, which allows no spaces or '/' in keys."
                        ),
                    );
                }
                Value::from(
                    ManagedSettings::expected(name, tags_all, &data.catalog, &data.aws.home_region).fingerprint(),
                )
            }
            _ => Value::Unknown,
        };
        let tags_all = tags_all.map_or(Value::Unknown, |t| Value::string_map_or_null(&t));
        // default_tags and the catalog location are provider-level, and the
        // managed settings may be edited out of band: any of them changes
        // the template without this resource's own arguments changing.
        if !prior.is_null()
            && (!tags_all.same_as(prior.get("tags_all")) || !fingerprint.same_as(prior.get("template_fingerprint")))
        {
            planned.set("launch_template_version", Value::Unknown);
        }
        planned.set("tags_all", tags_all);
        planned.set("template_fingerprint", fingerprint);

        // Apply publishes the provider's build; without one, what the catalog holds stays.
        let published = match data {
            Some(Coffer { worker_binary: Some(binary), .. }) => Value::from(binary.sha256.as_str()),
            Some(_) if !prior.is_null() => prior.get(WORKER_BINARY_SHA256).clone(),
            _ => Value::Unknown,
        };
        planned.set(WORKER_BINARY_SHA256, published);
    }
}
