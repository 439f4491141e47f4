//! The shim VFS: a thin layer over SQLite's `unix` VFS.
//!
//! In the style of SQLite's `ext/misc/cksumvfs.c`, every VFS and file method
//! is forwarded to `unix`. Only main database files are wrapped; journals,
//! WAL, temp files and the rest are opened by `unix` directly into the
//! memory SQLite hands us and never pass through this module again.
//!
//! A wrapped file is a [`ShimFile`]: the `sqlite3_file` header SQLite sees,
//! plus a pointer to an [`OpenDb`] that owns the real `unix` file (in its own
//! heap block) and the [`Monitor`] holding the protection logic. Keeping the
//! real file out of line keeps `ShimFile` smaller than a `unix` file, which
//! lets `adopt.rs` re-open an already open `unix` database through this VFS
//! in place.
//!
//! The `unsafe` code that calls SQLite lives under `ffi/`, and in the
//! salvage's output, which writes a new database through SQLite's API;
//! `dwr/identity.rs` and `sidecar.rs` make system calls. Every callback
//! catches panics: nothing unwinds into SQLite. A panic in the monitor's
//! code (a bug) retires that file's monitor, which may be half-updated:
//! protection of the file is off for the rest of the connection, with the
//! reason `PRAGMA meta_double_write` reports, the `-dwr` is not written
//! again, and the method completes as a plain forward to the real file
//! ([`OpenDb::watch`]).

use crate::dwr::file::{DwrFile, DwrOpener, OpenMode};
use crate::dwr::store::SyncPolicy;
use crate::protect::wal_locks::wal_index;
use crate::protect::{DbIo, LockLevel, Monitor, Rc, ShmLock};
use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int, c_void, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::ptr;
use std::sync::Arc;

/// Name under which the VFS is registered.
pub const VFS_NAME: &CStr = c"metadwr";

/// A private file-control opcode that asks a metadwr file to restore its
/// protected pages. Chosen far above SQLite's own opcodes; any other VFS
/// answers SQLITE_NOTFOUND, which is how `meta_recover()` tells that a
/// database is not opened through metadwr.
pub const FCNTL_RECOVER: c_int = 0x6d64_7772; // "mdwr"

/// The argument of [`FCNTL_RECOVER`].
pub struct RecoverRequest {
    pub outcome: Option<Result<String, String>>,
}

/// File control opcode of `meta_salvage()`: asks the metadwr file to
/// write a salvage of itself.
pub const FCNTL_SALVAGE: c_int = 0x6d64_7773; // "mdws"

/// The argument of [`FCNTL_SALVAGE`].
pub struct SalvageRequest {
    pub out: std::path::PathBuf,
    pub outcome: Option<Result<String, String>>,
}

/// The `sqlite3_file` of a wrapped main database.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    open: *mut OpenDb,
}

/// State owned by one wrapped file.
struct OpenDb {
    /// Storage for the real `unix` file, 8-byte aligned.
    real: Box<[u64]>,
    monitor: Monitor,
    /// Region 0 of the WAL index while it is mapped, else null.
    shm_region0: *const u8,
    /// What a fresh monitor needs, should a panic retire this one.
    path: PathBuf,
    readonly: bool,
    hook: PanicHook,
    /// Set when even retiring a monitor that panicked panicked: no monitor
    /// code runs for this file any more; the reason.
    broken: Option<String>,
}

impl OpenDb {
    fn real(&mut self) -> *mut ffi::sqlite3_file {
        self.real.as_mut_ptr().cast()
    }

    fn io(&mut self) -> RealIo {
        RealIo(self.real(), self.shm_region0)
    }

    /// Runs monitor code for file method `method`.
    ///
    /// The monitor is safe Rust, but a bug in it could panic half-way
    /// through an update and leave state that no longer describes the file
    /// (a write it never noted, a generation half accounted for); a copy
    /// written from such state need not match the file. So a panic here
    /// retires the monitor (see [`Self::turn_off`]) and returns the reason
    /// as `Err`; the method then goes on as a plain forward to the real
    /// file, so that the user's statement does not fail, the rule for every
    /// error on the `-dwr` path.
    fn watch<R>(
        &mut self,
        method: &'static str,
        f: impl FnOnce(&mut Monitor, &mut RealIo) -> R,
    ) -> Result<R, String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        let mut io = self.io();
        let monitor = &mut self.monitor;
        let outcome = catching(&mut self.hook, method, || f(monitor, &mut io));
        if let Err(why) = &outcome {
            self.turn_off(why);
        }
        outcome
    }

    /// Turns protection of this file off after a panic, for `why`.
    ///
    /// The monitor that panicked is not asked to do anything more: it is
    /// replaced by a fresh one that cannot open the `-dwr` at all (not even
    /// for `PRAGMA meta_double_write=enabled`; reopening the database
    /// protects it again), turned off with `why` as the reason `PRAGMA
    /// meta_double_write` reports. It takes over the lock level, which the
    /// VFS records outside any monitor code. Dropping the old monitor closes
    /// its `-dwr`, whose previous generation is complete whatever the
    /// panic interrupted (the store is double-buffered).
    fn turn_off(&mut self, why: &str) {
        let (path, readonly) = (&self.path, self.readonly);
        let monitor = &mut self.monitor;
        let replaced = catch_unwind(AssertUnwindSafe(|| {
            let fresh =
                retired_monitor(path, readonly, monitor.policy(), monitor.lock_level(), why);
            drop(std::mem::replace(monitor, fresh));
        }));
        if replaced.is_err() {
            log_warning(&format!(
                "metadwr: protection of {} turned off: {why}",
                self.path.display()
            ));
            self.broken = Some(why.to_owned());
        }
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "panic"
    }
}

/// Runs `f`, monitor code for file method `method`; a panic becomes the
/// reason to turn protection off, `internal error in <method>: <message>`.
/// The one place the test hook fires.
fn catching<R>(
    hook: &mut PanicHook,
    method: &'static str,
    f: impl FnOnce() -> R,
) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(|| {
        hook.fire(method);
        f()
    }))
    .map_err(|payload| format!("internal error in {method}: {}", panic_message(&*payload)))
}

/// A test build's way to make monitor code panic (cargo feature
/// `test-hooks`, never in a release of the extension): URI parameter
/// `metadwr_test_panic=<method>` (`xOpen`, `xRead`, `xWrite`, `xSync`,
/// `xLock`, `xUnlock`, `xFileControl`, `xShmLock`, ...) makes the monitor
/// code of that file method panic, the first time it runs on that file.
/// Without the feature this is an empty type and `fire` does nothing.
#[derive(Default)]
struct PanicHook {
    #[cfg(feature = "test-hooks")]
    method: Option<String>,
}

impl PanicHook {
    #[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
    fn from_uri(z_name: *const c_char) -> PanicHook {
        #[cfg(feature = "test-hooks")]
        {
            // SAFETY: as in `policy_for`: `z_name` is the name SQLite passed
            // to xOpen, with its URI parameters after it.
            let v = unsafe { ffi::sqlite3_uri_parameter(z_name, c"metadwr_test_panic".as_ptr()) };
            if v.is_null() {
                return PanicHook::default();
            }
            // SAFETY: a non-null answer is a NUL-terminated string.
            let method = unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned();
            PanicHook {
                method: Some(method),
            }
        }
        #[cfg(not(feature = "test-hooks"))]
        PanicHook::default()
    }

