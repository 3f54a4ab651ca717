//! The repository engine end to end on [`MemoryStorage`]: backups (full,
//! incremental, deduplicated), restores, check against corrupted fixtures,
//! prune's two phases, locks, and golden files pinning every object's
//! format (`snapshots/`, specified in docs/design/repository-format.md).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, TimeDelta, Utc};
use coffer_model::repository::StorageClass;

use super::blocks::{BLOCK_SIZE, BlockError, BlockRef, BlockSink, BlockSource, Listing};
use super::check::{self, CheckReport};
use super::config::{
    Argon2Params, FORMAT_VERSION, Immutability, KeyEnvelope, KeyError, LockMode, MasterKey, RepositoryConfig,
};
use super::crypto::{BlobId, Keys, NONCE_LEN, SEAL_OVERHEAD, TAG_LEN, hex};
use super::index::{INDEX_AAD, IndexFile, IndexedPack};
use super::lock::{EXCLUSIVE_KEY, Lock, LockError, LockRecord, ProcessSpace};
use super::manifest::{Manifest, Source, Stats, manifest_aad, manifest_key};
use super::pack::{ENTRY_LEN, HEADER_AAD, PackBuilder, PackEntry, pack_id, pack_key, read_header};
use super::prune::{self, DEFAULT_GRACE, MARKS_KEY};
use super::repo::{PointMeta, RepoError, Repository, Unlock};
use super::storage::{MemoryStorage, PutOptions, Storage, StorageError};

const BS: usize = BLOCK_SIZE as usize;
/// Small packs, so a few blocks make several of them.
const PACK_TARGET: usize = 1024 * 1024;

// ------------------------------------------------------------------ fixtures

/// Deterministic incompressible bytes.
fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(seed.as_bytes()).finalize_xof().fill(&mut out);
    out
}

/// Deterministic compressible bytes.
fn text(seed: &str, len: usize) -> Vec<u8> {
    format!("{seed} is a compressible line of text. ").bytes().cycle().take(len).collect()
}

fn block_of(bytes: &[u8], index: usize) -> &[u8] {
    let start = (index * BS).min(bytes.len());
    &bytes[start..(start + BS).min(bytes.len())]
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// A volume in memory. One that `lists_changes` compares itself with the
/// earlier versions it remembers (by source name), as EBS changed-block
/// listing does; one that does not lists every block, as a file does.
struct Volume {
    name: String,
    bytes: Vec<u8>,
    history: BTreeMap<String, Vec<u8>>,
    lists_changes: bool,
    /// Reads fail once this many blocks were read (a source that dies).
    fail_after: Option<u64>,
    reads: AtomicU64,
}

impl Volume {
    fn new(name: &str, bytes: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            bytes,
            history: BTreeMap::new(),
            lists_changes: true,
            fail_after: None,
            reads: AtomicU64::new(0),
        }
    }

    /// The same volume later, remembering this version.
    fn next(&self, name: &str, bytes: Vec<u8>) -> Self {
        let mut history = self.history.clone();
        history.insert(self.name.clone(), self.bytes.clone());
        Self { history, lists_changes: self.lists_changes, ..Self::new(name, bytes) }
    }

    fn without_change_lists(mut self) -> Self {
        self.lists_changes = false;
        self
    }

    fn failing_after(mut self, blocks: u64) -> Self {
        self.fail_after = Some(blocks);
        self
    }
}

#[async_trait]
impl BlockSource for Volume {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn list(&self, parent: Option<&str>) -> Result<Listing, BlockError> {
        let count = self.bytes.len().div_ceil(BS);
        let block = |index: usize| BlockRef { index: index as u64, token: format!("{}#{index}", self.name) };
        let old = parent.filter(|_| self.lists_changes).and_then(|p| self.history.get(p));
        let Some(old) = old else {
            return Ok(Listing {
                volume_size: self.bytes.len() as u64,
                blocks: (0..count).map(block).collect(),
                removed: Vec::new(),
                changes_since_parent: false,
            });
        };
        let mut blocks = Vec::new();
        let mut removed = Vec::new();
        for index in 0..count.max(old.len().div_ceil(BS)) {
            let (new, before) = (block_of(&self.bytes, index), block_of(old, index));
            if new == before {
                continue;
            }
            if !is_zero(new) {
                blocks.push(block(index));
            } else if !is_zero(before) {
                removed.push(index as u64);
            }
        }
        Ok(Listing { volume_size: self.bytes.len() as u64, blocks, removed, changes_since_parent: true })
    }

    async fn read(&self, block: &BlockRef) -> Result<Vec<u8>, BlockError> {
        let done = self.reads.fetch_add(1, Ordering::SeqCst);
        if self.fail_after.is_some_and(|n| done >= n) {
            return Err(BlockError::Io(format!("{}: the device went away", self.name)));
        }
        assert_eq!(block.token, format!("{}#{}", self.name, block.index), "the engine hands back the listing's token");
        Ok(block_of(&self.bytes, block.index as usize).to_vec())
    }
}

/// A restore target collecting blocks into a byte vector; it refuses a
/// block written twice or past the volume's end.
struct Collect {
    bytes: Mutex<Vec<u8>>,
    written: Mutex<HashSet<u64>>,
    finished: AtomicBool,
    aborted: AtomicBool,
}

