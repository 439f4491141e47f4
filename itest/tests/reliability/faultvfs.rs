//! `faultvfs`: a fault-injecting VFS over `unix`, for the crash and I/O-error
//! suites (in the spirit of SQLite's `src/test6.c` crash VFS and its
//! `ioerr*.test` hooks).
//!
//! It is registered (not as the default) into the bundled SQLite of the test
//! process *before* the extension is loaded with `METADWR_BASE_VFS=faultvfs`,
//! so metadwr wraps it, and every byte metadwr or SQLite writes to the
//! database, the journal, the WAL or the `-dwr` passes through here. A
//! connection opened with `vfs=faultvfs` gets the same faults without
//! metadwr, which is how the suites compare the two.
//!
//! Everything is forwarded to `unix` (`xShm*`, `xFetch`/`xUnfetch`, file
//! controls, `VFSNAME` unchanged). Only files inside a registered
//! [`Domain`] (a directory; one per test case, so tests can run in
//! parallel) are observed:
//!
//! * **Durability model.** Per file, the *durable image* (the bytes as of
//!   the last `xSync` of that file) and the *pending* writes and truncates
//!   since. Creating and deleting files is durable at once, as in test6.c.
//!   Real fsyncs are skipped inside a domain (durability is modelled, and
//!   the sweeps run thousands of workloads).
//! * **Power loss** at operation `k`, counted over every `xWrite` and
//!   `xSync` of all files of the domain: from then on every call of the
//!   domain's files fails with `SQLITE_IOERR` (releasing locks and closing
//!   still work, so the connection can be dropped), and a crashed disk image
//!   is computed at that moment: see [`DiskImage`] and `crash_image`.
//! * **I/O errors** ([`FaultRule`]): on files whose name ends with a suffix,
//!   at the Nth read/write/sync/truncate/open (optionally only at offsets
//!   at or past a bound), once or from then on: EIO (`SQLITE_IOERR_READ`,
//!   `_WRITE`, `_FSYNC`, `_TRUNCATE`), ENOSPC (`SQLITE_FULL`, what unix
//!   answers), a short write (half the bytes land, then `SQLITE_FULL`, as
//!   unix reports one), or `SQLITE_CANTOPEN`.

use crate::common::Rng;
use rusqlite::ffi;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Name under which the VFS is registered.
pub const NAME: &str = "faultvfs";
const NAME_C: &CStr = c"faultvfs";

/// Tearing granularity of the crash model.
pub const SECTOR: u64 = 512;

// --- fault rules -------------------------------------------------------------

/// Which operation a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Sync,
    Truncate,
    Open,
}

/// What the failing operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// EIO: the operation's `SQLITE_IOERR_*` code; nothing happens.
    Eio,
    /// ENOSPC: `SQLITE_FULL` (unix's answer to a failed or short write);
    /// nothing is written.
    Enospc,
    /// A short write: the first half of the bytes are written, then
    /// `SQLITE_FULL`, as unix reports a short write.
    Short,
    /// `SQLITE_CANTOPEN` from `xOpen`.
    CantOpen,
}

/// One injected fault: the `nth` (1-based) operation `op` on a file whose
/// name ends with `suffix` (at an offset ≥ `min_offset`) fails, and so do
/// the `times - 1` matching operations after it.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub suffix: String,
    pub op: Op,
    pub nth: u64,
    pub times: u64,
    pub kind: FaultKind,
    pub min_offset: u64,
    /// Only operations at exactly this offset (e.g. one page).
    pub offset: Option<u64>,
    /// Matching operations seen so far.
    seen: u64,
    /// Operations failed so far.
    fired: u64,
}

impl FaultRule {
    pub fn new(suffix: &str, op: Op, nth: u64, kind: FaultKind) -> FaultRule {
        FaultRule {
            suffix: suffix.to_string(),
            op,
            nth,
            times: 1,
            kind,
            min_offset: 0,
            offset: None,
            seen: 0,
            fired: 0,
        }
    }

    /// Fails every matching operation from the `nth` on.
    pub fn persistent(mut self) -> FaultRule {
        self.times = u64::MAX;
        self
    }

    pub fn at_or_after_offset(mut self, offset: u64) -> FaultRule {
        self.min_offset = offset;
        self
    }

