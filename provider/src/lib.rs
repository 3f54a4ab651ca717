//! Coffer: backup-as-code for AWS. The top floor of the workspace, behind
//! two binaries: the Terraform plugin (`terraform-provider-coffer`) and the
//! executor (`coffer`).
//!
//! Below it, each its own crate: `coffer_tfplugin` (the plugin protocol and
//! the provider framework), `coffer_repository` (the repository format and
//! engine, no cloud SDK) and `coffer_model` (the catalog documents and
//! validation everything shares). Here: the provider ([`provider`],
//! [`resources`], [`data_sources`]) over [`aws`] and the [`catalog`] store;
//! the executor ([`executor`]) and the command line ([`cli`]).

pub mod aws;
pub mod catalog;
pub mod cli;
pub mod data_sources;
pub mod executor;
pub mod logging;
pub mod provider;
pub mod resources;
