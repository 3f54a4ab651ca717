//! Test support shared by every acceptance test: tool installation, a private
//! moto server per test, and Terraform workdirs wired to the provider binary
//! cargo just built.
//!
//! A typical test:
//! ```ignore
//! let moto = Moto::start();
//! for tf in terraform_versions() {
//!     moto.reset();
//!     let wd = Workdir::new(&tf, &provider_binary());
//!     wd.write("main.tf", &(provider_block(&moto, "us-east-1") + RESOURCES));
//!     wd.init();
//!     wd.apply();
//!     wd.assert_no_changes();
//! }
//! ```

// Not every test module uses every helper.
#![allow(dead_code)]

pub mod aws;
pub mod estate;
pub mod fault_proxy;
pub mod moto;
pub mod plugin;
pub mod sandbox;
pub mod terraform;
pub mod tools;

mod selftest;

use std::path::PathBuf;

pub use moto::Moto;
// Re-exported for the acceptance tests; unused until they exist.
#[allow(unused_imports)]
pub use terraform::{Terraform, Workdir, resource_values, terraform_versions};

/// The plugin binary cargo built for this test run.
pub fn provider_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_terraform-provider-coffer"))
}

/// HCL declaring the `coffer/coffer` provider and configuring it for `moto`
/// in `region`; tests append their resources to it.
pub fn provider_block(moto: &Moto, region: &str) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    coffer = {{
      source = "coffer/coffer"
    }}
  }}
}}

provider "coffer" {{
  region            = "{region}"
  endpoint_url      = "{endpoint}"
  s3_use_path_style = true
}}
"#,
        endpoint = moto.endpoint,
    )
}

/// Runs an async block (AWS SDK calls) from a synchronous test, on a fresh
/// current-thread runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("build tokio runtime").block_on(future)
}