    pub fn at_offset(mut self, offset: u64) -> FaultRule {
        self.offset = Some(offset);
        self
    }

    /// Fails `times` matching operations in a row from the `nth` on.
    pub fn times(mut self, times: u64) -> FaultRule {
        self.times = times;
        self
    }
}

// --- the model -----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Pending {
    Write { off: u64, data: Vec<u8> },
    Truncate(u64),
}

#[derive(Debug, Clone, Default)]
struct FileModel {
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

impl FileModel {
    fn apply(image: &mut Vec<u8>, p: &Pending) {
        match p {
            Pending::Write { off, data } => {
                let end = *off as usize + data.len();
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[*off as usize..end].copy_from_slice(data);
            }
            Pending::Truncate(len) => image.resize(*len as usize, 0),
        }
    }

    fn sync(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            FileModel::apply(&mut self.durable, &p);
        }
    }
}

/// How the unsynced writes of a crash are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every pending write reached the disk (an OS that flushed everything).
    KeepAll,
    /// None did: the durable images only.
    DropAll,
    /// Every 512-byte sector holds its bytes as of a random moment: mostly
    /// one moment per file (a prefix of its writes, so the write in flight
    /// at that moment is torn at a sector boundary), and for about a third
    /// of the sectors an independent moment (writes reach the disk out of
    /// order). A sector never holds bytes older than its durable ones, and
    /// a later write to a sector never loses to an earlier one (the page
    /// cache merges them); the file length is that of a random moment too.
    Random,
}

/// The bytes of the database files of one directory: what a crash left, or
/// what a killed process left. Materialised in place, so that the database
/// file keeps its inode (the `-dwr` fingerprint records `st_dev`/`st_ino`,
/// and a copy to a new inode would be refused as a replaced file).
#[derive(Debug, Clone)]
pub struct DiskImage {
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    pub mode: Option<CrashMode>,
}

/// Suffixes of the files that belong to a database.
const SIDE_FILES: [&str; 5] = ["-journal", "-wal", "-shm", "-dwr", "-dwr-quarantine"];

impl DiskImage {
    /// The database `db` and its journal, WAL and `-dwr` as they are now
    /// (for a killed process: everything it wrote is in the page cache).
    pub fn capture(db: &Path) -> DiskImage {
        let mut files = BTreeMap::new();
        for suffix in ["", "-journal", "-wal", "-dwr"] {
            let p = with_suffix(db, suffix);
            if let Ok(bytes) = std::fs::read(&p) {
                files.insert(p, bytes);
            }
        }
        DiskImage { files, mode: None }
    }

