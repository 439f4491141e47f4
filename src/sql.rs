//! The SQL surface: `PRAGMA meta_double_write`, `PRAGMA
//! meta_double_write_sync`, `PRAGMA meta_double_write_stats` and the
//! function `meta_recover([schema])`.
//!
//! Pragmas reach the VFS through `SQLITE_FCNTL_PRAGMA`, so they exist only
//! for databases opened through metadwr; the entry point makes sure an
//! already open database is re-opened through it (see `lib.rs`).

use crate::monitor::{DbIo, Enabled, Monitor};
use crate::store::SyncPolicy;
use crate::vfs::{self, RecoverRequest};
use libsqlite3_sys as ffi;
use std::ffi::{c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Handles a pragma addressed to a metadwr file. `None` means "not ours":
/// the VFS passes it on to `unix`.
pub fn pragma(
    monitor: &mut Monitor,
    io: &mut dyn DbIo,
    name: &str,
    value: Option<&str>,
) -> Option<Result<String, String>> {
    let mut warn = vfs::log_warning;
    match name.to_ascii_lowercase().as_str() {
        "meta_double_write" => Some(match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(monitor.status()),
            Some(v) if matches!(v.as_str(), "enabled" | "enable" | "on" | "true" | "1") => {
                match monitor.enable(io, &mut warn) {
                    Ok(Enabled::Enabled) => Ok("enabled".into()),
                    Ok(Enabled::Recovered(report)) => Ok(format!("recovered: {report}")),
                    Err(e) => Err(format!("meta_double_write: {e}")),
                }
            }
            Some(v) if matches!(v.as_str(), "disabled" | "disable" | "off" | "false" | "0") => {
                monitor
                    .disable()
                    .map(|()| "disabled".to_string())
                    .map_err(|e| format!("meta_double_write: {e}"))
            }
            Some(v) => Err(format!(
                "meta_double_write: unknown value '{v}'; use enabled or disabled"
            )),
        }),
        "meta_double_write_sync" => Some(match value {
            None => Ok(monitor.policy().name().to_string()),
            Some(v) => match SyncPolicy::parse(v) {
                Some(p) => {
                    monitor.set_policy(p);
                    Ok(p.name().to_string())
                }
                None => Err(format!(
                    "meta_double_write_sync: unknown value '{v}'; use off, periodic or full"
                )),
            },
        }),
        // The pragma form of meta_recover(): SQLite hands pragmas to the VFS
        // before it reads the schema, whereas newer SQLite versions read
        // the schema before running any SELECT, which fails when the schema
        // is what is damaged.
        "meta_recover" => Some(match value {
            None => monitor
                .recover(io, &mut warn)
                .map_err(|e| format!("meta_recover: {e}")),
            Some(_) => Err("meta_recover takes no value: PRAGMA [schema.]meta_recover".into()),
        }),
        "meta_double_write_stats" => Some(Ok(match monitor.stats() {
            Some(s) => format!(
                "generations={} pages={} bytes={} fsyncs={} flag_updates={}",
                s.generations_written, s.pages_written, s.bytes_written, s.fsyncs, s.flag_updates
            ),
            None => "disabled".to_string(),
        })),
        "locking_mode" => {
            // Only noted; SQLite itself applies it.
            if let Some(v) = value {
                monitor.note_locking_mode(v);
            }
            None
        }
        _ => None,
    }
}

/// Sets `msg` as the function's error.
///
/// # Safety
/// `ctx` must be the live context of the running function call.
unsafe fn result_error(ctx: *mut ffi::sqlite3_context, msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    ffi::sqlite3_result_error(ctx, c.as_ptr(), -1);
}

/// `meta_recover([schema])`.
unsafe extern "C" fn meta_recover(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ctx and argv are the live arguments SQLite passed to this
        // function; argv has argc entries.
        unsafe {
            let db = ffi::sqlite3_context_db_handle(ctx);
            let schema = if argc >= 1 {
                let v = ffi::sqlite3_value_text(*argv);
                if v.is_null() {
                    return Err("meta_recover: schema name must not be NULL".to_string());
                }
                CStr::from_ptr(v.cast()).to_owned()
            } else {
                c"main".to_owned()
            };
            let shown = schema.to_string_lossy().into_owned();
            if shown.eq_ignore_ascii_case("temp") {
                return Err(format!(
                    "meta_recover: database '{shown}' is in memory or temporary; it has no file to protect"
                ));
            }
            let filename = ffi::sqlite3_db_filename(db, schema.as_ptr());
            if filename.is_null() {
                return Err(format!("meta_recover: no such database: {shown}"));
            }
            if *filename == 0 {
                return Err(format!(
                    "meta_recover: database '{shown}' is in memory or temporary; it has no file to protect"
                ));
            }
            let mut req = RecoverRequest { outcome: None };
            let rc = ffi::sqlite3_file_control(
                db,
                schema.as_ptr(),
                vfs::FCNTL_RECOVER,
                (&mut req as *mut RecoverRequest).cast::<c_void>(),
            );
            match req.outcome {
                Some(Ok(report)) => {
                    // Drop pages this connection cached while the file was
                    // damaged; other connections see the bumped change counter.
                    ffi::sqlite3_db_release_memory(db);
                    Ok(report)
                }
                Some(Err(e)) => Err(format!("meta_recover: {e}")),
                None if rc == ffi::SQLITE_NOTFOUND => Err(format!(
                    "meta_recover: database '{shown}' is not opened through the metadwr VFS; \
                     load the extension before opening it (or reopen it with .open)"
                )),
                None => Err(format!("meta_recover: file control failed (error {rc})")),
            }
        }
    }));
    // SAFETY: ctx is the live function context.
    unsafe {
        match outcome {
            Ok(Ok(report)) => {
                let c = CString::new(report).unwrap_or_default();
                ffi::sqlite3_result_text(ctx, c.as_ptr(), -1, ffi::SQLITE_TRANSIENT());
            }
            Ok(Err(msg)) => result_error(ctx, &msg),
            Err(_) => result_error(ctx, "meta_recover: internal error"),
        }
    }
}

/// Registers the SQL functions on `db`.
///
/// # Safety
/// `db` must be a live connection and the API table installed.
pub unsafe fn register_functions(db: *mut ffi::sqlite3) -> c_int {
    for n_arg in [0, 1] {
        let rc = ffi::sqlite3_create_function_v2(
            db,
            c"meta_recover".as_ptr(),
            n_arg,
            ffi::SQLITE_UTF8,
            std::ptr::null_mut(),
            Some(meta_recover),
            None,
            None,
            None,
        );
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    ffi::SQLITE_OK
}
