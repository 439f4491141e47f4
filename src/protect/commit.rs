//! The commit path: where a commit reaches the `-dwr`.
//!
//! The shim reports the calls that matter (writes, truncates, locks,
//! shared-memory locks, syncs, `COMMIT_PHASETWO`, close); this file
//! decides what each means for the copy.
//!
//! * **Noticing writes.** [`Monitor::note_write`] and
//!   [`Monitor::note_truncate`] mark the copy dirty when a write touches
//!   page 1, a protected page or (for the witnesses) any other page, and
//!   keep what the next snapshot can reuse: page 1 as written, witness
//!   candidates, the pages written ([`Written`]).
//! * **Rollback mode: pending, then confirmed.** At the database sync of
//!   a write transaction ([`Monitor::around_database_sync`]), before the
//!   commit point (the journal's deletion), the copy of the new state is
//!   written as a `PENDING` generation. The commit boundary after it
//!   (`COMMIT_PHASETWO`, the unlock below RESERVED, or close) confirms it
//!   with a header-only update (`commit_boundary`, `confirm_pending`). A
//!   crash in between leaves the pending generation and the one before
//!   it; the planner (`recovery.rs`) tells from the file which state it
//!   is in, and the next reader of an intact page 1 confirms the pending
//!   one (`heal.rs`).
//! * **WAL mode: at the checkpoint.** Commits go into the WAL and leave
//!   the database file alone. A checkpoint writes the file under the
//!   checkpoint lock; the copy follows at its database sync (the sync
//!   while `Checkpoint::Copying`), or, for a checkpoint that did not sync, when
//!   the checkpoint lock is released ([`Monitor::before_shm_lock`]).
//! * **`WAL_AHEAD`.** Before the first frame goes into an empty WAL (the
//!   WAL write lock taken, [`Monitor::shm_locked`]; or EXCLUSIVE in
//!   `locking_mode=EXCLUSIVE`) the copy is flagged as possibly behind the
//!   WAL (`wal_write_starting`); when the write ends, the WAL session that
//!   continues the copy is recorded (`wal_write_ending`). The flag goes
//!   when a checkpoint empties the WAL (`wal_emptied`) or the last
//!   unlock finds it gone (`unlocking_fully`).
//!
//! Writing a generation itself (which pages, which witnesses) is
//! `snapshot.rs`.

use super::snapshot::WalAhead;
use super::wal_locks::wal_index;
use super::{
    wal_has_frames, wal_session, Checkpoint, DbIo, LockLevel, Monitor, Protection, Rc, ShmLock,
};
use crate::dbfile;
use crate::dwr::file::OpenMode;
use crate::dwr::format::{self, Witnesses, FLAG_PENDING, FLAG_WAL, FLAG_WAL_AHEAD};
use crate::dwr::store::Store;

impl Monitor {
    /// Runs `sync_db`, the database file's own xSync, and does what comes
    /// with it; returns its result.
    ///
    /// In a WAL checkpoint the sync ends the copying of pages, and the copy
    /// is brought up to date after it (before the checkpoint records its
    /// progress, so before a writer can reset the WAL).
    ///
    /// In rollback mode the commit point, the journal's deletion, comes
    /// after the sync. The copy of the new state is written now, marked
    /// `PENDING` (a crash before that point rolls the file back), and the
    /// commit boundary (COMMIT_PHASETWO or the unlock) confirms it. If the
    /// policy wants the `-dwr` fsynced, that fsync runs on a helper thread
    /// while the database file is being synced, so the commit waits for
    /// the slower of the two instead of both in turn; both are done before
    /// the journal can be deleted.
    pub fn around_database_sync(
        &mut self,
        io: &mut dyn DbIo,
        sync_db: &mut dyn FnMut() -> Rc,
    ) -> Rc {
        if self.checkpointing() {
            let rc = sync_db();
            if rc.is_ok() {
                if self.is_protected() {
                    // The file is one committed state again. An earlier
                    // partial checkpoint, of this connection or another, may
                    // have changed protected pages that this one did not
                    // write, and once the WAL restarts their frames are
                    // gone: compare everything (unchanged pages are not
                    // written).
                    self.checkpoint = Checkpoint::Complete;
                    self.changes.need_walk();
                }
                self.commit_boundary(io);
                self.checkpoint =
                    if self.checkpoint == Checkpoint::Complete && self.copy_describes_file() {
                        Checkpoint::Followed
                    } else {
                        Checkpoint::Copying
                    };
            }
            return rc;
        }
        if self.readonly
            || !self.is_protected()
            || !self.changes.dirty
            || self.lock_level < LockLevel::Reserved
        {
            return sync_db();
        }
        self.changes.page1 = false;
        if let Protection::On(store) = &mut self.protection {
            store.set_defer_sync(true);
        }
        let written = self.refresh_as(io, FLAG_PENDING, WalAhead::Set);
        let store = match &mut self.protection {
            Protection::On(store) => {
                store.set_defer_sync(false);
                Some(store)
            }
            Protection::Off { .. } => None,
        };
        let (rc, synced) = match (written, store) {
            (Ok(wrote), Some(store)) => {
                self.tentative = wrote;
                if store.take_sync_due() {
                    let store: &mut Store = store;
                    std::thread::scope(|scope| {
                        let helper = scope.spawn(move || store.sync());
                        let rc = sync_db();
                        let synced = match helper.join() {
                            Ok(r) => r.map_err(|e| format!("cannot sync the -dwr: {e}")),
                            Err(_) => Err("the -dwr sync panicked".to_string()),
                        };
                        (rc, synced)
                    })
                } else {
                    (sync_db(), Ok(()))
                }
            }
            (Ok(_), None) => (sync_db(), Ok(())),
            (Err(e), _) => (sync_db(), Err(e)),
        };
        if let Err(why) = synced {
            self.fail(&why);
        }
        if !rc.is_ok() {
            // The commit fails and SQLite rolls it back (or leaves a hot
            // journal); the pending copy must not be confirmed.
            self.tentative = false;
        }
        rc
    }

