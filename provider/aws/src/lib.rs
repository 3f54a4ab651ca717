//! AWS access: one credential chain and endpoint set from the provider
//! configuration, SDK clients built lazily per region, and `find_*` lookups
//! that return a typed [`AwsError::NotFound`]; on top of them the catalog
//! store ([`catalog`]), the repository's storage on S3 ([`s3_storage`]), its
//! EBS direct block source and sink ([`ebs_blocks`]) and KMS key wrapping
//! ([`kms_keys`]), and the snapshots runs make, copy, share and delete
//! ([`snapshots`]). The resources call the SDK for the objects they manage
//! (schedules, launch templates, buckets), as terraform-provider-aws's do.

pub mod catalog;
pub mod configuration;
pub mod ebs_blocks;
pub mod ec2;
pub mod kms;
pub mod kms_keys;
pub mod permissions;
pub mod preflight;
pub mod rds;
pub mod rds_presign;
pub mod restores;
pub mod s3;
pub mod s3_storage;
pub mod scheduler;
pub mod snapshots;
pub mod ssm;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use thiserror::Error;

/// The services whose endpoint can be overridden one by one.
pub const SERVICES: &[&str] = &["ec2", "ebs", "rds", "s3", "scheduler", "sts", "kms", "iam", "ssm"];

#[derive(Debug, Error)]
pub enum AwsError {
    /// The object looked up does not exist.
    #[error("not found")]
    NotFound,
    /// Any other failure, rendered with its full cause chain and AWS error code.
    #[error("{0}")]
    Api(String),
}

impl AwsError {
    /// Wraps an SDK error, turning the listed error codes into `NotFound`.
    pub fn from_sdk<E, R>(error: SdkError<E, R>, not_found_codes: &[&str]) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match (error.code(), error.message()) {
            (Some(code), _) if not_found_codes.contains(&code) => AwsError::NotFound,
            // A service error's code and message say it all; the raw
            // response behind them is noise in a Terraform diagnostic.
            (Some(code), Some(message)) => AwsError::Api(format!("{code}: {message}")),
            (Some(code), None) => AwsError::Api(code.to_string()),
            _ => AwsError::Api(DisplayErrorContext(&error).to_string()),
        }
    }
}

/// The ARN partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Role to assume for everything the provider does (cross-account reuse).
#[derive(Debug, Clone, PartialEq)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    pub duration: Option<Duration>,
}

/// How to reach AWS, as the provider configuration says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AwsSettings {
    /// Home region; `None` takes it from the environment / profile.
    pub region: Option<String>,
    pub profile: Option<String>,
    pub shared_config_files: Vec<String>,
    pub shared_credentials_files: Vec<String>,
    pub assume_role: Option<AssumeRole>,
    /// One endpoint for every service (a local emulator).
    pub endpoint_url: Option<String>,
    /// Per-service endpoints, keyed by [`SERVICES`] names.
    pub endpoints: BTreeMap<String, String>,
    pub s3_use_path_style: bool,
    /// Attempts per AWS call, throttling included (SDK standard retry with
    /// exponential backoff and jitter); `None` keeps the SDK's default of 3.
    pub max_attempts: Option<u32>,
}

/// Credentials, endpoints and the account they act in, with SDK clients
/// made on first use per region.
pub struct AwsClients {
    base: SdkConfig,
    settings: AwsSettings,
    pub account_id: String,
    pub home_region: String,
    ec2: Mutex<HashMap<String, aws_sdk_ec2::Client>>,
    ebs: Mutex<HashMap<String, aws_sdk_ebs::Client>>,
    ssm: Mutex<HashMap<String, aws_sdk_ssm::Client>>,
    s3: Mutex<HashMap<String, aws_sdk_s3::Client>>,
    scheduler: Mutex<HashMap<String, aws_sdk_scheduler::Client>>,
    kms: Mutex<HashMap<String, aws_sdk_kms::Client>>,
    rds: Mutex<HashMap<String, aws_sdk_rds::Client>>,
    iam: std::sync::OnceLock<aws_sdk_iam::Client>,
    regions: tokio::sync::OnceCell<Vec<String>>,
}

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("no AWS region: set `region` in the provider block, or AWS_REGION / a profile's region")]
    NoRegion,
    #[error("checking the AWS credentials with STS GetCallerIdentity at {endpoint}: {cause}")]
    Identity { endpoint: String, cause: String },
}