    #[inline(always)]
    #[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
    fn fire(&mut self, method: &str) {
        #[cfg(feature = "test-hooks")]
        if self.method.take_if(|m| m == method).is_some() {
            panic!("metadwr test hook: panic in {method}");
        }
    }
}

/// The opener of a monitor that replaced one that panicked: the `-dwr` is
/// not opened again on this connection.
struct NoDwr;

impl DwrOpener for NoDwr {
    fn open(&self, _: &std::path::Path, _: OpenMode) -> std::io::Result<Box<dyn DwrFile>> {
        Err(std::io::Error::other(
            "not opened again after an internal error on this connection; reopen the database",
        ))
    }
}

/// Calls on the real file for the monitor, and region 0 of its WAL index
/// while mapped.
struct RealIo(*mut ffi::sqlite3_file, *const u8);

macro_rules! real_call {
    ($file:expr, $method:ident $(, $arg:expr)*) => {{
        let f = $file;
        // SAFETY: `f` is an open file of the base VFS, owned by an OpenDb
        // or a VfsDwrFile and used by one thread at a time; its pMethods
        // table is valid until xClose, after which neither calls it. A
        // VfsDwrFile uses version 1 methods only, which every file has; an
        // OpenDb calls a method of version 2 or 3 only from the shim table
        // of the same version (`methods_for_version`, from the real file's
        // iVersion) or after checking iVersion (`checkpoint_lock`). The
        // other arguments are SQLite's, or buffers of the length given.
        unsafe {
            match (*(*f).pMethods).$method {
                Some(m) => m(f $(, $arg)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    }};
}

fn check(rc: c_int) -> Result<(), Rc> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(Rc(rc))
    }
}

impl DbIo for RealIo {
    fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Rc> {
        check(real_call!(
            self.0,
            xRead,
            buf.as_mut_ptr().cast(),
            buf.len() as c_int,
            offset as i64
        ))
    }

    fn write(&mut self, buf: &[u8], offset: u64) -> Result<(), Rc> {
        check(real_call!(
            self.0,
            xWrite,
            buf.as_ptr().cast(),
            buf.len() as c_int,
            offset as i64
        ))
    }

    fn size(&mut self) -> Result<u64, Rc> {
        let mut size: i64 = 0;
        check(real_call!(self.0, xFileSize, &mut size))?;
        Ok(size as u64)
    }

    fn sync(&mut self) -> Result<(), Rc> {
        check(real_call!(self.0, xSync, ffi::SQLITE_SYNC_FULL))
    }

    fn lock(&mut self, level: LockLevel) -> Result<(), Rc> {
        check(real_call!(self.0, xLock, level.raw()))
    }

    fn unlock(&mut self, level: LockLevel) -> Result<(), Rc> {
        check(real_call!(self.0, xUnlock, level.raw()))
    }

    fn checkpoint_lock(&mut self, take: bool) -> Result<(), Rc> {
        self.shm_lock(ShmLock::checkpoint(take))
    }

    fn wal_write_lock(&mut self, take: bool) -> Result<(), Rc> {
        self.shm_lock(ShmLock::write(take))
    }

    fn wal_index_u32(&mut self, at: usize) -> Option<u32> {
        wal_index_u32(self.1, at)
    }

    fn wal_index_headers(&mut self) -> Option<[u8; wal_index::HEADERS]> {
        wal_index_bytes(self.1, 0)
    }
}

impl RealIo {
    /// One shared-memory lock call on the real file, past the monitor.
    fn shm_lock(&mut self, lock: ShmLock) -> Result<(), Rc> {
        // SAFETY: as in real_call!; xShmLock exists only from version 2.
        let has_shm = unsafe { (*(*self.0).pMethods).iVersion >= 2 };
        if !has_shm {
            return Err(Rc::IOERR);
        }
        check(real_call!(
            self.0,
            xShmLock,
            lock.offset,
            lock.n,
            lock.flags()
        ))
    }
}

/// Opens `-dwr` files through the base VFS, so that whatever sits under
/// metadwr (a test VFS that injects faults, say) sees them too.
struct VfsOpener {
    base: *mut ffi::sqlite3_vfs,
}

// SAFETY: the only field points to a registered VFS object, which lives
// until the process exits and is never written after registration; SQLite
// requires a VFS's methods to be callable from any thread.
unsafe impl Send for VfsOpener {}
// SAFETY: as for Send: shared use only reads the VFS object and calls its
// thread-safe methods.
unsafe impl Sync for VfsOpener {}

/// Asks the file not to be opened through a symbolic link (SQLite 3.31+).
const SQLITE_OPEN_NOFOLLOW: c_int = 0x0100_0000;

fn vfs_error(what: &str, rc: c_int) -> std::io::Error {
    let kind = match rc & 0xff {
        ffi::SQLITE_FULL => std::io::ErrorKind::StorageFull,
        ffi::SQLITE_CANTOPEN => std::io::ErrorKind::NotFound,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, format!("{what} failed (SQLite error {rc})"))
}

impl DwrOpener for VfsOpener {
    fn open(&self, path: &std::path::Path, mode: OpenMode) -> std::io::Result<Box<dyn DwrFile>> {
        // A journal-type open: unix then creates the file with the
        // database's permissions and syncs the directory on first sync.
        let flags = ffi::SQLITE_OPEN_MAIN_JOURNAL
            | SQLITE_OPEN_NOFOLLOW
            | match mode {
                OpenMode::ReadOnly => ffi::SQLITE_OPEN_READONLY,
                OpenMode::ReadWrite => ffi::SQLITE_OPEN_READWRITE,
                OpenMode::Create => ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
            };
        // SQLITE_OPEN_NOFOLLOW makes unix open with O_NOFOLLOW (and it
        // always adds O_CLOEXEC); a directory, FIFO or device is refused
        // here, and again after the open in case one was put in place.
        if !crate::sidecar::check_kind(path)? && mode != OpenMode::Create {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        }
        let name = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
        // SAFETY: base is a live VFS (see VfsOpener); reading szOsFile.
        let words = (unsafe { (*self.base).szOsFile } as usize).div_ceil(8);
        let mut storage = vec![0u64; words.max(1)].into_boxed_slice();
        let file: *mut ffi::sqlite3_file = storage.as_mut_ptr().cast();
        let mut out = 0;
        // SAFETY: `storage` has szOsFile bytes, 8-byte aligned; `name`
        // outlives the open file (unix keeps the pointer), being moved into
        // the VfsDwrFile with it (moving a Box or a CString does not move
        // the heap block the file and the VFS point into).
        let rc =
            unsafe { (*self.base).xOpen.unwrap()(self.base, name.as_ptr(), file, flags, &mut out) };
        if rc != ffi::SQLITE_OK {
            // SAFETY: as in shim_open, a failed open may leave a closable file.
            unsafe {
                if !(*file).pMethods.is_null() {
                    (*(*file).pMethods).xClose.unwrap()(file);
                }
            }
            return Err(vfs_error("opening the -dwr", rc));
        }
        let identity = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() => Some((m.dev(), m.ino())),
            Ok(m) => {
                // SAFETY: the open succeeded, so pMethods is set and the
                // file is closed exactly once, here.
                unsafe { (*(*file).pMethods).xClose.unwrap()(file) };
                return Err(crate::sidecar::not_regular(path, m.file_type()));
            }
            Err(_) => None,
        };
        Ok(Box::new(VfsDwrFile {
            storage,
            _name: name,
            path: path.to_owned(),
            identity,
        }))
    }
}

