//! `meta_salvage`: every readable row of a damaged database back into its
//! own table, in a new database; nothing altered, nothing in a wrong table.
//!
//! Each test builds a real database through metadwr (so its `-dwr` holds
//! a copy), damages the closed file, salvages it, and compares the output
//! with the rows recorded before the damage, row by row.

mod common;

use common::*;
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A database with most of what a schema can hold: INTEGER PRIMARY KEY,
/// plain rowid tables, NOT NULL, STRICT, WITHOUT ROWID, AUTOINCREMENT,
/// generated columns, overflow TEXT and BLOBs, indexes (one UNIQUE), a
/// view and a trigger; deletes leave free pages.
fn rich_database(path: &Path, journal: &str, page_size: u32, auto_vacuum: bool, rows: u32) {
    let conn = open(path);
    conn.execute_batch(&format!(
        "PRAGMA page_size={page_size}; PRAGMA auto_vacuum={};",
        if auto_vacuum { 1 } else { 0 }
    ))
    .unwrap();
    assert_eq!(
        query_str(&conn, &format!("PRAGMA journal_mode={journal}")).unwrap(),
        journal
    );
    enable(&conn);
    conn.execute_batch(&format!(
        "PRAGMA user_version=77; PRAGMA application_id=1234567;
         BEGIN;
         CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, photo BLOB);
         CREATE TABLE notes(body TEXT, n INTEGER, extra);
         CREATE TABLE kv(k TEXT PRIMARY KEY, v INT NOT NULL) WITHOUT ROWID;
         CREATE TABLE typed(a INTEGER, b TEXT, c REAL, d BLOB, e ANY) STRICT;
         CREATE TABLE seq(id INTEGER PRIMARY KEY AUTOINCREMENT, t TEXT);
         CREATE TABLE gen(x INTEGER, y AS (x * 2) STORED, z AS (x + 1) VIRTUAL, w TEXT);
         CREATE INDEX people_name ON people(name);
         CREATE UNIQUE INDEX notes_n ON notes(n);
         CREATE VIEW rich AS SELECT name FROM people WHERE score > 10;
         CREATE TRIGGER people_log AFTER INSERT ON people BEGIN
           INSERT INTO seq(t) VALUES (new.name);
         END;
         WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < {rows})
         INSERT INTO people(name, score, photo)
           SELECT 'person ' || n, n * 0.5, CASE WHEN n % 50 = 0 THEN randomblob(3000 + n) END FROM i;
         WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < {rows} / 4)
         INSERT INTO notes SELECT printf('%.*c', (n % 40) * 60, 'x') || n, n, CASE n % 3 WHEN 0 THEN 1.5 WHEN 1 THEN 'text' ELSE x'00ff' END FROM i;
         WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < {rows} / 2)
         INSERT INTO kv SELECT 'key ' || n, n FROM i;
         WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 200)
         INSERT INTO typed SELECT n, 't' || n, n / 3.0, randomblob(8), CASE n % 2 WHEN 0 THEN n ELSE 'a' END FROM i;
         WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 300)
         INSERT INTO gen(x, w) SELECT n, 'w' || n FROM i;
         DELETE FROM people WHERE id % 9 = 0;
         DELETE FROM seq WHERE id > {rows} - 5;
         COMMIT;"
    ))
    .unwrap();
    close_checkpointed(conn);
}

