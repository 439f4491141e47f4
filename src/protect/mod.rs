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
//! This file holds the [`Monitor`]'s state, its life (open, enable,
//! disable, failure) and its status. The rest, by question:
//!
//! * `wal_locks.rs`: what a lock call or the WAL index says (decoding);
//! * `commit.rs`: when a commit reaches the `-dwr` (writes noticed,
//!   pending and confirm, the checkpoint, `WAL_AHEAD`);
//! * `snapshot.rs`: what a new generation holds;
//! * `heal.rs`: reads, and healing them from the copy;
//! * `recover.rs`: `meta_recover()` and `meta_salvage()`;
//! * `pragma.rs`, `quarantine.rs`: the pragmas, the damaged pages kept.
//!
//! Everything here is safe Rust; the database file is reached only through
//! the [`DbIo`] trait. An error on the `-dwr` path turns protection off for
//! this file (with a reason the pragma reports) and is never returned to
//! SQLite.

use crate::dbfile::{self, DbHeader};
use crate::dwr::file::{DwrOpener, OpenMode};
use crate::dwr::format::{WalSession, FLAG_WAL};
use crate::dwr::identity::FileIdentity;
use crate::dwr::store::{PageFilterSet, Store, SyncPolicy};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use recover::lock_error;
pub use wal_locks::{LockLevel, Rc, ShmLock};

