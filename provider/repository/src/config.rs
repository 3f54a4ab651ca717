//! The config object (`<prefix>config`): format version, repository id and
//! the wrapped master key. The master key is 64 random bytes (32 for the
//! AEAD that seals blobs, 32 for the keyed hash that names them); it is
//! stored only wrapped, either by a key derived from a password with
//! Argon2id or by AWS KMS. The wrapping authenticates the config's other
//! fields too (as associated data / KMS encryption context), so a config
//! edited in S3 does not open.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use coffer_model::repository::{Encryption, StorageClass};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MASTER_KEY_LEN: usize = 64;

/// The repository's master key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey(pub [u8; MASTER_KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn random() -> Self {
        let mut key = [0u8; MASTER_KEY_LEN];
        getrandom(&mut key);
        Self(key)
    }
}

fn getrandom(buf: &mut [u8]) {
    use chacha20poly1305::aead::rand_core::RngCore;
    chacha20poly1305::aead::OsRng.fill_bytes(buf);
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryConfig {
    pub format_version: u32,
    /// The repository's UUID.
    pub id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Where packs go.
    pub storage_class: StorageClass,
    /// Object Lock retention writers put on every object they add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutability: Option<Immutability>,
    pub key: KeyEnvelope,
    /// A second wrapping of a password repository's master key, by a KMS key the workers'
    /// role may use, so scheduled workers open the repository without the password (restic
    /// and kopia likewise keep several keys per repository). Its encryption context is
    /// [`RepositoryConfig::worker_binding`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_key: Option<KmsWrappedKey>,
}

/// A master key wrapped by AWS KMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsWrappedKey {
    pub kms_key_arn: String,
    /// Base64 KMS CiphertextBlob.
    pub wrapped_master_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Immutability {
    pub days: i64,
    pub mode: LockMode,
}

coffer_model::names! {
    /// S3 Object Lock's retention modes.
    pub enum LockMode as "SCREAMING_SNAKE_CASE" {
        /// Nobody, the root user included, can shorten or remove the retention.
        Compliance,
        /// Users with `s3:BypassGovernanceRetention` can.
        Governance,
    }
}

/// The key prefixes (under the repository prefix) that belong to a
/// repository; nothing else in a shared bucket is touched.
pub const CONFIG_KEY: &str = "config";
pub const OWNED_FOLDERS: &[&str] = &["data/", "index/", "manifests/", "locks/", "prune/"];

/// Argon2id cost parameters, stored so they can be raised later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Base64.
    pub salt: String,
}

impl Argon2Params {
    /// 64 MiB, 3 passes: above OWASP's Argon2id minimum, well under a second.
    pub fn new_random() -> Self {
        let mut salt = [0u8; 16];
        getrandom(&mut salt);
        Self { memory_kib: 64 * 1024, iterations: 3, parallelism: 1, salt: B64.encode(salt) }
    }

    fn derive(&self, password: &str) -> Result<[u8; 32], KeyError> {
        let salt = B64.decode(&self.salt).map_err(|_| KeyError::Malformed("kdf.salt is not base64"))?;
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|_| KeyError::Malformed("kdf parameters out of range"))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = [0u8; 32];
        argon
            .hash_password_into(password.as_bytes(), &salt, &mut key)
            .map_err(|_| KeyError::Malformed("kdf salt too short"))?;
        Ok(key)
    }
}

/// How the master key is wrapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyEnvelope {
    /// XChaCha20-Poly1305 under an Argon2id key from the password.
    Password {
        kdf: Argon2Params,
        /// Base64, 24 bytes.
        nonce: String,
        /// Base64: ciphertext and tag of the master key.
        wrapped_master_key: String,
    },
    /// KMS ciphertext of the master key (GenerateDataKey, 64 bytes), bound
    /// to the config by its encryption context.
    Kms {
        kms_key_arn: String,
        /// Base64 KMS CiphertextBlob.
        wrapped_master_key: String,
    },
}

