//! What configuring the provider yields, kept apart from the provider's
//! schema and registration as terraform-provider-aws keeps its client in
//! `internal/conns`: every resource and data source receives a [`Coffer`].

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_aws::AwsClients;
use coffer_aws::catalog::Catalog;
use coffer_executor::{Executor, Settings};
use coffer_model::CatalogLocation;
use coffer_model::worker_binary::WorkerBinary;

/// Everything a resource or data source needs once the provider is
/// configured.
pub struct Coffer {
    pub aws: Arc<AwsClients>,
    pub default_tags: BTreeMap<String, String>,
    pub catalog: CatalogLocation,
    pub scheduler_role_arn: Option<String>,
    /// The worker build applying a worker configuration publishes (provider `worker_binary`).
    pub worker_binary: Option<WorkerBinary>,
    /// The executor's read side (policies, mappings, sessions, restore
    /// points) for the data sources, over the same clients and catalog;
    /// built once, so every read shares its catalog check and its clients
    /// for the mappings' target accounts.
    pub executor: Executor,
    /// Set once the `coffer` schedule group is known to exist.
    pub schedule_group_ready: tokio::sync::OnceCell<()>,
}

impl Coffer {
    /// A context over `aws` and `catalog`, with no default tags or
    /// scheduler role. Password repositories open for the data sources
    /// with `COFFER_REPOSITORY_PASSWORD` from Terraform's environment, as
    /// for the `coffer` command.
    pub fn new(aws: Arc<AwsClients>, catalog: CatalogLocation) -> Self {
        let settings =
            Settings { repository_password: coffer_executor::repository_password_from_env(), ..Settings::default() };
        Self {
            executor: Executor::new(aws.clone(), catalog.clone(), settings),
            aws,
            default_tags: BTreeMap::new(),
            catalog,
            scheduler_role_arn: None,
            worker_binary: None,
            schedule_group_ready: tokio::sync::OnceCell::new(),
        }
    }

    pub fn catalog(&self) -> Catalog<'_> {
        self.executor.catalog()
    }
}
