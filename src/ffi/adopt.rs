//! Bringing a database that was opened *before* the extension loaded under
//! metadwr.
//!
//! `.load ./libmetadwr` in the shell, `sqlite3_auto_extension` in a C
//! program, and `load_extension()` in Python all run the entry point on a
//! connection whose main database is already open through `unix`. Without
//! help, `PRAGMA meta_double_write` on it would silently do nothing. When the
//! connection is idle (no transaction, no running statement, rollback
//! journal, normal locking), no lock is held and no WAL shared memory is
//! mapped, so the file can be closed and re-opened through metadwr in place;
//! the pager revalidates its cache from the change counter as after any
//! unlock. Otherwise the file keeps its `unix` methods behind a *shadow*
//! method table that forwards every call unchanged and answers the metadwr
//! pragmas with an error that says how to reopen the database.
//!
//! # What the `unsafe` here relies on
//!
//! Everything runs inside the entry point, on the connection SQLite handed
//! it, and nowhere else:
//!
//! * **Exclusive use of the connection.** SQLite runs an extension's entry
//!   point with the connection's mutex held (`sqlite3_load_extension` and
//!   the automatic extensions run from `sqlite3_open*` both enter
//!   `db->mutex`; in no-mutex mode the application must not use a
//!   connection from two threads at once). The mutex is recursive, so the
//!   `sqlite3_*` calls made here enter it again; no other thread can use the
//!   connection, its pagers or their files meanwhile.
//! * **The pager owns the file.** `SQLITE_FCNTL_FILE_POINTER` gives the
//!   pager's own `sqlite3_file`, which lives in the pager's allocation (of
//!   the opening VFS's `szOsFile` bytes) until the database is detached or
//!   the connection closed, neither of which can happen while we hold the
//!   connection.
//! * **An idle pager does not touch its file.** With no transaction, no busy
//!   statement, no open journal or WAL and normal locking, the pager holds
//!   no lock, no page reference (so no memory-mapped page is out) and no
//!   WAL-index mapping; it only reaches the file again through its methods
//!   at the next statement. Closing the file and opening it again in the
//!   same memory is then invisible to it, but for the cache revalidation it
//!   does after any unlock anyway. One case this cannot see: a deprecated
//!   shared-cache connection that shares this pager and is inside a
//!   transaction of its own.
//! * **Method tables are static.** A VFS's `sqlite3_io_methods` tables live
//!   as long as the VFS (`unix`'s are static data of the SQLite library);
//!   the shadow tables made here are leaked, so they live as long as this
//!   library, which `entry::pin_library` keeps loaded.

use super::vfs;
use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::OnceLock;

/// Brings every database of `db` that was opened through plain `unix`
/// under metadwr (or behind the shadow table). Returns at once for a
/// connection opened through metadwr, which is every connection after the
/// first load.
///
/// # Safety
/// `db` is a live connection that this thread has exclusive use of (the
/// entry point, run by SQLite with the connection's mutex held); `vfs` is
/// the registered metadwr VFS.
pub unsafe fn adopt_connection(db: *mut ffi::sqlite3, vfs: *mut ffi::sqlite3_vfs) {
    // SAFETY: passed on from the caller's guarantees.
    if !unsafe { adopt_schema(db, vfs, c"main") } {
        return;
    }
    // The connection predates the extension: it may have attached databases.
    // SAFETY: as above.
    for name in unsafe { attached_schemas(db) } {
        // SAFETY: as above.
        unsafe { adopt_schema(db, vfs, &name) };
    }
}

/// One of the pointers `sqlite3_file_control` answers from the pager itself,
/// never asking the VFS, with the type it stores: the opcode and the type
/// of the result cannot be mismatched.
struct PagerPointer<T> {
    op: c_int,
    kind: PhantomData<*mut T>,
}

