//! Logging to stderr through `tracing`, honouring Terraform's variables:
//! `TF_LOG_PROVIDER`, then `TF_LOG` (TRACE, DEBUG, INFO, WARN, ERROR; `JSON`
//! means TRACE), then `RUST_LOG` for finer filters. Stdout belongs to the
//! plugin handshake, so nothing else may write there.

use tracing_subscriber::EnvFilter;

/// The filter directive for a Terraform log level, if it names one.
pub fn terraform_level(level: &str) -> Option<&'static str> {
    match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" | "JSON" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARN" => Some("warn"),
        "ERROR" => Some("error"),
        "OFF" => Some("off"),
        _ => None,
    }
}

/// Installs the stderr subscriber; `default_level` applies when no variable
/// is set.
pub fn init(default_level: &str) {
    let from_terraform = ["TF_LOG_PROVIDER", "TF_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok().and_then(|v| terraform_level(&v)));
    let filter = match (from_terraform, std::env::var("RUST_LOG")) {
        // The AWS SDK's signing and runtime crates log canonical requests
        // (session tokens included) at trace level: never below info.
        (Some(level), _) => EnvFilter::new(format!(
            "{level},h2=info,hyper=info,hyper_util=info,tower=info,rustls=info,\
             aws_sigv4=info,aws_runtime=info,aws_smithy_runtime=info,aws_smithy_http_client=info,aws_config=info"
        )),
        (None, Ok(directives)) => EnvFilter::new(directives),
        (None, Err(_)) => EnvFilter::new(default_level),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
