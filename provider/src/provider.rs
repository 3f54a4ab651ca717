//! The `coffer` provider: its configuration schema and what configuring it
//! yields — AWS clients for the home account, default tags, the catalog
//! location and the scheduler role.

use std::sync::Arc;

use async_trait::async_trait;

pub use crate::conns::Coffer;
use crate::resources::backup_policy::BackupPolicy;
use crate::resources::region_mapping::RegionMapping;
use crate::resources::repository::Repository;
use crate::resources::worker_configuration::WorkerConfiguration;
use coffer_aws::{AssumeRole, AwsClients, AwsSettings, SERVICES};
use coffer_model::CatalogLocation;
use coffer_model::validation;
use coffer_model::worker_binary::{WorkerArch, WorkerBinary};
use coffer_tfplugin::framework::validators::{Keys, string};
use coffer_tfplugin::framework::{
    Attribute, AttributePath, Block, ClientInfo, DataSource, Diagnostics, NestedBlock, Provider, Resource, Schema,
    Value,
};

#[derive(Default)]
pub struct CofferProvider;

impl CofferProvider {
    pub fn new() -> Self {
        Self
    }
}

fn endpoints_block() -> Block {
    SERVICES.iter().fold(
        Block::new("Per-service endpoint URLs, overriding `endpoint_url` for that service."),
        |block, service| {
            block.attribute(
                Attribute::string(service)
                    .optional()
                    .describe(&format!("Endpoint URL for {}.", service.to_uppercase()))
                    .validate(string(validation::url)),
            )
        },
    )
}

fn assume_role_block() -> Block {
    Block::new("Assume this IAM role for every AWS call (to reuse one module across accounts).")
        .attribute(
            Attribute::string("role_arn")
                .required()
                .describe("ARN of the role to assume.")
                .validate(string(validation::role_arn)),
        )
        .attribute(
            Attribute::string("external_id").optional().describe("External ID the role's trust policy requires."),
        )
        .attribute(Attribute::string("session_name").optional().describe("Session name (default `coffer`)."))
        .attribute(
            Attribute::string("duration")
                .optional()
                .describe("Session length, 15m to 12h, written like `1h` or `45m` (default 1h).")
                .validate(string(validation::session_duration)),
        )
}

pub fn provider_schema() -> Schema {
    Schema::new(
        0,
        Block::new("Coffer: backup-as-code for AWS. Configures the AWS account and region that hold the catalog and schedules.")
            .attribute(
                Attribute::string("region")
                    .optional()
                    .describe("Home region: where the catalog and schedules live. Default: the AWS environment (`AWS_REGION`, profile).")
                    .validate(string(validation::region)),
            )
            .attribute(Attribute::string("profile").optional().describe("Named profile of the shared AWS configuration."))
            .attribute(Attribute::string_list("shared_config_files").optional().describe("Paths of shared AWS config files (default `~/.aws/config`)."))
            .attribute(Attribute::string_list("shared_credentials_files").optional().describe("Paths of shared AWS credentials files (default `~/.aws/credentials`)."))
            .attribute(
                Attribute::string("endpoint_url")
                    .optional()
                    .describe("One endpoint URL for every AWS service, e.g. a local emulator. `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` are honoured too.")
                    .validate(string(validation::url)),
            )
            .attribute(Attribute::bool("s3_use_path_style").optional().describe("Use path-style S3 addressing (needed by most emulators). Default false."))
            .attribute(
                Attribute::string("catalog_bucket")
                    .optional()
                    .describe("S3 bucket of the catalog. Default `coffer-catalog-<account>-<region>`, created on first use.")
                    .validate(string(validation::bucket_name)),
            )
            .attribute(
                Attribute::string("catalog_prefix")
                    .optional()
                    .describe("Key prefix of the catalog inside its bucket. Default empty.")
                    .validate(string(validation::key_prefix)),
            )
            .attribute(
                Attribute::string_map("default_tags")
                    .optional()
                    .describe("Tags put on everything Coffer creates. A resource's own `tags` win on conflicts.")
                    .validate(Keys(string(validation::tag_key))),
            )
            .attribute(
                Attribute::string("scheduler_role_arn")
                    .optional()
                    .describe("IAM role EventBridge Scheduler assumes to launch workers (a policy may override it).")
                    .validate(string(validation::role_arn)),
            )
            .attribute(
                Attribute::string("worker_binary")
                    .optional()
                    .describe(
                        "Path of the `coffer` build workers run (Linux x86_64, needing glibc 2.26 at most, as \
                         `scripts/build-worker.sh` makes it); applying a `coffer_worker_configuration` publishes it to \
                         the catalog, uploading only when the catalog holds another build. Default: \
                         `COFFER_WORKER_BINARY`, else `coffer-linux-x86_64` beside the provider's executable when \
                         present; with neither, nothing is published and workers run what `coffer publish` last put there.",
                    ),
            )
            .block(NestedBlock::single("assume_role", assume_role_block()))
            .block(NestedBlock::single("endpoints", endpoints_block())),
    )
}

