//! An open repository: backup (blocks in, a manifest out), restore (a
//! manifest back to blocks), listing and forgetting restore points.
//!
//! Write order makes every crash safe: packs first, then the index file that
//! names them, then the manifest that uses them. A backup killed part-way
//! leaves packs (or an index) nothing references; `check` reports them as
//! unreferenced and prune removes them after its grace period.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coffer_model::repository::StorageClass;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use thiserror::Error;

use super::blocks::{BLOCK_SIZE, BlockError, BlockSink, BlockSource};
use super::config::{CONFIG_KEY, FORMAT_VERSION, KeyError, KeyService, MasterKey, RepositoryConfig};
use super::crypto::{BlobId, CryptoError, Keys};
use super::index::{Index, IndexFile, IndexedPack};
use super::lock::{Lock, LockError, LockGuard};
use super::manifest::{BlockMap, Manifest, Source, Stats, manifest_key};
use super::pack::{Pack, PackBuilder, pack_key};
use super::prune::MARKS_KEY;
use super::storage::{PutOptions, Storage, StorageError, Thaw};

/// An index file's pack with its decoded entries.
type OpenedPack = (IndexedPack, Vec<super::pack::PackEntry>);

/// Packs are cut at this size (the format allows 16–64 MiB).
pub const PACK_TARGET: usize = 32 * 1024 * 1024;
const UPLOADS_IN_FLIGHT: usize = 2;