impl Collect {
    fn new(size: u64) -> Self {
        Self {
            bytes: Mutex::new(vec![0u8; size as usize]),
            written: Mutex::new(HashSet::new()),
            finished: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl BlockSink for Collect {
    async fn write(&self, index: u64, data: Vec<u8>) -> Result<(), BlockError> {
        if !self.written.lock().unwrap().insert(index) {
            return Err(BlockError::Io(format!("block {index} written twice")));
        }
        let mut bytes = self.bytes.lock().unwrap();
        let start = index as usize * BS;
        let Some(target) = bytes.get_mut(start..start + data.len()) else {
            return Err(BlockError::Io(format!("block {index} ({} bytes) past the volume's end", data.len())));
        };
        target.copy_from_slice(&data);
        Ok(())
    }

    async fn finish(&self, blocks_written: u64) -> Result<String, BlockError> {
        assert_eq!(blocks_written, self.written.lock().unwrap().len() as u64);
        self.finished.store(true, Ordering::SeqCst);
        Ok("memory".into())
    }

    async fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }
}

const MASTER: MasterKey = MasterKey([7u8; 64]);

fn test_config() -> RepositoryConfig {
    RepositoryConfig {
        format_version: FORMAT_VERSION,
        id: "5f0c3c0e-0000-4000-8000-000000000001".into(),
        created_at: "2026-11-23T10:00:00Z".into(),
        storage_class: StorageClass::Standard,
        immutability: None,
        key: KeyEnvelope::Kms {
            kms_key_arn: "arn:aws:kms:eu-west-1:111111111111:key/test".into(),
            wrapped_master_key: String::new(),
        },
        worker_key: None,
    }
}

async fn new_repo() -> (Arc<MemoryStorage>, Repository) {
    let storage = Arc::new(MemoryStorage::new());
    let mut repo = Repository::init(storage.clone(), test_config(), &MASTER).await.unwrap();
    repo.pack_target = PACK_TARGET;
    (storage, repo)
}

async fn backup(repo: &mut Repository, source: &Volume, parent: Option<&Manifest>) -> Manifest {
    try_backup(repo, source, parent, 4).await.unwrap()
}

async fn try_backup(
    repo: &mut Repository,
    source: &Volume,
    parent: Option<&Manifest>,
    concurrency: usize,
) -> Result<Manifest, RepoError> {
    repo.backup(source, parent, PointMeta::default(), concurrency, &|_, _| {}).await
}

async fn try_restore(repo: &Repository, manifest: &Manifest) -> Result<Vec<u8>, RepoError> {
    let sink = Collect::new(manifest.volume_size);
    match repo.restore(manifest, &sink, 4, &|_, _| {}).await {
        Ok(made) => {
            assert_eq!(made, "memory");
            assert!(sink.finished.load(Ordering::SeqCst));
            Ok(sink.bytes.into_inner().unwrap())
        }
        Err(e) => {
            assert!(sink.aborted.load(Ordering::SeqCst), "a failed restore aborts its sink");
            Err(e)
        }
    }
}

async fn restore(repo: &Repository, manifest: &Manifest) -> Vec<u8> {
    try_restore(repo, manifest).await.unwrap()
}

fn keys_under(storage: &MemoryStorage, prefix: &str) -> Vec<String> {
    storage.keys().into_iter().filter(|k| k.starts_with(prefix)).collect()
}

fn pack_ids(storage: &MemoryStorage) -> Vec<String> {
    keys_under(storage, "data/").iter().map(|k| k.rsplit('/').next().unwrap().to_string()).collect()
}

/// The packs a restore point's blocks are in.
fn packs_of(repo: &Repository, manifest: &Manifest) -> HashSet<String> {
    manifest
        .block_map()
        .unwrap()
        .values()
        .map(|id| repo.index().pack_id(repo.index().get(id).expect("every block is indexed")).to_string())
        .collect()
}

async fn run_check(storage: &Arc<MemoryStorage>, read_data: bool) -> CheckReport {
    check::check(storage.clone(), &test_config(), &MASTER, read_data).await.unwrap()
}

fn assert_damaged(report: &CheckReport, object: &str, problem: &str) {
    assert!(
        report.damage.iter().any(|d| d.object == object && d.problem.contains(problem)),
        "expected damage to {object} ({problem}) in {:#?}",
        report.damage
    );
}

async fn flip_byte(storage: &MemoryStorage, key: &str, at: usize) {
    let mut bytes = storage.get(key).await.unwrap();
    bytes[at] ^= 0x01;
    storage.replace(key, bytes);
}

/// Eight full blocks: noise, noise, zeros, text, noise ×4.
fn volume_v1() -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend(noise("v1 block 0", BS));
    bytes.extend(noise("v1 block 1", BS));
    bytes.extend(vec![0u8; BS]);
    bytes.extend(text("v1 block 3", BS));
    for i in 4..8 {
        bytes.extend(noise(&format!("v1 block {i}"), BS));
    }
    bytes
}

/// v1 with block 1 rewritten, block 4 zeroed and a partial block 8 appended.
fn volume_v2() -> Vec<u8> {
    let mut bytes = volume_v1();
    bytes[BS..2 * BS].copy_from_slice(&noise("v2 block 1", BS));
    bytes[4 * BS..5 * BS].fill(0);
    bytes.extend(noise("v2 block 8", 100_000));
    bytes
}

/// `blocks` blocks of noise: exactly blocks/2 packs of two blobs each.
fn noise_volume(seed: &str, blocks: usize) -> Vec<u8> {
    (0..blocks).flat_map(|i| noise(&format!("{seed} {i}"), BS)).collect()
}

// ------------------------------------------------------------------ backup and restore

#[tokio::test]
async fn a_full_then_an_incremental_backup_restore_byte_identical() {
    let (storage, mut repo) = new_repo().await;
    let v1 = Volume::new("snap-1", volume_v1());
    let full = backup(&mut repo, &v1, None).await;

    assert_eq!(full.volume_size, 8 * BS as u64);
    assert_eq!(full.stats.blocks_read, 8, "a full backup reads every block");
    assert_eq!(full.stats.blocks, 7, "the zero block is not in the map");
    assert_eq!(full.stats.new_blobs, 7);
    assert!(!full.block_map().unwrap().contains_key(&2));
    assert!(!repo.index().contains(&repo.keys().blob_id(&vec![0u8; BS])), "zeros are never stored");
    assert_eq!(repo.index().blob_count(), 7);
    assert!(pack_ids(&storage).len() >= 3, "1 MiB packs: several of them");
    assert_eq!(keys_under(&storage, "index/").len(), 1);
    assert_eq!(full.source.name, "snap-1");
    assert_eq!(full.parent, None);

    let before: HashSet<String> = storage.keys().into_iter().collect();
    let v2 = v1.next("snap-2", volume_v2());
    let incremental = backup(&mut repo, &v2, Some(&full)).await;
    let added: Vec<String> = storage.keys().into_iter().filter(|k| !before.contains(k)).collect();

    assert_eq!(incremental.parent.as_deref(), Some(full.id.as_str()));
    assert_eq!(incremental.volume_size, 8 * BS as u64 + 100_000);
    assert!(incremental.stats.incremental);
    assert!(!full.stats.incremental);
    assert_eq!(incremental.stats.blocks_read, 2, "only the rewritten and the appended block are read");
    assert_eq!(incremental.stats.bytes_read, BS as u64 + 100_000);
    assert_eq!(incremental.stats.new_blobs, 2);
    assert_eq!(incremental.stats.blocks, 7);
    let map = incremental.block_map().unwrap();
    assert_eq!(
        map.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 3, 5, 6, 7, 8],
        "block 4 was zeroed, block 8 appended"
    );
    // One new pack (the two blobs), one index file, one manifest; nothing else.
    let new_packs: Vec<&String> = added.iter().filter(|k| k.starts_with("data/")).collect();
    assert_eq!(new_packs.len(), 1, "{added:?}");
    assert_eq!(added.len(), 3, "{added:?}");
    assert!(added.iter().any(|k| k.starts_with("index/")));
    assert!(added.contains(&manifest_key(&incremental.id)));
    let pack = storage.get(new_packs[0]).await.unwrap();
    assert_eq!(
        pack.len() as u64,
        incremental.stats.bytes_written + (SEAL_OVERHEAD + 2 * ENTRY_LEN) as u64 + 4,
        "the pack holds the two new blobs, its header and its trailer"
    );

    assert_eq!(restore(&repo, &full).await, volume_v1());
    assert_eq!(restore(&repo, &incremental).await, volume_v2());

    // A fresh handle (index loaded from storage) restores the same.
    let reopened = Repository::open_with_key(storage.clone(), test_config(), &MASTER).await.unwrap();
    let points = reopened.manifests().await.unwrap();
    assert_eq!(
        points.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec![full.id.as_str(), incremental.id.as_str()]
    );
    assert_eq!(restore(&reopened, &points[1]).await, volume_v2());
    assert!(run_check(&storage, true).await.is_healthy());
}

#[tokio::test]
async fn a_source_without_change_lists_reads_every_block_but_stores_only_new_blobs() {
    let (storage, mut repo) = new_repo().await;
    let v1 = Volume::new("/dev/xvdf", volume_v1()).without_change_lists();
    let full = backup(&mut repo, &v1, None).await;
    let packs = pack_ids(&storage).len();
    let v2 = v1.next("/dev/xvdf", volume_v2());
    let second = backup(&mut repo, &v2, Some(&full)).await;
    assert!(!second.stats.incremental);
    assert_eq!(second.stats.blocks_read, 9, "no change list: every block is read");
    assert_eq!(second.stats.new_blobs, 2, "but only the two new blocks are stored");
    assert_eq!(pack_ids(&storage).len(), packs + 1);
    assert_eq!(restore(&repo, &second).await, volume_v2());
}

#[tokio::test]
async fn an_all_zero_volume_stores_nothing_and_restores_zeros() {
    let (storage, mut repo) = new_repo().await;
    let point = backup(&mut repo, &Volume::new("empty", vec![0u8; 3 * BS]), None).await;
    assert_eq!(point.stats.blocks, 0);
    assert_eq!(point.stats.new_blobs, 0);
    assert_eq!(point.stats.blocks_read, 3);
    assert!(keys_under(&storage, "data/").is_empty());
    assert!(keys_under(&storage, "index/").is_empty(), "no packs, no index file");
    assert_eq!(restore(&repo, &point).await, vec![0u8; 3 * BS]);
}