impl AwsClients {
    /// Loads the credential chain, assumes the role if one is given, and
    /// calls STS GetCallerIdentity once to learn the account and prove the
    /// credentials work.
    // The profile-file types' new names live in aws-runtime, a crate we would
    // otherwise not depend on; the deprecated aliases are the same types.
    #[allow(deprecated)]
    pub async fn connect(settings: AwsSettings) -> Result<Self, ConnectError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if !settings.shared_config_files.is_empty() || !settings.shared_credentials_files.is_empty() {
            use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
            let mut files = ProfileFiles::builder();
            for path in &settings.shared_config_files {
                files = files.with_file(ProfileFileKind::Config, path);
            }
            for path in &settings.shared_credentials_files {
                files = files.with_file(ProfileFileKind::Credentials, path);
            }
            loader = loader.profile_files(files.build());
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(attempts) = settings.max_attempts {
            loader = loader.retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts));
        }
        let base = loader.load().await;
        Self::connect_from(base, settings).await
    }

    /// Assumes `settings.assume_role` (if any) with the credentials of
    /// `base`, then learns the account.
    async fn connect_from(mut base: SdkConfig, settings: AwsSettings) -> Result<Self, ConnectError> {
        let home_region = base.region().map(|r| r.to_string()).ok_or(ConnectError::NoRegion)?;

        if let Some(role) = &settings.assume_role {
            let mut sts_config = base.clone();
            if let Some(url) = settings.endpoints.get("sts") {
                sts_config = sts_config.into_builder().endpoint_url(url).build();
            }
            let mut provider = aws_config::sts::AssumeRoleProvider::builder(&role.role_arn)
                .session_name(role.session_name.clone().unwrap_or_else(|| "coffer".to_string()))
                .configure(&sts_config);
            if let Some(id) = &role.external_id {
                provider = provider.external_id(id);
            }
            if let Some(duration) = role.duration {
                provider = provider.session_length(duration);
            }
            let provider = provider.build().await;
            base = base
                .into_builder()
                .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider))
                .build();
        }

        let sts = aws_sdk_sts::Client::from_conf(
            with_endpoint(aws_sdk_sts::config::Builder::from(&base), &settings, "sts").build(),
        );
        let identity = sts.get_caller_identity().send().await.map_err(|e| ConnectError::Identity {
            endpoint: endpoint_label(&settings, "sts", &home_region),
            cause: DisplayErrorContext(&e).to_string(),
        })?;
        let account_id = identity.account().unwrap_or_default().to_string();
        tracing::debug!(%account_id, %home_region, "connected to AWS");
        Ok(Self {
            base,
            settings,
            account_id,
            home_region,
            ec2: Mutex::default(),
            ebs: Mutex::default(),
            ssm: Mutex::default(),
            s3: Mutex::default(),
            scheduler: Mutex::default(),
            kms: Mutex::default(),
            rds: Mutex::default(),
            iam: std::sync::OnceLock::new(),
            regions: tokio::sync::OnceCell::new(),
        })
    }

    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        cached(&self.ec2, region, || {
            let builder = aws_sdk_ec2::config::Builder::from(&self.base).region(Region::new(region.to_string()));
            aws_sdk_ec2::Client::from_conf(with_endpoint(builder, &self.settings, "ec2").build())
        })
    }

    /// EBS direct APIs: reading snapshot blocks and writing new snapshots.
    pub fn ebs(&self, region: &str) -> aws_sdk_ebs::Client {
        cached(&self.ebs, region, || {
            let builder = aws_sdk_ebs::config::Builder::from(&self.base).region(Region::new(region.to_string()));
            aws_sdk_ebs::Client::from_conf(with_endpoint(builder, &self.settings, "ebs").build())
        })
    }

    pub fn ssm(&self, region: &str) -> aws_sdk_ssm::Client {
        cached(&self.ssm, region, || {
            let builder = aws_sdk_ssm::config::Builder::from(&self.base).region(Region::new(region.to_string()));
            aws_sdk_ssm::Client::from_conf(with_endpoint(builder, &self.settings, "ssm").build())
        })
    }

    pub fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        cached(&self.s3, region, || {
            let builder = aws_sdk_s3::config::Builder::from(&self.base)
                .region(Region::new(region.to_string()))
                .force_path_style(self.settings.s3_use_path_style);
            aws_sdk_s3::Client::from_conf(with_endpoint(builder, &self.settings, "s3").build())
        })
    }

    pub fn scheduler(&self, region: &str) -> aws_sdk_scheduler::Client {
        cached(&self.scheduler, region, || {
            let builder = aws_sdk_scheduler::config::Builder::from(&self.base).region(Region::new(region.to_string()));
            aws_sdk_scheduler::Client::from_conf(with_endpoint(builder, &self.settings, "scheduler").build())
        })
    }

    pub fn kms(&self, region: &str) -> aws_sdk_kms::Client {
        cached(&self.kms, region, || {
            let builder = aws_sdk_kms::config::Builder::from(&self.base).region(Region::new(region.to_string()));
            aws_sdk_kms::Client::from_conf(with_endpoint(builder, &self.settings, "kms").build())
        })
    }

    pub fn rds(&self, region: &str) -> aws_sdk_rds::Client {
        cached(&self.rds, region, || {
            let builder = aws_sdk_rds::config::Builder::from(&self.base).region(Region::new(region.to_string()));
            aws_sdk_rds::Client::from_conf(with_endpoint(builder, &self.settings, "rds").build())
        })
    }

    /// IAM, a global service: signed for the partition's IAM region, which the SDK
    /// derives from the home region.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        self.iam
            .get_or_init(|| {
                let builder =
                    aws_sdk_iam::config::Builder::from(&self.base).region(Region::new(self.home_region.clone()));
                aws_sdk_iam::Client::from_conf(with_endpoint(builder, &self.settings, "iam").build())
            })
            .clone()
    }

    /// The credentials these clients sign with (to presign requests the SDK does not make).
    pub fn credentials(&self) -> Option<aws_credential_types::provider::SharedCredentialsProvider> {
        self.base.credentials_provider()
    }

    /// The same credentials and endpoints acting through `role` (a region
    /// mapping's target role in another account).
    pub async fn assuming(&self, role: AssumeRole) -> Result<AwsClients, ConnectError> {
        let mut settings = self.settings.clone();
        // Chained: the role is assumed with the credentials in use here.
        settings.assume_role = Some(role);
        Self::connect_from(self.base.clone(), settings).await
    }

    /// The regions enabled for the account (EC2 DescribeRegions), asked once.
    pub async fn enabled_regions(&self) -> Result<&[String], AwsError> {
        self.regions.get_or_try_init(|| ec2::describe_regions(self.ec2(&self.home_region))).await.map(Vec::as_slice)
    }
}

