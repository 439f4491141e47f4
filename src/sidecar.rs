//! Creating and opening files next to a database, safely.
//!
//! Every file metadwr writes beside a database (the quarantine, its
//! temporary rewrite) may hold the database's data, so it gets the
//! database's protection, as SQLite gives its journals:
//! * the database's permission bits and owner (uid and gid; `fchown` is
//!   tried and `EPERM` ignored, which is what a process that is not root
//!   gets when the database belongs to someone else);
//! * opened with `O_NOFOLLOW | O_CLOEXEC` (and `O_NONBLOCK | O_NOCTTY`, so
//!   a FIFO or a terminal put in its place cannot block or take over);
//! * only a regular file, with one link, owned by the database's owner or
//!   by this process: a symlink, directory, FIFO, device or socket, or a
//!   file someone else planted there, is refused with an error that says
//!   which.
//!
//! The `-dwr` itself is opened through the base VFS (see `ffi/vfs.rs`), whose
//! journal-type open does the same for mode and owner; it uses
//! [`check_kind`] for the same refusals.

use std::fs::{File, FileType, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// The protection a database's sidecar files get: the database's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// Permission bits (`st_mode & 0o777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Protection {
    /// The protection of the database file at `db`.
    pub fn of_database(db: &Path) -> io::Result<Protection> {
        let meta = std::fs::metadata(db).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot stat the database {}: {e}", db.display()),
            )
        })?;
        Ok(Protection {
            mode: meta.mode() & 0o777,
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }
}

/// What a non-regular file type is, in words.
fn kind_name(ft: FileType) -> &'static str {
    if ft.is_symlink() {
        "a symlink"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The error for a path that names something other than a regular file.
pub fn not_regular(path: &Path, ft: FileType) -> io::Error {
    let what = kind_name(ft);
    let msg = if ft.is_symlink() {
        format!(
            "{} is {what}; metadwr does not follow symlinks",
            path.display()
        )
    } else {
        format!(
            "{} is {what}; metadwr writes only regular files",
            path.display()
        )
    };
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `Ok(true)` when `path` is a regular file, `Ok(false)` when nothing is
/// there, an error saying what it is otherwise. Does not follow symlinks.
pub fn check_kind(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(true),
        Ok(meta) => Err(not_regular(path, meta.file_type())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// How [`open`] treats a missing or existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Open the file, creating it if it is missing.
    IfMissing,
    /// Create a new file; fail if anything is at the path (`O_EXCL`).
    New,
}

/// Opens `path` for reading and writing under the rules of this module,
/// giving it `prot` (new or existing: a file created before these rules
/// existed is tightened too).
pub fn open(path: &Path, prot: Protection, create: Create) -> io::Result<File> {
    check_kind(path)?;
    let mut opts = OpenOptions::new();
    opts.read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .mode(prot.mode);
    match create {
        Create::IfMissing => opts.create(true),
        Create::New => opts.create_new(true),
    };
    let file = opts.open(path).map_err(|e| {
        // Something was put in place between the check and the open.
        match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::EISDIR) | Some(libc::ENXIO) => match check_kind(path) {
                Err(kind) => kind,
                Ok(_) => with_path(path, e),
            },
            _ => with_path(path, e),
        }
    })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    if meta.nlink() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} has {} hard links; metadwr writes only a file of its own",
                path.display(),
                meta.nlink()
            ),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != prot.uid && meta.uid() != euid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, neither the database's owner ({}) nor this process ({euid}); \
                 metadwr does not write to a file someone else put there",
                path.display(),
                meta.uid(),
                prot.uid
            ),
        ));
    }
    let fd = file.as_raw_fd();
    if meta.uid() != prot.uid || meta.gid() != prot.gid {
        // SAFETY: fd is an open descriptor owned by `file`, alive here.
        let rc = unsafe { libc::fchown(fd, prot.uid, prot.gid) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EPERM) {
                return Err(with_path(path, e));
            }
            // Not root: the owner cannot be given away, but the group can
            // be set when this process is in it.
            // SAFETY: as above; uid_t::MAX (-1) leaves the owner as it is.
            let rc = unsafe { libc::fchown(fd, libc::uid_t::MAX, prot.gid) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EPERM) {
                    return Err(with_path(path, e));
                }
            }
        }
    }
    // After fchown, which may clear bits; umask may have narrowed the
    // creation mode, and an older file may be wider than the database.
    if meta.mode() & 0o7777 != prot.mode {
        // SAFETY: fd is an open descriptor owned by `file`, alive here.
        let rc = unsafe { libc::fchmod(fd, prot.mode as libc::mode_t) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EPERM) {
                return Err(with_path(path, e));
            }
        }
    }
    Ok(file)
}

/// Makes a rename or creation in the directory of `path` durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    match d.sync_all() {
        // Some filesystems cannot sync a directory; SQLite ignores it too.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r,
    }
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