    /// Before an `xShmLock` call is handed on: a WAL write transaction, a
    /// checkpoint, or both, may be ending.
    pub fn before_shm_lock(&mut self, io: &mut dyn DbIo, lock: ShmLock) {
        if lock.releases_write_lock() {
            match wal_index::max_frame(io) {
                Some(0) => self.wal_emptied(),
                Some(_) => self.wal_write_ending(),
                None => {}
            }
        }
        if lock.releases_checkpoint_lock() {
            self.commit_boundary(io);
            if self.checkpoint == Checkpoint::Followed && self.copy_describes_file() {
                self.record_backfill(io);
            }
            self.checkpoint = Checkpoint::Idle;
        }
    }

    /// After an `xShmLock` call succeeded: a WAL read or write transaction,
    /// or a checkpoint, may be starting.
    pub fn shm_locked(&mut self, io: &mut dyn DbIo, lock: ShmLock) {
        if lock.takes_read_mark() {
            self.wal_read_starting();
        }
        // Only a write that will put the first frames into an empty WAL
        // can find the copy without WAL_AHEAD: whoever wrote the frames
        // already there set it, and it is cleared only while the WAL is
        // empty. So a write into a WAL with frames costs nothing here.
        if lock.takes_write_lock() {
            if wal_index::max_frame(io).is_none_or(|n| n == 0) && wal_index::initialised(io) {
                self.wal_write_starting();
            }
            self.retire_projection();
        }
        if lock.takes_checkpoint_lock() {
            self.checkpoint = Checkpoint::Copying;
            self.checkpoint_started(io);
        }
    }

    /// A WAL write lock was taken: frames may follow. A projected copy
    /// (another connection wrote it when it closed) vouches for the file
    /// only as long as no frame follows its commit through metadwr, so it
    /// goes first (docs/dwr-format.md §6.6).
    fn retire_projection(&mut self) {
        if self.readonly {
            return;
        }
        let Protection::On(store) = &mut self.protection else {
            return;
        };
        if let Err(e) = store.retire_projected_on_disk() {
            self.fail(&format!("cannot retire the projected copy: {e}"));
        }
    }

    /// A WAL read transaction starts (a read-mark lock is taken). In WAL
    /// mode the connection keeps its SHARED lock on the database file
    /// between transactions, so this, not the unlock, is where what the
    /// last transaction read stops vouching for the copy.
    #[inline]
    fn wal_read_starting(&mut self) {
        self.read.forget_trust();
    }

    /// Records the lock level after a successful xLock. Returns the level
    /// before when the step needs [`Self::exclusive_taken`].
    #[inline(always)]
    pub fn lock_taken(&mut self, level: LockLevel) -> Option<LockLevel> {
        let previous = self.lock_level;
        self.lock_level = level;
        (level == LockLevel::Exclusive && previous < LockLevel::Exclusive).then_some(previous)
    }