fn optional_string(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// Reads the AWS settings out of a provider configuration.
pub fn aws_settings(config: &Value) -> AwsSettings {
    let assume_role = match config.get("assume_role") {
        Value::Null => None,
        block => Some(AssumeRole {
            role_arn: block.get("role_arn").as_str().unwrap_or_default().to_string(),
            external_id: optional_string(block.get("external_id")),
            session_name: optional_string(block.get("session_name")),
            duration: block.get("duration").as_str().and_then(|d| validation::parse_duration(d).ok()),
        }),
    };
    let endpoints = config.get("endpoints").string_map().into_iter().filter(|(_, url)| !url.is_empty()).collect();
    AwsSettings {
        region: optional_string(config.get("region")),
        profile: optional_string(config.get("profile")),
        shared_config_files: config.get("shared_config_files").strings(),
        shared_credentials_files: config.get("shared_credentials_files").strings(),
        assume_role,
        endpoint_url: optional_string(config.get("endpoint_url")),
        endpoints,
        s3_use_path_style: config.get("s3_use_path_style").as_bool().unwrap_or(false),
        max_attempts: None,
    }
}

/// The file beside the provider's executable that release packages carry: the worker build.
pub const SHIPPED_WORKER_BINARY: &str = "coffer-linux-x86_64";

/// The worker build this provider publishes, checked: `worker_binary`, `COFFER_WORKER_BINARY`,
/// or the shipped one. A named build workers could not start is an error; a shipped one a
/// warning (nothing is published, and the user can still publish by hand).
fn worker_binary(config: &Value, diags: &mut Diagnostics) -> Option<WorkerBinary> {
    let named = optional_string(config.get("worker_binary")).map(|path| (path, "worker_binary")).or_else(|| {
        std::env::var("COFFER_WORKER_BINARY").ok().filter(|p| !p.is_empty()).map(|p| (p, "COFFER_WORKER_BINARY"))
    });
    let (path, source) = match named {
        Some((path, source)) => (std::path::PathBuf::from(path), Some(source)),
        None => {
            let shipped = std::env::current_exe().ok()?.parent()?.join(SHIPPED_WORKER_BINARY);
            if !shipped.exists() {
                return None;
            }
            (shipped, None)
        }
    };
    let refusal = match WorkerBinary::open(&path) {
        Ok(binary) if binary.arch == WorkerArch::X86_64 => return Some(binary),
        Ok(binary) => format!(
            "{} is an {} build; worker configurations launch x86_64 instances, which fetch coffer-linux-x86_64.",
            path.display(),
            binary.arch
        ),
        Err(e) => e.to_string(),
    };
    match source {
        Some("worker_binary") => {
            diags.attribute_error(AttributePath::attr("worker_binary"), "Worker binary refused", refusal)
        }
        Some(variable) => diags.error("Worker binary refused", format!("{variable}: {refusal}")),
        None => diags.warning(
            "Shipped worker binary refused",
            format!("{refusal} Nothing will be published: set the provider's worker_binary, or run `coffer publish --binary PATH`."),
        ),
    }
    None
}

#[async_trait]
impl Provider for CofferProvider {
    type Data = Coffer;

    fn type_name(&self) -> &'static str {
        "coffer"
    }

    fn schema(&self) -> Schema {
        provider_schema()
    }

    async fn configure(&self, config: &Value, _client: &ClientInfo, diags: &mut Diagnostics) -> Option<Coffer> {
        if !config.is_wholly_known() {
            diags.error(
                "Provider configuration not known",
                "The coffer provider block refers to values known only after apply. Use values known at plan time (variables, locals, data sources).",
            );
            return None;
        }
        let aws = match AwsClients::connect(aws_settings(config)).await {
            Ok(aws) => aws,
            Err(e) => {
                diags.error("Cannot connect to AWS", e.to_string());
                return None;
            }
        };
        let catalog = CatalogLocation::new(
            config.get("catalog_bucket").as_str(),
            config.get("catalog_prefix").as_str(),
            &aws.account_id,
            &aws.home_region,
        );
        let worker_binary = worker_binary(config, diags);
        if diags.has_errors() {
            return None;
        }
        Some(Coffer {
            default_tags: config.get("default_tags").string_map(),
            worker_binary,
            scheduler_role_arn: optional_string(config.get("scheduler_role_arn")),
            ..Coffer::new(Arc::new(aws), catalog)
        })
    }

    fn resources(&self) -> Vec<Arc<dyn Resource<Coffer>>> {
        vec![Arc::new(WorkerConfiguration), Arc::new(Repository), Arc::new(RegionMapping), Arc::new(BackupPolicy)]
    }

    fn data_sources(&self) -> Vec<Arc<dyn DataSource<Coffer>>> {
        vec![
            Arc::new(crate::data_sources::iam_policy::IamPolicy),
            Arc::new(crate::data_sources::restore_points::RestorePoints),
            Arc::new(crate::data_sources::sessions::Sessions),
            Arc::new(crate::data_sources::protection::Protection),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_provider_block() {
        let config = Value::object([
            ("region", Value::from("eu-west-1")),
            ("endpoint_url", Value::from("http://127.0.0.1:5000")),
            (
                "assume_role",
                Value::object([
                    ("role_arn", Value::from("arn:aws:iam::222222222222:role/x")),
                    ("duration", Value::from("30m")),
                ]),
            ),
            ("endpoints", Value::object([("s3", Value::from("http://s3.local"))])),
        ]);
        let settings = aws_settings(&config);
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        let role = settings.assume_role.unwrap();
        assert_eq!(role.duration.unwrap().as_secs(), 1800);
        assert_eq!(settings.endpoints.get("s3").map(String::as_str), Some("http://s3.local"));
    }
}
