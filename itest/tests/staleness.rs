//! The staleness rule on the read path (docs/dwr-format.md section 7): when
//! the copy cannot be proven to describe the current file, a reader through
//! metadwr sees exactly what plain SQLite sees (its usual error, or the
//! damaged content), the database file stays byte-identical, no quarantine
//! file appears, and `PRAGMA meta_double_write` says `enabled (stale: …)`.
//! Above all, a database never opens without a table a program without the
//! extension added.

mod common;

use common::heal::*;
use common::*;
use std::path::{Path, PathBuf};

/// Opens the damaged `db` through metadwr and checks it behaves exactly as
/// plain SQLite, changes nothing on disk, and reports a stale copy.
/// `must_fail`: the damage destroys the header, so plain SQLite errors and
/// so must metadwr. `missing`: a table the copy does not know; a reader
/// seeing a database without it was served a stale copy.
#[track_caller]
fn assert_stale_refusal(db: &Path, missing: Option<&str>, must_fail: bool, what: &str) {
    let plain = plain_view(db);
    if must_fail {
        assert_usual_error(&plain, &format!("{what}: plain SQLite (test setup)"));
    }
    let state = DiskState::take(db);
    let conn = open(db);
    let seen = view(&conn);
    if let (Some(table), Ok(c)) = (missing, &seen) {
        assert!(
            c.tables.contains_key(table),
            "{what}: a stale copy was served: the database opened without table {table}"
        );
    }
    match (&plain, &seen) {
        (Err(a), Err(b)) => assert_eq!(a, b, "{what}: metadwr and plain SQLite fail differently"),
        (Ok(a), Ok(b)) => assert_same_content(a, b, &format!("{what}: metadwr vs plain SQLite")),
        _ => panic!(
            "{what}: plain SQLite sees {}, metadwr {}",
            describe(&plain),
            describe(&seen)
        ),
    }
    assert_status_prefix(&conn, "enabled (stale: ", what);
    drop(conn);
    state.assert_db_unchanged(what);
}

/// Page-1 damage that destroys the header, so plain SQLite must refuse.
const HEADER_DAMAGE: [Damage; 4] = [
    Damage::Zero,
    Damage::Random,
    Damage::First32,
    Damage::First100,
];

// --- a program without the extension wrote the database -------------------------

#[derive(Debug, Clone, Copy)]
enum Foreign {
    /// A `vfs=unix` connection in this process.
    UnixVfs,
    /// The stock `sqlite3` shell, without `.load`.
    StockShell,
}

impl Foreign {
    fn run(self, db: &Path, sql: &str) {
        match self {
            Foreign::UnixVfs => open_plain(db).unwrap().execute_batch(sql).unwrap(),
            Foreign::StockShell => {
                sqlite3_cli(db, sql);
            }
        }
    }
}

const ADD_TABLE: &str = "CREATE TABLE added(x); INSERT INTO added VALUES (42);";

/// A foreign writer adds a table (the file grows), then page 1 is destroyed.
/// In WAL mode the foreign writer's close checkpoints the table into the
/// file.
fn foreign_table(journal: &str) {
    for writer in [Foreign::UnixVfs, Foreign::StockShell] {
        for (i, kind) in HEADER_DAMAGE.into_iter().enumerate() {
            let what = format!("{journal}: {writer:?} added a table, page 1 {kind:?}");
            let dir = TestDir::new(&what);
            let db = dir.join("f.db");
            make_protected(&db, journal, 3);
            writer.run(&db, ADD_TABLE);
            assert_no_wal_frames(&db);
            damage_pages(&db, &[1], kind, &mut Rng::new(5000 + i as u64));
            assert_stale_refusal(&db, Some("added"), true, &what);
        }
    }
}

#[test]
fn foreign_writer_added_a_table_then_page1_destroyed_rollback() {
    foreign_table("delete");
}

#[test]
fn foreign_writer_added_a_table_then_page1_destroyed_wal() {
    foreign_table("wal");
}

/// The same, but the new table's pages come from the freelist the copy
/// recorded, so the file size does not change.
#[test]
fn foreign_writer_added_a_table_from_the_freelist_then_page1_destroyed() {
    for writer in [Foreign::UnixVfs, Foreign::StockShell] {
        for (i, kind) in HEADER_DAMAGE.into_iter().enumerate() {
            let what = format!("{writer:?} added a table from the freelist, page 1 {kind:?}");
            let dir = TestDir::new(&what);
            let db = dir.join("f.db");
            make_protected(&db, "delete", 3);
            let conn = open(&db);
            conn.execute_batch("DROP TABLE t2;").unwrap();
            drop(conn);
            let size = std::fs::metadata(&db).unwrap().len();
            writer.run(&db, ADD_TABLE);
            assert_eq!(
                std::fs::metadata(&db).unwrap().len(),
                size,
                "setup: same size"
            );
            damage_pages(&db, &[1], kind, &mut Rng::new(5100 + i as u64));
            assert_stale_refusal(&db, Some("added"), true, &what);
        }
    }
}