/// Every table's rows by key (rowid, or the primary key of a WITHOUT ROWID
/// table), rendered; the salvage's own tables left out.
fn rows_by_key(conn: &Connection) -> BTreeMap<String, BTreeMap<String, String>> {
    let tables: Vec<(String, bool)> = {
        let mut st = conn
            .prepare(
                "SELECT name, sql LIKE '%WITHOUT ROWID%' FROM sqlite_schema WHERE type = 'table' \
                 AND name NOT IN ('lost_and_found', 'metadwr_salvage_report', 'metadwr_salvage_info')",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut out = BTreeMap::new();
    for (t, without_rowid) in tables {
        let key = if without_rowid { "k" } else { "rowid" };
        let key = if t == "sqlite_sequence" { "name" } else { key };
        let dump = dump_query(
            conn,
            &format!("SELECT {key}, * FROM {} ORDER BY 1", quote_ident(&t)),
        )
        .unwrap();
        let rows = dump
            .lines()
            .map(|l| {
                let (k, rest) = l.split_once('|').unwrap_or((l, ""));
                (k.to_string(), rest.to_string())
            })
            .collect();
        out.insert(t, rows);
    }
    out
}

/// The schema as a set of (type, name, table, sql), without root pages
/// and the salvage's own tables.
fn schema_set(conn: &Connection) -> BTreeSet<String> {
    dump_query(
        conn,
        "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT IN \
         ('lost_and_found', 'metadwr_salvage_report', 'metadwr_salvage_info')",
    )
    .unwrap()
    .lines()
    .map(String::from)
    .collect()
}

/// How the output compares with the original.
#[derive(Debug, Default)]
struct Score {
    exact: u64,
    /// Output rows whose key is not in the original table, or whose values
    /// differ: must be 0.
    altered: u64,
    missing: u64,
}

fn score(
    original: &BTreeMap<String, BTreeMap<String, String>>,
    salvaged: &BTreeMap<String, BTreeMap<String, String>>,
) -> Score {
    let mut s = Score::default();
    for (t, rows) in salvaged {
        let orig = original
            .get(t)
            .unwrap_or_else(|| panic!("table {t} was not in the original"));
        for (k, v) in rows {
            match orig.get(k) {
                Some(o) if o == v => s.exact += 1,
                _ => {
                    eprintln!("altered or foreign row in {t}: {k}|{v}");
                    s.altered += 1
                }
            }
        }
    }
    for (t, rows) in original {
        let got = salvaged.get(t);
        s.missing += rows
            .keys()
            .filter(|k| got.is_none_or(|g| !g.contains_key(*k)))
            .count() as u64;
    }
    s
}

/// The first column of the first row, as text.
fn one(conn: &Connection, sql: &str) -> String {
    conn.query_row(sql, [], |r| {
        Ok(match r.get_ref(0)? {
            rusqlite::types::ValueRef::Null => String::new(),
            rusqlite::types::ValueRef::Integer(i) => i.to_string(),
            rusqlite::types::ValueRef::Real(f) => f.to_string(),
            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            rusqlite::types::ValueRef::Blob(b) => format!("{b:02x?}"),
        })
    })
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn salvage_pragma(conn: &Connection, out: &Path) -> Result<String, String> {
    query_msg(conn, &format!("PRAGMA meta_salvage='{}'", out.display()))
}

fn info(out: &Connection, key: &str) -> String {
    one(
        out,
        &format!("SELECT value FROM metadwr_salvage_info WHERE key = '{key}'"),
    )
}

#[test]
fn an_intact_database_is_salvaged_exactly() {
    for (journal, ps, av) in [
        ("delete", 1024, false),
        ("wal", 4096, true),
        ("delete", 8192, true),
    ] {
        let dir = TestDir::new("salvage-intact");
        let db = dir.join("a.db");
        rich_database(&db, journal, ps, av, 1500);
        let plain = open_plain(&db).unwrap();
        let before = rows_by_key(&plain);
        let before_schema = schema_set(&plain);
        let seq = dump_query(&plain, "SELECT * FROM sqlite_sequence").unwrap();
        drop(plain);
        let conn = open(&db);
        let out = dir.join("out.db");
        let summary =
            query_str(&conn, &format!("SELECT meta_salvage('{}')", out.display())).unwrap();
        assert!(summary.starts_with("salvaged "), "{summary}");
        let o = open_plain(&out).unwrap();
        assert_integrity_ok(&o, "salvage output");
        let after = rows_by_key(&o);
        let s = score(&before, &after);
        assert_eq!((s.altered, s.missing), (0, 0), "{journal} {ps}: {s:?}");
        assert_eq!(schema_set(&o), before_schema, "{journal} {ps}: schema");
        assert_eq!(
            dump_query(&o, "SELECT * FROM sqlite_sequence").unwrap(),
            seq
        );
        assert_eq!(one(&o, "PRAGMA journal_mode"), journal);
        assert_eq!(one(&o, "PRAGMA page_size"), ps.to_string());
        assert_eq!(one(&o, "PRAGMA auto_vacuum"), if av { "1" } else { "0" });
        assert_eq!(info(&o, "schema_proven_current"), "1");
        assert_eq!(one(&o, "PRAGMA user_version"), "77");
        assert_eq!(one(&o, "PRAGMA application_id"), "1234567");
        assert_eq!(one(&o, "SELECT count(*) FROM lost_and_found"), "0");
        // The generated columns are computed again, the trigger fires.
        assert_eq!(one(&o, "SELECT y + z FROM gen WHERE x = 10"), "31");
        o.execute("INSERT INTO people(name) VALUES ('new')", [])
            .unwrap();
        assert_eq!(one(&o, "SELECT t FROM seq ORDER BY id DESC LIMIT 1"), "new");
    }
}

#[test]
fn a_utf16_database_keeps_its_text() {
    let dir = TestDir::new("salvage-utf16");
    let db = dir.join("u.db");
    let conn = open(&db);
    conn.execute_batch("PRAGMA encoding='UTF-16be';").unwrap();
    enable(&conn);
    conn.execute_batch(
        "CREATE TABLE t(a TEXT, b); INSERT INTO t VALUES ('héllo wörld ✓', 'x'), ('日本語', 2);",
    )
    .unwrap();
    drop(conn);
    let conn = open(&db);
    let out = dir.join("out.db");
    salvage_pragma(&conn, &out).unwrap();
    let o = open_plain(&out).unwrap();
    assert_eq!(one(&o, "PRAGMA encoding"), "UTF-16be");
    assert_eq!(
        one(
            &o,
            "SELECT group_concat(a || '|' || b, ';') FROM (SELECT * FROM t ORDER BY rowid)"
        ),
        "héllo wörld ✓|x;日本語|2"
    );
}

/// Page numbers of each table's and index's B-tree, from the stock shell.
fn pages_by_object(db: &Path) -> BTreeMap<String, Vec<u32>> {
    let mut m: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for l in sqlite3_cli(db, "SELECT name, pageno FROM dbstat ORDER BY pageno;").lines() {
        let (n, p) = l.rsplit_once('|').unwrap();
        m.entry(n.to_string()).or_default().push(p.parse().unwrap());
    }
    m
}

#[test]
fn damaged_pages_lose_rows_but_never_alter_one() {
    let mut total = Score::default();
    for (i, (journal, ps, av, damage)) in [
        ("delete", 1024, false, Damage::Random),
        ("wal", 4096, true, Damage::Zero),
        ("delete", 4096, false, Damage::Zero),
        ("wal", 1024, true, Damage::Random),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = TestDir::new("salvage-damaged");
        let db = dir.join("d.db");
        rich_database(&db, journal, ps, av, 3000);
        let before = rows_by_key(&open_plain(&db).unwrap());
        let objects = pages_by_object(&db);
        let total_pages = std::fs::metadata(&db).unwrap().len() / u64::from(ps);
        let mut rng = Rng::new(100 + i as u64);
        let mut hit: Vec<u32> = objects["sqlite_schema"].clone();
        // 5% of the other pages.
        for p in 2..=total_pages as u32 {
            let zeros = damage == Damage::Zero && read_page(&db, p, ps).iter().all(|&b| b == 0);
            if !hit.contains(&p) && !zeros && rng.below(100) < 5 {
                hit.push(p);
            }
        }
        damage_pages(&db, &hit, damage, &mut rng);
        // Tables none of whose pages were hit must come back whole.
        let untouched: Vec<&String> = objects
            .iter()
            .filter(|(n, pages)| before.contains_key(*n) && pages.iter().all(|p| !hit.contains(p)))
            .map(|(n, _)| n)
            .collect();
        let conn = open(&db);
        let file_before = std::fs::read(&db).unwrap();
        let out = dir.join("out.db");
        let summary = salvage_pragma(&conn, &out).unwrap();
        assert_eq!(
            std::fs::read(&db).unwrap(),
            file_before,
            "the salvage wrote to the damaged file"
        );
        let o = open_plain(&out).unwrap();
        assert_integrity_ok(&o, "salvage output");
        let after = rows_by_key(&o);
        let s = score(&before, &after);
        eprintln!("{journal} {ps} auto_vacuum={av} {damage:?}: {summary}; {s:?}");
        assert_eq!(s.altered, 0, "{journal} {ps}: altered rows");
        for t in untouched {
            assert_eq!(
                after.get(t),
                before.get(t),
                "{journal} {ps}: untouched table {t}"
            );
        }
        total.exact += s.exact;
        total.missing += s.missing;
    }
    let share = total.exact as f64 / (total.exact + total.missing) as f64;
    assert!(
        share > 0.80,
        "only {:.1}% of the rows came back",
        share * 100.0
    );
}

#[test]
fn rows_under_a_destroyed_interior_page_go_home() {
    for av in [false, true] {
        let dir = TestDir::new("salvage-interior");
        let db = dir.join("i.db");
        rich_database(&db, "delete", 1024, av, 4000);
        let before = rows_by_key(&open_plain(&db).unwrap());
        let roots: Vec<u32> = sqlite3_cli(
            &db,
            "SELECT rootpage FROM sqlite_schema WHERE name IN ('people', 'notes', 'kv');",
        )
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
        let interior: BTreeSet<u32> = sqlite3_cli(
            &db,
            "SELECT pageno FROM dbstat WHERE name IN ('people','notes','kv') AND pagetype='internal';",
        )
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
        assert!(
            roots.iter().all(|r| interior.contains(r)),
            "the roots are interior pages"
        );
        let mut rng = Rng::new(7);
        let mut hit = vec![1];
        hit.extend(&roots);
        damage_pages(&db, &hit, Damage::Random, &mut rng);
        let conn = open(&db);
        let out = dir.join("out.db");
        let summary = salvage_pragma(&conn, &out).unwrap();
        let o = open_plain(&out).unwrap();
        let after = rows_by_key(&o);
        let s = score(&before, &after);
        assert_eq!(s.altered, 0, "{summary}");
        assert_eq!(
            after["people"], before["people"],
            "auto_vacuum={av}: {summary}"
        );
        assert_eq!(
            after["notes"], before["notes"],
            "auto_vacuum={av}: {summary}"
        );
        // The entries in a WITHOUT ROWID table's interior pages are lost
        // with them; every entry on its leaves comes back.
        let kv_lost = before["kv"].len() - after["kv"].len();
        assert!(kv_lost < 100, "kv lost {kv_lost} rows: {summary}");
        assert!(info(&o, "rows_from_orphan_pages").parse::<u64>().unwrap() > 3000);
        assert_eq!(one(&o, "SELECT count(*) FROM lost_and_found"), "0");
    }
}

#[test]
fn twin_tables_are_told_apart_only_by_the_pointer_map() {
    // Two tables of the same shape and rowid ranges, both with their root
    // destroyed: nothing but the pointer map can say whose leaf is whose.
    for av in [true, false] {
        let dir = TestDir::new("salvage-twins");
        let db = dir.join("t.db");
        let conn = open(&db);
        conn.execute_batch(&format!(
            "PRAGMA page_size=1024; PRAGMA auto_vacuum={};",
            av as u8
        ))
        .unwrap();
        enable(&conn);
        conn.execute_batch(
            "CREATE TABLE left_t(a TEXT, b INT); CREATE TABLE right_t(a TEXT, b INT);
             WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 2000)
             INSERT INTO left_t SELECT 'left ' || n, n FROM i;
             WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 2000)
             INSERT INTO right_t SELECT 'right ' || n, n FROM i;",
        )
        .unwrap();
        drop(conn);
        let before = rows_by_key(&open_plain(&db).unwrap());
        let roots: Vec<u32> = sqlite3_cli(&db, "SELECT rootpage FROM sqlite_schema;")
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        let mut rng = Rng::new(3);
        damage_pages(&db, &[vec![1], roots].concat(), Damage::Random, &mut rng);
        let conn = open(&db);
        let out = dir.join("out.db");
        let summary = salvage_pragma(&conn, &out).unwrap();
        let o = open_plain(&out).unwrap();
        let after = rows_by_key(&o);
        assert_eq!(score(&before, &after).altered, 0, "{summary}");
        let lost: u64 = one(&o, "SELECT count(*) FROM lost_and_found")
            .parse()
            .unwrap();
        if av {
            assert_eq!(
                after, before,
                "auto_vacuum: the pointer map places every leaf; {summary}"
            );
            assert_eq!(lost, 0);
        } else {
            assert!(
                after.values().all(|t| t.is_empty()),
                "no guess without evidence: {summary}"
            );
            assert_eq!(lost, 4000, "{summary}");
            let candidates = one(&o, "SELECT DISTINCT candidates FROM lost_and_found");
            assert_eq!(candidates, "left_t, right_t");
            assert_ne!(info(&o, "orphan_pages_not_attributed"), "0");
        }
    }
}

#[test]
fn a_complete_index_tells_twin_tables_apart() {
    // As above without a pointer map, but left_t has an index whose pages
    // survive: it lists left_t's rows, so right_t's leaves are not
    // left_t's, and once they are placed, left_t's are not right_t's.
    let dir = TestDir::new("salvage-twins-index");
    let db = dir.join("t.db");
    let conn = open(&db);
    conn.execute_batch("PRAGMA page_size=1024;").unwrap();
    enable(&conn);
    conn.execute_batch(
        "CREATE TABLE left_t(a TEXT, b INT); CREATE TABLE right_t(a TEXT, b INT);
         CREATE INDEX left_b ON left_t(b);
         WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 2000)
         INSERT INTO left_t SELECT 'left ' || n, n FROM i;
         WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 2000)
         INSERT INTO right_t SELECT 'right ' || n, n * 7 FROM i;",
    )
    .unwrap();
    drop(conn);
    let before = rows_by_key(&open_plain(&db).unwrap());
    let roots: Vec<u32> = sqlite3_cli(
        &db,
        "SELECT rootpage FROM sqlite_schema WHERE type = 'table';",
    )
    .lines()
    .map(|l| l.parse().unwrap())
    .collect();
    let mut rng = Rng::new(4);
    damage_pages(&db, &[vec![1], roots].concat(), Damage::Random, &mut rng);
    let conn = open(&db);
    let out = dir.join("out.db");
    let summary = salvage_pragma(&conn, &out).unwrap();
    let o = open_plain(&out).unwrap();
    assert_eq!(rows_by_key(&o), before, "{summary}");
    assert_eq!(one(&o, "SELECT count(*) FROM lost_and_found"), "0");
}

