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

/// Targets that log requests with their credentials (SigV4 canonical
/// requests with `x-amz-security-token`, headers) at debug or trace level:
/// capped at info whatever sets the level, `RUST_LOG` included.
const SECRET_BEARING_TARGETS: &[&str] = &[
    "aws_sigv4",
    "aws_runtime",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_config",
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "rustls",
];

/// The filter for a level or `RUST_LOG` directives: a directive naming
/// one of [`SECRET_BEARING_TARGETS`] (or a module in it) is dropped, and
/// each of them is capped at info.
pub fn filter_directives(base: &str) -> String {
    let names_secret_target = |directive: &str| {
        let target = directive.split(['=', '[']).next().unwrap_or_default().trim();
        SECRET_BEARING_TARGETS.iter().any(|t| target == *t || target.starts_with(&format!("{t}::")))
    };
    base.split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !names_secret_target(d))
        .map(str::to_string)
        .chain(SECRET_BEARING_TARGETS.iter().map(|t| format!("{t}=info")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Installs the stderr subscriber; `default_level` applies when no variable
/// is set.
pub fn init(default_level: &str) {
    let from_terraform = ["TF_LOG_PROVIDER", "TF_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok().and_then(|v| terraform_level(&v)));
    let base = match (from_terraform, std::env::var("RUST_LOG")) {
        (Some(level), _) => level.to_string(),
        (None, Ok(directives)) if !directives.trim().is_empty() => directives,
        _ => default_level.to_string(),
    };
    let filter = EnvFilter::try_new(filter_directives(&base))
        .unwrap_or_else(|_| EnvFilter::new(filter_directives(default_level)));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21, defect 9: the caps applied only when TF_LOG set the level.
    #[test]
    fn rust_log_trace_keeps_the_signing_crates_at_info() {
        let directives = filter_directives("trace,aws_sigv4=trace,aws_smithy_runtime::client=trace,coffer=debug");
        assert!(directives.starts_with("trace,coffer=debug,aws_sigv4=info,"), "{directives}");
        assert!(directives.ends_with("aws_sigv4=info,aws_runtime=info,aws_smithy_runtime=info,aws_smithy_http_client=info,aws_config=info,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info"), "{directives}");
        assert!(EnvFilter::try_new(&directives).is_ok());
    }
}
