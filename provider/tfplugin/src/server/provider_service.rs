//! The tfplugin6 Provider service: decodes each request, calls the framework
//! provider, encodes the answer. No provider logic lives here.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::convert::{self, decode, decode_error, encode};
use super::tfplugin6 as pb;
use super::tfplugin6::provider_server::Provider as ProviderRpc;
use crate::framework::plan::plan;
use crate::framework::resource::{ClientInfo, DataSource, PlanRequest, Private, Provider, Resource};
use crate::framework::schema::Schema;
use crate::framework::value::Value;
use crate::framework::{AttributePath, Diagnostics};

struct ResourceEntry<D> {
    resource: Arc<dyn Resource<D>>,
    schema: Schema,
}

struct DataSourceEntry<D> {
    data_source: Arc<dyn DataSource<D>>,
    schema: Schema,
}

/// Serves a framework provider over tfplugin6. Schemas are built once.
pub struct ProviderService<P: Provider> {
    provider: P,
    schema: Schema,
    resources: HashMap<&'static str, ResourceEntry<P::Data>>,
    data_sources: HashMap<&'static str, DataSourceEntry<P::Data>>,
    /// What ConfigureProvider produced; Terraform configures once per process.
    data: OnceLock<Arc<P::Data>>,
    schema_response: pb::get_provider_schema::Response,
}

impl<P: Provider> ProviderService<P> {
    pub fn new(provider: P) -> Self {
        let schema = provider.schema();
        let resources: HashMap<_, _> = provider
            .resources()
            .into_iter()
            .map(|resource| {
                let schema = resource.schema();
                (resource.type_name(), ResourceEntry { resource, schema })
            })
            .collect();
        let data_sources: HashMap<_, _> = provider
            .data_sources()
            .into_iter()
            .map(|data_source| {
                let schema = data_source.schema();
                (data_source.type_name(), DataSourceEntry { data_source, schema })
            })
            .collect();
        let schema_response = pb::get_provider_schema::Response {
            provider: Some(convert::schema(&schema)),
            resource_schemas: resources
                .iter()
                .map(|(name, e)| (name.to_string(), convert::schema(&e.schema)))
                .collect(),
            data_source_schemas: data_sources
                .iter()
                .map(|(name, e)| (name.to_string(), convert::schema(&e.schema)))
                .collect(),
            server_capabilities: Some(server_capabilities()),
            ..Default::default()
        };
        Self { provider, schema, resources, data_sources, data: OnceLock::new(), schema_response }
    }

    fn resource(&self, type_name: &str) -> Result<&ResourceEntry<P::Data>, Status> {
        self.resources.get(type_name).ok_or_else(|| Status::not_found(format!("unknown resource type {type_name}")))
    }

    fn data_source(&self, type_name: &str) -> Result<&DataSourceEntry<P::Data>, Status> {
        self.data_sources
            .get(type_name)
            .ok_or_else(|| Status::not_found(format!("unknown data source type {type_name}")))
    }

    fn configured(&self, diags: &mut Diagnostics) -> Option<&P::Data> {
        let data = self.data.get().map(Arc::as_ref);
        if data.is_none() {
            diags.error(
                "Provider not configured",
                "The provider was used before Terraform configured it. This is a bug in Terraform or the provider.",
            );
        }
        data
    }
}

fn server_capabilities() -> pb::ServerCapabilities {
    pb::ServerCapabilities { plan_destroy: false, get_provider_schema_optional: false, move_resource_state: false }
}

/// Logs how long a handler took; `TF_LOG=DEBUG` shows where time goes.
struct Timed {
    rpc: &'static str,
    type_name: String,
    start: Instant,
}

impl Timed {
    fn new(rpc: &'static str, type_name: &str) -> Self {
        Self { rpc, type_name: type_name.to_string(), start: Instant::now() }
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        tracing::debug!(
            rpc = self.rpc,
            type_name = %self.type_name,
            micros = self.start.elapsed().as_micros() as u64,
            "handled"
        );
    }
}

#[tonic::async_trait]
impl<P: Provider> ProviderRpc for ProviderService<P> {
    async fn get_metadata(
        &self,
        _request: Request<pb::get_metadata::Request>,
    ) -> Result<Response<pb::get_metadata::Response>, Status> {
        Ok(Response::new(pb::get_metadata::Response {
            server_capabilities: Some(server_capabilities()),
            resources: self
                .resources
                .keys()
                .map(|name| pb::get_metadata::ResourceMetadata { type_name: name.to_string() })
                .collect(),
            data_sources: self
                .data_sources
                .keys()
                .map(|name| pb::get_metadata::DataSourceMetadata { type_name: name.to_string() })
                .collect(),
            ..Default::default()
        }))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<pb::get_provider_schema::Request>,
    ) -> Result<Response<pb::get_provider_schema::Response>, Status> {
        let _timed = Timed::new("GetProviderSchema", "");
        Ok(Response::new(self.schema_response.clone()))
    }