#[tokio::test]
async fn two_volumes_with_equal_content_share_their_blobs() {
    let (storage, mut repo) = new_repo().await;
    let a = backup(&mut repo, &Volume::new("snap-a", volume_v1()), None).await;
    let before = storage.keys();
    let b = backup(&mut repo, &Volume::new("snap-b", volume_v1()), None).await;
    assert_eq!(b.stats.new_blobs, 0);
    assert_eq!(b.stats.bytes_written, 0);
    assert_eq!(b.stats.blocks_read, 8);
    let added: Vec<String> = storage.keys().into_iter().filter(|k| !before.contains(k)).collect();
    assert_eq!(added, vec![manifest_key(&b.id)], "only a manifest: no pack, no index file");
    assert_eq!(a.blocks, b.blocks, "the same block map");
    assert_eq!(restore(&repo, &b).await, volume_v1());
}

#[tokio::test]
async fn a_wrong_password_does_not_open_the_repository() {
    let storage = Arc::new(MemoryStorage::new());
    let mut config = test_config();
    let master = MasterKey::random();
    config.seal_with_password(&master, "correct horse battery staple").unwrap();
    Repository::init(storage.clone(), config, &master).await.unwrap();

    let wrong =
        Repository::open(storage.clone(), Unlock::Password("Tr0ub4dor&3")).await.err().expect("a wrong password fails");
    assert!(matches!(wrong, RepoError::Key(KeyError::WrongPassword)), "{wrong:?}");
    assert!(wrong.to_string().contains("the password does not open this repository"), "{wrong}");

    let opened = Repository::open(storage.clone(), Unlock::Password("correct horse battery staple")).await.unwrap();
    assert_eq!(opened.config.id, test_config().id);

    let again = Repository::init(storage.clone(), test_config(), &master).await.err().expect("init never overwrites");
    assert!(again.to_string().contains("already exists"), "{again}");
}

#[tokio::test]
async fn opening_storage_without_a_repository_says_so() {
    let storage = Arc::new(MemoryStorage::new());
    let e = Repository::open(storage, Unlock::Password("pw")).await.err().unwrap();
    assert_eq!(e.to_string(), "memory: holds no Coffer repository (no config object)");
}

// ------------------------------------------------------------------ damage

/// Two restore points of different volumes, each in its own packs.
async fn two_points() -> (Arc<MemoryStorage>, Repository, Manifest, Manifest) {
    let (storage, mut repo) = new_repo().await;
    let a = backup(&mut repo, &Volume::new("snap-a", noise_volume("a", 4)), None).await;
    let b = backup(&mut repo, &Volume::new("snap-b", noise_volume("b", 4)), None).await;
    (storage, repo, a, b)
}

#[tokio::test]
async fn a_healthy_repository_checks_clean() {
    let (storage, _repo, _, _) = two_points().await;
    for read_data in [false, true] {
        let report = run_check(&storage, read_data).await;
        assert!(report.is_healthy(), "{report:#?}");
        assert!(report.notes.is_empty(), "{report:#?}");
        assert_eq!(report.restore_points, 2);
        assert_eq!(report.packs, 4);
        assert_eq!(report.blobs, 8);
        assert_eq!(report.index_files, 2);
        assert_eq!(report.packs_read, if read_data { 4 } else { 0 });
    }
}

#[tokio::test]
async fn a_tampered_pack_fails_restore_and_check_with_read_data_names_it() {
    let (storage, repo, a, b) = two_points().await;
    let pack = packs_of(&repo, &a).into_iter().next().unwrap();
    let key = pack_key(&pack);
    let entries = read_header(repo.keys(), &pack, &storage.get(&key).await.unwrap()).unwrap();
    flip_byte(&storage, &key, entries[0].offset as usize + NONCE_LEN + 1).await;

    let Err(e) = try_restore(&repo, &a).await else { panic!("a tampered blob fails the restore") };
    assert!(e.to_string().contains(&key), "the error names the pack: {e}");
    assert!(e.to_string().contains("authentication failed"), "{e}");
    assert_eq!(restore(&repo, &b).await, noise_volume("b", 4), "the other point is untouched");

    let quick = run_check(&storage, false).await;
    assert!(quick.is_healthy(), "without read_data the pack looks fine (right size): {quick:#?}");

    let full = run_check(&storage, true).await;
    assert_damaged(&full, &key, "does not hash to its name");
    assert_damaged(&full, &manifest_key(&a.id), &key);
    assert_eq!(full.damage.len(), 2, "{full:#?}");
}

#[tokio::test]
async fn check_names_a_missing_pack_and_the_point_that_needs_it() {
    let (storage, repo, a, _) = two_points().await;
    let key = pack_key(packs_of(&repo, &a).iter().next().unwrap());
    storage.delete(&key).await.unwrap();
    let report = run_check(&storage, false).await;
    assert_damaged(&report, &key, "missing");
    assert_damaged(&report, &manifest_key(&a.id), &key);
    assert_eq!(report.damage.len(), 2, "{report:#?}");
    let e = try_restore(&repo, &a).await.err().unwrap();
    assert!(e.to_string().contains(&key), "{e}");
}

#[tokio::test]
async fn check_names_a_pack_of_the_wrong_size() {
    let (storage, repo, a, _) = two_points().await;
    let key = pack_key(packs_of(&repo, &a).iter().next().unwrap());
    let mut bytes = storage.get(&key).await.unwrap();
    bytes.truncate(bytes.len() - 100);
    let size = bytes.len();
    storage.replace(&key, bytes);
    let report = run_check(&storage, false).await;
    assert_damaged(&report, &key, &format!("{size} bytes, the index says {}", size + 100));
    assert_damaged(&report, &manifest_key(&a.id), &key);
}

#[tokio::test]
async fn check_names_a_tampered_index_file() {
    let (storage, repo, a, b) = two_points().await;
    // The index file the first backup wrote lists a's packs.
    let a_packs = packs_of(&repo, &a);
    let mut found = None;
    for key in keys_under(&storage, "index/") {
        let bytes = storage.get(&key).await.unwrap();
        let file = IndexFile::open(repo.keys(), key.trim_start_matches("index/"), &bytes).unwrap();
        if file.packs.iter().any(|p| a_packs.contains(&p.id)) {
            found = Some(key);
        }
    }
    let key = found.unwrap();
    flip_byte(&storage, &key, 30).await;
    let report = run_check(&storage, false).await;
    assert_damaged(&report, &key, "does not hash to its name");
    assert_damaged(&report, &manifest_key(&a.id), "refer to blobs no index lists");
    assert!(!report.damage.iter().any(|d| d.object == manifest_key(&b.id)), "{report:#?}");
    assert!(report.notes.iter().any(|n| n.contains("2 pack(s) no index lists")), "{report:#?}");

    // Issue 21, defect 7: one damaged index no longer keeps the repository
    // from opening; it is set aside and named.
    let opened = Repository::open_with_key(storage.clone(), test_config(), &MASTER).await.unwrap();
    assert_eq!(opened.damaged_index_files.len(), 1);
    assert_eq!(opened.damaged_index_files[0].0, key);
    assert!(opened.damaged_index_files[0].1.contains("does not hash to its name"), "{:?}", opened.damaged_index_files);
}

#[tokio::test]
async fn check_names_a_tampered_manifest() {
    let (storage, _repo, a, b) = two_points().await;
    let key = manifest_key(&a.id);
    flip_byte(&storage, &key, 40).await;
    let report = run_check(&storage, true).await;
    assert_damaged(&report, &key, "authentication failed");
    assert_eq!(report.damage.len(), 1, "{report:#?}");
    let _ = b;
}

