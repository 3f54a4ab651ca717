//! Coffer's resources, one file each, and what they share.

pub mod backup_policy;
mod preflight;
pub mod region_mapping;
pub mod repository;
pub mod tags;
pub mod worker_configuration;

use std::str::FromStr;

use crate::conns::Coffer;
use coffer_aws::catalog::CatalogError;
use coffer_tfplugin::framework::{AttributePath, Diagnostics, Value};
use strum::VariantNames;

/// The enum a string attribute names, `default` when it is null. Plan-time
/// validation (`OneOf(T::VARIANTS)`) lets only those names through, so a
/// failure here is a plan this build never validated: reported at the
/// attribute, never guessed.
pub fn expand_enum<T: FromStr + VariantNames>(
    value: &Value,
    path: AttributePath,
    default: Option<T>,
    diags: &mut Diagnostics,
) -> Option<T> {
    let Some(name) = value.as_str() else {
        if default.is_none() {
            diags.attribute_error(path.clone(), "Missing value", format!("{path}: a value is required."));
        }
        return default;
    };
    match name.parse() {
        Ok(parsed) => Some(parsed),
        Err(_) => {
            diags.attribute_error(
                path.clone(),
                "Invalid value",
                format!("{path}: {name:?} is not one of {}.", T::VARIANTS.join(", ")),
            );
            None
        }
    }
}

/// Reports, at their paths, the regions that are not enabled for the
/// account. A failure to list regions skips the check (the apply will say).
pub async fn check_regions_enabled(data: &Coffer, regions: &[(AttributePath, String)], diags: &mut Diagnostics) {
    if regions.is_empty() {
        return;
    }
    match data.aws.enabled_regions().await {
        Ok(enabled) => {
            for (path, region) in regions {
                if !enabled.iter().any(|r| r == region) {
                    diags.attribute_error(
                        path.clone(),
                        "Unknown region",
                        format!(
                            "{path}: {region:?} is not enabled for this account; enabled regions: {}.",
                            enabled.join(", ")
                        ),
                    );
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing regions; skipping the region check"),
    }
}

/// The seed state of a catalog document imported by its name.
pub fn import_by_name(
    type_name: &str,
    what: &str,
    id: &str,
    diags: &mut Diagnostics,
) -> Option<coffer_tfplugin::framework::Value> {
    if let Err(why) = coffer_model::validation::coffer_name(id) {
        diags.error("Invalid import id", format!("importing {type_name}: the id is the {what}'s name; {why}"));
        return None;
    }
    Some(coffer_tfplugin::framework::Value::object([("name", coffer_tfplugin::framework::Value::from(id))]))
}

/// The diagnostic for a failed catalog write of a named document.
pub fn catalog_write_error(
    diags: &mut Diagnostics,
    action: &str,
    kind: coffer_aws::catalog::Kind,
    name: &str,
    e: CatalogError,
) {
    let hint = match (&e, kind) {
        (CatalogError::AlreadyExists { .. }, coffer_aws::catalog::Kind::Policy) => {
            format!(" Import it with: terraform import coffer_backup_policy.<address> {name}")
        }
        (CatalogError::AlreadyExists { .. }, coffer_aws::catalog::Kind::RegionMapping) => {
            format!(" Import it with: terraform import coffer_region_mapping.<address> {name}")
        }
        _ => String::new(),
    };
    diags.error(
        format!("{} {} {name}", capitalize(action), kind.noun()),
        format!("{action} {} {name}: {e}.{hint}", kind.noun()),
    );
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
