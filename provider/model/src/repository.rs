//! The repository entry (`repositories/<id>.json`): where a repository
//! lives and how it is encrypted, found by id by policies and workers.

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogDocument, Kind};

crate::names! {
    /// The S3 storage class a repository's packs are written in.
    #[derive(Default)]
    pub enum StorageClass as "SCREAMING_SNAKE_CASE" {
        #[default]
        Standard,
        StandardIa,
        Glacier,
        DeepArchive,
    }
}

impl StorageClass {
    /// Classes for restore points read now and then (`backup`).
    pub const BACKUP: &[StorageClass] = &[StorageClass::Standard, StorageClass::StandardIa];
    /// Classes whose objects must be restored (thawed) before they are read (`archive`).
    pub const ARCHIVE: &[StorageClass] = &[StorageClass::Glacier, StorageClass::DeepArchive];

    /// Objects of this class are archived: reading one needs a restore first.
    pub fn is_archive(self) -> bool {
        Self::ARCHIVE.contains(&self)
    }
}

crate::names! {
    /// How a repository's master key is wrapped.
    pub enum Encryption as "lowercase" {
        /// Argon2id from a password the user keeps.
        Password,
        /// A KMS key.
        Kms,
    }
}

/// The catalog's record of a repository, found by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryEntry {
    pub format_version: u32,
    pub id: String,
    pub name: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub storage_class: StorageClass,
    pub encryption: Encryption,
}

impl CatalogDocument for RepositoryEntry {
    const KIND: Kind = Kind::Repository;
    const FORMAT_VERSION: u32 = 1;
}
