//! Self-healing on the read path: a connection through metadwr that reads
//! a damaged protected page (page 1, any `sqlite_schema` interior, leaf or
//! overflow page) gets the good copy, with no error and no pragma; the file
//! is repaired (immediately when no other connection holds a lock, else at
//! the connection's next write or checkpoint), the damaged bytes go to the
//! quarantine file, and `PRAGMA meta_double_write` says `enabled
//! (recovered: …)` until the next `=enabled`.
//!
//! Also damage SQLite itself cannot see (a flipped bit in a CREATE
//! statement or in page 1's header fields), and the reference's own
//! `3333333333sss` test.

mod common;

use common::heal::*;
use common::schema::SchemaSize;
use common::*;
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::Path;

/// Damages `pages` of the closed database `db`, opens it through metadwr,
/// and checks that the heal is invisible and the repair complete.
#[track_caller]
fn damage_then_heal(
    db: &Path,
    expected: &Content,
    pages: &[u32],
    kind: Damage,
    seed: u64,
    what: &str,
) {
    let original = std::fs::read(db).unwrap();
    let damaged = damage_pages(db, pages, kind, &mut Rng::new(seed));
    let conn = open_and_expect_healed(db, expected, what);
    assert_repaired(db, &conn, &original, &damaged, expected, what);
}

// --- page 1 -------------------------------------------------------------------

fn page1_every_damage(journal: &str) {
    for page_size in [512, 4096, 65536] {
        for (i, kind) in Damage::ALL.into_iter().enumerate() {
            let what = format!("{journal}, page size {page_size}, page 1 {kind:?}");
            let dir = TestDir::new(&what);
            let db = dir.join("h.db");
            let expected = make_protected_ps(&db, journal, page_size, 3);
            damage_then_heal(&db, &expected, &[1], kind, 1000 + i as u64, &what);
        }
    }
}

#[test]
fn heals_page1_on_open_rollback() {
    page1_every_damage("delete");
}

#[test]
fn heals_page1_on_open_wal() {
    page1_every_damage("wal");
}

// --- the rest of the schema tree ------------------------------------------------

/// One page of each kind (leaf, overflow, an interior page other than page
/// 1), then every protected page at once.
#[test]
fn heals_every_kind_of_schema_page() {
    for page_size in [512, 4096] {
        let dir = TestDir::new(&format!("kinds-{page_size}"));
        let db = dir.join("k.db");
        make_protected_schema(&db, "delete", page_size, SchemaSize::Medium);
        // More rows in sqlite_schema, so that at 512-byte pages page 1 cannot
        // hold every child pointer and the tree grows a second interior level.
        let conn = open(&db);
        add_tables(&conn, "pad_with_a_long_name_", 80);
        let expected = content(&conn).unwrap();
        drop(conn);
        let pages = schema_pages_cli(&db);
        let mut covered = Vec::new();
        for (n, kind) in [PageKind::Leaf, PageKind::Overflow, PageKind::Internal]
            .into_iter()
            .enumerate()
        {
            let Some(&(pgno, _)) = pages.iter().find(|(p, k)| *p != 1 && *k == kind) else {
                continue;
            };
            covered.push(kind);
            let damage = if n % 2 == 0 {
                Damage::Random
            } else {
                Damage::Zero
            };
            let what = format!("page size {page_size}, {kind:?} page {pgno} {damage:?}");
            damage_then_heal(&db, &expected, &[pgno], damage, 2000 + n as u64, &what);
        }
        assert!(
            covered.contains(&PageKind::Leaf) && covered.contains(&PageKind::Overflow),
            "page size {page_size}: the medium schema should have leaf and overflow pages besides page 1 ({covered:?})"
        );
        if page_size == 512 {
            assert!(
                covered.contains(&PageKind::Internal),
                "page size 512: expected an interior schema page besides page 1"
            );
        }
        let all: Vec<u32> = pages.iter().map(|p| p.0).collect();
        let what = format!(
            "page size {page_size}, all {} schema pages zeroed",
            all.len()
        );
        damage_then_heal(&db, &expected, &all, Damage::Zero, 2100, &what);
    }
}

