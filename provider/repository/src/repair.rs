//! `coffer repo repair-index`: the way out of a damaged index file. Under
//! the exclusive lock, every pack that no intact index lists is read and
//! its (authenticated) header indexed afresh in a new index file; then the
//! damaged index files are deleted. Packs nothing else lists (left by an
//! interrupted backup) are indexed too: prune reclaims them as unused.

use std::collections::BTreeSet;

use futures::StreamExt;
use serde::Serialize;

use super::index::{IndexFile, IndexedPack};
use super::lock::Lock;
use super::pack::{pack_key, read_header};
use super::repo::{RepoError, Repository};

#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// Damaged index files deleted.
    pub removed_index_files: Vec<String>,
    /// Packs indexed afresh from their headers.
    pub packs_indexed: usize,
    /// The new index file (none when every pack was already indexed).
    pub new_index_file: Option<String>,
}

pub async fn repair_index(repo: &mut Repository) -> Result<RepairReport, RepoError> {
    let storage = repo.storage().clone();
    let lock = Lock::exclusive(storage.clone(), "repair-index").await?;
    let result = repair_locked(repo).await;
    let released = lock.release().await;
    let report = result?;
    released?;
    Ok(report)
}

async fn repair_locked(repo: &mut Repository) -> Result<RepairReport, RepoError> {
    // Read again under the lock: nothing changes it meanwhile.
    repo.load_index().await?;
    let storage = repo.storage().clone();
    let unindexed: BTreeSet<String> = storage
        .list("data/")
        .await?
        .into_iter()
        .filter_map(|o| o.key.rsplit('/').next().map(str::to_string))
        .filter(|id| !repo.index().has_pack(id))
        .collect();
    let keys = repo.keys().clone();
    let read: Vec<Result<IndexedPack, String>> = futures::stream::iter(unindexed.into_iter().map(|id| {
        let storage = storage.clone();
        let keys = keys.clone();
        async move {
            let key = pack_key(&id);
            let bytes = storage.get(&key).await.map_err(|e| format!("{key}: {e}"))?;
            let size = bytes.len() as u64;
            let entries = tokio::task::spawn_blocking({
                let id = id.clone();
                move || read_header(&keys, &id, &bytes)
            })
            .await
            .map_err(|e| format!("{key}: {e}"))?
            .map_err(|e| format!("{key} is damaged: {e}"))?;
            Ok(IndexedPack::new(&id, size, &entries))
        }
    }))
    .buffer_unordered(4)
    .collect()
    .await;
    let (packs, problems): (Vec<_>, Vec<_>) = read.into_iter().partition(Result::is_ok);
    let packs: Vec<IndexedPack> = packs.into_iter().filter_map(Result::ok).collect();
    let mut report = RepairReport { packs_indexed: packs.len(), ..RepairReport::default() };
    if !packs.is_empty() {
        report.new_index_file = Some(repo.write_index(IndexFile { packs }).await?);
    }
    let problems: Vec<String> = problems.into_iter().filter_map(Result::err).collect();
    if !problems.is_empty() {
        // The damaged index files stay: they may be all that lists those packs.
        return Err(RepoError::Unindexable { count: problems.len(), problems });
    }
    for (key, _) in std::mem::take(&mut repo.damaged_index_files) {
        storage.delete(&key).await?;
        report.removed_index_files.push(key);
    }
    Ok(report)
}
