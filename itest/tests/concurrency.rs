//! Several connections and processes writing one protected database: the
//! copy follows every writer, whichever connection enabled protection.

mod common;

use common::churn::Churn;
use common::*;

/// Two connections of this process take turns; A enabled protection, B
/// was opened afterwards (protected through the existing `-dwr`). In
/// rollback mode both stay open and idle across each damage and restore.
fn alternate(journal: &str, page_size: u32) {
    let dir = TestDir::new(&format!("alternate-{journal}"));
    let db = dir.join("a.db");
    let a = open(&db);
    a.execute_batch(&format!(
        "PRAGMA page_size={page_size}; PRAGMA journal_mode={journal};"
    ))
    .unwrap();
    enable(&a);
    let mut ca = Churn::new(61, "a");
    ca.run(&a, 5);
    let b = open(&db);
    assert_eq!(dwr_status(&b), "enabled", "B is protected through the -dwr");
    let mut cb = Churn::new(62, "b");
    let mut conns = Some((a, b));
    for round in 0..6 {
        let (a, b) = match &conns {
            Some(c) => (&c.0, &c.1),
            None => unreachable!(),
        };
        // Writers interleave within the round too.
        for _ in 0..4 {
            ca.step(a);
            cb.step(b);
        }
        let (writer, churn) = if round % 2 == 0 {
            (a, &mut ca)
        } else {
            (b, &mut cb)
        };
        churn.run(writer, 3);
        let expected = content(a).unwrap();
        assert_same_content(&expected, &content(b).unwrap(), "A and B agree");
        if journal == "wal" {
            // A WAL connection keeps a lock while open: restore with both
            // closed, then reopen them.
            let (a, b) = conns.take().unwrap();
            close_checkpointed(a);
            close_checkpointed(b);
        }
        let via = [Via::LongLivedMetaRecover, Via::Pragma][round % 2];
        damage_and_recover(&db, &expected, via, Damage::Zero, 63 + round as u64);
        match &conns {
            Some((a, b)) => {
                assert_same_content(&expected, &content(a).unwrap(), "A after restore");
                assert_same_content(&expected, &content(b).unwrap(), "B after restore");
            }
            None => conns = Some((open(&db), open(&db))),
        }
    }
}

#[test]
fn two_connections_alternate_rollback() {
    alternate("delete", 1024);
}

#[test]
fn two_connections_alternate_wal() {
    alternate("wal", 1024);
}

/// B was opened before A enabled protection: B's later writes must still
/// reach the copy.
#[test]
fn connection_opened_before_protection_was_enabled() {
    let dir = TestDir::new("opened-before");
    let db = dir.join("b.db");
    let b = open(&db);
    add_tables(&b, "early", 3);
    let a = open(&db);
    enable(&a);
    drop(a);
    let mut churn = Churn::new(71, "b");
    churn.run(&b, 20);
    let expected = content(&b).unwrap();
    damage_and_recover(&db, &expected, Via::LongLivedMetaRecover, Damage::Zero, 72);
    assert_same_content(&expected, &content(&b).unwrap(), "B after restore");
}

/// A schema-changing script for the stock shell.
fn shell_changes(tag: &str) -> String {
    format!(
        "CREATE TABLE {tag}_one(id INTEGER PRIMARY KEY, body TEXT /* {pad} */);
INSERT INTO {tag}_one(body) VALUES ('x'), ('y'), ('z');
CREATE INDEX {tag}_one_body ON {tag}_one(body);
CREATE TABLE {tag}_two(a, b, c);
INSERT INTO {tag}_two VALUES (1, 2, 3), (4, 5, 6);
ALTER TABLE {tag}_two ADD COLUMN d TEXT DEFAULT 'dd';
ALTER TABLE {tag}_two RENAME TO {tag}_three;
CREATE VIEW {tag}_view AS SELECT a + b AS s FROM {tag}_three;
CREATE TRIGGER {tag}_trig AFTER INSERT ON {tag}_three BEGIN
  INSERT INTO {tag}_one(body) VALUES ('trigger ' || new.a);
END;
INSERT INTO {tag}_three(a, b, c) VALUES (7, 8, 9);
DROP TABLE t1;
",
        pad = "p".repeat(900)
    )
}

