//! `coffer_region_mapping`: where snapshots are replicated — a source
//! region, a target region, optionally another account (through a role)
//! and a KMS key to re-encrypt copies with. Stored as a catalog document.

use async_trait::async_trait;
use coffer_model::CatalogDocument;
use coffer_model::region_mapping::{Encrypt, RegionMappingDocument};

use crate::conns::Coffer;
use crate::resources::{catalog_write_error, check_regions_enabled, expand_enum};
use coffer_aws::AssumeRole;
use coffer_aws::catalog::{CatalogError, Kind};
use coffer_aws::kms::{self, KeyAccess};
use coffer_model::validation;
use coffer_tfplugin::framework::validators::{OneOf, string};
use coffer_tfplugin::framework::{
    Attribute, AttributePath, Block, Diagnostics, Import, ModifyPlan, PlanRequest, Private, Resource, Schema, Value,
};
use strum::VariantNames;

pub const TYPE_NAME: &str = "coffer_region_mapping";
const ETAG: &str = "etag";

pub struct RegionMapping;

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Where snapshots are replicated: from a source region to a target region, optionally into another \
             account through an IAM role and re-encrypted with a KMS key there. Stored as a document in the catalog \
             and used by `replicate` in `coffer_backup_policy` rules.",
        )
        .attribute(
            Attribute::string("id")
                .computed()
                .use_state_for_unknown()
                .describe("The mapping's name; what `replicate.region_mapping_ids` refers to."),
        )
        .attribute(
            Attribute::string("name")
                .required()
                .requires_replace()
                .describe("Name of the mapping, unique in the catalog. 1-64 letters, digits, `-`, `_`, `.`.")
                .validate(string(validation::coffer_name)),
        )
        .attribute(
            Attribute::string("source_region")
                .required()
                .describe("Region whose snapshots are copied.")
                .validate(string(validation::region)),
        )
        .attribute(
            Attribute::string("target_region")
                .required()
                .describe("Region the copies are made in; must differ from `source_region`.")
                .validate(string(validation::region)),
        )
        .attribute(
            Attribute::string("target_role_arn")
                .optional()
                .describe("IAM role in the target account, assumed to make and own the copies there. Omit to copy within this account.")
                .validate(string(validation::role_arn)),
        )
        .attribute(
            Attribute::string("kms_key_arn")
                .optional()
                .describe(
                    "KMS key in `target_region` that copies are encrypted with. Omit to keep the source's encryption. \
                     Required to copy encrypted RDS snapshots into another region or account.",
                )
                .validate(string(validation::kms_key_arn)),
        )
        .attribute(
            Attribute::string("encrypt")
                .default("encrypted_only")
                .describe(
                    "Which source snapshots are re-encrypted with `kms_key_arn`: `encrypted_only` (default: copies of \
                     unencrypted snapshots stay unencrypted) or `all` (every copy is encrypted; needs `kms_key_arn`).",
                )
                .validate(OneOf(Encrypt::VARIANTS)),
        ),
    )
}

