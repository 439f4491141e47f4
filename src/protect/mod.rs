//! What the shim knows about one open database file, and when it acts.
//!
//! The VFS layer (`vfs`) forwards every call to the real `unix` file and
//! reports the few events that matter here:
//!
//! * a write that touches page 1 or a protected page marks the copy dirty;
//! * a *commit boundary* (the database file is synced, its lock drops below
//!   RESERVED, the WAL checkpoint lock is released, or the file is closed)
//!   refreshes the copy if it is dirty, before the lock is released.
//!
//! Everything here is safe Rust; the database file is reached only through
//! the [`DbIo`] trait. An error on the `-dwr` path turns protection off for
//! this file (with a reason the pragma reports) and is never returned to
//! SQLite.

use crate::dbfile::{self, DbHeader};
use crate::dwr::file::{DwrOpener, OpenMode};
use crate::dwr::format::{
    self, Fingerprint, WalSession, Witnesses, FLAG_PENDING, FLAG_WAL, FLAG_WAL_AHEAD,
};
use crate::dwr::identity::FileIdentity;
use crate::dwr::store::{PageFilterSet, Snapshot, Store, SyncPolicy};
use crate::recovery::{self, DiskPages, Plan};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// SQLite lock levels, as passed to xLock/xUnlock.
pub const LOCK_NONE: i32 = 0;
pub const LOCK_SHARED: i32 = 1;
pub const LOCK_RESERVED: i32 = 2;
pub const LOCK_EXCLUSIVE: i32 = 4;

/// An SQLite result code from the underlying file.
pub type Rc = i32;
pub const SQLITE_OK: Rc = 0;
pub const SQLITE_BUSY: Rc = 5;

/// The underlying database file, as the monitor needs it.
pub trait DbIo {
    /// Reads exactly `buf.len()` bytes; a short read zero-fills and errors.
    fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Rc>;
    fn write(&mut self, buf: &[u8], offset: u64) -> Result<(), Rc>;
    fn size(&mut self) -> Result<u64, Rc>;
    fn sync(&mut self) -> Result<(), Rc>;
    fn lock(&mut self, level: i32) -> Result<(), Rc>;
    fn unlock(&mut self, level: i32) -> Result<(), Rc>;
    /// Takes (or releases) the WAL checkpoint lock, without waiting.
    fn checkpoint_lock(&mut self, take: bool) -> Result<(), Rc>;
    /// In WAL mode, whether every frame of the WAL is in the database
    /// file (`nBackfill` ≥ `mxFrame` in the WAL index); `None` without a
    /// mapped WAL index.
    fn wal_backfill_complete(&mut self) -> Option<bool> {
        None
    }
}

/// Whether the file is protected.
enum Protection {
    /// Not protected. `reason` says why, when an error turned it off.
    Off { reason: Option<String> },
    /// Protected; the store is open.
    On(Box<Store>),
}

/// A warning for `sqlite3_log`, collected by the monitor and emitted by the
/// VFS layer (which owns the FFI).
pub type Warn<'a> = &'a mut dyn FnMut(&str);

mod heal;
pub mod pragma;
pub mod quarantine;

/// Per-file state.
pub struct Monitor {
    db_path: PathBuf,
    /// Opens the `-dwr` (through the base VFS in the extension).
    opener: Arc<dyn DwrOpener>,
    dwr_path: PathBuf,
    readonly: bool,
    policy: SyncPolicy,
    protection: Protection,
    /// Page size of the last snapshot (0 until one is taken).
    page_size: u32,
    /// Pages of the last snapshot; writes to them (or page 1) make it dirty.
    protected: PageFilterSet,
    /// A write or truncate since the last refresh may have changed a
    /// protected page.
    dirty: bool,
    /// A protected page other than page 1 was written: the schema tree must
    /// be walked again.
    schema_touched: bool,
    /// The last page 1 image SQLite wrote since the last refresh: a
    /// snapshot takes it instead of reading the file again.
    page1_image: Option<Vec<u8>>,
    /// Freelist trunk pages of the last snapshot, and whether one of them
    /// was written since (if not, its checksum is still valid).
    freelist_trunks: Vec<u32>,
    freelist_touched: bool,
    /// Which file this connection has open, taken once at open.
    identity: FileIdentity,
    /// Witness candidates (see [`Witnesses`]): unprotected pages with
    /// content that this connection wrote since the last refresh, with the
    /// checksum of what it wrote.
    witness_candidates: Witnesses,
    /// How many written pages were looked at as candidates since the last
    /// refresh; bounded so that a large transaction pays for a few only.
    witness_looks: u32,
    /// Unprotected pages written since the last refresh (a filter: it may
    /// say yes for a page that was not written). A witness the header
    /// carries whose page may have been written is read again.
    data_written: WrittenFilter,
    /// Page 1 was written at all (used to notice a `-dwr` another
    /// connection created while this one was unprotected).
    page1_written: bool,
    lock_level: i32,
    /// This connection holds the WAL checkpoint lock: the database file is
    /// being written by a checkpoint.
    checkpointing: bool,
    /// The WAL index is mapped through this file (the database is in WAL
    /// mode and the pager has opened the WAL).
    shm_mapped: bool,
    /// This connection wrote a `PENDING` generation at the database sync of
    /// the current transaction, and nothing was written since: at the
    /// commit boundary a header-only update confirms it.
    tentative: bool,
    /// The WAL was checkpointed in full and deleted: the next generation
    /// is taken without `WAL_AHEAD`.
    wal_retiring: bool,
    /// Inside the database sync of a WAL checkpoint, which SQLite runs only
    /// when it copied every frame: the file is one committed state.
    checkpoint_complete: bool,
    /// `PRAGMA locking_mode=EXCLUSIVE` was seen on this connection.
    exclusive_locking: bool,
    last_event: Option<String>,
    /// Read-path state (see `heal`).
    read: heal::ReadState,
}

/// What `PRAGMA meta_double_write=enabled` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Enabled {
    Enabled,
    Recovered(String),
}