#[test]
fn bad_requests_get_clear_errors_and_write_nothing() {
    let dir = TestDir::new("salvage-errors");
    let db = dir.join("e.db");
    make_protected(&db, "delete", 3);
    let conn = open(&db);
    let existing = dir.join("exists.db");
    std::fs::write(&existing, b"keep me").unwrap();
    let e = query_msg(
        &conn,
        &format!("SELECT meta_salvage('{}')", existing.display()),
    )
    .unwrap_err();
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    let link = dir.join("link.db");
    std::os::unix::fs::symlink(dir.join("target.db"), &link).unwrap();
    let e = salvage_pragma(&conn, &link).unwrap_err();
    assert!(e.contains("already exists"), "{e}");
    assert!(!dir.join("target.db").exists(), "followed the symlink");
    let e = query_msg(&conn, "SELECT meta_salvage(NULL)").unwrap_err();
    assert!(e.contains("must not be NULL"), "{e}");
    let e = query_msg(&conn, "PRAGMA meta_salvage").unwrap_err();
    assert!(e.contains("needs the path"), "{e}");
    let e = query_msg(
        &conn,
        &format!("SELECT meta_salvage('{}', 'temp')", dir.join("x").display()),
    )
    .unwrap_err();
    assert!(e.contains("no file"), "{e}");
    let e = query_msg(
        &conn,
        &format!(
            "SELECT meta_salvage('{}', 'nosuch')",
            dir.join("x").display()
        ),
    )
    .unwrap_err();
    assert!(e.contains("no such database"), "{e}");
    let e = query_msg(
        &conn,
        &format!(
            "SELECT meta_salvage('{}')",
            dir.join("no/such/dir/x.db").display()
        ),
    )
    .unwrap_err();
    assert!(e.contains("No such file"), "{e}");
    // Nothing but the database, its -dwr and the planted files.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["e.db", "e.db-dwr", "exists.db", "link.db"]);
}

