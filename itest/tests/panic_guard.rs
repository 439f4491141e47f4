//! A panic in the monitor's code (a bug) turns protection of that file off,
//! with the reason in `PRAGMA meta_double_write`, and never fails the
//! user's statement: the monitor that panicked may be half-updated, and is
//! never again asked to write the `-dwr`.
//!
//! A panic needs a bug, so these tests use a build of the extension with
//! the cargo feature `test-hooks`, where the URI parameter
//! `metadwr_test_panic=<method>` makes the monitor code of that file method
//! panic the first time it runs on that file. The released extension has no
//! such hook. The build is `$METADWR_TEST_HOOKS_SO` (`make matrix` builds
//! it), else this binary builds it once, into its own target directory.
//! Being another build of the extension, it is loaded into this binary's
//! process only, instead of `$METADWR_SO`.

mod common;

use common::*;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The extension built with `test-hooks`.
fn hooked_so() -> PathBuf {
    if let Some(so) = std::env::var_os("METADWR_TEST_HOOKS_SO") {
        return PathBuf::from(so);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-hooks");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = Command::new(cargo)
                .current_dir(&root)
                .args([
                    "build",
                    "--release",
                    "--features",
                    "test-hooks",
                    "--target-dir",
                ])
                .arg(&target)
                .output()
                .expect("run cargo to build the extension with test-hooks");
            assert!(
                out.status.success(),
                "building the extension with test-hooks failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            target.join("release/libmetadwr.so")
        })
        .clone()
}

/// Loads the hooked build, with the `sqlite3_log` capture installed first
/// (it must precede SQLite's initialisation).
fn setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let so = hooked_so();
        common::sqlite_log::install();
        load_extension_from(&so);
    });
}

/// A protected database with one table, in `journal` mode.
fn protected_db(dir: &TestDir, journal: &str) -> PathBuf {
    let db = dir.join("t.db");
    let conn = open(&db);
    conn.execute_batch(&format!(
        "PRAGMA journal_mode={journal};
         CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
         INSERT INTO t(b) VALUES ('one'), ('two');"
    ))
    .unwrap();
    enable(&conn);
    assert_eq!(dwr_status(&conn), "enabled");
    db
}

/// A transaction that changes the schema and page 1, and in WAL mode a
/// checkpoint: a protected file writes a new generation of its copy then.
fn schema_change(conn: &Connection, n: u32) {
    conn.execute_batch(&format!(
        "BEGIN;
         CREATE TABLE u{n}(x);
         INSERT INTO u{n} VALUES ({n});
         INSERT INTO t(b) VALUES ('row {n}');
         COMMIT;"
    ))
    .unwrap_or_else(|e| panic!("transaction {n} must succeed: {e}"));
    let journal = query_str(conn, "PRAGMA journal_mode").unwrap();
    if journal == "wal" {
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap_or_else(|e| panic!("checkpoint after transaction {n}: {e}"));
    }
}

/// Statements that run before the first transaction, to reach monitor code
/// that the transaction alone does not.
const NOTHING: &str = "";
/// A rolled-back transaction whose pages spilled into the database file:
/// the copy is dirty at the unlock, whose monitor code then runs.
const SPILLED_ROLLBACK: &str = "PRAGMA cache_size=2;
     BEGIN;
     CREATE TABLE spill(x);
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
     INSERT INTO spill SELECT randomblob(3000) FROM n;
     ROLLBACK;
     PRAGMA cache_size=-2000;";
/// A WAL checkpoint: the database file is written and synced.
const CHECKPOINT: &str = "INSERT INTO t(b) VALUES ('pre');
     PRAGMA wal_checkpoint(TRUNCATE);";

fn dwr_bytes(db: &Path) -> Vec<u8> {
    std::fs::read(sidecar(db, "-dwr")).expect("read the -dwr")
}