impl Monitor {
    pub fn new(
        db_path: &Path,
        readonly: bool,
        policy: SyncPolicy,
        force_enable: bool,
        opener: Arc<dyn DwrOpener>,
        warn: Warn,
    ) -> Monitor {
        let dwr_path = dwr_path_for(db_path);
        let mut m = Monitor {
            db_path: db_path.to_owned(),
            opener,
            dwr_path,
            readonly,
            policy,
            protection: Protection::Off { reason: None },
            page_size: 0,
            protected: PageFilterSet::default(),
            dirty: false,
            schema_touched: false,
            page1_image: None,
            freelist_trunks: Vec::new(),
            freelist_touched: true,
            identity: FileIdentity::of_path(db_path).unwrap_or_default(),
            witness_candidates: Witnesses::default(),
            witness_looks: 0,
            data_written: WrittenFilter::default(),
            page1_written: false,
            lock_level: LOCK_NONE,
            checkpointing: false,
            shm_mapped: false,
            tentative: false,
            wal_retiring: false,
            checkpoint_complete: false,
            exclusive_locking: false,
            last_event: None,
            read: heal::ReadState::default(),
        };
        let exists = m.dwr_path.exists();
        // Protection persists through the file: an existing -dwr means this
        // database is protected. No refresh happens until this connection
        // writes (or finds the copy older than a healthy file): a reader
        // must never copy a damaged file over a good copy. A read-only
        // connection cannot keep the copy current or repair the file, but
        // it can serve the copy in place of damaged pages.
        // Forcing protection on (METADWR_ENABLE) is for databases: a file of
        // other bytes gets no -dwr, and says why.
        if force_enable && !exists && !readonly {
            if let Some(why) = not_a_database(db_path) {
                m.protection = Protection::Off { reason: Some(why) };
                return m;
            }
        }
        let mode = match (readonly, exists || force_enable) {
            (_, false) => None,
            (true, true) if exists => Some(OpenMode::ReadOnly),
            (true, true) => None,
            (false, true) => Some(OpenMode::Create),
        };
        if let Some(mode) = mode {
            match m.open_store(mode) {
                Ok(store) => m.protection = Protection::On(Box::new(store)),
                Err(e) => {
                    let why = format!("cannot open {}: {e}", m.dwr_path.display());
                    warn(&format!(
                        "metadwr: protection of {} is off: {why}",
                        db_path.display()
                    ));
                    m.protection = Protection::Off { reason: Some(why) };
                }
            }
        }
        m
    }

    fn open_store(&self, mode: OpenMode) -> std::io::Result<Store> {
        Store::open_with(&*self.opener, &self.dwr_path, mode, self.policy)
    }

    pub fn is_protected(&self) -> bool {
        matches!(self.protection, Protection::On(_))
    }