    /// Writes the image over the files of `db` in place: files of the image
    /// are rewritten (same inode), its other side files (`-journal`, `-wal`,
    /// `-shm`, `-dwr`, quarantine) are removed.
    pub fn materialise(&self, db: &Path) {
        use std::os::unix::fs::FileExt;
        for suffix in SIDE_FILES.iter().chain(std::iter::once(&"")) {
            let p = with_suffix(db, suffix);
            match self.files.get(&p) {
                Some(bytes) => {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&p)
                        .unwrap_or_else(|e| panic!("materialise {}: {e}", p.display()));
                    f.set_len(bytes.len() as u64).unwrap();
                    f.write_all_at(bytes, 0).unwrap();
                    f.sync_all().unwrap();
                }
                None => {
                    if !suffix.is_empty() {
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        }
    }

    pub fn len_of(&self, db: &Path, suffix: &str) -> Option<usize> {
        self.files.get(&with_suffix(db, suffix)).map(Vec::len)
    }
}

pub fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Computes the crash image of one file.
fn crash_file(
    model: &FileModel,
    extra: Option<&Pending>,
    mode: CrashMode,
    rng: &mut Rng,
) -> Vec<u8> {
    let mut ops: Vec<&Pending> = model.pending.iter().collect();
    if let Some(e) = extra {
        ops.push(e);
    }
    let n = ops.len();
    let (global, independent) = match mode {
        CrashMode::KeepAll => (n, false),
        CrashMode::DropAll => (0, false),
        CrashMode::Random => (rng.below(n as u64 + 1) as usize, true),
    };
    let len_at = |cut: usize| {
        let mut len = model.durable.len() as u64;
        for p in &ops[..cut] {
            match p {
                Pending::Write { off, data } => len = len.max(off + data.len() as u64),
                Pending::Truncate(l) => len = *l,
            }
        }
        len
    };
    let len_cut = if independent && rng.below(4) == 0 {
        rng.below(n as u64 + 1) as usize
    } else {
        global
    };
    let final_len = len_at(len_cut);
    let max_len = (0..=n).map(len_at).max().unwrap_or(0).max(final_len);
    let mut image = model.durable.clone();
    image.resize(max_len as usize, 0);
    // Sectors touched by any pending operation.
    let mut touched: Vec<u64> = Vec::new();
    for p in &ops {
        match p {
            Pending::Write { off, data } if !data.is_empty() => {
                let first = off / SECTOR;
                let last = (off + data.len() as u64 - 1) / SECTOR;
                touched.extend(first..=last);
            }
            Pending::Truncate(l) => {
                // Every sector from the cut on may be zeroed.
                let first = l / SECTOR;
                let end = max_len.div_ceil(SECTOR);
                touched.extend(first..end.max(first));
            }
            _ => {}
        }
    }
    touched.sort_unstable();
    touched.dedup();
    let durable_len = model.durable.len() as u64;
    for s in touched {
        let cut = if independent && rng.below(3) == 0 {
            rng.below(n as u64 + 1) as usize
        } else {
            global
        };
        let start = s * SECTOR;
        let end = ((s + 1) * SECTOR).min(max_len);
        if start >= end {
            continue;
        }
        // The sector as it was durable, then the operations up to the cut.
        let mut sector = vec![0u8; (end - start) as usize];
        if start < durable_len {
            let dend = end.min(durable_len);
            sector[..(dend - start) as usize]
                .copy_from_slice(&model.durable[start as usize..dend as usize]);
        }
        for p in &ops[..cut] {
            match p {
                Pending::Write { off, data } => {
                    let wend = off + data.len() as u64;
                    let a = start.max(*off);
                    let b = end.min(wend);
                    if a < b {
                        sector[(a - start) as usize..(b - start) as usize]
                            .copy_from_slice(&data[(a - off) as usize..(b - off) as usize]);
                    }
                }
                Pending::Truncate(l) => {
                    if *l < end {
                        let from = l.max(&start) - start;
                        sector[from as usize..].fill(0);
                    }
                }
            }
        }
        image[start as usize..end as usize].copy_from_slice(&sector);
    }
    image.truncate(final_len as usize);
    image.resize(final_len as usize, 0);
    image
}

// --- domains ---------------------------------------------------------------------

#[derive(Default)]
struct DomainState {
    files: HashMap<PathBuf, FileModel>,
    /// xWrite + xSync calls on the domain's files so far.
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    crash_image: Option<DiskImage>,
    crash_rng_seed: u64,
    crash_mode: Option<CrashMode>,
    /// (op index, path) of every completed xSync.
    syncs: Vec<(u64, PathBuf)>,
    faults: Vec<FaultRule>,
    /// Log of the failures injected: (rule index, op, path).
    injected: Vec<(usize, Op, PathBuf)>,
}

struct DomainInner {
    dir: PathBuf,
    state: Mutex<DomainState>,
}

impl DomainInner {
    fn lock(&self) -> MutexGuard<'_, DomainState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn registry() -> &'static Mutex<Vec<Arc<DomainInner>>> {
    static R: OnceLock<Mutex<Vec<Arc<DomainInner>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

fn domain_of(path: &Path) -> Option<Arc<DomainInner>> {
    let r = registry().lock().unwrap_or_else(|p| p.into_inner());
    r.iter().find(|d| path.starts_with(&d.dir)).cloned()
}

/// The files under one directory, observed by the VFS while the `Domain`
/// lives. Dropping it stops the observation (later opens pass straight
/// through).
pub struct Domain {
    inner: Arc<DomainInner>,
}

impl Domain {
    pub fn new(dir: &Path) -> Domain {
        register();
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let inner = Arc::new(DomainInner {
            dir,
            state: Mutex::new(DomainState::default()),
        });
        registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(inner.clone());
        Domain { inner }
    }

    /// Simulates a power loss when operation `op` (0-based, over every
    /// xWrite and xSync of the domain's files) is about to run. The crash
    /// image is computed with `mode` (None: chosen from the seed) and an
    /// RNG seeded with `seed`.
    pub fn crash_at(&self, op: u64, mode: Option<CrashMode>, seed: u64) {
        let mut s = self.inner.lock();
        s.crash_at = Some(op);
        s.crash_mode = mode;
        s.crash_rng_seed = seed;
    }

    /// Operations (xWrite + xSync) counted so far.
    pub fn ops(&self) -> u64 {
        self.inner.lock().ops
    }

    pub fn crashed(&self) -> bool {
        self.inner.lock().crashed
    }

    /// The crash image, once the crash happened.
    pub fn crash_image(&self) -> Option<DiskImage> {
        self.inner.lock().crash_image.clone()
    }

    /// Op index of the last completed xSync of a file whose name ends with
    /// `suffix`.
    pub fn last_sync(&self, suffix: &str) -> Option<u64> {
        let s = self.inner.lock();
        s.syncs
            .iter()
            .rev()
            .find(|(_, p)| p.as_os_str().as_bytes().ends_with(suffix.as_bytes()))
            .map(|(op, _)| *op)
    }

    /// Adds a fault rule; returns its index for [`Domain::fired`].
    pub fn add_fault(&self, rule: FaultRule) -> usize {
        let mut s = self.inner.lock();
        s.faults.push(rule);
        s.faults.len() - 1
    }

    /// How many operations rule `id` failed.
    pub fn fired(&self, id: usize) -> u64 {
        self.inner.lock().faults[id].fired
    }

    /// How many matching operations rule `id` saw.
    pub fn seen(&self, id: usize) -> u64 {
        self.inner.lock().faults[id].seen
    }

    pub fn clear_faults(&self) {
        self.inner.lock().faults.clear();
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|d| !Arc::ptr_eq(d, &self.inner));
    }
}

/// What the VFS should do with an operation.
enum Verdict {
    Go,
    Fail(c_int),
    /// A short write: write this many bytes, then fail with the code.
    Short(usize, c_int),
}

fn error_code(op: Op, kind: FaultKind) -> c_int {
    match (op, kind) {
        (Op::Open, _) | (_, FaultKind::CantOpen) => ffi::SQLITE_CANTOPEN,
        (Op::Write, FaultKind::Enospc | FaultKind::Short) => ffi::SQLITE_FULL,
        (Op::Read, _) => ffi::SQLITE_IOERR_READ,
        (Op::Write, _) => ffi::SQLITE_IOERR_WRITE,
        (Op::Sync, _) => ffi::SQLITE_IOERR_FSYNC,
        (Op::Truncate, _) => ffi::SQLITE_IOERR_TRUNCATE,
    }
}

fn crashed_code(op: Op) -> c_int {
    match op {
        Op::Read => ffi::SQLITE_IOERR_READ,
        Op::Write => ffi::SQLITE_IOERR_WRITE,
        Op::Sync => ffi::SQLITE_IOERR_FSYNC,
        Op::Truncate => ffi::SQLITE_IOERR_TRUNCATE,
        Op::Open => ffi::SQLITE_CANTOPEN,
    }
}

impl DomainState {
    /// Checks the fault rules for an operation on `path`.
    fn check_faults(&mut self, path: &Path, op: Op, offset: u64, amt: usize) -> Verdict {
        let name = path.as_os_str().as_bytes();
        for (i, r) in self.faults.iter_mut().enumerate() {
            if r.op != op
                || !name.ends_with(r.suffix.as_bytes())
                || offset < r.min_offset
                || r.offset.is_some_and(|o| o != offset)
            {
                continue;
            }
            r.seen += 1;
            if r.seen >= r.nth && r.fired < r.times {
                r.fired += 1;
                self.injected.push((i, op, path.to_owned()));
                let code = error_code(op, r.kind);
                return match (op, r.kind) {
                    (Op::Write, FaultKind::Short) if amt > 1 => Verdict::Short(amt / 2, code),
                    _ => Verdict::Fail(code),
                };
            }
        }
        Verdict::Go
    }

    /// Counts a write or sync; returns true if the power fails now.
    fn count_op(&mut self) -> bool {
        let k = self.ops;
        self.ops += 1;
        self.crash_at == Some(k)
    }

    fn crash(&mut self, extra: Option<(&Path, Pending)>) {
        let mut rng = Rng::new(self.crash_rng_seed);
        let mode = self.crash_mode.unwrap_or_else(|| match rng.below(5) {
            0 => CrashMode::KeepAll,
            1 => CrashMode::DropAll,
            _ => CrashMode::Random,
        });
        let mut files = BTreeMap::new();
        let mut paths: Vec<&PathBuf> = self.files.keys().collect();
        paths.sort();
        for p in paths {
            let model = &self.files[p];
            let e = match &extra {
                Some((ep, pending)) if *ep == p.as_path() => Some(pending),
                _ => None,
            };
            files.insert(p.clone(), crash_file(model, e, mode, &mut rng));
        }
        self.crashed = true;
        self.crash_image = Some(DiskImage {
            files,
            mode: Some(mode),
        });
    }
}

// --- the VFS ------------------------------------------------------------------

#[repr(C)]
struct FaultFile {
    base: ffi::sqlite3_file,
    inner: *mut Inner,
}

struct Inner {
    real: Box<[u64]>,
    path: PathBuf,
    domain: Arc<DomainInner>,
}

impl Inner {
    fn real(&self) -> *mut ffi::sqlite3_file {
        self.real.as_ptr() as *mut ffi::sqlite3_file
    }
}

fn base() -> *mut ffi::sqlite3_vfs {
    // SAFETY: unix is registered by sqlite3_initialize and never freed.
    let v = unsafe { ffi::sqlite3_vfs_find(c"unix".as_ptr()) };
    assert!(!v.is_null(), "the unix VFS is not registered");
    v
}

macro_rules! real {
    ($f:expr, $m:ident $(, $a:expr)*) => {{
        let f = $f;
        // SAFETY: `f` is an open unix file; its methods table is valid.
        unsafe {
            match (*(*f).pMethods).$m {
                Some(m) => m(f $(, $a)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    }};
}

/// # Safety
/// `file` must be a FaultFile opened by `fv_open` and not closed, and no
/// other reference to its Inner in use: SQLite passes such a file to every
/// file method, one thread at a time.
unsafe fn inner<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Inner {
    // SAFETY: fv_open leaked the Inner into `inner`; fv_close takes it back.
    unsafe { &mut *(*(file as *mut FaultFile)).inner }
}

unsafe extern "C" fn fv_open(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    let b = base();
    let path = (!z_name.is_null()).then(|| {
        PathBuf::from(std::ffi::OsStr::from_bytes(
            // SAFETY: a NUL-terminated name from SQLite.
            unsafe { CStr::from_ptr(z_name) }.to_bytes(),
        ))
    });
    let domain = path.as_deref().and_then(domain_of);
    let (Some(path), Some(domain)) = (path, domain) else {
        // Not observed: unix opens straight into SQLite's memory and this
        // VFS never sees the file again.
        // SAFETY: szOsFile of this VFS is at least unix's.
        return unsafe { (*b).xOpen.unwrap()(b, z_name, file, flags, out) };
    };
    {
        let mut s = domain.lock();
        if s.crashed {
            // SAFETY: the contract of xOpen: pMethods NULL on failure.
            unsafe { (*file).pMethods = ptr::null() };
            return ffi::SQLITE_CANTOPEN;
        }
        if let Verdict::Fail(code) | Verdict::Short(_, code) = s.check_faults(&path, Op::Open, 0, 0)
        {
            // SAFETY: as above.
            unsafe { (*file).pMethods = ptr::null() };
            return code;
        }
    }
    // SAFETY: reading szOsFile of the live unix VFS.
    let words = (unsafe { (*b).szOsFile } as usize).div_ceil(8).max(1);
    let mut real = vec![0u64; words].into_boxed_slice();
    let real_file: *mut ffi::sqlite3_file = real.as_mut_ptr().cast();
    // SAFETY: `real` has szOsFile bytes, 8-aligned; z_name outlives the file.
    let rc = unsafe { (*b).xOpen.unwrap()(b, z_name, real_file, flags, out) };
    if rc != ffi::SQLITE_OK {
        // SAFETY: a failed open leaves pMethods NULL or closable; `file` has
        // room for a FaultFile, left unopened.
        unsafe {
            if !(*real_file).pMethods.is_null() {
                (*(*real_file).pMethods).xClose.unwrap()(real_file);
            }
            (*file).pMethods = ptr::null();
        }
        return rc;
    }
    {
        let mut s = domain.lock();
        if !s.files.contains_key(&path) {
            // Whatever the file holds when first seen counts as durable.
            let durable = std::fs::read(&path).unwrap_or_default();
            s.files.insert(
                path.clone(),
                FileModel {
                    durable,
                    pending: Vec::new(),
                },
            );
        }
    }
    // SAFETY: the real file is open.
    let version = unsafe { (*(*real_file).pMethods).iVersion };
    let inner = Box::new(Inner { real, path, domain });
    let ff = file as *mut FaultFile;
    // SAFETY: `file` has room for a FaultFile (szOsFile, see `register`);
    // the Inner is leaked into it until fv_close.
    unsafe {
        (*ff).inner = Box::into_raw(inner);
        (*ff).base.pMethods = match version {
            ..=1 => &METHODS_V1,
            2 => &METHODS_V2,
            _ => &METHODS_V3,
        };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn fv_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    let b = base();
    if !z_name.is_null() {
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(
            // SAFETY: a NUL-terminated name from SQLite.
            unsafe { CStr::from_ptr(z_name) }.to_bytes(),
        ));
        if let Some(d) = domain_of(&path) {
            let mut s = d.lock();
            if s.crashed {
                return ffi::SQLITE_IOERR_DELETE;
            }
            // Deleting is durable at once (as in test6.c).
            // SAFETY: unix has xDelete; SQLite's arguments.
            let rc = unsafe { (*b).xDelete.unwrap()(b, z_name, sync_dir) };
            if rc == ffi::SQLITE_OK || rc == ffi::SQLITE_IOERR_DELETE_NOENT {
                s.files.remove(&path);
            }
            return rc;
        }
    }
    // SAFETY: unix has xDelete; SQLite's arguments.
    unsafe { (*b).xDelete.unwrap()(b, z_name, sync_dir) }
}

unsafe extern "C" fn fv_close(file: *mut ffi::sqlite3_file) -> c_int {
    let ff = file as *mut FaultFile;
    // SAFETY: SQLite closes an open FaultFile once and calls nothing on it
    // afterwards: the Inner fv_open leaked is taken back here.
    let inner = unsafe { Box::from_raw((*ff).inner) };
    // SAFETY: as above.
    unsafe { (*ff).inner = ptr::null_mut() };
    real!(inner.real(), xClose)
}

unsafe extern "C" fn fv_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    {
        let mut s = i.domain.lock();
        if s.crashed {
            return crashed_code(Op::Read);
        }
        if let Verdict::Fail(code) | Verdict::Short(_, code) =
            s.check_faults(&i.path, Op::Read, off as u64, amt as usize)
        {
            return code;
        }
    }
    real!(i.real(), xRead, buf, amt, off)
}

unsafe extern "C" fn fv_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    // SAFETY: SQLite passes `amt` readable bytes at `buf` for the call.
    let data = unsafe { std::slice::from_raw_parts(buf as *const u8, amt as usize) };
    let mut s = i.domain.lock();
    if s.crashed {
        return crashed_code(Op::Write);
    }
    if s.count_op() {
        let extra = Pending::Write {
            off: off as u64,
            data: data.to_vec(),
        };
        s.crash(Some((&i.path, extra)));
        return crashed_code(Op::Write);
    }
    let (n, code) = match s.check_faults(&i.path, Op::Write, off as u64, amt as usize) {
        Verdict::Go => (amt as usize, ffi::SQLITE_OK),
        Verdict::Fail(code) => return code,
        Verdict::Short(n, code) => (n, code),
    };
    let rc = real!(i.real(), xWrite, buf, n as c_int, off);
    if rc == ffi::SQLITE_OK {
        if let Some(m) = s.files.get_mut(&i.path) {
            m.pending.push(Pending::Write {
                off: off as u64,
                data: data[..n].to_vec(),
            });
        }
        code
    } else {
        rc
    }
}

unsafe extern "C" fn fv_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    let mut s = i.domain.lock();
    if s.crashed {
        return crashed_code(Op::Truncate);
    }
    if let Verdict::Fail(code) | Verdict::Short(_, code) =
        s.check_faults(&i.path, Op::Truncate, size as u64, 0)
    {
        return code;
    }
    let rc = real!(i.real(), xTruncate, size);
    if rc == ffi::SQLITE_OK {
        if let Some(m) = s.files.get_mut(&i.path) {
            m.pending.push(Pending::Truncate(size as u64));
        }
    }
    rc
}

unsafe extern "C" fn fv_sync(file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    let mut s = i.domain.lock();
    if s.crashed {
        return crashed_code(Op::Sync);
    }
    if s.count_op() {
        s.crash(None);
        return crashed_code(Op::Sync);
    }
    if let Verdict::Fail(code) | Verdict::Short(_, code) = s.check_faults(&i.path, Op::Sync, 0, 0) {
        return code;
    }
    // Durability is modelled: the real fsync is skipped.
    let k = s.ops - 1;
    if let Some(m) = s.files.get_mut(&i.path) {
        m.sync();
    }
    let p = i.path.clone();
    s.syncs.push((k, p));
    ffi::SQLITE_OK
}

unsafe extern "C" fn fv_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    if i.domain.lock().crashed {
        return ffi::SQLITE_IOERR_FSTAT;
    }
    real!(i.real(), xFileSize, size)
}

unsafe extern "C" fn fv_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    if i.domain.lock().crashed {
        return ffi::SQLITE_IOERR_LOCK;
    }
    real!(i.real(), xLock, level)
}

unsafe extern "C" fn fv_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    real!(i.real(), xUnlock, level)
}

