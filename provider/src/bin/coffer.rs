//! The `coffer` command line. The executor commands (run, agent, restore,
//! repo) build on the same library as the Terraform plugin.

use std::process::ExitCode;

use clap::Parser;

/// Coffer: backup-as-code for AWS.
///
/// Backup policies, repositories, region mappings and worker configurations
/// are declared with Terraform through the `coffer/coffer` provider; this
/// command will be the executor that carries them out. This release ships the
/// provider and its worker configurations; the executor commands (run, agent,
/// restore, repo) follow.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, about, long_about)]
struct Cli {}

fn main() -> ExitCode {
    coffer::logging::init("info");
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}