/// A `-dwr` opened through the base VFS.
struct VfsDwrFile {
    storage: Box<[u64]>,
    /// The path as the VFS saw it; unix keeps a pointer to it.
    _name: CString,
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

// SAFETY: a base-VFS file has no tie to the thread that opened it; what it
// needs is one user at a time, and it has one: the Store that owns it is
// reached only through its monitor's `&mut` (SQLite serialises the calls on
// the database file the monitor belongs to), or lent whole to the helper
// thread of a sync while the monitor waits for it.
unsafe impl Send for VfsDwrFile {}

impl VfsDwrFile {
    fn file(&self) -> *mut ffi::sqlite3_file {
        self.storage.as_ptr() as *mut ffi::sqlite3_file
    }
}

impl DwrFile for VfsDwrFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let rc = real_call!(
            self.file(),
            xRead,
            buf.as_mut_ptr().cast(),
            buf.len() as c_int,
            off as i64
        );
        match rc {
            ffi::SQLITE_OK => Ok(buf.len()),
            // The VFS zero-filled the rest; how much was real is the size.
            ffi::SQLITE_IOERR_SHORT_READ => {
                Ok((self.len()?.saturating_sub(off)).min(buf.len() as u64) as usize)
            }
            _ => Err(vfs_error("reading the -dwr", rc)),
        }
    }

    fn write_all_at(&self, buf: &[u8], off: u64) -> std::io::Result<()> {
        let rc = real_call!(
            self.file(),
            xWrite,
            buf.as_ptr().cast(),
            buf.len() as c_int,
            off as i64
        );
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(vfs_error("writing the -dwr", rc))
        }
    }

    fn len(&self) -> std::io::Result<u64> {
        let mut size: i64 = 0;
        let rc = real_call!(self.file(), xFileSize, &mut size);
        if rc == ffi::SQLITE_OK {
            Ok(size as u64)
        } else {
            Err(vfs_error("sizing the -dwr", rc))
        }
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let rc = real_call!(self.file(), xTruncate, len as i64);
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(vfs_error("truncating the -dwr", rc))
        }
    }

    fn sync(&self) -> std::io::Result<()> {
        let rc = real_call!(self.file(), xSync, ffi::SQLITE_SYNC_NORMAL);
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(vfs_error("syncing the -dwr", rc))
        }
    }

    fn is_linked(&self) -> bool {
        let now = std::fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()))
            .ok();
        now.is_some() && now == self.identity
    }
}

impl Drop for VfsDwrFile {
    fn drop(&mut self) {
        let _ = real_call!(self.file(), xClose);
    }
}

/// Emits a warning through `sqlite3_log`.
pub fn log_warning(msg: &str) {
    if let Ok(c) = CString::new(msg.replace('\0', " ")) {
        // SAFETY: the API table was installed by the extension entry point
        // before any VFS exists; both strings are NUL-terminated.
        unsafe { ffi::sqlite3_log(ffi::SQLITE_WARNING, c"%s".as_ptr(), c.as_ptr()) };
    }
}

/// Runs `f`, turning a panic into `on_panic`: nothing unwinds into SQLite.
fn guarded<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// The body of file method `method` of a wrapped file, on its OpenDb.
/// Monitor code inside runs under [`OpenDb::watch`], which catches its own
/// panics; a panic that escapes `body` came from the glue around it: it
/// turns protection off all the same and becomes `on_panic`. Nothing unwinds
/// into SQLite.
#[inline(always)]
fn on_file<T>(
    db: &mut OpenDb,
    method: &'static str,
    on_panic: T,
    body: impl FnOnce(&mut OpenDb) -> T,
) -> T {
    match catch_unwind(AssertUnwindSafe(|| body(db))) {
        Ok(v) => v,
        Err(payload) => {
            db.turn_off(&format!(
                "internal error in {method}: {}",
                panic_message(&*payload)
            ));
            on_panic
        }
    }
}

/// The VFS this one wraps.
///
/// # Safety
/// `vfs` is the VFS object built by [`register`] (every VFS method receives
/// it).
pub(super) unsafe fn base_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `register` leaks the VFS object (it is never freed) and stores
    // the base VFS, itself registered for the life of the process, in its
    // pAppData, which nothing writes afterwards.
    unsafe { (*vfs).pAppData.cast() }
}

/// The OpenDb behind a wrapped file.
///
/// # Safety
/// `file` is a ShimFile opened by `shim_open` and not yet closed, which is
/// what SQLite passes to every file method but xOpen; and no other
/// reference to its OpenDb is in use. SQLite calls the methods of one file
/// from one thread at a time (under the connection's mutex, or by the
/// application's own serialisation in no-mutex mode), and the methods here
/// do not call each other through `file`.
unsafe fn open_db<'a>(file: *mut ffi::sqlite3_file) -> &'a mut OpenDb {
    // SAFETY: shim_open stored in `open` the OpenDb it leaked, which lives
    // until shim_close takes it back; exclusive per the caller.
    unsafe { &mut *(*(file as *mut ShimFile)).open }
}

/// Sync policy for a file: URI parameter `dwr_sync`, else the environment
/// variable `METADWR_SYNC`, else periodic.
///
/// # Safety
/// `z_name` is a main database name as SQLite passes it to xOpen.
unsafe fn policy_for(z_name: *const c_char) -> SyncPolicy {
    // SAFETY: z_name is the main database name SQLite passed to xOpen, which
    // carries its URI parameters after the path (caller).
    let uri = unsafe { ffi::sqlite3_uri_parameter(z_name, c"dwr_sync".as_ptr()) };
    if !uri.is_null() {
        // SAFETY: sqlite3_uri_parameter returns a NUL-terminated string.
        if let Some(p) = unsafe { CStr::from_ptr(uri) }
            .to_str()
            .ok()
            .and_then(SyncPolicy::parse)
        {
            return p;
        }
    }
    std::env::var("METADWR_SYNC")
        .ok()
        .and_then(|v| SyncPolicy::parse(&v))
        .unwrap_or(SyncPolicy::Periodic)
}

/// `METADWR_ENABLE=1` protects every main database opened through the VFS.
fn forced_by_environment() -> bool {
    matches!(
        std::env::var("METADWR_ENABLE").as_deref(),
        Ok("1") | Ok("true") | Ok("on")
    )
}