    /// EXCLUSIVE was just taken. A pending repair runs when SQLite's own
    /// write path takes it (from RESERVED: never on the way into a
    /// hot-journal rollback).
    pub fn exclusive_taken(&mut self, io: &mut dyn DbIo, previous: LockLevel) {
        if previous == LockLevel::Reserved {
            self.repair_if_pending(io);
        }
        if (!self.shm_mapped || self.exclusive_locking) && self.copy_is_wal_mode() {
            // locking_mode=EXCLUSIVE in WAL mode takes no WAL write lock at
            // all (SQLite skips shared-memory locks then); this lock, held
            // until the connection closes, comes before any frame.
            self.wal_write_starting();
        }
    }

    /// Records the lock level after a successful xUnlock (to SHARED or
    /// NONE).
    #[inline(always)]
    pub fn lock_released(&mut self, level: LockLevel) {
        self.lock_level = level;
        if level == LockLevel::None {
            self.read.forget_trust();
        }
    }

    /// Whether an xUnlock to `level` needs [`Self::unlocking`] first (bring
    /// the copy up to date before other connections get in; retire
    /// `WAL_AHEAD` at the last unlock). The early-outs of both, combined and
    /// inlined: usually there is nothing to do.
    #[inline(always)]
    pub fn before_unlock(&mut self, level: LockLevel) -> bool {
        level < self.lock_level
            && (self.boundary_has_work()
                || (level == LockLevel::None
                    && self.lock_level == LockLevel::Exclusive
                    && !self.readonly))
    }

    /// The database file is about to be unlocked to `level`, and
    /// [`Self::before_unlock`] said there is work: the copy must be current
    /// before other writers can get in.
    #[inline(never)]
    pub fn unlocking(&mut self, io: &mut dyn DbIo, level: LockLevel) {
        self.commit_boundary(io);
        if level == LockLevel::None {
            self.unlocking_fully(io);
        }
    }

    /// `SQLITE_FCNTL_COMMIT_PHASETWO`, sent after every commit, before the
    /// unlock: a commit boundary. With locking_mode=EXCLUSIVE and
    /// synchronous=OFF it is the only commit boundary there is.
    pub fn commit_phase_two(&mut self, io: &mut dyn DbIo) {
        self.commit_boundary(io);
    }

    /// Called after a successful write of `len` bytes at `offset`.
    #[inline]
    pub fn note_write(&mut self, offset: u64, data: &[u8]) {
        let len = data.len();
        if offset == 0 {
            self.changes.page1 = true;
        }
        if !self.is_protected() {
            return;
        }
        if offset == 0 && len >= 100 && dbfile::page_size_from_header(data) == Some(len as u32) {
            match &mut self.written.page1_image {
                Some(image) if image.len() == len => image.copy_from_slice(data),
                _ => self.written.page1_image = Some(data.to_vec()),
            }
        }
        if self.page_size == 0 {
            self.changes.need_walk();
            return;
        }
        let ps = self.page_size as u64;
        let first = offset / ps + 1;
        let last = (offset + len.max(1) as u64 - 1) / ps + 1;
        let whole_page = first == last && offset & (ps - 1) == 0 && len as u64 == ps;
        for pgno in first..=last {
            let pgno = pgno as u32;
            if pgno == 1 {
                self.changes.dirty = true;
            } else if self.protected.contains(pgno) {
                self.changes.need_walk();
            } else {
                if self.freelist_trunks.contains(&pgno) {
                    self.changes.freelist = true;
                }
                // The witnesses the copy records must follow every write,
                // or they would prove the file changed when it did not.
                self.changes.dirty = true;
                self.written.pages.insert(pgno);
                if whole_page {
                    self.note_witness_candidate(pgno, data);
                } else {
                    self.written.witness_candidates = Witnesses::default();
                    self.written.witness_looks = u32::MAX;
                }
            }
        }
    }

    /// A whole unprotected page was written: keep its checksum if it is a
    /// candidate already, or if it can become one.
    fn note_witness_candidate(&mut self, pgno: u32, data: &[u8]) {
        /// Pages looked at per refresh for content worth recording.
        const MAX_LOOKS: u32 = 16;
        if self.written.witness_candidates.contains(pgno) {
            // Written again: keep the checksum of the new image, or drop
            // the page if it no longer has content (freed and zeroed, or
            // emptied): an empty page ties the copy to no database.
            let worthy = format::witness_worthy(data);
            let mut kept = Witnesses::default();
            for (p, crc) in self.written.witness_candidates.iter() {
                if p != pgno {
                    kept.push(p, crc);
                } else if worthy {
                    kept.push(p, crate::dwr::format::crc32c(data));
                }
            }
            self.written.witness_candidates = kept;
        } else if !self.written.witness_candidates.is_full()
            && self.written.witness_looks < MAX_LOOKS
        {
            self.written.witness_looks += 1;
            if format::witness_worthy(data) {
                self.written
                    .witness_candidates
                    .push(pgno, crate::dwr::format::crc32c(data));
            }
        }
    }

