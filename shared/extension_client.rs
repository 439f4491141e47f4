//! What a rusqlite program needs to drive the extension, shared by the
//! integration tests (`itest/`) and the benchmark (`bench/`): loading it,
//! which VFS a connection goes through, and the counters of `PRAGMA
//! meta_double_write_stats`.
//!
//! Both crates include this file with `#[path]` rather than depend on a
//! crate: each links its own SQLite (the tests rusqlite's bundled one, the
//! bench the system's), which one dependency graph would unify, and neither
//! should depend on the other. It needs nothing but `rusqlite` and `std`.

use rusqlite::Connection;
use std::path::Path;

/// Loads the extension at `so` into this process. Afterwards `metadwr` is
/// the default VFS (checked), so every connection opened without `vfs=`
/// goes through it.
pub fn load_extension(so: &Path) -> Result<(), String> {
    let boot = Connection::open_in_memory().map_err(|e| format!("in-memory connection: {e}"))?;
    // SAFETY: loading the extension under test is the point of the
    // caller; it registers a VFS and SQL functions and nothing else.
    unsafe {
        boot.load_extension_enable()
            .map_err(|e| format!("enable extension loading: {e}"))?;
        boot.load_extension(so, None::<&str>)
            .map_err(|e| format!("cannot load {}: {e}", so.display()))?;
    }
    match default_vfs_name() {
        Some(name) if name == "metadwr" => Ok(()),
        other => Err(format!("the default VFS is {other:?}, not metadwr")),
    }
}

/// Name of the default VFS, read through the C API.
pub fn default_vfs_name() -> Option<String> {
    // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS or NULL; a VFS
    // stays registered, and alive, as long as the library, and its zName
    // is a NUL-terminated string.
    unsafe {
        let vfs = rusqlite::ffi::sqlite3_vfs_find(std::ptr::null());
        (!vfs.is_null()).then(|| {
            std::ffi::CStr::from_ptr((*vfs).zName)
                .to_string_lossy()
                .into_owned()
        })
    }
}

/// The VFS stack of `conn`'s main database, from `SQLITE_FCNTL_VFSNAME`:
/// `metadwr/unix` through metadwr, `unix` without; `None` when no VFS
/// answers.
pub fn vfs_name(conn: &Connection) -> Option<String> {
    use rusqlite::ffi;
    let mut name: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: the handle is live for the borrow of `conn`; VFSNAME stores a
    // string from sqlite3_malloc (or nothing) in `name`, freed here.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_VFSNAME,
            (&mut name as *mut *mut std::ffi::c_char).cast(),
        );
        if rc != ffi::SQLITE_OK || name.is_null() {
            return None;
        }
        let s = std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned();
        ffi::sqlite3_free(name.cast());
        Some(s)
    }
}

/// The counters of `PRAGMA meta_double_write_stats`, cumulative per file
/// and connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub generations: u64,
    pub pages: u64,
    pub bytes: u64,
    pub fsyncs: u64,
    /// Header-only updates (confirmations of PENDING generations, WAL_AHEAD).
    pub flag_updates: u64,
}

impl Stats {
    /// Parses the pragma's answer: `generations=… pages=… bytes=… fsyncs=…
    /// flag_updates=…`, each counter once and nothing else.
    pub fn parse(s: &str) -> Result<Stats, String> {
        let mut out = Stats::default();
        let mut seen = 0;
        for part in s.split(' ') {
            let bad = || format!("unexpected meta_double_write_stats answer {s:?}");
            let (k, v) = part.split_once('=').ok_or_else(bad)?;
            let v: u64 = v.parse().map_err(|_| bad())?;
            let field = match k {
                "generations" => &mut out.generations,
                "pages" => &mut out.pages,
                "bytes" => &mut out.bytes,
                "fsyncs" => &mut out.fsyncs,
                "flag_updates" => &mut out.flag_updates,
                _ => return Err(bad()),
            };
            *field = v;
            seen += 1;
        }
        if seen != 5 {
            return Err(format!("unexpected meta_double_write_stats answer {s:?}"));
        }
        Ok(out)
    }

    /// `PRAGMA meta_double_write_stats` on `conn`.
    pub fn read(conn: &Connection) -> Result<Stats, String> {
        let s: String = conn
            .query_row("PRAGMA meta_double_write_stats", [], |r| r.get(0))
            .map_err(|e| format!("meta_double_write_stats: {e}"))?;
        Stats::parse(&s)
    }

    /// What was counted since `earlier`.
    pub fn since(self, earlier: Stats) -> Stats {
        Stats {
            generations: self.generations - earlier.generations,
            pages: self.pages - earlier.pages,
            bytes: self.bytes - earlier.bytes,
            fsyncs: self.fsyncs - earlier.fsyncs,
            flag_updates: self.flag_updates - earlier.flag_updates,
        }
    }
}
