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

use super::vfs;
use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::OnceLock;

/// Brings every database of `db` that was opened through plain `unix`
/// under metadwr (or behind the shadow table). Returns at once for a
/// connection opened through metadwr, which is every connection after the
/// first load.
///
/// # Safety
/// `db` is a live connection; `vfs` the registered metadwr VFS.
pub unsafe fn adopt_connection(db: *mut ffi::sqlite3, vfs: *mut ffi::sqlite3_vfs) {
    if !adopt_schema(db, vfs, c"main") {
        return;
    }
    // The connection predates the extension: it may have attached databases.
    for name in attached_schemas(db) {
        adopt_schema(db, vfs, &name);
    }
}

/// Returns false when the schema's file was already opened through metadwr
/// (nothing to do for this connection).
unsafe fn adopt_schema(db: *mut ffi::sqlite3, vfs: *mut ffi::sqlite3_vfs, schema: &CStr) -> bool {
    let mut current: *mut ffi::sqlite3_vfs = ptr::null_mut();
    let rc = ffi::sqlite3_file_control(
        db,
        schema.as_ptr(),
        ffi::SQLITE_FCNTL_VFS_POINTER,
        (&mut current as *mut *mut ffi::sqlite3_vfs).cast::<c_void>(),
    );
    if rc != ffi::SQLITE_OK || current == vfs {
        return false;
    }
    let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
    if ffi::sqlite3_file_control(
        db,
        schema.as_ptr(),
        ffi::SQLITE_FCNTL_FILE_POINTER,
        (&mut file as *mut *mut ffi::sqlite3_file).cast::<c_void>(),
    ) != ffi::SQLITE_OK
        || file.is_null()
        || (*file).pMethods.is_null()
        || vfs::is_shim_file(file)
    {
        return true; // in memory, or not yet opened: nothing to wrap
    }
    let name = ffi::sqlite3_db_filename(db, schema.as_ptr());
    if name.is_null() || *name == 0 {
        return true;
    }
    if current == (*vfs).pAppData.cast() && idle(db, schema) {
        let flags = ffi::SQLITE_OPEN_MAIN_DB
            | if ffi::sqlite3_db_readonly(db, schema.as_ptr()) == 1 {
                ffi::SQLITE_OPEN_READONLY
            } else {
                ffi::SQLITE_OPEN_READWRITE
            };
        let rc = vfs::reopen_in_place(vfs, file, name, flags);
        if rc == ffi::SQLITE_OK && vfs::is_shim_file(file) {
            return true;
        }
        vfs::log_warning(&format!(
            "metadwr: could not re-open database '{}' through metadwr (error {rc})",
            schema.to_string_lossy()
        ));
    }
    install_shadow(file);
    true
}

/// Names of the attached databases (not main, not temp).
unsafe fn attached_schemas(db: *mut ffi::sqlite3) -> Vec<CString> {
    let mut names = Vec::new();
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
    names
}

/// No transaction, no active statement, no open WAL, normal locking.
unsafe fn idle(db: *mut ffi::sqlite3, schema: &CStr) -> bool {
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
    // An open journal means a transaction; an open WAL means the pager
    // holds a shared lock and maps the WAL index through this file. A WAL
    // database whose pager has not opened the WAL yet (a fresh connection)
    // holds neither and may be re-opened.
    let mut journal: *mut ffi::sqlite3_file = ptr::null_mut();
    let rc = ffi::sqlite3_file_control(
        db,
        schema.as_ptr(),
        ffi::SQLITE_FCNTL_JOURNAL_POINTER,
        (&mut journal as *mut *mut ffi::sqlite3_file).cast::<c_void>(),
    );
    if rc != ffi::SQLITE_OK || (!journal.is_null() && !(*journal).pMethods.is_null()) {
        return false;
    }
    locking_mode_is_normal(db, schema)
}

unsafe fn locking_mode_is_normal(db: *mut ffi::sqlite3, schema: &CStr) -> bool {
    let sql = CString::new(format!(
        "PRAGMA \"{}\".locking_mode",
        schema.to_string_lossy().replace('"', "\"\"")
    ))
    .unwrap_or_default();
    let mut stmt = ptr::null_mut();
    if ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, ptr::null_mut()) != ffi::SQLITE_OK {
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

// --- The shadow method table ------------------------------------------------
//
// A file that cannot be re-opened keeps its own state and methods; only its
// pMethods pointer is swapped for a shadow table with identical behaviour,
// except that the metadwr pragmas answer with an error instead of being
// ignored. The unix methods never look at pMethods themselves, and xClose
// clears it. Each distinct original table gets its own shadow table, so the
// shadow's address identifies the original.

struct Shadow {
    table: ffi::sqlite3_io_methods,
    original: &'static ffi::sqlite3_io_methods,
}

// SAFETY: method tables are immutable static data shared by all threads.
unsafe impl Sync for Shadow {}
unsafe impl Send for Shadow {}

/// unix has a handful of method tables (posix, nolock, dotfile, ...).
static SHADOWS: [OnceLock<&'static Shadow>; 8] = [const { OnceLock::new() }; 8];
static SHADOW_INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());

unsafe fn install_shadow(file: *mut ffi::sqlite3_file) {
    let original: &'static ffi::sqlite3_io_methods = &*(*file).pMethods;
    let _guard = SHADOW_INSTALL.lock();
    for slot in &SHADOWS {
        let shadow = slot.get_or_init(|| {
            let table = shadow_table(original);
            Box::leak(Box::new(Shadow { table, original }))
        });
        if ptr::eq(shadow.original, original) {
            (*file).pMethods = &shadow.table;
            return;
        }
    }
    vfs::log_warning("metadwr: too many distinct file method tables; database left as it is");
}

/// The original methods behind a shadowed file.
unsafe fn original(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    let m = (*file).pMethods;
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
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: the shadow table only holds forwarders for methods
                // the original table has; `file` is the live file SQLite
                // passed in.
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

unsafe extern "C" fn sh_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: for SQLITE_FCNTL_PRAGMA, arg is char*[3] (result slot,
        // name, value); otherwise the call is forwarded untouched.
        unsafe {
            if op == ffi::SQLITE_FCNTL_PRAGMA {
                let args = arg as *mut *mut c_char;
                let name = CStr::from_ptr(*args.add(1))
                    .to_string_lossy()
                    .to_ascii_lowercase();
                if name.starts_with("meta_double_write") || name == "meta_recover" {
                    *args = super::sqlite_string(&format!("{name}: {REOPEN_HINT}"));
                    return ffi::SQLITE_ERROR;
                }
            }
            (original(file).xFileControl.unwrap())(file, op, arg)
        }
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
