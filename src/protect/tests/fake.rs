//! A database file in memory and a shim that drives the monitor with the
//! calls SQLite makes, without SQLite.
//!
//! [`FakeFile`] is the database file (its bytes, shared by every
//! connection to it, and region 0 of its WAL index); [`FakeIo`] is one
//! connection's handle on it, the monitor's [`DbIo`]. [`Conn`] makes the
//! calls `ffi/vfs.rs` makes around each VFS method (`xRead`, `xWrite`,
//! `xLock`, `xShmLock`, ...), and strings them together as SQLite's pager
//! and WAL do in a transaction or a checkpoint. The database path names a
//! real file in a temporary directory (the monitor takes its identity and
//! puts the `-dwr` next to it); its bytes on disk are never read.
//!
//! [`Images`] are real databases, made once per test run with the
//! `sqlite3` shell: the states a test moves the file between.

use crate::dbfile::{self, DbHeader};
use crate::dwr::file::StdOpener;
use crate::dwr::format::Header;
use crate::dwr::store::{Generation, Store, SyncPolicy};
use crate::protect::wal_locks::{slot, wal_index};
use crate::protect::{DbIo, LockLevel, Monitor, Rc};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc as Shared;
use std::sync::{Arc, Mutex, OnceLock};

/// `SQLITE_IOERR_SHORT_READ`.
pub const SHORT_READ: Rc = Rc(522);

/// `xShmLock` flags.
const SHM_UNLOCK: i32 = 1;
const SHM_LOCK: i32 = 2;
const SHM_SHARED: i32 = 4;
const SHM_EXCLUSIVE: i32 = 8;

/// The database file, shared by the connections to it.
pub struct FakeFile {
    pub bytes: Vec<u8>,
    /// Region 0 of the WAL index, far enough for the fields read.
    pub wal_index: [u8; wal_index::HEADERS + 4],
    pub syncs: u32,
}

impl Default for FakeFile {
    fn default() -> Self {
        FakeFile {
            bytes: Vec::new(),
            wal_index: [0; wal_index::HEADERS + 4],
            syncs: 0,
        }
    }
}

