//! Projected copies (docs/dwr-format.md §6.6): a WAL-mode application
//! closes while another program keeps the database open (Litestream, a
//! shell, a script), and that program, which has no metadwr, checkpoints
//! the application's last commits and deletes the WAL. Page 1 (and the
//! rest of the schema) is destroyed afterwards: the copy projected at the
//! close heals it exactly, where before it had to refuse.
//!
//! And the other side: what the projection must never be used for.

mod common;

use common::heal::*;
use common::*;
use std::path::Path;

/// A protected WAL database with two tables, the WAL empty, and a
/// program without metadwr holding it open (it has read once, so it keeps
/// its shared lock and the application's close is not the last).
fn app_and_holder(db: &Path) -> (rusqlite::Connection, rusqlite::Connection) {
    let app = open(db);
    assert_eq!(query_str(&app, "PRAGMA journal_mode=WAL").unwrap(), "wal");
    app.execute_batch("PRAGMA wal_autocheckpoint=0;").unwrap();
    enable(&app);
    add_tables(&app, "t", 2);
    app.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let holder = open_plain(db).unwrap();
    holder
        .execute_batch("PRAGMA wal_autocheckpoint=0; SELECT count(*) FROM sqlite_schema;")
        .unwrap();
    (app, holder)
}

/// Schema changes a copy cannot see without page 1 (a column, a view, the
/// user version) and ones it can (a table, rows that grow the file).
const APP_WORK: &str = "ALTER TABLE t0 ADD COLUMN extra DEFAULT 'x'; \
     CREATE VIEW v AS SELECT count(*) FROM t1; \
     PRAGMA user_version = 7; \
     CREATE TABLE added(a, b); \
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) \
     INSERT INTO added SELECT i, randomblob(300) FROM n;";

fn checkpoint_and_close(holder: rusqlite::Connection) {
    let (busy, _, _): (i64, i64, i64) = holder
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0, "the holder's checkpoint was blocked");
    drop(holder);
}

#[test]
fn a_checkpoint_after_the_application_closed_heals_exactly() {
    for (i, kind) in [Damage::Random, Damage::Zero, Damage::First100]
        .into_iter()
        .enumerate()
    {
        for all_schema in [false, true] {
            let what = format!("projection, page 1 {kind:?}, whole schema {all_schema}");
            let dir = TestDir::new(&what);
            let db = dir.join("p.db");
            let (app, holder) = app_and_holder(&db);
            app.execute_batch(APP_WORK).unwrap();
            let expected = content(&app).unwrap();
            drop(app);
            checkpoint_and_close(holder);
            assert_no_wal_frames(&db);
            let before = std::fs::read(&db).unwrap();
            let mut pages: Vec<u32> = schema_pages_cli(&db).into_iter().map(|(p, _)| p).collect();
            if !all_schema {
                pages.retain(|&p| p == 1);
            }
            let mut rng = Rng::new(9100 + i as u64);
            damage_pages(&db, &pages, kind, &mut rng);
            assert_usual_error(&plain_view(&db), &format!("{what}: plain SQLite"));
            let conn = open(&db);
            match view(&conn) {
                Ok(got) => assert_same_content(&expected, &got, &what),
                Err(code) => panic!(
                    "{what}: not healed: error {code}, status {}",
                    dwr_status(&conn)
                ),
            }
            assert_status_prefix(&conn, "enabled (recovered: ", &what);
            assert_integrity_ok(&conn, &what);
            drop(conn);
            let after = std::fs::read(&db).unwrap();
            assert_eq!(after.len(), before.len(), "{what}: file size");
            assert_eq!(
                mask_counters(&after),
                mask_counters(&before),
                "{what}: the file is repaired byte for byte"
            );
            assert_same_content(&expected, &plain_view(&db).unwrap(), &what);
        }
    }
}

/// A program without metadwr writes after the application closed: a new
/// table grows the file, which the projection's size does not match.
#[test]
fn a_foreign_writer_after_the_close_is_refused() {
    let what = "projection, then a foreign CREATE TABLE, then page 1 destroyed";
    let dir = TestDir::new(what);
    let db = dir.join("p.db");
    let (app, holder) = app_and_holder(&db);
    app.execute_batch(APP_WORK).unwrap();
    drop(app);
    holder
        .execute_batch("CREATE TABLE later(x); INSERT INTO later VALUES (1);")
        .unwrap();
    checkpoint_and_close(holder);
    assert_no_wal_frames(&db);
    damage_pages(&db, &[1], Damage::Random, &mut Rng::new(9200));
    let state = DiskState::take(&db);
    let conn = open(&db);
    assert_usual_error(&view(&conn), what);
    assert_status_prefix(&conn, "enabled (stale: ", what);
    drop(conn);
    state.assert_db_unchanged(what);
}

/// A connection through metadwr that writes after the close retires the
/// projection before its first frame: its change (a view, on page 1 only)
/// is in no copy, so once a program without metadwr checkpoints it, the
/// restore must refuse, not serve the projection without the view.
#[test]
fn a_metadwr_writer_after_the_close_retires_the_projection() {
    let what = "projection, then a metadwr CREATE VIEW checkpointed by another program";
    let dir = TestDir::new(what);
    let db = dir.join("p.db");
    let (app, holder) = app_and_holder(&db);
    app.execute_batch(APP_WORK).unwrap();
    drop(app);
    let later = open(&db);
    later
        .execute_batch("PRAGMA wal_autocheckpoint=0; CREATE VIEW v2 AS SELECT 2;")
        .unwrap();
    // The copy still lacks v2 when the holder checkpoints it into the file.
    checkpoint_and_close(holder);
    // A crash of the application, as far as the -dwr goes: its close
    // would take a new copy, which this test is not about.
    std::mem::forget(later);
    damage_pages(&db, &[1], Damage::Random, &mut Rng::new(9300));
    let conn = open(&db);
    let seen = view(&conn);
    if let Ok(c) = &seen {
        assert!(
            c.schema.contains("v2"),
            "{what}: a stale copy was served: no view v2"
        );
    }
    assert_usual_error(&seen, what);
    assert_status_prefix(&conn, "enabled (stale: ", what);
}

/// While the WAL still holds the frames, the generation the projection was
/// made over describes the file, and a damaged page 1 heals from it.
#[test]
fn with_the_frames_still_in_the_wal_the_base_copy_heals() {
    let what = "projection, WAL not checkpointed, page 1 destroyed";
    let dir = TestDir::new(what);
    let db = dir.join("p.db");
    let (app, holder) = app_and_holder(&db);
    app.execute_batch(APP_WORK).unwrap();
    let expected = content(&app).unwrap();
    drop(app);
    damage_pages(&db, &[1], Damage::Random, &mut Rng::new(9400));
    let conn = open(&db);
    match view(&conn) {
        Ok(got) => assert_same_content(&expected, &got, what),
        Err(code) => panic!(
            "{what}: not healed: error {code}, status {}",
            dwr_status(&conn)
        ),
    }
    assert_integrity_ok(&conn, what);
    drop(conn);
    checkpoint_and_close(holder);
    assert_same_content(&expected, &plain_view(&db).unwrap(), what);
}
