//! `<db>-dwr-quarantine`: the damaged bytes a restore keeps are the
//! database's data (a misdirected write puts another page's contents on
//! page 1), so the file gets the database's mode and owner, is never
//! reached through a symlink, is only ever a regular file of its own, and
//! stays bounded (docs/dwr-format.md section 8): at most 8 images per page
//! and 16 MiB in all, oldest dropped first.
//!
//! When the quarantine cannot be written, nothing is overwritten: a
//! healing read is still served from the copy, but the file stays damaged
//! and the status says why; `PRAGMA meta_recover` fails with the reason.
//!
//! The tests run as root (they chown the database to another uid).

mod common;

use common::heal::*;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const OTHER_UID: u32 = 12345;
const OTHER_GID: u32 = 12346;
/// Per page, as documented.
const MAX_IMAGES_PER_PAGE: usize = 8;
/// In all, as documented.
const MAX_BYTES: u64 = 16 << 20;

fn quarantine(db: &Path) -> PathBuf {
    sidecar(db, "-dwr-quarantine")
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        == 0
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// A protected rollback-mode database with a few tables, and its content.
fn setup(dir: &TestDir) -> (PathBuf, Content) {
    let db = dir.join("q.db");
    let expected = make_protected(&db, "delete", 3);
    (db, expected)
}

/// Damages page 1 (random bytes, from `seed`), opens the database through
/// metadwr and reads it: the heal must be invisible and the file
/// repaired. Returns the damaged image.
#[track_caller]
fn damage_and_heal(db: &Path, expected: &Content, seed: u64, what: &str) -> Vec<u8> {
    let original = std::fs::read(db).unwrap();
    let damaged = damage_pages(db, &[1], Damage::Random, &mut Rng::new(seed));
    let conn = open_and_expect_healed(db, expected, what);
    let status = dwr_status(&conn);
    assert!(
        status.contains("file repaired: restored 1 page (1)"),
        "{what}: status {status:?}"
    );
    assert_repaired(db, &conn, &original, &damaged, expected, what);
    drop(conn);
    damaged[&1].clone()
}

/// Damages page 1 while something hostile is at (or behind) the
/// quarantine path: the reader still sees every row (served from the
/// copy), the file stays exactly as damaged, the status and an explicit
/// `PRAGMA meta_recover` give `reason`. Then `cleanup` removes the obstacle
/// and the next read heals and repairs.
#[track_caller]
fn assert_blocked(db: &Path, expected: &Content, reason: &str, what: &str, cleanup: impl FnOnce()) {
    let original = std::fs::read(db).unwrap();
    damage_pages(db, &[1], Damage::Zero, &mut Rng::new(7000));
    let damaged_file = std::fs::read(db).unwrap();
    let conn = open(db);
    assert_sees(&view(&conn), expected, &format!("{what}: healing read"));
    let status = dwr_status(&conn);
    assert!(
        status.starts_with("enabled (recovered: healed page 1 ")
            && status.contains(&format!(
                "file not repaired: cannot write the quarantine file: {reason}"
            )),
        "{what}: status {status:?} does not say {reason:?}"
    );
    drop(conn);
    assert!(
        std::fs::read(db).unwrap() == damaged_file,
        "{what}: the database was overwritten although its damaged bytes were not kept"
    );
    let conn = open(db);
    let err = pragma_meta_recover(&conn).expect_err("meta_recover must fail");
    assert!(
        err.contains(&format!("cannot write the quarantine file: {reason}")),
        "{what}: meta_recover error {err:?} does not say {reason:?}"
    );
    drop(conn);
    assert!(
        std::fs::read(db).unwrap() == damaged_file,
        "{what}: meta_recover overwrote the database"
    );
    cleanup();
    let conn = open_and_expect_healed(db, expected, &format!("{what}: after the cleanup"));
    assert_file_matches(
        db,
        &original,
        &format!("{what}: repaired after the cleanup"),
    );
    let mut want = BTreeMap::new();
    want.insert(1, damaged_file[..page_size_of(db) as usize].to_vec());
    assert_quarantined(db, &want, what);
    drop(conn);
}

// --- mode and owner ----------------------------------------------------------------

fn assert_mode_and_owner(path: &Path, mode: u32, uid: u32, gid: u32, what: &str) {
    let m = std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()));
    assert!(m.file_type().is_file(), "{what}: not a regular file");
    assert_eq!(
        m.mode() & 0o7777,
        mode,
        "{what}: mode {:o}, want {mode:o}",
        m.mode() & 0o7777
    );
    assert_eq!((m.uid(), m.gid()), (uid, gid), "{what}: owner");
}

