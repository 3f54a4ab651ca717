//! Locks (`locks/…`): backups and restores hold a shared lock, prune holds
//! the exclusive one, so prune never deletes a pack a running backup is
//! about to reference. The exclusive lock is one key written with
//! `If-None-Match: *`, so two prunes cannot both take it; each side writes
//! its own lock first and then looks for the other kind, so of a backup and
//! a prune starting together at least one sees the other and backs off.
//!
//! Holders rewrite their lock every [`REFRESH`]; a lock not refreshed for
//! [`STALE_AFTER`], or one whose process is provably gone, belongs to a
//! process that died and is ignored (and removed by the next exclusive
//! locker). "Provably gone" needs the same host, boot and PID namespace
//! and no process with that pid and start time: a hostname alone is shared
//! by containers and by workers in overlapping VPCs.
//!
//! Every rewrite, takeover and release is conditional on the ETag last
//! seen (compare-and-swap), and every record carries a random nonce, so a
//! takeover of a stale lock has one winner and nobody deletes a lock that
//! is not theirs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::storage::{Storage, StorageError};

pub const EXCLUSIVE_KEY: &str = "locks/exclusive";
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
pub const STALE_AFTER: TimeDelta = TimeDelta::minutes(30);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// `shared` or `exclusive`.
    pub kind: String,
    /// What holds it: `backup`, `prune`, …
    pub purpose: String,
    pub host: String,
    pub pid: u32,
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
    /// `/proc/sys/kernel/random/boot_id` of the holder's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Inode of the holder's PID namespace (`/proc/self/ns/pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<u64>,
    /// The holder's start time in clock ticks after boot (`/proc/<pid>/stat`
    /// field 22): a pid reused by another process does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
    /// Random per lock: who wrote this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Where the current process runs, as far as liveness can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpace {
    pub host: String,
    pub boot_id: Option<String>,
    pub pid_namespace: Option<u64>,
}

impl ProcessSpace {
    pub fn current() -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            host: hostname(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|b| b.trim().to_string()),
            pid_namespace: std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino()),
        }
    }
}

/// A process's start time (ticks after boot) from `/proc/<pid>/stat`.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

impl LockRecord {
    /// Not refreshed for [`STALE_AFTER`], or written by a process that is
    /// provably gone: same host, boot and PID namespace as `here`, and no
    /// process of that pid and start time (a killed backup on this machine
    /// need not hold prune off for half an hour). Records without the
    /// identity fields (older Coffer) only go stale by age.
    pub fn is_stale(&self, now: DateTime<Utc>, here: &ProcessSpace) -> bool {
        if now - self.refreshed > STALE_AFTER {
            return true;
        }
        let same_space = self.host == here.host
            && self.boot_id.is_some()
            && self.boot_id == here.boot_id
            && self.pid_namespace.is_some()
            && self.pid_namespace == here.pid_namespace;
        match (same_space, self.process_start) {
            (true, Some(started)) => process_start(self.pid) != Some(started),
            _ => false,
        }
    }
}

#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "the repository lock {key} was removed or taken over by another process while this one held it \
         (was this process paused for more than 30 minutes?); nothing was committed"
    )]
    Lost { key: String },
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
    /// The ETag of the record as this holder last wrote it.
    etag: Arc<tokio::sync::Mutex<String>>,
    refresher: tokio::task::JoinHandle<()>,
}

