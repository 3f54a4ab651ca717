//! Index files (`index/<id>`): which blobs each pack holds, so a backup can
//! tell a known block without reading packs, and a restore can fetch a blob
//! with one ranged read. Sealed JSON (zstd, XChaCha20-Poly1305); the id is the
//! BLAKE3 hash of the sealed file.
//!
//! ```json
//! {"packs": [{"id": "<pack id>", "size": 33554432, "blobs": "<base64 of pack header entries>"}]}
//! ```

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::crypto::{BlobId, CryptoError, Keys, hex};
use super::pack::PackEntry;

pub const INDEX_AAD: &[u8] = b"coffer index";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    pub packs: Vec<IndexedPack>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedPack {
    pub id: String,
    /// The pack file's size in bytes.
    pub size: u64,
    /// The pack's header entries, encoded as in the pack, base64.
    pub blobs: String,
}

impl IndexedPack {
    pub fn new(id: &str, size: u64, entries: &[PackEntry]) -> Self {
        Self { id: id.into(), size, blobs: B64.encode(PackEntry::encode(entries)) }
    }

    pub fn entries(&self) -> Result<Vec<PackEntry>, CryptoError> {
        let bytes = B64
            .decode(&self.blobs)
            .map_err(|_| CryptoError::Malformed(format!("pack {}: blobs are not base64", self.id)))?;
        PackEntry::decode(&bytes)
    }
}

impl IndexFile {
    /// The sealed bytes and the id they are stored under.
    pub fn seal(&self, keys: &Keys) -> (String, Vec<u8>) {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let sealed = keys.seal_object(INDEX_AAD, &json);
        (hex(blake3::hash(&sealed).as_bytes()), sealed)
    }

    pub fn open(keys: &Keys, id: &str, sealed: &[u8]) -> Result<Self, CryptoError> {
        if hex(blake3::hash(sealed).as_bytes()) != id {
            return Err(CryptoError::Malformed("its content does not hash to its name".into()));
        }
        let json = keys.open_object(INDEX_AAD, sealed)?;
        serde_json::from_slice(&json).map_err(|e| CryptoError::Malformed(format!("index JSON: {e}")))
    }
}

/// Where a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Into [`Index::packs`].
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

/// Every indexed blob, in memory (about 70 bytes per blob).
#[derive(Debug, Default, Clone)]
pub struct Index {
    pub packs: Vec<PackInfo>,
    blobs: HashMap<BlobId, Location>,
    pack_numbers: HashMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    pub id: String,
    pub size: u64,
    pub blob_count: u32,
}

impl Index {
    pub fn add_pack(&mut self, id: &str, size: u64, entries: &[PackEntry]) {
        if self.pack_numbers.contains_key(id) {
            return;
        }
        let number = self.packs.len() as u32;
        self.packs.push(PackInfo { id: id.into(), size, blob_count: entries.len() as u32 });
        self.pack_numbers.insert(id.into(), number);
        for e in entries {
            // The first copy of a blob wins; a duplicate in a later pack
            // (two backups racing) is dead weight that prune reclaims.
            self.blobs.entry(e.id).or_insert(Location {
                pack: number,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            });
        }
    }

    pub fn get(&self, id: &BlobId) -> Option<&Location> {
        self.blobs.get(id)
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn pack_id(&self, location: &Location) -> &str {
        &self.packs[location.pack as usize].id
    }

    pub fn has_pack(&self, id: &str) -> bool {
        self.pack_numbers.contains_key(id)
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Blobs per pack, for prune.
    pub fn blobs(&self) -> impl Iterator<Item = (&BlobId, &Location)> {
        self.blobs.iter()
    }
}
