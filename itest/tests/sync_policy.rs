//! The `-dwr` sync policy and the write volume, measured with
//! `PRAGMA meta_double_write_stats` deltas.

mod common;

use common::*;
use rusqlite::Connection;

fn commit_rows(conn: &Connection, n: usize) {
    for i in 0..n {
        conn.execute(
            "INSERT INTO t0(name, score) VALUES (?1, ?2)",
            (format!("r{i}"), i as f64),
        )
        .unwrap();
    }
}

/// `full`: one fsync per generation, in rollback and WAL mode.
fn full(journal: &str) {
    let dir = TestDir::new(&format!("sync-full-{journal}"));
    let db = dir.join("s.db");
    make_protected(&db, journal, 2);
    let conn = open(&db);
    assert_eq!(
        query_str(&conn, "PRAGMA meta_double_write_sync").unwrap(),
        "periodic"
    );
    assert_eq!(
        query_str(&conn, "PRAGMA meta_double_write_sync=full").unwrap(),
        "full"
    );
    assert_eq!(
        query_str(&conn, "PRAGMA meta_double_write_sync").unwrap(),
        "full"
    );
    let s0 = stats(&conn);
    commit_rows(&conn, 20);
    add_tables(&conn, "more", 3);
    for i in 0..5 {
        conn.execute_batch(&format!(
            "BEGIN; CREATE TABLE extra{i}(x); INSERT INTO extra{i} VALUES ({i}); COMMIT;"
        ))
        .unwrap();
        if journal == "wal" {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .unwrap();
        }
    }
    let d = stats(&conn).since(s0);
    assert!(d.generations >= 5, "generations written: {d:?}");
    if journal == "delete" {
        // One generation per commit: 20 inserts, 1 add_tables, 5 creates,
        // each written PENDING at the database sync and fsynced there, then
        // confirmed by a header-only update that the next fsync covers.
        assert_eq!(d.generations, 26, "{d:?}");
        assert_eq!(d.flag_updates, 26, "one confirmation per commit: {d:?}");
        assert_eq!(d.fsyncs, d.generations, "one fsync per generation: {d:?}");
    } else {
        // WAL: one generation per checkpoint. The first write after the
        // WAL was emptied marks the copy WAL_AHEAD, durably, before any
        // frame, and records the WAL session its frames went into when it
        // releases the write lock (not fsynced: losing it only refuses);
        // each of the 5 TRUNCATE checkpoints empties the WAL and clears
        // the mark (no fsync needed). Set, record and clear follow each
        // other.
        let sets = d.flag_updates.div_ceil(3);
        assert!((1..=6).contains(&sets), "{d:?}");
        assert_eq!(
            d.fsyncs,
            d.generations + sets,
            "one fsync per generation and one per WAL_AHEAD set: {d:?}"
        );
    }
}

#[test]
fn full_syncs_every_generation_rollback() {
    full("delete");
}

#[test]
fn full_syncs_every_generation_wal() {
    full("wal");
}

/// `periodic` (the default): 300 single-row commits write 300 generations
/// but fsync the `-dwr` at most 3 times (once per 100 updates).
#[test]
fn periodic_syncs_at_most_once_per_hundred_updates() {
    let dir = TestDir::new("sync-periodic");
    let db = dir.join("s.db");
    make_protected(&db, "delete", 2);
    let conn = open(&db);
    assert_eq!(
        query_str(&conn, "PRAGMA meta_double_write_sync").unwrap(),
        "periodic"
    );
    let s0 = stats(&conn);
    commit_rows(&conn, 300);
    let d = stats(&conn).since(s0);
    assert_eq!(d.generations, 300, "{d:?}");
    assert!((1..=3).contains(&d.fsyncs), "fsyncs for 300 updates: {d:?}");
}

/// `off` (here through the URI parameter): no fsync of the `-dwr` at all.
#[test]
fn off_never_syncs() {
    let dir = TestDir::new("sync-off");
    let db = dir.join("s.db");
    make_protected(&db, "delete", 2);
    let conn = open_uri(&db, "dwr_sync=off");
    assert_eq!(
        query_str(&conn, "PRAGMA meta_double_write_sync").unwrap(),
        "off"
    );
    let s0 = stats(&conn);
    commit_rows(&conn, 150);
    let d = stats(&conn).since(s0);
    assert_eq!(d.generations, 150, "{d:?}");
    assert_eq!(d.fsyncs, 0, "{d:?}");
}

/// The URI parameter `dwr_sync=full` sets the policy for that connection.
#[test]
fn uri_parameter_sets_full() {
    let dir = TestDir::new("sync-uri");
    let db = dir.join("s.db");
    make_protected(&db, "delete", 2);
    let conn = open_uri(&db, "dwr_sync=full");
    assert_eq!(
        query_str(&conn, "PRAGMA meta_double_write_sync").unwrap(),
        "full"
    );
    let s0 = stats(&conn);
    commit_rows(&conn, 10);
    let d = stats(&conn).since(s0);
    assert_eq!((d.generations, d.fsyncs), (10, 10), "{d:?}");
}

#[test]
fn unknown_sync_value_is_an_error() {
    let dir = TestDir::new("sync-bad");
    let db = dir.join("s.db");
    make_protected(&db, "delete", 1);
    let conn = open(&db);
    let err = query_msg(&conn, "PRAGMA meta_double_write_sync=sometimes").unwrap_err();
    assert!(err.starts_with("meta_double_write_sync: "), "{err}");
    assert_eq!(
        query_str(&conn, "PRAGMA meta_double_write_sync").unwrap(),
        "periodic"
    );
}

/// A commit that only inserts a row into a table changes page 1 (its
/// change counter) and no schema page: exactly one page goes to the
/// `-dwr`, also when the schema spans many pages.
#[test]
fn a_row_insert_writes_only_page_1() {
    let dir = TestDir::new("sync-one-page");
    let db = dir.join("s.db");
    let conn = open(&db);
    conn.execute_batch("PRAGMA page_size=1024;").unwrap();
    enable(&conn);
    common::schema::build(&conn, common::schema::SchemaSize::Medium);
    add_tables(&conn, "t", 2);
    drop(conn);
    let pages = schema_pages_cli(&db).len();
    assert!(pages > 10, "the schema spans {pages} pages");
    let conn = open(&db);
    for i in 0..3 {
        let s0 = stats(&conn);
        commit_rows(&conn, 1);
        let d = stats(&conn).since(s0);
        assert_eq!((d.generations, d.pages), (1, 1), "insert {i}: {d:?}");
    }
    // Many rows in one commit: still page 1 only.
    let s0 = stats(&conn);
    conn.execute_batch(
        "BEGIN; INSERT INTO m00(id) SELECT 1000 + id FROM m01; \
         INSERT INTO t1(name) SELECT name FROM t0; COMMIT;",
    )
    .unwrap();
    let d = stats(&conn).since(s0);
    assert_eq!((d.generations, d.pages), (1, 1), "bulk insert: {d:?}");
}

#[test]
fn stats_of_an_unprotected_database() {
    let dir = TestDir::new("stats-off");
    let db = dir.join("s.db");
    let conn = open(&db);
    add_tables(&conn, "t", 1);
    assert_eq!(
        query_str(&conn, "PRAGMA meta_double_write_stats").unwrap(),
        "disabled"
    );
}
