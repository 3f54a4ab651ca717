//! Coffer's data sources, one file each.

pub mod iam_policy;
pub mod protection;
pub mod restore_points;
pub mod sessions;

use std::collections::BTreeMap;

use coffer_executor::Executor;
use coffer_model::policy::PolicyDocument;
use coffer_model::region_mapping::RegionMappingDocument;
use coffer_tfplugin::framework::{Diagnostics, Value};

/// One policy (or every policy) with the region mappings its rules use.
async fn policies(
    executor: &Executor,
    name: Option<&str>,
    diags: &mut Diagnostics,
) -> Option<Vec<(PolicyDocument, BTreeMap<String, RegionMappingDocument>)>> {
    let found = match name {
        Some(name) => executor.policy(name).await.map(|p| vec![p]),
        None => executor.policies().await.map(|all| all.into_values().collect()),
    };
    let policies = match found {
        Ok(policies) => policies,
        Err(e) => {
            diags.error("Cannot read the backup policies", e.to_string());
            return None;
        }
    };
    let mut out = Vec::new();
    for policy in policies {
        let mappings = match executor.region_mappings(&policy.rules).await {
            Ok(mappings) => mappings,
            Err(e) => {
                diags.error(format!("Cannot read the region mappings of {}", policy.name), e.to_string());
                return None;
            }
        };
        out.push((policy, mappings));
    }
    Some(out)
}

/// The configuration with `id` and a computed list filled in.
fn listed(config: &Value, id: String, list: &str, rows: Vec<Value>) -> Value {
    let mut value = config.clone();
    if let Value::Map(fields) = &mut value {
        fields.insert("id".into(), id.into());
        fields.insert(list.into(), Value::List(rows));
    }
    value
}

/// An object value from its attributes.
fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn strings<'a>(items: impl Iterator<Item = &'a String>) -> Value {
    Value::List(items.map(|s| Value::from(s.as_str())).collect())
}
