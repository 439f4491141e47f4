//! Capturing `sqlite3_log` messages (the extension's warnings) in tests.
//!
//! `SQLITE_CONFIG_LOG` can only be set before SQLite initialises, so a test
//! binary that uses this calls [`install`] before anything opens a
//! connection, and keeps such tests in a binary of their own.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::sync::Mutex;

static LOG: Mutex<Vec<(c_int, String)>> = Mutex::new(Vec::new());

extern "C" fn log_callback(_: *mut c_void, code: c_int, msg: *const c_char) {
    // SAFETY: SQLite passes a NUL-terminated message valid for the call.
    let text = unsafe { CStr::from_ptr(msg) }
        .to_string_lossy()
        .into_owned();
    if let Ok(mut log) = LOG.lock() {
        log.push((code, text));
    }
}

/// Installs the log callback; must run before SQLite initialises.
pub fn install() {
    // SAFETY: the caller runs this before any other SQLite call of the
    // process; the callback is a plain function that never unwinds.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_LOG,
            log_callback as extern "C" fn(*mut c_void, c_int, *const c_char),
            std::ptr::null_mut::<c_void>(),
        )
    };
    assert_eq!(
        rc,
        rusqlite::ffi::SQLITE_OK,
        "SQLITE_CONFIG_LOG must be set before the first connection"
    );
}

/// Forgets the messages logged so far.
pub fn clear() {
    LOG.lock().unwrap().clear();
}

/// The SQLITE_WARNING messages logged so far.
pub fn warnings() -> Vec<String> {
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|(code, _)| code & 0xff == rusqlite::ffi::SQLITE_WARNING)
        .map(|(_, m)| m.clone())
        .collect()
}

/// The SQLITE_WARNING messages that name `db`.
pub fn warnings_about(db: &Path) -> Vec<String> {
    let path = db.display().to_string();
    warnings()
        .into_iter()
        .filter(|m| m.contains(&path))
        .collect()
}
