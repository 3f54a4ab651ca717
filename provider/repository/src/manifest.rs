//! Manifests (`manifests/<restore point id>`): one per restore point, sealed
//! JSON naming the source, the rules that made it, its parent, and the map
//! from block index to blob id (blocks that hold only zeros are omitted).
//! The associated data includes the point id, so a manifest renamed in S3
//! does not open.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::crypto::{BlobId, CryptoError, Keys};

const MAP_ENTRY_LEN: usize = 8 + 32;

/// A restore point's block map: index → blob id, in index order.
pub type BlockMap = BTreeMap<u64, BlobId>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The restore point's id (a UUID): also its object name.
    pub id: String,
    /// When the run that made it started, RFC 3339 UTC.
    pub time: DateTime<Utc>,
    pub source: Source,
    /// The volume's size in bytes; restores make a volume (or file) this big.
    pub volume_size: u64,
    pub block_size: u32,
    /// The policy and rules that made it (retention keeps it while any rule wants it).
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub run: String,
    /// The restore point this one was made incrementally against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub stats: Stats,
    /// Base64 of 40-byte records: block index u64-le ‖ blob id, by index.
    pub blocks: String,
}

/// What was backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Source {
    /// `ebs-snapshot`, `file` or `restore-point` (an archive copy).
    pub kind: String,
    /// The snapshot id, path or source restore point id the blocks were read from.
    pub name: String,
    /// The protected resource: an instance id, or a name for files.
    #[serde(default)]
    pub resource_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub volume_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Stats {
    /// The source listed only the blocks changed since the parent's source.
    #[serde(default)]
    pub incremental: bool,
    /// Blocks holding data (the map's size).
    pub blocks: u64,
    /// Blocks read from the source for this point.
    pub blocks_read: u64,
    pub bytes_read: u64,
    /// Blobs this point added to the repository, and their sealed size.
    pub new_blobs: u64,
    pub bytes_written: u64,
}

pub fn manifest_aad(id: &str) -> Vec<u8> {
    format!("coffer manifest {id}").into_bytes()
}

pub fn manifest_key(id: &str) -> String {
    format!("manifests/{id}")
}

impl Manifest {
    pub fn encode_map(map: &BlockMap) -> String {
        let mut bytes = Vec::with_capacity(map.len() * MAP_ENTRY_LEN);
        for (index, id) in map {
            bytes.extend_from_slice(&index.to_le_bytes());
            bytes.extend_from_slice(&id.0);
        }
        B64.encode(bytes)
    }

    pub fn block_map(&self) -> Result<BlockMap, CryptoError> {
        let bytes = B64
            .decode(&self.blocks)
            .map_err(|_| CryptoError::Malformed(format!("manifest {}: blocks are not base64", self.id)))?;
        if bytes.len() % MAP_ENTRY_LEN != 0 {
            return Err(CryptoError::Malformed(format!("manifest {}: truncated block map", self.id)));
        }
        Ok(bytes
            .chunks_exact(MAP_ENTRY_LEN)
            .map(|c| {
                let mut index = [0u8; 8];
                index.copy_from_slice(&c[..8]);
                let mut id = [0u8; 32];
                id.copy_from_slice(&c[8..]);
                (u64::from_le_bytes(index), BlobId(id))
            })
            .collect())
    }

    pub fn seal(&self, keys: &Keys) -> Vec<u8> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        keys.seal_object(&manifest_aad(&self.id), &json)
    }

    pub fn open(keys: &Keys, id: &str, sealed: &[u8]) -> Result<Self, CryptoError> {
        let json = keys.open_object(&manifest_aad(id), sealed)?;
        let manifest: Manifest =
            serde_json::from_slice(&json).map_err(|e| CryptoError::Malformed(format!("manifest JSON: {e}")))?;
        if manifest.id != id {
            return Err(CryptoError::Malformed(format!("manifest {id} names itself {}", manifest.id)));
        }
        Ok(manifest)
    }
}
