//! Pack files (`data/<2 hex>/<pack id>`): sealed blobs one after another,
//! then a sealed header listing them, then the header's length.
//!
//! ```text
//! pack   = blob* ‖ sealed(header) ‖ u32-le(len(sealed(header)))
//! header = entry*            entry = blob id (32) ‖ offset u32-le ‖ length u32-le ‖ raw length u32-le
//! ```
//! The pack id is the (unkeyed) BLAKE3 hash of the whole file, so anyone can
//! tell a damaged pack from its name; the header is authenticated, and so is
//! every blob.

use super::crypto::{BlobId, CryptoError, Keys, hex};

pub const HEADER_AAD: &[u8] = b"coffer pack header";
pub const ENTRY_LEN: usize = 32 + 4 + 4 + 4;

/// Where a blob sits in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub id: BlobId,
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Plaintext (block) length.
    pub raw_length: u32,
}

impl PackEntry {
    pub fn encode(entries: &[PackEntry]) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN);
        for e in entries {
            out.extend_from_slice(&e.id.0);
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.length.to_le_bytes());
            out.extend_from_slice(&e.raw_length.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Vec<PackEntry>, CryptoError> {
        if bytes.len() % ENTRY_LEN != 0 {
            return Err(CryptoError::Malformed(format!("{} bytes is not a whole number of entries", bytes.len())));
        }
        Ok(bytes
            .chunks_exact(ENTRY_LEN)
            .map(|c| {
                let u32_at = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                let mut id = [0u8; 32];
                id.copy_from_slice(&c[..32]);
                PackEntry { id: BlobId(id), offset: u32_at(32), length: u32_at(36), raw_length: u32_at(40) }
            })
            .collect())
    }
}

/// Collects sealed blobs until the pack is big enough to upload.
#[derive(Default)]
pub struct PackBuilder {
    body: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack: its id, its bytes, and what it holds.
pub struct Pack {
    pub id: String,
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// A builder for packs cut at `target` bytes, allocated once with room
    /// for the target, the largest blob that can cross it and a header of
    /// ~1,500 entries, so a pack is not copied as it grows (each doubling
    /// of a growing buffer copies it, and leaves up to twice its size
    /// allocated).
    pub fn for_target(target: usize) -> Self {
        let largest_blob = super::blocks::BLOCK_SIZE as usize + 64;
        let header = 64 * 1024;
        Self { body: Vec::with_capacity(target + largest_blob + header), entries: Vec::new() }
    }

    pub fn add(&mut self, id: BlobId, raw_length: usize, sealed: &[u8]) {
        self.entries.push(PackEntry {
            id,
            offset: self.body.len() as u32,
            length: sealed.len() as u32,
            raw_length: raw_length as u32,
        });
        self.body.extend_from_slice(sealed);
    }

    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn finish(self, keys: &Keys) -> Pack {
        let mut bytes = self.body;
        let header = keys.seal(HEADER_AAD, &PackEntry::encode(&self.entries));
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        Pack { id: pack_id(&bytes), bytes, entries: self.entries }
    }
}

pub fn pack_id(bytes: &[u8]) -> String {
    hex(blake3::hash(bytes).as_bytes())
}

pub fn pack_key(id: &str) -> String {
    format!("data/{}/{id}", id.get(..2).unwrap_or("00"))
}

/// Reads a whole pack: checks its name, opens its header.
pub fn read_header(keys: &Keys, id: &str, bytes: &[u8]) -> Result<Vec<PackEntry>, CryptoError> {
    if pack_id(bytes) != id {
        return Err(CryptoError::Malformed("its content does not hash to its name".into()));
    }
    let Some(len_at) = bytes.len().checked_sub(4) else {
        return Err(CryptoError::Malformed("shorter than a pack trailer".into()));
    };
    let header_len =
        u32::from_le_bytes([bytes[len_at], bytes[len_at + 1], bytes[len_at + 2], bytes[len_at + 3]]) as usize;
    let Some(header_at) = len_at.checked_sub(header_len) else {
        return Err(CryptoError::Malformed("header length beyond the pack".into()));
    };
    let entries = PackEntry::decode(&keys.open(HEADER_AAD, &bytes[header_at..len_at])?)?;
    if entries.iter().any(|e| e.offset as usize + e.length as usize > header_at) {
        return Err(CryptoError::Malformed("a header entry points past the blobs".into()));
    }
    Ok(entries)
}