#[test]
fn the_output_gets_the_database_s_mode() {
    let dir = TestDir::new("salvage-mode");
    let db = dir.join("m.db");
    make_protected(&db, "delete", 2);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    let conn = open(&db);
    let out = dir.join("out.db");
    salvage_pragma(&conn, &out).unwrap();
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn hostile_files_never_crash_the_salvage() {
    let dir = TestDir::new("salvage-hostile");
    let base = dir.join("base.db");
    rich_database(&base, "delete", 1024, true, 600);
    let original = std::fs::read(&base).unwrap();
    let dwr = std::fs::read(sidecar(&base, "-dwr")).unwrap();
    let mut rng = Rng::new(0x5a17);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..60 {
        let db = dir.join(&format!("h{i}.db"));
        let mut bytes = original.clone();
        for _ in 0..(1 + rng.below(20)) {
            let at = rng.below(bytes.len() as u64) as usize;
            let len = (rng.below(2000) as usize).min(bytes.len() - at);
            match rng.below(3) {
                0 => bytes[at..at + len]
                    .iter_mut()
                    .for_each(|b| *b = rng.below(256) as u8),
                1 => bytes[at..at + len].fill(0xff),
                _ => bytes[at] ^= 1 << rng.below(8),
            }
        }
        std::fs::write(&db, &bytes).unwrap();
        if i % 2 == 0 {
            std::fs::write(sidecar(&db, "-dwr"), &dwr).unwrap();
        }
        let conn = open(&db);
        let out = dir.join(&format!("h{i}-out.db"));
        match salvage_pragma(&conn, &out) {
            Ok(_) => {
                ok += 1;
                let o = open_plain(&out).unwrap();
                assert_integrity_ok(&o, &format!("hostile case {i}"));
            }
            Err(e) => {
                refused += 1;
                assert!(e.starts_with("meta_salvage: "), "{e}");
                assert!(
                    !out.exists(),
                    "case {i}: a failed salvage left {}",
                    out.display()
                );
            }
        }
    }
    eprintln!("hostile files: {ok} salvaged, {refused} refused");
    assert!(ok > 30);
}