#[test]
fn heals_the_whole_schema_tree_wal() {
    let dir = TestDir::new("tree-wal");
    let db = dir.join("w.db");
    let expected = make_protected_schema(&db, "wal", 4096, SchemaSize::Medium);
    let all: Vec<u32> = schema_pages_cli(&db).into_iter().map(|p| p.0).collect();
    damage_then_heal(
        &db,
        &expected,
        &all,
        Damage::Random,
        2200,
        "wal, whole schema tree",
    );
}

/// `leaf_only`: page 1 stays intact, so the damaged leaf is met by a
/// memory-mapped fetch that only the protected-page filter can flag.
fn with_mmap(journal: &str, leaf_only: bool) {
    let what = format!("mmap, {journal}, leaf only: {leaf_only}");
    let dir = TestDir::new(&what);
    let db = dir.join("m.db");
    let expected = make_protected_schema(&db, journal, 4096, SchemaSize::Medium);
    let pages = schema_pages_cli(&db);
    let leaf = pages
        .iter()
        .find(|(p, k)| *p != 1 && *k == PageKind::Leaf)
        .expect("a schema leaf besides page 1")
        .0;
    let original = std::fs::read(&db).unwrap();
    let damage: &[u32] = if leaf_only { &[leaf] } else { &[1, leaf] };
    let damaged = damage_pages(&db, damage, Damage::Random, &mut Rng::new(2300));
    let conn = open(&db);
    let mmap: i64 = conn
        .query_row("PRAGMA mmap_size=268435456", [], |r| r.get(0))
        .unwrap();
    assert!(mmap > 0, "{what}: mmap is not available ({mmap})");
    assert_sees(&view(&conn), &expected, &what);
    assert_integrity_ok(&conn, &what);
    assert_status_prefix(&conn, "enabled (recovered: ", &what);
    assert_repaired(&db, &conn, &original, &damaged, &expected, &what);
}

#[test]
fn heals_with_mmap_rollback() {
    with_mmap("delete", false);
    with_mmap("delete", true);
}

#[test]
fn heals_with_mmap_wal() {
    with_mmap("wal", false);
    with_mmap("wal", true);
}

// --- who repairs, and when ------------------------------------------------------

/// A read-only connection serves the copy but leaves the file alone; the
/// next read-write connection repairs it.
#[test]
fn read_only_connection_serves_the_copy_without_repairing() {
    let dir = TestDir::new("heal-ro");
    let db = dir.join("r.db");
    let expected = make_protected(&db, "delete", 3);
    let original = std::fs::read(&db).unwrap();
    let damaged = damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(3000));
    let state = DiskState::take(&db);
    load_extension();
    let ro = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    assert_eq!(vfs_of(&ro).as_deref(), Some("metadwr/unix"));
    assert_sees(&view(&ro), &expected, "read-only connection");
    drop(ro);
    state.assert_db_unchanged("after a read-only connection served the copy");
    let conn = open_and_expect_healed(&db, &expected, "read-write after read-only");
    assert_repaired(
        &db,
        &conn,
        &original,
        &damaged,
        &expected,
        "read-write after read-only",
    );
}

/// Another connection holds a lock: the reader still gets the copy, the
/// file is not touched while the lock is held, and the reader's next write
/// (or checkpoint, in WAL mode) repairs it.
fn repair_deferred(journal: &str) {
    let dir = TestDir::new(&format!("deferred-{journal}"));
    let db = dir.join("d.db");
    let expected = make_protected(&db, journal, 3);
    let holder = open(&db);
    holder
        .execute_batch("BEGIN; SELECT count(*) FROM t0;")
        .unwrap();
    let damaged = damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(3100));
    let damaged_bytes = std::fs::read(&db).unwrap();
    let healer = open(&db);
    assert_sees(
        &view(&healer),
        &expected,
        "reader while another connection holds a lock",
    );
    assert_status_prefix(
        &healer,
        "enabled (recovered: ",
        "reader with a lock held elsewhere",
    );
    assert!(
        std::fs::read(&db).unwrap() == damaged_bytes,
        "{journal}: the file was written while another connection held a lock on it"
    );
    holder.execute_batch("COMMIT;").unwrap();
    drop(holder);
    healer
        .execute("INSERT INTO t0(name) VALUES ('written after the heal')", [])
        .unwrap();
    if journal == "wal" {
        healer
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let after = content(&healer).unwrap();
    assert!(after.tables["t0"].contains("written after the heal"));
    assert_quarantined(&db, &damaged, "deferred repair");
    assert_plain_reads(&db, &after, "after the deferred repair");
    drop(healer);
    assert_no_wal_frames(&db);
    assert_plain_reads(&db, &after, "after the healer closed");
}