/// The VFS the pager opened its files with.
const VFS_POINTER: PagerPointer<ffi::sqlite3_vfs> = PagerPointer {
    op: ffi::SQLITE_FCNTL_VFS_POINTER,
    kind: PhantomData,
};
/// The pager's database file (`pMethods` null while not open).
const FILE_POINTER: PagerPointer<ffi::sqlite3_file> = PagerPointer {
    op: ffi::SQLITE_FCNTL_FILE_POINTER,
    kind: PhantomData,
};
/// The pager's rollback journal, or its WAL file while the WAL is open.
const JOURNAL_POINTER: PagerPointer<ffi::sqlite3_file> = PagerPointer {
    op: ffi::SQLITE_FCNTL_JOURNAL_POINTER,
    kind: PhantomData,
};

/// Asks the pager of database `schema` of `db` for `which`; `None` when
/// there is no such database.
///
/// # Safety
/// `db` is a live connection this thread has exclusive use of.
unsafe fn pager_pointer<T>(
    db: *mut ffi::sqlite3,
    schema: &CStr,
    which: PagerPointer<T>,
) -> Option<*mut T> {
    let mut out: *mut T = ptr::null_mut();
    // SAFETY: `db` is live (caller); `schema` is NUL-terminated. For these
    // three opcodes sqlite3_file_control writes exactly one `T*` through
    // the argument (PagerPointer ties the opcode to T), here into `out`,
    // and nothing when the schema is unknown.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            db,
            schema.as_ptr(),
            which.op,
            (&mut out as *mut *mut T).cast::<c_void>(),
        )
    };
    (rc == ffi::SQLITE_OK).then_some(out)
}

/// Returns false when the schema's file was already opened through metadwr
/// (nothing to do for this connection).
///
/// # Safety
/// As [`adopt_connection`].
unsafe fn adopt_schema(db: *mut ffi::sqlite3, vfs: *mut ffi::sqlite3_vfs, schema: &CStr) -> bool {
    // SAFETY: `db` is live and ours (caller).
    let current = match unsafe { pager_pointer(db, schema, VFS_POINTER) } {
        Some(current) if current != vfs => current,
        _ => return false,
    };
    // SAFETY: as above.
    let file = match unsafe { pager_pointer(db, schema, FILE_POINTER) } {
        Some(file) if !file.is_null() => file,
        _ => return true,
    };
    // SAFETY: `file` is the pager's sqlite3_file, alive for as long as the
    // connection (module doc), and nobody else touches it meanwhile;
    // reading its method pointer, and only asking is_shim_file about it
    // once it is known to be open.
    if unsafe { (*file).pMethods.is_null() || vfs::is_shim_file(file) } {
        return true; // in memory, or not yet opened: nothing to wrap
    }
    // SAFETY: `db` is live; the name, if any, is the pager's own string
    // (NUL-terminated, with the URI parameters after it), alive as long as
    // the pager.
    let name = unsafe { ffi::sqlite3_db_filename(db, schema.as_ptr()) };
    // SAFETY: `name` is null or a NUL-terminated string (above).
    if name.is_null() || unsafe { *name } == 0 {
        return true;
    }
    // SAFETY: `vfs` is the registered metadwr VFS (caller), never freed.
    let base = unsafe { vfs::base_vfs(vfs) };
    // SAFETY: `db` is live and ours; `schema` as in pager_pointer.
    if current == base && unsafe { idle(db, schema) } {
        // SAFETY: `db` is live and ours.
        let readonly = unsafe { ffi::sqlite3_db_readonly(db, schema.as_ptr()) } == 1;
        let flags = ffi::SQLITE_OPEN_MAIN_DB
            | if readonly {
                ffi::SQLITE_OPEN_READONLY
            } else {
                ffi::SQLITE_OPEN_READWRITE
            };
        // SAFETY: `file` is the pager's main-database file, opened by the
        // base VFS of `vfs` (checked just above), and the pager is idle
        // (`idle`): it holds no lock, no mapped page and no WAL index, and
        // cannot run until we return (exclusive use of the connection).
        // `name` is the name the pager opened it with and outlives the file.
        let rc = unsafe { vfs::reopen_in_place(vfs, file, name, flags) };
        // SAFETY: reopen_in_place leaves `file` open, through metadwr or
        // (on failure) through the base VFS again.
        if rc == ffi::SQLITE_OK && unsafe { vfs::is_shim_file(file) } {
            return true;
        }
        vfs::log_warning(&format!(
            "metadwr: could not re-open database '{}' through metadwr (error {rc})",
            schema.to_string_lossy()
        ));
    }
    // SAFETY: `file` is open (pMethods non-null, checked above, or put back
    // by reopen_in_place), not a metadwr file, and ours alone until we
    // return.
    unsafe { install_shadow(file) };
    true
}

