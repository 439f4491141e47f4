//! The copy stays current: after schema and data churn (CREATE / ALTER /
//! DROP, indexes, views, triggers, inserts and deletes that grow and shrink
//! the freelist, incremental_vacuum, VACUUM), a backup into the database,
//! mmap, every synchronous level and a page-size change, damaging page 1
//! and the whole schema tree and restoring brings back exactly the latest
//! state.

mod common;

use common::churn::Churn;
use common::*;
use rusqlite::Connection;
use std::path::Path;

/// Opens `db` through metadwr and applies `pragmas` (one batch).
fn open_with(db: &Path, pragmas: &str) -> Connection {
    let conn = open(db);
    conn.execute_batch(pragmas).unwrap();
    conn
}

/// Rounds of churn on one writer; after each round the database is
/// damaged and restored. In rollback mode the writer stays open (and idle)
/// across the damage and restore, so the copy must be current at each
/// commit, not only at close, and the writer must see the restored pages.
fn churn_rounds(journal: &str, page_size: u32, auto_vacuum: &str, seed: u64) {
    let dir = TestDir::new(&format!("churn-{journal}-{page_size}-{auto_vacuum}"));
    let db = dir.join("c.db");
    let setup = format!(
        "PRAGMA page_size={page_size}; PRAGMA auto_vacuum={auto_vacuum}; \
         PRAGMA journal_mode={journal};"
    );
    let mut writer = Some(open_with(&db, &setup));
    enable(writer.as_ref().unwrap());
    let mut churn = Churn::new(seed, "a");
    let kinds = [
        Damage::Zero,
        Damage::First100,
        Damage::Random,
        Damage::First32,
    ];
    let (mut most_pages, mut most_free) = (0, 0);
    for (round, &kind) in kinds.iter().enumerate() {
        if writer.is_none() {
            writer = Some(open(&db));
        }
        let w = writer.as_ref().unwrap();
        churn.run(w, 30);
        assert_eq!(dwr_status(w), "enabled", "round {round}");
        let free: i64 = w
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        most_free = most_free.max(free);
        let expected = content(w).unwrap();
        if journal == "wal" {
            close_checkpointed(writer.take().unwrap());
        }
        let via = if round % 2 == 0 {
            Via::LongLivedMetaRecover
        } else {
            Via::Pragma
        };
        let pages = damage_and_recover(&db, &expected, via, kind, seed + round as u64);
        most_pages = most_pages.max(pages);
        if let Some(w) = &writer {
            // The idle writer notices the restore (page 1's change counter
            // moved) and keeps working on the restored pages.
            assert_same_content(&expected, &content(w).unwrap(), "idle writer");
        }
    }
    // The churn is only a test if the schema spilled past page 1 and the
    // freelist was used.
    assert!(most_pages > 1, "the schema tree never grew past page 1");
    if auto_vacuum != "full" {
        assert!(most_free > 0, "the freelist was never used");
    }
}

#[test]
fn churn_rollback_incremental_vacuum() {
    churn_rounds("delete", 1024, "incremental", 11);
}

#[test]
fn churn_truncate_full_vacuum_small_pages() {
    churn_rounds("truncate", 512, "full", 12);
}

#[test]
fn churn_wal() {
    churn_rounds("wal", 1024, "incremental", 13);
}

/// `sqlite3_backup` from another database into a protected one: every page
/// of the destination is rewritten, with a different page size.
#[test]
fn backup_into_a_protected_database() {
    let dir = TestDir::new("backup");
    let dst_path = dir.join("dst.db");
    let src_path = dir.join("src.db");
    let dst = open_with(&dst_path, "PRAGMA page_size=1024;");
    enable(&dst);
    add_tables(&dst, "old", 5);
    let src = open_with(&src_path, "PRAGMA page_size=4096;");
    common::schema::build(&src, common::schema::SchemaSize::Medium);
    add_tables(&src, "fresh", 3);
    let expected = content(&src).unwrap();
    {
        let mut dst = dst;
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).unwrap();
        backup
            .run_to_completion(7, std::time::Duration::ZERO, None)
            .unwrap();
        drop(backup);
        // (The destination connection's PRAGMA page_size still answers
        // the old size; the file has the source's.)
        assert_eq!(page_size_of(&dst_path), 4096);
        assert_eq!(dwr_status(&dst), "enabled");
        assert_same_content(&expected, &content(&dst).unwrap(), "after backup");
    }
    drop(src);
    damage_and_recover(
        &dst_path,
        &expected,
        Via::LongLivedMetaRecover,
        Damage::Zero,
        21,
    );
    // And once more through the pragma.
    damage_and_recover(&dst_path, &expected, Via::Pragma, Damage::Random, 22);
}