#[test]
fn repair_waits_for_another_connections_lock_rollback() {
    repair_deferred("delete");
}

#[test]
fn repair_waits_for_another_connections_lock_wal() {
    repair_deferred("wal");
}

/// Heal, write through metadwr (the copy follows), damage again: the
/// second heal gives the state after the write.
#[test]
fn heals_again_after_a_write() {
    let dir = TestDir::new("heal-twice");
    let db = dir.join("a.db");
    let expected = make_protected(&db, "delete", 3);
    damage_then_heal(&db, &expected, &[1], Damage::Zero, 3200, "first heal");
    let conn = open(&db);
    add_tables(&conn, "more", 2);
    let expected = content(&conn).unwrap();
    drop(conn);
    let all: Vec<u32> = schema_pages_cli(&db).into_iter().map(|p| p.0).collect();
    damage_then_heal(&db, &expected, &all, Damage::Random, 3201, "second heal");
}

// --- damage SQLite cannot see ---------------------------------------------------

/// Flips bit 0 of the byte at `offset`, opens through metadwr, and checks
/// that the original bytes (change counter aside) come back, both as seen
/// through metadwr and on disk afterwards.
#[track_caller]
fn invisible_damage(db: &Path, expected: &Content, offset: u64, what: &str) {
    let original = std::fs::read(db).unwrap();
    let sql_before = dump_query(&open_plain(db).unwrap(), "SELECT sql FROM sqlite_schema").unwrap();
    let ps = page_size_of(db) as u64;
    flip_bit(db, offset, 0);
    let pgno = (offset / ps + 1) as u32;
    let damaged = BTreeMap::from([(pgno, read_page(db, pgno, ps as u32))]);
    let conn = open(db);
    let sql_now = dump_query(&conn, "SELECT sql FROM sqlite_schema")
        .unwrap_or_else(|e| panic!("{what}: SELECT sql FROM sqlite_schema: {e}"));
    assert!(
        sql_now == sql_before,
        "{what}: sqlite_schema.sql through metadwr is not the original text"
    );
    assert_sees(&view(&conn), expected, what);
    assert_status_prefix(&conn, "enabled (recovered: ", what);
    drop(conn);
    assert_file_matches(db, &original, &format!("{what}: repaired file"));
    assert_quarantined(db, &damaged, what);
}

#[test]
fn heals_a_flipped_bit_in_a_column_name_on_page1() {
    let dir = TestDir::new("flip-col-p1");
    let db = dir.join("c.db");
    let conn = open(&db);
    enable(&conn);
    conn.execute_batch(
        "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace');",
    )
    .unwrap();
    let expected = content(&conn).unwrap();
    drop(conn);
    let at = find_in_file(&db, b"name TEXT").expect("the CREATE statement on page 1");
    assert!(at < page_size_of(&db) as u64, "the statement is on page 1");
    // 'n' -> 'o': plain SQLite happily reads a table with a column "oame".
    let plain_before = {
        flip_bit(&db, at, 0);
        let s = dump_query(&open_plain(&db).unwrap(), "SELECT sql FROM sqlite_schema").unwrap();
        flip_bit(&db, at, 0);
        s
    };
    assert!(
        plain_before.contains("oame TEXT"),
        "the flip is visible to plain SQLite"
    );
    invisible_damage(&db, &expected, at, "column name flipped on page 1");
}

