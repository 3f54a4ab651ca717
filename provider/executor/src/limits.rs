//! Bounded concurrency: how many resources a run starts snapshots of at once
//! in one region, and how many copies are in flight into one region.
//! Waiting for a snapshot to complete takes no slot: AWS makes snapshots in
//! parallel however long they take, so holding slots while waiting would
//! only serialize a large estate behind its slowest volumes.
//! Throttling itself is retried by the SDK (standard retry mode, exponential
//! backoff with jitter; `coffer` raises the attempts, see `bin/coffer.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a permit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// Starting one resource's snapshot: looking for an earlier attempt's,
    /// then CreateSnapshots / CreateDBSnapshot / CreateDBClusterSnapshot.
    Start,
    /// CopySnapshot / CopyDB(Cluster)Snapshot into a region, until the copy
    /// completes: AWS allows 20 copies in progress per destination region
    /// (EBS and RDS alike), so we keep well below it to leave room for
    /// others.
    Copy,
}

pub struct Limits {
    concurrency: usize,
    semaphores: Mutex<HashMap<(String, Api), Arc<Semaphore>>>,
}

impl Limits {
    pub fn new(concurrency: usize) -> Self {
        Self { concurrency: concurrency.max(1), semaphores: Mutex::default() }
    }

    fn size(&self, api: Api) -> usize {
        match api {
            Api::Start => self.concurrency,
            Api::Copy => self.concurrency.min(5),
        }
    }

    /// Waits for a slot of `api` in `region`.
    pub async fn acquire(&self, region: &str, api: Api) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut all = self.semaphores.lock().expect("limits lock");
            all.entry((region.to_string(), api)).or_insert_with(|| Arc::new(Semaphore::new(self.size(api)))).clone()
        };
        semaphore.acquire_owned().await.expect("limit semaphores are never closed")
    }
}