unsafe extern "C" fn fv_check_reserved(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    if i.domain.lock().crashed {
        return ffi::SQLITE_IOERR_CHECKRESERVEDLOCK;
    }
    real!(i.real(), xCheckReservedLock, out)
}

unsafe extern "C" fn fv_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    real!(i.real(), xFileControl, op, arg)
}

unsafe extern "C" fn fv_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    real!(i.real(), xSectorSize)
}

unsafe extern "C" fn fv_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    real!(i.real(), xDeviceCharacteristics)
}

unsafe extern "C" fn fv_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    if i.domain.lock().crashed {
        return ffi::SQLITE_IOERR_SHMMAP;
    }
    real!(i.real(), xShmMap, region, size, extend, out)
}

unsafe extern "C" fn fv_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    if flags & ffi::SQLITE_SHM_LOCK != 0 && i.domain.lock().crashed {
        return ffi::SQLITE_IOERR_SHMLOCK;
    }
    real!(i.real(), xShmLock, offset, n, flags)
}

unsafe extern "C" fn fv_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    let f = i.real();
    // SAFETY: as in real!.
    unsafe {
        if let Some(m) = (*(*f).pMethods).xShmBarrier {
            m(f)
        }
    }
}

unsafe extern "C" fn fv_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    real!(i.real(), xShmUnmap, delete)
}