#[test]
fn heals_a_flipped_bit_in_a_column_name_on_a_schema_leaf() {
    let dir = TestDir::new("flip-col-leaf");
    let db = dir.join("c.db");
    let expected = make_protected_schema(&db, "delete", 4096, SchemaSize::Medium);
    let ps = page_size_of(&db) as u64;
    let leaf = schema_pages_cli(&db)
        .into_iter()
        .find(|(p, k)| *p != 1 && *k == PageKind::Leaf)
        .expect("a schema leaf besides page 1")
        .0;
    let page = read_page(&db, leaf, ps as u32);
    let in_page = page
        .windows(4)
        .position(|w| w == b", c1")
        .expect("a column c1_… in a CREATE TABLE on the leaf") as u64;
    // "c1_…" -> "b1_…"
    invisible_damage(
        &db,
        &expected,
        (leaf as u64 - 1) * ps + in_page + 2,
        "column name flipped on a schema leaf",
    );
}

/// Header fields SQLite trusts without noticing: the freelist count
/// (offset 36) and the schema cookie (offset 40).
#[test]
fn heals_flipped_header_fields() {
    for (offset, field) in [(39u64, "freelist count"), (43, "schema cookie")] {
        let what = format!("{field} flipped");
        let dir = TestDir::new(&what);
        let db = dir.join("f.db");
        let conn = open(&db);
        enable(&conn);
        add_tables(&conn, "t", 4);
        conn.execute_batch("DROP TABLE t3;").unwrap();
        let free: i64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        assert!(free > 0, "the database has a freelist");
        let expected = content(&conn).unwrap();
        drop(conn);
        invisible_damage(&db, &expected, offset, &what);
        let conn = open_plain(&db).unwrap();
        assert_integrity_ok(&conn, &format!("{what}: plain connection after the repair"));
    }
}

// --- the reference's own test ---------------------------------------------------

/// Overwrites the first 32 bytes of a protected database with
/// `3333333333sss3…3`; reopening through metadwr just works.
fn reference_3333(tables: usize) {
    let what = format!("reference 3333, {tables} tables");
    let dir = TestDir::new(&what);
    let db = dir.join("ref.db");
    let expected = make_protected(&db, "delete", tables);
    let original = std::fs::read(&db).unwrap();
    write_at(&db, 0, REFERENCE_PATTERN);
    let damaged = BTreeMap::from([(1, read_page(&db, 1, page_size_of_bytes(&original)))]);
    assert!(
        matches!(plain_view(&db), Err(26)),
        "{what}: plain SQLite must refuse the file"
    );
    let conn = open_and_expect_healed(&db, &expected, &what);
    assert_repaired(&db, &conn, &original, &damaged, &expected, &what);
}

/// Page size from the header bytes of an undamaged file.
fn page_size_of_bytes(file: &[u8]) -> u32 {
    match u16::from_be_bytes([file[16], file[17]]) {
        1 => 65536,
        n => n as u32,
    }
}

#[test]
fn reference_3333_one_table() {
    reference_3333(1);
}

#[test]
fn reference_3333_ten_tables() {
    reference_3333(10);
}

/// The same, with both header slots of the `-dwr` (its first 1024 bytes)
/// overwritten too: SQLITE_NOTADB, and nothing on disk changes.
fn reference_3333_dwr_smashed(tables: usize) {
    let what = format!("reference 3333 with the -dwr header smashed, {tables} tables");
    let dir = TestDir::new(&what);
    let db = dir.join("ref.db");
    make_protected(&db, "delete", tables);
    write_at(&db, 0, REFERENCE_PATTERN);
    write_at(&sidecar(&db, "-dwr"), 0, &REFERENCE_PATTERN.repeat(32));
    let state = DiskState::take(&db);
    let conn = open(&db);
    let o = view(&conn);
    assert!(
        matches!(o, Err(26)),
        "{what}: expected SQLITE_NOTADB, got {}",
        describe(&o)
    );
    drop(conn);
    state.assert_all_unchanged(&what);
}

#[test]
fn reference_3333_with_dwr_header_smashed_one_table() {
    reference_3333_dwr_smashed(1);
}

#[test]
fn reference_3333_with_dwr_header_smashed_ten_tables() {
    reference_3333_dwr_smashed(10);
}