/// The monitor of a file whose monitor code panicked: one that never opens
/// the `-dwr`, off with `why` as its reason, at lock level `lock_level`.
fn retired_monitor(
    path: &std::path::Path,
    readonly: bool,
    policy: SyncPolicy,
    lock_level: LockLevel,
    why: &str,
) -> Monitor {
    let mut m = Monitor::new(
        path,
        readonly,
        policy,
        false,
        Arc::new(NoDwr),
        Box::new(|_: &str| {}),
    );
    m.set_logger(Box::new(log_warning));
    m.lock_taken(lock_level);
    m.fail(why);
    m
}

/// xOpen: a main database gets a ShimFile over a real file of the base VFS;
/// every other file is the base VFS's own, opened in place.
///
/// # Safety
/// SQLite's contract for xOpen: `vfs` is this VFS; `file` has this VFS's
/// szOsFile bytes, 8-byte aligned; `z_name` is null or a NUL-terminated name
/// (a main database's with its URI parameters after it) that outlives the
/// file; `out_flags` is null or writable.
unsafe extern "C" fn shim_open(
    vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guarded(ffi::SQLITE_CANTOPEN, || {
        // SAFETY: `vfs` is this VFS (caller).
        let base = unsafe { base_vfs(vfs) };
        // SAFETY: `base` is a registered VFS, never freed; every VFS has
        // xOpen.
        let base_open = unsafe { (*base).xOpen.unwrap() };
        if flags & ffi::SQLITE_OPEN_MAIN_DB == 0 || z_name.is_null() {
            // SAFETY: SQLite's arguments, passed on; `file` has at least
            // the base VFS's szOsFile bytes, since `register` made ours the
            // larger of the two.
            return unsafe { base_open(base, z_name, file, flags, out_flags) };
        }
        // SAFETY: as above, for reading szOsFile.
        let words = (unsafe { (*base).szOsFile } as usize).div_ceil(8);
        // SAFETY: z_name is a NUL-terminated path (caller).
        let path = PathBuf::from(OsStr::from_bytes(
            unsafe { CStr::from_ptr(z_name) }.to_bytes(),
        ));
        let mut local_out = 0;
        let out = if out_flags.is_null() {
            &mut local_out as *mut c_int
        } else {
            out_flags
        };
        let mut real = vec![0u64; words.max(1)].into_boxed_slice();
        let real_file: *mut ffi::sqlite3_file = real.as_mut_ptr().cast();
        // SAFETY: `real` has room for a base-VFS file, 8-byte aligned, and
        // lives in the OpenDb as long as the file; `z_name` outlives the
        // file (caller). SQLite's contract for xOpen is that on failure
        // pMethods is left NULL or set to a closable table.
        let rc = unsafe { base_open(base, z_name, real_file, flags, out) };
        let shim = file as *mut ShimFile;
        if rc != ffi::SQLITE_OK {
            // SAFETY: a failed open may still have set pMethods (unix does
            // not, but the VFS contract allows it); close it if so. `file`
            // has room for a ShimFile (register), and a null pMethods tells
            // SQLite not to close it.
            unsafe {
                if !(*real_file).pMethods.is_null() {
                    (*(*real_file).pMethods).xClose.unwrap()(real_file);
                }
                (*shim).base.pMethods = ptr::null();
            }
            return rc;
        }
        // SAFETY: *out was written by the successful xOpen.
        let readonly = unsafe { *out } & ffi::SQLITE_OPEN_READONLY != 0;
        // SAFETY: `z_name` is the main database name SQLite passed (caller).
        let (policy, mut hook) = unsafe { (policy_for(z_name), PanicHook::from_uri(z_name)) };
        let opener = Arc::new(VfsOpener { base });
        // Opening the -dwr is on the -dwr path too: a panic there must not
        // fail the open. The file then gets a monitor that is off, with the
        // reason, and never opens the -dwr.
        let monitor = catching(&mut hook, "xOpen", || {
            Monitor::new(
                &path,
                readonly,
                policy,
                forced_by_environment(),
                opener,
                Box::new(log_warning),
            )
        })
        .or_else(|why| {
            catch_unwind(AssertUnwindSafe(|| {
                retired_monitor(&path, readonly, policy, LockLevel::None, &why)
            }))
        });
        let Ok(monitor) = monitor else {
            // SAFETY: the open succeeded, so the real file has a method
            // table with xClose; it is closed exactly once, here, and the
            // shim left unopened as above.
            unsafe {
                (*(*real_file).pMethods).xClose.unwrap()(real_file);
                (*shim).base.pMethods = ptr::null();
            }
            return ffi::SQLITE_CANTOPEN;
        };
        let mut db = Box::new(OpenDb {
            real,
            monitor,
            shm_region0: ptr::null(),
            path,
            readonly,
            hook,
            broken: None,
        });
        // SAFETY: the real file is open, so its pMethods is valid.
        let version = unsafe { (*(*db.real()).pMethods).iVersion };
        // SAFETY: `file` has room for a ShimFile (szOsFile >= its size, see
        // `register`); the OpenDb is leaked into it until shim_close, and
        // the method table set last makes it an open file for SQLite.
        unsafe {
            (*shim).open = Box::into_raw(db);
            (*shim).base.pMethods = methods_for_version(version);
        }
        ffi::SQLITE_OK
    })
}

fn methods_for_version(version: c_int) -> *const ffi::sqlite3_io_methods {
    match version {
        ..=1 => &IO_METHODS_V1,
        2 => &IO_METHODS_V2,
        _ => &IO_METHODS_V3,
    }
}

// The file methods. Each is called by SQLite under its contract for that
// method: `file` is open (a ShimFile from shim_open, until xClose), used by
// one thread at a time, and the buffers and result slots are valid for the
// lengths given, for the duration of the call. Their `# Safety` sections
// say only what the method adds.

/// xClose: brings the copy up to date, closes the real file and frees the
/// OpenDb.
///
/// # Safety
/// No method of `file` is called afterwards.
unsafe extern "C" fn shim_close(file: *mut ffi::sqlite3_file) -> c_int {
    let shim = file as *mut ShimFile;
    // SAFETY: `file` is an open ShimFile, whose `open` shim_open leaked.
    // SQLite calls xClose once and nothing after it, so the OpenDb is taken
    // back here, and `open` cleared, so that nothing can reach it again.
    let mut db = unsafe { Box::from_raw(std::mem::replace(&mut (*shim).open, ptr::null_mut())) };
    on_file(&mut db, "xClose", ffi::SQLITE_IOERR_CLOSE, |db| {
        // A panic here turns protection off; the file is closed all the same.
        let _ = db.watch("xClose", |m, io| m.close(io));
        real_call!(db.real(), xClose)
    })
}

/// xRead.
///
/// # Safety
/// `buf` has `amt` writable bytes.
unsafe extern "C" fn shim_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    // The common case, a page no copy watches, is decided before the read
    // and ends in a tail call. Nothing here can panic, and watched_read is
    // `extern "C"` and catches its own panics, so the guard costs no
    // instructions.
    on_file(db, "xRead", ffi::SQLITE_IOERR_READ, |db| {
        if amt <= 0 || !db.monitor.read_is_watched(off as u64, amt as usize) {
            return real_call!(db.real(), xRead, buf, amt, off);
        }
        // SAFETY: SQLite's buffer, passed on unchanged.
        unsafe { watched_read(db, buf, amt, off) }
    })
}

