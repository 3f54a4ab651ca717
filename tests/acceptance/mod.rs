//! Acceptance tests: real terraform, the real plugin binary, moto.

mod backup_policy;
mod data_sources;
mod multi_account;
mod region_mapping;
mod repository;
mod validation;
mod worker_configuration;

use crate::support::Moto;

/// The provider block every catalog-resource test uses: home region
/// us-east-1, the emulator, a scheduler role.
pub fn provider(moto: &Moto) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    coffer = {{ source = "coffer/coffer" }}
  }}
}}

provider "coffer" {{
  region             = "us-east-1"
  endpoint_url       = "{}"
  s3_use_path_style  = true
  scheduler_role_arn = "{}"
  default_tags       = {{ Owner = "platform" }}
}}
"#,
        moto.endpoint,
        crate::support::aws::SCHEDULER_ROLE
    )
}

/// The resource's values in the state, or a panic naming it.
pub fn state_of(wd: &crate::support::Workdir, address: &str) -> serde_json::Value {
    crate::support::resource_values(&wd.state_json(), address)
        .unwrap_or_else(|| panic!("{address} is not in the state"))
        .clone()
}

/// The planned actions for `address`, e.g. `["update"]`.
pub fn planned_actions(wd: &crate::support::Workdir, address: &str) -> serde_json::Value {
    let plan = wd.plan_json();
    plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == address)
        .map(|c| c["change"]["actions"].clone())
        .unwrap_or(serde_json::Value::Null)
}
