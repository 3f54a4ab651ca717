//! Coffer: backup-as-code for AWS. One library behind two binaries: the
//! Terraform plugin (`terraform-provider-coffer`) and the executor (`coffer`).
//!
//! Layers, each importing only the ones below it:
//! `server` (tfplugin6 over gRPC) → `framework` (values, schemas, plans) →
//! `provider` and `resources` (Coffer's provider logic) → `aws` (clients and
//! lookups).

pub mod aws;
pub mod catalog;
pub mod cli;
pub mod cron;
pub mod data_sources;
pub mod executor;
pub mod framework;
pub mod logging;
pub mod provider;
pub mod repository;
pub mod resources;
pub mod server;
pub mod validation;