    async fn validate_provider_config(
        &self,
        request: Request<pb::validate_provider_config::Request>,
    ) -> Result<Response<pb::validate_provider_config::Response>, Status> {
        let request = request.into_inner();
        let diagnostics = validate(request.config.as_ref(), &self.schema, "provider configuration", |c, d| {
            self.provider.validate(c, d)
        });
        Ok(Response::new(pb::validate_provider_config::Response { diagnostics }))
    }

    async fn validate_resource_config(
        &self,
        request: Request<pb::validate_resource_config::Request>,
    ) -> Result<Response<pb::validate_resource_config::Response>, Status> {
        let request = request.into_inner();
        let entry = self.resource(&request.type_name)?;
        let write_only_allowed = request.client_capabilities.is_some_and(|c| c.write_only_attributes_allowed);
        let diagnostics = validate(request.config.as_ref(), &entry.schema, "resource configuration", |c, d| {
            if !write_only_allowed {
                for path in entry.schema.block.write_only_values_set(c, &AttributePath::root()) {
                    d.attribute_error(
                        path,
                        "Write-only attribute needs Terraform 1.11 or later",
                        "This Terraform does not support write-only attributes, so the value would be stored in plan and state. Use the attribute's stored counterpart (e.g. `password` for `password_wo`), or upgrade to Terraform 1.11 or later.",
                    );
                }
            }
            entry.resource.validate(c, d)
        });
        Ok(Response::new(pb::validate_resource_config::Response { diagnostics }))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<pb::validate_data_resource_config::Request>,
    ) -> Result<Response<pb::validate_data_resource_config::Response>, Status> {
        let request = request.into_inner();
        let entry = self.data_source(&request.type_name)?;
        let diagnostics = validate(request.config.as_ref(), &entry.schema, "data source configuration", |c, d| {
            entry.data_source.validate(c, d)
        });
        Ok(Response::new(pb::validate_data_resource_config::Response { diagnostics }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<pb::upgrade_resource_state::Request>,
    ) -> Result<Response<pb::upgrade_resource_state::Response>, Status> {
        let request = request.into_inner();
        let entry = self.resource(&request.type_name)?;
        let mut diags = Diagnostics::new();
        let raw = request.raw_state.unwrap_or_default();
        if raw.json.is_empty() && !raw.flatmap.is_empty() {
            diags.error(
                "Unsupported state format",
                "This state was written in Terraform 0.11's flatmap format, which this provider does not read.",
            );
            return Ok(Response::new(pb::upgrade_resource_state::Response {
                upgraded_state: None,
                diagnostics: convert::diagnostics(&diags),
            }));
        }
        let mut state = match super::codec::decode_json(&raw.json) {
            Ok(state) => state,
            Err(e) => {
                return Ok(Response::new(pb::upgrade_resource_state::Response {
                    upgraded_state: None,
                    diagnostics: convert::diagnostics(&decode_error("stored state", e)),
                }));
            }
        };
        if request.version < entry.schema.version {
            match entry.resource.state_upgrader() {
                Some(upgrader) => state = upgrader.upgrade(request.version, state, &mut diags),
                None => diags.error(
                    "Cannot upgrade state",
                    format!(
                        "{} state is at schema version {}, and this provider has no upgrade from it to version {}.",
                        request.type_name, request.version, entry.schema.version
                    ),
                ),
            }
        } else if request.version > entry.schema.version {
            diags.error(
                "State from a newer provider",
                format!(
                    "{} state is at schema version {}, newer than this provider's {}. Use the provider version that wrote it.",
                    request.type_name, request.version, entry.schema.version
                ),
            );
        }
        Ok(Response::new(pb::upgrade_resource_state::Response {
            upgraded_state: (!diags.has_errors()).then(|| encode(&state, &entry.schema.block)),
            diagnostics: convert::diagnostics(&diags),
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<pb::configure_provider::Request>,
    ) -> Result<Response<pb::configure_provider::Response>, Status> {
        let _timed = Timed::new("ConfigureProvider", "");
        let request = request.into_inner();
        let mut diags = Diagnostics::new();
        match decode(request.config.as_ref(), &self.schema.block) {
            Ok(config) => {
                let client = ClientInfo { terraform_version: request.terraform_version };
                if let Some(data) = self.provider.configure(&config, &client, &mut diags).await
                    && self.data.set(Arc::new(data)).is_err()
                {
                    diags.warning(
                        "Provider configured twice",
                        "Terraform configured this provider instance more than once; the first configuration stays in effect.",
                    );
                }
            }
            Err(e) => diags = decode_error("provider configuration", e),
        }
        Ok(Response::new(pb::configure_provider::Response { diagnostics: convert::diagnostics(&diags) }))
    }

    async fn read_resource(
        &self,
        request: Request<pb::read_resource::Request>,
    ) -> Result<Response<pb::read_resource::Response>, Status> {
        let request = request.into_inner();
        let _timed = Timed::new("ReadResource", &request.type_name);
        let entry = self.resource(&request.type_name)?;
        let block = &entry.schema.block;
        let mut diags = Diagnostics::new();
        let state = match decode(request.current_state.as_ref(), block) {
            Ok(state) => state,
            Err(e) => return Ok(Response::new(read_failure(decode_error("state", e)))),
        };
        let mut private = Private::decode(&request.private);
        let mut new_state = if state.is_null() {
            Value::Null
        } else if let Some(data) = self.configured(&mut diags) {
            match entry.resource.read(data, &state, &mut private, &mut diags).await {
                Some(new_state) => new_state,
                None if diags.has_errors() => state,
                None => {
                    tracing::info!(type_name = %request.type_name, "remote object gone; removing it from state");
                    Value::Null
                }
            }
        } else {
            state
        };
        block.null_write_only(&mut new_state);
        Ok(Response::new(pb::read_resource::Response {
            new_state: Some(encode(&new_state, block)),
            diagnostics: convert::diagnostics(&diags),
            private: private.encode(),
            deferred: None,
        }))
    }

    async fn plan_resource_change(
        &self,
        request: Request<pb::plan_resource_change::Request>,
    ) -> Result<Response<pb::plan_resource_change::Response>, Status> {
        let request = request.into_inner();
        let _timed = Timed::new("PlanResourceChange", &request.type_name);
        let entry = self.resource(&request.type_name)?;
        let block = &entry.schema.block;
        let decoded = (|| {
            Ok::<_, super::codec::CodecError>((
                decode(request.prior_state.as_ref(), block)?,
                decode(request.proposed_new_state.as_ref(), block)?,
                decode(request.config.as_ref(), block)?,
            ))
        })();
        let (prior, proposed, config) = match decoded {
            Ok(values) => values,
            Err(e) => {
                return Ok(Response::new(pb::plan_resource_change::Response {
                    diagnostics: convert::diagnostics(&decode_error("plan", e)),
                    ..Default::default()
                }));
            }
        };
        let mut diags = Diagnostics::new();
        let prior_private = Private::decode(&request.prior_private);
        let mut result = plan(block, &prior, &proposed, &config);
        if !result.planned.is_null()
            && let Some(modifier) = entry.resource.plan_modifier()
        {
            modifier
                .modify_plan(
                    self.data.get().map(Arc::as_ref),
                    PlanRequest { prior: &prior, config: &config, prior_private: &prior_private },
                    &mut result.planned,
                    &mut result.requires_replace,
                    &mut diags,
                )
                .await;
        }
        block.null_write_only(&mut result.planned);
        Ok(Response::new(pb::plan_resource_change::Response {
            planned_state: Some(encode(&result.planned, block)),
            requires_replace: result.requires_replace.iter().map(convert::attribute_path).collect(),
            planned_private: request.prior_private,
            diagnostics: convert::diagnostics(&diags),
            legacy_type_system: false,
            deferred: None,
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<pb::apply_resource_change::Request>,
    ) -> Result<Response<pb::apply_resource_change::Response>, Status> {
        let request = request.into_inner();
        let _timed = Timed::new("ApplyResourceChange", &request.type_name);
        let entry = self.resource(&request.type_name)?;
        let block = &entry.schema.block;
        let decoded = (|| {
            Ok::<_, super::codec::CodecError>((
                decode(request.prior_state.as_ref(), block)?,
                decode(request.planned_state.as_ref(), block)?,
                decode(request.config.as_ref(), block)?,
            ))
        })();
        let (prior, mut planned, config) = match decoded {
            Ok(values) => values,
            Err(e) => {
                return Ok(Response::new(pb::apply_resource_change::Response {
                    diagnostics: convert::diagnostics(&decode_error("planned change", e)),
                    ..Default::default()
                }));
            }
        };
        let mut diags = Diagnostics::new();
        let mut private = Private::decode(&request.planned_private);
        // Write-only values travel only in the configuration; the resource
        // sees them in `planned`, and they never reach the new state.
        block.copy_write_only(&config, &mut planned);
        let mut new_state = match self.configured(&mut diags) {
            None => prior.clone(),
            Some(data) if planned.is_null() => {
                entry.resource.delete(data, &prior, &mut diags).await;
                if diags.has_errors() { prior.clone() } else { Value::Null }
            }
            Some(data) if prior.is_null() => {
                let created = entry.resource.create(data, &planned, &mut private, &mut diags).await;
                created.unwrap_or_else(|| missing_state(&mut diags, "Create", &request.type_name, Value::Null))
            }
            Some(data) => {
                let updated = entry.resource.update(data, &prior, &planned, &mut private, &mut diags).await;
                updated.unwrap_or_else(|| missing_state(&mut diags, "Update", &request.type_name, prior.clone()))
            }
        };
        block.null_write_only(&mut new_state);
        Ok(Response::new(pb::apply_resource_change::Response {
            new_state: Some(encode(&new_state, block)),
            private: private.encode(),
            diagnostics: convert::diagnostics(&diags),
            legacy_type_system: false,
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<pb::import_resource_state::Request>,
    ) -> Result<Response<pb::import_resource_state::Response>, Status> {
        let request = request.into_inner();
        let _timed = Timed::new("ImportResourceState", &request.type_name);
        let entry = self.resource(&request.type_name)?;
        let mut diags = Diagnostics::new();
        let mut imported = Vec::new();
        match (entry.resource.importer(), self.configured(&mut diags)) {
            (None, _) => diags.error("Import not supported", format!("{} cannot be imported.", request.type_name)),
            (Some(_), None) => {}
            (Some(importer), Some(data)) => {
                if let Some(seed) = importer.import(data, &request.id, &mut diags).await {
                    let seed = entry.schema.block.conform(&seed);
                    let mut private = Private::default();
                    match entry.resource.read(data, &seed, &mut private, &mut diags).await {
                        Some(mut state) => {
                            entry.schema.block.null_write_only(&mut state);
                            imported.push(pb::import_resource_state::ImportedResource {
                                type_name: request.type_name.clone(),
                                state: Some(encode(&state, &entry.schema.block)),
                                private: private.encode(),
                            })
                        }
                        None if !diags.has_errors() => diags.error(
                            "Cannot import non-existent remote object",
                            format!("importing {} {:?}: no such object exists.", request.type_name, request.id),
                        ),
                        None => {}
                    }
                }
            }
        }
        Ok(Response::new(pb::import_resource_state::Response {
            imported_resources: imported,
            diagnostics: convert::diagnostics(&diags),
            deferred: None,
        }))
    }

    async fn read_data_source(
        &self,
        request: Request<pb::read_data_source::Request>,
    ) -> Result<Response<pb::read_data_source::Response>, Status> {
        let request = request.into_inner();
        let _timed = Timed::new("ReadDataSource", &request.type_name);
        let entry = self.data_source(&request.type_name)?;
        let block = &entry.schema.block;
        let mut diags = Diagnostics::new();
        let state = match decode(request.config.as_ref(), block) {
            Err(e) => {
                diags = decode_error("data source configuration", e);
                None
            }
            Ok(config) => match self.configured(&mut diags) {
                Some(data) => entry.data_source.read(data, &config, &mut diags).await,
                None => None,
            },
        };
        Ok(Response::new(pb::read_data_source::Response {
            state: state.map(|s| encode(&s, block)),
            diagnostics: convert::diagnostics(&diags),
            deferred: None,
        }))
    }

    async fn stop_provider(
        &self,
        _request: Request<pb::stop_provider::Request>,
    ) -> Result<Response<pb::stop_provider::Response>, Status> {
        // In-flight calls run to completion so their results reach state;
        // Terraform then shuts the plugin down through the controller.
        tracing::info!("StopProvider received; letting in-flight operations finish");
        Ok(Response::new(pb::stop_provider::Response { error: String::new() }))
    }
}

/// Decodes a configuration and runs the schema's validators, then the
/// owner's own cross-attribute checks.
fn validate(
    config: Option<&pb::DynamicValue>,
    schema: &Schema,
    what: &str,
    own_checks: impl FnOnce(&Value, &mut Diagnostics),
) -> Vec<pb::Diagnostic> {
    let diags = match decode(config, &schema.block) {
        Ok(config) => {
            let mut diags = Diagnostics::new();
            schema.block.validate(&config, &AttributePath::root(), &mut diags);
            own_checks(&config, &mut diags);
            diags
        }
        Err(e) => decode_error(what, e),
    };
    convert::diagnostics(&diags)
}

fn read_failure(diags: Diagnostics) -> pb::read_resource::Response {
    pb::read_resource::Response { diagnostics: convert::diagnostics(&diags), ..Default::default() }
}

/// What ApplyResourceChange answers when a create or update returned no
/// state: with errors, `fallback` (nothing for a create, the prior state for
/// an update); without any, a bug in the resource, said as
/// terraform-plugin-framework says it rather than written silently.
fn missing_state(diags: &mut Diagnostics, operation: &str, type_name: &str, fallback: Value) -> Value {
    if !diags.has_errors() {
        diags.error(
            format!("Missing Resource State After {operation}"),
            format!(
                "The provider returned no state for {type_name} after a {} with no errors. This is always a bug in the provider; please report it.",
                operation.to_lowercase()
            ),
        );
    }
    fallback
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::framework::{Attribute, Block};

    /// A resource whose create and update return no state and no error: a
    /// provider bug the server must report, not record as nothing.
    struct Forgetful;

    #[async_trait]
    impl Resource<()> for Forgetful {
        fn type_name(&self) -> &'static str {
            "test_forgetful"
        }
        fn schema(&self) -> Schema {
            Schema::new(0, Block::new("").attribute(Attribute::string("name").required()))
        }
        async fn create(&self, _: &(), _: &Value, _: &mut Private, _: &mut Diagnostics) -> Option<Value> {
            None
        }
        async fn read(&self, _: &(), state: &Value, _: &mut Private, _: &mut Diagnostics) -> Option<Value> {
            Some(state.clone())
        }
        async fn update(&self, _: &(), _: &Value, _: &Value, _: &mut Private, _: &mut Diagnostics) -> Option<Value> {
            None
        }
        async fn delete(&self, _: &(), _: &Value, _: &mut Diagnostics) {}
    }

    struct TestProvider;

    #[async_trait]
    impl Provider for TestProvider {
        type Data = ();
        fn type_name(&self) -> &'static str {
            "test"
        }
        fn schema(&self) -> Schema {
            Schema::new(0, Block::new(""))
        }
        async fn configure(&self, _: &Value, _: &ClientInfo, _: &mut Diagnostics) -> Option<()> {
            Some(())
        }
        fn resources(&self) -> Vec<Arc<dyn Resource<()>>> {
            vec![Arc::new(Forgetful)]
        }
        fn data_sources(&self) -> Vec<Arc<dyn DataSource<()>>> {
            Vec::new()
        }
    }

    async fn configured() -> ProviderService<TestProvider> {
        let service = ProviderService::new(TestProvider);
        let config = encode(&Value::object::<&str>([]), &service.schema.block);
        let request = pb::configure_provider::Request { config: Some(config), ..Default::default() };
        service.configure_provider(Request::new(request)).await.unwrap();
        service
    }

    async fn apply(
        service: &ProviderService<TestProvider>,
        prior: &Value,
        planned: &Value,
    ) -> pb::apply_resource_change::Response {
        let block = &service.resources["test_forgetful"].schema.block;
        let request = pb::apply_resource_change::Request {
            type_name: "test_forgetful".into(),
            prior_state: Some(encode(prior, block)),
            planned_state: Some(encode(planned, block)),
            config: Some(encode(planned, block)),
            ..Default::default()
        };
        service.apply_resource_change(Request::new(request)).await.unwrap().into_inner()
    }

    fn summaries(response: &pb::apply_resource_change::Response) -> Vec<&str> {
        response.diagnostics.iter().map(|d| d.summary.as_str()).collect()
    }

    #[tokio::test]
    async fn a_create_returning_no_state_without_an_error_is_reported() {
        let service = configured().await;
        let planned = Value::object([("name", Value::from("a"))]);
        let response = apply(&service, &Value::Null, &planned).await;
        assert_eq!(summaries(&response), ["Missing Resource State After Create"]);
        assert!(response.diagnostics[0].detail.contains("test_forgetful"), "{:?}", response.diagnostics);
    }

    #[tokio::test]
    async fn an_update_returning_no_state_without_an_error_is_reported_and_keeps_the_prior_state() {
        let service = configured().await;
        let prior = Value::object([("name", Value::from("a"))]);
        let planned = Value::object([("name", Value::from("b"))]);
        let response = apply(&service, &prior, &planned).await;
        assert_eq!(summaries(&response), ["Missing Resource State After Update"]);
        let block = &service.resources["test_forgetful"].schema.block;
        assert_eq!(decode(response.new_state.as_ref(), block).unwrap(), prior);
    }
}