#[derive(Debug, Error)]
pub enum RepoError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{object} is damaged: {problem}")]
    Damaged { object: String, problem: CryptoError },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("{location} holds no Coffer repository (no config object)")]
    NotARepository { location: String },
    #[error("{location} has repository format {found}; this coffer reads format {FORMAT_VERSION}")]
    UnsupportedFormat { location: String, found: u32 },
    #[error("no restore point {id} in {location}")]
    NoSuchPoint { id: String, location: String },
    /// A blob a restore point refers to is in no index; `advice` says what to do.
    #[error("restore point {point} needs blob {blob}, which no index lists{advice}")]
    MissingBlob { point: String, blob: String, advice: String },
    #[error(
        "{key}, uploaded by this backup, is gone (deleted by a prune?); the restore point was not written, run the backup again"
    )]
    UploadGone { key: String },
    #[error(
        "{packs} archived packs are still being restored from {storage_class} after {waited:?}; run the restore again later"
    )]
    StillThawing { packs: usize, storage_class: StorageClass, waited: Duration },
    #[error(
        "{key} is damaged ({problem}); prune deletes nothing while an index file is unreadable: run `coffer repo repair-index` first"
    )]
    IndexDamaged { key: String, problem: String },
    #[error("{MARKS_KEY} is not readable ({cause}); delete it to start marking afresh")]
    UnreadableMarks { cause: serde_json::Error },
    #[error("{count} pack(s) could not be indexed, so the damaged index files were kept: {}", problems.join("; "))]
    Unindexable { count: usize, problems: Vec<String> },
    #[error("encoding the config object: {0}")]
    Encode(#[from] serde_json::Error),
    /// A worker task of this process died (a panic): nothing was written past it.
    #[error("{doing}: {cause}")]
    Task { doing: &'static str, cause: tokio::task::JoinError },
}

impl RepoError {
    fn damaged(object: impl Into<String>, problem: CryptoError) -> Self {
        RepoError::Damaged { object: object.into(), problem }
    }
}

/// How to get at the master key.
pub enum Unlock<'a> {
    Password(&'a str),
    /// A key service holding the wrapping key (KMS, in `coffer-aws`).
    Service(&'a dyn KeyService),
}

/// What to record about a new restore point besides its blocks.
#[derive(Debug, Clone, Default)]
pub struct PointMeta {
    pub time: Option<DateTime<Utc>>,
    pub policy: String,
    pub rules: Vec<String>,
    pub run: String,
    pub tags: BTreeMap<String, String>,
    pub source: Source,
}

/// Called as blocks are done: (blocks done, blocks to do).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

pub struct Repository {
    storage: Arc<dyn Storage>,
    pub config: RepositoryConfig,
    master: MasterKey,
    keys: Keys,
    index: Arc<Index>,
    /// The index files loaded, for prune's rewrite.
    pub(crate) index_files: Vec<String>,
    pub pack_target: usize,
    /// Index files that would not open (key, problem): their packs are
    /// unknown until `coffer repo repair-index` rebuilds them; restores of
    /// points located by the other indexes still work, prune refuses.
    pub damaged_index_files: Vec<(String, String)>,
    /// The shared lock this repository was opened under: a backup checks
    /// it still holds before writing its manifest.
    guard: Option<LockGuard>,
}

enum Processed {
    Zero,
    Known(BlobId),
    New(BlobId, usize, Vec<u8>),
}

impl Repository {
    pub async fn read_config(storage: &dyn Storage) -> Result<RepositoryConfig, RepoError> {
        let bytes = storage.get(CONFIG_KEY).await.map_err(|e| match e {
            StorageError::NotFound(_) => RepoError::NotARepository { location: storage.location() },
            e => e.into(),
        })?;
        let config: RepositoryConfig = serde_json::from_slice(&bytes)
            .map_err(|e| RepoError::damaged("config", CryptoError::Malformed(e.to_string())))?;
        if config.format_version != FORMAT_VERSION {
            return Err(RepoError::UnsupportedFormat { location: storage.location(), found: config.format_version });
        }
        Ok(config)
    }

    /// Opens a repository: reads the config, unwraps the key, loads the index.
    pub async fn open(storage: Arc<dyn Storage>, unlock: Unlock<'_>) -> Result<Repository, RepoError> {
        let config = Self::read_config(storage.as_ref()).await?;
        let master = match unlock {
            Unlock::Password(password) => config.open_with_password(password)?,
            Unlock::Service(service) => service.unwrap(&config).await?,
        };
        Self::open_with_key(storage, config, &master).await
    }

    pub async fn open_with_key(
        storage: Arc<dyn Storage>,
        config: RepositoryConfig,
        master: &MasterKey,
    ) -> Result<Repository, RepoError> {
        let mut repo = Repository {
            storage,
            config,
            master: master.clone(),
            keys: Keys::new(master),
            index: Arc::new(Index::default()),
            index_files: Vec::new(),
            pack_target: PACK_TARGET,
            damaged_index_files: Vec::new(),
            guard: None,
        };
        repo.load_index().await?;
        Ok(repo)
    }

    /// Opens under a shared lock (backups, restores), taken before the
    /// index is read so nothing a prune deletes meanwhile is taken for present.
    pub async fn open_locked(
        storage: Arc<dyn Storage>,
        config: RepositoryConfig,
        master: &MasterKey,
        purpose: &str,
    ) -> Result<(Repository, Lock), RepoError> {
        let lock = Lock::shared(storage.clone(), purpose).await?;
        match Self::open_with_key(storage, config, master).await {
            Ok(mut repo) => {
                repo.guard = Some(lock.guard());
                Ok((repo, lock))
            }
            Err(e) => {
                let _ = lock.release().await;
                Err(e)
            }
        }
    }

    /// Writes a new repository's config (refuses to overwrite one).
    pub async fn init(
        storage: Arc<dyn Storage>,
        config: RepositoryConfig,
        master: &MasterKey,
    ) -> Result<Repository, RepoError> {
        let body = serde_json::to_vec_pretty(&config)?;
        storage.put(CONFIG_KEY, body, &PutOptions { create_only: true, ..PutOptions::default() }).await?;
        Self::open_with_key(storage, config, master).await
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub(crate) fn master_key(&self) -> MasterKey {
        self.master.clone()
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn is_archive(&self) -> bool {
        self.config.storage_class.is_archive()
    }

    /// Loads every index file that opens; one that is damaged is set aside
    /// in [`Repository::damaged_index_files`] instead of failing the open.
    pub(crate) async fn load_index(&mut self) -> Result<(), RepoError> {
        let files = self.storage.list("index/").await?;
        let keys = &self.keys;
        let storage = &self.storage;
        let opened: Vec<(String, Result<Vec<OpenedPack>, String>)> =
            futures::stream::iter(files.into_iter().map(|o| async move {
                let id = o.key.trim_start_matches("index/").to_string();
                let bytes = storage.get(&o.key).await?;
                let packs = IndexFile::open(keys, &id, &bytes).map_err(|p| p.to_string()).and_then(|file| {
                    file.packs
                        .into_iter()
                        .map(|pack| pack.entries().map(|entries| (pack, entries)).map_err(|p| p.to_string()))
                        .collect::<Result<Vec<_>, String>>()
                });
                Ok::<_, RepoError>((o.key, packs))
            }))
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let mut index = Index::default();
        let mut names = Vec::new();
        let mut damaged = Vec::new();
        for (key, packs) in opened {
            match packs {
                Ok(packs) => {
                    for (pack, entries) in packs {
                        index.add_pack(&pack.id, pack.size, &entries);
                    }
                    names.push(key);
                }
                Err(problem) => {
                    tracing::warn!(%key, %problem, "a damaged index file is left out (coffer repo repair-index rebuilds it)");
                    damaged.push((key, problem));
                }
            }
        }
        damaged.sort();
        self.index = Arc::new(index);
        self.index_files = names;
        self.damaged_index_files = damaged;
        Ok(())
    }

    /// What to tell a user whose blob no index lists.
    pub(crate) fn damaged_index_hint(&self) -> String {
        match self.damaged_index_files.as_slice() {
            [] => "run `coffer repo check`".into(),
            damaged => format!(
                "{} is damaged and left out; run `coffer repo repair-index`",
                damaged.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    fn pack_options(&self) -> PutOptions {
        let class = self.config.storage_class;
        PutOptions { create_only: false, storage_class: (class != StorageClass::Standard).then_some(class) }
    }

    /// Every restore point's manifest, oldest first.
    pub async fn manifests(&self) -> Result<Vec<Manifest>, RepoError> {
        let objects = self.storage.list("manifests/").await?;
        let mut manifests: Vec<Manifest> =
            futures::stream::iter(objects.into_iter().map(|o| self.read_manifest_key(o.key)))
                .buffer_unordered(8)
                .try_collect()
                .await?;
        manifests.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        Ok(manifests)
    }

    async fn read_manifest_key(&self, key: String) -> Result<Manifest, RepoError> {
        let id = key.trim_start_matches("manifests/").to_string();
        let bytes = self.storage.get(&key).await?;
        Manifest::open(&self.keys, &id, &bytes).map_err(|p| RepoError::damaged(key, p))
    }

    pub async fn manifest(&self, id: &str) -> Result<Manifest, RepoError> {
        self.read_manifest_key(manifest_key(id)).await.map_err(|e| match e {
            RepoError::Storage(StorageError::NotFound(_)) => {
                RepoError::NoSuchPoint { id: id.to_string(), location: self.storage.location() }
            }
            e => e,
        })
    }

    /// Backs `source` up as a new restore point. With a `parent`, a source
    /// that lists changes reads only changed blocks and carries the rest of
    /// the parent's map over.
    pub async fn backup(
        &mut self,
        source: &dyn BlockSource,
        parent: Option<&Manifest>,
        meta: PointMeta,
        concurrency: usize,
        progress: ProgressFn<'_>,
    ) -> Result<Manifest, RepoError> {
        let listing = source.list(parent.map(|p| p.source.name.as_str())).await?;
        let mut map: BlockMap = match parent {
            Some(p) if listing.changes_since_parent => {
                p.block_map().map_err(|e| RepoError::damaged(manifest_key(&p.id), e))?
            }
            _ => BlockMap::new(),
        };
        for index in &listing.removed {
            map.remove(index);
        }
        let total = listing.blocks.len() as u64;
        let mut stats = Stats::default();
        let mut pending: HashSet<BlobId> = HashSet::new();
        let mut builder = PackBuilder::for_target(self.pack_target);
        let mut uploads = FuturesUnordered::new();
        let mut new_packs: Vec<IndexedPack> = Vec::new();

        let known = self.index.clone();
        let keys = self.keys.clone();
        let mut blocks = futures::stream::iter(listing.blocks)
            .map(|block| {
                let known = known.clone();
                let keys = keys.clone();
                async move {
                    let data = source.read(&block).await?;
                    let read = data.len() as u64;
                    let processed = tokio::task::spawn_blocking(move || process(&keys, &known, &data))
                        .await
                        .map_err(|cause| RepoError::Task { doing: "processing a block", cause })?;
                    Ok::<_, RepoError>((block.index, read, processed))
                }
            })
            .buffer_unordered(concurrency.max(1));

        let mut done = 0u64;
        while let Some(result) = blocks.next().await {
            let (index, read, processed) = result?;
            stats.blocks_read += 1;
            stats.bytes_read += read;
            match processed {
                Processed::Zero => {
                    map.remove(&index);
                }
                Processed::Known(id) => {
                    map.insert(index, id);
                }
                Processed::New(id, raw_length, sealed) => {
                    map.insert(index, id);
                    if pending.insert(id) {
                        stats.new_blobs += 1;
                        stats.bytes_written += sealed.len() as u64;
                        builder.add(id, raw_length, &sealed);
                        if builder.len() >= self.pack_target {
                            let pack = std::mem::replace(&mut builder, PackBuilder::for_target(self.pack_target))
                                .finish(&self.keys);
                            uploads.push(self.upload(pack));
                            if uploads.len() >= UPLOADS_IN_FLIGHT
                                && let Some(done) = uploads.next().await
                            {
                                new_packs.push(joined(done)?);
                            }
                        }
                    }
                }
            }
            done += 1;
            progress(done, total);
        }
        drop(blocks);
        if !builder.is_empty() {
            uploads.push(self.upload(builder.finish(&self.keys)));
        }
        while let Some(done) = uploads.next().await {
            new_packs.push(joined(done)?);
        }
        let new_pack_ids: Vec<String> = new_packs.iter().map(|p| p.id.clone()).collect();
        if !new_packs.is_empty() {
            self.write_index(IndexFile { packs: new_packs }).await?;
        }
        self.verify_before_commit(&new_pack_ids).await?;

        stats.blocks = map.len() as u64;
        stats.incremental = listing.changes_since_parent;
        let manifest = Manifest {
            id: uuid::Uuid::new_v4().to_string(),
            time: meta.time.unwrap_or_else(Utc::now),
            source: Source { name: source.name(), ..meta.source },
            volume_size: listing.volume_size,
            block_size: BLOCK_SIZE,
            policy: meta.policy,
            rules: meta.rules,
            run: meta.run,
            parent: parent.map(|p| p.id.clone()),
            tags: meta.tags,
            stats,
            blocks: Manifest::encode_map(&map),
        };
        self.storage
            .put(
                &manifest_key(&manifest.id),
                manifest.seal(&self.keys),
                &PutOptions { create_only: true, ..PutOptions::default() },
            )
            .await?;
        Ok(manifest)
    }

    /// Before a manifest makes a backup's packs live: the shared lock must
    /// still be this backup's (a prune that judged it stale may have
    /// deleted packs not yet indexed) and every pack it uploaded present.
    async fn verify_before_commit(&self, packs: &[String]) -> Result<(), RepoError> {
        if let Some(guard) = &self.guard {
            guard.verify().await?;
        }
        let mut folders: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        for id in packs {
            let key = pack_key(id);
            let folder = key.rsplit_once('/').map_or(String::new(), |(folder, _)| format!("{folder}/"));
            folders.entry(folder).or_default().insert(key);
        }
        for (folder, mut wanted) in folders {
            for object in self.storage.list(&folder).await? {
                wanted.remove(&object.key);
            }
            if let Some(missing) = wanted.into_iter().next() {
                return Err(RepoError::UploadGone { key: missing });
            }
        }
        Ok(())
    }

    fn upload(&self, pack: Pack) -> tokio::task::JoinHandle<Result<IndexedPack, RepoError>> {
        let storage = self.storage.clone();
        let options = self.pack_options();
        tokio::spawn(async move {
            let size = pack.bytes.len() as u64;
            storage.put(&pack_key(&pack.id), pack.bytes, &options).await?;
            Ok(IndexedPack::new(&pack.id, size, &pack.entries))
        })
    }

    /// Writes an index file and adds its packs to the in-memory index.
    pub(crate) async fn write_index(&mut self, file: IndexFile) -> Result<String, RepoError> {
        let (id, sealed) = file.seal(&self.keys);
        let key = format!("index/{id}");
        self.storage.put(&key, sealed, &PutOptions::default()).await?;
        let index = Arc::make_mut(&mut self.index);
        for pack in &file.packs {
            let entries = pack.entries().map_err(|p| RepoError::damaged(&key, p))?;
            index.add_pack(&pack.id, pack.size, &entries);
        }
        self.index_files.push(key.clone());
        Ok(key)
    }

    /// Makes every pack `manifest` needs readable, for archive
    /// repositories: asks S3 to restore them and waits (polling every
    /// `poll`) until all are, or `timeout` passes.
    pub async fn thaw(&self, manifest: &Manifest, poll: Duration, timeout: Duration) -> Result<(), RepoError> {
        if !self.is_archive() {
            return Ok(());
        }
        let map = manifest.block_map().map_err(|e| RepoError::damaged(manifest_key(&manifest.id), e))?;
        let packs: HashSet<String> =
            map.values().filter_map(|id| self.index.get(id).map(|l| self.index.pack_id(l).to_string())).collect();
        let started = std::time::Instant::now();
        let mut waiting: Vec<String> = packs.into_iter().collect();
        loop {
            let mut still = Vec::new();
            for pack in waiting {
                if self.storage.thaw(&pack_key(&pack), 7).await? == Thaw::InProgress {
                    still.push(pack);
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(RepoError::StillThawing {
                    packs: still.len(),
                    storage_class: self.config.storage_class,
                    waited: timeout,
                });
            }
            tracing::info!(packs = still.len(), "waiting for S3 to restore archived packs");
            tokio::time::sleep(poll).await;
            waiting = still;
        }
    }

    /// Writes a restore point's blocks to `sink`. Every blob is
    /// authenticated and checked against its id before it is written; on
    /// any error the sink is aborted.
    pub async fn restore(
        &self,
        manifest: &Manifest,
        sink: &dyn BlockSink,
        concurrency: usize,
        progress: ProgressFn<'_>,
    ) -> Result<String, RepoError> {
        match self.restore_blocks(manifest, sink, concurrency, progress).await {
            Ok(written) => Ok(sink.finish(written).await?),
            Err(e) => {
                sink.abort().await;
                Err(e)
            }
        }
    }

    async fn restore_blocks(
        &self,
        manifest: &Manifest,
        sink: &dyn BlockSink,
        concurrency: usize,
        progress: ProgressFn<'_>,
    ) -> Result<u64, RepoError> {
        let map = manifest.block_map().map_err(|e| RepoError::damaged(manifest_key(&manifest.id), e))?;
        let mut targets: HashMap<BlobId, Vec<u64>> = HashMap::new();
        for (index, id) in &map {
            targets.entry(*id).or_default().push(*index);
        }
        let mut located = Vec::with_capacity(targets.len());
        for id in targets.keys() {
            let location = self.index.get(id).ok_or_else(|| RepoError::MissingBlob {
                point: manifest.id.clone(),
                blob: id.to_string(),
                advice: format!(" ({})", self.damaged_index_hint()),
            })?;
            located.push((*id, *location));
        }
        located.sort_by_key(|(_, l)| (l.pack, l.offset));
        let ranges = coalesce(&located);
        let total = map.len() as u64;
        let done = std::sync::atomic::AtomicU64::new(0);
        let targets = &targets;
        let done_ref = &done;
        futures::stream::iter(ranges.into_iter().map(|range| async move {
            let pack = self.index.packs[range.pack as usize].id.clone();
            let bytes = self.storage.get_range(&pack_key(&pack), range.start, range.end - range.start).await?;
            let keys = self.keys.clone();
            let start = range.start;
            let blobs = range.blobs;
            let opened = tokio::task::spawn_blocking(move || {
                blobs
                    .into_iter()
                    .map(|(id, l)| {
                        let at = (u64::from(l.offset) - start) as usize;
                        let sealed = bytes.get(at..at + l.length as usize).ok_or_else(|| {
                            RepoError::damaged(
                                pack_key(&pack),
                                CryptoError::Malformed("shorter than its index says".into()),
                            )
                        })?;
                        let block = keys
                            .open_blob(&id, l.raw_length as usize, sealed)
                            .map_err(|p| RepoError::damaged(format!("{} (blob {id})", pack_key(&pack)), p))?;
                        Ok((id, block))
                    })
                    .collect::<Result<Vec<_>, RepoError>>()
            })
            .await
            .map_err(|cause| RepoError::Task { doing: "opening blobs", cause })??;
            for (id, block) in opened {
                for index in &targets[&id] {
                    sink.write(*index, block.clone()).await?;
                    let n = done_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    progress(n, total);
                }
            }
            Ok::<_, RepoError>(())
        }))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        Ok(total)
    }

    /// Deletes restore points' manifests. Returns the ids kept because S3
    /// Object Lock still protects them (with the date it ends).
    pub async fn forget(&self, ids: &[String]) -> Result<Vec<(String, DateTime<Utc>)>, RepoError> {
        let mut held = Vec::new();
        let now = Utc::now();
        for id in ids {
            let key = manifest_key(id);
            match self.storage.retained_until(&key).await {
                Ok(Some(until)) if until > now => held.push((id.clone(), until)),
                Ok(_) => self.storage.delete(&key).await?,
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(held)
    }
}

fn joined(upload: Result<Result<IndexedPack, RepoError>, tokio::task::JoinError>) -> Result<IndexedPack, RepoError> {
    upload.map_err(|cause| RepoError::Task { doing: "uploading a pack", cause })?
}

fn process(keys: &Keys, known: &Index, data: &[u8]) -> Processed {
    if is_zero(data) {
        return Processed::Zero;
    }
    let id = keys.blob_id(data);
    if known.contains(&id) {
        return Processed::Known(id);
    }
    Processed::New(id, data.len(), keys.seal_blob(&id, data))
}

fn is_zero(data: &[u8]) -> bool {
    let chunks = data.chunks_exact(64);
    let tail = chunks.remainder();
    chunks.into_iter().all(|c| c == [0u8; 64]) && tail.iter().all(|&b| b == 0)
}

/// One ranged read of a pack and the blobs in it.
struct Range {
    pack: u32,
    start: u64,
    end: u64,
    /// Bytes of blocks the range's blobs open into.
    opened: u64,
    blobs: Vec<(BlobId, super::index::Location)>,
}

/// Blobs of one pack close together are fetched in one request: a gap of
/// up to 1 MiB is cheaper to read than a second request. A range stops at
/// 8 MiB read and 8 MiB of blocks it opens into, so a restore holds at most
/// 16 MiB per range in flight whatever the volume size or compression.
fn coalesce(located: &[(BlobId, super::index::Location)]) -> Vec<Range> {
    const MAX_GAP: u64 = 1024 * 1024;
    const MAX_RANGE: u64 = 8 * 1024 * 1024;
    const MAX_OPENED: u64 = 8 * 1024 * 1024;
    let mut ranges: Vec<Range> = Vec::new();
    for (id, l) in located {
        let start = u64::from(l.offset);
        let end = start + u64::from(l.length);
        match ranges.last_mut() {
            Some(r)
                if r.pack == l.pack
                    && start <= r.end + MAX_GAP
                    && end - r.start <= MAX_RANGE
                    && r.opened + u64::from(l.raw_length) <= MAX_OPENED =>
            {
                r.end = r.end.max(end);
                r.opened += u64::from(l.raw_length);
                r.blobs.push((*id, *l));
            }
            _ => {
                ranges.push(Range { pack: l.pack, start, end, opened: u64::from(l.raw_length), blobs: vec![(*id, *l)] })
            }
        }
    }
    ranges
}