/// A read the monitor wants to see: the change counter read that starts a
/// rollback-mode transaction, page 1, a page that may be protected, or a
/// read of any offset and length that covers one of them.
///
/// # Safety
/// `buf` has `amt` writable bytes.
#[inline(never)]
unsafe extern "C" fn watched_read(
    db: &mut OpenDb,
    buf: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    on_file(db, "xRead", ffi::SQLITE_IOERR_READ, |db| {
        let rc = real_call!(db.real(), xRead, buf, amt, off);
        let short = rc == ffi::SQLITE_IOERR_SHORT_READ;
        if rc == ffi::SQLITE_OK || short {
            // SAFETY: on success xRead filled all `amt` (> 0) bytes of
            // `buf`; on a short read it filled what the file holds and
            // zero-filled the rest (the VFS contract). SQLite, or whoever
            // calls xRead, owns `buf` for the duration of this call; no
            // other reference to it exists here.
            let data = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, amt as usize) };
            let watched = db.watch("xRead", |monitor, io| {
                if !short && Monitor::is_counter_read(off as u64, data.len()) {
                    if !monitor.note_counter_read(data) {
                        monitor.on_counter_mismatch(io, data);
                    }
                } else {
                    monitor.on_read(io, off as u64, data, short);
                }
            });
            if watched.is_err() {
                // The monitor may have left part of a healing in `buf`:
                // read again, so that SQLite gets the file's bytes, as
                // without metadwr.
                return real_call!(db.real(), xRead, buf, amt, off);
            }
        }
        // The result code is the base VFS's: a short read stays one, with
        // whatever bytes were healed before the zero fill.
        rc
    })
}

/// xWrite.
///
/// # Safety
/// `buf` has `amt` readable bytes.
unsafe extern "C" fn shim_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xWrite", ffi::SQLITE_IOERR_WRITE, |db| {
        let rc = real_call!(db.real(), xWrite, buf, amt, off);
        if rc == ffi::SQLITE_OK && amt > 0 {
            // SAFETY: SQLite passes `amt` readable bytes at `buf`, valid for
            // the duration of this call.
            let data = unsafe { std::slice::from_raw_parts(buf as *const u8, amt as usize) };
            let _ = db.watch("xWrite", |m, _| m.note_write(off as u64, data));
        }
        rc
    })
}

/// xTruncate.
///
/// # Safety
/// Nothing beyond SQLite's contract for file methods.
unsafe extern "C" fn shim_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xTruncate", ffi::SQLITE_IOERR_TRUNCATE, |db| {
        let rc = real_call!(db.real(), xTruncate, size);
        if rc == ffi::SQLITE_OK {
            let _ = db.watch("xTruncate", |m, _| m.note_truncate(size as u64));
        }
        rc
    })
}

/// xSync: the monitor runs the real sync itself, with what comes with it.
///
/// # Safety
/// Nothing beyond SQLite's contract for file methods.
unsafe extern "C" fn shim_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xSync", ffi::SQLITE_IOERR_FSYNC, |db| {
        let real = db.real();
        let mut synced = None;
        let watched = db.watch("xSync", |m, io| {
            let mut sync = || Rc(*synced.insert(real_call!(real, xSync, flags)));
            m.around_database_sync(io, &mut sync).0
        });
        // After a panic the real sync's own result stands, or, if the panic
        // came before it, the sync is done now.
        watched.unwrap_or_else(|_| synced.unwrap_or_else(|| real_call!(real, xSync, flags)))
    })
}

/// xFileSize.
///
/// # Safety
/// `size` is writable.
unsafe extern "C" fn shim_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xFileSize", ffi::SQLITE_IOERR_FSTAT, |db| {
        real_call!(db.real(), xFileSize, size)
    })
}

/// xLock.
///
/// # Safety
/// Nothing beyond SQLite's contract for file methods.
unsafe extern "C" fn shim_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xLock", ffi::SQLITE_IOERR_LOCK, |db| {
        let rc = real_call!(db.real(), xLock, level);
        if rc == ffi::SQLITE_OK {
            // Recorded outside `watch` (it cannot panic): a monitor that
            // replaces one that panicked takes the level over.
            if let Some(previous) =
                LockLevel::from_raw(level).and_then(|l| db.monitor.lock_taken(l))
            {
                exclusive_taken(db, previous);
            }
        }
        rc
    })
}

#[inline(never)]
fn exclusive_taken(db: &mut OpenDb, previous: LockLevel) {
    let _ = db.watch("xLock", |m, io| m.exclusive_taken(io, previous));
}

/// xUnlock.
///
/// # Safety
/// Nothing beyond SQLite's contract for file methods.
unsafe extern "C" fn shim_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xUnlock", ffi::SQLITE_IOERR_UNLOCK, |db| {
        let to = LockLevel::from_raw(level);
        if let Some(to) = to.filter(|&to| db.monitor.before_unlock(to)) {
            // The copy must be current before other writers can get in.
            unlocking(db, to);
        }
        let rc = real_call!(db.real(), xUnlock, level);
        if let Some(to) = to.filter(|_| rc == ffi::SQLITE_OK) {
            db.monitor.lock_released(to);
        }
        rc
    })
}

#[inline(never)]
fn unlocking(db: &mut OpenDb, to: LockLevel) {
    let _ = db.watch("xUnlock", |m, io| m.unlocking(io, to));
}

/// xCheckReservedLock.
///
/// # Safety
/// `out` is writable.
unsafe extern "C" fn shim_check_reserved_lock(
    file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(
        db,
        "xCheckReservedLock",
        ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
        |db| real_call!(db.real(), xCheckReservedLock, out),
    )
}

