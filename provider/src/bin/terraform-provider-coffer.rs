//! The Terraform plugin: started by `terraform`, never by hand.

use std::process::ExitCode;

fn main() -> ExitCode {
    coffer::logging::init("warn");
    coffer::server::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("terraform-provider-coffer: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(coffer::server::serve(coffer::provider::CofferProvider::new())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-coffer: {e}");
            ExitCode::FAILURE
        }
    }
}