fn optional(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

fn expand_mapping(planned: &Value, diags: &mut Diagnostics) -> Option<RegionMappingDocument> {
    Some(RegionMappingDocument {
        format_version: RegionMappingDocument::FORMAT_VERSION,
        name: planned.get("name").as_str().unwrap_or_default().to_string(),
        source_region: planned.get("source_region").as_str().unwrap_or_default().to_string(),
        target_region: planned.get("target_region").as_str().unwrap_or_default().to_string(),
        target_role_arn: optional(planned.get("target_role_arn")),
        kms_key_arn: optional(planned.get("kms_key_arn")),
        encrypt: expand_enum(planned.get("encrypt"), AttributePath::attr("encrypt"), Some(Encrypt::default()), diags)?,
    })
}

fn flatten_mapping(document: &RegionMappingDocument) -> Value {
    let optional = |v: &Option<String>| v.as_deref().map(Value::from).unwrap_or(Value::Null);
    Value::object([
        ("id", Value::from(document.name.as_str())),
        ("name", Value::from(document.name.as_str())),
        ("source_region", Value::from(document.source_region.as_str())),
        ("target_region", Value::from(document.target_region.as_str())),
        ("target_role_arn", optional(&document.target_role_arn)),
        ("kms_key_arn", optional(&document.kms_key_arn)),
        ("encrypt", Value::from(document.encrypt.as_str())),
    ])
}

/// The mapping's key as the copies' maker sees it — through `target_role_arn` when there is
/// one — checked at plan when the key, the role or the region changes: a key that is missing,
/// not enabled, or that the target role may not use would fail every copy at run time. The
/// provider's own credentials are not the workers', so what they cannot do is a warning.
async fn check_key(data: &Coffer, request: &PlanRequest<'_>, diags: &mut Diagnostics) {
    let (config, prior) = (request.config, request.prior);
    let (Some(key), Some(region)) = (config.get("kms_key_arn").as_str(), config.get("target_region").as_str()) else {
        return;
    };
    let role = config.get("target_role_arn");
    let unchanged =
        ["kms_key_arn", "target_role_arn", "target_region"].iter().all(|a| config.get(a).same_as(prior.get(a)));
    if role.is_unknown() || unchanged {
        return;
    }
    let at = AttributePath::attr("kms_key_arn");
    let assumed;
    let (clients, who) = match role.as_str() {
        None => (data.aws.as_ref(), "the provider's credentials".to_string()),
        Some(role_arn) => {
            let assume = AssumeRole {
                role_arn: role_arn.to_string(),
                external_id: None,
                session_name: Some("coffer-plan".into()),
                duration: None,
            };
            match data.aws.assuming(assume).await {
                Ok(clients) => {
                    assumed = clients;
                    (&assumed, format!("role {role_arn}"))
                }
                Err(e) => {
                    diags.attribute_warning(
                        AttributePath::attr("target_role_arn"),
                        "Key not checked",
                        format!(
                            "target_role_arn: the provider's credentials could not assume {role_arn} to check \
                             kms_key_arn ({e}). The workers assume it at run time; a key it may not use fails the copies then."
                        ),
                    );
                    return;
                }
            }
        }
    };
    let problem = match kms::key_access(&clients.kms(region), key).await {
        Ok(KeyAccess::Usable) => return,
        Ok(KeyAccess::Missing) => format!("there is no KMS key {key} in {region}, as seen by {who}."),
        Ok(KeyAccess::NotEnabled(state)) => format!("key {key} is {state}; copies need an enabled key."),
        Ok(KeyAccess::Denied(why)) => {
            let fix = "its key policy must let the role use the key for copies (kms:DescribeKey, kms:CreateGrant, \
                       kms:Encrypt, kms:Decrypt, kms:ReEncrypt*, kms:GenerateDataKeyWithoutPlaintext)";
            if role.is_null() {
                let detail = format!(
                    "kms_key_arn: the provider's credentials may not describe key {key} ({why}); the workers' role \
                     makes the copies, and {fix}."
                );
                diags.attribute_warning(at, "Key not checked", detail);
                return;
            }
            format!("{who} may not use key {key} ({why}); {fix}.")
        }
        Err(e) => {
            tracing::warn!(key, error = %e, "describing the mapping's key; skipping its check");
            return;
        }
    };
    diags.attribute_error(at, "Unusable KMS key", format!("kms_key_arn: {problem}"));
}

/// Cross-attribute rules, checked at plan time.
fn check(config: &Value, diags: &mut Diagnostics) {
    let (source, target) = (config.get("source_region").as_str(), config.get("target_region").as_str());
    if let (Some(source), Some(target)) = (source, target)
        && source == target
    {
        diags.attribute_error(
            AttributePath::attr("target_region"),
            "Invalid value",
            format!("target_region must differ from source_region; both are {source:?}."),
        );
    }
    let key = config.get("kms_key_arn");
    if let (Some(key), Some(target)) = (key.as_str(), target)
        && let Some(key_region) = validation::arn_region(key)
        && validation::kms_key_arn(key).is_ok()
        && key_region != target
    {
        diags.attribute_error(
            AttributePath::attr("kms_key_arn"),
            "Invalid value",
            format!("kms_key_arn must be a key in target_region {target:?}; {key:?} is in {key_region:?}."),
        );
    }
    if config.get("encrypt").as_str() == Some(Encrypt::All.as_str()) && key.is_null() {
        diags.attribute_error(
            AttributePath::attr("encrypt"),
            "Missing kms_key_arn",
            "encrypt = \"all\" encrypts every copy, which needs kms_key_arn (a key in the target region).",
        );
    }
}

async fn read_document(data: &Coffer, name: &str, private: &mut Private, diags: &mut Diagnostics) -> Option<Value> {
    match data.catalog().get::<RegionMappingDocument>(name).await {
        Ok(document) => {
            private.set(ETAG, Some(&document.etag));
            Some(flatten_mapping(&document.body))
        }
        Err(CatalogError::NotFound) => None,
        Err(e) => {
            diags.error(format!("Reading region mapping {name}"), format!("reading region mapping {name}: {e}"));
            None
        }
    }
}

#[async_trait]
impl Resource<Coffer> for RegionMapping {
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
        let document = expand_mapping(planned, diags)?;
        let name = document.name.clone();
        if let Err(e) = data.catalog().create(&name, &document).await {
            catalog_write_error(diags, "creating", Kind::RegionMapping, &name, e);
            return None;
        }
        tracing::info!(%name, "created region mapping");
        read_document(data, &name, private, diags).await
    }

    async fn read(
        &self,
        data: &Coffer,
        state: &Value,
        private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let name = state.get("name").as_str()?.to_string();
        read_document(data, &name, private, diags).await
    }

    async fn update(
        &self,
        data: &Coffer,
        _prior: &Value,
        planned: &Value,
        private: &mut Private,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let document = expand_mapping(planned, diags)?;
        let name = document.name.clone();
        let Some(etag) = private.get(ETAG).map(str::to_string) else {
            diags.error(
                format!("Updating region mapping {name}"),
                format!("updating region mapping {name}: no record of the document version Terraform last read; run `terraform apply -refresh-only` first."),
            );
            return None;
        };
        if let Err(e) = data.catalog().replace(&name, &document, &etag).await {
            catalog_write_error(diags, "updating", Kind::RegionMapping, &name, e);
            return None;
        }
        read_document(data, &name, private, diags).await
    }

    async fn delete(&self, data: &Coffer, state: &Value, diags: &mut Diagnostics) {
        let Some(name) = state.get("name").as_str() else { return };
        if let Err(e) = data.catalog().delete(Kind::RegionMapping, name).await {
            diags.error(format!("Deleting region mapping {name}"), format!("deleting region mapping {name}: {e}"));
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
impl Import<Coffer> for RegionMapping {
    async fn import(&self, _data: &Coffer, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        crate::resources::import_by_name(TYPE_NAME, "mapping", id, diags)
    }
}

#[async_trait]
impl ModifyPlan<Coffer> for RegionMapping {
    async fn modify_plan(
        &self,
        data: Option<&Coffer>,
        request: PlanRequest<'_>,
        planned: &mut Value,
        _requires_replace: &mut Vec<AttributePath>,
        diags: &mut Diagnostics,
    ) {
        if let Some(name) = planned.get("name").as_str() {
            let name = name.to_string();
            planned.set("id", name.as_str());
        }
        let Some(data) = data else { return };
        let regions: Vec<(AttributePath, String)> = ["source_region", "target_region"]
            .into_iter()
            .filter(|a| !request.config.get(a).same_as(request.prior.get(a)))
            .filter_map(|a| request.config.get(a).as_str().map(|r| (AttributePath::attr(a), r.to_string())))
            .collect();
        check_regions_enabled(data, &regions, diags).await;
        check_key(data, &request, diags).await;
    }
}