fn churn_with(journal: &str, pragmas: &str, tag: &str, seed: u64) {
    let dir = TestDir::new(tag);
    let db = dir.join("c.db");
    let w = open_with(&db, &format!("PRAGMA journal_mode={journal}; {pragmas}"));
    enable(&w);
    let mut churn = Churn::new(seed, "m");
    churn.run(&w, 30);
    let expected = content(&w).unwrap();
    close_checkpointed(w);
    damage_and_recover(
        &db,
        &expected,
        Via::LongLivedMetaRecover,
        Damage::Zero,
        seed,
    );
}

#[test]
fn mmap_rollback() {
    churn_with("delete", "PRAGMA mmap_size=268435456;", "mmap-delete", 31);
}

#[test]
fn mmap_wal() {
    churn_with("wal", "PRAGMA mmap_size=268435456;", "mmap-wal", 32);
}

#[test]
fn synchronous_levels() {
    for (i, journal) in ["delete", "wal"].iter().enumerate() {
        for (j, level) in ["OFF", "NORMAL", "FULL"].iter().enumerate() {
            churn_with(
                journal,
                &format!("PRAGMA synchronous={level};"),
                &format!("sync-{journal}-{level}"),
                40 + (i * 3 + j) as u64,
            );
        }
    }
}

/// `PRAGMA page_size=N; VACUUM` on a protected database, both ways.
#[test]
fn page_size_change_by_vacuum() {
    let dir = TestDir::new("page-size");
    let db = dir.join("p.db");
    let w = open_with(&db, "PRAGMA page_size=1024;");
    enable(&w);
    add_tables(&w, "t", 12);
    let mut churn = Churn::new(51, "p");
    churn.vacuum = false;
    churn.run(&w, 10);
    for (n, size) in [8192u32, 512].into_iter().enumerate() {
        w.execute_batch(&format!("PRAGMA page_size={size}; VACUUM;"))
            .unwrap();
        let ps: u32 = w.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        assert_eq!(ps, size);
        churn.run(&w, 5);
        let expected = content(&w).unwrap();
        assert_eq!(page_size_of(&db), size);
        let via = [Via::LongLivedMetaRecover, Via::Pragma][n];
        damage_and_recover(&db, &expected, via, Damage::Zero, 52 + n as u64);
    }
}