#[test]
fn the_quarantine_gets_the_databases_mode_and_owner() {
    if !is_root() {
        eprintln!("note: skipped: chowning the database to another uid needs root");
        return;
    }
    // 0o660 and 0o606: the usual umask 022 would narrow them at creation.
    for mode in [0o600, 0o640, 0o660, 0o606] {
        let what = format!("database {mode:o}");
        let dir = TestDir::new(&format!("q-mode-{mode:o}"));
        let (db, expected) = setup(&dir);
        for f in [db.clone(), sidecar(&db, "-dwr")] {
            chown(&f, OTHER_UID, OTHER_GID);
            chmod(&f, mode);
        }
        let image = damage_and_heal(&db, &expected, 7100 + mode as u64, &what);
        assert_mode_and_owner(&quarantine(&db), mode, OTHER_UID, OTHER_GID, &what);
        let records = read_quarantine(&db);
        assert_eq!(records.len(), 1, "{what}: records");
        assert!(records[0].image == image, "{what}: the quarantined image");

        // The -dwr metadwr creates itself gets the same.
        let conn = open(&db);
        assert_eq!(
            query_msg(&conn, "PRAGMA meta_double_write=disabled"),
            Ok("disabled".into())
        );
        assert_eq!(
            query_msg(&conn, "PRAGMA meta_double_write=enabled"),
            Ok("enabled".into())
        );
        drop(conn);
        assert_mode_and_owner(&sidecar(&db, "-dwr"), mode, OTHER_UID, OTHER_GID, &what);
    }
}

#[test]
fn a_wider_quarantine_from_before_is_tightened() {
    if !is_root() {
        eprintln!("note: skipped: chowning the database to another uid needs root");
        return;
    }
    let dir = TestDir::new("q-tighten");
    let (db, expected) = setup(&dir);
    chown(&db, OTHER_UID, OTHER_GID);
    chmod(&db, 0o600);
    // What an older metadwr left: root's, world-readable, one record.
    damage_and_heal_expecting_any(&db, &expected);
    chown(&quarantine(&db), 0, 0);
    chmod(&quarantine(&db), 0o644);
    let before = read_quarantine(&db);
    let image = damage_and_heal(&db, &expected, 7200, "second heal");
    assert_mode_and_owner(&quarantine(&db), 0o600, OTHER_UID, OTHER_GID, "tightened");
    let after = read_quarantine(&db);
    assert_eq!(after.len(), before.len() + 1);
    assert!(after[0].image == before[0].image && after[1].image == image);
}

/// A first heal, to get a quarantine file at all.
fn damage_and_heal_expecting_any(db: &Path, expected: &Content) {
    damage_and_heal(db, expected, 7150, "first heal");
    assert!(quarantine(db).exists());
}

// --- what is at the quarantine path -------------------------------------------------

#[test]
fn a_symlink_at_the_quarantine_path_is_not_followed() {
    let dir = TestDir::new("q-symlink");
    let (db, expected) = setup(&dir);
    let q = quarantine(&db);
    let target = dir.join("elsewhere");
    std::fs::write(&target, b"not yours").unwrap();
    std::os::unix::fs::symlink(&target, &q).unwrap();
    let reason = format!(
        "{} is a symlink; metadwr does not follow symlinks",
        q.display()
    );
    assert_blocked(&db, &expected, &reason, "symlink", || {
        std::fs::remove_file(&q).unwrap()
    });
    assert_eq!(std::fs::read(&target).unwrap(), b"not yours");

    // A dangling one: its target must not be created.
    let dangling = dir.join("would-be-created");
    std::fs::rename(&q, dir.join("kept-quarantine")).unwrap();
    std::os::unix::fs::symlink(&dangling, &q).unwrap();
    assert_blocked(&db, &expected, &reason, "dangling symlink", || {
        std::fs::remove_file(&q).unwrap()
    });
    assert!(
        std::fs::symlink_metadata(&dangling).is_err(),
        "the dangling symlink's target was created"
    );
}