#[tokio::test]
async fn check_names_a_manifest_renamed_to_another_id() {
    let (storage, repo, a, _) = two_points().await;
    let bytes = storage.get(&manifest_key(&a.id)).await.unwrap();
    let other = manifest_key("00000000-0000-4000-8000-000000000000");
    storage.put(&other, bytes, &PutOptions::default()).await.unwrap();
    storage.delete(&manifest_key(&a.id)).await.unwrap();
    let report = run_check(&storage, false).await;
    assert_damaged(&report, &other, "authentication failed");
    assert_eq!(report.damage.len(), 1, "{report:#?}");
    let e = repo.manifests().await.err().unwrap();
    assert!(e.to_string().starts_with(&format!("{other} is damaged")), "{e}");
}

#[tokio::test]
async fn an_interrupted_backup_leaves_a_repository_that_checks_and_backs_up() {
    let (storage, mut repo) = new_repo().await;
    let dying = Volume::new("snap-1", noise_volume("x", 6)).failing_after(5);
    let e = try_backup(&mut repo, &dying, None, 1).await.err().unwrap();
    assert!(e.to_string().contains("the device went away"), "{e}");
    // Uploads already started finish on their own.
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let leftovers = pack_ids(&storage);
    assert!(!leftovers.is_empty(), "packs were written before the source died");
    assert!(keys_under(&storage, "index/").is_empty());
    assert!(keys_under(&storage, "manifests/").is_empty());

    let report = run_check(&storage, true).await;
    assert!(report.is_healthy(), "{report:#?}");
    assert!(
        report.notes.iter().any(|n| n.contains(&format!("{} pack(s) no index lists", leftovers.len()))),
        "{report:#?}"
    );

    let healthy = Volume::new("snap-1", noise_volume("x", 6));
    let point = backup(&mut repo, &healthy, None).await;
    assert_eq!(point.stats.new_blobs, 6, "unindexed packs are not reused");
    assert_eq!(restore(&repo, &point).await, noise_volume("x", 6));
    assert!(run_check(&storage, true).await.is_healthy());

    // Prune marks the leftovers (and only them) for deletion.
    let report = prune::prune(&mut repo, DEFAULT_GRACE, Utc::now()).await.unwrap();
    assert_eq!(report.marked, leftovers.len());
    let report = prune::prune(&mut repo, DEFAULT_GRACE, Utc::now() + DEFAULT_GRACE).await.unwrap();
    assert_eq!(report.deleted, leftovers.len());
    assert!(pack_ids(&storage).iter().all(|p| !leftovers.contains(p)));
    assert_eq!(restore(&repo, &point).await, noise_volume("x", 6));
    let report = run_check(&storage, true).await;
    assert!(report.is_healthy() && report.notes.is_empty(), "{report:#?}");
}

// ------------------------------------------------------------------ prune

fn at(time: &str) -> DateTime<Utc> {
    time.parse().unwrap()
}

/// `prune/marks.json` with pack ids replaced by `<pack N>` in file order.
fn redacted_marks(json: &str, packs: &[String]) -> String {
    let mut out = json.to_string();
    let mut order: Vec<(usize, &String)> =
        packs.iter().filter_map(|p| json.find(p.as_str()).map(|at| (at, p))).collect();
    order.sort();
    for (n, (_, id)) in order.iter().enumerate() {
        out = out.replace(id.as_str(), &format!("<pack {}>", n + 1));
    }
    out
}

#[tokio::test]
async fn prune_marks_first_and_deletes_after_the_grace_period() {
    let (storage, mut repo) = new_repo().await;
    let a = backup(&mut repo, &Volume::new("snap-a", noise_volume("a", 4)), None).await;
    let b = backup(&mut repo, &Volume::new("snap-b", noise_volume("b", 4)), None).await;
    let c = backup(&mut repo, &Volume::new("snap-c", noise_volume("c", 4)), None).await;
    let doomed = packs_of(&repo, &b);
    assert_eq!(doomed.len(), 2);
    assert_eq!(repo.forget(std::slice::from_ref(&b.id)).await.unwrap(), vec![]);
    assert!(keys_under(&storage, "manifests/").len() == 2);

    let t0 = at("2026-11-23T10:00:00Z");
    let first = prune::prune(&mut repo, DEFAULT_GRACE, t0).await.unwrap();
    assert_eq!((first.marked, first.deleted, first.waiting), (2, 0, 0), "{first:?}");
    assert_eq!(pack_ids(&storage).len(), 6, "nothing deleted yet");
    let marks: BTreeMap<String, DateTime<Utc>> =
        serde_json::from_slice(&storage.get(MARKS_KEY).await.unwrap()).unwrap();
    assert_eq!(marks.keys().cloned().collect::<HashSet<_>>(), doomed);
    let marks_json = String::from_utf8(storage.get(MARKS_KEY).await.unwrap()).unwrap();
    insta::assert_snapshot!("prune_marks", redacted_marks(&marks_json, &doomed.iter().cloned().collect::<Vec<_>>()));

    let early = prune::prune(&mut repo, DEFAULT_GRACE, t0 + TimeDelta::hours(23)).await.unwrap();
    assert_eq!((early.marked, early.deleted, early.waiting), (0, 0, 2), "{early:?}");
    assert_eq!(pack_ids(&storage).len(), 6, "within the grace period nothing goes");

    let late = prune::prune(&mut repo, DEFAULT_GRACE, t0 + DEFAULT_GRACE).await.unwrap();
    assert_eq!((late.marked, late.deleted, late.waiting, late.held.len()), (0, 2, 0, 0), "{late:?}");
    assert!(late.bytes_freed > 4 * BS as u64);
    let remaining: HashSet<String> = pack_ids(&storage).into_iter().collect();
    assert_eq!(remaining.len(), 4);
    assert!(remaining.is_disjoint(&doomed));
    assert_eq!(keys_under(&storage, "index/").len(), 1, "the index was rewritten into one file");
    assert_eq!(storage.get(MARKS_KEY).await.unwrap(), b"{}");
    assert!(keys_under(&storage, "locks/").is_empty(), "prune released its lock");

    assert_eq!(repo.pack_target, PACK_TARGET, "prune keeps the handle's settings");
    assert_eq!(restore(&repo, &a).await, noise_volume("a", 4));
    assert_eq!(restore(&repo, &c).await, noise_volume("c", 4));
    let reopened = Repository::open_with_key(storage.clone(), test_config(), &MASTER).await.unwrap();
    assert_eq!(restore(&reopened, &a).await, noise_volume("a", 4));
    let report = run_check(&storage, true).await;
    assert!(report.is_healthy() && report.notes.is_empty(), "{report:#?}");
    assert_eq!((report.restore_points, report.packs), (2, 4));
}

#[tokio::test]
async fn a_marked_pack_a_new_backup_reuses_is_unmarked_and_kept() {
    let (storage, mut repo) = new_repo().await;
    let _a = backup(&mut repo, &Volume::new("snap-a", noise_volume("a", 4)), None).await;
    let b = backup(&mut repo, &Volume::new("snap-b", noise_volume("b", 4)), None).await;
    let b_packs = packs_of(&repo, &b);
    repo.forget(std::slice::from_ref(&b.id)).await.unwrap();
    let t0 = Utc::now();
    assert_eq!(prune::prune(&mut repo, DEFAULT_GRACE, t0).await.unwrap().marked, 2);

    // The same content comes back: its blobs are still indexed, so reused.
    let again = backup(&mut repo, &Volume::new("snap-b2", noise_volume("b", 4)), None).await;
    assert_eq!(again.stats.new_blobs, 0);
    assert_eq!(packs_of(&repo, &again), b_packs);

    let late = prune::prune(&mut repo, DEFAULT_GRACE, t0 + DEFAULT_GRACE).await.unwrap();
    assert_eq!((late.unmarked, late.deleted, late.marked), (2, 0, 0), "{late:?}");
    assert_eq!(pack_ids(&storage).len(), 4);
    assert_eq!(storage.get(MARKS_KEY).await.unwrap(), b"{}");
    assert_eq!(restore(&repo, &again).await, noise_volume("b", 4));
}

