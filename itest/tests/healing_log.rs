//! A heal on the read path is reported through `sqlite3_log` with
//! SQLITE_WARNING, naming the database file and the healed pages.
//!
//! `SQLITE_CONFIG_LOG` must be set before SQLite is initialised, i.e. before
//! the first connection of the process; hence this test binary of its own,
//! with a single test.

mod common;

use common::heal::*;
use common::schema::SchemaSize;
use common::*;
use std::ffi::{c_char, c_int, c_void, CStr};
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

/// Installs the log callback; must run before any connection is opened.
fn install_log() {
    // SAFETY: called once, before sqlite3_initialize (no connection has
    // been opened in this process yet); the callback is a plain function
    // that never unwinds.
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

/// True when `text` contains `n` as a whole number (not part of another).
fn mentions_number(text: &str, n: u32) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|w| w == n.to_string())
}

#[test]
fn a_heal_is_logged_as_a_warning_naming_the_file_and_pages() {
    install_log();
    let dir = TestDir::new("heal-log");
    let db = dir.join("logged.db");
    let expected = make_protected_schema(&db, "delete", 4096, SchemaSize::Medium);
    // Page 1 and a leaf with a number that cannot be mistaken for another.
    let leaf = schema_pages_cli(&db)
        .into_iter()
        .filter(|(p, k)| *p >= 10 && *k == PageKind::Leaf)
        .map(|p| p.0)
        .next()
        .expect("a schema leaf numbered 10 or more");
    damage_pages(&db, &[1, leaf], Damage::Random, &mut Rng::new(4000));
    LOG.lock().unwrap().clear();
    let conn = open_and_expect_healed(&db, &expected, "logged heal");
    drop(conn);
    let log = LOG.lock().unwrap().clone();
    let path = db.display().to_string();
    let warnings: Vec<&String> = log
        .iter()
        .filter(|(code, _)| code & 0xff == rusqlite::ffi::SQLITE_WARNING)
        .map(|(_, m)| m)
        .collect();
    let named: Vec<&&String> = warnings.iter().filter(|m| m.contains(&path)).collect();
    assert!(
        !named.is_empty(),
        "no SQLITE_WARNING naming {path}; the log held {} messages: {:?}",
        log.len(),
        log.iter()
            .map(|(c, m)| format!("{c}: {m:.200}"))
            .collect::<Vec<_>>()
    );
    for page in [1, leaf] {
        assert!(
            named
                .iter()
                .any(|m| mentions_number(&m.replace(&path, ""), page)),
            "no SQLITE_WARNING naming {path} mentions healed page {page}: {named:?}"
        );
    }
}