    pub fn lock_level(&self) -> i32 {
        self.lock_level
    }

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
        warn: Warn,
    ) -> Rc {
        if self.checkpointing {
            let rc = sync_db();
            if rc == SQLITE_OK {
                if self.is_protected() {
                    // The file is one committed state again. An earlier
                    // partial checkpoint, of this connection or another, may
                    // have changed protected pages that this one did not
                    // write, and once the WAL restarts their frames are
                    // gone: compare everything (unchanged pages are not
                    // written).
                    self.checkpoint_complete = true;
                    self.dirty = true;
                    self.schema_touched = true;
                }
                self.commit_boundary(io, warn);
                self.checkpoint_complete = false;
            }
            return rc;
        }
        if self.readonly || !self.is_protected() || !self.dirty || self.lock_level < LOCK_RESERVED {
            return sync_db();
        }
        self.page1_written = false;
        if let Protection::On(store) = &mut self.protection {
            store.set_defer_sync(true);
        }
        let written = self.refresh_as(io, FLAG_PENDING);
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
            self.fail(&why, warn);
        }
        if rc != SQLITE_OK {
            // The commit fails and SQLite rolls it back (or leaves a hot
            // journal); the pending copy must not be confirmed.
            self.tentative = false;
        }
        rc
    }

    pub fn set_checkpointing(&mut self, on: bool) {
        self.checkpointing = on;
    }

    pub fn set_shm_mapped(&mut self, on: bool) {
        self.shm_mapped = on;
    }

    /// A WAL read transaction starts (a read-mark lock is taken). In WAL
    /// mode the connection keeps its SHARED lock on the database file
    /// between transactions, so this, not the unlock, is where what the
    /// last transaction read stops vouching for the copy.
    #[inline]
    pub fn wal_read_starting(&mut self) {
        self.read.forget_trust();
    }

    /// Records the lock level after a successful xLock. Returns the level
    /// before when the step needs [`Self::exclusive_taken`].
    #[inline(always)]
    pub fn lock_taken(&mut self, level: i32) -> Option<i32> {
        let previous = self.lock_level;
        self.lock_level = level;
        (level == LOCK_EXCLUSIVE && previous < LOCK_EXCLUSIVE).then_some(previous)
    }

    /// EXCLUSIVE was just taken. A pending repair runs when SQLite's own
    /// write path takes it (from RESERVED: never on the way into a
    /// hot-journal rollback).
    pub fn exclusive_taken(&mut self, io: &mut dyn DbIo, previous: i32, warn: Warn) {
        if previous == LOCK_RESERVED {
            self.repair_if_pending(io, warn);
        }
        if (!self.shm_mapped || self.exclusive_locking) && self.copy_is_wal_mode() {
            // locking_mode=EXCLUSIVE in WAL mode takes no WAL write lock at
            // all (SQLite skips shared-memory locks then); this lock, held
            // until the connection closes, comes before any frame.
            self.wal_write_starting(warn);
        }
    }

    /// Records the lock level after a successful xUnlock (to SHARED or
    /// NONE).
    #[inline(always)]
    pub fn lock_released(&mut self, level: i32) {
        self.lock_level = level;
        if level == LOCK_NONE {
            self.read.forget_trust();
        }
    }

    /// Whether an xUnlock to `level` needs [`Self::commit_boundary`] or
    /// [`Self::unlocking_fully`] first (bring the copy up to date before
    /// other connections get in; retire `WAL_AHEAD` at the last unlock).
    /// The early-outs of both, combined and inlined: usually there is
    /// nothing to do.
    #[inline(always)]
    pub fn before_unlock(&mut self, level: i32) -> bool {
        level < self.lock_level
            && (self.dirty
                || self.tentative
                || self.page1_written
                || (level == LOCK_NONE && self.lock_level == LOCK_EXCLUSIVE && !self.readonly))
    }

    /// `PRAGMA locking_mode` was set to `mode` on this connection.
    pub fn note_locking_mode(&mut self, mode: &str) {
        self.exclusive_locking = mode.trim().eq_ignore_ascii_case("exclusive");
    }

    /// The copy in memory describes a WAL-mode database (no system call).
    fn copy_is_wal_mode(&self) -> bool {
        match &self.protection {
            Protection::On(store) => store
                .mirror_header()
                .is_some_and(|h| h.flags & FLAG_WAL != 0),
            Protection::Off { .. } => false,
        }
    }

    /// The answer to `PRAGMA meta_double_write`.
    pub fn status(&self) -> String {
        match &self.protection {
            Protection::On(_) => match &self.last_event {
                Some(e) => format!("enabled ({e})"),
                None if self.readonly => {
                    "enabled (read-only connection: damaged pages are served from the copy, not repaired)"
                        .into()
                }
                None => match &self.protection {
                    Protection::On(store)
                        if store.holds_nothing()
                            && std::fs::metadata(&self.db_path).is_ok_and(|m| m.len() == 0) =>
                    {
                        "enabled (nothing to protect yet: the database is empty)".into()
                    }
                    _ => "enabled".into(),
                },
            },
            Protection::Off { reason: None } if self.readonly => {
                "disabled (read-only connection)".into()
            }
            Protection::Off { reason: None } => "disabled".into(),
            Protection::Off { reason: Some(r) } => format!("disabled ({r})"),
        }
    }

    pub fn policy(&self) -> SyncPolicy {
        self.policy
    }

    pub fn set_policy(&mut self, policy: SyncPolicy) {
        self.policy = policy;
        if let Protection::On(store) = &mut self.protection {
            store.set_policy(policy);
        }
    }

    pub fn stats(&self) -> Option<crate::dwr::store::Stats> {
        match &self.protection {
            Protection::On(s) => Some(s.stats()),
            _ => None,
        }
    }

    /// Called after a successful write of `len` bytes at `offset`.
    #[inline]
    pub fn note_write(&mut self, offset: u64, data: &[u8]) {
        let len = data.len();
        if offset == 0 {
            self.page1_written = true;
        }
        if !self.is_protected() {
            return;
        }
        if offset == 0 && len >= 100 && dbfile::page_size_from_header(data) == Some(len as u32) {
            match &mut self.page1_image {
                Some(image) if image.len() == len => image.copy_from_slice(data),
                _ => self.page1_image = Some(data.to_vec()),
            }
        }
        if self.page_size == 0 {
            self.dirty = true;
            self.schema_touched = true;
            return;
        }
        let ps = self.page_size as u64;
        let first = offset / ps + 1;
        let last = (offset + len.max(1) as u64 - 1) / ps + 1;
        let whole_page = first == last && offset & (ps - 1) == 0 && len as u64 == ps;
        for pgno in first..=last {
            let pgno = pgno as u32;
            if pgno == 1 {
                self.dirty = true;
            } else if self.protected.contains(pgno) {
                self.dirty = true;
                self.schema_touched = true;
            } else {
                if self.freelist_trunks.contains(&pgno) {
                    self.freelist_touched = true;
                }
                // The witnesses the copy records must follow every write,
                // or they would prove the file changed when it did not.
                self.dirty = true;
                self.data_written.insert(pgno);
                if whole_page {
                    self.note_witness_candidate(pgno, data);
                } else {
                    self.witness_candidates = Witnesses::default();
                    self.witness_looks = u32::MAX;
                }
            }
        }
    }

    /// A whole unprotected page was written: keep its checksum if it is a
    /// candidate already, or if it can become one.
    fn note_witness_candidate(&mut self, pgno: u32, data: &[u8]) {
        /// Pages looked at per refresh for content worth recording.
        const MAX_LOOKS: u32 = 16;
        if self.witness_candidates.contains(pgno) {
            // Written again: keep the checksum of the new image, or drop
            // the page if it no longer has content (freed and zeroed, or
            // emptied): an empty page ties the copy to no database.
            let worthy = format::witness_worthy(data);
            let mut kept = Witnesses::default();
            for (p, crc) in self.witness_candidates.iter() {
                if p != pgno {
                    kept.push(p, crc);
                } else if worthy {
                    kept.push(p, crate::dwr::format::crc32c(data));
                }
            }
            self.witness_candidates = kept;
        } else if !self.witness_candidates.is_full() && self.witness_looks < MAX_LOOKS {
            self.witness_looks += 1;
            if format::witness_worthy(data) {
                self.witness_candidates
                    .push(pgno, crate::dwr::format::crc32c(data));
            }
        }
    }

    /// Called after a successful truncate to `size` bytes: pages may have
    /// moved (auto-vacuum, VACUUM), so the next refresh walks the tree again.
    pub fn note_truncate(&mut self, size: u64) {
        if self.is_protected() {
            self.dirty = true;
            self.schema_touched = true;
            self.freelist_touched = true;
            // Moving a page writes it, and those writes are noted one by
            // one: a truncate itself changes no page it keeps, only drops
            // the ones past the new end. SQLite truncates the file at the
            // end of every complete WAL checkpoint, usually to the size it
            // already has; counting that as a write of every page would
            // read every witness again at each checkpoint, reads of the
            // database file SQLite itself never makes.
            if self.page_size == 0 {
                self.data_written.insert_all();
            } else {
                self.data_written.cut(size / self.page_size as u64);
            }
        }
    }

    /// A commit boundary: brings the copy up to date if anything protected
    /// changed. Never fails; problems turn protection off.
    pub fn commit_boundary(&mut self, io: &mut dyn DbIo, warn: Warn) {
        // The end of every read transaction comes here: leave at once when
        // there is nothing to write, confirm or adopt.
        if !self.dirty && !self.tentative && !self.page1_written {
            return;
        }
        if self.readonly {
            return;
        }
        if !self.is_protected() {
            if self.page1_written && !self.readonly {
                self.page1_written = false;
                self.adopt_foreign_enable(io, warn);
            }
            return;
        }
        if !self.dirty {
            if std::mem::take(&mut self.tentative) {
                self.confirm_pending(warn);
            }
            return;
        }
        self.page1_written = false;
        self.tentative = false;
        if let Err(e) = self.refresh(io) {
            self.fail(&e, warn);
        }
    }

    /// The commit point of the transaction whose copy was written `PENDING`
    /// has passed: confirm it with a header-only update.
    fn confirm_pending(&mut self, warn: Warn) {
        self.update_flags(false, 0, FLAG_PENDING, warn);
    }

    /// A header-only update of the copy's flags (see
    /// [`Store::rewrite_flags`]), after re-reading the `-dwr` header when
    /// another connection may have written since (`reload`). A failure
    /// turns protection off.
    fn update_flags(&mut self, reload: bool, set: u32, clear: u32, warn: Warn) {
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
            self.dirty = true;
            self.schema_touched = true;
            return;
        }
        let result = result.and_then(|()| {
            store
                .rewrite_flags(set, clear)
                .map(|_| ())
                .map_err(|e| format!("cannot write the -dwr: {e}"))
        });
        if let Err(why) = result {
            self.fail(&why, warn);
        }
    }

    /// A write transaction is starting in WAL mode (the WAL write lock, or
    /// the exclusive lock of `locking_mode=EXCLUSIVE`): before its frames
    /// can reach the disk, the copy must say that the WAL may hold commits
    /// it does not, or a checkpoint by a program without metadwr after a
    /// crash would leave a copy behind the file with nothing to show it.
    pub fn wal_write_starting(&mut self, warn: Warn) {
        if self.readonly || !self.is_protected() {
            return;
        }
        let wal_mode = self.shm_mapped;
        let Protection::On(store) = &mut self.protection else {
            return;
        };
        if let Err(e) = store.refresh() {
            let why = format!("cannot read the -dwr: {e}");
            self.fail(&why, warn);
            return;
        }
        let needed = store
            .mirror_header()
            .is_some_and(|h| (wal_mode || h.flags & FLAG_WAL != 0) && !h.wal_ahead());
        if needed {
            self.update_flags(false, FLAG_WAL_AHEAD, 0, warn);
        }
    }

    /// A WAL write transaction ends (the WAL write lock is released) with
    /// frames in the WAL. If the copy says the WAL may be ahead of it but
    /// not which session of the WAL continues it (the WAL was empty or gone
    /// when the copy was taken), record the session this writer's frames
    /// went into: nobody could restart the WAL while the lock was held.
    pub fn wal_write_ending(&mut self, warn: Warn) {
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
            self.fail(&why, warn);
        }
    }

    /// The WAL write lock is about to be released with the WAL index
    /// saying the log is empty (a RESTART or TRUNCATE checkpoint, which
    /// holds that lock, copied every frame into the file): no commit is
    /// left that the copy lacks, and the lock keeps writers out meanwhile.
    pub fn wal_emptied(&mut self, warn: Warn) {
        if self.readonly {
            return;
        }
        let Protection::On(store) = &self.protection else {
            return;
        };
        if store.mirror_header().is_some_and(|h| h.wal_ahead()) {
            self.update_flags(true, 0, FLAG_WAL_AHEAD, warn);
        }
    }

    /// The connection is dropping its last lock. In WAL mode that happens
    /// when it closes (or leaves WAL mode) after SQLite checkpointed the
    /// WAL in full and deleted (or emptied) it, still under the exclusive
    /// lock: no frame is left anywhere, so the copy no longer needs
    /// `WAL_AHEAD`.
    pub fn unlocking_fully(&mut self, io: &mut dyn DbIo, warn: Warn) {
        if self.lock_level == LOCK_EXCLUSIVE && !self.readonly {
            self.retire_wal_if_gone(io, warn);
        }
    }

    fn retire_wal_if_gone(&mut self, io: &mut dyn DbIo, warn: Warn) {
        let Protection::On(store) = &self.protection else {
            return;
        };
        if !store.mirror_header().is_some_and(|h| h.wal_ahead()) || wal_has_frames(&self.db_path) {
            return;
        }
        self.wal_retiring = true;
        self.dirty = true;
        if let Err(e) = self.refresh(io) {
            self.fail(&e, warn);
        }
        self.wal_retiring = false;
    }

    /// Another connection enabled protection while this one was not
    /// protected: join in, so the copy stays current whoever writes.
    fn adopt_foreign_enable(&mut self, io: &mut dyn DbIo, warn: Warn) {
        if matches!(self.protection, Protection::Off { reason: None }) && self.dwr_path.exists() {
            if let Ok(store) = self.open_store(OpenMode::ReadWrite) {
                self.protection = Protection::On(Box::new(store));
                self.dirty = true;
                self.schema_touched = true;
                if let Err(e) = self.refresh(io) {
                    self.fail(&e, warn);
                }
            }
        }
    }

    /// The database file is being closed.
    pub fn close(&mut self, io: &mut dyn DbIo, warn: Warn) {
        self.commit_boundary(io, warn);
        if let Protection::On(store) = &mut self.protection {
            if let Err(e) = store.sync_if_pending() {
                warn(&format!("cannot sync {}: {e}", self.dwr_path.display()));
            }
        }
    }

    /// Turns protection of this file off, with `why` as the reason
    /// `PRAGMA meta_double_write` reports. Also how the VFS layer retires a
    /// monitor whose code panicked.
    pub fn fail(&mut self, why: &str, warn: Warn) {
        warn(&format!(
            "metadwr: protection of {} turned off: {why}",
            self.db_path.display()
        ));
        self.protection = Protection::Off {
            reason: Some(why.to_owned()),
        };
        self.protected.clear();
        self.dirty = false;
        self.tentative = false;
    }

    fn store(&mut self) -> Result<&mut Store, String> {
        match &mut self.protection {
            Protection::On(s) => Ok(s),
            Protection::Off { .. } => Err("protection is off".into()),
        }
    }

    /// Writes a new, confirmed generation from the file as it is now.
    fn refresh(&mut self, io: &mut dyn DbIo) -> Result<(), String> {
        self.refresh_as(io, 0).map(|_| ())
    }

    /// Writes a new generation from the file as it is now, with `flags`
    /// (`PENDING` or none) added to those the file's state implies.
    /// Returns whether a generation was written.
    fn refresh_as(&mut self, io: &mut dyn DbIo, flags: u32) -> Result<bool, String> {
        // A WAL checkpoint that could not copy every frame (readers held it
        // back) leaves the database file a mix of states: the pages whose
        // newest frame it had to leave keep older images, and only the WAL
        // makes the whole consistent. Readers read the pages it copied from
        // the file, so the copy follows them; but if the mix does not even
        // form a valid schema tree, that is not damage: wait for the next
        // checkpoint (`dirty` stays set).
        let mixed = self.shm_mapped
            && !self.checkpoint_complete
            && io.wal_backfill_complete() == Some(false);
        let store = self.store()?;
        if !store.is_linked() {
            // Another connection disabled protection and removed the file.
            self.protection = Protection::Off { reason: None };
            self.protected.clear();
            return Ok(false);
        }
        store
            .refresh()
            .map_err(|e| format!("cannot read the -dwr: {e}"))?;
        // Another connection may have written a generation with another
        // schema tree: this transaction's writes were then tracked against
        // the wrong pages, and only a walk can tell what changed.
        let same_pages = match &self.protection {
            Protection::On(store) => store.mirror_header().is_none_or(|h| {
                h.page_size == self.page_size
                    && h.page_count as usize == self.protected.len()
                    && store.mirror_pages().all(|p| self.protected.contains(p))
            }),
            Protection::Off { .. } => true,
        };
        let identity = self.identity;
        let same_file = match &self.protection {
            Protection::On(store) => store
                .mirror_header()
                .is_none_or(|h| h.fingerprint.identity.is_same_file(&identity)),
            Protection::Off { .. } => true,
        };
        if !same_pages || !same_file {
            // A copy of another file vouches for nothing here: walk this one.
            self.schema_touched = true;
        }
        let reuse = !self.schema_touched;
        let snapshot = match &self.protection {
            Protection::On(store) => {
                let freelist = store.mirror_header().and_then(|h| {
                    let fp = h.fingerprint;
                    (!self.freelist_touched).then_some((
                        fp.freelist_trunk,
                        fp.freelist_count,
                        fp.freelist_crc,
                    ))
                });
                // Witness page numbers count in the copy's page size.
                let carried = store
                    .mirror_header()
                    .filter(|h| same_file && h.page_size == self.page_size)
                    .map(|h| h.fingerprint.witnesses)
                    .unwrap_or_default();
                let hints = Hints {
                    identity: self.identity,
                    page1: self.page1_image.as_deref(),
                    reuse: if reuse { Some(&**store) } else { None },
                    freelist,
                    witnesses: WitnessHints {
                        page_size: self.page_size,
                        written: self.witness_candidates,
                        carried,
                        maybe_rewritten: &self.data_written,
                    },
                };
                take_snapshot(io, hints)
            }
            Protection::Off { .. } => return Err("protection is off".into()),
        };
        self.page1_image = None;
        self.witness_candidates = Witnesses::default();
        self.witness_looks = 0;
        self.data_written.clear();
        let snapshot = match snapshot {
            Ok(Some(taken)) => {
                if let Some(trunks) = taken.trunks {
                    self.freelist_trunks = trunks;
                }
                self.freelist_touched = false;
                let mut snap = taken.snapshot;
                snap.flags |= flags;
                if snap.flags & FLAG_WAL != 0 {
                    // The frames of this session (and, when the file holds
                    // all of it, of the next) continue this copy.
                    let complete =
                        self.checkpoint_complete || io.wal_backfill_complete() == Some(true);
                    snap.fingerprint.wal_session =
                        wal_session(&self.db_path).map(|s| WalSession { complete, ..s });
                }
                if snap.flags & FLAG_WAL != 0 && !self.wal_retiring {
                    snap.flags |= FLAG_WAL_AHEAD;
                }
                if taken.page1_only {
                    if let Some(wrote) = self.write_page1_only(&snap)? {
                        return Ok(wrote);
                    }
                }
                Some(self.complete_from_mirror(snap, taken.page1_only))
            }
            Ok(None) => None,
            Err(_) if mixed => return Ok(false),
            Err(damage) => {
                // The database itself is damaged: keep the copy as it is
                // (it is what a restore needs) and stay protected.
                self.dirty = false;
                self.last_event = Some(format!("database damaged, run meta_recover(): {damage}"));
                return Ok(false);
            }
        };
        let Some(snap) = snapshot else {
            // Empty database: nothing to protect yet.
            self.dirty = false;
            return Ok(false);
        };
        let store = self.store()?;
        let before = store.mirror_generation();
        let written = store
            .write_generation(&snap)
            .map_err(|e| format!("cannot write the -dwr: {e}"))?;
        self.page_size = snap.page_size;
        self.protected = snap.pages.iter().map(|(p, _)| *p).collect();
        self.after_refresh();
        self.schema_touched = false;
        Ok(before != Some(written))
    }

    /// The common commit: page 1 changed, the rest of the schema did not.
    /// Returns `None` when the store needs the general path, else whether
    /// a generation was written.
    fn write_page1_only(&mut self, snap: &Snapshot) -> Result<Option<bool>, String> {
        let store = self.store()?;
        let before = store.mirror_generation();
        let written = store
            .write_page1(&snap.pages[0].1, snap.fingerprint, snap.flags)
            .map_err(|e| format!("cannot write the -dwr: {e}"))?;
        let Some(written) = written else {
            return Ok(None);
        };
        self.after_refresh();
        Ok(Some(before != Some(written)))
    }

    /// Fills a page-1-only snapshot with the mirror's other pages.
    fn complete_from_mirror(&self, mut snap: Snapshot, page1_only: bool) -> Snapshot {
        if page1_only {
            if let Protection::On(store) = &self.protection {
                for pgno in store.mirror_pages().filter(|&p| p != 1) {
                    snap.pages
                        .push((pgno, store.mirror_page(pgno).unwrap().to_vec()));
                }
            }
        }
        snap
    }

    /// Bookkeeping after a new generation was written.
    fn after_refresh(&mut self) {
        self.dirty = false;
        if self.is_stale() {
            // The copy describes the file again.
            self.last_event = None;
        }
        self.read.copy_refreshed();
    }

    fn is_stale(&self) -> bool {
        matches!(&self.last_event, Some(e) if e.starts_with("stale: "))
    }

    /// `PRAGMA meta_double_write=enabled`.
    pub fn enable(&mut self, io: &mut dyn DbIo, warn: Warn) -> Result<Enabled, String> {
        if self.readonly {
            return Err("cannot protect a database opened read-only".into());
        }
        let held = self.lock_level;
        if held == LOCK_NONE {
            io.lock(LOCK_SHARED).map_err(|rc| lock_error(rc, "read"))?;
        }
        let result = self.enable_locked(io, warn);
        if held == LOCK_NONE {
            let _ = io.unlock(LOCK_NONE);
        }
        result
    }

    fn enable_locked(&mut self, io: &mut dyn DbIo, warn: Warn) -> Result<Enabled, String> {
        let created = !self.dwr_path.exists();
        let result = self.enable_inner(io, warn);
        if result.is_err() && created {
            // A failed first enable leaves nothing behind: no -dwr, so the
            // database does not count as protected on the next open.
            let _ = std::fs::remove_file(&self.dwr_path);
            self.protection = Protection::Off { reason: None };
            self.protected.clear();
        }
        result
    }

    fn enable_inner(&mut self, io: &mut dyn DbIo, warn: Warn) -> Result<Enabled, String> {
        if !self.is_protected() {
            let store = self
                .open_store(OpenMode::Create)
                .map_err(|e| format!("cannot create {}: {e}", self.dwr_path.display()))?;
            self.protection = Protection::On(Box::new(store));
        }
        if let Err(damage) = check_health(io) {
            // Damaged: restore if the copy provably belongs to this file;
            // never overwrite a possibly good copy with damaged pages.
            let report = self.recover(io, warn).map_err(|e| {
                format!("the database is damaged ({damage}) and cannot be restored: {e}")
            })?;
            return Ok(Enabled::Recovered(report));
        }
        self.schema_touched = true;
        self.dirty = true;
        self.last_event = None;
        self.refresh(io)?;
        match self.last_event.take() {
            Some(damage) => Err(damage),
            None => Ok(Enabled::Enabled),
        }
    }

    /// `PRAGMA meta_double_write=disabled`: stop and remove the copy.
    pub fn disable(&mut self) -> Result<(), String> {
        self.protection = Protection::Off { reason: None };
        self.protected.clear();
        self.dirty = false;
        self.last_event = None;
        match std::fs::remove_file(&self.dwr_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", self.dwr_path.display())),
        }
    }

    /// `meta_recover()`: restore damaged protected pages from the copy.
    /// Takes an exclusive lock on the database for the duration.
    pub fn recover(&mut self, io: &mut dyn DbIo, warn: Warn) -> Result<String, String> {
        if self.readonly {
            return Err("cannot restore into a database opened read-only".into());
        }
        if !self.is_protected() {
            if !self.dwr_path.exists() {
                return Err(format!(
                    "no copy: {} does not exist",
                    self.dwr_path.display()
                ));
            }
            let store = self
                .open_store(OpenMode::ReadWrite)
                .map_err(|e| format!("cannot open {}: {e}", self.dwr_path.display()))?;
            self.protection = Protection::On(Box::new(store));
        }
        let held = self.lock_level;
        if held >= LOCK_RESERVED {
            return Err(
                "cannot restore inside a write transaction; COMMIT or ROLLBACK first".into(),
            );
        }
        escalate(io, held)?;
        let result = self.recover_exclusive(io, warn);
        let _ = io.unlock(held);
        result
    }

    /// Writes a salvage of this database to `out` (see `salvage/`). The
    /// file is only read, under a shared lock so that no writer changes it
    /// half-way; the `-dwr` only supplies the schema.
    pub fn salvage(&mut self, io: &mut dyn DbIo, out: &Path) -> Result<String, String> {
        let generations = if self.dwr_path.exists() {
            self.open_store(OpenMode::ReadOnly)
                .and_then(|s| s.scan())
                .map(|scan| scan.generations)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let held = self.lock_level;
        if held < LOCK_SHARED {
            io.lock(LOCK_SHARED)
                .map_err(|rc| lock_error(rc, "salvage"))?;
        }
        let db_path = self.db_path.clone();
        let mut disk = Disk {
            io: &mut *io,
            path: &db_path,
        };
        let result = crate::salvage::salvage(crate::salvage::Request {
            db_path: &db_path,
            disk: &mut disk,
            generations,
            out_path: out,
        });
        if held < LOCK_SHARED {
            let _ = io.unlock(held);
        }
        result
    }

    fn recover_exclusive(&mut self, io: &mut dyn DbIo, warn: Warn) -> Result<String, String> {
        // The restore writes page 1 itself; an image SQLite wrote earlier
        // no longer describes the file.
        self.page1_image = None;
        let db_path = self.db_path.clone();
        let store = self.store()?;
        let scan = store
            .scan()
            .map_err(|e| format!("cannot read the -dwr: {e}"))?;
        if scan.generations.is_empty() {
            return Err(format!(
                "the -dwr holds no valid copy ({})",
                if scan.rejected.is_empty() {
                    "empty".to_string()
                } else {
                    scan.rejected.join("; ")
                }
            ));
        }
        let mut disk = Disk {
            io: &mut *io,
            path: &db_path,
        };
        let plan = recovery::plan(&scan.generations, &mut disk);
        let (generation, pages) = match plan {
            Plan::Refuse(why) => return Err(why),
            Plan::Intact { generation } => {
                return Ok(format!(
                    "nothing to restore: the database matches generation {generation}"
                ))
            }
            Plan::Restore { generation, pages } => (generation, pages),
        };
        let g = scan
            .generations
            .iter()
            .find(|g| g.header.generation == generation)
            .unwrap();
        let ps = g.header.page_size;
        // Keep the damaged bytes before anything is overwritten.
        let mut damaged = Vec::new();
        for &pgno in &pages {
            damaged.push((pgno, disk.read_page(pgno, ps).map_err(|e| e.to_string())?));
        }
        quarantine::append(&self.db_path, ps, &damaged)
            .map_err(|e| format!("cannot write the quarantine file: {e}"))?;
        for (pgno, bad) in &damaged {
            let good = g.page(*pgno).unwrap();
            let image = if *pgno == 1 {
                recovery::restored_page1(good, bad)
            } else {
                good.to_vec()
            };
            io.write(&image, (*pgno as u64 - 1) * ps as u64)
                .map_err(|rc| format!("cannot write page {pgno} (error {rc})"))?;
        }
        io.sync()
            .map_err(|rc| format!("cannot sync the database (error {rc})"))?;
        let report = format!(
            "restored {} page{} ({}) from generation {generation}",
            pages.len(),
            if pages.len() == 1 { "" } else { "s" },
            pages
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        warn(&format!("metadwr: {}: {report}", self.db_path.display()));
        self.last_event = Some(format!("recovered: {report}"));
        self.schema_touched = true;
        self.dirty = true;
        if let Err(e) = self.refresh(io) {
            self.fail(&e, warn);
        }
        Ok(report)
    }
}

fn lock_error(rc: Rc, what: &str) -> String {
    if rc == SQLITE_BUSY {
        format!("database is locked: cannot {what} it while another connection holds a conflicting lock")
    } else {
        format!("cannot lock the database (error {rc})")
    }
}

/// Raises the lock to EXCLUSIVE from `held`; on failure restores `held`.
fn escalate(io: &mut dyn DbIo, held: i32) -> Result<(), String> {
    let steps = [LOCK_SHARED, LOCK_RESERVED, LOCK_EXCLUSIVE];
    for level in steps.into_iter().filter(|&l| l > held) {
        if let Err(rc) = io.lock(level) {
            let _ = io.unlock(held.min(LOCK_SHARED));
            return Err(lock_error(rc, "restore"));
        }
    }
    Ok(())
}

/// `<db>-wal`.
fn wal_path_for(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// The session the header of `<db>-wal` names, if the file has one.
fn wal_session(db: &Path) -> Option<WalSession> {
    use std::io::Read;
    let mut header = [0u8; 32];
    let mut file = std::fs::File::open(wal_path_for(db)).ok()?;
    file.read_exact(&mut header).ok()?;
    WalSession::from_wal_header(&header)
}

/// True when `<db>-wal` holds more than its 32-byte header, so frames a
/// checkpoint has yet to apply may be in it. SQLite deletes the WAL (or,
/// with `wal_checkpoint(TRUNCATE)` and size limits, empties it) only once
/// every frame is in the database file.
pub fn wal_has_frames(db: &Path) -> bool {
    std::fs::symlink_metadata(wal_path_for(db)).is_ok_and(|m| m.len() > 32)
}

/// True when `<db>-wal` exists at all.
pub fn wal_exists(db: &Path) -> bool {
    std::fs::symlink_metadata(wal_path_for(db)).is_ok()
}

/// `<db>-dwr`.
pub fn dwr_path_for(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-dwr");
    PathBuf::from(s)
}

/// `<db>-dwr-quarantine`: damaged page images, kept before each restore.
pub fn quarantine_path_for(db: &Path) -> PathBuf {
    quarantine::path_for(db)
}

/// Why the file at `path` is not a SQLite database, if it is not one: it
/// has bytes, but not a database header. An empty or missing file is a
/// database not written yet.
fn not_a_database(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = Vec::with_capacity(100);
    let file = std::fs::File::open(path).ok()?;
    file.take(100).read_to_end(&mut head).ok()?;
    if head.is_empty() {
        return None;
    }
    if head.len() < 100 {
        return Some(format!(
            "not a database: the file has {} bytes, fewer than a database header",
            head.len()
        ));
    }
    if head.starts_with(b"SQLite format 3\0") && dbfile::page_size_from_header(&head).is_some() {
        None
    } else {
        Some("not a database: the file does not start with a SQLite header".into())
    }
}

/// Is page 1 and the schema tree structurally sound on disk?
fn check_health(io: &mut dyn DbIo) -> Result<(), String> {
    let size = io
        .size()
        .map_err(|rc| format!("cannot size the file (error {rc})"))?;
    if size == 0 {
        return Ok(());
    }
    let mut head = [0u8; 100];
    if size < 100 {
        return Err("the file is shorter than a database header".into());
    }
    io.read(&mut head, 0)
        .map_err(|rc| format!("cannot read page 1 (error {rc})"))?;
    let ps = dbfile::page_size_from_header(&head).ok_or("page 1 has no valid page size")?;
    let p1 = read_page(io, 1, ps).map_err(|e| e.to_string())?;
    let header = DbHeader::parse(&p1).map_err(|e| format!("page 1: {e}"))?;
    let max_page = (size / ps as u64) as u32;
    dbfile::schema_tree_pages(&header, max_page, &mut |p| read_page(io, p, ps))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn read_page(io: &mut dyn DbIo, pgno: u32, ps: u32) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; ps as usize];
    io.read(&mut buf, (pgno as u64 - 1) * ps as u64)
        .map_err(|rc| std::io::Error::other(format!("read of page {pgno} failed (error {rc})")))?;
    Ok(buf)
}

/// What the monitor already knows, so that a snapshot need not read it
/// again from the file.
struct Hints<'a> {
    /// Which file this is.
    identity: FileIdentity,
    /// The page 1 image SQLite wrote in this transaction, if any.
    page1: Option<&'a [u8]>,
    /// The store, when no schema page other than page 1 was written: if page
    /// 1's B-tree area and the schema cookie are unchanged too, the other
    /// images come from its mirror.
    reuse: Option<&'a Store>,
    /// The mirror's `(trunk, count, checksum)` of the freelist, when no
    /// trunk page was written since.
    freelist: Option<(u32, u32, u32)>,
    witnesses: WitnessHints<'a>,
}