#[tokio::test]
async fn a_pack_under_object_lock_is_not_deleted_and_is_reported_held() {
    let (storage, mut repo) = new_repo().await;
    let a = backup(&mut repo, &Volume::new("snap-a", noise_volume("a", 4)), None).await;
    let b = backup(&mut repo, &Volume::new("snap-b", noise_volume("b", 4)), None).await;
    let mut b_packs: Vec<String> = packs_of(&repo, &b).into_iter().collect();
    b_packs.sort();
    let t0 = Utc::now();
    let until = t0 + TimeDelta::days(30);
    storage.lock_until(&pack_key(&b_packs[0]), until);

    // A manifest under Object Lock is kept by forget too.
    storage.lock_until(&manifest_key(&a.id), until);
    assert_eq!(repo.forget(&[a.id.clone(), b.id.clone()]).await.unwrap(), vec![(a.id.clone(), until)]);
    assert!(storage.keys().contains(&manifest_key(&a.id)));

    assert_eq!(prune::prune(&mut repo, DEFAULT_GRACE, t0).await.unwrap().marked, 2);
    let late = prune::prune(&mut repo, DEFAULT_GRACE, t0 + DEFAULT_GRACE).await.unwrap();
    assert_eq!(late.deleted, 1);
    assert_eq!(late.held, vec![(b_packs[0].clone(), until)]);
    assert_eq!(pack_ids(&storage).iter().filter(|p| b_packs.contains(p)).collect::<Vec<_>>(), vec![&b_packs[0]]);
    let marks: BTreeMap<String, DateTime<Utc>> =
        serde_json::from_slice(&storage.get(MARKS_KEY).await.unwrap()).unwrap();
    assert_eq!(marks.keys().collect::<Vec<_>>(), vec![&b_packs[0]], "a held pack stays marked");
    let report = run_check(&storage, true).await;
    assert!(report.is_healthy() && report.notes.is_empty(), "the held pack stays indexed: {report:#?}");

    // Once the retention ends, it goes.
    let after = prune::prune(&mut repo, DEFAULT_GRACE, until + TimeDelta::days(1)).await.unwrap();
    assert_eq!((after.deleted, after.held.len()), (1, 0));
    assert_eq!(restore(&repo, &a).await, noise_volume("a", 4));
}

#[tokio::test]
async fn an_incremental_point_outlives_its_parent() {
    let (storage, mut repo) = new_repo().await;
    let v1 = Volume::new("snap-1", volume_v1());
    let full = backup(&mut repo, &v1, None).await;
    let incremental = backup(&mut repo, &v1.next("snap-2", volume_v2()), Some(&full)).await;
    repo.forget(std::slice::from_ref(&full.id)).await.unwrap();
    let t0 = Utc::now();
    prune::prune(&mut repo, DEFAULT_GRACE, t0).await.unwrap();
    prune::prune(&mut repo, DEFAULT_GRACE, t0 + DEFAULT_GRACE).await.unwrap();
    // Only packs holding nothing but the old blocks 1 and 4 could go.
    assert!(packs_of(&repo, &incremental).iter().all(|p| pack_ids(&storage).contains(p)));
    assert_eq!(restore(&repo, &incremental).await, volume_v2());
    let report = run_check(&storage, true).await;
    assert!(report.is_healthy() && report.notes.is_empty(), "{report:#?}");
}

#[tokio::test]
async fn every_object_the_engine_writes_is_under_a_folder_the_repository_owns() {
    let (storage, mut repo) = new_repo().await;
    let point = backup(&mut repo, &Volume::new("snap-a", noise_volume("a", 2)), None).await;
    repo.forget(std::slice::from_ref(&point.id)).await.unwrap();
    backup(&mut repo, &Volume::new("snap-b", noise_volume("b", 2)), None).await;
    prune::prune(&mut repo, DEFAULT_GRACE, Utc::now()).await.unwrap();
    let lock = Lock::shared(repo.storage().clone(), "backup").await.unwrap();
    let keys = storage.keys();
    for prefix in ["config", "data/", "index/", "manifests/", "locks/shared-", "prune/marks.json"] {
        assert!(keys.iter().any(|k| k.starts_with(prefix)), "{prefix} in {keys:?}");
    }
    for key in &keys {
        assert!(
            key == super::CONFIG_KEY || super::OWNED_FOLDERS.iter().any(|f| key.starts_with(f)),
            "{key} is not under a folder the repository owns (so destroying the repository would leave it)"
        );
    }
    lock.release().await.unwrap();
}

// ------------------------------------------------------------------ locks

fn lock_record(kind: &str, purpose: &str, refreshed: DateTime<Utc>) -> Vec<u8> {
    serde_json::to_vec(&LockRecord {
        kind: kind.into(),
        purpose: purpose.into(),
        host: "worker-7".into(),
        pid: 4242,
        created: refreshed - TimeDelta::hours(2),
        refreshed,
        ..LockRecord::default()
    })
    .unwrap()
}

#[tokio::test]
async fn an_exclusive_lock_blocks_a_shared_one() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let exclusive = Lock::exclusive(storage.clone(), "prune").await.unwrap();
    let record: LockRecord = serde_json::from_slice(&storage.get(EXCLUSIVE_KEY).await.unwrap()).unwrap();
    assert_eq!((record.kind.as_str(), record.purpose.as_str(), record.pid), ("exclusive", "prune", std::process::id()));

    let e = Lock::shared(storage.clone(), "backup").await.err().unwrap();
    assert!(matches!(&e, LockError::Held { purpose, .. } if purpose == "prune"), "{e:?}");
    let message = e.to_string();
    assert!(
        message.starts_with(&format!("the repository is locked by prune on {} (pid {})", record.host, record.pid)),
        "{message}"
    );
    assert!(
        message.ends_with("try again when it is done (a lock not refreshed for 30 minutes is ignored)"),
        "{message}"
    );
    assert_eq!(storage.list("locks/").await.unwrap().len(), 1, "the refused shared lock was withdrawn");

    let e = Lock::exclusive(storage.clone(), "prune").await.err().unwrap();
    assert!(e.to_string().starts_with("the repository is locked by prune"), "{e}");

    exclusive.release().await.unwrap();
    let shared = Lock::shared(storage.clone(), "backup").await.unwrap();
    shared.release().await.unwrap();
    assert!(storage.list("locks/").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_shared_lock_blocks_an_exclusive_one_and_prune() {
    let memory = Arc::new(MemoryStorage::new());
    let storage: Arc<dyn Storage> = memory.clone();
    let first = Lock::shared(storage.clone(), "backup").await.unwrap();
    let second = Lock::shared(storage.clone(), "restore").await.unwrap();
    assert_eq!(storage.list("locks/shared-").await.unwrap().len(), 2, "shared locks coexist");

    let e = Lock::exclusive(storage.clone(), "prune").await.err().unwrap();
    assert!(matches!(&e, LockError::Held { purpose, .. } if purpose == "backup" || purpose == "restore"), "{e:?}");
    assert!(e.to_string().starts_with("the repository is locked by "), "{e}");
    assert!(storage.get(EXCLUSIVE_KEY).await.is_err(), "the refused exclusive lock was withdrawn");

    let mut repo = Repository::init(storage.clone(), test_config(), &MASTER).await.unwrap();
    let e = prune::prune(&mut repo, DEFAULT_GRACE, Utc::now()).await.err().unwrap();
    assert!(matches!(e, RepoError::Lock(LockError::Held { .. })), "{e:?}");
    assert!(memory.keys().iter().all(|k| k != MARKS_KEY), "a refused prune changes nothing");

    first.release().await.unwrap();
    second.release().await.unwrap();
    Lock::exclusive(storage.clone(), "prune").await.unwrap().release().await.unwrap();
}

#[tokio::test]
async fn stale_locks_are_ignored() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let long_ago = Utc::now() - TimeDelta::minutes(31);
    let stale_shared = "locks/shared-00000000-0000-4000-8000-000000000000";
    storage.put(EXCLUSIVE_KEY, lock_record("exclusive", "prune", long_ago), &PutOptions::default()).await.unwrap();
    storage.put(stale_shared, lock_record("shared", "backup", long_ago), &PutOptions::default()).await.unwrap();

    // A stale exclusive lock does not keep a backup out…
    let shared = Lock::shared(storage.clone(), "backup").await.unwrap();
    shared.release().await.unwrap();
    // …nor a prune, which takes it over and clears stale shared locks.
    let exclusive = Lock::exclusive(storage.clone(), "prune").await.unwrap();
    let record: LockRecord = serde_json::from_slice(&storage.get(EXCLUSIVE_KEY).await.unwrap()).unwrap();
    assert_eq!(record.pid, std::process::id());
    assert!(storage.get(stale_shared).await.is_err(), "the stale shared lock was removed");
    exclusive.release().await.unwrap();

    // A lock refreshed 29 minutes ago is not stale.
    let recent = Utc::now() - TimeDelta::minutes(29);
    storage.put(stale_shared, lock_record("shared", "backup", recent), &PutOptions::default()).await.unwrap();
    let e = Lock::exclusive(storage.clone(), "prune").await.err().unwrap();
    assert!(e.to_string().starts_with("the repository is locked by backup on worker-7 (pid 4242)"), "{e}");
}