fn record(kind: &str, purpose: &str) -> LockRecord {
    let now = Utc::now();
    let here = ProcessSpace::current();
    let pid = std::process::id();
    LockRecord {
        kind: kind.into(),
        purpose: purpose.into(),
        host: here.host,
        pid,
        created: now,
        refreshed: now,
        boot_id: here.boot_id,
        pid_namespace: here.pid_namespace,
        process_start: process_start(pid),
        nonce: Some(uuid::Uuid::new_v4().to_string()),
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown host".into())
}

/// A lock record as stored: what it says and the ETag it was read at.
struct Found {
    record: LockRecord,
    etag: String,
}

async fn read(storage: &dyn Storage, key: &str) -> Result<Option<Found>, StorageError> {
    let (bytes, etag) = match storage.get_versioned(key).await {
        Ok(found) => found,
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Ok(record) = serde_json::from_slice(&bytes) {
        return Ok(Some(Found { record, etag }));
    }
    // An unreadable lock is held by nobody we can name, and as old as its
    // object: holders rewrite theirs every REFRESH, so one not written for
    // STALE_AFTER is stale like any other (when its age cannot be told,
    // it counts as fresh: better to wait than to trample).
    let written = storage.list(key).await?.into_iter().find(|o| o.key == key).and_then(|o| o.last_modified);
    let now = Utc::now();
    let unknown = LockRecord {
        kind: "unknown".into(),
        purpose: "an unknown process".into(),
        host: "an unknown host".into(),
        pid: 0,
        created: written.unwrap_or(now),
        refreshed: written.unwrap_or(now),
        ..LockRecord::default()
    };
    Ok(Some(Found { record: unknown, etag }))
}

fn held(r: LockRecord) -> LockError {
    LockError::Held { purpose: r.purpose, host: r.host, pid: r.pid, since: r.created }
}

fn body(record: &LockRecord) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

impl Lock {
    /// For backups and restores.
    pub async fn shared(storage: Arc<dyn Storage>, purpose: &str) -> Result<Lock, LockError> {
        let key = format!("locks/shared-{}", uuid::Uuid::new_v4());
        let mine = record("shared", purpose);
        let etag = storage.put_versioned(&key, body(&mine), None).await?;
        if let Some(other) = read(storage.as_ref(), EXCLUSIVE_KEY).await?
            && !other.record.is_stale(Utc::now(), &ProcessSpace::current())
        {
            let _ = storage.delete_versioned(&key, &etag).await;
            return Err(held(other.record));
        }
        Ok(Self::hold(storage, key, mine, etag))
    }

    /// For prune: no other lock may be fresh.
    pub async fn exclusive(storage: Arc<dyn Storage>, purpose: &str) -> Result<Lock, LockError> {
        let mine = record("exclusive", purpose);
        let here = ProcessSpace::current();
        let etag = match storage.put_versioned(EXCLUSIVE_KEY, body(&mine), None).await {
            Ok(etag) => etag,
            Err(StorageError::Exists(_)) => match read(storage.as_ref(), EXCLUSIVE_KEY).await? {
                Some(other) if !other.record.is_stale(Utc::now(), &here) => return Err(held(other.record)),
                // Stale: replace exactly the record judged stale. Of two
                // prunes taking it over at once, one write finds the other's
                // record instead and fails.
                Some(stale) => match storage.put_versioned(EXCLUSIVE_KEY, body(&mine), Some(&stale.etag)).await {
                    Ok(etag) => etag,
                    Err(StorageError::Changed(_) | StorageError::NotFound(_)) => return Err(Self::taken_over()),
                    Err(e) => return Err(e.into()),
                },
                // Gone meanwhile: race for it afresh.
                None => match storage.put_versioned(EXCLUSIVE_KEY, body(&mine), None).await {
                    Ok(etag) => etag,
                    Err(StorageError::Exists(_)) => return Err(Self::taken_over()),
                    Err(e) => return Err(e.into()),
                },
            },
            Err(e) => return Err(e.into()),
        };
        let now = Utc::now();
        for object in storage.list("locks/shared-").await? {
            match read(storage.as_ref(), &object.key).await? {
                Some(other) if other.record.is_stale(now, &here) => {
                    match storage.delete_versioned(&object.key, &other.etag).await {
                        // Refreshed meanwhile: its holder is alive after all.
                        Err(StorageError::Changed(_)) => {
                            let _ = storage.delete_versioned(EXCLUSIVE_KEY, &etag).await;
                            return Err(held(other.record));
                        }
                        result => result?,
                    }
                }
                Some(other) => {
                    let _ = storage.delete_versioned(EXCLUSIVE_KEY, &etag).await;
                    return Err(held(other.record));
                }
                None => {}
            }
        }
        Ok(Self::hold(storage, EXCLUSIVE_KEY.into(), mine, etag))
    }

    fn taken_over() -> LockError {
        LockError::Held { purpose: "another prune".into(), host: "another host".into(), pid: 0, since: Utc::now() }
    }

    fn hold(storage: Arc<dyn Storage>, key: String, mut mine: LockRecord, etag: String) -> Lock {
        let etag = Arc::new(tokio::sync::Mutex::new(etag));
        let refresher = {
            let storage = storage.clone();
            let key = key.clone();
            let etag = etag.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH).await;
                    mine.refreshed = Utc::now();
                    let mut current = etag.lock().await;
                    match storage.put_versioned(&key, body(&mine), Some(&current)).await {
                        Ok(next) => *current = next,
                        Err(StorageError::Changed(_) | StorageError::NotFound(_)) => {
                            // Someone judged it stale and took it: never write
                            // it back over theirs; `verify` tells the holder.
                            tracing::error!(%key, "the repository lock was removed or taken over by another process");
                            return;
                        }
                        Err(e) => tracing::warn!(%key, error = %e, "refreshing the repository lock"),
                    }
                }
            })
        };
        Lock { storage, key, etag, refresher }
    }

    /// The key this lock is stored under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Checks that the lock is still this holder's (nobody removed or took
    /// it over): before committing work that relied on it.
    pub async fn verify(&self) -> Result<(), LockError> {
        self.guard().verify().await
    }

    /// A handle that can [`LockGuard::verify`] the lock, for the code that
    /// commits under it.
    pub fn guard(&self) -> LockGuard {
        LockGuard { storage: self.storage.clone(), key: self.key.clone(), etag: self.etag.clone() }
    }

    /// Deletes the lock if it is still this holder's.
    pub async fn release(mut self) -> Result<(), StorageError> {
        // Wait for the refresher to be gone: a refresh still in flight
        // after the delete would bring the lock back for 30 minutes.
        self.refresher.abort();
        let _ = (&mut self.refresher).await;
        let etag = self.etag.lock().await.clone();
        self.storage.delete_versioned(&self.key, &etag).await
    }
}

/// See [`Lock::guard`].
#[derive(Clone)]
pub struct LockGuard {
    storage: Arc<dyn Storage>,
    key: String,
    etag: Arc<tokio::sync::Mutex<String>>,
}

impl LockGuard {
    pub async fn verify(&self) -> Result<(), LockError> {
        let etag = self.etag.lock().await.clone();
        match self.storage.get_versioned(&self.key).await {
            Ok((_, current)) if current == etag => Ok(()),
            Ok(_) | Err(StorageError::NotFound(_)) => Err(LockError::Lost { key: self.key.clone() }),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}
