//! The repository entry (`repositories/<id>.json`): where a repository
//! lives and how it is encrypted, found by id by policies and workers.

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogDocument, Kind};

/// The catalog's record of a repository, found by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryEntry {
    pub format_version: u32,
    pub id: String,
    pub name: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub storage_class: String,
    /// `password` or `kms`.
    pub encryption: String,
}

impl CatalogDocument for RepositoryEntry {
    const KIND: Kind = Kind::Repository;
    const FORMAT_VERSION: u32 = 1;
}