#[tokio::test]
async fn an_unreadable_lock_holds_until_its_object_is_as_old_as_a_stale_lock() {
    let memory = Arc::new(MemoryStorage::new());
    let storage: Arc<dyn Storage> = memory.clone();
    let garbled = "locks/shared-00000000-0000-4000-8000-000000000001";
    storage.put(garbled, b"{not a lock record".to_vec(), &PutOptions::default()).await.unwrap();

    let e =
        Lock::exclusive(storage.clone(), "prune").await.err().expect("a freshly written lock holds, readable or not");
    assert!(e.to_string().starts_with("the repository is locked by an unknown process on an unknown host"), "{e}");

    memory.age_all(TimeDelta::minutes(31));
    let exclusive = Lock::exclusive(storage.clone(), "prune").await.expect("31 minutes unwritten: stale");
    assert!(storage.get(garbled).await.is_err(), "the stale unreadable lock was removed");
    exclusive.release().await.unwrap();
}

#[tokio::test]
async fn a_lock_of_a_dead_process_on_this_host_is_stale_at_once() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let key = "locks/shared-00000000-0000-4000-8000-000000000001";
    let here = ProcessSpace::current();
    let this_host = |pid: u32| {
        serde_json::to_vec(&LockRecord {
            kind: "shared".into(),
            purpose: "backup".into(),
            host: here.host.clone(),
            pid,
            created: Utc::now(),
            refreshed: Utc::now(),
            boot_id: here.boot_id.clone(),
            pid_namespace: here.pid_namespace,
            process_start: super::lock::process_start(pid).or(Some(1)),
            nonce: None,
        })
        .unwrap()
    };
    // A running process of this host (this test) holds the lock: prune waits.
    storage.put(key, this_host(std::process::id()), &PutOptions::default()).await.unwrap();
    let e = Lock::exclusive(storage.clone(), "prune").await.err().unwrap();
    assert!(e.to_string().starts_with("the repository is locked by backup"), "{e}");

    // A killed backup of this host (a child that has exited and been
    // reaped, so its pid names no process): its fresh lock is ignored.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    storage.put(key, this_host(pid), &PutOptions::default()).await.unwrap();
    Lock::exclusive(storage.clone(), "prune").await.unwrap().release().await.unwrap();
    assert!(storage.get(key).await.is_err(), "the dead process's lock was removed");
}

/// Issue 21, defect 2: a lock was judged dead when its host name matched
/// and its pid was missing from the local /proc, so a prune in another PID
/// namespace (a container with the same host name) took a live backup's
/// lock. Another namespace, another boot, a reused pid or a record without
/// the identity fields: only age makes those stale.
#[tokio::test]
async fn a_lock_of_another_pid_namespace_boot_or_process_is_not_judged_dead() {
    let here = ProcessSpace::current();
    let now = Utc::now();
    let pid = std::process::id();
    let live = LockRecord {
        kind: "shared".into(),
        purpose: "backup".into(),
        host: here.host.clone(),
        pid,
        created: now,
        refreshed: now,
        boot_id: here.boot_id.clone(),
        pid_namespace: here.pid_namespace,
        process_start: super::lock::process_start(pid),
        nonce: None,
    };
    assert!(!live.is_stale(now, &here), "this very process");
    // The same record seen from a PID namespace where this pid is some
    // other process, or none.
    let elsewhere = ProcessSpace { pid_namespace: here.pid_namespace.map(|n| n + 1), ..here.clone() };
    let reaped = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    let dead_here = LockRecord { pid: reaped, process_start: Some(1), ..live.clone() };
    assert!(dead_here.is_stale(now, &here), "a reaped child of this namespace is gone");
    assert!(!dead_here.is_stale(now, &elsewhere), "another PID namespace cannot tell");
    let other_boot = ProcessSpace { boot_id: Some("another boot".into()), ..here.clone() };
    assert!(!dead_here.is_stale(now, &other_boot), "another boot cannot tell");
    let reused = LockRecord { process_start: live.process_start.map(|s| s + 1), ..live.clone() };
    assert!(reused.is_stale(now, &here), "the pid now belongs to a younger process");
    let old_format = LockRecord { boot_id: None, pid_namespace: None, process_start: None, ..dead_here.clone() };
    assert!(!old_format.is_stale(now, &here), "without identity only age counts");
    assert!(old_format.is_stale(now + TimeDelta::minutes(31), &here));
}

/// Issue 21, defect 6: two prunes that both found a stale exclusive lock
/// both deleted and rewrote it, and both held it. Now the takeover replaces
/// exactly the stale record (If-Match): one wins, and the loser's release
/// cannot delete the winner's lock.
#[tokio::test]
async fn two_prunes_taking_over_a_stale_exclusive_lock_never_both_hold_it() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let long_ago = Utc::now() - TimeDelta::minutes(31);
    storage.put(EXCLUSIVE_KEY, lock_record("exclusive", "prune", long_ago), &PutOptions::default()).await.unwrap();
    // Both prunes read the stale record; A takes it over first.
    let (_, stale) = storage.get_versioned(EXCLUSIVE_KEY).await.unwrap();
    let a = Lock::exclusive(storage.clone(), "prune").await.expect("A takes the stale lock over");
    // B, acting on what it read, replaces or removes only that record: both fail.
    let err = storage
        .put_versioned(EXCLUSIVE_KEY, lock_record("exclusive", "prune", Utc::now()), Some(&stale))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StorageError::Changed(_)), "B's takeover must fail: {err:?}");
    let err = storage.delete_versioned(EXCLUSIVE_KEY, &stale).await.err().unwrap();
    assert!(matches!(err, StorageError::Changed(_)), "B's release must not delete A's lock: {err:?}");
    // And B through the lock API is refused while A holds it.
    let e = Lock::exclusive(storage.clone(), "prune").await.err().unwrap();
    assert!(matches!(e, LockError::Held { .. }), "{e:?}");
    a.verify().await.expect("A still holds it");
    a.release().await.unwrap();
    assert!(storage.get(EXCLUSIVE_KEY).await.is_err());
}

/// A lock someone removed (judged stale while its holder was paused) is
/// reported lost, so the holder commits nothing that relied on it.
#[tokio::test]
async fn a_lock_removed_by_someone_else_is_reported_lost() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let lock = Lock::shared(storage.clone(), "backup").await.unwrap();
    lock.verify().await.unwrap();
    storage.delete(lock.key()).await.unwrap();
    let e = lock.verify().await.err().unwrap();
    assert!(matches!(e, LockError::Lost { .. }), "{e:?}");
    assert!(e.to_string().contains("nothing was committed"), "{e}");
}