    /// Called after a successful truncate to `size` bytes: pages may have
    /// moved (auto-vacuum, VACUUM), so the next refresh walks the tree again.
    pub fn note_truncate(&mut self, size: u64) {
        if self.is_protected() {
            self.changes.need_walk();
            self.changes.freelist = true;
            // Moving a page writes it, and those writes are noted one by
            // one: a truncate itself changes no page it keeps, only drops
            // the ones past the new end. SQLite truncates the file at the
            // end of every complete WAL checkpoint, usually to the size it
            // already has; counting that as a write of every page would
            // read every witness again at each checkpoint, reads of the
            // database file SQLite itself never makes.
            if self.page_size == 0 {
                self.written.pages.insert_all();
            } else {
                self.written.pages.cut(size / self.page_size as u64);
            }
        }
    }

    /// Whether a commit boundary has anything to do: write a generation
    /// (dirty), confirm one (tentative), or look for a `-dwr` another
    /// connection created (page 1 written while unprotected).
    #[inline(always)]
    fn boundary_has_work(&self) -> bool {
        self.changes.dirty || self.tentative || self.changes.page1
    }

    /// A commit boundary: brings the copy up to date if anything protected
    /// changed. Never fails; problems turn protection off.
    fn commit_boundary(&mut self, io: &mut dyn DbIo) {
        // The end of every read transaction comes here: leave at once when
        // there is nothing to write, confirm or adopt.
        if !self.boundary_has_work() {
            return;
        }
        if self.readonly {
            return;
        }
        if !self.is_protected() {
            if self.changes.page1 && !self.readonly {
                self.changes.page1 = false;
                self.adopt_foreign_enable(io);
            }
            return;
        }
        if !self.changes.dirty {
            if std::mem::take(&mut self.tentative) {
                self.confirm_pending();
            }
            return;
        }
        self.changes.page1 = false;
        self.tentative = false;
        if let Err(e) = self.refresh(io) {
            self.fail(&e);
        }
    }

    /// The commit point of the transaction whose copy was written `PENDING`
    /// has passed: confirm it with a header-only update.
    fn confirm_pending(&mut self) {
        self.update_flags(false, 0, FLAG_PENDING);
    }

    /// A header-only update of the copy's flags (see
    /// [`Store::rewrite_flags`]), after re-reading the `-dwr` header when
    /// another connection may have written since (`reload`). A failure
    /// turns protection off.
    pub(super) fn update_flags(&mut self, reload: bool, set: u32, clear: u32) {
        let identity = self.identity;
        let Protection::On(store) = &mut self.protection else {
            return;
        };
        let result = if reload {
            store
                .refresh()
                .map_err(|e| format!("cannot read the -dwr: {e}"))
        } else {
            Ok(())
        };
        if result.is_ok()
            && store
                .mirror_header()
                .is_some_and(|h| !h.fingerprint.identity.is_same_file(&identity))
        {
            // The copy was taken from another file (this one replaced it).
            // A header-only update would vouch for pages this file may not
            // have: the next commit boundary takes a whole new copy.
            self.changes.need_walk();
            return;
        }
        let result = result.and_then(|()| {
            store
                .rewrite_flags(set, clear)
                .map(|_| ())
                .map_err(|e| format!("cannot write the -dwr: {e}"))
        });
        if let Err(why) = result {
            self.fail(&why);
        }
    }

    /// A write transaction is starting in WAL mode (the WAL write lock, or
    /// the exclusive lock of `locking_mode=EXCLUSIVE`): before its frames
    /// can reach the disk, the copy must say that the WAL may hold commits
    /// it does not, or a checkpoint by a program without metadwr after a
    /// crash would leave a copy behind the file with nothing to show it.
    fn wal_write_starting(&mut self) {
        if self.readonly || !self.is_protected() {
            return;
        }
        let wal_mode = self.shm_mapped;
        let Protection::On(store) = &mut self.protection else {
            return;
        };
        if let Err(e) = store.refresh() {
            let why = format!("cannot read the -dwr: {e}");
            self.fail(&why);
            return;
        }
        let needed = store
            .mirror_header()
            .is_some_and(|h| (wal_mode || h.flags & FLAG_WAL != 0) && !h.wal_ahead());
        if needed {
            self.update_flags(false, FLAG_WAL_AHEAD, 0);
        }
    }