/// Where the next generation's witness pages come from.
struct WitnessHints<'a> {
    /// The page size the page numbers below count in.
    page_size: u32,
    /// Pages this connection wrote, with the checksums of what it wrote.
    written: Witnesses,
    /// The witnesses of the copy being replaced, when it is this file's.
    carried: Witnesses,
    /// Pages that may have been written since the copy being replaced.
    maybe_rewritten: &'a WrittenFilter,
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

/// Chooses the witness pages of a new generation: the pages this
/// connection wrote first, then the ones the previous copy recorded (read
/// again if they may have been written since), all in the file and outside
/// the protected set. Every checksum is of what the file holds now.
///
/// When that leaves fewer than `MAX_WITNESSES`, and either the snapshot
/// walked the schema anyway (`walked`) or a witness of the previous copy
/// had to be dropped, a few pages are read to find more (see
/// [`search_witnesses`]). Dropping one is what empties the list: SQLite
/// built with `SECURE_DELETE` (Debian's, for one) zeroes every page it
/// frees, so dropping a table or deleting its rows turns the witnesses on
/// its pages into empty pages at once, and without a search a copy of a
/// database full of data would end up recording none.
fn choose_witnesses(
    io: &mut dyn DbIo,
    hints: &WitnessHints,
    ps: u32,
    max_page: u32,
    protected: &dyn Fn(u32) -> bool,
    walked: bool,
    roots: &mut dyn FnMut() -> Vec<u32>,
) -> Result<Witnesses, String> {
    let usable = |p: u32| p >= 2 && p <= max_page && !protected(p);
    let mut chosen = Witnesses::default();
    let (written, carried) = if hints.page_size == ps {
        (hints.written, hints.carried)
    } else {
        Default::default()
    };
    for (pgno, crc) in written.iter().filter(|(p, _)| usable(*p)) {
        chosen.push(pgno, crc);
    }
    let mut lost = false;
    for (pgno, crc) in carried.iter() {
        if chosen.is_full() {
            break;
        }
        if chosen.contains(pgno) {
            continue;
        }
        if !usable(pgno) {
            lost = true;
        } else if hints.maybe_rewritten.may_contain(pgno) {
            let page = read_page(io, pgno, ps).map_err(|e| e.to_string())?;
            if format::witness_worthy(&page) {
                chosen.push(pgno, format::crc32c(&page));
            } else {
                lost = true;
            }
        } else {
            chosen.push(pgno, crc);
        }
    }
    if (walked || lost) && !chosen.is_full() {
        search_witnesses(io, &mut chosen, ps, max_page, &usable, roots)?;
    }
    Ok(chosen)
}