/// The underlying database file, as the monitor needs it.
pub trait DbIo {
    /// Reads exactly `buf.len()` bytes; a short read zero-fills and errors.
    fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Rc>;
    fn write(&mut self, buf: &[u8], offset: u64) -> Result<(), Rc>;
    fn size(&mut self) -> Result<u64, Rc>;
    fn sync(&mut self) -> Result<(), Rc>;
    fn lock(&mut self, level: LockLevel) -> Result<(), Rc>;
    fn unlock(&mut self, level: LockLevel) -> Result<(), Rc>;
    /// Takes (or releases) the WAL checkpoint lock, without waiting.
    fn checkpoint_lock(&mut self, take: bool) -> Result<(), Rc>;
    /// Takes (or releases) the WAL write lock, without waiting.
    fn wal_write_lock(&mut self, _take: bool) -> Result<(), Rc> {
        Err(Rc::IOERR)
    }
    /// In WAL mode, the native-order 32-bit field at byte `at` (a multiple
    /// of 4, below [`wal_locks::wal_index::HEADERS`] + 4) of region 0 of the
    /// WAL index; `None` without a mapped WAL index. See
    /// [`wal_locks::wal_index`] for what the fields mean.
    fn wal_index_u32(&mut self, _at: usize) -> Option<u32> {
        None
    }
    /// The two copies of the WAL-index header; `None` without a mapped WAL
    /// index.
    fn wal_index_headers(&mut self) -> Option<[u8; wal_locks::wal_index::HEADERS]> {
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

/// Where the monitor's warnings go: `sqlite3_log` in the extension (the
/// VFS layer, which owns the FFI, passes it at construction).
pub type Logger = Box<dyn FnMut(&str) + Send>;

mod commit;
mod heal;
pub mod pragma;
mod projection;
pub mod quarantine;
mod recover;
mod snapshot;
pub mod wal_locks;

#[cfg(test)]
mod tests;

/// Per-file state.
pub struct Monitor {
    db_path: PathBuf,
    /// Opens the `-dwr` (through the base VFS in the extension).
    opener: Arc<dyn DwrOpener>,
    /// Where warnings go.
    log: Logger,
    dwr_path: PathBuf,
    readonly: bool,
    policy: SyncPolicy,
    protection: Protection,
    /// Page size of the last snapshot (0 until one is taken).
    page_size: u32,
    /// Pages of the last snapshot; writes to them (or page 1) make it dirty.
    protected: PageFilterSet,
    /// What changed since the last refresh that the next one must look at.
    changes: Changes,
    /// What the writes since the last refresh left that the next snapshot
    /// can use instead of reading the file.
    written: commit::Written,
    /// Freelist trunk pages of the last snapshot (a write to one sets
    /// [`Changes::freelist`]).
    freelist_trunks: Vec<u32>,
    /// Which file this connection has open, taken once at open.
    identity: FileIdentity,
    lock_level: LockLevel,
    /// Where this connection is in a WAL checkpoint.
    checkpoint: Checkpoint,
    /// The WAL index is mapped through this file (the database is in WAL
    /// mode and the pager has opened the WAL).
    shm_mapped: bool,
    /// This connection wrote a `PENDING` generation at the database sync of
    /// the current transaction, and nothing was written since: at the
    /// commit boundary a header-only update confirms it.
    tentative: bool,
    /// `PRAGMA locking_mode=EXCLUSIVE` was seen on this connection.
    exclusive_locking: bool,
    /// What the status reports, until something replaces it.
    last_event: Option<Event>,
    /// Read-path state (see `heal`).
    read: heal::ReadState,
}

/// What changed in the file since the last refresh, as far as the copy is
/// concerned: independent flags, each telling the next refresh (or commit
/// boundary) what to look at again.
#[derive(Default)]
struct Changes {
    /// A write or truncate since the last refresh may have changed a
    /// protected page or a witness: the copy is dirty.
    dirty: bool,
    /// A protected page other than page 1 was written (or the copy cannot
    /// vouch for the schema pages): the schema tree must be walked again.
    schema: bool,
    /// A freelist trunk page of the last snapshot was written: the
    /// freelist is walked again (if not, the copy's checksum still holds).
    freelist: bool,
    /// Page 1 was written at all since the last commit boundary (used to
    /// notice a `-dwr` another connection created while this one was
    /// unprotected). Cleared by the commit boundary, not by a refresh.
    page1: bool,
}

impl Changes {
    /// Anything protected may have changed: the next refresh walks the
    /// schema tree and compares every page (unchanged pages are not
    /// written).
    fn need_walk(&mut self) {
        self.dirty = true;
        self.schema = true;
    }
}

/// Where this connection is in a WAL checkpoint: the phases of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checkpoint {
    /// Not checkpointing.
    Idle,
    /// This connection holds the WAL checkpoint lock: the database file is
    /// being written by a checkpoint.
    Copying,
    /// Inside the database sync of a WAL checkpoint, which SQLite runs only
    /// when it copied every frame: the file is one committed state. Then
    /// `Followed` once the copy followed, or back to `Copying` if it could
    /// not.
    Complete,
    /// The copy was compared in full with the file a complete checkpoint
    /// left and describes it: at the release of the checkpoint lock, the
    /// frames that checkpoint copied (`nBackfill`) are recorded with it
    /// (rule 4b of docs/dwr-format.md).
    Followed,
}

/// The last thing that happened to the copy worth a word in the status
/// (`PRAGMA meta_double_write`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    /// A snapshot found the database damaged; the copy was kept as it was.
    Damaged(String),
    /// A restore (`meta_recover()`, or a repair on its own) wrote pages:
    /// its report.
    Recovered(String),
    /// A read was served the copy's images of the damaged `pages`, from
    /// `generation`; `repair` is how repairing the file went, once tried.
    Healed {
        pages: Vec<u32>,
        generation: u64,
        repair: Option<Result<String, String>>,
    },
    /// The copy was refused (why): it does not describe the file. The next
    /// generation written clears it.
    Stale(String),
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Damaged(damage) => write!(f, "database damaged, run meta_recover(): {damage}"),
            Event::Recovered(report) => write!(f, "recovered: {report}"),
            Event::Healed {
                pages,
                generation,
                repair,
            } => {
                write!(
                    f,
                    "recovered: healed page{} {} from generation {generation} on read",
                    if pages.len() == 1 { "" } else { "s" },
                    heal::page_list(pages),
                )?;
                match repair {
                    None => Ok(()),
                    Some(Ok(report)) => write!(f, "; file repaired: {report}"),
                    Some(Err(e)) => write!(f, "; file not repaired: {e}"),
                }
            }
            Event::Stale(why) => write!(f, "stale: {why}"),
        }
    }
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
        log: Logger,
    ) -> Monitor {
        let dwr_path = dwr_path_for(db_path);
        let mut m = Monitor {
            db_path: db_path.to_owned(),
            opener,
            log,
            dwr_path,
            readonly,
            policy,
            protection: Protection::Off { reason: None },
            page_size: 0,
            protected: PageFilterSet::default(),
            changes: Changes {
                // No trunk is known yet: walk the freelist.
                freelist: true,
                ..Changes::default()
            },
            written: commit::Written::default(),
            freelist_trunks: Vec::new(),
            identity: FileIdentity::of_path(db_path).unwrap_or_default(),
            lock_level: LockLevel::None,
            checkpoint: Checkpoint::Idle,
            shm_mapped: false,
            tentative: false,
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
                    m.warn(&format!(
                        "metadwr: protection of {} is off: {why}",
                        db_path.display()
                    ));
                    m.protection = Protection::Off { reason: Some(why) };
                }
            }
        }
        m
    }

    /// Logs a warning (through `sqlite3_log` in the extension).
    /// Replaces the logger (a monitor built quietly, then given the real
    /// one, as the VFS does for a monitor that replaces one that panicked).
    pub fn set_logger(&mut self, log: Logger) {
        self.log = log;
    }

    /// This connection holds the WAL checkpoint lock.
    fn checkpointing(&self) -> bool {
        self.checkpoint != Checkpoint::Idle
    }

    fn warn(&mut self, msg: &str) {
        (self.log)(msg);
    }

    fn open_store(&self, mode: OpenMode) -> std::io::Result<Store> {
        Store::open_with(&*self.opener, &self.dwr_path, mode, self.policy)
    }

    pub fn is_protected(&self) -> bool {
        matches!(self.protection, Protection::On(_))
    }

    pub fn lock_level(&self) -> LockLevel {
        self.lock_level
    }

    /// The WAL index is mapped through this file (or unmapped).
    pub fn set_shm_mapped(&mut self, on: bool) {
        self.shm_mapped = on;
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

    /// Turns protection of this file off, with `why` as the reason
    /// `PRAGMA meta_double_write` reports. Also how the VFS layer retires a
    /// monitor whose code panicked.
    pub fn fail(&mut self, why: &str) {
        self.warn(&format!(
            "metadwr: protection of {} turned off: {why}",
            self.db_path.display()
        ));
        self.protection = Protection::Off {
            reason: Some(why.to_owned()),
        };
        self.protected.clear();
        self.changes.dirty = false;
        self.tentative = false;
    }

    fn store(&mut self) -> Result<&mut Store, String> {
        match &mut self.protection {
            Protection::On(s) => Ok(s),
            Protection::Off { .. } => Err("protection is off".into()),
        }
    }

    /// `PRAGMA meta_double_write=enabled`.
    pub fn enable(&mut self, io: &mut dyn DbIo) -> Result<Enabled, String> {
        if self.readonly {
            return Err("cannot protect a database opened read-only".into());
        }
        let held = self.lock_level;
        if held == LockLevel::None {
            io.lock(LockLevel::Shared)
                .map_err(|rc| lock_error(rc, "read"))?;
        }
        let result = self.enable_locked(io);
        if held == LockLevel::None {
            let _ = io.unlock(LockLevel::None);
        }
        result
    }

    fn enable_locked(&mut self, io: &mut dyn DbIo) -> Result<Enabled, String> {
        let created = !self.dwr_path.exists();
        let result = self.enable_inner(io);
        if result.is_err() && created {
            // A failed first enable leaves nothing behind: no -dwr, so the
            // database does not count as protected on the next open.
            let _ = std::fs::remove_file(&self.dwr_path);
            self.protection = Protection::Off { reason: None };
            self.protected.clear();
        }
        result
    }

    fn enable_inner(&mut self, io: &mut dyn DbIo) -> Result<Enabled, String> {
        if !self.is_protected() {
            let store = self
                .open_store(OpenMode::Create)
                .map_err(|e| format!("cannot create {}: {e}", self.dwr_path.display()))?;
            self.protection = Protection::On(Box::new(store));
        }
        if let Err(damage) = check_health(io) {
            // Damaged: restore if the copy provably belongs to this file;
            // never overwrite a possibly good copy with damaged pages.
            let report = self.recover(io).map_err(|e| {
                format!("the database is damaged ({damage}) and cannot be restored: {e}")
            })?;
            return Ok(Enabled::Recovered(report));
        }
        self.changes.need_walk();
        self.last_event = None;
        self.refresh(io)?;
        match self.last_event.take() {
            Some(damage) => Err(damage.to_string()),
            None => Ok(Enabled::Enabled),
        }
    }

    /// `PRAGMA meta_double_write=disabled`: stop and remove the copy.
    pub fn disable(&mut self) -> Result<(), String> {
        self.protection = Protection::Off { reason: None };
        self.protected.clear();
        self.changes.dirty = false;
        self.last_event = None;
        match std::fs::remove_file(&self.dwr_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", self.dwr_path.display())),
        }
    }
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

/// What the WAL index in `<db>-shm` says a checkpoint copied into the
/// database file, if there is a built index.
pub fn wal_index_backfill(db: &Path) -> Option<wal_locks::wal_index::Backfill> {
    use std::io::Read;
    let mut s = db.as_os_str().to_owned();
    s.push("-shm");
    let mut head = Vec::with_capacity(wal_locks::wal_index::BACKFILL + 4);
    let file = std::fs::File::open(PathBuf::from(s)).ok()?;
    file.take((wal_locks::wal_index::BACKFILL + 4) as u64)
        .read_to_end(&mut head)
        .ok()?;
    wal_locks::wal_index::backfill_of(&head)
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
