//! A local file or block device as a block source, and a file as a restore
//! target: for a worker that attached a volume, and for on-premises images.
//!
//! A file has no changed-block tracking, so every backup lists every block
//! holding data; blocks identical to the parent's cost a read and a hash,
//! nothing more. Blocks in a sparse file's holes are not read at all.

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

/// The blocks that overlap the file's data, from the file system's extent
/// map (`SEEK_DATA` / `SEEK_HOLE`): a block wholly inside a hole reads as
/// zeros, which a restore point omits anyway, so it need not be read. `None`
/// where that cannot be told (the caller then lists every block); a block
/// device reports all of itself as data.
fn data_blocks(file: &File, size: u64) -> Option<Vec<u64>> {
    use rustix::fs::{SeekFrom, seek};
    let block = u64::from(BLOCK_SIZE);
    let mut blocks: Vec<u64> = Vec::new();
    let mut position = 0;
    while position < size {
        let data = match seek(file, SeekFrom::Data(position)) {
            Ok(data) => data,
            // No data after `position`.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return None,
        };
        let hole = seek(file, SeekFrom::Hole(data)).ok()?.min(size);
        let first = (data / block).max(blocks.last().map_or(0, |last| last + 1));
        blocks.extend(first..hole.div_ceil(block));
        position = hole.max(data + 1);
    }
    Some(blocks)
}

#[async_trait]
impl BlockSource for FileSource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    async fn list(&self, _parent: Option<&str>) -> Result<Listing, BlockError> {
        let blocks = data_blocks(&self.file, self.size).unwrap_or_else(|| (0..self.size.div_ceil(u64::from(BLOCK_SIZE))).collect());
        Ok(Listing {
            volume_size: self.size,
            blocks: blocks.into_iter().map(|index| BlockRef { index, token: String::new() }).collect(),
            removed: Vec::new(),
            changes_since_parent: false,
        })
    }

    async fn read(&self, block: &BlockRef) -> Result<Vec<u8>, BlockError> {
        let offset = block.index * u64::from(BLOCK_SIZE);
        let len = (self.size.saturating_sub(offset)).min(u64::from(BLOCK_SIZE)) as usize;
        let file = self.file.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || read_exact_at(&file, offset, len).map_err(|e| io_error(&path, "reading", e)))
        .await
        .map_err(|e| BlockError::Io(format!("reading a block: {e}")))?
    }
}

/// `len` bytes at `offset`, read into fresh memory without zeroing it first
/// (`vec![0; len]` then `read_exact_at` writes every block twice).
fn read_exact_at(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        if rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    buf.truncate(len);
    Ok(buf)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10-block sparse file holding data in block 3 and in the middle of
    /// block 7 only.
    fn sparse_image(dir: &Path) -> (PathBuf, Vec<u8>) {
        let path = dir.join("sparse.img");
        let block = BLOCK_SIZE as usize;
        let file = File::create(&path).unwrap();
        file.set_len(10 * block as u64).unwrap();
        file.write_all_at(&[0xAB; 4096], 3 * block as u64).unwrap();
        file.write_all_at(b"in the middle", 7 * block as u64 + 1000).unwrap();
        drop(file);
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    #[tokio::test]
    async fn a_sparse_file_lists_only_blocks_holding_data_and_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = sparse_image(dir.path());
        let source = FileSource::open(&path).unwrap();
        let listing = source.list(None).await.unwrap();
        let listed: Vec<u64> = listing.blocks.iter().map(|b| b.index).collect();
        assert_eq!(listing.volume_size, bytes.len() as u64);
        // File systems that keep holes say where the data is; others call
        // the whole file data, and every block is listed.
        let keeps_holes = rustix::fs::seek(&*source.file, rustix::fs::SeekFrom::Hole(0)).unwrap() < bytes.len() as u64;
        if keeps_holes {
            assert_eq!(listed, vec![3, 7]);
        } else {
            assert_eq!(listed, (0..10).collect::<Vec<_>>());
        }
        for b in &listing.blocks {
            let start = b.index as usize * BLOCK_SIZE as usize;
            assert_eq!(source.read(b).await.unwrap(), bytes[start..start + BLOCK_SIZE as usize]);
        }
    }

    #[tokio::test]
    async fn a_file_without_holes_lists_every_block_including_a_short_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dense.img");
        std::fs::write(&path, vec![1u8; BLOCK_SIZE as usize * 2 + 10]).unwrap();
        let listing = FileSource::open(&path).unwrap().list(None).await.unwrap();
        assert_eq!(listing.blocks.iter().map(|b| b.index).collect::<Vec<_>>(), vec![0, 1, 2]);
    }
}
