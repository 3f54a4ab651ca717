//! Where blocks come from and where restored blocks go.
//!
//! A backup reads a volume as fixed 512 KiB blocks from a [`BlockSource`]
//! (an EBS snapshot through the EBS direct APIs, in `coffer-aws`, or a local
//! file or block device); a restore writes them to a [`BlockSink`] (a new EBS
//! snapshot, or a local file). The repository engine only sees these traits.

pub mod file;

use async_trait::async_trait;
use thiserror::Error;

/// The block size of EBS direct APIs, and of every Coffer repository.
pub const BLOCK_SIZE: u32 = 512 * 1024;

/// One block to read: its index on the volume and the source's handle for
/// it (the EBS block token; empty for files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    pub index: u64,
    pub token: String,
}

/// What a source offers for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The volume's size in bytes.
    pub volume_size: u64,
    /// Blocks to read, in index order. When `changes_since_parent` is true
    /// these are only the blocks that differ from the parent's source; the
    /// others are carried over from the parent restore point.
    pub blocks: Vec<BlockRef>,
    /// Blocks that held data in the parent's source and hold none now (read
    /// as zeros): dropped from the carried-over map.
    pub removed: Vec<u64>,
    /// True when the listing is a difference against the parent's source.
    pub changes_since_parent: bool,
}

#[derive(Debug, Error)]
pub enum BlockError {
    /// The snapshot, file or parent is gone.
    #[error("{0} not found")]
    NotFound(String),
    /// The source sent a block whose checksum does not match its content.
    #[error("block {index} of {source_name}: checksum mismatch (the block was damaged in transit)")]
    Checksum { source_name: String, index: u64 },
    #[error("{0}")]
    Io(String),
}

/// A volume to back up.
#[async_trait]
pub trait BlockSource: Send + Sync {
    /// A name for messages: `snap-…`, a path.
    fn name(&self) -> String;

    /// The blocks to read. `parent` is the source name the previous restore
    /// point of this volume was made from; a source that can list the
    /// difference against it does (and says so in the listing), one that
    /// cannot (or whose parent is gone) lists every block holding data.
    async fn list(&self, parent: Option<&str>) -> Result<Listing, BlockError>;

    /// One block's bytes: [`BLOCK_SIZE`] long except perhaps the last block
    /// of a file whose size is not a multiple of it.
    async fn read(&self, block: &BlockRef) -> Result<Vec<u8>, BlockError>;
}

/// Where a restore writes. Blocks arrive in any order, each at most once;
/// blocks never written read as zeros.
#[async_trait]
pub trait BlockSink: Send + Sync {
    async fn write(&self, index: u64, data: Vec<u8>) -> Result<(), BlockError>;

    /// Seals what was written; returns what was made (a snapshot id, a path).
    async fn finish(&self, blocks_written: u64) -> Result<String, BlockError>;

    /// Gives up: removes what was started where that is possible.
    async fn abort(&self);
}
