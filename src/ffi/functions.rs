//! The SQL functions `meta_recover([schema])` and `meta_salvage(out [,
//! schema])`. Each hands its request to the database's metadwr file with a
//! file control; the file's monitor does the work (the pragmas, which reach
//! the VFS directly, are dispatched in `protect/pragma.rs`).

use super::vfs::{self, RecoverRequest, SalvageRequest};
use libsqlite3_sys as ffi;
use std::ffi::{c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Sets `msg` as the function's error.
///
/// # Safety
/// `ctx` must be the live context of the running function call.
unsafe fn result_error(ctx: *mut ffi::sqlite3_context, msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: `ctx` is live (caller); SQLite copies the NUL-terminated
    // message before returning.
    unsafe { ffi::sqlite3_result_error(ctx, c.as_ptr(), -1) };
}

/// Text argument `i` of a function call, or None when it is NULL.
///
/// # Safety
/// `argv` must hold at least `i + 1` live values of the running call.
unsafe fn text_arg(argv: *mut *mut ffi::sqlite3_value, i: usize) -> Option<CString> {
    // SAFETY: `argv[i]` is a live value of the running call (caller); its
    // text is NULL or NUL-terminated, owned by SQLite until the value
    // changes, and copied here before anything else touches it.
    unsafe {
        let v = ffi::sqlite3_value_text(*argv.add(i));
        (!v.is_null()).then(|| CStr::from_ptr(v.cast()).to_owned())
    }
}

/// Sends file control `op` with `arg` to database `schema` of `db`, after
/// checking that it names a file. `what` names the function in errors.
///
/// # Safety
/// `db` must be the live connection of the running function call and
/// `arg` what the VFS expects for `op`.
unsafe fn send_to_file(
    db: *mut ffi::sqlite3,
    schema: &CStr,
    what: &str,
    op: c_int,
    arg: *mut c_void,
) -> Result<(), String> {
    let shown = schema.to_string_lossy().into_owned();
    let no_file = || {
        format!("{what}: database '{shown}' is in memory or temporary; it has no file to protect")
    };
    if shown.eq_ignore_ascii_case("temp") {
        return Err(no_file());
    }
    // SAFETY: `db` is the live connection of the running call (caller),
    // `schema` NUL-terminated; the answer is NULL or the pager's own
    // NUL-terminated name, alive while the call runs.
    let filename = unsafe { ffi::sqlite3_db_filename(db, schema.as_ptr()) };
    if filename.is_null() {
        return Err(format!("{what}: no such database: {shown}"));
    }
    // SAFETY: non-null, so a NUL-terminated string (above).
    if unsafe { *filename } == 0 {
        return Err(no_file());
    }
    // SAFETY: `db` is live and `arg` what the VFS expects for `op`
    // (caller); another VFS answers SQLITE_NOTFOUND to an opcode it does
    // not know, without touching `arg`.
    match unsafe { ffi::sqlite3_file_control(db, schema.as_ptr(), op, arg) } {
        ffi::SQLITE_OK => Ok(()),
        ffi::SQLITE_NOTFOUND => Err(format!(
            "{what}: database '{shown}' is not opened through the metadwr VFS; \
             load the extension before opening it (or reopen it with .open)"
        )),
        rc => Err(format!("{what}: file control failed (error {rc})")),
    }
}

/// Runs `body` for a function call, catching panics, and sets the text it
/// returns (or its error) as the result.
///
/// # Safety
/// `ctx` must be the live context of the running function call.
unsafe fn answer(
    ctx: *mut ffi::sqlite3_context,
    what: &str,
    body: impl FnOnce() -> Result<String, String>,
) {
    let outcome = catch_unwind(AssertUnwindSafe(body));
    match outcome {
        Ok(Ok(report)) => {
            let c = CString::new(report.replace('\0', " ")).unwrap_or_default();
            // SAFETY: `ctx` is live (caller); SQLITE_TRANSIENT makes SQLite
            // copy the NUL-terminated text before returning.
            unsafe { ffi::sqlite3_result_text(ctx, c.as_ptr(), -1, ffi::SQLITE_TRANSIENT()) };
        }
        // SAFETY: `ctx` is live (caller).
        Ok(Err(msg)) => unsafe { result_error(ctx, &msg) },
        // SAFETY: as above.
        Err(_) => unsafe { result_error(ctx, &format!("{what}: internal error")) },
    }
}

/// `meta_recover([schema])`.
///
/// # Safety
/// SQLite's contract for a function: `ctx` is the live context of this
/// call, `argv` holds `argc` live values (0 or 1, as registered).
unsafe extern "C" fn meta_recover(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    let body = || {
        // SAFETY: `ctx` is live (caller); the connection runs this call.
        let db = unsafe { ffi::sqlite3_context_db_handle(ctx) };
        let schema = match argc {
            0 => c"main".to_owned(),
            // SAFETY: argc is 1 here, so argv[0] is a live value (caller).
            _ => unsafe { text_arg(argv, 0) }
                .ok_or("meta_recover: schema name must not be NULL".to_string())?,
        };
        let mut req = RecoverRequest { outcome: None };
        let arg = (&mut req as *mut RecoverRequest).cast::<c_void>();
        // SAFETY: `db` is live; FCNTL_RECOVER takes a RecoverRequest, which
        // `req` is, alive until after the call.
        unsafe { send_to_file(db, &schema, "meta_recover", vfs::FCNTL_RECOVER, arg) }?;
        match req.outcome {
            Some(Ok(report)) => {
                // Drop pages this connection cached while the file was
                // damaged; other connections see the bumped change counter.
                // SAFETY: `db` is live.
                unsafe { ffi::sqlite3_db_release_memory(db) };
                Ok(report)
            }
            Some(Err(e)) => Err(format!("meta_recover: {e}")),
            None => Err("meta_recover: the VFS did not answer".into()),
        }
    };
    // SAFETY: `ctx` is live (caller).
    unsafe { answer(ctx, "meta_recover", body) }
}

/// `meta_salvage(out [, schema])`.
///
/// # Safety
/// SQLite's contract for a function: `ctx` is the live context of this
/// call, `argv` holds `argc` live values (1 or 2, as registered).
unsafe extern "C" fn meta_salvage(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    let body = || {
        // SAFETY: `ctx` is live (caller); the connection runs this call.
        let db = unsafe { ffi::sqlite3_context_db_handle(ctx) };
        // SAFETY: argc is at least 1, so argv[0] is a live value (caller).
        let out = unsafe { text_arg(argv, 0) }
            .map(|c| c.to_string_lossy().into_owned())
            .filter(|s| !s.trim().is_empty())
            .ok_or("meta_salvage: the path of the new database must not be NULL or empty")?;
        let schema = match argc {
            1 => c"main".to_owned(),
            // SAFETY: argc is 2 here, so argv[1] is a live value (caller).
            _ => unsafe { text_arg(argv, 1) }
                .ok_or("meta_salvage: schema name must not be NULL".to_string())?,
        };
        let mut req = SalvageRequest {
            out: std::path::PathBuf::from(out),
            outcome: None,
        };
        let arg = (&mut req as *mut SalvageRequest).cast::<c_void>();
        // SAFETY: `db` is live; FCNTL_SALVAGE takes a SalvageRequest, which
        // `req` is, alive until after the call.
        unsafe { send_to_file(db, &schema, "meta_salvage", vfs::FCNTL_SALVAGE, arg) }?;
        match req.outcome {
            Some(Ok(summary)) => Ok(summary),
            Some(Err(e)) => Err(format!("meta_salvage: {e}")),
            None => Err("meta_salvage: the VFS did not answer".into()),
        }
    };
    // SAFETY: `ctx` is live (caller).
    unsafe { answer(ctx, "meta_salvage", body) }
}

/// Registers the SQL functions on `db`.
///
/// # Safety
/// `db` must be a live connection and the API table installed.
pub unsafe fn register_functions(db: *mut ffi::sqlite3) -> c_int {
    type Func =
        unsafe extern "C" fn(*mut ffi::sqlite3_context, c_int, *mut *mut ffi::sqlite3_value);
    let functions: [(&CStr, c_int, Func); 4] = [
        (c"meta_recover", 0, meta_recover),
        (c"meta_recover", 1, meta_recover),
        (c"meta_salvage", 1, meta_salvage),
        (c"meta_salvage", 2, meta_salvage),
    ];
    for (name, n_arg, f) in functions {
        // SAFETY: `db` is live and the API table installed (caller); the
        // name is NUL-terminated and static, and `f` keeps the contract of
        // a function of `n_arg` arguments (it reads no more of `argv`), and
        // lives as long as this library, which is never unloaded
        // (`entry::pin_library`).
        let rc = unsafe {
            ffi::sqlite3_create_function_v2(
                db,
                name.as_ptr(),
                n_arg,
                ffi::SQLITE_UTF8,
                std::ptr::null_mut(),
                Some(f),
                None,
                None,
                None,
            )
        };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    ffi::SQLITE_OK
}