/// Reads up to eight pages to add witnesses to `chosen`: first pages in
/// use, the root pages of the tables and indexes the schema lists (newest,
/// that is highest, first), and for a root too sparse to serve its
/// right-most child, where a B-tree grows; then, with the reads left, pages
/// from the end of the file. The roots come first because the end of the
/// file is where SQLite leaves the pages a dropped table freed: with
/// `SECURE_DELETE` they are all zeros, and eight of them would use up the
/// reads while the data lies below.
fn search_witnesses(
    io: &mut dyn DbIo,
    chosen: &mut Witnesses,
    ps: u32,
    max_page: u32,
    usable: &dyn Fn(u32) -> bool,
    roots: &mut dyn FnMut() -> Vec<u32>,
) -> Result<(), String> {
    /// Pages read to find witnesses when too few are known.
    const SEARCH_READS: u32 = 8;
    let mut reads = 0;
    let mut looked = std::collections::HashSet::new();
    let mut queue = roots();
    queue.sort_unstable();
    // Popped from the back: highest first, and a child pushed is next.
    while let Some(pgno) = queue.pop() {
        if reads == SEARCH_READS || chosen.is_full() {
            return Ok(());
        }
        if !usable(pgno) || chosen.contains(pgno) || !looked.insert(pgno) {
            continue;
        }
        reads += 1;
        let page = read_page(io, pgno, ps).map_err(|e| e.to_string())?;
        if format::witness_worthy(&page) {
            chosen.push(pgno, format::crc32c(&page));
        } else if let Some(child) = dbfile::interior_right_child(&page) {
            queue.push(child);
        }
    }
    let mut pgno = max_page;
    while pgno >= 2 && reads < SEARCH_READS && !chosen.is_full() {
        if usable(pgno) && !chosen.contains(pgno) && !looked.contains(&pgno) {
            reads += 1;
            let page = read_page(io, pgno, ps).map_err(|e| e.to_string())?;
            if format::witness_worthy(&page) {
                chosen.push(pgno, format::crc32c(&page));
            }
        }
        pgno -= 1;
    }
    Ok(())
}