unsafe extern "C" fn fv_fetch(
    file: *mut ffi::sqlite3_file,
    off: i64,
    amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    if i.domain.lock().crashed {
        // SAFETY: `out` is SQLite's result slot.
        unsafe { *out = ptr::null_mut() };
        return ffi::SQLITE_IOERR_MMAP;
    }
    real!(i.real(), xFetch, off, amt, out)
}

unsafe extern "C" fn fv_unfetch(file: *mut ffi::sqlite3_file, off: i64, p: *mut c_void) -> c_int {
    // SAFETY: an open FaultFile (SQLite's contract for file methods).
    let i = unsafe { inner(file) };
    real!(i.real(), xUnfetch, off, p)
}

const fn methods(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(fv_close),
        xRead: Some(fv_read),
        xWrite: Some(fv_write),
        xTruncate: Some(fv_truncate),
        xSync: Some(fv_sync),
        xFileSize: Some(fv_file_size),
        xLock: Some(fv_lock),
        xUnlock: Some(fv_unlock),
        xCheckReservedLock: Some(fv_check_reserved),
        xFileControl: Some(fv_file_control),
        xSectorSize: Some(fv_sector_size),
        xDeviceCharacteristics: Some(fv_device_characteristics),
        xShmMap: if version >= 2 { Some(fv_shm_map) } else { None },
        xShmLock: if version >= 2 {
            Some(fv_shm_lock)
        } else {
            None
        },
        xShmBarrier: if version >= 2 {
            Some(fv_shm_barrier)
        } else {
            None
        },
        xShmUnmap: if version >= 2 {
            Some(fv_shm_unmap)
        } else {
            None
        },
        xFetch: if version >= 3 { Some(fv_fetch) } else { None },
        xUnfetch: if version >= 3 { Some(fv_unfetch) } else { None },
    }
}

