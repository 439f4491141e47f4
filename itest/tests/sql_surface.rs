//! The exact answers of the pragmas and of `meta_recover()`.

mod common;

use common::*;
use rusqlite::OpenFlags;

#[test]
fn enable_disable_and_persistence() {
    let dir = TestDir::new("surface-enable");
    let db = dir.join("s.db");
    let conn = open(&db);
    assert_eq!(dwr_status(&conn), "disabled");
    assert_eq!(
        query_str(&conn, "PRAGMA meta_double_write_stats").unwrap(),
        "disabled"
    );
    add_tables(&conn, "t", 2);
    enable(&conn);
    assert!(sidecar(&db, "-dwr").exists());
    assert_eq!(dwr_status(&conn), "enabled");
    let s = stats(&conn);
    assert!(s.generations >= 1 && s.pages >= 1 && s.bytes > 0, "{s:?}");
    // Enabling again is harmless.
    enable(&conn);
    let err = query_msg(&conn, "PRAGMA meta_double_write=sometimes").unwrap_err();
    assert!(err.starts_with("meta_double_write: "), "{err}");
    drop(conn);

    // Protection persists through the -dwr: no pragma needed.
    let conn = open(&db);
    assert_eq!(dwr_status(&conn), "enabled");
    assert_eq!(
        query_str(&conn, "PRAGMA meta_double_write=disabled").unwrap(),
        "disabled"
    );
    assert!(!sidecar(&db, "-dwr").exists());
    assert_eq!(dwr_status(&conn), "disabled");
    drop(conn);
    let conn = open(&db);
    assert_eq!(dwr_status(&conn), "disabled");
}

#[test]
fn recover_on_an_intact_database() {
    let dir = TestDir::new("surface-intact");
    let db = dir.join("s.db");
    make_protected(&db, "delete", 3);
    let before = std::fs::read(&db).unwrap();
    let conn = open(&db);
    let r = meta_recover(&conn).unwrap();
    assert!(parse_intact(&r).is_some(), "{r}");
    let r = query_str(&conn, "SELECT meta_recover('main')").unwrap();
    assert!(parse_intact(&r).is_some(), "{r}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert!(!sidecar(&db, "-dwr-quarantine").exists());
    for (sql, what) in [
        ("SELECT meta_recover('temp')", "temp"),
        ("SELECT meta_recover('nosuch')", "nosuch"),
        ("SELECT meta_recover(NULL)", "NULL"),
    ] {
        let err = query_msg(&conn, sql).unwrap_err();
        assert!(err.starts_with("meta_recover: "), "{sql}: {err}");
        assert!(err.contains(what), "{sql}: {err}");
    }
}

/// `meta_recover('aux')` restores an attached database.
#[test]
fn recover_an_attached_database() {
    let dir = TestDir::new("surface-attached");
    let main = dir.join("main.db");
    let aux = dir.join("aux.db");
    make_protected(&main, "delete", 1);
    let expected = make_protected(&aux, "delete", 4);
    let conn = open(&main);
    conn.execute("ATTACH ?1 AS aux", [aux.to_str().unwrap()])
        .unwrap();
    assert_eq!(
        query_str(&conn, "PRAGMA aux.meta_double_write").unwrap(),
        "enabled"
    );
    dump_query(&conn, "SELECT * FROM aux.sqlite_schema").unwrap();
    let original = std::fs::read(&aux).unwrap();
    let damaged = damage_pages(&aux, &[1], Damage::Zero, &mut Rng::new(3));
    let main_before = std::fs::read(&main).unwrap();
    let report = query_str(&conn, "SELECT meta_recover('aux')").unwrap();
    assert_eq!(parse_restored(&report).pages, vec![1]);
    assert_eq!(std::fs::read(&main).unwrap(), main_before, "main untouched");
    assert_file_matches(&aux, &original, "aux restored");
    assert_quarantined(&aux, &damaged, "aux quarantine");
    drop(conn);
    let conn = open(&aux);
    assert_integrity_ok(&conn, "aux");
    assert_same_content(&expected, &content(&conn).unwrap(), "aux");
}

/// A read-only connection never writes: it serves the copy in place of
/// damaged pages, but neither repairs the file nor restores on request.
#[test]
fn read_only_connections_heal_reads_but_never_write() {
    let dir = TestDir::new("surface-ro");
    let db = dir.join("s.db");
    let expected = make_protected(&db, "delete", 2);
    load_extension();
    let ro = rusqlite::Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    assert_eq!(
        dwr_status(&ro),
        "enabled (read-only connection: damaged pages are served from the copy, not repaired)"
    );
    schema_dump(&ro).unwrap();
    damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(4));
    let before = std::fs::read(&db).unwrap();
    let err = meta_recover(&ro).unwrap_err();
    assert!(err.starts_with("meta_recover: "), "{err}");
    assert!(err.contains("read-only"), "{err}");
    drop(ro);
    let ro = rusqlite::Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    assert_same_content(&expected, &content(&ro).unwrap(), "read-only, healed reads");
    assert!(dwr_status(&ro).starts_with("enabled (recovered: healed page 1 "));
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "a read-only connection wrote"
    );
    assert!(!sidecar(&db, "-dwr-quarantine").exists());
}

/// The plainest use: a program opens its database, finds it damaged and
/// calls `PRAGMA meta_recover` on that new connection.
#[test]
fn meta_recover_on_a_connection_opened_after_the_damage() {
    let dir = TestDir::new("surface-fresh");
    let db = dir.join("s.db");
    let expected = make_protected(&db, "delete", 3);
    let original = std::fs::read(&db).unwrap();
    damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(6));
    let conn = open(&db);
    // The header read at open already heals page 1; the pragma then has
    // nothing left to do and the status carries the repair report.
    let healed = healed_report(&conn);
    let answer = pragma_meta_recover(&conn).unwrap_or_else(|e| {
        panic!("PRAGMA meta_recover on a connection opened after the damage: {e}")
    });
    let report = restore_report(&answer, healed);
    assert_eq!(parse_restored(&report).pages, vec![1]);
    assert_file_matches(&db, &original, "restored");
    assert_same_content(&expected, &content(&conn).unwrap(), "restored");
}