#[test]
fn a_directory_at_the_quarantine_path_is_refused() {
    let dir = TestDir::new("q-dir");
    let (db, expected) = setup(&dir);
    let q = quarantine(&db);
    std::fs::create_dir(&q).unwrap();
    std::fs::write(q.join("inside"), b"keep me").unwrap();
    let reason = format!(
        "{} is a directory; metadwr writes only regular files",
        q.display()
    );
    assert_blocked(&db, &expected, &reason, "directory", || {
        assert_eq!(std::fs::read(q.join("inside")).unwrap(), b"keep me");
        std::fs::remove_dir_all(&q).unwrap()
    });
}

#[test]
fn a_fifo_at_the_quarantine_path_is_refused_without_hanging() {
    within(60, "fifo", || {
        let dir = TestDir::new("q-fifo");
        let (db, expected) = setup(&dir);
        let q = quarantine(&db);
        mkfifo(&q);
        let reason = format!(
            "{} is a FIFO; metadwr writes only regular files",
            q.display()
        );
        assert_blocked(&db, &expected, &reason, "fifo", || {
            std::fs::remove_file(&q).unwrap()
        });
    });
}

#[test]
fn a_hard_link_or_a_planted_file_at_the_quarantine_path_is_refused() {
    let dir = TestDir::new("q-planted");
    let (db, expected) = setup(&dir);
    let q = quarantine(&db);
    let other = dir.join("other-file");
    std::fs::write(&other, b"someone's data").unwrap();
    std::fs::hard_link(&other, &q).unwrap();
    let reason = format!(
        "{} has 2 hard links; metadwr writes only a file of its own",
        q.display()
    );
    assert_blocked(&db, &expected, &reason, "hard link", || {
        std::fs::remove_file(&q).unwrap()
    });
    assert_eq!(std::fs::read(&other).unwrap(), b"someone's data");

    if is_root() {
        // Owned by neither the database's owner (root) nor this process.
        std::fs::remove_file(&q).unwrap();
        std::fs::write(&q, b"").unwrap();
        chown(&q, OTHER_UID, OTHER_GID);
        chmod(&q, 0o666);
        let reason = format!(
            "{} is owned by uid {OTHER_UID}, neither the database's owner (0) nor this process (0)",
            q.display()
        );
        assert_blocked(&db, &expected, &reason, "planted file", || {
            assert_eq!(std::fs::read(&q).unwrap(), b"");
            std::fs::remove_file(&q).unwrap()
        });
    }
}

// --- bounded growth -----------------------------------------------------------------

#[test]
fn a_page_damaged_again_and_again_keeps_its_newest_images() {
    let dir = TestDir::new("q-bound-page");
    let (db, expected) = setup(&dir);
    let ps = page_size_of(&db) as u64;
    let mut images = Vec::new();
    for round in 0..MAX_IMAGES_PER_PAGE + 5 {
        images.push(damage_and_heal(
            &db,
            &expected,
            7300 + round as u64,
            &format!("round {round}"),
        ));
        let records = read_quarantine(&db);
        let want = &images[images.len().saturating_sub(MAX_IMAGES_PER_PAGE)..];
        assert_eq!(records.len(), want.len(), "round {round}: records");
        for (r, w) in records.iter().zip(want) {
            assert_eq!(r.pgno, 1);
            assert!(
                r.image == *w,
                "round {round}: not the newest images, in order"
            );
        }
        let len = std::fs::metadata(quarantine(&db)).unwrap().len();
        assert!(
            len <= MAX_IMAGES_PER_PAGE as u64 * (20 + ps),
            "round {round}: {len} bytes"
        );
    }
}

/// One quarantine record.
fn record(pgno: u32, image: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(20 + image.len());
    r.extend_from_slice(b"DWRQ");
    r.extend_from_slice(&pgno.to_be_bytes());
    r.extend_from_slice(&(image.len() as u32).to_be_bytes());
    r.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    r.extend_from_slice(image);
    r
}