// ------------------------------------------------------------------ golden files

fn golden_master() -> MasterKey {
    let mut key = [0u8; 64];
    for (i, b) in key.iter_mut().enumerate() {
        *b = i as u8;
    }
    MasterKey(key)
}

fn hexdump(out: &mut String, bytes: &[u8], base: usize) {
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let line: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(out, "    {:06x}  {}", base + i * 16, line.join(" "));
    }
}

fn escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| if b == 0 { "\\0".to_string() } else { (b as char).to_string() }).collect()
}

#[tokio::test]
async fn golden_config() {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let master = golden_master();
    let salt = [0x5au8; 16];
    let nonce = [0x6bu8; 24];
    let password = "correct horse battery staple";
    let mut config = RepositoryConfig {
        format_version: FORMAT_VERSION,
        id: "5f0c3c0e-0000-4000-8000-000000000001".into(),
        created_at: "2026-11-23T10:00:00Z".into(),
        storage_class: StorageClass::DeepArchive,
        immutability: Some(Immutability { days: 30, mode: LockMode::Compliance }),
        key: KeyEnvelope::Kms { kms_key_arn: String::new(), wrapped_master_key: String::new() },
        worker_key: None,
    };
    // Built here from the specification, independently of config.rs.
    let kdf = Argon2Params { memory_kib: 65536, iterations: 3, parallelism: 1, salt: B64.encode(salt) };
    assert_eq!((kdf.memory_kib, kdf.iterations, kdf.parallelism), {
        let defaults = Argon2Params::new_random();
        (defaults.memory_kib, defaults.iterations, defaults.parallelism)
    });
    let mut wrapping = [0u8; 32];
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(65536, 3, 1, Some(32)).unwrap(),
    )
    .hash_password_into(password.as_bytes(), &salt, &mut wrapping)
    .unwrap();
    let mut ad = b"coffer repository master key".to_vec();
    for (k, v) in config.binding() {
        ad.push(0);
        ad.extend_from_slice(k.as_bytes());
        ad.push(b'=');
        ad.extend_from_slice(v.as_bytes());
    }
    let wrapped = chacha20poly1305::XChaCha20Poly1305::new((&wrapping).into())
        .encrypt(chacha20poly1305::XNonce::from_slice(&nonce), Payload { msg: &master.0, aad: &ad })
        .unwrap();
    assert_eq!(wrapped.len(), 64 + TAG_LEN);
    config.key = KeyEnvelope::Password { kdf, nonce: B64.encode(nonce), wrapped_master_key: B64.encode(&wrapped) };
    assert_eq!(config.open_with_password(password).unwrap(), master, "config.rs opens what the specification builds");
    assert_eq!(config.open_with_password("wrong"), Err(KeyError::WrongPassword));

    // As `init` writes it.
    let storage = Arc::new(MemoryStorage::new());
    Repository::init(storage.clone(), config.clone(), &master).await.unwrap();
    let written = String::from_utf8(storage.get("config").await.unwrap()).unwrap();
    assert_eq!(Repository::read_config(storage.as_ref()).await.unwrap(), config);

    let mut kms = config.clone();
    kms.key = KeyEnvelope::Kms {
        kms_key_arn: "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
        wrapped_master_key: B64.encode(b"<KMS CiphertextBlob>"),
    };
    let mut out = String::new();
    let _ = writeln!(out, "config (password), as written to <prefix>config:\n{written}\n");
    let _ = writeln!(out, "password: {password:?}");
    let _ = writeln!(out, "master key: {}", hex(&master.0));
    let _ = writeln!(out, "Argon2id wrapping key: {}", hex(&wrapping));
    let _ = writeln!(out, "associated data: {}\n", escaped(&ad));
    let _ = writeln!(out, "config (KMS):\n{}\n", serde_json::to_string_pretty(&kms).unwrap());
    let _ = writeln!(out, "KMS encryption context:\n{}", serde_json::to_string_pretty(&kms.binding()).unwrap());
    insta::assert_snapshot!("config", out);
}

#[test]
fn golden_pack() {
    let keys = Keys::new(&golden_master());
    let a = noise("golden blob a", 64);
    let b = text("golden blob b", 256);
    let (ida, idb) = (keys.blob_id(&a), keys.blob_id(&b));
    assert_eq!(
        ida.0,
        *blake3::keyed_hash(&std::array::from_fn(|i| 32 + i as u8), &a).as_bytes(),
        "ids use bytes 32..64"
    );

    let blob_aad = |id: &BlobId| [b"coffer blob ".as_slice(), &id.0].concat();
    let plain_a = [&[0u8][..], &a].concat();
    let plain_b = [&[1u8][..], &zstd::bulk::compress(&b, 3).unwrap()].concat();
    let sealed_a = keys.seal_with_nonce(&[0xa0; NONCE_LEN], &blob_aad(&ida), &plain_a);
    let sealed_b = keys.seal_with_nonce(&[0xb0; NONCE_LEN], &blob_aad(&idb), &plain_b);
    // seal_blob picks the same encodings.
    assert_eq!(keys.open(&blob_aad(&ida), &keys.seal_blob(&ida, &a)).unwrap(), plain_a);
    assert_eq!(keys.open(&blob_aad(&idb), &keys.seal_blob(&idb, &b)).unwrap(), plain_b);

    let entries = vec![
        PackEntry { id: ida, offset: 0, length: sealed_a.len() as u32, raw_length: a.len() as u32 },
        PackEntry { id: idb, offset: sealed_a.len() as u32, length: sealed_b.len() as u32, raw_length: b.len() as u32 },
    ];
    let header_plain = PackEntry::encode(&entries);
    assert_eq!(header_plain.len(), 2 * ENTRY_LEN);
    let header = keys.seal_with_nonce(&[0xc0; NONCE_LEN], HEADER_AAD, &header_plain);
    let mut pack = [sealed_a.as_slice(), &sealed_b, &header].concat();
    pack.extend_from_slice(&(header.len() as u32).to_le_bytes());
    let id = pack_id(&pack);
    assert_eq!(id, hex(blake3::hash(&pack).as_bytes()));

    assert_eq!(read_header(&keys, &id, &pack).unwrap(), entries, "pack.rs reads the hand-built pack");
    assert_eq!(keys.open_blob(&ida, a.len(), &pack[..sealed_a.len()]).unwrap(), a);
    assert_eq!(keys.open_blob(&idb, b.len(), &pack[sealed_a.len()..sealed_a.len() + sealed_b.len()]).unwrap(), b);

    // PackBuilder lays out the same bytes (its header nonce is random).
    let mut builder = PackBuilder::default();
    builder.add(ida, a.len(), &sealed_a);
    builder.add(idb, b.len(), &sealed_b);
    let built = builder.finish(&keys);
    assert_eq!(built.entries, entries);
    assert_eq!(built.bytes.len(), pack.len());
    assert_eq!(built.bytes[..sealed_a.len() + sealed_b.len()], pack[..sealed_a.len() + sealed_b.len()]);
    assert_eq!(built.bytes[pack.len() - 4..], pack[pack.len() - 4..]);
    assert_eq!(read_header(&keys, &built.id, &built.bytes).unwrap(), entries);

    let mut out = String::new();
    let _ = writeln!(out, "master key: {}", hex(&golden_master().0));
    let _ = writeln!(out, "pack id (BLAKE3 of the file): {id}");
    let _ = writeln!(out, "key: {}", pack_key(&id));
    let _ = writeln!(out, "size: {} bytes\n", pack.len());
    for (n, (e, (sealed, encoding))) in entries.iter().zip([(&sealed_a, "0 stored"), (&sealed_b, "1 zstd")]).enumerate()
    {
        let _ = writeln!(
            out,
            "blob {n} @ {}: sealed length {}, raw length {}, encoding {encoding}",
            e.offset, e.length, e.raw_length
        );
        let _ = writeln!(out, "  id (keyed BLAKE3 of the block): {}", e.id);
        let _ = writeln!(out, "  nonce (24):");
        hexdump(&mut out, &sealed[..NONCE_LEN], e.offset as usize);
        let _ = writeln!(out, "  ciphertext ({}) ‖ tag (16):", sealed.len() - SEAL_OVERHEAD);
        hexdump(&mut out, &sealed[NONCE_LEN..], e.offset as usize + NONCE_LEN);
    }
    let header_at = sealed_a.len() + sealed_b.len();
    let _ = writeln!(out, "header @ {header_at}: sealed length {}, AAD {:?}", header.len(), escaped(HEADER_AAD));
    let _ = writeln!(out, "  nonce (24):");
    hexdump(&mut out, &header[..NONCE_LEN], header_at);
    let _ = writeln!(out, "  ciphertext ({}) ‖ tag (16):", header.len() - SEAL_OVERHEAD);
    hexdump(&mut out, &header[NONCE_LEN..], header_at + NONCE_LEN);
    let _ = writeln!(
        out,
        "  plaintext: {} entries of {ENTRY_LEN} bytes (id 32 ‖ offset u32-le ‖ length u32-le ‖ raw length u32-le):",
        entries.len()
    );
    hexdump(&mut out, &header_plain, 0);
    let _ = writeln!(out, "trailer @ {}: header length u32-le = {}", pack.len() - 4, header.len());
    hexdump(&mut out, &pack[pack.len() - 4..], pack.len() - 4);
    let _ = writeln!(out, "\nblob plaintexts (encoding byte ‖ payload):");
    let _ = writeln!(out, "  blob 0:");
    hexdump(&mut out, &plain_a, 0);
    let _ = writeln!(out, "  blob 1:");
    hexdump(&mut out, &plain_b, 0);
    insta::assert_snapshot!("pack", out);
}

