//! `coffer repo check`: authenticates every index file and manifest, checks
//! that every block of every restore point is in an indexed pack that
//! exists with the size the index says, and with `read_data` downloads every
//! pack, checks its hash against its name, opens its header and every blob,
//! and compares the header with the index. It reads everything it can and
//! reports each damaged object by name instead of stopping at the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use super::config::{MasterKey, RepositoryConfig};
use super::crypto::Keys;
use super::index::{Index, IndexFile};
use super::manifest::Manifest;
use super::pack::{PackEntry, pack_key, read_header};
use super::repo::RepoError;
use super::storage::{Storage, StorageError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// The object's key under the repository prefix.
    pub object: String,
    pub problem: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub index_files: usize,
    pub packs: usize,
    pub restore_points: usize,
    pub blobs: usize,
    /// Packs downloaded and verified (with `read_data`).
    pub packs_read: usize,
    pub damage: Vec<Damage>,
    /// Not damage: e.g. packs an interrupted backup left, which prune removes.
    pub notes: Vec<String>,
}

impl CheckReport {
    pub fn is_healthy(&self) -> bool {
        self.damage.is_empty()
    }

    fn damaged(&mut self, object: impl Into<String>, problem: impl Into<String>) {
        self.damage.push(Damage { object: object.into(), problem: problem.into() });
    }
}

pub async fn check(
    storage: Arc<dyn Storage>,
    _config: &RepositoryConfig,
    master: &MasterKey,
    read_data: bool,
) -> Result<CheckReport, RepoError> {
    let keys = Keys::new(master);
    let mut report = CheckReport::default();

    // Index files: each must hash to its name and open.
    let mut index = Index::default();
    let mut indexed: HashMap<String, Vec<PackEntry>> = HashMap::new();
    for object in storage.list("index/").await? {
        report.index_files += 1;
        let id = object.key.trim_start_matches("index/");
        let opened = match storage.get(&object.key).await {
            Ok(bytes) => IndexFile::open(&keys, id, &bytes).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match opened {
            Ok(file) => {
                for pack in &file.packs {
                    match pack.entries() {
                        Ok(entries) => {
                            index.add_pack(&pack.id, pack.size, &entries);
                            indexed.entry(pack.id.clone()).or_insert(entries);
                        }
                        Err(e) => report.damaged(&object.key, e.to_string()),
                    }
                }
            }
            Err(problem) => report.damaged(&object.key, problem),
        }
    }
    report.blobs = index.blob_count();

    // Packs: every indexed one present with its size; others are leftovers.
    let stored: BTreeMap<String, u64> = storage
        .list("data/")
        .await?
        .into_iter()
        .filter_map(|o| o.key.rsplit('/').next().map(|id| (id.to_string(), o.size)))
        .collect();
    report.packs = stored.len();
    let mut bad_packs: HashSet<String> = HashSet::new();
    for pack in &index.packs {
        match stored.get(&pack.id) {
            None => {
                report.damaged(pack_key(&pack.id), "missing: an index lists it but it is not in the bucket");
                bad_packs.insert(pack.id.clone());
            }
            Some(&size) if size != pack.size => {
                report.damaged(pack_key(&pack.id), format!("{size} bytes, the index says {}", pack.size));
                bad_packs.insert(pack.id.clone());
            }
            Some(_) => {}
        }
    }
    let unindexed = stored.keys().filter(|id| !index.has_pack(id)).count();
    if unindexed > 0 {
        report.notes.push(format!(
            "{unindexed} pack(s) no index lists (left by an interrupted backup; `coffer repo prune` removes them after its grace period)"
        ));
    }

    // With read_data: every pack's bytes, header and blobs.
    if read_data {
        let checked: Vec<(String, Result<(), String>)> =
            futures::stream::iter(index.packs.iter().filter(|p| !bad_packs.contains(&p.id)).map(|p| {
                let storage = storage.clone();
                let keys = keys.clone();
                let expected = indexed.get(&p.id).cloned().unwrap_or_default();
                let id = p.id.clone();
                async move {
                    let result = match storage.get(&pack_key(&id)).await {
                        Ok(bytes) => tokio::task::spawn_blocking({
                            let id = id.clone();
                            move || verify_pack(&keys, &id, &bytes, &expected)
                        })
                        .await
                        .unwrap_or_else(|e| Err(e.to_string())),
                        Err(StorageError::Archived(_)) => {
                            Err("archived: restore it (or run check without --read-data)".into())
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    (id, result)
                }
            }))
            .buffer_unordered(4)
            .collect()
            .await;
        for (id, result) in checked {
            report.packs_read += 1;
            if let Err(problem) = result {
                report.damaged(pack_key(&id), problem);
                bad_packs.insert(id);
            }
        }
    }

    // Manifests: each opens, and each of its blobs is indexed in a sound pack.
    for object in storage.list("manifests/").await? {
        report.restore_points += 1;
        let id = object.key.trim_start_matches("manifests/");
        let manifest = match storage.get(&object.key).await {
            Ok(bytes) => Manifest::open(&keys, id, &bytes).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let map = manifest.and_then(|m| m.block_map().map_err(|e| e.to_string()));
        let map = match map {
            Ok(map) => map,
            Err(problem) => {
                report.damaged(&object.key, problem);
                continue;
            }
        };
        let mut missing = 0usize;
        let mut in_bad: BTreeMap<String, usize> = BTreeMap::new();
        for blob in map.values() {
            match index.get(blob) {
                None => missing += 1,
                Some(location) => {
                    let pack = index.pack_id(location);
                    if bad_packs.contains(pack) {
                        *in_bad.entry(pack.to_string()).or_default() += 1;
                    }
                }
            }
        }
        if missing > 0 {
            report.damaged(&object.key, format!("{missing} block(s) refer to blobs no index lists"));
        }
        for (pack, count) in in_bad {
            report.damaged(&object.key, format!("{count} block(s) are in damaged or missing pack {}", pack_key(&pack)));
        }
    }
    Ok(report)
}

fn verify_pack(keys: &Keys, id: &str, bytes: &[u8], expected: &[PackEntry]) -> Result<(), String> {
    let entries = read_header(keys, id, bytes).map_err(|e| e.to_string())?;
    if entries != expected {
        return Err("its header differs from the index".into());
    }
    let mut bad = 0usize;
    let mut first = None;
    for e in &entries {
        let sealed = &bytes[e.offset as usize..e.offset as usize + e.length as usize];
        if let Err(problem) = keys.open_blob(&e.id, e.raw_length as usize, sealed) {
            bad += 1;
            first.get_or_insert(format!("blob {}: {problem}", e.id));
        }
    }
    match first {
        None => Ok(()),
        Some(first) => Err(format!("{bad} of {} blobs do not authenticate; first: {first}", entries.len())),
    }
}