#[test]
fn a_large_quarantine_is_cut_to_the_newest_records_within_the_cap() {
    let dir = TestDir::new("q-bound-size");
    let (db, expected) = setup(&dir);
    let ps = page_size_of(&db) as usize;
    // 20 MiB of records of distinct pages, as an older metadwr could leave.
    let n = (20 << 20) / (20 + ps);
    let mut legacy = Vec::with_capacity(n * (20 + ps));
    for i in 0..n {
        legacy.extend(record(1000 + i as u32, &vec![(i % 251) as u8; ps]));
    }
    std::fs::write(quarantine(&db), &legacy).unwrap();
    let image = damage_and_heal(&db, &expected, 7400, "over the cap");
    let bytes = std::fs::read(quarantine(&db)).unwrap();
    assert!(bytes.len() as u64 <= MAX_BYTES, "{} bytes", bytes.len());
    let records = read_quarantine(&db);
    let last = records.last().unwrap();
    assert!(
        last.pgno == 1 && last.image == image,
        "the new record is last"
    );
    let kept = records.len() - 1;
    assert_eq!(kept, MAX_BYTES as usize / (20 + ps) - 1, "old records kept");
    // The newest old records, in order.
    assert!(
        bytes[..kept * (20 + ps)] == legacy[legacy.len() - kept * (20 + ps)..],
        "not the newest old records"
    );
}

#[test]
fn a_torn_append_is_dropped_and_the_rewrite_does_not_follow_a_stale_temp_symlink() {
    let dir = TestDir::new("q-torn");
    let (db, expected) = setup(&dir);
    let first = damage_and_heal(&db, &expected, 7500, "first heal");
    let ps = page_size_of(&db) as usize;
    // An append a crash cut short: a header and half an image.
    let mut bytes = std::fs::read(quarantine(&db)).unwrap();
    bytes.extend_from_slice(&record(1, &vec![0xab; ps])[..20 + ps / 2]);
    std::fs::write(quarantine(&db), &bytes).unwrap();
    // A rewrite a crash interrupted, replaced by a symlink.
    let target = dir.join("victim");
    std::fs::write(&target, b"victim").unwrap();
    let tmp = sidecar(&db, "-dwr-quarantine-tmp");
    std::os::unix::fs::symlink(&target, &tmp).unwrap();
    let second = damage_and_heal(&db, &expected, 7501, "after the torn append");
    let records = read_quarantine(&db);
    assert_eq!(records.len(), 2);
    assert!(records[0].image == first && records[1].image == second);
    assert_eq!(std::fs::read(&target).unwrap(), b"victim");
    assert!(
        std::fs::symlink_metadata(&tmp).is_err(),
        "the stale temp is gone"
    );
}

// --- the -dwr follows the same rules -------------------------------------------------

#[test]
fn the_dwr_is_only_a_regular_file_and_the_status_says_what_is_in_the_way() {
    within(60, "dwr kinds", || {
        for kind in ["symlink", "directory", "FIFO"] {
            let dir = TestDir::new(&format!("dwr-{kind}"));
            let (db, expected) = setup(&dir);
            let dwr = sidecar(&db, "-dwr");
            let target = dir.join("real-dwr");
            std::fs::rename(&dwr, &target).unwrap();
            let kept = std::fs::read(&target).unwrap();
            let reason = match kind {
                "symlink" => {
                    std::os::unix::fs::symlink(&target, &dwr).unwrap();
                    format!(
                        "{} is a symlink; metadwr does not follow symlinks",
                        dwr.display()
                    )
                }
                "directory" => {
                    std::fs::create_dir(&dwr).unwrap();
                    format!(
                        "{} is a directory; metadwr writes only regular files",
                        dwr.display()
                    )
                }
                _ => {
                    mkfifo(&dwr);
                    format!(
                        "{} is a FIFO; metadwr writes only regular files",
                        dwr.display()
                    )
                }
            };
            let conn = open(&db);
            assert_sees(&view(&conn), &expected, kind);
            let status = dwr_status(&conn);
            assert!(
                status.starts_with("disabled (") && status.contains(&reason),
                "{kind}: status {status:?} does not say {reason:?}"
            );
            conn.execute_batch("CREATE TABLE after(x)").unwrap();
            drop(conn);
            assert!(
                std::fs::read(&target).unwrap() == kept,
                "{kind}: target written"
            );
            let ft = std::fs::symlink_metadata(&dwr).unwrap().file_type();
            assert!(!ft.is_file(), "{kind}: replaced by a file");
        }
    });
}
