//! The repository format (specified in docs/design/repository-format.md)
//! and its engine: content-addressed, compressed, encrypted blobs in packs,
//! index files, one manifest per restore point, locks, check and prune,
//! all behind a small [`storage::Storage`] trait (S3 in `coffer-aws`, or
//! memory for tests) and a [`KeyService`] for master keys a cloud key
//! service wraps (KMS in `coffer-aws`). No cloud SDK is in this crate's
//! dependency tree: the engine, its unit tests and its fuzzing build without
//! one.

pub mod blocks;
pub mod check;
pub mod config;
pub mod crypto;
pub mod index;
pub mod lock;
pub mod manifest;
pub mod pack;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod storage;

pub use coffer_model::repository::{Encryption, StorageClass};
pub use config::{
    CONFIG_KEY, FORMAT_VERSION, Immutability, KeyEnvelope, KeyError, KeyService, LockMode, MasterKey, OWNED_FOLDERS,
    RepositoryConfig,
};
pub use repo::{PointMeta, RepoError, Repository, Unlock};

#[cfg(test)]
mod tests;