fn golden_entries() -> Vec<PackEntry> {
    let keys = Keys::new(&golden_master());
    vec![
        PackEntry { id: keys.blob_id(b"block one"), offset: 0, length: 524_329, raw_length: 524_288 },
        PackEntry { id: keys.blob_id(b"block two"), offset: 524_329, length: 1_234, raw_length: 524_288 },
    ]
}

#[test]
fn golden_index_file() {
    let keys = Keys::new(&golden_master());
    let file = IndexFile {
        packs: vec![
            IndexedPack::new(&"ab".repeat(32), 525_703, &golden_entries()),
            IndexedPack::new(&"cd".repeat(32), 33_554_900, &golden_entries()[..1]),
        ],
    };
    let json = serde_json::to_vec(&file).unwrap();
    let (id, sealed) = file.seal(&keys);
    assert_eq!(id, hex(blake3::hash(&sealed).as_bytes()));
    assert_eq!(IndexFile::open(&keys, &id, &sealed).unwrap(), file);
    let zstd = keys.open(INDEX_AAD, &sealed).unwrap();
    assert_eq!(zstd::decode_all(zstd.as_slice()).unwrap(), json);
    assert_eq!(file.packs[0].entries().unwrap(), golden_entries());

    let mut out = String::new();
    let _ = writeln!(out, "plaintext (zstd-compressed, then sealed with AAD {:?}):", escaped(INDEX_AAD));
    let _ = writeln!(out, "{}\n", String::from_utf8(json).unwrap());
    let _ = writeln!(out, "sealed: {} bytes = nonce 24 ‖ zstd {} bytes encrypted ‖ tag 16", sealed.len(), zstd.len());
    let _ = writeln!(out, "id / key: index/<BLAKE3 of the sealed bytes> (the nonce is random)\n");
    let _ = writeln!(out, "blobs of pack {}…:", &file.packs[0].id[..8]);
    for e in golden_entries() {
        let _ = writeln!(out, "  {} offset {} length {} raw length {}", e.id, e.offset, e.length, e.raw_length);
    }
    insta::assert_snapshot!("index_file", out);
}

#[test]
fn golden_manifest() {
    let keys = Keys::new(&golden_master());
    let entries = golden_entries();
    let map = BTreeMap::from([(0u64, entries[0].id), (5u64, entries[1].id), (6u64, entries[0].id)]);
    let manifest = Manifest {
        id: "9b2f6a55-0000-4000-8000-00000000000a".into(),
        time: at("2026-11-23T02:00:00Z"),
        source: Source {
            kind: "ebs-snapshot".into(),
            name: "snap-0123456789abcdef0".into(),
            resource_id: "i-0123456789abcdef0".into(),
            volume_id: "vol-0123456789abcdef0".into(),
            device: "/dev/xvda".into(),
            region: "eu-west-1".into(),
        },
        volume_size: 8 * 1024 * 1024 * 1024,
        block_size: BLOCK_SIZE,
        policy: "production".into(),
        rules: vec!["daily".into(), "weekly".into()],
        run: "run-2026-11-23T02:00:00Z".into(),
        parent: Some("9b2f6a55-0000-4000-8000-000000000009".into()),
        tags: BTreeMap::from([("Name".into(), "web-1".into())]),
        stats: Stats {
            incremental: true,
            blocks: 3,
            blocks_read: 2,
            bytes_read: 1_048_576,
            new_blobs: 1,
            bytes_written: 1_234,
        },
        blocks: Manifest::encode_map(&map),
    };
    assert_eq!(manifest.block_map().unwrap(), map);
    let sealed = manifest.seal(&keys);
    assert_eq!(Manifest::open(&keys, &manifest.id, &sealed).unwrap(), manifest);
    let zstd = keys.open(&manifest_aad(&manifest.id), &sealed).unwrap();
    let json = serde_json::to_vec(&manifest).unwrap();
    assert_eq!(zstd::decode_all(zstd.as_slice()).unwrap(), json);
    assert!(Manifest::open(&keys, "9b2f6a55-0000-4000-8000-000000000009", &sealed).is_err(), "bound to its id");

    let mut out = String::new();
    let _ = writeln!(out, "key: {}", manifest_key(&manifest.id));
    let _ =
        writeln!(out, "plaintext (zstd-compressed, then sealed with AAD {:?}):", escaped(&manifest_aad(&manifest.id)));
    let _ = writeln!(out, "{}\n", String::from_utf8(json).unwrap());
    let _ = writeln!(out, "blocks: {} records of 40 bytes (block index u64-le ‖ blob id):", map.len());
    hexdump(&mut out, &B64.decode(&manifest.blocks).unwrap(), 0);
    insta::assert_snapshot!("manifest", out);
}

#[test]
fn golden_lock_record() {
    let record = LockRecord {
        kind: "shared".into(),
        purpose: "backup".into(),
        host: "ip-10-0-1-23".into(),
        pid: 4242,
        created: at("2026-11-23T02:00:00Z"),
        refreshed: at("2026-11-23T02:05:00Z"),
        ..LockRecord::default()
    };
    // A record without the identity fields (written by Coffer before they
    // came) reads and writes as it always did.
    let json = String::from_utf8(serde_json::to_vec(&record).unwrap()).unwrap();
    assert_eq!(serde_json::from_str::<LockRecord>(&json).unwrap(), record);
    insta::assert_snapshot!("lock_record", format!("key: locks/shared-<uuid v4> (or {EXCLUSIVE_KEY})\n{json}\n"));

    let record = LockRecord {
        boot_id: Some("3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f".into()),
        pid_namespace: Some(4026531836),
        process_start: Some(1234567),
        nonce: Some("5b0e3c44-93a1-4f7e-a1d2-0c9e8b7a6f55".into()),
        ..record
    };
    let json = String::from_utf8(serde_json::to_vec(&record).unwrap()).unwrap();
    assert_eq!(serde_json::from_str::<LockRecord>(&json).unwrap(), record);
    insta::assert_snapshot!(
        "lock_record_with_identity",
        format!("key: locks/shared-<uuid v4> (or {EXCLUSIVE_KEY})\n{json}\n")
    );
}