/// A foreign writer adds a view (only page 1 changes), then page 1's header
/// is destroyed: the schema root on page 1 still shows the view.
#[test]
fn foreign_writer_added_a_view_then_header_destroyed() {
    for writer in [Foreign::UnixVfs, Foreign::StockShell] {
        let what = format!("{writer:?} added a view, header destroyed");
        let dir = TestDir::new(&what);
        let db = dir.join("v.db");
        make_protected(&db, "delete", 3);
        writer.run(&db, "CREATE VIEW added_view AS SELECT 42 AS x;");
        damage_pages(&db, &[1], Damage::First100, &mut Rng::new(5200));
        assert_stale_refusal(&db, None, true, &what);
    }
}

/// An application's connection through metadwr to a new WAL database `db`
/// with two tables, checkpointed (the WAL empty, the copy current), and
/// no automatic checkpoints from here on.
fn wal_app(db: &Path) -> rusqlite::Connection {
    let app = open(db);
    assert_eq!(query_str(&app, "PRAGMA journal_mode=WAL").unwrap(), "wal");
    app.execute_batch("PRAGMA wal_autocheckpoint=0;").unwrap();
    enable(&app);
    add_tables(&app, "t", 2);
    app.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    app
}

/// Finding F6 (found by `make compat-litestream`): a program without
/// metadwr checkpoints a schema change the metadwr writer left in the WAL
/// (only page 1 changes), then commits once more, which restarts the WAL:
/// the WAL holds frames again, but not the ones that complete the copy.
/// Then page 1 is destroyed. The copy lacks the view; it must be refused.
#[test]
fn foreign_checkpoint_then_commit_restarts_the_wal_behind_the_copy() {
    for (i, kind) in [Damage::Random, Damage::Zero].into_iter().enumerate() {
        let what = format!("F6: foreign checkpoint and commit in WAL mode, page 1 {kind:?}");
        let dir = TestDir::new(&what);
        let db = dir.join("w.db");
        let a = wal_app(&db);
        let b = open_plain(&db).unwrap();
        b.query_row("SELECT count(*) FROM t0", [], |r| r.get::<_, i64>(0))
            .unwrap();
        a.execute_batch("CREATE VIEW v AS SELECT name FROM t0;")
            .unwrap();
        drop(a); // b is open: no checkpoint at close
        b.execute_batch("PRAGMA wal_checkpoint(PASSIVE); INSERT INTO t1(name) VALUES ('more');")
            .unwrap();
        // b goes away without closing, as a killed process does: its WAL
        // (one frame after the restart) stays.
        std::mem::forget(b);
        assert!(
            sidecar(&db, "-wal").metadata().unwrap().len() > 32,
            "{what}: setup"
        );
        damage_pages(&db, &[1], kind, &mut Rng::new(5250 + i as u64));
        assert_stale_refusal(&db, None, true, &what);
    }
}

/// F8: the application, through metadwr, adds a view in WAL mode (page 1
/// only: the file keeps its size, nothing but page 1 shows it); a
/// program without metadwr (Litestream, a backup script) runs a PASSIVE
/// checkpoint while the application stays open, which copies the frame of
/// page 1 into the file. Every frame is then backfilled, so readers read
/// the file alone, not the WAL. Then page 1 is destroyed. The copy, taken
/// before the view, must be refused; before rule 4b it was served, and
/// the database opened without the application's own view.
#[test]
fn foreign_checkpoint_of_the_applications_own_schema_change() {
    for (i, kind) in [Damage::Random, Damage::Zero].into_iter().enumerate() {
        let what = format!("F8: foreign PASSIVE checkpoint of our CREATE VIEW, page 1 {kind:?}");
        let dir = TestDir::new(&what);
        let db = dir.join("w.db");
        let app = wal_app(&db);
        app.execute_batch("CREATE VIEW v AS SELECT 1;").unwrap();
        let foreign = open_plain(&db).unwrap();
        let (busy, _, copied): (i64, i64, i64) = foreign
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert!(busy == 0 && copied > 0, "{what}: setup");
        drop(foreign);
        damage_pages(&db, &[1], kind, &mut Rng::new(8100 + i as u64));
        // The application stays open: its WAL index says every frame is in
        // the file.
        assert_stale_refusal(&db, None, true, &what);
        drop(app);
    }
}

