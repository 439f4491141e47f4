//! Which file a copy was taken from.
//!
//! `(st_dev, st_ino)` names a file only while it exists: file systems hand a
//! freed inode number to the next file created, and ext4 usually does so at
//! once. A database deleted and created again at the same path (a test
//! suite's reset, `rm app.db; litestream restore -o app.db`) then has the
//! old file's device and inode numbers, and a copy of the old file would be
//! restored over the new one. So an identity also carries evidence that a
//! recreated file cannot reproduce by chance:
//!
//! * the **file handle** of `name_to_handle_at(2)`, which exportable file
//!   systems (ext4, xfs, btrfs, f2fs, tmpfs, NFS) build from the inode
//!   number and the inode's *generation*, a number they change whenever an
//!   inode number is reused (NFS relies on it to tell a recreated file from
//!   the old one); it is kept as a 64-bit digest;
//! * the **birth time** of `statx(2)` (`stx_btime`), in nanoseconds, where
//!   the file system records one.
//!
//! Two identities name the same file when device and inode agree, and every
//! piece of evidence both sides have agrees, and they share at least one.
//! With no shared evidence the answer is "cannot tell", which the staleness
//! rule treats as "not the same file".

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Evidence bit: [`FileIdentity::birth_ns`] holds the file's birth time.
pub const HAS_BIRTH: u32 = 1;
/// Evidence bit: [`FileIdentity::handle`] holds a file-handle digest.
pub const HAS_HANDLE: u32 = 2;

/// What names one database file; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    /// Which of the fields below are present ([`HAS_BIRTH`], [`HAS_HANDLE`]).
    pub evidence: u32,
    /// Birth time, nanoseconds since the Unix epoch.
    pub birth_ns: u64,
    /// FNV-1a 64 of the handle type and bytes of `name_to_handle_at`.
    pub handle: u64,
}

/// How two identities compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sameness {
    Same,
    /// Device, inode, handle or birth time differ.
    Different,
    /// Device and inode agree, but no evidence both sides have can tell
    /// this file from another one created later with the same numbers.
    CannotTell,
}

impl FileIdentity {
    /// The identity of the file at `path` (following symbolic links, as
    /// SQLite does for a database path).
    pub fn of_path(path: &Path) -> std::io::Result<FileIdentity> {
        let meta = std::fs::metadata(path)?;
        let mut id = FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            ..FileIdentity::default()
        };
        // std reads the birth time with statx(2) and reports an error where
        // the file system keeps none.
        if let Ok(born) = meta.created() {
            if let Ok(since) = born.duration_since(std::time::UNIX_EPOCH) {
                id.birth_ns = since.as_nanos() as u64;
                id.evidence |= HAS_BIRTH;
            }
        }
        if let Some(handle) = handle_digest(path) {
            id.handle = handle;
            id.evidence |= HAS_HANDLE;
        }
        Ok(id)
    }

    /// Compares the identity recorded with a copy (`self`) with the file's
    /// identity now.
    pub fn compare(&self, now: &FileIdentity) -> Sameness {
        if self.dev != now.dev || self.ino != now.ino {
            return Sameness::Different;
        }
        let shared = self.evidence & now.evidence;
        if shared & HAS_HANDLE != 0 && self.handle != now.handle {
            return Sameness::Different;
        }
        if shared & HAS_BIRTH != 0 && self.birth_ns != now.birth_ns {
            return Sameness::Different;
        }
        if shared == 0 {
            Sameness::CannotTell
        } else {
            Sameness::Same
        }
    }

    /// True when `compare` says [`Sameness::Same`].
    pub fn is_same_file(&self, now: &FileIdentity) -> bool {
        self.compare(now) == Sameness::Same
    }
}

/// Digest of the file handle of `path`, or `None` where the file system
/// cannot export one.
fn handle_digest(path: &Path) -> Option<u64> {
    const MAX_HANDLE_BYTES: usize = 128; // MAX_HANDLE_SZ of <linux/exportfs.h>
    #[repr(C)]
    struct Handle {
        handle_bytes: libc::c_uint,
        handle_type: libc::c_int,
        bytes: [u8; MAX_HANDLE_BYTES],
    }
    let name = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut handle = Handle {
        handle_bytes: MAX_HANDLE_BYTES as libc::c_uint,
        handle_type: 0,
        bytes: [0; MAX_HANDLE_BYTES],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `handle` starts with the two fields of `struct file_handle`
    // and has room for `handle_bytes` bytes after them, as the call
    // requires; `name` is NUL-terminated and outlives the call.
    let rc = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            name.as_ptr(),
            (&mut handle as *mut Handle).cast::<libc::file_handle>(),
            &mut mount_id,
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    let len = handle.handle_bytes as usize;
    if rc != 0 || len == 0 || len > MAX_HANDLE_BYTES {
        return None;
    }
    let mut digest = crate::dwr::fnv::Fnv64::default();
    digest.write(&handle.handle_type.to_be_bytes());
    digest.write(&handle.bytes[..len]);
    Some(digest.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("metadwr-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_file_is_itself_and_a_recreated_file_is_not() {
        let path = tmp("recreated");
        std::fs::write(&path, b"one").unwrap();
        let before = FileIdentity::of_path(&path).unwrap();
        assert_eq!(
            before.compare(&FileIdentity::of_path(&path).unwrap()),
            Sameness::Same
        );
        // Rewriting in place keeps the file.
        std::fs::write(&path, b"two").unwrap();
        assert!(before.is_same_file(&FileIdentity::of_path(&path).unwrap()));
        // Delete and create at once: ext4 usually reuses the inode number.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"three").unwrap();
        let after = FileIdentity::of_path(&path).unwrap();
        if after.ino == before.ino {
            assert_ne!(
                before.evidence & after.evidence,
                0,
                "this file system reuses inode numbers and gives no evidence to tell files apart"
            );
        }
        assert_eq!(before.compare(&after), Sameness::Different);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn without_shared_evidence_the_answer_is_cannot_tell() {
        let recorded = FileIdentity {
            dev: 1,
            ino: 2,
            ..FileIdentity::default()
        };
        let now = FileIdentity {
            evidence: HAS_BIRTH,
            birth_ns: 5,
            ..recorded
        };
        assert_eq!(recorded.compare(&now), Sameness::CannotTell);
        assert_eq!(now.compare(&now), Sameness::Same);
        let other_handle = FileIdentity {
            evidence: HAS_BIRTH | HAS_HANDLE,
            handle: 9,
            ..now
        };
        let same_birth_new_handle = FileIdentity {
            handle: 10,
            ..other_handle
        };
        assert_eq!(
            other_handle.compare(&same_birth_new_handle),
            Sameness::Different
        );
        // Evidence only one side has is not compared.
        assert_eq!(now.compare(&other_handle), Sameness::Same);
        assert_eq!(
            now.compare(&FileIdentity { ino: 3, ..now }),
            Sameness::Different
        );
    }
}