/// xFileControl: the metadwr pragmas, the requests of the SQL functions,
/// the commit boundary of COMMIT_PHASETWO, the VFS name; the rest goes to
/// the real file.
///
/// # Safety
/// `arg` is what `op` takes: a `char*[3]` for SQLITE_FCNTL_PRAGMA, a
/// `char**` for SQLITE_FCNTL_VFSNAME, a live RecoverRequest or
/// SalvageRequest for this crate's own opcodes (`functions.rs` sends them).
unsafe extern "C" fn shim_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xFileControl", ffi::SQLITE_ERROR, |db| match op {
        ffi::SQLITE_FCNTL_PRAGMA => {
            let args = arg as *mut *mut c_char;
            // SAFETY: for SQLITE_FCNTL_PRAGMA, arg is char*[3] (caller):
            // result slot, pragma name, and value (NULL for a query), the
            // strings NUL-terminated.
            let (name, value) = unsafe {
                let v = *args.add(2);
                (
                    CStr::from_ptr(*args.add(1)).to_string_lossy().into_owned(),
                    (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned()),
                )
            };
            let answer = db.watch("xFileControl", |m, io| {
                crate::protect::pragma::pragma(m, io, &name, value.as_deref())
            });
            let (rc, text) = match answer {
                Ok(None) => return real_call!(db.real(), xFileControl, op, arg),
                Ok(Some(Ok(answer))) => (ffi::SQLITE_OK, answer),
                Ok(Some(Err(message))) => (ffi::SQLITE_ERROR, message),
                // Not knowing whether the pragma was ours, the real file
                // gets it too: it ignores pragmas it does not know.
                Err(_) if !name.to_ascii_lowercase().starts_with("meta_") => {
                    return real_call!(db.real(), xFileControl, op, arg);
                }
                Err(why) => (ffi::SQLITE_ERROR, format!("{name}: {why}")),
            };
            // SAFETY: args[0] is SQLite's result slot (caller); it frees
            // the sqlite3_malloc'ed answer or error message.
            unsafe { *args = super::sqlite_string(&text) };
            rc
        }
        FCNTL_RECOVER => {
            // SAFETY: only `functions::meta_recover` sends this opcode, with
            // a pointer to a live RecoverRequest (caller).
            let req = unsafe { &mut *(arg as *mut RecoverRequest) };
            req.outcome = Some(
                db.watch("xFileControl", |m, io| m.recover(io))
                    .unwrap_or_else(Err),
            );
            ffi::SQLITE_OK
        }
        FCNTL_SALVAGE => {
            // SAFETY: only `functions::meta_salvage` sends this opcode, with
            // a pointer to a live SalvageRequest (caller).
            let req = unsafe { &mut *(arg as *mut SalvageRequest) };
            req.outcome = Some(
                db.watch("xFileControl", |m, io| m.salvage(io, &req.out))
                    .unwrap_or_else(Err),
            );
            ffi::SQLITE_OK
        }
        ffi::SQLITE_FCNTL_COMMIT_PHASETWO => {
            // Sent after every commit, before the unlock. With
            // locking_mode=EXCLUSIVE and synchronous=OFF it is the only
            // commit boundary there is.
            let _ = db.watch("xFileControl", |m, io| m.commit_phase_two(io));
            real_call!(db.real(), xFileControl, op, arg)
        }
        ffi::SQLITE_FCNTL_VFSNAME => {
            let rc = real_call!(db.real(), xFileControl, op, arg);
            if rc == ffi::SQLITE_OK {
                // SAFETY: for VFSNAME, arg is a char** (caller) that the VFS
                // filled with a string from sqlite3_malloc, or left NULL;
                // it is replaced by another such string, the old one freed.
                unsafe {
                    let slot = arg as *mut *mut c_char;
                    let inner = if (*slot).is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(*slot).to_string_lossy().into_owned()
                    };
                    ffi::sqlite3_free((*slot).cast());
                    *slot = super::sqlite_string(&format!("metadwr/{inner}"));
                }
            }
            rc
        }
        _ => real_call!(db.real(), xFileControl, op, arg),
    })
}

/// xSectorSize.
///
/// # Safety
/// Nothing beyond SQLite's contract for file methods.
unsafe extern "C" fn shim_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xSectorSize", 4096, |db| {
        real_call!(db.real(), xSectorSize)
    })
}

/// xDeviceCharacteristics.
///
/// # Safety
/// Nothing beyond SQLite's contract for file methods.
unsafe extern "C" fn shim_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xDeviceCharacteristics", 0, |db| {
        real_call!(db.real(), xDeviceCharacteristics)
    })
}

/// xShmMap (tables of version 2 and up, installed only over a real file
/// that has it).
///
/// # Safety
/// `out` is writable.
unsafe extern "C" fn shim_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xShmMap", ffi::SQLITE_IOERR_SHMMAP, |db| {
        let rc = real_call!(db.real(), xShmMap, region, size, extend, out);
        if rc == ffi::SQLITE_OK {
            let _ = db.watch("xShmMap", |m, _| m.set_shm_mapped(true));
            if region == 0 {
                // SAFETY: on success xShmMap stored a pointer (possibly null)
                // in the caller's `out`; it stays mapped until xShmUnmap.
                db.shm_region0 = unsafe { *out } as *const u8;
            }
        }
        rc
    })
}

/// Bytes `at..at + N` of region 0 of the WAL index, or `None` when no
/// mapping is known.
fn wal_index_bytes<const N: usize>(region0: *const u8, at: usize) -> Option<[u8; N]> {
    if region0.is_null() || at + N > wal_index::HEADERS + 4 {
        return None;
    }
    let mut out = [0u8; N];
    for (j, byte) in out.iter_mut().enumerate() {
        // SAFETY: region 0 stays mapped (at least 32 KiB, the WAL-index page
        // size, and every caller reads below wal_index::HEADERS + 4) until
        // xShmUnmap, which clears the pointer. Other processes may write it,
        // hence volatile byte reads; the callers hold the lock under which
        // the field they read is stable (the WAL write lock for the header,
        // the checkpoint lock for nBackfill), or read a value whose
        // staleness errs on the safe side.
        *byte = unsafe { ptr::read_volatile(region0.add(at + j)) };
    }
    Some(out)
}

/// The native-order 32-bit field at `at` (a multiple of 4) of region 0 of
/// the WAL index, or `None` when no mapping is known (or `at` is not a
/// field [`wal_index`] names).
fn wal_index_u32(region0: *const u8, at: usize) -> Option<u32> {
    if region0.is_null() || !at.is_multiple_of(4) || at + 4 > wal_index::HEADERS + 4 {
        return None;
    }
    // SAFETY: as in wal_index_bytes; region 0 is the start of a mapping or
    // of a heap block (heap-memory WAL), so `region0 + at` is 4-byte
    // aligned, and one aligned load cannot tear.
    Some(unsafe { ptr::read_volatile(region0.add(at).cast::<u32>()) })
}

/// xShmLock: the WAL's write, checkpoint and read locks are events for the
/// monitor.
///
/// # Safety
/// Nothing beyond SQLite's contract for file methods.
unsafe extern "C" fn shim_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    let lock = ShmLock::decode(offset, n, flags);
    if !lock.is_some_and(|l| l.matters_before() || l.matters_after()) {
        // Most of a WAL transaction's lock calls: a plain forward, with
        // nothing that could panic.
        return real_call!(db.real(), xShmLock, offset, n, flags);
    }
    on_file(db, "xShmLock", ffi::SQLITE_IOERR_SHMLOCK, |db| {
        if let Some(lock) = lock.filter(|l| l.matters_before()) {
            let _ = db.watch("xShmLock", |m, io| m.before_shm_lock(io, lock));
        }
        let rc = real_call!(db.real(), xShmLock, offset, n, flags);
        if let Some(lock) = lock.filter(|l| rc == ffi::SQLITE_OK && l.matters_after()) {
            let _ = db.watch("xShmLock", |m, io| m.shm_locked(io, lock));
        }
        rc
    })
}

/// xShmBarrier.
///
/// # Safety
/// Nothing beyond SQLite's contract for file methods.
unsafe extern "C" fn shim_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xShmBarrier", (), |db| {
        let f = db.real();
        // SAFETY: as in real_call!, for a method returning nothing; this
        // table (version >= 2) is installed only over a real file that has
        // it.
        unsafe {
            if let Some(m) = (*(*f).pMethods).xShmBarrier {
                m(f)
            }
        }
    })
}

