//! go-plugin's side services: GRPCController (Shutdown) and GRPCStdio.

use std::sync::Mutex;

use tonic::{Request, Response, Status};

use super::go_plugin_proto::grpc_controller_server::{GrpcController, GrpcControllerServer};
use super::go_plugin_proto::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use super::go_plugin_proto::{Empty, StdioData};
use tonic::codegen::BoxStream;

pub fn controller(shutdown: tokio::sync::oneshot::Sender<()>) -> GrpcControllerServer<Controller> {
    GrpcControllerServer::new(Controller { shutdown: Mutex::new(Some(shutdown)) })
}

pub fn stdio() -> GrpcStdioServer<Stdio> {
    GrpcStdioServer::new(Stdio)
}

pub struct Controller {
    shutdown: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::debug!("shutdown requested by Terraform");
        if let Some(tx) = self.shutdown.lock().expect("shutdown lock").take() {
            let _ = tx.send(());
        }
        Ok(Response::new(Empty {}))
    }
}

/// Our logs go to stderr, which Terraform already reads, and nothing but the
/// handshake is ever written to stdout: the stream stays open and empty
/// until the plugin exits.
pub struct Stdio;

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    async fn stream_stdio(&self, _request: Request<()>) -> Result<Response<BoxStream<StdioData>>, Status> {
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }
}