/// Opens `db` with the hook armed for `method`, runs a schema change, and
/// checks what a panic in that method's monitor code must do.
fn panic_in(method: &str, journal: &str, prelude: &str) {
    setup();
    let dir = TestDir::new(&format!("panic-{method}-{journal}"));
    let db = protected_db(&dir, journal);
    let conn = open_uri(&db, &format!("metadwr_test_panic={method}"));

    // The user's statements succeed.
    conn.execute_batch(prelude)
        .unwrap_or_else(|e| panic!("{method}/{journal}: {prelude}: {e}"));
    schema_change(&conn, 1);

    // Protection is off, and the pragma says why.
    let status = dwr_status(&conn);
    let why = format!("internal error in {method}: metadwr test hook: panic in {method}");
    assert_eq!(status, format!("disabled ({why})"), "{method}/{journal}");
    assert!(
        common::sqlite_log::warnings_about(&db)
            .iter()
            .any(|w| w.contains("turned off") && w.contains(&why)),
        "{method}/{journal}: a warning names the file and the reason: {:?}",
        common::sqlite_log::warnings_about(&db)
    );

    // The monitor that panicked never writes the -dwr again, even for a
    // schema change, and cannot be talked into it.
    let before = dwr_bytes(&db);
    schema_change(&conn, 2);
    let refused = query_msg(&conn, "PRAGMA meta_double_write=enabled");
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("after an internal error")),
        "{method}/{journal}: re-enabling on this connection: {refused:?}"
    );
    schema_change(&conn, 3);
    assert!(
        dwr_bytes(&db) == before,
        "{method}/{journal}: the -dwr changed after the panic"
    );
    assert_eq!(dwr_status(&conn), format!("disabled ({why})"));

    // Everything committed, intact, for this connection and a new one.
    assert_integrity_ok(&conn, method);
    let seen = content(&conn).unwrap();
    drop(conn);
    let fresh = open(&db);
    assert_same_content(&seen, &content(&fresh).unwrap(), method);
    assert!(
        seen.tables.contains_key("u3"),
        "{method}: {:?}",
        seen.tables.keys()
    );
    // Reopened, the database is protected again: the first write brings
    // the copy up to date.
    assert!(
        dwr_status(&fresh).starts_with("enabled"),
        "{}",
        dwr_status(&fresh)
    );
    schema_change(&fresh, 4);
    assert_eq!(
        query_msg(&fresh, "SELECT meta_recover()").map(|r| r.starts_with("nothing to restore")),
        Ok(true),
        "{method}/{journal}: the copy is current again"
    );
}

/// The control: without the hook, the same steps rewrite the -dwr (so the
/// checks above that it stays unchanged have teeth).
#[test]
fn without_a_panic_the_same_transactions_rewrite_the_copy() {
    setup();
    for journal in ["delete", "wal"] {
        let dir = TestDir::new(&format!("panic-control-{journal}"));
        let db = protected_db(&dir, journal);
        let conn = open(&db);
        schema_change(&conn, 1);
        let before = dwr_bytes(&db);
        schema_change(&conn, 2);
        assert!(
            dwr_bytes(&db) != before,
            "{journal}: a schema change rewrites the -dwr"
        );
        assert_eq!(dwr_status(&conn), "enabled");
    }
}

#[test]
fn panic_opening_the_copy() {
    panic_in("xOpen", "delete", NOTHING);
}

#[test]
fn panic_on_read() {
    panic_in("xRead", "delete", NOTHING);
}

#[test]
fn panic_on_write() {
    panic_in("xWrite", "delete", NOTHING);
}

#[test]
fn panic_on_sync() {
    panic_in("xSync", "delete", NOTHING);
}

#[test]
fn panic_on_lock() {
    panic_in("xLock", "delete", NOTHING);
}

#[test]
fn panic_on_unlock() {
    panic_in("xUnlock", "delete", SPILLED_ROLLBACK);
}

#[test]
fn panic_at_commit_phase_two() {
    panic_in("xFileControl", "delete", NOTHING);
}

#[test]
fn panic_mapping_the_wal_index() {
    panic_in("xShmMap", "wal", NOTHING);
}

#[test]
fn panic_on_a_wal_lock() {
    panic_in("xShmLock", "wal", NOTHING);
}

#[test]
fn panic_in_a_checkpoint() {
    panic_in("xWrite", "wal", CHECKPOINT);
    panic_in("xSync", "wal", CHECKPOINT);
}

/// A panic while answering `meta_recover()` is that call's error; the
/// connection goes on unprotected.
#[test]
fn panic_answering_meta_recover() {
    setup();
    let dir = TestDir::new("panic-recover");
    let db = protected_db(&dir, "delete");
    let conn = open_uri(&db, "metadwr_test_panic=xFileControl");
    let why = "internal error in xFileControl: metadwr test hook: panic in xFileControl";
    assert_eq!(
        query_msg(&conn, "SELECT meta_recover()"),
        Err(format!("meta_recover: {why}"))
    );
    assert_eq!(dwr_status(&conn), format!("disabled ({why})"));
    schema_change(&conn, 1);
    assert_integrity_ok(&conn, "after meta_recover");
}

/// A panic while closing: the file is closed all the same, and everything
/// committed is there; the next connection finds the copy behind the file
/// and brings it up to date.
#[test]
fn panic_on_close() {
    setup();
    let dir = TestDir::new("panic-close");
    let db = protected_db(&dir, "delete");
    let conn = open_uri(&db, "metadwr_test_panic=xClose");
    schema_change(&conn, 1);
    let seen = content(&conn).unwrap();
    conn.close().expect("the close succeeds");
    assert!(
        common::sqlite_log::warnings_about(&db)
            .iter()
            .any(|w| w.contains("internal error in xClose")),
        "{:?}",
        common::sqlite_log::warnings_about(&db)
    );
    let fresh = open(&db);
    assert_same_content(&seen, &content(&fresh).unwrap(), "after the close");
    assert_integrity_ok(&fresh, "after the close");
    schema_change(&fresh, 2);
    assert_eq!(
        query_msg(&fresh, "SELECT meta_recover()").map(|r| r.starts_with("nothing to restore")),
        Ok(true)
    );
}