/// What `take_snapshot` read.
struct Taken {
    snapshot: Snapshot,
    /// The freelist trunk pages, when it walked the freelist.
    trunks: Option<Vec<u32>>,
    /// The schema tree is as in the store's mirror: `snapshot.pages` holds
    /// page 1 only, and the other pages are the mirror's.
    page1_only: bool,
}

/// Reads the protected pages as they are in the file now.
fn take_snapshot(io: &mut dyn DbIo, hints: Hints) -> Result<Option<Taken>, String> {
    let size = io
        .size()
        .map_err(|rc| format!("cannot size the database (error {rc})"))?;
    if size < 100 {
        return Ok(None);
    }
    let p1 = match hints.page1 {
        Some(p1) => p1.to_vec(),
        None => {
            let mut head = [0u8; 100];
            io.read(&mut head, 0)
                .map_err(|rc| format!("cannot read page 1 (error {rc})"))?;
            let ps = dbfile::page_size_from_header(&head)
                .ok_or("page 1 of the database is not valid; not copying it")?;
            if size < ps as u64 {
                return Ok(None);
            }
            read_page(io, 1, ps).map_err(|e| e.to_string())?
        }
    };
    let ps = p1.len() as u32;
    let header = DbHeader::parse(&p1).map_err(|e| format!("page 1 is not valid: {e}"))?;
    let max_page = (size / ps as u64) as u32;
    let mirror_matches = hints.reuse.and_then(|s| {
        let h = s.mirror_header()?;
        let old_p1 = s.mirror_page(1)?;
        (h.page_size == ps
            && h.fingerprint.schema_cookie == header.schema_cookie
            && old_p1[100..] == p1[100..])
            .then_some(s)
    });
    let mut pages = vec![(1u32, p1)];
    let page1_only = mirror_matches.is_some();
    match mirror_matches {
        // The schema tree is the mirror's: the snapshot carries page 1 only
        // and the store takes the rest as it is (see Taken::page1_only).
        Some(_) => {}
        None => {
            // The walk keeps the images it reads: each page is read once.
            // Every image comes from the disk: the copy is never trusted
            // over the file it is about to describe.
            let mut images: HashMap<u32, Vec<u8>> = HashMap::new();
            let tree = dbfile::schema_tree_pages(&header, max_page, &mut |p| {
                let image = read_page(io, p, ps)?;
                images.insert(p, image.clone());
                Ok(image)
            })
            .map_err(|e| format!("the schema tree is not valid: {e}"))?;
            for (pgno, _) in tree.into_iter().filter(|(p, _)| *p != 1) {
                let image = images
                    .remove(&pgno)
                    .expect("the walk read every page it lists");
                pages.push((pgno, image));
            }
        }
    }
    let (freelist_crc, trunks) = match hints.freelist {
        Some((trunk, count, crc))
            if trunk == header.freelist_trunk && count == header.freelist_count =>
        {
            (crc, None)
        }
        _ if header.freelist_trunk == 0 => (0, Some(Vec::new())),
        _ => {
            let (crc, chain) =
                recovery::freelist_chain(header.freelist_trunk, ps, max_page, &mut |p| {
                    read_page(io, p, ps)
                })
                .map_err(|e| e.to_string())?;
            (crc, Some(chain))
        }
    };
    let witnesses = {
        let in_snapshot: HashMap<u32, &[u8]> =
            pages.iter().map(|(p, image)| (*p, &image[..])).collect();
        let mirror = hints.reuse.filter(|_| page1_only);
        let in_mirror = |p: u32| mirror.is_some_and(|s| s.mirror_page(p).is_some());
        let protected = |p: u32| in_snapshot.contains_key(&p) || in_mirror(p);
        // The schema tree as this snapshot describes it, from memory: the
        // snapshot's pages, and the mirror's for those it took from there.
        let mut roots = || {
            let image = |p: u32| {
                in_snapshot
                    .get(&p)
                    .copied()
                    .or_else(|| mirror.and_then(|s| s.mirror_page(p)))
            };
            dbfile::schema_root_pages(&header, max_page, &mut |p| {
                image(p).map(<[u8]>::to_vec).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "not in the snapshot")
                })
            })
            .unwrap_or_default()
        };
        choose_witnesses(
            io,
            &hints.witnesses,
            ps,
            max_page,
            &protected,
            !page1_only,
            &mut roots,
        )?
    };
    let snapshot = Snapshot {
        page_size: ps,
        pages,
        fingerprint: Fingerprint {
            change_counter: header.change_counter,
            db_page_count: header.page_count,
            freelist_trunk: header.freelist_trunk,
            freelist_count: header.freelist_count,
            schema_cookie: header.schema_cookie,
            freelist_crc,
            file_size: size,
            identity: hints.identity,
            witnesses,
            // Set by the caller, which knows whether a checkpoint runs.
            wal_session: None,
        },
        flags: if header.write_version == 2 {
            FLAG_WAL
        } else {
            0
        },
    };
    Ok(Some(Taken {
        snapshot,
        trunks,
        page1_only,
    }))
}

/// The database file as the recovery planner sees it.
struct Disk<'a> {
    io: &'a mut dyn DbIo,
    path: &'a Path,
}

impl DiskPages for Disk<'_> {
    fn file_size(&mut self) -> std::io::Result<u64> {
        self.io
            .size()
            .map_err(|rc| std::io::Error::other(format!("error {rc}")))
    }

    fn identity(&mut self) -> std::io::Result<FileIdentity> {
        FileIdentity::of_path(self.path)
    }

    fn read_page(&mut self, pgno: u32, page_size: u32) -> std::io::Result<Vec<u8>> {
        read_page(self.io, pgno, page_size)
    }

    fn wal_has_frames(&mut self) -> bool {
        wal_has_frames(self.path)
    }

    fn wal_session(&mut self) -> Option<WalSession> {
        wal_session(self.path)
    }
}
