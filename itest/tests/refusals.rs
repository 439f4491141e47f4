//! Cases where metadwr must refuse to restore: every refusal is an error
//! starting `meta_recover: ` (or `meta_double_write: ` for the pragma) and
//! leaves the database file byte-identical, with no quarantine file.
//!
//! Each scenario is checked from a connection opened through metadwr
//! *before* the damage (it has read the schema, so `SELECT meta_recover()`
//! can be prepared on it), through the pragma on a fresh connection, and,
//! in `refusals_from_a_fresh_connection`, with `SELECT meta_recover()` on a
//! connection opened after the damage.

mod common;

use common::*;
use rusqlite::Connection;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// The database was never protected: no `-dwr`.
    NoDwr,
    /// The `-dwr` was truncated to 0 bytes.
    DwrEmpty,
    /// The `-dwr` was overwritten with random bytes (same length).
    DwrRandom,
    /// A program without the extension added a table (the file grew),
    /// then page 1 was zeroed.
    ForeignTableFileGrew,
    /// The copy (a single generation) records a freelist; a program
    /// without the extension added a table whose root page came from it
    /// (same file size), then page 1 was zeroed.
    ForeignTableFromFreelistOneGeneration,
    /// The same, but the freelist came from a DROP TABLE made through
    /// metadwr, so the `-dwr` holds an older generation (before the DROP)
    /// besides the newest one: neither may be restored.
    ForeignTableFromFreelist,
    /// A program without the extension added a view (no page allocated,
    /// only page 1 changed), then page 1's 100-byte header was destroyed:
    /// the body of page 1 still holds the view, the copy does not.
    ForeignViewHeaderDamaged,
    /// The database file was replaced by a copy of itself (new inode), then
    /// page 1 was zeroed.
    FileReplaced,
}

const SCENARIOS: [Scenario; 8] = [
    Scenario::NoDwr,
    Scenario::DwrEmpty,
    Scenario::DwrRandom,
    Scenario::ForeignTableFileGrew,
    Scenario::ForeignTableFromFreelistOneGeneration,
    Scenario::ForeignTableFromFreelist,
    Scenario::ForeignViewHeaderDamaged,
    Scenario::FileReplaced,
];

impl Scenario {
    /// What the refusal must mention.
    fn fragment(self) -> &'static str {
        match self {
            Scenario::NoDwr => "does not exist",
            Scenario::DwrEmpty | Scenario::DwrRandom => "no valid copy",
            Scenario::ForeignTableFileGrew
            | Scenario::ForeignTableFromFreelistOneGeneration
            | Scenario::ForeignTableFromFreelist
            | Scenario::ForeignViewHeaderDamaged
            | Scenario::FileReplaced => "does not match the current state of the database",
        }
    }
}

