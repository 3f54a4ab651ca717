//! Locks (`locks/…`): backups and restores hold a shared lock, prune holds
//! the exclusive one, so prune never deletes a pack a running backup is
//! about to reference. The exclusive lock is one key written with
//! `If-None-Match: *`, so two prunes cannot both take it; each side writes
//! its own lock first and then looks for the other kind, so of a backup and
//! a prune starting together at least one sees the other and backs off.
//!
//! Holders rewrite their lock every [`REFRESH`]; a lock not refreshed for
//! [`STALE_AFTER`], or one of this host whose process is gone, belongs to a
//! process that died and is ignored (and removed by the next exclusive
//! locker).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::storage::{PutOptions, Storage, StorageError};

pub const EXCLUSIVE_KEY: &str = "locks/exclusive";
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
pub const STALE_AFTER: TimeDelta = TimeDelta::minutes(30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// `shared` or `exclusive`.
    pub kind: String,
    /// What holds it: `backup`, `prune`, …
    pub purpose: String,
    pub host: String,
    pub pid: u32,
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
}

impl LockRecord {
    /// Not refreshed for [`STALE_AFTER`], or written by a process of this
    /// host that is no longer running (a killed backup on this machine need
    /// not hold prune off for half an hour).
    fn is_stale(&self, now: DateTime<Utc>) -> bool {
        now - self.refreshed > STALE_AFTER || (self.host == hostname() && !process_running(self.pid))
    }
}

/// Whether a process of this host runs under `pid`; where that cannot be
/// told (no /proc), assume it does.
fn process_running(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "the repository is locked by {purpose} on {host} (pid {pid}) since {since}; try again when it is done \
         (a lock not refreshed for 30 minutes is ignored)"
    )]
    Held { purpose: String, host: String, pid: u32, since: DateTime<Utc> },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A held lock; call [`Lock::release`] when done. A lock dropped without
/// release (a crash) goes stale by itself.
pub struct Lock {
    storage: Arc<dyn Storage>,
    key: String,
    refresher: tokio::task::JoinHandle<()>,
}

fn record(kind: &str, purpose: &str) -> LockRecord {
    let now = Utc::now();
    LockRecord {
        kind: kind.into(),
        purpose: purpose.into(),
        host: hostname(),
        pid: std::process::id(),
        created: now,
        refreshed: now,
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown host".into())
}

async fn read(storage: &dyn Storage, key: &str) -> Result<Option<LockRecord>, StorageError> {
    let bytes = match storage.get(key).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Ok(record) = serde_json::from_slice(&bytes) {
        return Ok(Some(record));
    }
    // An unreadable lock is held by nobody we can name, and as old as its
    // object: holders rewrite theirs every REFRESH, so one not written for
    // STALE_AFTER is stale like any other (when its age cannot be told,
    // it counts as fresh: better to wait than to trample).
    let written = storage
        .list(key)
        .await?
        .into_iter()
        .find(|o| o.key == key)
        .and_then(|o| o.last_modified);
    let mut unknown = record("unknown", "an unknown process");
    unknown.host = "an unknown host".into();
    unknown.pid = 0;
    if let Some(written) = written {
        unknown.created = written;
        unknown.refreshed = written;
    }
    Ok(Some(unknown))
}

fn held(r: LockRecord) -> LockError {
    LockError::Held { purpose: r.purpose, host: r.host, pid: r.pid, since: r.created }
}

impl Lock {
    /// For backups and restores.
    pub async fn shared(storage: Arc<dyn Storage>, purpose: &str) -> Result<Lock, LockError> {
        let key = format!("locks/shared-{}", uuid::Uuid::new_v4());
        let mine = record("shared", purpose);
        storage.put(&key, serde_json::to_vec(&mine).unwrap_or_default(), &PutOptions::default()).await?;
        if let Some(other) = read(storage.as_ref(), EXCLUSIVE_KEY).await?
            && !other.is_stale(Utc::now())
        {
            let _ = storage.delete(&key).await;
            return Err(held(other));
        }
        Ok(Self::hold(storage, key, mine))
    }

    /// For prune: no other lock may be fresh.
    pub async fn exclusive(storage: Arc<dyn Storage>, purpose: &str) -> Result<Lock, LockError> {
        let mine = record("exclusive", purpose);
        let body = serde_json::to_vec(&mine).unwrap_or_default();
        let create = PutOptions { create_only: true, ..PutOptions::default() };
        match storage.put(EXCLUSIVE_KEY, body.clone(), &create).await {
            Ok(()) => {}
            Err(StorageError::Exists(_)) => match read(storage.as_ref(), EXCLUSIVE_KEY).await? {
                Some(other) if !other.is_stale(Utc::now()) => return Err(held(other)),
                // Stale (or gone meanwhile): take it over, still racing fairly.
                _ => {
                    storage.delete(EXCLUSIVE_KEY).await?;
                    storage.put(EXCLUSIVE_KEY, body, &create).await.map_err(|e| match e {
                        StorageError::Exists(_) => LockError::Held {
                            purpose: "another prune".into(),
                            host: "another host".into(),
                            pid: 0,
                            since: Utc::now(),
                        },
                        e => e.into(),
                    })?;
                }
            },
            Err(e) => return Err(e.into()),
        }
        let now = Utc::now();
        for object in storage.list("locks/shared-").await? {
            match read(storage.as_ref(), &object.key).await? {
                Some(other) if other.is_stale(now) => storage.delete(&object.key).await?,
                Some(other) => {
                    let _ = storage.delete(EXCLUSIVE_KEY).await;
                    return Err(held(other));
                }
                None => {}
            }
        }
        Ok(Self::hold(storage, EXCLUSIVE_KEY.into(), mine))
    }

    fn hold(storage: Arc<dyn Storage>, key: String, mut mine: LockRecord) -> Lock {
        let refresher = {
            let storage = storage.clone();
            let key = key.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH).await;
                    mine.refreshed = Utc::now();
                    if let Err(e) = storage.put(&key, serde_json::to_vec(&mine).unwrap_or_default(), &PutOptions::default()).await {
                        tracing::warn!(%key, error = %e, "refreshing the repository lock");
                    }
                }
            })
        };
        Lock { storage, key, refresher }
    }

    pub async fn release(mut self) -> Result<(), StorageError> {
        // Wait for the refresher to be gone: a refresh still in flight
        // after the delete would bring the lock back for 30 minutes.
        self.refresher.abort();
        let _ = (&mut self.refresher).await;
        self.storage.delete(&self.key).await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}