static METHODS_V1: ffi::sqlite3_io_methods = methods(1);
static METHODS_V2: ffi::sqlite3_io_methods = methods(2);
static METHODS_V3: ffi::sqlite3_io_methods = methods(3);

macro_rules! forward {
    ($name:ident, $m:ident, ($($a:ident : $t:ty),*) -> $r:ty) => {
        unsafe extern "C" fn $name(_vfs: *mut ffi::sqlite3_vfs $(, $a: $t)*) -> $r {
            let b = base();
            // SAFETY: unix provides every method forwarded here.
            unsafe { (*b).$m.unwrap()(b $(, $a)*) }
        }
    };
}

forward!(fv_access, xAccess, (n: *const c_char, f: c_int, o: *mut c_int) -> c_int);
forward!(fv_full_pathname, xFullPathname, (n: *const c_char, k: c_int, o: *mut c_char) -> c_int);
forward!(fv_dlopen, xDlOpen, (n: *const c_char) -> *mut c_void);
forward!(fv_dlerror, xDlError, (k: c_int, o: *mut c_char) -> ());
forward!(fv_dlclose, xDlClose, (h: *mut c_void) -> ());
forward!(fv_randomness, xRandomness, (k: c_int, o: *mut c_char) -> c_int);
forward!(fv_sleep, xSleep, (us: c_int) -> c_int);
forward!(fv_current_time, xCurrentTime, (o: *mut f64) -> c_int);
forward!(fv_get_last_error, xGetLastError, (k: c_int, o: *mut c_char) -> c_int);
forward!(fv_current_time_int64, xCurrentTimeInt64, (o: *mut i64) -> c_int);