/// Builds the scenario in `dir`. With `long_lived`, returns a metadwr
/// connection opened (and schema-loaded) before the damage.
fn setup(s: Scenario, dir: &TestDir, long_lived: bool) -> (PathBuf, Option<Connection>) {
    let db = dir.join("r.db");
    let mut rng = Rng::new(s as u64 + 77);
    if s == Scenario::NoDwr {
        let conn = open(&db);
        add_tables(&conn, "t", 3);
        assert_eq!(dwr_status(&conn), "disabled");
        drop(conn);
        assert!(!sidecar(&db, "-dwr").exists());
    } else if s == Scenario::ForeignTableFromFreelistOneGeneration {
        let conn = open(&db);
        add_tables(&conn, "t", 3);
        conn.execute_batch("DROP TABLE t2;").unwrap();
        enable(&conn);
        assert_eq!(stats(&conn).generations, 1);
        drop(conn);
    } else {
        make_protected(&db, "delete", 3);
    }
    let pre = long_lived.then(|| open_long_lived(&db));
    let zero_page1 = |rng: &mut Rng| {
        damage_pages(&db, &[1], Damage::Zero, rng);
    };
    match s {
        Scenario::NoDwr => zero_page1(&mut rng),
        Scenario::DwrEmpty => {
            zero_page1(&mut rng);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(sidecar(&db, "-dwr"))
                .unwrap();
            f.set_len(0).unwrap();
        }
        Scenario::DwrRandom => {
            zero_page1(&mut rng);
            let dwr = sidecar(&db, "-dwr");
            let mut junk = vec![0u8; std::fs::metadata(&dwr).unwrap().len() as usize];
            rng.fill(&mut junk);
            write_in_place(&dwr, &junk);
        }
        Scenario::ForeignTableFileGrew => {
            let before = std::fs::metadata(&db).unwrap().len();
            let plain = open_plain(&db).unwrap();
            plain
                .execute_batch("CREATE TABLE added(x); INSERT INTO added VALUES (42);")
                .unwrap();
            drop(plain);
            assert!(std::fs::metadata(&db).unwrap().len() > before);
            zero_page1(&mut rng);
        }
        Scenario::ForeignTableFromFreelist | Scenario::ForeignTableFromFreelistOneGeneration => {
            if s == Scenario::ForeignTableFromFreelist {
                // Free some pages while protected, so the copy records them.
                let conn = open(&db);
                conn.execute_batch("DROP TABLE t2;").unwrap();
                drop(conn);
            }
            let free: i64 = open(&db)
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .unwrap();
            assert!(free >= 2, "freelist has pages");
            let before = std::fs::metadata(&db).unwrap().len();
            let plain = open_plain(&db).unwrap();
            plain
                .execute_batch("CREATE TABLE added(x); INSERT INTO added VALUES (42);")
                .unwrap();
            drop(plain);
            assert_eq!(std::fs::metadata(&db).unwrap().len(), before);
            zero_page1(&mut rng);
        }
        Scenario::ForeignViewHeaderDamaged => {
            let before = std::fs::metadata(&db).unwrap().len();
            let plain = open_plain(&db).unwrap();
            plain
                .execute_batch("CREATE VIEW added AS SELECT 42 AS x;")
                .unwrap();
            drop(plain);
            assert_eq!(std::fs::metadata(&db).unwrap().len(), before);
            assert_eq!(schema_pages_cli(&db), vec![(1, PageKind::Leaf)]);
            damage_pages(&db, &[1], Damage::First100, &mut rng);
        }
        Scenario::FileReplaced => {
            let tmp = dir.join("copy.db");
            std::fs::copy(&db, &tmp).unwrap();
            std::fs::rename(&tmp, &db).unwrap();
            zero_page1(&mut rng);
        }
    }
    (db, pre)
}

fn write_in_place(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, 0).unwrap();
}

/// Asserts `SELECT meta_recover()` on `conn` refuses with `fragment` and
/// changes nothing.
#[track_caller]
fn assert_recover_refused(conn: &Connection, db: &Path, fragment: &str) {
    let before = std::fs::read(db).unwrap();
    let err = meta_recover(conn).expect_err("meta_recover must refuse");
    assert!(err.starts_with("meta_recover: "), "{err:?}");
    assert!(err.contains(fragment), "{err:?} should say {fragment:?}");
    assert_eq!(
        std::fs::read(db).unwrap(),
        before,
        "a refusal changed the file"
    );
    assert!(
        !sidecar(db, "-dwr-quarantine").exists(),
        "a refusal wrote a quarantine file"
    );
}

/// Runs scenario `s` from a long-lived connection and through the pragma.
fn run(s: Scenario) {
    let dir = TestDir::new(&format!("refuse-{s:?}"));
    let (db, pre) = setup(s, &dir, true);
    let damaged = std::fs::read(&db).unwrap();
    let pre = pre.unwrap();
    assert_recover_refused(&pre, &db, s.fragment());
    drop(pre);
    assert_eq!(std::fs::read(&db).unwrap(), damaged);

    // The pragma must not restore either (its error has its own prefix).
    let conn = open(&db);
    let answer = query_msg(&conn, "PRAGMA meta_double_write=enabled");
    let err = answer.expect_err("PRAGMA meta_double_write=enabled must fail");
    assert!(err.starts_with("meta_double_write: "), "{err:?}");
    drop(conn);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        damaged,
        "the pragma changed the file"
    );
    assert!(!sidecar(&db, "-dwr-quarantine").exists());
    if s == Scenario::NoDwr {
        assert!(
            !sidecar(&db, "-dwr").exists(),
            "a failed first enable leaves no -dwr behind"
        );
    }
}

/// One test per scenario, so that each refusal is reported by name.
macro_rules! refusal_tests {
    ($($name:ident => $scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(Scenario::$scenario);
            }
        )*
    };
}

