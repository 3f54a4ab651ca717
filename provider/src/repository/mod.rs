//! The repository format (see docs/repository-format.md). This module holds
//! the parts the provider needs to create and open a repository: its config
//! object and the wrapping of the master key.

pub mod config;

pub use config::{
    CONFIG_KEY, FORMAT_VERSION, Immutability, KeyEnvelope, KeyError, MasterKey, OWNED_FOLDERS, RepositoryConfig,
};