/// Names of the attached databases (not main, not temp).
///
/// # Safety
/// `db` is a live connection this thread has exclusive use of.
unsafe fn attached_schemas(db: *mut ffi::sqlite3) -> Vec<CString> {
    let mut names = Vec::new();
    // SAFETY: `db` is live (caller); the statement is finalised before
    // returning, and each column text is copied before the next step (SQLite
    // owns it until then).
    unsafe {
        let mut stmt = ptr::null_mut();
        if ffi::sqlite3_prepare_v2(
            db,
            c"PRAGMA database_list".as_ptr(),
            -1,
            &mut stmt,
            ptr::null_mut(),
        ) != ffi::SQLITE_OK
        {
            return names;
        }
        while ffi::sqlite3_step(stmt) == ffi::SQLITE_ROW {
            let v = ffi::sqlite3_column_text(stmt, 1);
            if !v.is_null() {
                let name = CStr::from_ptr(v.cast()).to_owned();
                if name.as_bytes() != b"main" && name.as_bytes() != b"temp" {
                    names.push(name);
                }
            }
        }
        ffi::sqlite3_finalize(stmt);
    }
    names
}

/// No transaction, no active statement, no open journal or WAL, normal
/// locking: the pager holds no lock and nothing of its file.
///
/// # Safety
/// `db` is a live connection this thread has exclusive use of.
unsafe fn idle(db: *mut ffi::sqlite3, schema: &CStr) -> bool {
    // SAFETY: `db` is live (caller); sqlite3_next_stmt walks the
    // connection's own list of statements, which cannot change while we
    // hold it.
    unsafe {
        if ffi::sqlite3_get_autocommit(db) == 0 {
            return false;
        }
        let mut stmt = ffi::sqlite3_next_stmt(db, ptr::null_mut());
        while !stmt.is_null() {
            if ffi::sqlite3_stmt_busy(stmt) != 0 {
                return false;
            }
            stmt = ffi::sqlite3_next_stmt(db, stmt);
        }
    }
    // An open journal means a transaction; an open WAL means the pager
    // holds a shared lock and maps the WAL index through this file. A WAL
    // database whose pager has not opened the WAL yet (a fresh connection)
    // holds neither and may be re-opened.
    // SAFETY: `db` is live and ours (caller).
    let journal = match unsafe { pager_pointer(db, schema, JOURNAL_POINTER) } {
        Some(journal) => journal,
        None => return false,
    };
    // SAFETY: a non-null journal pointer is the pager's own (closed or
    // open) sqlite3_file, alive as long as the pager.
    if !journal.is_null() && unsafe { !(*journal).pMethods.is_null() } {
        return false;
    }
    // SAFETY: `db` is live and ours (caller).
    unsafe { locking_mode_is_normal(db, schema) }
}

/// `PRAGMA schema.locking_mode` answers `normal`.
///
/// # Safety
/// `db` is a live connection this thread has exclusive use of.
unsafe fn locking_mode_is_normal(db: *mut ffi::sqlite3, schema: &CStr) -> bool {
    let sql = CString::new(format!(
        "PRAGMA \"{}\".locking_mode",
        schema.to_string_lossy().replace('"', "\"\"")
    ))
    .unwrap_or_default();
    // SAFETY: `db` is live (caller); the column text is read before the
    // statement is finalised, which frees it.
    unsafe {
        let mut stmt = ptr::null_mut();
        if ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, ptr::null_mut())
            != ffi::SQLITE_OK
        {
            return false;
        }
        let normal = ffi::sqlite3_step(stmt) == ffi::SQLITE_ROW && {
            let v = ffi::sqlite3_column_text(stmt, 0);
            !v.is_null()
                && CStr::from_ptr(v.cast())
                    .to_bytes()
                    .eq_ignore_ascii_case(b"normal")
        };
        ffi::sqlite3_finalize(stmt);
        normal
    }
}

