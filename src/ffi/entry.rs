//! The entry point SQLite calls when it loads the extension, and what it
//! sets up: the VFS, the SQL functions, the automatic extension for later
//! connections, and the library pinned in memory.

use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Entry point, found by SQLite from the library name (`libmetadwr` →
/// `sqlite3_metadwr_init`); also the function C programs pass to
/// `sqlite3_auto_extension`.
///
/// Registers the `metadwr` VFS as the default, the SQL functions on `db`
/// and (through `sqlite3_auto_extension`) on every later connection, and
/// re-opens `db`'s main database through the VFS when that is safe.
///
/// # Safety
/// Called by SQLite (or as an automatic extension): `db` is a live
/// connection whose mutex SQLite holds for the call, `err` null or the
/// slot for an error message that SQLite frees with `sqlite3_free`, and
/// `api` SQLite's API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_metadwr_init(
    db: *mut ffi::sqlite3,
    err: *mut *mut c_char,
    api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `api` is the API table SQLite passes to every entry
        // point. Installing it is what makes the other ffi calls of this
        // crate valid: libsqlite3-sys routes each through it (and panics
        // while none is installed).
        unsafe { ffi::rusqlite_extension_init2(api) }
            .map_err(|e| format!("metadwr: cannot initialise: {e}"))?;
        pin_library()?;
        let (vfs, newly_registered) = super::vfs::register()?;
        // SAFETY: `db` is the live connection SQLite runs the entry point
        // for; the API table is installed.
        let rc = unsafe { super::functions::register_functions(db) };
        if rc != ffi::SQLITE_OK {
            return Err(format!("metadwr: cannot register functions (error {rc})"));
        }
        // SAFETY: sqlite3_auto_extension takes the entry point as a
        // `void (*)(void)` and calls it back with the entry point's own
        // signature, which is this function's: the transmute changes only
        // the pointer's type, never how it is called.
        let entry = unsafe {
            std::mem::transmute::<
                unsafe extern "C" fn(
                    *mut ffi::sqlite3,
                    *mut *mut c_char,
                    *mut ffi::sqlite3_api_routines,
                ) -> c_int,
                unsafe extern "C" fn(),
            >(sqlite3_metadwr_init)
        };
        // SAFETY: the API table is installed; the entry point lives as long
        // as the process, the library being pinned.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(entry)) };
        if rc != ffi::SQLITE_OK {
            return Err(format!(
                "metadwr: cannot register for new connections (error {rc})"
            ));
        }
        // Only the connection that brought the extension in can predate
        // it. A connection opened later that uses plain unix asked for it
        // by name (vfs=unix) and is left alone.
        if newly_registered {
            // SAFETY: `db` is live, and SQLite runs the entry point with the
            // connection's mutex held (sqlite3_load_extension and the
            // automatic extensions of sqlite3_open* both do), so this thread
            // has it to itself; `vfs` is the metadwr VFS just registered.
            unsafe { super::adopt::adopt_connection(db, vfs) };
        }
        Ok(())
    }));
    let message = match outcome {
        // Plain SQLITE_OK: an automatic extension that returns anything
        // else (even SQLITE_OK_LOAD_PERMANENTLY) fails the open. The library
        // is pinned by `pin_library` instead.
        Ok(Ok(())) => return ffi::SQLITE_OK,
        Ok(Err(m)) => m,
        Err(_) => "metadwr: internal error during initialisation".to_string(),
    };
    // The message is allocated through the API table, so only once it is
    // installed; otherwise it is dropped.
    // SAFETY: as above, `api` is SQLite's API table.
    if !err.is_null() && unsafe { ffi::rusqlite_extension_init2(api) }.is_ok() {
        // SAFETY: `*err` is SQLite's slot for the error message, which it
        // frees with sqlite3_free; sqlite_string allocates with
        // sqlite3_malloc.
        unsafe { *err = super::sqlite_string(&message) };
    }
    ffi::SQLITE_ERROR
}

/// Keeps this library mapped for the life of the process: the VFS and the
/// functions registered with SQLite point into it, so SQLite's dlclose when
/// the loading connection closes must not unmap it.
fn pin_library() -> Result<(), String> {
    static PINNED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    PINNED
        .get_or_init(|| {
            // SAFETY: Dl_info is a plain C struct of pointers; all-zero is
            // a valid value that dladdr overwrites.
            let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
            // SAFETY: dladdr only reads the address of a function of this
            // library and fills `info`; dlopen with RTLD_NOLOAD|RTLD_NODELETE
            // takes a reference to the already loaded library (the path
            // dladdr returned) and marks it never to be unloaded.
            unsafe {
                let here = sqlite3_metadwr_init as *const libc::c_void;
                if libc::dladdr(here, &mut info) == 0 || info.dli_fname.is_null() {
                    return Err("metadwr: cannot locate the library to pin it".into());
                }
                let handle = libc::dlopen(
                    info.dli_fname,
                    libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
                );
                if handle.is_null() {
                    return Err("metadwr: cannot pin the library in memory".into());
                }
            }
            Ok(())
        })
        .clone()
}
