//! A local file or block device as a block source, and a file as a restore
//! target: for a worker that attached a volume, and for on-premises images.
//!
//! A file has no changed-block tracking, so every backup lists every block;
//! blocks identical to the parent's cost a read and a hash, nothing more.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{BLOCK_SIZE, BlockError, BlockRef, BlockSink, BlockSource, Listing};

pub struct FileSource {
    path: PathBuf,
    file: Arc<File>,
    size: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, BlockError> {
        let file = File::open(path).map_err(|e| io_error(path, "opening", e))?;
        // A block device reports length 0 in its metadata; seeking to the
        // end gives its size.
        let size = {
            use std::io::{Seek, SeekFrom};
            let mut handle = &file;
            handle.seek(SeekFrom::End(0)).map_err(|e| io_error(path, "sizing", e))?
        };
        Ok(Self { path: path.to_path_buf(), file: Arc::new(file), size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

fn io_error(path: &Path, action: &str, e: std::io::Error) -> BlockError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlockError::NotFound(path.display().to_string())
    } else {
        BlockError::Io(format!("{action} {}: {e}", path.display()))
    }
}

#[async_trait]
impl BlockSource for FileSource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    async fn list(&self, _parent: Option<&str>) -> Result<Listing, BlockError> {
        let count = self.size.div_ceil(u64::from(BLOCK_SIZE));
        Ok(Listing {
            volume_size: self.size,
            blocks: (0..count).map(|index| BlockRef { index, token: String::new() }).collect(),
            removed: Vec::new(),
            changes_since_parent: false,
        })
    }

    async fn read(&self, block: &BlockRef) -> Result<Vec<u8>, BlockError> {
        let offset = block.index * u64::from(BLOCK_SIZE);
        let len = (self.size.saturating_sub(offset)).min(u64::from(BLOCK_SIZE)) as usize;
        let file = self.file.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset).map_err(|e| io_error(&path, "reading", e))?;
            Ok(buf)
        })
        .await
        .map_err(|e| BlockError::Io(format!("reading a block: {e}")))?
    }
}

/// Restores into a new file of the volume's size (sparse where blocks are
/// zero). The file is written under a temporary name and renamed into place
/// by `finish`, so a failed restore never leaves a partial file at `path`.
pub struct FileSink {
    path: PathBuf,
    partial: PathBuf,
    file: Arc<File>,
}

impl FileSink {
    /// Refuses to overwrite an existing file.
    pub fn create(path: &Path, size: u64) -> Result<Self, BlockError> {
        if path.exists() {
            return Err(BlockError::Io(format!("{} already exists; restore never overwrites a file", path.display())));
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".coffer-partial");
        let partial = PathBuf::from(partial);
        let file = File::create(&partial).map_err(|e| io_error(&partial, "creating", e))?;
        file.set_len(size).map_err(|e| io_error(&partial, "sizing", e))?;
        Ok(Self { path: path.to_path_buf(), partial, file: Arc::new(file) })
    }
}

#[async_trait]
impl BlockSink for FileSink {
    async fn write(&self, index: u64, data: Vec<u8>) -> Result<(), BlockError> {
        let file = self.file.clone();
        let path = self.partial.clone();
        tokio::task::spawn_blocking(move || {
            file.write_all_at(&data, index * u64::from(BLOCK_SIZE))
                .map_err(|e| io_error(&path, "writing", e))
        })
        .await
        .map_err(|e| BlockError::Io(format!("writing a block: {e}")))?
    }

    async fn finish(&self, _blocks_written: u64) -> Result<String, BlockError> {
        self.file.sync_all().map_err(|e| io_error(&self.partial, "syncing", e))?;
        std::fs::rename(&self.partial, &self.path).map_err(|e| io_error(&self.path, "renaming into", e))?;
        Ok(self.path.display().to_string())
    }

    async fn abort(&self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}
