//! The Terraform plugin: started by `terraform`, never by hand.

use std::process::ExitCode;

use coffer_tfplugin::server::{self, ServeError};

fn main() -> ExitCode {
    coffer::logging::init("warn");
    server::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("terraform-provider-coffer: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::serve(coffer::provider::CofferProvider::new())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ServeError::NotRunByTerraform) => {
            eprintln!(
                "terraform-provider-coffer: {e}.\n\
                 Declare the provider in a configuration (required_providers {{ coffer = {{ source = \"coffer/coffer\" }} }})\n\
                 and run `terraform init` and `terraform plan`; the `coffer` command is the one to run yourself."
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("terraform-provider-coffer: {e}");
            ExitCode::FAILURE
        }
    }
}
