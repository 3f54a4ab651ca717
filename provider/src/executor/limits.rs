//! Bounded concurrency: how many resources a run works on at once in one
//! region, and how many calls of one costly kind are in flight per region.
//! Throttling itself is retried by the SDK (standard retry mode, exponential
//! backoff with jitter; `coffer` raises the attempts, see `bin/coffer.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a permit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// One resource being worked on.
    Resource,
    /// CreateSnapshots / CreateDBSnapshot / CreateDBClusterSnapshot.
    CreateSnapshot,
    /// CopySnapshot / CopyDB(Cluster)Snapshot into a region: AWS allows 20
    /// concurrent copies per destination region (EBS and RDS alike), so we
    /// keep well below it to leave room for others.
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
            Api::Resource | Api::CreateSnapshot => self.concurrency,
            Api::Copy => self.concurrency.min(5),
        }
    }

    /// Waits for a slot of `api` in `region`.
    pub async fn acquire(&self, region: &str, api: Api) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut all = self.semaphores.lock().expect("limits lock");
            all.entry((region.to_string(), api))
                .or_insert_with(|| Arc::new(Semaphore::new(self.size(api))))
                .clone()
        };
        semaphore.acquire_owned().await.expect("limit semaphores are never closed")
    }
}
