//! The recreation lab: a protected database is replaced at its path by
//! ordinary operations (deleted and created again, which on ext4 usually
//! hands the new file the old inode number; `cp` over it; `mv` over it; a
//! backup copied back), then page 1 is destroyed and the file is opened
//! through metadwr. Every outcome must be *exact* (the content of the file
//! now at the path, integrity ok) or *refused* (SQLite's usual error, a
//! `stale` status, the file untouched); never the old file's schema over
//! the new file's data.

mod common;

use common::heal::*;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// How a trial ended; a wrong restore panics instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Exact,
    Refused,
}

/// Opens the damaged `db` through metadwr and judges what it serves
/// against `now`, the content of the database the path holds.
#[track_caller]
fn judge(db: &Path, now: &Content, what: &str) -> Verdict {
    let state = DiskState::take(db);
    let conn = open(db);
    match view(&conn) {
        Ok(seen) => {
            assert_same_content(now, &seen, &format!("{what}: WRONG RESTORE"));
            assert_integrity_ok(&conn, what);
            drop(conn);
            assert_plain_reads(db, now, what);
            Verdict::Exact
        }
        Err(code) => {
            assert!(
                code == 26 || code == 11,
                "{what}: SQLite error {code}, not its usual one"
            );
            assert_status_prefix(&conn, "enabled (stale: ", what);
            drop(conn);
            state.assert_db_unchanged(what);
            Verdict::Refused
        }
    }
}

fn remove_with_sidecars(db: &Path) {
    std::fs::remove_file(db).unwrap();
    for s in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(sidecar(db, s));
    }
}

/// A database like the protected one (same tables, same sizes) but with
/// other names and rows, written by a program without metadwr.
fn write_other_database(path: &Path) -> Content {
    let conn = open_plain(path).unwrap();
    add_tables(&conn, "u", 3);
    let c = content(&conn).unwrap();
    drop(conn);
    c
}

#[test]
fn deleted_and_recreated_with_the_same_inode_is_never_restored() {
    let mut reused = 0;
    let mut trials = 0;
    for journal in ["delete", "wal"] {
        for trial in 0..6 {
            let what = format!("{journal}: deleted and recreated, trial {trial}");
            let dir = TestDir::new(&what);
            let db = dir.join("app.db");
            make_protected(&db, journal, 3);
            let before = std::fs::metadata(&db).unwrap();
            // Delete and create at once, in the same directory: the
            // pattern that makes ext4 reuse the inode number.
            remove_with_sidecars(&db);
            let now = write_other_database(&db);
            let after = std::fs::metadata(&db).unwrap();
            assert_eq!(
                after.len(),
                before.len(),
                "{what}: the recreated database must have the old size for the test to mean anything"
            );
            trials += 1;
            if after.ino() == before.ino() && after.dev() == before.dev() {
                reused += 1;
            }
            damage_pages(&db, &[1], Damage::Random, &mut Rng::new(7000 + trial));
            assert_eq!(judge(&db, &now, &what), Verdict::Refused, "{what}");
        }
    }
    eprintln!("recreation lab: {reused} of {trials} recreated files reused the inode number");
    if reused == 0 {
        eprintln!(
            "SKIPPED in part: this file system never reused an inode number here, so the \
             same-inode case was not exercised (the refusals above still held)"
        );
    }
}

#[test]
fn recreated_through_metadwr_is_healed_exactly() {
    for journal in ["delete", "wal"] {
        let what = format!("{journal}: deleted and recreated through metadwr");
        let dir = TestDir::new(&what);
        let db = dir.join("app.db");
        make_protected(&db, journal, 3);
        remove_with_sidecars(&db);
        // The old -dwr is still there: the new database is protected by it,
        // and its first commit replaces the old file's copy.
        let conn = open(&db);
        assert_eq!(
            query_str(&conn, &format!("PRAGMA journal_mode={journal}")).unwrap(),
            journal
        );
        add_tables(&conn, "u", 3);
        let now = content(&conn).unwrap();
        close_checkpointed(conn);
        damage_pages(&db, &[1], Damage::Random, &mut Rng::new(7100));
        assert_eq!(judge(&db, &now, &what), Verdict::Exact, "{what}");
    }
}

#[test]
fn another_database_copied_over_in_place_is_refused() {
    for (i, kind) in [Damage::Random, Damage::Zero, Damage::First100]
        .into_iter()
        .enumerate()
    {
        let what = format!("cp another database over it, page 1 {kind:?}");
        let dir = TestDir::new(&what);
        let db = dir.join("app.db");
        make_protected(&db, "delete", 3);
        let other = dir.join("other.db");
        let now = write_other_database(&other);
        let ino = std::fs::metadata(&db).unwrap().ino();
        // std::fs::copy truncates and rewrites the existing file, as cp does.
        std::fs::copy(&other, &db).unwrap();
        assert_eq!(
            std::fs::metadata(&db).unwrap().ino(),
            ino,
            "{what}: cp kept the inode"
        );
        damage_pages(&db, &[1], kind, &mut Rng::new(7200 + i as u64));
        assert_eq!(judge(&db, &now, &what), Verdict::Refused, "{what}");
    }
}

#[test]
fn another_database_moved_over_is_refused() {
    for journal in ["delete", "wal"] {
        let what = format!("{journal}: mv another database over it");
        let dir = TestDir::new(&what);
        let db = dir.join("app.db");
        make_protected(&db, journal, 3);
        let other = dir.join("other.db");
        let now = write_other_database(&other);
        remove_with_sidecars(&db);
        std::fs::rename(&other, &db).unwrap();
        damage_pages(&db, &[1], Damage::Random, &mut Rng::new(7300));
        assert_eq!(judge(&db, &now, &what), Verdict::Refused, "{what}");
    }
}

