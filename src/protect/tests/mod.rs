//! The protection logic without SQLite: the monitor driven by the calls the
//! shim makes, in the order SQLite makes them, over a database file in
//! memory (see `fake.rs`).

mod fake;

use super::recover::Disk;
use crate::dwr::format::{WalSession, FLAG_WAL, FLAG_WAL_AHEAD};
use crate::dwr::store::SyncPolicy;
use crate::recovery::{self, Plan};
use fake::{assert_copy_of, fake_file, generations, images, newest, newest_header, Conn, Dir};
use std::path::Path;

/// Protection enabled on a new file holding `image`.
fn protected(dir: &Dir, image: &[u8], policy: SyncPolicy) -> (Conn, fake::SharedFile) {
    let db = dir.db();
    let file = fake_file(&db, image);
    let mut conn = Conn::open(&db, &file, policy);
    assert_eq!(conn.status(), "disabled");
    assert_eq!(
        conn.pragma("meta_double_write", Some("enabled")),
        Ok("enabled".into())
    );
    assert_copy_of(&newest(&db), image);
    (conn, file)
}

/// What the recovery planner decides for the file as `file` holds it.
fn plan(db: &Path, file: &fake::SharedFile) -> Plan {
    let mut io = fake::FakeIo::new(file);
    let mut disk = Disk {
        io: &mut io,
        path: db,
    };
    recovery::plan(&generations(db), &mut disk)
}

/// Destroys page 1 of the file, as a torn write or bad sector would.
fn destroy_page1(file: &fake::SharedFile, ps: usize) {
    file.borrow_mut().bytes[..ps].fill(0);
}

#[test]
fn rollback_commit_writes_a_pending_generation_then_confirms_it() {
    let dir = Dir::new("rollback");
    let img = images();
    let (mut conn, file) = protected(&dir, &img.a, SyncPolicy::Full);
    let db = dir.db();
    let first = newest_header(&db);
    assert_eq!(first.flags, 0);

    // Up to the database sync: the copy of the new state is written,
    // PENDING, before the journal's deletion (the commit point).
    assert!(conn.write_until_sync(&img.b).is_ok());
    let pending = newest(&db);
    assert!(pending.header.generation > first.generation);
    assert!(
        pending.header.is_pending(),
        "not confirmed before the commit point"
    );
    assert_copy_of(&pending, &img.b);
    // The commit boundary confirms it with a header-only update.
    conn.commit_phase_two();
    let confirmed = newest(&db);
    assert!(!confirmed.header.is_pending());
    assert_copy_of(&confirmed, &img.b);
    conn.unlock(crate::protect::LockLevel::Shared);
    conn.end_read();
    assert_eq!(newest_header(&db).generation, confirmed.header.generation);

    // A schema change: the copy follows the new schema tree.
    conn.commit(&img.c);
    let g = newest(&db);
    assert!(!g.header.is_pending());
    assert_copy_of(&g, &img.c);
    assert_eq!(conn.status(), "enabled");
    assert!(conn.warnings().is_empty(), "{:?}", conn.warnings());
    conn.close();
    assert_eq!(
        plan(&db, &file),
        Plan::Intact {
            generation: g.header.generation
        }
    );
}

#[test]
fn wal_commit_reaches_the_copy_at_the_checkpoint() {
    let dir = Dir::new("wal");
    let img = images();
    let (mut conn, file) = protected(&dir, &img.wal_a, SyncPolicy::Periodic);
    let db = dir.db();
    let first = newest_header(&db);
    assert_eq!(first.flags, FLAG_WAL | FLAG_WAL_AHEAD);
    assert_eq!(first.fingerprint.wal_session, None, "no WAL yet");

    // The commit goes into the WAL: the file, and so the copy's pages,
    // stay as they were; the copy records which WAL session continues it.
    let session = (0, 0x1111, 0x2222);
    conn.wal_commit(&db, session, 5);
    let g = newest(&db);
    assert_copy_of(&g, &img.wal_a);
    assert!(g.header.wal_ahead());
    let recorded = WalSession {
        sequence: 0,
        salt1: 0x1111,
        salt2: 0x2222,
        complete: false,
        backfilled: 0,
        projected: 0,
    };
    assert_eq!(g.header.fingerprint.wal_session, Some(recorded));

    // The checkpoint writes the pages into the file; its sync ends the
    // copying, and the copy is brought up to date there, before the
    // checkpoint records its progress (after which a writer may restart
    // the WAL).
    assert!(conn.checkpoint_until_sync(&img.wal_b).is_ok());
    let g = newest(&db);
    assert_copy_of(&g, &img.wal_b);
    assert!(!g.header.is_pending());
    assert_eq!(g.header.flags, FLAG_WAL | FLAG_WAL_AHEAD);
    assert_eq!(
        g.header.fingerprint.wal_session,
        Some(WalSession {
            complete: true,
            ..recorded
        }),
        "every frame of the session is in the file"
    );
    conn.end_checkpoint();
    assert_eq!(newest_header(&db).generation, g.header.generation);
    assert_eq!(
        plan(&db, &file),
        Plan::Intact {
            generation: g.header.generation
        }
    );
    assert!(conn.warnings().is_empty(), "{:?}", conn.warnings());
}