fn cached<C: Clone>(cache: &Mutex<HashMap<String, C>>, region: &str, make: impl FnOnce() -> C) -> C {
    let mut cache = cache.lock().expect("client cache lock");
    cache.entry(region.to_string()).or_insert_with(make).clone()
}

/// Applies a per-service endpoint override on top of the shared one.
trait EndpointBuilder {
    fn set_endpoint(self, url: &str) -> Self;
}

macro_rules! endpoint_builder {
    ($($builder:ty),*) => {$(
        impl EndpointBuilder for $builder {
            fn set_endpoint(self, url: &str) -> Self {
                self.endpoint_url(url)
            }
        }
    )*};
}
endpoint_builder!(
    aws_sdk_ebs::config::Builder,
    aws_sdk_ec2::config::Builder,
    aws_sdk_iam::config::Builder,
    aws_sdk_kms::config::Builder,
    aws_sdk_rds::config::Builder,
    aws_sdk_s3::config::Builder,
    aws_sdk_scheduler::config::Builder,
    aws_sdk_ssm::config::Builder,
    aws_sdk_sts::config::Builder
);

fn with_endpoint<B: EndpointBuilder>(builder: B, settings: &AwsSettings, service: &str) -> B {
    match settings.endpoints.get(service) {
        Some(url) => builder.set_endpoint(url),
        None => builder,
    }
}

fn endpoint_label(settings: &AwsSettings, service: &str, region: &str) -> String {
    settings
        .endpoints
        .get(service)
        .or(settings.endpoint_url.as_ref())
        .cloned()
        .unwrap_or_else(|| format!("the default {service} endpoint of {region}"))
}