/// A backup taken with `cp`, the database changed on (rows, and a column
/// added, a change of page 1 alone), the backup copied back over it, in
/// place and by rename.
#[test]
fn an_older_backup_restored_to_the_same_path_is_refused() {
    for in_place in [true, false] {
        let what = format!(
            "older backup restored {}",
            if in_place { "in place" } else { "by rename" }
        );
        let dir = TestDir::new(&what);
        let db = dir.join("app.db");
        make_protected(&db, "delete", 3);
        let backup = dir.join("backup.db");
        std::fs::copy(&db, &backup).unwrap();
        let then = content(&open_plain(&backup).unwrap()).unwrap();
        let conn = open(&db);
        conn.execute_batch(
            "UPDATE t0 SET name = name || ' (edited)';
             ALTER TABLE t1 ADD COLUMN added TEXT;",
        )
        .unwrap();
        drop(conn);
        if in_place {
            std::fs::copy(&backup, &db).unwrap();
        } else {
            let tmp = dir.join("restore.tmp");
            std::fs::copy(&backup, &tmp).unwrap();
            std::fs::rename(&tmp, &db).unwrap();
        }
        damage_pages(&db, &[1], Damage::Random, &mut Rng::new(7400));
        assert_eq!(judge(&db, &then, &what), Verdict::Refused, "{what}");
    }
}

/// A backup of the current state copied back: exact or refused.
#[test]
fn a_current_backup_restored_in_place_is_exact_or_refused() {
    let what = "current backup restored in place";
    let dir = TestDir::new(what);
    let db = dir.join("app.db");
    let now = make_protected(&db, "delete", 3);
    let backup = dir.join("backup.db");
    std::fs::copy(&db, &backup).unwrap();
    std::fs::copy(&backup, &db).unwrap();
    damage_pages(&db, &[1], Damage::Random, &mut Rng::new(7500));
    let verdict = judge(&db, &now, what);
    eprintln!("{what}: {verdict:?}");
}

/// Issue 11 item 2: a file replaced by a copy whose protected pages equal
/// the old copy's. Opening it through metadwr, even only to read, must
/// bind the copy to the new file, so that damage after that is healed.
#[test]
fn a_replaced_file_read_through_metadwr_is_protected_again() {
    for journal in ["delete", "wal"] {
        let what = format!("{journal}: replaced by a copy of itself, then read");
        let dir = TestDir::new(&what);
        let db = dir.join("app.db");
        let now = make_protected(&db, journal, 3);
        let snapshot = dir.join("snapshot.db");
        std::fs::copy(&db, &snapshot).unwrap();
        let tmp = dir.join("copy.tmp");
        std::fs::copy(&snapshot, &tmp).unwrap();
        std::fs::rename(&tmp, &db).unwrap();
        {
            let conn = open(&db);
            assert_same_content(&now, &content(&conn).unwrap(), &what);
            assert_status_prefix(&conn, "enabled", &what);
        }
        damage_pages(&db, &[1], Damage::Random, &mut Rng::new(7600));
        assert_eq!(judge(&db, &now, &what), Verdict::Exact, "{what}");
    }
}

/// Issue 11 item 5: `METADWR_ENABLE=1` on a file that is not a database
/// creates no `-dwr` and says so; on an empty file it says there is
/// nothing to protect yet.
#[test]
fn forced_protection_says_what_is_true_of_non_databases_and_empty_files() {
    let dir = TestDir::new("forced");
    let random = dir.join("random.db");
    let bytes: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&random, &bytes).unwrap();
    let out = sqlite3_cli_with_extension(
        &random,
        "PRAGMA meta_double_write;",
        &[("METADWR_ENABLE", "1")],
    );
    assert!(
        out.starts_with("disabled (not a database"),
        "random bytes: {out:?}"
    );
    assert!(
        !sidecar(&random, "-dwr").exists(),
        "a -dwr was created for random bytes"
    );
    assert_eq!(std::fs::read(&random).unwrap(), bytes);
    let empty = dir.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = sqlite3_cli_with_extension(
        &empty,
        "PRAGMA meta_double_write;",
        &[("METADWR_ENABLE", "1")],
    );
    assert_eq!(
        out,
        "enabled (nothing to protect yet: the database is empty)\n"
    );
    // The first commit takes the first copy.
    let out = sqlite3_cli_with_extension(
        &empty,
        "CREATE TABLE t(x); PRAGMA meta_double_write;",
        &[("METADWR_ENABLE", "1")],
    );
    assert_eq!(out, "enabled\n");
}

/// A protected database with no data page worth a witness (one tiny row):
/// with page 1 destroyed nothing ties the copy to the file, and the restore
/// is refused with a reason that says so.
#[test]
fn a_database_without_content_cannot_prove_it_is_the_same_file() {
    let dir = TestDir::new("no-witness");
    let db = dir.join("tiny.db");
    let conn = open(&db);
    enable(&conn);
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    damage_pages(&db, &[1], Damage::Random, &mut Rng::new(7700));
    let state = DiskState::take(&db);
    let conn = open(&db);
    let err = query_msg(&conn, "PRAGMA meta_recover").unwrap_err();
    assert!(err.contains("records no data page"), "{err}");
    drop(conn);
    state.assert_db_unchanged("no witness");
}