#[test]
fn wal_ahead_is_cleared_with_an_empty_wal_and_set_before_the_next_frame() {
    let dir = Dir::new("wal-ahead");
    let img = images();
    let (mut conn, _file) = protected(&dir, &img.wal_a, SyncPolicy::Periodic);
    let db = dir.db();
    conn.wal_commit(&db, (0, 1, 2), 3);
    assert!(conn.checkpoint_truncate(&db, &img.wal_b).is_ok());
    let g = newest(&db);
    assert_copy_of(&g, &img.wal_b);
    assert!(
        !g.header.wal_ahead(),
        "the WAL is empty: no commit the copy lacks"
    );
    // The next writer takes the WAL write lock over an empty WAL: the copy
    // says the WAL may be ahead before the first frame is written.
    conn.wal_commit(&db, (1, 2, 2), 1);
    assert!(newest_header(&db).wal_ahead());
    assert!(conn.warnings().is_empty(), "{:?}", conn.warnings());
}

/// A crash between the `PENDING` generation and its confirmation: the
/// commit point (the journal's deletion) was passed or not.
fn crash_between_pending_and_confirm(committed: bool) {
    let dir = Dir::new(if committed {
        "crash-after"
    } else {
        "crash-before"
    });
    let img = images();
    let (mut conn, file) = protected(&dir, &img.a, SyncPolicy::Periodic);
    let db = dir.db();
    let older = newest_header(&db).generation;
    assert!(conn.write_until_sync(&img.b).is_ok());
    let ps = conn.page_size();
    // The process dies: no COMMIT_PHASETWO, no unlock, no close.
    drop(conn);

    let gens = generations(&db);
    assert_eq!(gens.len(), 2);
    assert!(gens[0].header.is_pending());
    assert_copy_of(&gens[0], &img.b);
    assert_eq!(gens[1].header.generation, older);
    assert_copy_of(&gens[1], &img.a);
    let pending = gens[0].header.generation;
    let (state, expected) = if committed {
        (&img.b, pending)
    } else {
        // The journal was still there: the next connection rolls it back.
        file.borrow_mut().bytes = img.a.clone();
        (&img.a, older)
    };
    // Page 1 tells which state the file is in; destroyed, the rest of the
    // evidence does (here the file size).
    assert_eq!(
        plan(&db, &file),
        Plan::Intact {
            generation: expected
        }
    );
    destroy_page1(&file, ps);
    assert_eq!(
        plan(&db, &file),
        Plan::Restore {
            generation: expected,
            pages: vec![1]
        }
    );
    file.borrow_mut().bytes = state.clone();

    // The next connection reads page 1 and settles the copy: it confirms
    // the pending generation when the commit happened, and takes a new
    // copy of the rolled-back state when it did not.
    let mut conn = Conn::open(&db, &file, SyncPolicy::Periodic);
    conn.begin_read();
    conn.end_read();
    let g = newest(&db);
    assert!(!g.header.is_pending());
    assert_copy_of(&g, state);
    assert_eq!(conn.io.lock, crate::protect::LockLevel::None);
    assert!(conn.warnings().is_empty(), "{:?}", conn.warnings());
}

#[test]
fn crash_after_the_commit_point_keeps_the_pending_copy() {
    crash_between_pending_and_confirm(true);
}

#[test]
fn crash_before_the_commit_point_falls_back_to_the_older_copy() {
    crash_between_pending_and_confirm(false);
}