/// xShmUnmap.
///
/// # Safety
/// Nothing beyond SQLite's contract for file methods.
unsafe extern "C" fn shim_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xShmUnmap", ffi::SQLITE_IOERR_SHMMAP, |db| {
        let _ = db.watch("xShmUnmap", |m, io| {
            m.before_shm_unmap(io, delete != 0);
            m.set_shm_mapped(false)
        });
        db.shm_region0 = ptr::null();
        real_call!(db.real(), xShmUnmap, delete)
    })
}

/// xFetch (tables of version 3).
///
/// # Safety
/// `out` is writable.
unsafe extern "C" fn shim_fetch(
    file: *mut ffi::sqlite3_file,
    off: i64,
    amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    // As in shim_read: decided before the fetch, a tail call, a free guard.
    on_file(db, "xFetch", ffi::SQLITE_IOERR_MMAP, |db| {
        if amt <= 0 || !db.monitor.read_is_watched(off as u64, amt as usize) {
            return real_call!(db.real(), xFetch, off, amt, out);
        }
        // SAFETY: SQLite's result slot, passed on unchanged.
        unsafe { watched_fetch(db, off, amt, out) }
    })
}

/// A fetch of page 1 or of a page that may be protected.
///
/// # Safety
/// `out` is writable.
#[inline(never)]
unsafe extern "C" fn watched_fetch(
    db: &mut OpenDb,
    off: i64,
    amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    on_file(db, "xFetch", ffi::SQLITE_IOERR_MMAP, |db| {
        let rc = real_call!(db.real(), xFetch, off, amt, out);
        // SAFETY: `out` is SQLite's result slot (caller); on success xFetch
        // stored NULL or a pointer to `amt` (> 0) mapped bytes of the file.
        let page = unsafe { *out };
        if rc == ffi::SQLITE_OK && !page.is_null() {
            // SAFETY: as above; the mapping stays valid until xUnfetch and
            // is only read here.
            let data = unsafe { std::slice::from_raw_parts(page as *const u8, amt as usize) };
            // After a panic in the monitor the mapping is kept: the file's
            // bytes, as without metadwr.
            let suspicious = db.watch("xFetch", |m, _| m.fetch_is_suspicious(off as u64, data));
            if suspicious == Ok(true) {
                // Decline the mapping: SQLite falls back to xRead, which
                // can hand it the copy's image instead.
                real_call!(db.real(), xUnfetch, off, page);
                // SAFETY: `out` is SQLite's result slot (caller).
                unsafe { *out = ptr::null_mut() };
            }
        }
        rc
    })
}

/// xUnfetch.
///
/// # Safety
/// `p` is null or a pointer xFetch returned for `off`.
unsafe extern "C" fn shim_unfetch(file: *mut ffi::sqlite3_file, off: i64, p: *mut c_void) -> c_int {
    // SAFETY: `file` is an open ShimFile (SQLite's contract).
    let db = unsafe { open_db(file) };
    on_file(db, "xUnfetch", ffi::SQLITE_IOERR_MMAP, |db| {
        real_call!(db.real(), xUnfetch, off, p)
    })
}

const fn io_methods(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(shim_close),
        xRead: Some(shim_read),
        xWrite: Some(shim_write),
        xTruncate: Some(shim_truncate),
        xSync: Some(shim_sync),
        xFileSize: Some(shim_file_size),
        xLock: Some(shim_lock),
        xUnlock: Some(shim_unlock),
        xCheckReservedLock: Some(shim_check_reserved_lock),
        xFileControl: Some(shim_file_control),
        xSectorSize: Some(shim_sector_size),
        xDeviceCharacteristics: Some(shim_device_characteristics),
        xShmMap: if version >= 2 {
            Some(shim_shm_map)
        } else {
            None
        },
        xShmLock: if version >= 2 {
            Some(shim_shm_lock)
        } else {
            None
        },
        xShmBarrier: if version >= 2 {
            Some(shim_shm_barrier)
        } else {
            None
        },
        xShmUnmap: if version >= 2 {
            Some(shim_shm_unmap)
        } else {
            None
        },
        xFetch: if version >= 3 { Some(shim_fetch) } else { None },
        xUnfetch: if version >= 3 {
            Some(shim_unfetch)
        } else {
            None
        },
    }
}

// The method table matches the real file's version, so SQLite never calls a
// method the real file lacks (unix's dot-file locking is version 1).
static IO_METHODS_V1: ffi::sqlite3_io_methods = io_methods(1);
static IO_METHODS_V2: ffi::sqlite3_io_methods = io_methods(2);
static IO_METHODS_V3: ffi::sqlite3_io_methods = io_methods(3);

/// True when `file` was opened by this VFS.
///
/// # Safety
/// `file` must point to a live `sqlite3_file`.
pub unsafe fn is_shim_file(file: *const ffi::sqlite3_file) -> bool {
    // SAFETY: the caller guarantees `file` is a live sqlite3_file.
    let m = unsafe { (*file).pMethods };
    ptr::eq(m, &IO_METHODS_V1) || ptr::eq(m, &IO_METHODS_V2) || ptr::eq(m, &IO_METHODS_V3)
}

// --- VFS methods other than xOpen: straight forwarding to the base VFS. ---

macro_rules! forward_vfs {
    ($name:ident, $method:ident, $default:expr, ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        /// Forwards to the base VFS's method.
        ///
        /// # Safety
        /// SQLite's contract for the method: `vfs` is this VFS, the other
        /// arguments are valid for the method.
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            guarded($default, || {
                // SAFETY: `vfs` is this VFS (caller).
                let base = unsafe { base_vfs(vfs) };
                // SAFETY: `base` is a registered VFS, never freed; the method
                // is present because `register` only installs forwarders
                // for methods the base VFS has (no unwrap: a forwarder that
                // cannot panic compiles to a tail call).
                match unsafe { (*base).$method } {
                    // SAFETY: SQLite's arguments, passed on unchanged.
                    Some(m) => unsafe { m(base $(, $arg)*) },
                    None => $default,
                }
            })
        }
    };
}

forward_vfs!(vfs_delete, xDelete, ffi::SQLITE_IOERR_DELETE, (name: *const c_char, sync_dir: c_int) -> c_int);
forward_vfs!(vfs_access, xAccess, ffi::SQLITE_IOERR_ACCESS, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int);
forward_vfs!(vfs_full_pathname, xFullPathname, ffi::SQLITE_CANTOPEN, (name: *const c_char, n: c_int, out: *mut c_char) -> c_int);
forward_vfs!(vfs_dlopen, xDlOpen, ptr::null_mut(), (name: *const c_char) -> *mut c_void);
forward_vfs!(vfs_dlerror, xDlError, (), (n: c_int, out: *mut c_char) -> ());
forward_vfs!(vfs_dlclose, xDlClose, (), (handle: *mut c_void) -> ());
forward_vfs!(vfs_randomness, xRandomness, 0, (n: c_int, out: *mut c_char) -> c_int);
forward_vfs!(vfs_sleep, xSleep, 0, (micros: c_int) -> c_int);
forward_vfs!(vfs_current_time, xCurrentTime, ffi::SQLITE_ERROR, (out: *mut f64) -> c_int);
forward_vfs!(vfs_get_last_error, xGetLastError, 0, (n: c_int, out: *mut c_char) -> c_int);
forward_vfs!(vfs_current_time_int64, xCurrentTimeInt64, ffi::SQLITE_ERROR, (out: *mut i64) -> c_int);
forward_vfs!(vfs_set_system_call, xSetSystemCall, ffi::SQLITE_ERROR, (name: *const c_char, f: ffi::sqlite3_syscall_ptr) -> c_int);
forward_vfs!(vfs_get_system_call, xGetSystemCall, None, (name: *const c_char) -> ffi::sqlite3_syscall_ptr);
forward_vfs!(vfs_next_system_call, xNextSystemCall, ptr::null(), (name: *const c_char) -> *const c_char);

