//! The traits a provider, its resources and data sources implement. They see
//! framework values only; the server layer turns RPCs into calls on these.

use std::sync::Arc;

use async_trait::async_trait;

use super::diag::{AttributePath, Diagnostics};
use super::schema::Schema;
use super::value::Value;

/// What Terraform told us about itself (from the protocol's client
/// capabilities and the `terraform_version` of ConfigureProvider).
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub terraform_version: String,
}

/// A provider: its configuration schema, what configuring it yields (the
/// `Data` every resource receives), and its resources and data sources.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    type Data: Send + Sync + 'static;

    /// The provider's type name, the prefix of every resource type.
    fn type_name(&self) -> &'static str;

    fn schema(&self) -> Schema;

    /// Cross-attribute checks of the provider block (the schema's validators
    /// have already run).
    fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}

    async fn configure(&self, config: &Value, client: &ClientInfo, diags: &mut Diagnostics) -> Option<Self::Data>;

    fn resources(&self) -> Vec<Arc<dyn Resource<Self::Data>>>;

    fn data_sources(&self) -> Vec<Arc<dyn DataSource<Self::Data>>>;
}

/// A managed resource's CRUD in Terraform terms. Values are whole objects
/// shaped by `schema()`; the framework conforms what is returned.
#[async_trait]
pub trait Resource<D>: Send + Sync {
    /// The full type name, e.g. `coffer_worker_configuration`.
    fn type_name(&self) -> &'static str;

    fn schema(&self) -> Schema;

    /// Cross-attribute checks at plan time (schema validators already ran).
    fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}

    /// Creates the resource from the planned state and returns the new state,
    /// read back from the remote system. `None` means nothing was created.
    /// `private` is kept by Terraform beside the state, unseen by users:
    /// what the resource must remember, such as defaults it resolved.
    async fn create(&self, data: &D, planned: &Value, private: &mut Private, diags: &mut Diagnostics) -> Option<Value>;

    /// Reads the remote object. `None` means it is gone, and Terraform will
    /// plan to create it again. `private` may be updated (e.g. the ETag the
    /// next update must match).
    async fn read(&self, data: &D, state: &Value, private: &mut Private, diags: &mut Diagnostics) -> Option<Value>;

    /// Updates in place and returns the new state, read back.
    async fn update(
        &self,
        data: &D,
        prior: &Value,
        planned: &Value,
        private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value>;

    async fn delete(&self, data: &D, state: &Value, diags: &mut Diagnostics);

    /// Opt-in: `terraform import`.
    fn importer(&self) -> Option<&dyn Import<D>> {
        None
    }

    /// Opt-in: resource-specific plan logic after the framework's.
    fn plan_modifier(&self) -> Option<&dyn ModifyPlan<D>> {
        None
    }

    /// Opt-in: upgrading state stored under an older schema version.
    fn state_upgrader(&self) -> Option<&dyn UpgradeState> {
        None
    }
}

#[async_trait]
pub trait Import<D>: Send + Sync {
    /// Turns an import id into a state with enough set for `read` to find the
    /// object; the framework then reads it.
    async fn import(&self, data: &D, id: &str, diags: &mut Diagnostics) -> Option<Value>;
}

/// The inputs of a resource's own plan logic.
pub struct PlanRequest<'a> {
    pub prior: &'a Value,
    pub config: &'a Value,
    pub prior_private: &'a Private,
}

/// A resource's private state: string values by key, stored by Terraform as
/// opaque bytes (JSON here) next to the state, never shown to users.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Private(pub std::collections::BTreeMap<String, String>);

impl Private {
    /// Reads what Terraform kept; anything unreadable counts as empty, as
    /// private state written by another provider version might be.
    pub fn decode(bytes: &[u8]) -> Self {
        Self(serde_json::from_slice(bytes).unwrap_or_default())
    }

    pub fn encode(&self) -> Vec<u8> {
        if self.0.is_empty() { Vec::new() } else { serde_json::to_vec(&self.0).expect("string map serializes") }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets `key`, or removes it when `value` is `None`.
    pub fn set(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.0.insert(key.to_string(), v.to_string()),
            None => self.0.remove(key),
        };
    }
}

#[async_trait]
pub trait ModifyPlan<D>: Send + Sync {
    /// Adjusts `planned` (and which paths require replacement). `data` is
    /// `None` when the provider is not configured yet (Terraform validates
    /// plans before configuring in some flows).
    async fn modify_plan(
        &self,
        data: Option<&D>,
        request: PlanRequest<'_>,
        planned: &mut Value,
        requires_replace: &mut Vec<AttributePath>,
        diags: &mut Diagnostics,
    );
}

pub trait UpgradeState: Send + Sync {
    /// Rewrites a state stored at `version` (decoded from JSON) into the
    /// current schema's shape.
    fn upgrade(&self, version: i64, state: Value, diags: &mut Diagnostics) -> Value;
}

/// A data source: reads something and returns it as an object.
#[async_trait]
pub trait DataSource<D>: Send + Sync {
    fn type_name(&self) -> &'static str;

    fn schema(&self) -> Schema;

    fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}

    async fn read(&self, data: &D, config: &Value, diags: &mut Diagnostics) -> Option<Value>;
}

#[cfg(test)]
mod tests {
    use super::Private;

    #[test]
    fn private_state_round_trips_and_tolerates_foreign_bytes() {
        let mut private = Private::default();
        assert!(private.encode().is_empty());
        private.set("ami_id", Some("ami-1"));
        assert_eq!(Private::decode(&private.encode()).get("ami_id"), Some("ami-1"));
        private.set("ami_id", None);
        assert_eq!(private, Private::default());
        assert_eq!(Private::decode(b"\x00not json"), Private::default());
    }
}