    /// The last refresh left the copy describing the file: nothing written
    /// since, no damage found, protection on.
    fn copy_describes_file(&self) -> bool {
        self.is_protected()
            && !self.changes.dirty
            && !matches!(self.last_event, Some(super::Event::Damaged(_)))
    }

    /// A complete checkpoint of this connection is ending, and the copy
    /// was compared in full with the file it left: record how many frames
    /// of the WAL session it copied, so that a later checkpoint without
    /// metadwr that copies more shows (rule 4b). `nBackfill` is read
    /// before the salts: a writer that restarts the WAL meanwhile changes
    /// the salts, and the copy then records nothing.
    fn record_backfill(&mut self, io: &mut dyn DbIo) {
        if self.readonly {
            return;
        }
        let Some(frames) = io.wal_index_u32(wal_index::BACKFILL) else {
            return;
        };
        let Some(headers) = io.wal_index_headers() else {
            return;
        };
        let Some(now) = wal_index::backfill_of(&headers_with(&headers, frames)) else {
            return;
        };
        let identity = self.identity;
        let Protection::On(store) = &mut self.protection else {
            return;
        };
        // Another connection may have written since (WAL_AHEAD, set by a
        // writer, which the checkpoint lock does not keep out).
        if let Err(e) = store.refresh() {
            self.fail(&format!("cannot read the -dwr: {e}"));
            return;
        }
        let Some(recorded) = store.mirror_header().and_then(|h| {
            h.fingerprint
                .identity
                .is_same_file(&identity)
                .then_some(h.fingerprint.wal_session)
                .flatten()
        }) else {
            return;
        };
        if recorded.salt1 != now.salt1
            || recorded.salt2 != now.salt2
            || recorded.backfilled >= frames
        {
            return;
        }
        if let Err(e) = store.record_wal_session(format::WalSession {
            backfilled: frames,
            ..recorded
        }) {
            self.fail(&format!("cannot write the -dwr: {e}"));
        }
    }

    /// A WAL write transaction ends (the WAL write lock is released) with
    /// frames in the WAL. If the copy says the WAL may be ahead of it but
    /// not which session of the WAL continues it (the WAL was empty or gone
    /// when the copy was taken), record the session this writer's frames
    /// went into: nobody could restart the WAL while the lock was held.
    fn wal_write_ending(&mut self) {
        if self.readonly {
            return;
        }
        let identity = self.identity;
        let Protection::On(store) = &mut self.protection else {
            return;
        };
        let unrecorded = |store: &Store| {
            store.mirror_header().is_some_and(|h| {
                h.wal_ahead()
                    && h.fingerprint.wal_session.is_none()
                    && h.fingerprint.identity.is_same_file(&identity)
            })
        };
        if !unrecorded(store) {
            return;
        }
        let result = store
            .refresh()
            .map_err(|e| format!("cannot read the -dwr: {e}"))
            .and_then(|()| match wal_session(&self.db_path) {
                Some(session) if unrecorded(store) => store
                    .record_wal_session(session)
                    .map(|_| ())
                    .map_err(|e| format!("cannot write the -dwr: {e}")),
                _ => Ok(()),
            });
        if let Err(why) = result {
            self.fail(&why);
        }
    }

    /// The WAL write lock is about to be released with the WAL index
    /// saying the log is empty (a RESTART or TRUNCATE checkpoint, which
    /// holds that lock, copied every frame into the file): no commit is
    /// left that the copy lacks, and the lock keeps writers out meanwhile.
    fn wal_emptied(&mut self) {
        if self.readonly {
            return;
        }
        let Protection::On(store) = &self.protection else {
            return;
        };
        if store.mirror_header().is_some_and(|h| h.wal_ahead()) {
            self.update_flags(true, 0, FLAG_WAL_AHEAD);
        }
    }

    /// The connection is dropping its last lock. In WAL mode that happens
    /// when it closes (or leaves WAL mode) after SQLite checkpointed the
    /// WAL in full and deleted (or emptied) it, still under the exclusive
    /// lock: no frame is left anywhere, so the copy no longer needs
    /// `WAL_AHEAD`.
    fn unlocking_fully(&mut self, io: &mut dyn DbIo) {
        if self.lock_level == LockLevel::Exclusive && !self.readonly {
            self.retire_wal_if_gone(io);
        }
    }