/// xDlSym, forwarded (its return type does not fit `forward_vfs!`).
///
/// # Safety
/// SQLite's contract for xDlSym: `vfs` is this VFS, `handle` from xDlOpen,
/// `symbol` NUL-terminated.
unsafe extern "C" fn vfs_dlsym(
    vfs: *mut ffi::sqlite3_vfs,
    handle: *mut c_void,
    symbol: *const c_char,
) -> Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)> {
    guarded(None, || {
        // SAFETY: `vfs` is this VFS (caller).
        let base = unsafe { base_vfs(vfs) };
        // SAFETY: `base` is a registered VFS, never freed, with xDlSym:
        // `register` installs this forwarder only then. SQLite's arguments,
        // passed on unchanged.
        unsafe { (*base).xDlSym.unwrap()(base, handle, symbol) }
    })
}

/// Registers the metadwr VFS over `unix` as the default VFS, once per SQLite
/// library. Returns the VFS and whether this call registered it.
pub fn register() -> Result<(*mut ffi::sqlite3_vfs, bool), String> {
    // SAFETY: the API table is installed (the entry point's first step;
    // libsqlite3-sys checks it). vfs_find takes a NUL-terminated name and
    // returns NULL or a VFS that stays registered, and so alive, for the
    // life of the process (nothing here unregisters one). The new VFS
    // object is leaked, as SQLite keeps the pointer while it is registered,
    // which is for ever; its name is static. It is freed only when the
    // registration fails, before SQLite kept it.
    unsafe {
        let existing = ffi::sqlite3_vfs_find(VFS_NAME.as_ptr());
        if !existing.is_null() {
            return Ok((existing, false));
        }
        // METADWR_BASE_VFS names another VFS to wrap (tests put a
        // fault-injecting VFS there); it must be registered first.
        let base_name = std::env::var("METADWR_BASE_VFS").unwrap_or_else(|_| "unix".to_string());
        let c_base =
            CString::new(base_name.clone()).map_err(|_| "metadwr: bad METADWR_BASE_VFS")?;
        let base = ffi::sqlite3_vfs_find(c_base.as_ptr());
        if base.is_null() {
            return Err(format!(
                "metadwr: the VFS '{base_name}' to wrap is not registered"
            ));
        }
        let b = &*base;
        let vfs = Box::new(ffi::sqlite3_vfs {
            iVersion: b.iVersion,
            szOsFile: b.szOsFile.max(std::mem::size_of::<ShimFile>() as c_int),
            mxPathname: b.mxPathname,
            pNext: ptr::null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: base.cast(),
            xOpen: Some(shim_open),
            xDelete: b.xDelete.and(Some(vfs_delete)),
            xAccess: b.xAccess.and(Some(vfs_access)),
            xFullPathname: b.xFullPathname.and(Some(vfs_full_pathname)),
            xDlOpen: b.xDlOpen.and(Some(vfs_dlopen)),
            xDlError: b.xDlError.and(Some(vfs_dlerror)),
            xDlSym: b.xDlSym.and(Some(vfs_dlsym)),
            xDlClose: b.xDlClose.and(Some(vfs_dlclose)),
            xRandomness: b.xRandomness.and(Some(vfs_randomness)),
            xSleep: b.xSleep.and(Some(vfs_sleep)),
            xCurrentTime: b.xCurrentTime.and(Some(vfs_current_time)),
            xGetLastError: b.xGetLastError.and(Some(vfs_get_last_error)),
            xCurrentTimeInt64: b.xCurrentTimeInt64.and(Some(vfs_current_time_int64)),
            xSetSystemCall: b.xSetSystemCall.and(Some(vfs_set_system_call)),
            xGetSystemCall: b.xGetSystemCall.and(Some(vfs_get_system_call)),
            xNextSystemCall: b.xNextSystemCall.and(Some(vfs_next_system_call)),
        });
        let vfs = Box::into_raw(vfs);
        let rc = ffi::sqlite3_vfs_register(vfs, 1);
        if rc != ffi::SQLITE_OK {
            drop(Box::from_raw(vfs));
            return Err(format!("metadwr: cannot register the VFS (error {rc})"));
        }
        Ok((vfs, true))
    }
}

/// Re-opens the already open `unix` main database `file` through metadwr,
/// in place. Used by the entry point for connections opened before the
/// extension was loaded. On failure `file` is open through the base VFS
/// again, as before, unless that open fails too.
///
/// # Safety
/// `file` must be the pager's open main-database file of a connection that
/// holds no lock, has no page of it mapped and no WAL open (checked by the
/// caller), opened by the base VFS of `vfs`, the metadwr VFS; no other
/// thread may use the connection meanwhile; `z_name` is its filename as
/// the pager passed it to xOpen (with the URI parameters after it), alive
/// as long as the pager.
pub unsafe fn reopen_in_place(
    vfs: *mut ffi::sqlite3_vfs,
    file: *mut ffi::sqlite3_file,
    z_name: *const c_char,
    flags: c_int,
) -> c_int {
    // SAFETY: `vfs` is the metadwr VFS (caller).
    let base = unsafe { base_vfs(vfs) };
    // The pager allocated `file` with the base VFS's szOsFile bytes, and a
    // ShimFile must fit in them (it does in unix's, by far).
    // SAFETY: `base` is a registered VFS, never freed.
    if (unsafe { (*base).szOsFile } as usize) < std::mem::size_of::<ShimFile>() {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: `file` is open (caller), so its method table is valid and has
    // xClose; the pager holds no lock, mapping or WAL on it and cannot run
    // meanwhile (caller), so closing it under the pager is invisible to it.
    // After xClose the memory is the pager's again, szOsFile bytes of it.
    let rc = unsafe { (*(*file).pMethods).xClose.unwrap()(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let mut out = 0;
    // SAFETY: `file` has room for a ShimFile (checked above), which is all
    // shim_open writes there; `z_name` outlives the file (caller).
    let rc = unsafe { shim_open(vfs, z_name, file, flags, &mut out) };
    if rc != ffi::SQLITE_OK {
        // Put the plain file back so the connection keeps working.
        // SAFETY: the memory holds szOsFile bytes of the base VFS, which
        // opened a file there before; shim_open left pMethods null.
        return unsafe { (*base).xOpen.unwrap()(base, z_name, file, flags, &mut out) };
    }
    rc
}
