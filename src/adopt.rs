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
//! unlock. Otherwise the database stays as it is and the pragma explains
//! (see `sql::not_protectable`).

use crate::vfs;
use libsqlite3_sys as ffi;
use std::ffi::{c_int, c_void, CStr};
use std::ptr;

/// Re-opens `db`'s main database through `vfs` when that is safe.
///
/// # Safety
/// `db` is a live connection; `vfs` the registered metadwr VFS.
pub unsafe fn adopt_main(db: *mut ffi::sqlite3, vfs: *mut ffi::sqlite3_vfs) {
    let main = c"main".as_ptr();
    let mut current: *mut ffi::sqlite3_vfs = ptr::null_mut();
    if ffi::sqlite3_file_control(
        db,
        main,
        ffi::SQLITE_FCNTL_VFS_POINTER,
        (&mut current as *mut *mut ffi::sqlite3_vfs).cast::<c_void>(),
    ) != ffi::SQLITE_OK
        || current != (*vfs).pAppData.cast()
    {
        return; // already ours, in memory, or another VFS: leave it alone
    }
    let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
    if ffi::sqlite3_file_control(
        db,
        main,
        ffi::SQLITE_FCNTL_FILE_POINTER,
        (&mut file as *mut *mut ffi::sqlite3_file).cast::<c_void>(),
    ) != ffi::SQLITE_OK
        || file.is_null()
        || (*file).pMethods.is_null()
        || vfs::is_shim_file(file)
    {
        return;
    }
    let name = ffi::sqlite3_db_filename(db, main);
    if name.is_null() || *name == 0 || !idle(db, file, CStr::from_ptr(name)) {
        return;
    }
    let flags = ffi::SQLITE_OPEN_MAIN_DB
        | if ffi::sqlite3_db_readonly(db, main) == 1 {
            ffi::SQLITE_OPEN_READONLY
        } else {
            ffi::SQLITE_OPEN_READWRITE
        };
    let rc = vfs::reopen_in_place(vfs, file, name, flags);
    if rc != ffi::SQLITE_OK {
        vfs::log_warning(&format!(
            "metadwr: could not re-open the main database through metadwr (error {rc})"
        ));
    }
}

/// No transaction, no active statement, rollback journal, normal locking.
unsafe fn idle(db: *mut ffi::sqlite3, file: *mut ffi::sqlite3_file, name: &CStr) -> bool {
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
    // A WAL database keeps a shared lock and shared memory while open.
    let mut wal = name.to_bytes().to_vec();
    wal.extend_from_slice(b"-wal");
    if std::path::Path::new(std::ffi::OsStr::from_encoded_bytes_unchecked(&wal)).exists() {
        return false;
    }
    let mut head = [0u8; 20];
    let read = (*(*file).pMethods).xRead.unwrap();
    let rc = read(file, head.as_mut_ptr().cast(), head.len() as c_int, 0);
    if rc == ffi::SQLITE_OK && (head[18] == 2 || head[19] == 2) {
        return false;
    }
    locking_mode_is_normal(db)
}

unsafe fn locking_mode_is_normal(db: *mut ffi::sqlite3) -> bool {
    let mut stmt = ptr::null_mut();
    if ffi::sqlite3_prepare_v2(
        db,
        c"PRAGMA main.locking_mode".as_ptr(),
        -1,
        &mut stmt,
        ptr::null_mut(),
    ) != ffi::SQLITE_OK
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