refusal_tests! {
    refuses_without_a_dwr => NoDwr,
    refuses_an_empty_dwr => DwrEmpty,
    refuses_a_random_dwr => DwrRandom,
    refuses_after_a_foreign_writer_added_a_table => ForeignTableFileGrew,
    refuses_after_a_foreign_writer_added_a_table_from_the_freelist => ForeignTableFromFreelistOneGeneration,
    refuses_after_a_foreign_writer_added_a_table_from_the_freelist_older_generation_too => ForeignTableFromFreelist,
    refuses_after_a_foreign_writer_added_a_view_and_the_header_was_destroyed => ForeignViewHeaderDamaged,
    refuses_a_replaced_file => FileReplaced,
}

/// The same scenarios, with `PRAGMA meta_recover` on a connection opened
/// after the damage — the way a program that finds its database damaged
/// at startup calls it.
#[test]
fn refusals_from_a_fresh_connection() {
    let mut failures = Vec::new();
    for s in SCENARIOS {
        let dir = TestDir::new(&format!("refuse-fresh-{s:?}"));
        let (db, _) = setup(s, &dir, false);
        let damaged = std::fs::read(&db).unwrap();
        let conn = open(&db);
        match pragma_meta_recover(&conn) {
            Err(e) if e.starts_with("meta_recover: ") && e.contains(s.fragment()) => {}
            other => failures.push(format!("{s:?}: {other:?}")),
        }
        drop(conn);
        assert_eq!(
            std::fs::read(&db).unwrap(),
            damaged,
            "{s:?} changed the file"
        );
        assert!(!sidecar(&db, "-dwr-quarantine").exists());
    }
    assert!(
        failures.is_empty(),
        "PRAGMA meta_recover did not refuse as expected:\n{}",
        failures.join("\n")
    );
}

/// `meta_recover()` on a connection that bypasses metadwr (`vfs=unix`).
#[test]
fn refuses_on_a_connection_without_metadwr() {
    let dir = TestDir::new("refuse-plain");
    let db = dir.join("r.db");
    make_protected(&db, "delete", 2);
    // Undamaged file, fresh plain connection.
    let plain = open_plain(&db).unwrap();
    let before = std::fs::read(&db).unwrap();
    let err = meta_recover(&plain).expect_err("must refuse");
    assert!(err.starts_with("meta_recover: "), "{err}");
    assert!(err.contains("not opened through the metadwr VFS"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
    // Damaged file, plain connection opened before the damage.
    schema_dump(&plain).unwrap();
    damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(5));
    assert_recover_refused(&plain, &db, "not opened through the metadwr VFS");
}

/// Another connection holds a lock: refusal, then success once it is gone.
fn locked_by_another_connection(journal: &str) {
    let dir = TestDir::new(&format!("refuse-locked-{journal}"));
    let db = dir.join("r.db");
    let expected = make_protected(&db, journal, 3);
    let recoverer = open_long_lived(&db);
    let holder = open(&db);
    // A read transaction: SHARED lock in rollback mode; in WAL mode an
    // open connection keeps its SHARED lock anyway.
    holder
        .execute_batch("BEGIN; SELECT count(*) FROM t0;")
        .unwrap();
    damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(9));
    assert_recover_refused(&recoverer, &db, "locked");
    holder.execute_batch("COMMIT;").unwrap();
    drop(holder);
    let report = meta_recover(&recoverer).expect("recovers once the lock is gone");
    assert_eq!(parse_restored(&report).pages, vec![1]);
    assert_integrity_ok(&recoverer, "after recovery");
    assert_same_content(&expected, &content(&recoverer).unwrap(), "after recovery");
}

#[test]
fn refuses_while_another_connection_reads_rollback() {
    locked_by_another_connection("delete");
}

#[test]
fn refuses_while_another_connection_is_open_wal() {
    locked_by_another_connection("wal");
}

/// Inside the caller's own write transaction, a restore would be rolled
/// back or corrupt the transaction: refused.
#[test]
fn refuses_inside_a_write_transaction() {
    let dir = TestDir::new("refuse-in-tx");
    let db = dir.join("r.db");
    make_protected(&db, "delete", 2);
    let conn = open(&db);
    conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO t0(name) VALUES ('x');")
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    let err = meta_recover(&conn).expect_err("must refuse");
    assert!(err.starts_with("meta_recover: "), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
    conn.execute_batch("ROLLBACK;").unwrap();
}