/// The stock `sqlite3` shell in another process, with the extension
/// loaded, changes the schema of a database this process protects.
fn second_process(journal: &str) {
    let dir = TestDir::new(&format!("process-{journal}"));
    let db = dir.join("p.db");
    make_protected(&db, journal, 4);
    let mine = open(&db);
    let mut churn = Churn::new(81, "m");
    churn.run(&mine, 10);
    let out = sqlite3_cli_with_extension(
        &db,
        &format!(
            "PRAGMA meta_double_write;\n{}PRAGMA meta_double_write;",
            shell_changes("sh")
        ),
        &[],
    );
    assert_eq!(
        out, "enabled\nenabled\n",
        "the shell saw a protected database"
    );
    // This process sees the shell's changes and adds its own.
    let tables: i64 = mine
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name GLOB 'sh_*'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 5, "sh_one, its index, sh_three, sh_view, sh_trig");
    churn.run(&mine, 5);
    // And the shell once more, last.
    sqlite3_cli_with_extension(
        &db,
        &shell_changes("sh2").replace("DROP TABLE t1;", ""),
        &[],
    );
    let expected = content(&mine).unwrap();
    if journal == "wal" {
        close_checkpointed(mine);
        damage_and_recover(&db, &expected, Via::Pragma, Damage::Random, 82);
    } else {
        damage_and_recover(
            &db,
            &expected,
            Via::LongLivedMetaRecover,
            Damage::Random,
            82,
        );
        assert_same_content(&expected, &content(&mine).unwrap(), "after restore");
    }
}

#[test]
fn second_process_shell_rollback() {
    second_process("delete");
}

#[test]
fn second_process_shell_wal() {
    second_process("wal");
}

/// `METADWR_ENABLE=1` protects a database the shell creates, without the
/// pragma; `METADWR_SYNC` sets its policy. (In a child process, so this
/// test process's environment stays untouched.)
#[test]
fn environment_enables_protection_in_the_shell() {
    let dir = TestDir::new("env");
    let db = dir.join("e.db");
    let out = sqlite3_cli_with_extension(
        &db,
        "CREATE TABLE t(x);\nINSERT INTO t VALUES (hex(randomblob(100)));\nPRAGMA meta_double_write;\nPRAGMA meta_double_write_sync;",
        &[("METADWR_ENABLE", "1"), ("METADWR_SYNC", "full")],
    );
    assert_eq!(out, "enabled\nfull\n");
    assert!(sidecar(&db, "-dwr").exists());
    let expected = content(&open(&db)).unwrap();
    damage_and_recover(&db, &expected, Via::LongLivedMetaRecover, Damage::Zero, 91);
    // Without the variable, the shell leaves a new database unprotected.
    let other = dir.join("plain.db");
    let out =
        sqlite3_cli_with_extension(&other, "CREATE TABLE t(x);\nPRAGMA meta_double_write;", &[]);
    assert_eq!(out, "disabled\n");
    assert!(!sidecar(&other, "-dwr").exists());
}

/// The shell commits schema changes and is killed (no close): the copy
/// written at each commit boundary restores the latest state.
#[test]
fn killed_shell_left_a_current_copy() {
    let dir = TestDir::new("killed");
    let db = dir.join("k.db");
    make_protected(&db, "delete", 3);
    sqlite3_shell_killed(&db, &format!("{}SELECT 'ready';", shell_changes("k")));
    assert!(!sidecar(&db, "-journal").exists());
    let expected = content(&open_plain(&db).unwrap()).unwrap();
    assert!(expected.tables.contains_key("k_three"));
    damage_and_recover(&db, &expected, Via::Pragma, Damage::Zero, 101);
}

/// With `locking_mode=EXCLUSIVE` and `synchronous=OFF` a commit neither
/// syncs the database nor releases its lock, so no commit boundary
/// refreshes the copy before the shell is killed. Whatever the copy holds,
/// a restore must give the latest state or refuse; restoring the state
/// before the killed session's commits would silently drop its view.
#[test]
fn killed_shell_in_exclusive_mode_never_gets_a_stale_restore() {
    let dir = TestDir::new("killed-exclusive");
    let db = dir.join("k.db");
    make_protected(&db, "delete", 3);
    sqlite3_shell_killed(
        &db,
        "PRAGMA locking_mode=EXCLUSIVE;\nPRAGMA synchronous=OFF;\n\
         CREATE VIEW added AS SELECT 42 AS answer;\nSELECT 'ready';",
    );
    let expected = content(&open_plain(&db).unwrap()).unwrap();
    assert!(expected.schema.contains("added"));
    damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(102));
    let damaged = std::fs::read(&db).unwrap();
    let conn = open(&db);
    let healed = healed_report(&conn);
    match query_msg(&conn, "PRAGMA meta_double_write=enabled") {
        Ok(answer) => {
            assert!(
                answer.starts_with("recovered: ") || (answer == "enabled" && healed.is_some()),
                "{answer}"
            );
            assert_same_content(&expected, &content(&conn).unwrap(), "restored");
        }
        Err(e) => {
            assert!(e.starts_with("meta_double_write: "), "{e}");
            assert_eq!(std::fs::read(&db).unwrap(), damaged);
        }
    }
}