/// Bit rot in a schema page that SQLite cannot notice (letters of a
/// comment change case) is healed on read while the copy describes the
/// file: the reader sees the original text, the file is repaired, and the
/// rot never reaches the copy.
#[test]
fn later_commits_do_not_copy_bit_rot() {
    let dir = TestDir::new("bit-rot");
    let db = dir.join("r.db");
    let conn = open_with(&db, "PRAGMA page_size=1024;");
    enable(&conn);
    common::schema::build(&conn, common::schema::SchemaSize::Medium);
    let original_schema = schema_dump(&conn).unwrap();
    drop(conn);
    let overflow: Vec<u32> = schema_pages_cli(&db)
        .into_iter()
        .filter(|p| p.1 == PageKind::Overflow)
        .map(|p| p.0)
        .collect();
    let pgno = overflow[overflow.len() / 2];
    let good = read_page(&db, pgno, 1024);
    let mut rotten = good.clone();
    let mut flipped = 0;
    for b in rotten[4..].iter_mut().step_by(97) {
        if b.is_ascii_lowercase() && flipped < 3 {
            *b ^= 0x20;
            flipped += 1;
        }
    }
    assert_eq!(flipped, 3);
    write_page(&db, pgno, 1024, &rotten);

    let plain = open_plain(&db).unwrap();
    assert_ne!(
        schema_dump(&plain).unwrap(),
        original_schema,
        "plain SQLite reads the rotten text without error"
    );
    drop(plain);
    let conn = open(&db);
    assert_eq!(
        schema_dump(&conn).unwrap(),
        original_schema,
        "healed on read"
    );
    let report = healed_report(&conn).expect("the healing read repaired the file");
    assert_eq!(parse_restored(&report).pages, vec![pgno], "{report}");
    assert_eq!(read_page(&db, pgno, 1024), good);
    conn.execute("INSERT INTO m00(id) VALUES (1000)", [])
        .unwrap();
    let again = meta_recover(&conn).unwrap_or_else(|e| panic!("meta_recover: {e}"));
    assert!(parse_intact(&again).is_some(), "{again}");
    assert_eq!(read_page(&db, pgno, 1024), good);
    assert_eq!(schema_dump(&conn).unwrap(), original_schema);
    assert_integrity_ok(&conn, "after restore");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM m00 WHERE id = 1000", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "the later commit survives the restore");
}

/// SQLite built with `SECURE_DELETE` (Debian's 3.40.1), or any SQLite after
/// `PRAGMA secure_delete=ON`, zeroes every page it frees. When those are
/// the pages the copy's witnesses were on (the rows written last), the
/// next generation must find witnesses in the data that is left, not end
/// up with none: with page 1 destroyed a copy without witnesses is refused
/// (found by `make compat`'s itest-system run on 3.40.1, where the two
/// connections of `concurrency::two_connections_alternate_rollback` drop
/// tables until every witness is a zeroed free page). Both ways of freeing:
/// `DROP TABLE` (a schema change) and `DELETE FROM` (page 1 alone changes,
/// the schema tree does not).
#[test]
fn witnesses_outlive_pages_freed_by_secure_delete() {
    let frees = [("drop", "DROP TABLE gone"), ("delete", "DELETE FROM gone")];
    for (i, journal) in ["delete", "wal"].into_iter().enumerate() {
        for (j, (tag, free)) in frees.into_iter().enumerate() {
            let dir = TestDir::new(&format!("secure-delete-{journal}-{tag}"));
            let db = dir.join("s.db");
            let w = open_with(
                &db,
                &format!(
                    "PRAGMA page_size=1024; PRAGMA journal_mode={journal}; \
                     PRAGMA secure_delete=ON;"
                ),
            );
            enable(&w);
            // In WAL mode the copy follows checkpoints: one after each
            // step, so that the generation before the free takes its
            // witnesses from `gone` alone, as in rollback mode.
            let step = |sql: &str| {
                w.execute_batch(sql).unwrap();
                if journal == "wal" {
                    w.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
                }
            };
            step(
                "CREATE TABLE keep(id INTEGER PRIMARY KEY, body TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 80)
                 INSERT INTO keep(body) SELECT hex(randomblob(60)) FROM n;",
            );
            // About 16 pages: more than the search reads from the end of
            // the file, too few for the freelist trunk that lists them to
            // have content enough to serve as a witness itself.
            step(
                "CREATE TABLE gone(id INTEGER PRIMARY KEY, body TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 120)
                 INSERT INTO gone(body) SELECT hex(randomblob(60)) FROM n;",
            );
            step(free);
            let free_pages: u32 = w
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .unwrap();
            assert!(
                (9..=24).contains(&free_pages),
                "{journal} {tag}: {free_pages} free pages"
            );
            let expected = content(&w).unwrap();
            close_checkpointed(w);
            damage_and_recover(
                &db,
                &expected,
                Via::Pragma,
                Damage::Zero,
                60 + (i * 2 + j) as u64,
            );
        }
    }
}
