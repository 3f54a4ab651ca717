//! Two-phase prune. A pack no restore point needs any more is first *marked*
//! (`prune/marks.json`: pack id → when it was found unused) and deleted by a
//! later prune once it has stayed unused for the grace period; a pack a new
//! backup used again in between is unmarked. The index is rewritten without
//! the packs about to go before they go, so a prune killed half-way leaves
//! only unindexed packs behind. Nothing under S3 Object Lock is deleted:
//! such packs stay marked and are reported as held.
//!
//! Packs are removed whole; a pack still holding one needed blob stays.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::index::{IndexFile, IndexedPack};
use super::lock::Lock;
use super::pack::pack_key;
use super::repo::{RepoError, Repository};
use super::storage::{PutOptions, Storage, StorageError};

pub const MARKS_KEY: &str = "prune/marks.json";
pub const DEFAULT_GRACE: TimeDelta = TimeDelta::hours(24);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Packs found unused now, to be deleted by a prune after the grace period.
    pub marked: usize,
    pub deleted: usize,
    pub bytes_freed: u64,
    /// Marked packs whose grace period has not passed.
    pub waiting: usize,
    /// Packs unused but protected by Object Lock, with the date it ends.
    pub held: Vec<(String, DateTime<Utc>)>,
    /// Marked packs a backup used again.
    pub unmarked: usize,
}

async fn read_marks(storage: &dyn Storage) -> Result<BTreeMap<String, DateTime<Utc>>, RepoError> {
    match storage.get(MARKS_KEY).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|cause| RepoError::UnreadableMarks { cause }),
        Err(StorageError::NotFound(_)) => Ok(BTreeMap::new()),
        Err(e) => Err(e.into()),
    }
}

/// Prunes under the exclusive lock. `now` is injectable for tests.
pub async fn prune(repo: &mut Repository, grace: TimeDelta, now: DateTime<Utc>) -> Result<PruneReport, RepoError> {
    let storage = repo.storage().clone();
    let lock = Lock::exclusive(storage.clone(), "prune").await?;
    let result = prune_locked(repo, &storage, grace, now).await;
    let released = lock.release().await;
    let report = result?;
    released?;
    Ok(report)
}

async fn prune_locked(
    repo: &mut Repository,
    storage: &Arc<dyn Storage>,
    grace: TimeDelta,
    now: DateTime<Utc>,
) -> Result<PruneReport, RepoError> {
    let mut report = PruneReport::default();
    // Packs only a damaged index lists look unused: delete nothing until
    // the index is rebuilt.
    if let Some((key, problem)) = repo.damaged_index_files.first() {
        return Err(RepoError::IndexDamaged { key: key.clone(), problem: problem.clone() });
    }

    // What restore points need. A blob no index lists means damage: stop
    // before deleting anything.
    let mut used: HashSet<String> = HashSet::new();
    for manifest in repo.manifests().await? {
        let map = manifest
            .block_map()
            .map_err(|problem| RepoError::Damaged { object: format!("restore point {}", manifest.id), problem })?;
        for blob in map.values() {
            let location = repo.index().get(blob).ok_or_else(|| RepoError::MissingBlob {
                point: manifest.id.clone(),
                blob: blob.to_string(),
                advice: "; prune stopped without deleting anything (run `coffer repo check`)".into(),
            })?;
            used.insert(repo.index().pack_id(location).to_string());
        }
    }

    // Unused: indexed packs nobody needs, and packs no index lists.
    let stored = storage.list("data/").await?;
    let unused: BTreeMap<String, u64> = stored
        .iter()
        .filter_map(|o| o.key.rsplit('/').next().map(|id| (id.to_string(), o.size)))
        .filter(|(id, _)| !used.contains(id))
        .collect();

    let mut marks = read_marks(storage.as_ref()).await?;
    let before = marks.len();
    marks.retain(|id, _| unused.contains_key(id));
    report.unmarked = before - marks.len();

    let mut due: Vec<String> = Vec::new();
    for id in unused.keys() {
        match marks.get(id) {
            Some(&marked) if now - marked >= grace => due.push(id.clone()),
            Some(_) => report.waiting += 1,
            None => {
                marks.insert(id.clone(), now);
                report.marked += 1;
            }
        }
    }

    // Object Lock: a held pack stays (and stays marked).
    let mut deletable: Vec<String> = Vec::new();
    for id in due {
        match storage.retained_until(&pack_key(&id)).await {
            Ok(Some(until)) if until > now => report.held.push((id, until)),
            Ok(_) => deletable.push(id),
            Err(StorageError::NotFound(_)) => {
                marks.remove(&id);
            }
            Err(e) => return Err(e.into()),
        }
    }

    if !deletable.is_empty() {
        // One new index for what stays, written before the old ones go; an
        // old index file still under Object Lock keeps its packs alive.
        let mut kept: BTreeMap<String, IndexedPack> = BTreeMap::new();
        let mut held_files: Vec<(String, IndexFile)> = Vec::new();
        let mut old_files: Vec<String> = Vec::new();
        for object in storage.list("index/").await? {
            let id = object.key.trim_start_matches("index/");
            let bytes = storage.get(&object.key).await?;
            let file = IndexFile::open(repo.keys(), id, &bytes)
                .map_err(|problem| RepoError::Damaged { object: object.key.clone(), problem })?;
            match storage.retained_until(&object.key).await? {
                Some(until) if until > now => held_files.push((object.key.clone(), file.clone())),
                _ => old_files.push(object.key.clone()),
            }
            for pack in file.packs {
                kept.entry(pack.id.clone()).or_insert(pack);
            }
        }
        let pinned: HashSet<String> =
            held_files.iter().flat_map(|(_, f)| f.packs.iter().map(|p| p.id.clone())).collect();
        deletable.retain(|id| {
            if pinned.contains(id) {
                report.held.push((id.clone(), now));
                false
            } else {
                true
            }
        });
        let gone: HashSet<&str> = deletable.iter().map(String::as_str).collect();
        let remaining: Vec<IndexedPack> = kept.into_values().filter(|p| !gone.contains(p.id.as_str())).collect();
        if !remaining.is_empty() {
            let written = repo.write_index(IndexFile { packs: remaining }).await?;
            old_files.retain(|k| *k != written);
        }
        for key in &old_files {
            storage.delete(key).await?;
        }
        for id in &deletable {
            storage.delete(&pack_key(id)).await?;
            report.deleted += 1;
            report.bytes_freed += unused.get(id).copied().unwrap_or_default();
            marks.remove(id);
        }
        // Reload so this handle no longer lists what was deleted (keeping
        // the handle's settings).
        let pack_target = repo.pack_target;
        *repo = Repository::open_with_key(storage.clone(), repo.config.clone(), &repo.master_key()).await?;
        repo.pack_target = pack_target;
    }

    storage.put(MARKS_KEY, serde_json::to_vec_pretty(&marks).unwrap_or_default(), &PutOptions::default()).await?;
    Ok(report)
}
