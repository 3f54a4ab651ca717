//! The repository's cryptography: blob ids (keyed BLAKE3 of the plaintext),
//! sealing (XChaCha20-Poly1305 with a random 24-byte nonce and associated
//! data naming what is sealed) and compression (zstd) of blobs and of the
//! JSON objects (index files, manifests).

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use thiserror::Error;

use super::config::MasterKey;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// What sealing adds to a plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// zstd level for blobs and objects: level 3 (zstd's default) compresses
/// file system blocks about as well as level 9 at several times the speed.
const ZSTD_LEVEL: i32 = 3;

thread_local! {
    /// The blob compressor of this thread (see [`Keys::seal_blob`]).
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// The first plaintext byte of a blob says how the rest is stored.
const STORED: u8 = 0;
const ZSTD: u8 = 1;

/// A blob's id: keyed BLAKE3 of its plaintext block.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl std::fmt::Debug for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobId({})", &self.to_hex()[..16])
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Wrong key, or the bytes were altered.
    #[error("authentication failed (the data was altered, or belongs to another repository)")]
    Unauthentic,
    #[error("malformed: {0}")]
    Malformed(String),
}

/// The two keys derived from the master key.
#[derive(Clone)]
pub struct Keys {
    cipher: XChaCha20Poly1305,
    id_key: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

impl Keys {
    /// Bytes 0..32 of the master key seal, bytes 32..64 name blobs.
    pub fn new(master: &MasterKey) -> Self {
        let mut aead = [0u8; 32];
        aead.copy_from_slice(&master.0[..32]);
        let mut id_key = [0u8; 32];
        id_key.copy_from_slice(&master.0[32..]);
        Self { cipher: XChaCha20Poly1305::new((&aead).into()), id_key }
    }

    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        self.seal_with_nonce(&nonce, aad, plaintext)
    }

    pub(crate) fn seal_with_nonce(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(nonce), Payload { msg: plaintext, aad })
            // Only fails for plaintexts beyond 256 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(CryptoError::Malformed(format!("{} bytes is shorter than a sealed object", sealed.len())));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad }).map_err(|_| CryptoError::Unauthentic)
    }

    /// A block as stored in a pack: compressed when that helps, sealed with
    /// its id as associated data (so a blob cannot stand in for another).
    /// Built in one buffer (nonce, encoding byte, compressed block, tag) by
    /// a zstd context kept per thread: a fresh context per 512 KiB block
    /// costs its allocation and table set-up every time.
    pub fn seal_blob(&self, id: &BlobId, block: &[u8]) -> Vec<u8> {
        let header = NONCE_LEN + 1;
        let mut buffer = Vec::with_capacity(header + zstd::zstd_safe::compress_bound(block.len()) + TAG_LEN);
        buffer.resize(header, 0);
        let mut cursor = std::io::Cursor::new(buffer);
        cursor.set_position(header as u64);
        let compressed = COMPRESSOR.with_borrow_mut(|compressor| {
            let compressor = match compressor {
                Some(c) => c,
                None => compressor.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?),
            };
            compressor.compress_to_buffer(block, &mut cursor).ok()
        });
        let mut buffer = cursor.into_inner();
        match compressed {
            Some(length) if length < block.len() => buffer[NONCE_LEN] = ZSTD,
            _ => {
                buffer.truncate(header);
                buffer[NONCE_LEN] = STORED;
                buffer.extend_from_slice(block);
            }
        }
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        buffer[..NONCE_LEN].copy_from_slice(&nonce);
        let tag = self
            .cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &blob_aad(id), &mut buffer[NONCE_LEN..])
            // Only fails for plaintexts beyond 256 GiB.
            .unwrap_or_default();
        buffer.extend_from_slice(&tag);
        buffer
    }

    pub fn open_blob(&self, id: &BlobId, raw_length: usize, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let plaintext = self.open(&blob_aad(id), sealed)?;
        let block = match plaintext.split_first() {
            Some((&STORED, rest)) => rest.to_vec(),
            Some((&ZSTD, rest)) => zstd::bulk::decompress(rest, raw_length)
                .map_err(|e| CryptoError::Malformed(format!("blob {id}: zstd: {e}")))?,
            Some((other, _)) => return Err(CryptoError::Malformed(format!("blob {id}: unknown encoding {other}"))),
            None => return Err(CryptoError::Malformed(format!("blob {id} is empty"))),
        };
        if block.len() != raw_length || self.blob_id(&block) != *id {
            return Err(CryptoError::Malformed(format!("blob {id}: content does not match its id")));
        }
        Ok(block)
    }

    /// A JSON object (index file, manifest): zstd, then sealed.
    pub fn seal_object(&self, aad: &[u8], json: &[u8]) -> Vec<u8> {
        let compressed = zstd::bulk::compress(json, ZSTD_LEVEL).unwrap_or_default();
        self.seal(aad, &compressed)
    }

    pub fn open_object(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let compressed = self.open(aad, sealed)?;
        let mut out = Vec::new();
        zstd::stream::copy_decode(compressed.as_slice(), &mut out)
            .map_err(|e| CryptoError::Malformed(format!("zstd: {e}")))?;
        Ok(out)
    }
}

fn blob_aad(id: &BlobId) -> Vec<u8> {
    let mut aad = b"coffer blob ".to_vec();
    aad.extend_from_slice(&id.0);
    aad
}

pub fn fill_random(buf: &mut [u8]) {
    use chacha20poly1305::aead::rand_core::RngCore;
    chacha20poly1305::aead::OsRng.fill_bytes(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&MasterKey([7u8; 64]))
    }

    #[test]
    fn a_blob_round_trips_and_its_id_is_keyed() {
        let keys = keys();
        let block = vec![42u8; 512 * 1024];
        let id = keys.blob_id(&block);
        assert_ne!(id, Keys::new(&MasterKey([8u8; 64])).blob_id(&block), "another repository names it differently");
        let sealed = keys.seal_blob(&id, &block);
        assert!(sealed.len() < 1024, "a repetitive block compresses");
        assert_eq!(keys.open_blob(&id, block.len(), &sealed).unwrap(), block);
    }

    #[test]
    fn a_flipped_bit_or_a_swapped_id_does_not_open() {
        let keys = keys();
        let a = vec![1u8; 4096];
        let b = vec![2u8; 4096];
        let (ida, idb) = (keys.blob_id(&a), keys.blob_id(&b));
        let mut sealed = keys.seal_blob(&ida, &a);
        assert_eq!(keys.open_blob(&idb, 4096, &sealed), Err(CryptoError::Unauthentic));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(keys.open_blob(&ida, 4096, &sealed), Err(CryptoError::Unauthentic));
    }

    #[test]
    fn incompressible_blocks_are_stored() {
        let keys = keys();
        let mut block = vec![0u8; 65536];
        fill_random(&mut block);
        let id = keys.blob_id(&block);
        let sealed = keys.seal_blob(&id, &block);
        assert_eq!(sealed.len(), block.len() + 1 + SEAL_OVERHEAD);
        assert_eq!(keys.open_blob(&id, block.len(), &sealed).unwrap(), block);
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0g"), None);
    }
}
