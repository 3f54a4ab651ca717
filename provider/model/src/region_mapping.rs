//! The region mapping document (`region-mappings/<name>.json`): where
//! snapshots of one region are replicated, read by workers when they
//! replicate.

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogDocument, Kind};

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
    /// `all` or `encrypted_only`: which source snapshots get `kms_key_arn`.
    pub encrypt: String,
}

impl CatalogDocument for RegionMappingDocument {
    const KIND: Kind = Kind::RegionMapping;
    const FORMAT_VERSION: u32 = 1;
}