#[test]
fn read_of_a_file_another_writer_changed_refreshes_the_copy() {
    let dir = Dir::new("refresh");
    let img = images();
    let (mut conn, file) = protected(&dir, &img.a, SyncPolicy::Periodic);
    let db = dir.db();
    conn.begin_read();
    conn.end_read();
    let before = newest_header(&db).generation;
    // A program without metadwr commits: the copy is behind the file.
    file.borrow_mut().bytes = img.c.clone();
    // The next transaction reads the change counter, sees it moved, reads
    // page 1: healthy and later than the copy's, so the copy is refreshed
    // while writers are kept out.
    conn.begin_read();
    let g = newest(&db);
    assert!(g.header.generation > before);
    assert_copy_of(&g, &img.c);
    assert_eq!(
        conn.io.lock,
        crate::protect::LockLevel::Shared,
        "writers let in again"
    );
    conn.end_read();
    assert_eq!(conn.status(), "enabled");
    assert!(conn.warnings().is_empty(), "{:?}", conn.warnings());
}

#[test]
fn damaged_page1_is_served_from_a_current_copy_and_repaired() {
    let dir = Dir::new("heal");
    let img = images();
    let (mut conn, file) = protected(&dir, &img.a, SyncPolicy::Periodic);
    let ps = conn.page_size();
    destroy_page1(&file, ps);
    // The pager's first read of a transaction, under SHARED.
    conn.lock(crate::protect::LockLevel::Shared);
    let page1 = conn.read(0, ps);
    assert_eq!(page1, fake::page(&img.a, 1), "served from the copy");
    // The file is repaired at once (an exclusive lock could be had), with
    // a change counter past both the copy's and the damaged page's, so
    // that every page cache drops the damaged image.
    let mut repaired = img.a.clone();
    repaired[..ps].copy_from_slice(&recovery::restored_page1(&page1, &vec![0; ps]));
    assert_eq!(file.borrow().bytes, repaired, "and the file repaired");
    assert_copy_of(&newest(&dir.db()), &repaired);
    assert!(
        conn.status()
            .starts_with("enabled (recovered: healed page 1"),
        "{}",
        conn.status()
    );
    assert!(crate::protect::quarantine_path_for(&dir.db()).exists());
    conn.end_read();
}

#[test]
fn stale_copy_is_refused() {
    let dir = Dir::new("refuse");
    let img = images();
    let (mut conn, file) = protected(&dir, &img.a, SyncPolicy::Periodic);
    let db = dir.db();
    let copy = newest(&db);
    let ps = conn.page_size();
    // A program without metadwr adds a table, then page 1 is destroyed:
    // the copy, of the state before, must not be restored over it.
    file.borrow_mut().bytes = img.c.clone();
    destroy_page1(&file, ps);
    conn.begin_read();
    let page1 = conn.read(0, ps);
    assert!(page1.iter().all(|&b| b == 0), "the damage is passed on");
    assert!(file.borrow().bytes[..ps].iter().all(|&b| b == 0));
    assert!(
        conn.status().starts_with("enabled (stale: "),
        "{}",
        conn.status()
    );
    assert!(
        conn.warnings()
            .iter()
            .any(|w| w.contains("page 1 is damaged but the copy cannot be used")),
        "{:?}",
        conn.warnings()
    );
    conn.end_read();
    let refused = conn.pragma("meta_recover", None);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("does not match the current state")),
        "{refused:?}"
    );
    assert!(matches!(plan(&db, &file), Plan::Refuse(_)));
    // The copy is kept as it was.
    let g = newest(&db);
    assert_eq!(g.header.generation, copy.header.generation);
    assert_copy_of(&g, &img.a);
}

#[test]
fn events_read_as_the_status_reports_them() {
    use super::Event;
    let healed = |repair| Event::Healed {
        pages: vec![1, 5],
        generation: 7,
        repair,
    };
    assert_eq!(
        healed(None).to_string(),
        "recovered: healed pages 1,5 from generation 7 on read"
    );
    assert_eq!(
        healed(Some(Ok("restored 2 pages (1,5) from generation 7".into()))).to_string(),
        "recovered: healed pages 1,5 from generation 7 on read; \
         file repaired: restored 2 pages (1,5) from generation 7"
    );
    assert_eq!(
        healed(Some(Err("database is locked".into()))).to_string(),
        "recovered: healed pages 1,5 from generation 7 on read; \
         file not repaired: database is locked"
    );
    let one = Event::Healed {
        pages: vec![1],
        generation: 2,
        repair: None,
    };
    assert_eq!(
        one.to_string(),
        "recovered: healed page 1 from generation 2 on read"
    );
    assert_eq!(Event::Stale("why".into()).to_string(), "stale: why");
    assert_eq!(
        Event::Recovered("restored 1 page (1) from generation 3".into()).to_string(),
        "recovered: restored 1 page (1) from generation 3"
    );
    assert_eq!(
        Event::Damaged("page 1 is not valid".into()).to_string(),
        "database damaged, run meta_recover(): page 1 is not valid"
    );
}