    fn retire_wal_if_gone(&mut self, io: &mut dyn DbIo) {
        let Protection::On(store) = &self.protection else {
            return;
        };
        if !store.mirror_header().is_some_and(|h| h.wal_ahead()) || wal_has_frames(&self.db_path) {
            return;
        }
        self.changes.dirty = true;
        if let Err(e) = self.refresh_as(io, 0, WalAhead::Retired) {
            self.fail(&e);
        }
    }

    /// Another connection enabled protection while this one was not
    /// protected: join in, so the copy stays current whoever writes.
    fn adopt_foreign_enable(&mut self, io: &mut dyn DbIo) {
        if matches!(self.protection, Protection::Off { reason: None }) && self.dwr_path.exists() {
            if let Ok(store) = self.open_store(OpenMode::ReadWrite) {
                self.protection = Protection::On(Box::new(store));
                self.changes.need_walk();
                if let Err(e) = self.refresh(io) {
                    self.fail(&e);
                }
            }
        }
    }

    /// The database file is being closed.
    pub fn close(&mut self, io: &mut dyn DbIo) {
        self.commit_boundary(io);
        if let Protection::On(store) = &mut self.protection {
            if let Err(e) = store.sync_if_pending() {
                self.warn(&format!("cannot sync {}: {e}", self.dwr_path.display()));
            }
        }
    }
}

/// The bytes of a WAL index's start (the two header copies, then
/// `nBackfill`) from the header copies and a `nBackfill` read apart.
fn headers_with(headers: &[u8; wal_index::HEADERS], backfill: u32) -> Vec<u8> {
    let mut bytes = headers.to_vec();
    bytes.extend_from_slice(&backfill.to_ne_bytes());
    bytes
}

/// What this connection's writes since the last refresh left, for the
/// next snapshot to use instead of reading the file; all of it is used, and
/// cleared, when a snapshot is read.
#[derive(Default)]
pub(super) struct Written {
    /// The last page 1 image SQLite wrote: a snapshot takes it instead of
    /// reading the file again.
    pub(super) page1_image: Option<Vec<u8>>,
    /// Witness candidates (see [`Witnesses`]): unprotected pages with
    /// content that this connection wrote, with the checksum of what it
    /// wrote.
    pub(super) witness_candidates: Witnesses,
    /// How many written pages were looked at as candidates; bounded so
    /// that a large transaction pays for a few only.
    pub(super) witness_looks: u32,
    /// Unprotected pages written (a filter: it may say yes for a page that
    /// was not written). A witness the header carries whose page may have
    /// been written is read again.
    pub(super) pages: WrittenFilter,
}

impl Written {
    pub(super) fn clear(&mut self) {
        self.page1_image = None;
        self.witness_candidates = Witnesses::default();
        self.witness_looks = 0;
        self.pages.clear();
    }
}

/// A set of page numbers that may answer yes for a page not in it: one bit
/// per page number modulo its size. Cheap enough for every write.
pub struct WrittenFilter {
    bits: Box<[u64; 64]>,
    /// The fewest pages a truncate left in the file since the last clear:
    /// the pages past it were dropped, and any of them in the file again
    /// came back as zeros or by writes.
    kept: Option<u64>,
}

impl Default for WrittenFilter {
    fn default() -> Self {
        WrittenFilter {
            bits: Box::new([0; 64]),
            kept: None,
        }
    }
}

impl WrittenFilter {
    fn bit(pgno: u32) -> (usize, u64) {
        let n = pgno as usize % (64 * 64);
        (n / 64, 1u64 << (n % 64))
    }

    #[inline]
    pub fn insert(&mut self, pgno: u32) {
        let (word, bit) = Self::bit(pgno);
        self.bits[word] |= bit;
    }

    pub fn insert_all(&mut self) {
        self.bits.fill(!0);
    }

    /// The file was truncated to `pages` pages: every page past them counts
    /// as written.
    pub fn cut(&mut self, pages: u64) {
        self.kept = Some(self.kept.map_or(pages, |k| k.min(pages)));
    }

    pub fn may_contain(&self, pgno: u32) -> bool {
        let (word, bit) = Self::bit(pgno);
        self.bits[word] & bit != 0 || self.kept.is_some_and(|k| u64::from(pgno) > k)
    }

    pub fn clear(&mut self) {
        self.bits.fill(0);
        self.kept = None;
    }
}