// --- The shadow method table ------------------------------------------------
//
// A file that cannot be re-opened keeps its own state and methods; only its
// pMethods pointer is swapped for a shadow table with identical behaviour,
// except that the metadwr pragmas answer with an error instead of being
// ignored. The unix methods never look at pMethods themselves (only the
// proxy locking of Apple builds does), and sqlite3OsClose clears it after
// xClose. Each distinct original table gets its own shadow table, so the
// shadow's address identifies the original.

struct Shadow {
    table: ffi::sqlite3_io_methods,
    original: &'static ffi::sqlite3_io_methods,
}

/// unix has a handful of method tables (posix, nolock, dotfile, ...).
static SHADOWS: [OnceLock<&'static Shadow>; 8] = [const { OnceLock::new() }; 8];
static SHADOW_INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Swaps `file`'s method table for the shadow of its table.
///
/// # Safety
/// `file` is an open `sqlite3_file` (non-null `pMethods`) that no other
/// thread uses meanwhile, and its method table lives as long as the
/// library (module doc).
unsafe fn install_shadow(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` is open (caller), so pMethods points at its VFS's
    // method table, which is static (caller).
    let original: &'static ffi::sqlite3_io_methods = unsafe { &*(*file).pMethods };
    let _guard = SHADOW_INSTALL.lock();
    for slot in &SHADOWS {
        let shadow = slot.get_or_init(|| {
            let table = shadow_table(original);
            Box::leak(Box::new(Shadow { table, original }))
        });
        if ptr::eq(shadow.original, original) {
            // SAFETY: no other thread uses `file` (caller); the shadow
            // table is leaked, so it outlives the file, and forwards to
            // `original`, the table SQLite would have called.
            unsafe { (*file).pMethods = &shadow.table };
            return;
        }
    }
    vfs::log_warning("metadwr: too many distinct file method tables; database left as it is");
}

/// The original methods behind a shadowed file.
///
/// # Safety
/// `file` is a live `sqlite3_file` whose `pMethods` is a shadow table: SQLite
/// calls the shadow methods only on such files.
unsafe fn original(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: `file` is live (caller); reading its method pointer.
    let m = unsafe { (*file).pMethods };
    for slot in &SHADOWS {
        if let Some(s) = slot.get() {
            if ptr::eq(&s.table, m) {
                return s.original;
            }
        }
    }
    unreachable!("shadow method called on a file without a shadow table")
}

macro_rules! shadow_forward {
    ($name:ident, $method:ident, $default:expr, ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        /// Forwards to the original method.
        ///
        /// # Safety
        /// SQLite's contract for the method: `file` is an open file whose
        /// table is a shadow table, and the other arguments are valid for
        /// the original method.
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: `file` is a shadowed file (caller), so `original`
                // finds its table, which has this method: `shadow_table`
                // fills only the slots the original fills. The arguments are
                // SQLite's, unchanged.
                unsafe { (original(file).$method.unwrap())(file $(, $arg)*) }
            }))
            .unwrap_or($default)
        }
    };
}

shadow_forward!(sh_close, xClose, ffi::SQLITE_IOERR_CLOSE, () -> c_int);
shadow_forward!(sh_read, xRead, ffi::SQLITE_IOERR_READ, (buf: *mut c_void, amt: c_int, off: i64) -> c_int);
shadow_forward!(sh_write, xWrite, ffi::SQLITE_IOERR_WRITE, (buf: *const c_void, amt: c_int, off: i64) -> c_int);
shadow_forward!(sh_truncate, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, (size: i64) -> c_int);
shadow_forward!(sh_sync, xSync, ffi::SQLITE_IOERR_FSYNC, (flags: c_int) -> c_int);
shadow_forward!(sh_file_size, xFileSize, ffi::SQLITE_IOERR_FSTAT, (size: *mut i64) -> c_int);
shadow_forward!(sh_lock, xLock, ffi::SQLITE_IOERR_LOCK, (level: c_int) -> c_int);
shadow_forward!(sh_unlock, xUnlock, ffi::SQLITE_IOERR_UNLOCK, (level: c_int) -> c_int);
shadow_forward!(sh_check_reserved, xCheckReservedLock, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, (out: *mut c_int) -> c_int);
shadow_forward!(sh_sector_size, xSectorSize, 4096, () -> c_int);
shadow_forward!(sh_device_characteristics, xDeviceCharacteristics, 0, () -> c_int);
shadow_forward!(sh_shm_map, xShmMap, ffi::SQLITE_IOERR_SHMMAP, (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int);
shadow_forward!(sh_shm_lock, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, (offset: c_int, n: c_int, flags: c_int) -> c_int);
shadow_forward!(sh_shm_barrier, xShmBarrier, (), () -> ());
shadow_forward!(sh_shm_unmap, xShmUnmap, ffi::SQLITE_IOERR_SHMMAP, (delete: c_int) -> c_int);
shadow_forward!(sh_fetch, xFetch, ffi::SQLITE_IOERR_MMAP, (off: i64, amt: c_int, out: *mut *mut c_void) -> c_int);
shadow_forward!(sh_unfetch, xUnfetch, ffi::SQLITE_IOERR_MMAP, (off: i64, p: *mut c_void) -> c_int);

/// The error the metadwr pragmas give on a database opened before the
/// extension that could not be re-opened through it.
pub const REOPEN_HINT: &str = "this database was opened before metadwr was loaded and could not be \
     switched over (it was in WAL mode or busy); reopen it (in the shell: .open FILE) to use metadwr";

/// The shadow's xFileControl: the metadwr pragmas get [`REOPEN_HINT`];
/// everything else goes to the original method.
///
/// # Safety
/// SQLite's contract for xFileControl on a shadowed file: for
/// `SQLITE_FCNTL_PRAGMA`, `arg` is a `char*[3]` (result slot, pragma name,
/// value).
unsafe extern "C" fn sh_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        if op == ffi::SQLITE_FCNTL_PRAGMA {
            let args = arg as *mut *mut c_char;
            // SAFETY: for SQLITE_FCNTL_PRAGMA, `arg` is char*[3] (caller)
            // and its second entry the NUL-terminated pragma name.
            let name = unsafe { CStr::from_ptr(*args.add(1)) }
                .to_string_lossy()
                .to_ascii_lowercase();
            if name.starts_with("meta_double_write") || name == "meta_recover" {
                // SAFETY: args[0] is SQLite's result slot; it frees the
                // sqlite3_malloc'ed message.
                unsafe { *args = super::sqlite_string(&format!("{name}: {REOPEN_HINT}")) };
                return ffi::SQLITE_ERROR;
            }
        }
        // SAFETY: as in shadow_forward!; the call is forwarded untouched.
        unsafe { (original(file).xFileControl.unwrap())(file, op, arg) }
    }))
    .unwrap_or(ffi::SQLITE_ERROR)
}

fn shadow_table(o: &ffi::sqlite3_io_methods) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: o.iVersion,
        xClose: o.xClose.and(Some(sh_close)),
        xRead: o.xRead.and(Some(sh_read)),
        xWrite: o.xWrite.and(Some(sh_write)),
        xTruncate: o.xTruncate.and(Some(sh_truncate)),
        xSync: o.xSync.and(Some(sh_sync)),
        xFileSize: o.xFileSize.and(Some(sh_file_size)),
        xLock: o.xLock.and(Some(sh_lock)),
        xUnlock: o.xUnlock.and(Some(sh_unlock)),
        xCheckReservedLock: o.xCheckReservedLock.and(Some(sh_check_reserved)),
        xFileControl: o.xFileControl.and(Some(sh_file_control)),
        xSectorSize: o.xSectorSize.and(Some(sh_sector_size)),
        xDeviceCharacteristics: o
            .xDeviceCharacteristics
            .and(Some(sh_device_characteristics)),
        xShmMap: o.xShmMap.and(Some(sh_shm_map)),
        xShmLock: o.xShmLock.and(Some(sh_shm_lock)),
        xShmBarrier: o.xShmBarrier.and(Some(sh_shm_barrier)),
        xShmUnmap: o.xShmUnmap.and(Some(sh_shm_unmap)),
        xFetch: o.xFetch.and(Some(sh_fetch)),
        xUnfetch: o.xUnfetch.and(Some(sh_unfetch)),
    }
}
