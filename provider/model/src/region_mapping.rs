//! The region mapping document (`region-mappings/<name>.json`): where
//! snapshots of one region are replicated, read by workers when they
//! replicate.

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogDocument, Kind};

crate::names! {
    /// Which copies a mapping puts under its `kms_key_arn`.
    #[derive(Default)]
    pub enum Encrypt as "snake_case" {
        /// Every copy, unencrypted sources included.
        All,
        /// Only copies of encrypted sources; the others stay unencrypted.
        #[default]
        EncryptedOnly,
    }
}

/// How snapshots of `source_region` are replicated to `target_region`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionMappingDocument {
    pub format_version: u32,
    pub name: String,
    pub source_region: String,
    pub target_region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    pub encrypt: Encrypt,
}

impl CatalogDocument for RegionMappingDocument {
    const KIND: Kind = Kind::RegionMapping;
    const FORMAT_VERSION: u32 = 1;
}
