//! The `coffer` command line: run, agent, points, sessions. See `coffer::cli`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    coffer::logging::init("warn");
    let cli = coffer::cli::Cli::parse();
    match coffer::cli::main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coffer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
