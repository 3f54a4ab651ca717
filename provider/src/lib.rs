//! Coffer: backup-as-code for AWS. The top floor of the workspace, behind
//! two binaries: the Terraform plugin (`terraform-provider-coffer`) and the
//! executor (`coffer`).
//!
//! Below it, each its own crate: `coffer_executor` (what a run does),
//! `coffer_aws` (clients, lookups, the catalog store, S3 storage, EBS
//! blocks, KMS keys), `coffer_tfplugin` (the plugin protocol and the
//! provider framework), `coffer_repository` (the repository format and
//! engine, no cloud SDK) and `coffer_model` (the catalog documents and
//! validation everything shares). Here: the Terraform provider
//! ([`provider`], [`resources`], [`data_sources`]) and the command line
//! ([`cli`]).

pub mod cli;
pub mod conns;
pub mod data_sources;
pub mod logging;
pub mod provider;
pub mod resources;
