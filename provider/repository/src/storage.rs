//! Where a repository's objects live: a small trait (implemented over S3
//! in the `coffer-aws` crate, one bucket and prefix) with an in-memory twin
//! for tests. Keys are relative to
//! the repository's prefix (`config`, `data/ab/ab12…`, `index/…`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_model::repository::StorageClass;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{0} does not exist")]
    NotFound(String),
    /// A create-only write found the object there.
    #[error("{0} already exists")]
    Exists(String),
    /// A write or delete conditional on an ETag found another version.
    #[error("{0} was changed by someone else")]
    Changed(String),
    /// The object is in an archive storage class and not restored.
    #[error("{0} is archived (GLACIER / DEEP_ARCHIVE) and must be restored before it can be read")]
    Archived(String),
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Fail with [`StorageError::Exists`] when the key exists (If-None-Match).
    pub create_only: bool,
    /// S3 storage class; `None` is STANDARD.
    pub storage_class: Option<StorageClass>,
}

/// Where an archived object's thaw stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thaw {
    /// Readable now (not archived, or restored).
    Ready,
    /// A restore is under way.
    InProgress,
}

#[async_trait]
pub trait Storage: Send + Sync {
    /// `s3://bucket/prefix` or `memory:`: for messages.
    fn location(&self) -> String;
    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError>;
    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError>;
    /// Large bodies go up in parts (multipart upload) where the backend has them.
    async fn put(&self, key: &str, body: Vec<u8>, options: &PutOptions) -> Result<(), StorageError>;
    /// Every object under `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;
    /// Deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Until when S3 Object Lock protects the object (None: not locked).
    async fn retained_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError>;
    /// Asks for an archived object to be made readable for `days` days.
    async fn thaw(&self, key: &str, days: i32) -> Result<Thaw, StorageError>;

    // Compare-and-swap for small records (locks): every write and delete is
    // conditional, so two writers racing never both win.

    /// An object and its ETag.
    async fn get_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StorageError>;
    /// Writes `body` if the object is absent (`expected` None: else
    /// [`StorageError::Exists`]) or still has ETag `expected` (else
    /// [`StorageError::Changed`], or NotFound when gone); returns the new ETag.
    async fn put_versioned(&self, key: &str, body: Vec<u8>, expected: Option<&str>) -> Result<String, StorageError>;
    /// Deletes the object if it still has ETag `expected` ([`StorageError::Changed`]
    /// if not; a missing object succeeds).
    async fn delete_versioned(&self, key: &str, expected: &str) -> Result<(), StorageError>;
}

// ------------------------------------------------------------------ memory

#[derive(Debug, Clone)]
struct MemoryObject {
    /// Bumped on every write: the ETag is this number.
    version: u64,
    body: Vec<u8>,
    modified: DateTime<Utc>,
    retained_until: Option<DateTime<Utc>>,
    archived: bool,
}

/// Objects in a map: for unit tests and fixtures.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    objects: Mutex<BTreeMap<String, MemoryObject>>,
    writes: std::sync::atomic::AtomicU64,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Test hook: put an Object Lock retention on an object.
    pub fn lock_until(&self, key: &str, until: DateTime<Utc>) {
        if let Some(o) = self.objects.lock().unwrap().get_mut(key) {
            o.retained_until = Some(until);
        }
    }

    /// Test hook: overwrite an object's bytes (corruption fixtures).
    pub fn replace(&self, key: &str, body: Vec<u8>) {
        if let Some(o) = self.objects.lock().unwrap().get_mut(key) {
            o.body = body;
        }
    }

    /// Test hook: age every object (grace periods).
    pub fn age_all(&self, by: chrono::TimeDelta) {
        for o in self.objects.lock().unwrap().values_mut() {
            o.modified -= by;
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    fn location(&self) -> String {
        "memory:".into()
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let objects = self.objects.lock().unwrap();
        let o = objects.get(key).ok_or_else(|| StorageError::NotFound(key.into()))?;
        if o.archived {
            return Err(StorageError::Archived(key.into()));
        }
        Ok(o.body.clone())
    }

    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        let body = self.get(key).await?;
        let start = (offset as usize).min(body.len());
        let end = (offset + length).min(body.len() as u64) as usize;
        Ok(body[start..end].to_vec())
    }

    async fn put(&self, key: &str, body: Vec<u8>, options: &PutOptions) -> Result<(), StorageError> {
        let mut objects = self.objects.lock().unwrap();
        if options.create_only && objects.contains_key(key) {
            return Err(StorageError::Exists(key.into()));
        }
        let archived = options.storage_class.is_some_and(StorageClass::is_archive);
        let version = self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        objects
            .insert(key.into(), MemoryObject { version, body, modified: Utc::now(), retained_until: None, archived });
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| ObjectInfo { key: k.clone(), size: o.body.len() as u64, last_modified: Some(o.modified) })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    async fn retained_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
        Ok(self.objects.lock().unwrap().get(key).and_then(|o| o.retained_until))
    }

    async fn thaw(&self, key: &str, _days: i32) -> Result<Thaw, StorageError> {
        let mut objects = self.objects.lock().unwrap();
        let o = objects.get_mut(key).ok_or_else(|| StorageError::NotFound(key.into()))?;
        o.archived = false;
        Ok(Thaw::Ready)
    }

    async fn get_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StorageError> {
        let objects = self.objects.lock().unwrap();
        let o = objects.get(key).ok_or_else(|| StorageError::NotFound(key.into()))?;
        Ok((o.body.clone(), format!("\"{}\"", o.version)))
    }

    async fn put_versioned(&self, key: &str, body: Vec<u8>, expected: Option<&str>) -> Result<String, StorageError> {
        let mut objects = self.objects.lock().unwrap();
        let current = objects.get(key).map(|o| format!("\"{}\"", o.version));
        match (expected, current) {
            (None, Some(_)) => return Err(StorageError::Exists(key.into())),
            (Some(_), None) => return Err(StorageError::NotFound(key.into())),
            (Some(expected), Some(current)) if expected != current => return Err(StorageError::Changed(key.into())),
            _ => {}
        }
        let version = self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        objects.insert(
            key.into(),
            MemoryObject { version, body, modified: Utc::now(), retained_until: None, archived: false },
        );
        Ok(format!("\"{version}\""))
    }

    async fn delete_versioned(&self, key: &str, expected: &str) -> Result<(), StorageError> {
        let mut objects = self.objects.lock().unwrap();
        match objects.get(key) {
            None => Ok(()),
            Some(o) if format!("\"{}\"", o.version) != expected => Err(StorageError::Changed(key.into())),
            Some(_) => {
                objects.remove(key);
                Ok(())
            }
        }
    }
}