unsafe extern "C" fn fv_dlsym(
    _vfs: *mut ffi::sqlite3_vfs,
    h: *mut c_void,
    s: *const c_char,
) -> Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)> {
    let b = base();
    // SAFETY: unix has xDlSym; SQLite's arguments.
    unsafe { (*b).xDlSym.unwrap()(b, h, s) }
}

/// Registers `faultvfs` (not as the default) once per process.
pub fn register() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let b = base();
        // SAFETY: reading the live unix VFS.
        let sz = unsafe { (*b).szOsFile }.max(std::mem::size_of::<FaultFile>() as c_int);
        // SAFETY: as above.
        let mx = unsafe { (*b).mxPathname };
        let vfs = Box::new(ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: sz,
            mxPathname: mx,
            pNext: ptr::null_mut(),
            zName: NAME_C.as_ptr(),
            pAppData: ptr::null_mut(),
            xOpen: Some(fv_open),
            xDelete: Some(fv_delete),
            xAccess: Some(fv_access),
            xFullPathname: Some(fv_full_pathname),
            xDlOpen: Some(fv_dlopen),
            xDlError: Some(fv_dlerror),
            xDlSym: Some(fv_dlsym),
            xDlClose: Some(fv_dlclose),
            xRandomness: Some(fv_randomness),
            xSleep: Some(fv_sleep),
            xCurrentTime: Some(fv_current_time),
            xGetLastError: Some(fv_get_last_error),
            xCurrentTimeInt64: Some(fv_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        });
        // SAFETY: the VFS object is leaked: registered VFSes live forever.
        let rc = unsafe { ffi::sqlite3_vfs_register(Box::into_raw(vfs), 0) };
        assert_eq!(rc, ffi::SQLITE_OK, "register faultvfs");
    });
}

#[cfg(test)]
mod tests {}
