//! The plugin server: go-plugin's handshake (magic cookie, protocol version,
//! the one stdout line), auto-mTLS, the go-plugin side services (controller,
//! stdio, health) and the tfplugin6 Provider service, which turns RPCs into
//! calls on a framework [`Provider`].

pub mod codec;
mod connection;
mod convert;
mod go_plugin;
mod provider_service;
pub mod tls;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;

use crate::framework::Provider;
pub use provider_service::ProviderService;

/// Generated from proto/tfplugin6.proto.
#[allow(clippy::all, missing_docs)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// Generated from go-plugin's grpc_controller.proto and grpc_stdio.proto.
#[allow(clippy::all, missing_docs)]
pub mod go_plugin_proto {
    tonic::include_proto!("plugin");
}

pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// go-plugin's core protocol version, the first field of the handshake line.
const CORE_PROTOCOL_VERSION: u32 = 1;
/// The Terraform plugin protocol major version we speak.
pub const PLUGIN_PROTOCOL_VERSION: u32 = 6;

#[derive(Debug, Error)]
pub enum ServeError {
    /// Started by hand: the binary adds what to run instead.
    #[error("this is a Terraform plugin: it is started by `terraform`, not by hand")]
    NotRunByTerraform,
    #[error(
        "Terraform offers plugin protocol versions {offered:?}, but this provider speaks only version 6 (Terraform 1.0 or newer)"
    )]
    UnsupportedProtocol { offered: String },
    #[error("listening on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    #[error("setting up TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("writing the handshake line: {0}")]
    Handshake(std::io::Error),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `provider` to the Terraform process that started us, until
/// Terraform asks us to shut down.
pub async fn serve<P: Provider>(provider: P) -> Result<(), ServeError> {
    if std::env::var(MAGIC_COOKIE_KEY).as_deref() != Ok(MAGIC_COOKIE_VALUE) {
        return Err(ServeError::NotRunByTerraform);
    }
    if let Ok(offered) = std::env::var("PLUGIN_PROTOCOL_VERSIONS")
        && !offered.split(',').any(|v| v.trim() == PLUGIN_PROTOCOL_VERSION.to_string())
    {
        return Err(ServeError::UnsupportedProtocol { offered });
    }

    let listener = bind().await.map_err(ServeError::Listen)?;
    let address = listener.local_addr().map_err(ServeError::Listen)?;
    let server_tls = match std::env::var("PLUGIN_CLIENT_CERT") {
        Ok(pem) if !pem.is_empty() => Some(tls::server_tls(&pem)?),
        _ => None,
    };

    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_service_status("plugin", tonic_health::ServingStatus::Serving).await;
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(tfplugin6::provider_server::ProviderServer::new(ProviderService::new(provider)))
        .add_service(go_plugin::controller(shutdown_tx))
        .add_service(go_plugin::stdio())
        .add_service(health_service);

    ignore_interrupts();

    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel(16);
    let tls_config = server_tls.as_ref().map(|t| t.config.clone());
    tokio::spawn(connection::accept_loop(listener, tls_config, conn_tx));

    let cert = server_tls.map(|t| t.announced_cert).unwrap_or_default();
    let line = format!("{CORE_PROTOCOL_VERSION}|{PLUGIN_PROTOCOL_VERSION}|tcp|{address}|grpc|{cert}\n");
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(line.as_bytes()).and_then(|_| stdout.flush()).map_err(ServeError::Handshake)?;
    drop(stdout);
    tracing::debug!(%address, tls = !cert.is_empty(), "plugin server listening");

    router
        .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async {
            let _ = shutdown_rx.await;
        })
        .await?;
    tracing::debug!("plugin server stopped");
    Ok(())
}

/// Binds 127.0.0.1, within go-plugin's `PLUGIN_MIN_PORT`..`PLUGIN_MAX_PORT`
/// when Terraform sets them.
async fn bind() -> std::io::Result<TcpListener> {
    let range = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u16>().ok());
    if let (Some(min), Some(max)) = (range("PLUGIN_MIN_PORT"), range("PLUGIN_MAX_PORT")) {
        let mut last_error = None;
        for port in min..=max {
            match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
                Ok(listener) => return Ok(listener),
                Err(e) => last_error = Some(e),
            }
        }
        return Err(
            last_error.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "empty port range"))
        );
    }
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
}

/// Terraform forwards Ctrl-C to its plugins and then stops them through
/// StopProvider: dying on SIGINT would abandon an in-flight create whose
/// result Terraform still has to record. The handler is registered here,
/// before the handshake line, not on a task's first poll: a SIGINT that
/// arrived in between would otherwise still kill the process.
fn ignore_interrupts() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::interrupt()) {
        Ok(mut interrupts) => {
            tokio::spawn(async move {
                while interrupts.recv().await.is_some() {
                    tracing::info!("interrupt ignored: Terraform stops the provider through StopProvider");
                }
            });
        }
        Err(e) => tracing::warn!("cannot ignore SIGINT: {e}"),
    }
}
