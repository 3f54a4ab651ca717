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
    /// Opens a regular file or a block device; anything else (a directory,
    /// a FIFO, a character device such as `/dev/zero`) is refused before
    /// anything is read, so the caller takes no lock for it.
    pub fn open(path: &Path) -> Result<Self, BlockError> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
            .map_err(|e| io_error(path, "opening", e))?;
        let metadata = file.metadata().map_err(|e| io_error(path, "reading the type of", e))?;
        let kind = metadata.file_type();
        let size = if kind.is_file() {
            metadata.len()
        } else if kind.is_block_device() {
            // A block device reports length 0 in its metadata; seeking to the
            // end gives its size.
            use std::io::{Seek, SeekFrom};
            let mut handle = &file;
            handle.seek(SeekFrom::End(0)).map_err(|e| io_error(path, "sizing", e))?
        } else {
            let what = if kind.is_dir() {
                "a directory"
            } else if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_char_device() {
                "a character device"
            } else if kind.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            };
            return Err(BlockError::Io(format!(
                "{} is {what}; --file backs up a regular file or a block device",
                path.display()
            )));
        };
        // Reads are positioned (pread) and must wait for data: back to blocking.
        rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty()).map_err(|e| io_error(path, "opening", e.into()))?;
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
        let blocks = data_blocks(&self.file, self.size)
            .unwrap_or_else(|| (0..self.size.div_ceil(u64::from(BLOCK_SIZE))).collect());
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
        tokio::task::spawn_blocking(move || {
            read_exact_at(&file, offset, len).map_err(|e| io_error(&path, "reading", e))
        })
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
/// zero), mode 0600 (a disk image holds whatever the disk held).
///
/// Never overwrites and never follows a link planted by someone else: the
/// target must not exist (not even as a dangling symlink); blocks go to a
/// partial file under a fresh random name in the target's directory,
/// created exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`), and `finish`
/// publishes it with `renameat2(RENAME_NOREPLACE)` (link + unlink where the
/// file system lacks that), which fails if anything appeared at the target
/// meanwhile. A failed or abandoned restore leaves nothing behind.
pub struct FileSink {
    path: PathBuf,
    partial: PathBuf,
    file: Arc<File>,
    published: std::sync::atomic::AtomicBool,
}

fn already_exists(path: &Path) -> BlockError {
    BlockError::Io(format!("{} already exists; restore never overwrites a file", path.display()))
}

impl FileSink {
    pub fn create(path: &Path, size: u64) -> Result<Self, BlockError> {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::symlink_metadata(path) {
            Ok(_) => return Err(already_exists(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path, "looking at", e)),
        }
        let (Some(name), dir) =
            (path.file_name(), path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")))
        else {
            return Err(BlockError::Io(format!("{}: name a file to restore into", path.display())));
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(BlockError::Io(format!("{} is not a directory", dir.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlockError::Io(format!("the directory {} does not exist", dir.display())));
            }
            Err(e) => return Err(io_error(dir, "looking at", e)),
        }
        let mut partial_name = std::ffi::OsString::from(".");
        partial_name.push(name);
        partial_name.push(format!(".coffer-partial-{}", uuid::Uuid::new_v4().simple()));
        let partial = dir.join(partial_name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&partial)
            .map_err(|e| io_error(&partial, "creating", e))?;
        let sink = Self { path: path.to_path_buf(), partial, file: Arc::new(file), published: false.into() };
        sink.file.set_len(size).map_err(|e| io_error(&sink.partial, "sizing", e))?;
        Ok(sink)
    }

    /// Moves the partial file to the target unless something is there.
    fn publish(&self) -> Result<(), BlockError> {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, &self.partial, CWD, &self.path, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(already_exists(&self.path)),
            // File systems without RENAME_NOREPLACE: a hard link refuses an
            // existing target just the same.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                match std::fs::hard_link(&self.partial, &self.path) {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&self.partial);
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(already_exists(&self.path)),
                    Err(e) => Err(io_error(&self.path, "linking", e)),
                }
            }
            Err(e) => Err(io_error(&self.path, "renaming into", e.into())),
        }
    }
}

#[async_trait]
impl BlockSink for FileSink {
    async fn write(&self, index: u64, data: Vec<u8>) -> Result<(), BlockError> {
        let file = self.file.clone();
        let path = self.partial.clone();
        tokio::task::spawn_blocking(move || {
            file.write_all_at(&data, index * u64::from(BLOCK_SIZE)).map_err(|e| io_error(&path, "writing", e))
        })
        .await
        .map_err(|e| BlockError::Io(format!("writing a block: {e}")))?
    }

    async fn finish(&self, _blocks_written: u64) -> Result<String, BlockError> {
        self.file.sync_all().map_err(|e| io_error(&self.partial, "syncing", e))?;
        self.publish()?;
        self.published.store(true, std::sync::atomic::Ordering::SeqCst);
        // The rename is durable once the directory is.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(self.path.display().to_string())
    }

    async fn abort(&self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

impl Drop for FileSink {
    /// A restore dropped part-way (an error, a signal) leaves no partial file.
    fn drop(&mut self) {
        if !self.published.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.partial);
        }
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
    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("coffer-partial"))
            .collect()
    }

    #[tokio::test]
    async fn restore_refuses_a_dangling_symlink_at_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("disk.img");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &target).unwrap();
        let error = FileSink::create(&target, 10).err().expect("a dangling symlink is something at the target");
        assert!(error.to_string().contains("already exists"), "{error}");
        assert!(!dir.path().join("nowhere").exists(), "the link was followed");
    }

    #[tokio::test]
    async fn restore_never_replaces_a_file_created_at_the_target_while_it_ran() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("disk.img");
        let sink = FileSink::create(&target, u64::from(BLOCK_SIZE)).unwrap();
        sink.write(0, vec![7; BLOCK_SIZE as usize]).await.unwrap();
        std::fs::write(&target, b"someone else's").unwrap();
        let error = sink.finish(1).await.expect_err("the target appeared meanwhile");
        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(std::fs::read(&target).unwrap(), b"someone else's");
        drop(sink);
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_finished_restore_is_mode_600_and_a_dropped_one_leaves_no_partial_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("disk.img");
        let sink = FileSink::create(&target, u64::from(BLOCK_SIZE) + 5).unwrap();
        sink.write(1, vec![1; 5]).await.unwrap();
        sink.finish(1).await.unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&target).unwrap().len(), u64::from(BLOCK_SIZE) + 5);
        drop(sink);
        assert!(target.exists());

        let other = dir.path().join("other.img");
        let sink = FileSink::create(&other, 100).unwrap();
        assert_eq!(leftovers(dir.path()).len(), 1);
        drop(sink);
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
        assert!(!other.exists());
    }

    #[tokio::test]
    async fn restore_into_a_missing_directory_names_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let error = FileSink::create(&dir.path().join("no/such/disk.img"), 1).err().unwrap().to_string();
        assert!(error.contains("the directory") && error.contains("no/such") && !error.contains("partial"), "{error}");
    }

    #[test]
    fn backup_refuses_directories_fifos_and_character_devices_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let error = FileSource::open(dir.path()).err().unwrap().to_string();
        assert!(error.contains("is a directory"), "{error}");
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Before the fix this open blocked for ever, waiting for a writer.
        let error = FileSource::open(&fifo).err().unwrap().to_string();
        assert!(error.contains("is a FIFO"), "{error}");
        let error = FileSource::open(Path::new("/dev/zero")).err().unwrap().to_string();
        assert!(error.contains("is a character device"), "{error}");
    }
}