impl KeyEnvelope {
    pub fn kind(&self) -> Encryption {
        match self {
            KeyEnvelope::Password { .. } => Encryption::Password,
            KeyEnvelope::Kms { .. } => Encryption::Kms,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the password does not open this repository (wrong password, or the config object was altered)")]
    WrongPassword,
    #[error("the repository is encrypted with a {0}, not a password")]
    NotPassword(&'static str),
    #[error("the config object is malformed: {0}")]
    Malformed(&'static str),
    /// The key service (KMS) refused or failed; the message names the key.
    #[error("{0}")]
    Service(String),
}

/// A service that holds the key wrapping a repository's master key (AWS
/// KMS, implemented in `coffer-aws`): the engine asks it to unwrap, and
/// never sees a cloud SDK.
#[async_trait::async_trait]
pub trait KeyService: Send + Sync {
    /// The master key of `config`, unwrapped; the service checks the
    /// config's [`RepositoryConfig::binding`].
    async fn unwrap(&self, config: &RepositoryConfig) -> Result<MasterKey, KeyError>;
}

impl RepositoryConfig {
    /// The fields the key wrapping authenticates, as KMS encryption context
    /// (and, joined, as AEAD associated data).
    pub fn binding(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("coffer:repository".to_string(), self.id.clone()),
            ("coffer:format_version".to_string(), self.format_version.to_string()),
            ("coffer:storage_class".to_string(), self.storage_class.to_string()),
            ("coffer:created_at".to_string(), self.created_at.clone()),
        ])
    }

    /// The encryption context of [`RepositoryConfig::worker_key`]: the binding, and which
    /// envelope it is (so the worker key's ciphertext cannot stand in for the main one's).
    pub fn worker_binding(&self) -> BTreeMap<String, String> {
        let mut binding = self.binding();
        binding.insert("coffer:envelope".to_string(), "worker".to_string());
        binding
    }

    fn associated_data(&self) -> Vec<u8> {
        let mut ad = b"coffer repository master key".to_vec();
        for (k, v) in self.binding() {
            ad.push(0);
            ad.extend_from_slice(k.as_bytes());
            ad.push(b'=');
            ad.extend_from_slice(v.as_bytes());
        }
        ad
    }

    /// Wraps `master` under `password` into `self.key`.
    pub fn seal_with_password(&mut self, master: &MasterKey, password: &str) -> Result<(), KeyError> {
        let kdf = Argon2Params::new_random();
        let wrapping = kdf.derive(password)?;
        let mut nonce = [0u8; 24];
        getrandom(&mut nonce);
        let cipher = XChaCha20Poly1305::new((&wrapping).into());
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &master.0, aad: &self.associated_data() })
            .map_err(|_| KeyError::Malformed("sealing failed"))?;
        self.key = KeyEnvelope::Password { kdf, nonce: B64.encode(nonce), wrapped_master_key: B64.encode(sealed) };
        Ok(())
    }

    /// Unwraps the master key with `password`.
    pub fn open_with_password(&self, password: &str) -> Result<MasterKey, KeyError> {
        let KeyEnvelope::Password { kdf, nonce, wrapped_master_key } = &self.key else {
            return Err(KeyError::NotPassword("KMS key"));
        };
        let nonce = B64.decode(nonce).map_err(|_| KeyError::Malformed("key.nonce is not base64"))?;
        if nonce.len() != 24 {
            return Err(KeyError::Malformed("key.nonce is not 24 bytes"));
        }
        let sealed =
            B64.decode(wrapped_master_key).map_err(|_| KeyError::Malformed("key.wrapped_master_key is not base64"))?;
        let wrapping = kdf.derive(password)?;
        let cipher = XChaCha20Poly1305::new((&wrapping).into());
        let plain = cipher
            .decrypt(XNonce::from_slice(&nonce), Payload { msg: &sealed, aad: &self.associated_data() })
            .map_err(|_| KeyError::WrongPassword)?;
        let key: [u8; MASTER_KEY_LEN] =
            plain.try_into().map_err(|_| KeyError::Malformed("master key has the wrong length"))?;
        Ok(MasterKey(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RepositoryConfig {
        RepositoryConfig {
            format_version: FORMAT_VERSION,
            id: "5f0c3c0e-0000-4000-8000-000000000001".into(),
            created_at: "2026-11-23T10:00:00Z".into(),
            storage_class: StorageClass::Standard,
            immutability: None,
            key: KeyEnvelope::Kms { kms_key_arn: String::new(), wrapped_master_key: String::new() },
            worker_key: None,
        }
    }

    #[test]
    fn a_config_without_a_worker_key_reads_and_writes_as_before() {
        let json = serde_json::to_string(&config()).unwrap();
        assert!(!json.contains("worker_key"), "{json}");
        let mut with = config();
        with.worker_key = Some(KmsWrappedKey { kms_key_arn: "arn".into(), wrapped_master_key: "AA==".into() });
        let back: RepositoryConfig = serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back, with);
        assert_eq!(with.worker_binding().get("coffer:envelope").map(String::as_str), Some("worker"));
        assert_eq!(with.worker_binding().len(), with.binding().len() + 1);
    }

    #[test]
    fn the_right_password_opens_and_a_wrong_one_does_not() {
        let master = MasterKey::random();
        let mut config = config();
        config.seal_with_password(&master, "correct horse").unwrap();
        assert_eq!(config.open_with_password("correct horse").unwrap(), master);
        assert_eq!(config.open_with_password("wrong"), Err(KeyError::WrongPassword));
    }

    #[test]
    fn an_edited_config_does_not_open() {
        let master = MasterKey::random();
        let mut config = config();
        config.seal_with_password(&master, "pw").unwrap();
        let json = serde_json::to_string(&config).unwrap();
        let mut edited: RepositoryConfig = serde_json::from_str(&json.replace("STANDARD", "GLACIER")).unwrap();
        assert_eq!(edited.open_with_password("pw"), Err(KeyError::WrongPassword));
        edited.storage_class = StorageClass::Standard;
        assert_eq!(edited.open_with_password("pw").unwrap(), master);
    }

    #[test]
    fn the_master_key_is_never_printed() {
        assert_eq!(format!("{:?}", MasterKey::random()), "MasterKey(<redacted>)");
    }
}