impl FakeFile {
    fn set_index_u32(&mut self, at: usize, v: u32) {
        self.wal_index[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    /// Sets `mxFrame` in both header copies, the index built.
    pub fn set_max_frame(&mut self, frames: u32) {
        for copy in [0, wal_index::HEADER] {
            self.wal_index[copy + wal_index::IS_INIT] = 1;
            self.set_index_u32(copy + wal_index::MAX_FRAME, frames);
        }
    }

    pub fn max_frame(&self) -> u32 {
        let at = wal_index::MAX_FRAME;
        u32::from_ne_bytes(self.wal_index[at..at + 4].try_into().unwrap())
    }

    /// The WAL index is built (`isInit` set in both header copies).
    pub fn build_index(&mut self) {
        let frames = self.max_frame();
        self.set_max_frame(frames);
    }

    pub fn set_backfill(&mut self, frames: u32) {
        self.set_index_u32(wal_index::BACKFILL, frames);
    }
}

/// A [`FakeFile`] as the connections to it hold it.
pub type SharedFile = Shared<RefCell<FakeFile>>;

/// One connection's handle on a [`FakeFile`].
pub struct FakeIo {
    pub file: SharedFile,
    pub lock: LockLevel,
    pub checkpoint_lock: bool,
    /// The WAL index is mapped through this handle.
    pub mapped: bool,
}

impl FakeIo {
    pub fn new(file: &SharedFile) -> FakeIo {
        FakeIo {
            file: file.clone(),
            lock: LockLevel::None,
            checkpoint_lock: false,
            mapped: false,
        }
    }
}

impl DbIo for FakeIo {
    fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Rc> {
        let file = self.file.borrow();
        let start = (offset as usize).min(file.bytes.len());
        let end = (offset as usize + buf.len()).min(file.bytes.len());
        buf.fill(0);
        buf[..end - start].copy_from_slice(&file.bytes[start..end]);
        if end - start == buf.len() {
            Ok(())
        } else {
            Err(SHORT_READ)
        }
    }

    fn write(&mut self, buf: &[u8], offset: u64) -> Result<(), Rc> {
        let mut file = self.file.borrow_mut();
        let end = offset as usize + buf.len();
        if file.bytes.len() < end {
            file.bytes.resize(end, 0);
        }
        file.bytes[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }

    fn size(&mut self) -> Result<u64, Rc> {
        Ok(self.file.borrow().bytes.len() as u64)
    }

    fn sync(&mut self) -> Result<(), Rc> {
        self.file.borrow_mut().syncs += 1;
        Ok(())
    }

    fn lock(&mut self, level: LockLevel) -> Result<(), Rc> {
        self.lock = self.lock.max(level);
        Ok(())
    }

    fn unlock(&mut self, level: LockLevel) -> Result<(), Rc> {
        self.lock = self.lock.min(level);
        Ok(())
    }

    fn checkpoint_lock(&mut self, take: bool) -> Result<(), Rc> {
        self.checkpoint_lock = take;
        Ok(())
    }

    fn wal_index_u32(&mut self, at: usize) -> Option<u32> {
        let file = self.file.borrow();
        let bytes = file.wal_index.get(at..at + 4).filter(|_| self.mapped)?;
        Some(u32::from_ne_bytes(bytes.try_into().unwrap()))
    }

    fn wal_index_headers(&mut self) -> Option<[u8; wal_index::HEADERS]> {
        let file = self.file.borrow();
        self.mapped
            .then(|| file.wal_index[..wal_index::HEADERS].try_into().unwrap())
    }
}

/// A temporary directory holding one database path.
pub struct Dir {
    pub path: PathBuf,
}

impl Dir {
    pub fn new(name: &str) -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("metadwr-protect-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir { path }
    }

    pub fn db(&self) -> PathBuf {
        self.path.join("test.db")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A database file at `db` (created on disk for its identity) holding
/// `image`, in memory.
pub fn fake_file(db: &Path, image: &[u8]) -> SharedFile {
    std::fs::write(db, image).unwrap();
    Shared::new(RefCell::new(FakeFile {
        bytes: image.to_vec(),
        ..Default::default()
    }))
}

/// One connection to a [`FakeFile`] through the monitor, making the calls
/// the shim makes.
pub struct Conn {
    pub monitor: Monitor,
    pub io: FakeIo,
    /// What the monitor logged.
    logged: Arc<Mutex<Vec<String>>>,
    /// The change counter and the fields after it, as the pager last saw
    /// them; `None` before its first transaction.
    pager_counter: Option<Vec<u8>>,
    /// The WAL read mark this connection holds, if any.
    read_mark: Option<i32>,
    /// The page size, from the header read at open.
    page_size: usize,
}

impl Conn {
    /// Opens `db` as SQLite does: the monitor first, then the 100-byte
    /// header read without a lock.
    pub fn open(db: &Path, file: &SharedFile, policy: SyncPolicy) -> Conn {
        let logged = Arc::new(Mutex::new(Vec::new()));
        let log = logged.clone();
        let monitor = Monitor::new(
            db,
            false,
            policy,
            false,
            Arc::new(StdOpener),
            Box::new(move |m: &str| log.lock().unwrap().push(m.to_string())),
        );
        let mut conn = Conn {
            monitor,
            io: FakeIo::new(file),
            logged,
            pager_counter: None,
            read_mark: None,
            page_size: 0,
        };
        let header = conn.read(0, 100);
        conn.page_size = dbfile::page_size_from_header(&header).unwrap() as usize;
        conn
    }

    /// The warnings the monitor logged.
    pub fn warnings(&self) -> Vec<String> {
        self.logged.lock().unwrap().clone()
    }

    /// A pragma addressed to the file.
    pub fn pragma(&mut self, name: &str, value: Option<&str>) -> Result<String, String> {
        crate::protect::pragma::pragma(&mut self.monitor, &mut self.io, name, value)
            .expect("a metadwr pragma")
    }

    pub fn status(&mut self) -> String {
        self.pragma("meta_double_write", None).unwrap()
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    // --- The shim's methods, as ffi/vfs.rs makes them. ---

    /// `xRead` (`shim_read`, `watched_read`).
    pub fn read(&mut self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        let watched = self.monitor.read_is_watched(offset, len);
        let rc = self.io.read(&mut buf, offset).err().unwrap_or(Rc::OK);
        let short = rc == SHORT_READ;
        if watched && (rc.is_ok() || short) {
            if !short && Monitor::is_counter_read(offset, len) {
                if !self.monitor.note_counter_read(&buf) {
                    self.monitor.on_counter_mismatch(&mut self.io, &mut buf);
                }
            } else {
                self.monitor.on_read(&mut self.io, offset, &mut buf, short);
            }
        }
        buf
    }

    /// `xWrite`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        self.io.write(data, offset).unwrap();
        self.monitor.note_write(offset, data);
    }

    /// `xTruncate`.
    pub fn truncate(&mut self, size: u64) {
        self.io.file.borrow_mut().bytes.truncate(size as usize);
        self.monitor.note_truncate(size);
    }

    /// `xSync`.
    pub fn sync(&mut self) -> Rc {
        let file = self.io.file.clone();
        self.monitor.around_database_sync(&mut self.io, &mut || {
            file.borrow_mut().syncs += 1;
            Rc::OK
        })
    }

    /// `xLock`.
    pub fn lock(&mut self, level: LockLevel) {
        self.io.lock(level).unwrap();
        if let Some(previous) = self.monitor.lock_taken(level) {
            self.monitor.exclusive_taken(&mut self.io, previous);
        }
    }

    /// `xUnlock`.
    pub fn unlock(&mut self, level: LockLevel) {
        if self.monitor.before_unlock(level) {
            self.monitor.unlocking(&mut self.io, level);
        }
        self.io.unlock(level).unwrap();
        self.monitor.lock_released(level);
    }

    /// `xFileControl(SQLITE_FCNTL_COMMIT_PHASETWO)`.
    pub fn commit_phase_two(&mut self) {
        self.monitor.commit_phase_two(&mut self.io);
    }

    /// `xShmMap` of region 0.
    pub fn shm_map(&mut self) {
        self.io.mapped = true;
        self.monitor.set_shm_mapped(true);
    }

    /// `xShmLock`.
    pub fn shm_lock(&mut self, offset: i32, n: i32, flags: i32) {
        let lock = crate::protect::ShmLock::decode(offset, n, flags);
        if let Some(lock) = lock {
            self.monitor.before_shm_lock(&mut self.io, lock);
        }
        if let Some(lock) = lock {
            self.monitor.shm_locked(&mut self.io, lock);
        }
    }

    /// `xClose`.
    pub fn close(mut self) {
        self.monitor.close(&mut self.io);
    }

    // --- What SQLite's pager does with them. ---

    /// The start of a rollback-mode read transaction: SHARED, then the
    /// change counter (after the first transaction), and page 1 when the
    /// pager's cache is gone or the counter moved.
    pub fn begin_read(&mut self) {
        self.lock(LockLevel::Shared);
        let fresh = match self.pager_counter.clone() {
            None => false,
            Some(seen) => self.read(24, 16) == seen,
        };
        if !fresh {
            let ps = self.page_size();
            let page1 = self.read(0, ps);
            self.pager_counter = Some(page1[24..40].to_vec());
        }
    }

    /// The end of a rollback-mode read transaction.
    pub fn end_read(&mut self) {
        self.unlock(LockLevel::None);
    }

    /// A rollback-mode write transaction up to and including the database
    /// sync: RESERVED, EXCLUSIVE, the pages of `image` that differ from the
    /// file (in page order), a truncate if it is shorter, the sync. The
    /// journal's deletion, the commit point, comes next.
    pub fn write_until_sync(&mut self, image: &[u8]) -> Rc {
        self.begin_read();
        self.lock(LockLevel::Reserved);
        self.lock(LockLevel::Exclusive);
        let old_len = self.io.file.borrow().bytes.len();
        self.write_changed_pages(image);
        if image.len() < old_len {
            self.truncate(image.len() as u64);
        }
        self.sync()
    }

    /// A whole rollback-mode commit that turns the file into `image`.
    pub fn commit(&mut self, image: &[u8]) {
        assert!(self.write_until_sync(image).is_ok());
        // The journal is deleted: the commit point.
        self.commit_phase_two();
        self.unlock(LockLevel::Shared);
        self.pager_counter = Some(image[24..40].to_vec());
        self.end_read();
    }

    fn write_changed_pages(&mut self, image: &[u8]) {
        let ps = DbHeader::parse(image).unwrap().page_size as usize;
        let old = self.io.file.borrow().bytes.clone();
        for (i, page) in image.chunks(ps).enumerate() {
            let at = i * ps;
            if old.get(at..at + ps) != Some(page) {
                self.write(at as u64, page);
            }
        }
    }

    /// The start of a WAL-mode read transaction: SHARED (kept from then
    /// on), page 1 and the WAL index mapped on the first, a read mark.
    pub fn begin_wal_read(&mut self) {
        self.open_wal();
        let mark = slot::READ_0 + 1;
        self.shm_lock(mark, 1, SHM_LOCK | SHM_SHARED);
        self.read_mark = Some(mark);
    }

    /// What a WAL-mode connection does once: SHARED (kept from then on),
    /// page 1, the WAL opened and its index mapped (and built).
    fn open_wal(&mut self) {
        if self.io.lock == LockLevel::None {
            self.lock(LockLevel::Shared);
        }
        if !self.io.mapped {
            let ps = self.page_size();
            self.read(0, ps);
            self.shm_map();
            self.io.file.borrow_mut().build_index();
        }
    }

    pub fn end_wal_read(&mut self) {
        if let Some(mark) = self.read_mark.take() {
            self.shm_lock(mark, 1, SHM_UNLOCK | SHM_SHARED);
        }
    }

    /// A WAL-mode commit of `frames` frames: the WAL write lock, the
    /// frames appended to `<db>-wal` (created with `session` in its
    /// header if missing) and counted in the WAL index, the lock released.
    pub fn wal_commit(&mut self, db: &Path, session: (u32, u32, u32), frames: u32) {
        self.begin_wal_read();
        self.shm_lock(slot::WRITE, 1, SHM_LOCK | SHM_EXCLUSIVE);
        let wal = wal_path(db);
        let mut bytes = std::fs::read(&wal).unwrap_or_default();
        if bytes.len() < 32 {
            bytes = wal_header(session).to_vec();
        }
        bytes.extend(std::iter::repeat_n(0xa5, 24 * frames as usize));
        std::fs::write(&wal, bytes).unwrap();
        {
            let mut file = self.io.file.borrow_mut();
            let total = file.max_frame() + frames;
            file.set_max_frame(total);
        }
        self.shm_lock(slot::WRITE, 1, SHM_UNLOCK | SHM_EXCLUSIVE);
        self.end_wal_read();
    }

    /// A complete WAL checkpoint that turns the file into `image`, up to
    /// and including the database sync: the checkpoint lock, the pages, the
    /// truncate to the database size, the sync (`walCheckpoint` in wal.c).
    pub fn checkpoint_until_sync(&mut self, image: &[u8]) -> Rc {
        self.open_wal();
        self.shm_lock(slot::CHECKPOINT, 1, SHM_LOCK | SHM_EXCLUSIVE);
        self.write_changed_pages(image);
        self.truncate(image.len() as u64);
        self.sync()
    }

    /// The rest of the checkpoint: `nBackfill`, the lock released.
    pub fn end_checkpoint(&mut self) {
        self.set_backfill_complete();
        self.shm_lock(slot::CHECKPOINT, 1, SHM_UNLOCK | SHM_EXCLUSIVE);
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)` that turns the file into `image`:
    /// the checkpoint lock, then the WAL write lock; every frame copied as
    /// in [`Self::checkpoint_until_sync`]; the WAL restarted (`mxFrame` 0)
    /// and truncated; the write lock released, then the checkpoint lock.
    pub fn checkpoint_truncate(&mut self, db: &Path, image: &[u8]) -> Rc {
        self.open_wal();
        self.shm_lock(slot::CHECKPOINT, 1, SHM_LOCK | SHM_EXCLUSIVE);
        self.shm_lock(slot::WRITE, 1, SHM_LOCK | SHM_EXCLUSIVE);
        self.write_changed_pages(image);
        self.truncate(image.len() as u64);
        let rc = self.sync();
        self.set_backfill_complete();
        {
            let mut file = self.io.file.borrow_mut();
            file.set_max_frame(0);
            file.set_backfill(0);
        }
        std::fs::write(wal_path(db), b"").unwrap();
        self.shm_lock(slot::WRITE, 1, SHM_UNLOCK | SHM_EXCLUSIVE);
        self.shm_lock(slot::CHECKPOINT, 1, SHM_UNLOCK | SHM_EXCLUSIVE);
        rc
    }

    /// `nBackfill` = `mxFrame`: every frame is in the database file.
    fn set_backfill_complete(&mut self) {
        let mut file = self.io.file.borrow_mut();
        let frames = file.max_frame();
        file.set_backfill(frames);
    }
}

/// `<db>-wal`.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// A WAL file header naming `(sequence, salt1, salt2)`.
pub fn wal_header((sequence, salt1, salt2): (u32, u32, u32)) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0..4].copy_from_slice(&0x377f_0682u32.to_be_bytes());
    h[4..8].copy_from_slice(&3_007_000u32.to_be_bytes());
    h[8..12].copy_from_slice(&1024u32.to_be_bytes());
    h[12..16].copy_from_slice(&sequence.to_be_bytes());
    h[16..20].copy_from_slice(&salt1.to_be_bytes());
    h[20..24].copy_from_slice(&salt2.to_be_bytes());
    h
}

/// The generations of `<db>-dwr`, newest first.
pub fn generations(db: &Path) -> Vec<Generation> {
    let dwr = crate::protect::dwr_path_for(db);
    Store::open_read_only(&dwr, SyncPolicy::Off)
        .unwrap()
        .scan()
        .unwrap()
        .generations
}

pub fn newest(db: &Path) -> Generation {
    generations(db).into_iter().next().expect("a generation")
}

/// The header of the newest generation.
pub fn newest_header(db: &Path) -> Header {
    newest(db).header
}

/// Page `pgno` of `image`.
pub fn page(image: &[u8], pgno: u32) -> &[u8] {
    let ps = DbHeader::parse(image).unwrap().page_size as usize;
    &image[(pgno as usize - 1) * ps..pgno as usize * ps]
}

/// Page 1 and the pages of the schema B-tree of `image`: what a copy of it
/// holds.
pub fn protected_pages(image: &[u8]) -> Vec<u32> {
    let header = DbHeader::parse(image).unwrap();
    let max_page = (image.len() / header.page_size as usize) as u32;
    let mut pages: Vec<u32> =
        dbfile::schema_tree_pages(&header, max_page, &mut |p| Ok(page(image, p).to_vec()))
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
    pages.sort_unstable();
    pages
}

/// Checks that generation `g` is a copy of `image`: the same protected
/// pages, each with the image's bytes, and its size and change counter.
pub fn assert_copy_of(g: &Generation, image: &[u8]) {
    let mut held: Vec<u32> = g.pages.iter().map(|(p, _)| *p).collect();
    held.sort_unstable();
    assert_eq!(held, protected_pages(image), "the protected pages");
    for (pgno, copy) in &g.pages {
        assert!(copy == page(image, *pgno), "page {pgno} of the copy");
    }
    let fp = &g.header.fingerprint;
    assert_eq!(fp.file_size, image.len() as u64);
    assert_eq!(
        fp.change_counter,
        u32::from_be_bytes(image[24..28].try_into().unwrap())
    );
}

/// The database states the tests move files between.
pub struct Images {
    /// Rollback mode, 1024-byte pages: a schema of several pages and a
    /// table with rows.
    pub a: Vec<u8>,
    /// `a` with more rows: the file grows, page 1 (change counter, size)
    /// changes, the schema tree does not.
    pub b: Vec<u8>,
    /// `a` with another table, whose definition spills into overflow
    /// pages: the schema tree changes.
    pub c: Vec<u8>,
    /// WAL mode (checkpointed), otherwise as `a`.
    pub wal_a: Vec<u8>,
    /// `wal_a` with more rows, checkpointed.
    pub wal_b: Vec<u8>,
}

pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(make_images)
}

fn sqlite(db: &Path, sql: &str) {
    crate::test_support::sqlite3_shell(db, sql);
}

fn make_images() -> Images {
    let dir = Dir::new("images");
    // Enough tables with long definitions that sqlite_schema spans
    // several pages. The rows go into the last table, whose root is the
    // first page a copy looks at for witnesses (the search reads a few
    // pages, highest roots first: a copy of a file whose data lies below
    // many empty tables records none, and cannot prove it belongs to the
    // file once page 1 is destroyed).
    let mut schema = String::from("PRAGMA page_size=1024; PRAGMA auto_vacuum=NONE;\n");
    for t in 0..12 {
        let cols: Vec<String> = (0..6)
            .map(|c| format!("column_with_a_long_name_{c} TEXT DEFAULT 'value {c}'"))
            .collect();
        schema += &format!("CREATE TABLE t{t}({});\n", cols.join(", "));
    }
    let rows = |n: u32| {
        format!(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<{n}) \
             INSERT INTO t11(column_with_a_long_name_0) SELECT printf('row %d of some length', x) FROM n;\n"
        )
    };
    let build = |name: &str, steps: &[String]| {
        let db = dir.path.join(name);
        let mut out = Vec::new();
        for sql in steps {
            sqlite(&db, sql);
            out.push(std::fs::read(&db).unwrap());
        }
        out
    };
    let a = schema.clone() + &rows(40);
    let rollback = build("rollback.db", &[a.clone(), rows(60)]);
    // A definition longer than a page: its cell spills into overflow
    // pages, which join the schema tree.
    let added: Vec<String> = (0..40)
        .map(|c| format!("added_column_{c} TEXT DEFAULT 'a default value'"))
        .collect();
    let c = build(
        "schema.db",
        &[a, format!("CREATE TABLE added({});\n", added.join(", "))],
    );
    let wal = build(
        "wal.db",
        &[
            "PRAGMA journal_mode=WAL;\n".to_string() + &schema + &rows(40),
            rows(60),
        ],
    );
    assert!(
        !wal_path(&dir.path.join("wal.db")).exists(),
        "checkpointed at close"
    );
    let images = Images {
        a: rollback[0].clone(),
        b: rollback[1].clone(),
        c: c[1].clone(),
        wal_a: wal[0].clone(),
        wal_b: wal[1].clone(),
    };
    assert_eq!(images.a, c[0], "the same database twice");
    assert!(images.b.len() > images.a.len(), "more rows, more pages");
    assert_eq!(protected_pages(&images.a), protected_pages(&images.b));
    assert_ne!(protected_pages(&images.a), protected_pages(&images.c));
    assert!(
        protected_pages(&images.a).len() > 2,
        "a schema of several pages"
    );
    assert_eq!(images.wal_a[18], 2, "WAL mode");
    images
}