/// The other side of rule 4b: when the application's own connection ran
/// that checkpoint, the copy followed it and records the frames it saw
/// copied; the same damage then heals exactly.
#[test]
fn own_checkpoint_is_followed_and_heals() {
    let what = "own PASSIVE checkpoint, then page 1 destroyed";
    let dir = TestDir::new(what);
    let db = dir.join("w.db");
    let app = wal_app(&db);
    app.execute_batch(
        "CREATE TABLE added(x); INSERT INTO added VALUES (1); \
         PRAGMA wal_checkpoint(PASSIVE);",
    )
    .unwrap();
    let expected = content(&app).unwrap();
    damage_pages(&db, &[1], Damage::Random, &mut Rng::new(8200));
    let reader = open(&db);
    match view(&reader) {
        Ok(got) => assert_same_content(&expected, &got, what),
        Err(code) => panic!(
            "{what}: not healed: error {code}, status {}",
            dwr_status(&reader)
        ),
    }
    assert_status_prefix(&reader, "enabled (recovered: ", what);
    assert_integrity_ok(&reader, what);
    drop(reader);
    drop(app);
}

// --- the database file was replaced or moved --------------------------------------

/// `cp src app.db` as cp does it when it creates a new file: copy to a
/// temporary name, rename over.
fn replace_by_copy(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("tmp-copy");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

/// A second protected database in `dir` with one more table than `t0..t2`.
fn other_database(dir: &TestDir) -> PathBuf {
    let other = dir.join("other.db");
    make_protected(&other, "delete", 3);
    let conn = open(&other);
    add_tables(&conn, "extra", 1);
    drop(conn);
    other
}

#[test]
fn database_replaced_by_a_copy_of_itself() {
    for (i, kind) in HEADER_DAMAGE.into_iter().enumerate() {
        let what = format!("replaced by a copy of itself, page 1 {kind:?}");
        let dir = TestDir::new(&what);
        let db = dir.join("app.db");
        make_protected(&db, "delete", 3);
        let snapshot = dir.join("snapshot.db");
        std::fs::copy(&db, &snapshot).unwrap();
        replace_by_copy(&snapshot, &db);
        damage_pages(&db, &[1], kind, &mut Rng::new(5300 + i as u64));
        assert_stale_refusal(&db, None, true, &what);
    }
}

#[test]
fn database_replaced_by_a_copy_of_another_database() {
    for (i, kind) in HEADER_DAMAGE.into_iter().enumerate() {
        let what = format!("replaced by another database, page 1 {kind:?}");
        let dir = TestDir::new(&what);
        let db = dir.join("app.db");
        make_protected(&db, "delete", 3);
        let other = other_database(&dir);
        replace_by_copy(&other, &db);
        damage_pages(&db, &[1], kind, &mut Rng::new(5400 + i as u64));
        assert_stale_refusal(&db, Some("extra0"), true, &what);
    }
}

/// A program without the extension restores another database into this one
/// with the backup API, then page 1 is destroyed.
#[test]
fn database_restored_with_the_backup_api_from_another_database() {
    for (i, kind) in HEADER_DAMAGE.into_iter().enumerate() {
        let what = format!("backup API from another database, page 1 {kind:?}");
        let dir = TestDir::new(&what);
        let db = dir.join("app.db");
        make_protected(&db, "delete", 3);
        let other = other_database(&dir);
        {
            let src = open_plain(&other).unwrap();
            let mut dst = open_plain(&db).unwrap();
            let backup = rusqlite::backup::Backup::new(&src, &mut dst).unwrap();
            backup
                .run_to_completion(100, std::time::Duration::ZERO, None)
                .unwrap();
        }
        damage_pages(&db, &[1], kind, &mut Rng::new(5500 + i as u64));
        assert_stale_refusal(&db, Some("extra0"), true, &what);
    }
}

/// The database and its `-dwr` copied together to another path, then the
/// copy damaged.
#[test]
fn database_copied_with_its_dwr_to_another_path() {
    for (i, kind) in HEADER_DAMAGE.into_iter().enumerate() {
        let what = format!("copied with its -dwr, page 1 {kind:?}");
        let dir = TestDir::new(&what);
        let db = dir.join("app.db");
        make_protected(&db, "delete", 3);
        let moved = dir.join("moved.db");
        std::fs::copy(&db, &moved).unwrap();
        std::fs::copy(sidecar(&db, "-dwr"), sidecar(&moved, "-dwr")).unwrap();
        damage_pages(&moved, &[1], kind, &mut Rng::new(5600 + i as u64));
        assert_stale_refusal(&moved, None, true, &what);
    }
}

// --- the -dwr does not belong to the file -----------------------------------------

#[test]
fn dwr_copied_from_another_database_with_the_same_schema() {
    for (i, kind) in HEADER_DAMAGE.into_iter().enumerate() {
        let what = format!("-dwr of another database, page 1 {kind:?}");
        let dir = TestDir::new(&what);
        let a = dir.join("a.db");
        let b = dir.join("b.db");
        make_protected(&a, "delete", 3);
        make_protected(&b, "delete", 3);
        std::fs::copy(sidecar(&b, "-dwr"), sidecar(&a, "-dwr")).unwrap();
        damage_pages(&a, &[1], kind, &mut Rng::new(5700 + i as u64));
        assert_stale_refusal(&a, None, true, &what);
    }
}

/// What was committed through metadwr after the `-dwr` was saved.
#[derive(Debug, Clone, Copy)]
enum Later {
    /// Two tables: the file grows.
    TablesGrow,
    /// A table whose pages come from the freelist: same size.
    TableFromFreelist,
}

/// The `-dwr` is older than the file: saved, more schema changes committed,
/// then put back (a power loss under the relaxed sync policy).
#[test]
fn dwr_older_than_the_file() {
    for later in [Later::TablesGrow, Later::TableFromFreelist] {
        for (i, kind) in HEADER_DAMAGE.into_iter().enumerate() {
            let what = format!("-dwr older than the file ({later:?}), page 1 {kind:?}");
            let dir = TestDir::new(&what);
            let db = dir.join("s.db");
            make_protected(&db, "delete", 3);
            let conn = open(&db);
            if let Later::TableFromFreelist = later {
                conn.execute_batch("DROP TABLE t2;").unwrap();
            }
            let saved = dir.join("saved-dwr");
            std::fs::copy(sidecar(&db, "-dwr"), &saved).unwrap();
            let size = std::fs::metadata(&db).unwrap().len();
            match later {
                Later::TablesGrow => add_tables(&conn, "later", 2),
                Later::TableFromFreelist => conn.execute_batch(ADD_TABLE).unwrap(),
            }
            drop(conn);
            if let Later::TableFromFreelist = later {
                assert_eq!(
                    std::fs::metadata(&db).unwrap().len(),
                    size,
                    "setup: same size"
                );
            }
            std::fs::copy(&saved, sidecar(&db, "-dwr")).unwrap();
            damage_pages(&db, &[1], kind, &mut Rng::new(5800 + i as u64));
            let missing = match later {
                Later::TablesGrow => "later0",
                Later::TableFromFreelist => "added",
            };
            assert_stale_refusal(&db, Some(missing), true, &what);
        }
    }
}

// --- healthy again -----------------------------------------------------------------

/// After a stale refusal, the damage is undone; the next write through
/// metadwr refreshes the copy, and a later damage is healed again.
fn healthy_again(setup: impl Fn(&Path), what: &str) {
    let dir = TestDir::new(what);
    let db = dir.join("h.db");
    make_protected(&db, "delete", 3);
    setup(&db);
    let good_page1 = read_page(&db, 1, page_size_of(&db));
    damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(5900));
    assert_stale_refusal(&db, None, true, what);
    write_at(&db, 0, &good_page1);
    let conn = open(&db);
    conn.execute("INSERT INTO t0(name) VALUES ('after the undo')", [])
        .unwrap_or_else(|e| panic!("{what}: a write on the healthy database: {e}"));
    let expected = content(&conn).unwrap();
    drop(conn);
    let original = std::fs::read(&db).unwrap();
    let damaged = damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(5901));
    let conn = open_and_expect_healed(&db, &expected, &format!("{what}: heal after the refresh"));
    assert_repaired(&db, &conn, &original, &damaged, &expected, what);
}

#[test]
fn healed_again_after_a_foreign_writer_once_the_copy_is_refreshed() {
    healthy_again(
        |db| Foreign::StockShell.run(db, ADD_TABLE),
        "foreign writer, then healthy again",
    );
}

#[test]
fn healed_again_after_an_old_dwr_once_the_copy_is_refreshed() {
    healthy_again(
        |db| {
            let dwr = sidecar(db, "-dwr");
            let saved = std::fs::read(&dwr).unwrap();
            add_tables(&open(db), "later", 2);
            std::fs::write(&dwr, saved).unwrap();
        },
        "old -dwr put back, then healthy again",
    );
}
