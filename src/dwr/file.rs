//! How the store reaches its `-dwr` file.
//!
//! In the extension the `-dwr` is opened through the same base VFS that
//! metadwr wraps (`unix` unless `METADWR_BASE_VFS` names another), so a
//! test VFS placed under metadwr sees, delays, tears and fails `-dwr` writes
//! and syncs exactly like those of the database, journal and WAL. Unit tests
//! and tools use plain files.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Positioned I/O on an open `-dwr`.
#[allow(clippy::len_without_is_empty)] // a file length, not a collection
pub trait DwrFile: Send {
    /// Reads up to `buf.len()` bytes at `off`; fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn sync(&self) -> io::Result<()>;
    /// False once the path no longer names this file (another connection
    /// disabled protection and deleted it, perhaps creating a new one).
    fn is_linked(&self) -> bool;

    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        if self.read_at(buf, off)? == buf.len() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"))
        }
    }
}

/// How to open a `-dwr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    ReadOnly,
    ReadWrite,
    /// Read-write, created if missing.
    Create,
}

/// Opens `-dwr` files.
pub trait DwrOpener: Send + Sync {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DwrFile>>;
}

/// Plain files through `std::fs`, never following a symlink: the copy must
/// live next to the database it protects.
pub struct StdOpener;

const O_NOFOLLOW: i32 = 0o400000; // Linux
const O_CLOEXEC: i32 = 0o2000000; // Linux

impl DwrOpener for StdOpener {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DwrFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(mode != OpenMode::ReadOnly)
            .create(mode == OpenMode::Create)
            .custom_flags(O_NOFOLLOW | O_CLOEXEC)
            .mode(0o644)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(Box::new(StdDwrFile {
            file,
            path: path.to_owned(),
        }))
    }
}

struct StdDwrFile {
    file: File,
    path: PathBuf,
}

impl DwrFile for StdDwrFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.file.write_all_at(buf, off)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn is_linked(&self) -> bool {
        same_file(&self.file, &self.path)
    }
}

/// True while `path` names the open `file`.
pub fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
