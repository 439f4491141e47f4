//! xRead and xFetch of any offset and length, called directly through the
//! `sqlite3_io_methods` of a file opened with metadwr's `xOpen`, the way
//! programs and VFSes stacked on top of metadwr call them (APSW's
//! `VFSFile`, a VFS inheriting from the default one): reads that start
//! mid-page, shorter than the 100-byte header, spanning several pages,
//! crossing into page 1's neighbour, running past the end of the file.
//!
//! A property test of random (offset, length) pairs from a seeded PRNG:
//!
//! * on an undamaged file, every metadwr read gives the result code and the
//!   bytes of the same read through plain `unix`, and every fetch maps
//!   exactly when `unix` maps, the same bytes;
//! * with page 1, a schema page, or both damaged (damaged again before
//!   every read, so that each read meets the damage whatever the previous
//!   one repaired), every read gives what plain `unix` reads from the
//!   healed file: the copy's bytes for each protected page, the disk's
//!   elsewhere, zero-fill and `SQLITE_IOERR_SHORT_READ` past the end; a
//!   fetch either declines (NULL, so the caller falls back to xRead) or
//!   maps the healed bytes.
//!
//! Page sizes 512, 4096 and 65536, rollback and WAL.

mod common;

use common::heal::*;
use common::schema::SchemaSize;
use common::*;
use rusqlite::ffi;
use std::ffi::{c_int, c_void, CString};
use std::path::Path;

/// A main database file opened through a VFS's own `xOpen`, not through a
/// connection: its io methods are called directly.
struct RawFile {
    file: Box<[u64]>,
    name: ffi::sqlite3_filename,
}

/// Result of one xRead: the result code and the whole buffer.
type ReadResult = (c_int, Vec<u8>);

/// What a buffer holds before xRead fills it: a short read must overwrite
/// the tail with zeros, so the fill must not be zero.
const UNTOUCHED: u8 = 0xa5;

impl RawFile {
    fn open(vfs_name: &str, path: &Path, readonly: bool) -> RawFile {
        load_extension();
        let vfs_c = CString::new(vfs_name).unwrap();
        let path_c = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: sqlite3_vfs_find returns a registered VFS or NULL;
        // VFS objects live as long as the library. sqlite3_create_filename
        // builds the filename layout SQLite gives xOpen (database, journal,
        // WAL, no URI parameters), which metadwr and unix may inspect with
        // sqlite3_uri_parameter; it stays valid until sqlite3_free_filename
        // in Drop, after xClose. `file` has szOsFile bytes, 8-aligned.
        unsafe {
            let vfs = ffi::sqlite3_vfs_find(vfs_c.as_ptr());
            assert!(!vfs.is_null(), "VFS {vfs_name} is not registered");
            let journal = CString::new(format!("{}-journal", path.display())).unwrap();
            let wal = CString::new(format!("{}-wal", path.display())).unwrap();
            let name = ffi::sqlite3_create_filename(
                path_c.as_ptr(),
                journal.as_ptr(),
                wal.as_ptr(),
                0,
                std::ptr::null_mut(),
            );
            assert!(!name.is_null());
            let words = ((*vfs).szOsFile as usize).div_ceil(8).max(1);
            let mut file = vec![0u64; words].into_boxed_slice();
            let fp: *mut ffi::sqlite3_file = file.as_mut_ptr().cast();
            let flags = ffi::SQLITE_OPEN_MAIN_DB
                | if readonly {
                    ffi::SQLITE_OPEN_READONLY
                } else {
                    ffi::SQLITE_OPEN_READWRITE
                };
            let mut out_flags = 0;
            let rc = (*vfs).xOpen.unwrap()(vfs, name, fp, flags, &mut out_flags);
            assert_eq!(
                rc,
                ffi::SQLITE_OK,
                "xOpen {} via {vfs_name}",
                path.display()
            );
            assert!(!(*fp).pMethods.is_null());
            RawFile { file, name }
        }
    }

    fn fp(&mut self) -> *mut ffi::sqlite3_file {
        self.file.as_mut_ptr().cast()
    }

    fn methods(&mut self) -> &ffi::sqlite3_io_methods {
        // SAFETY: the file is open (pMethods checked non-NULL in open) and
        // io method tables are static.
        unsafe { &*(*self.fp()).pMethods }
    }

    fn read(&mut self, off: u64, len: usize) -> ReadResult {
        let mut buf = vec![UNTOUCHED; len];
        let x_read = self.methods().xRead.unwrap();
        // SAFETY: the file is open; buf has `len` writable bytes.
        let rc = unsafe { x_read(self.fp(), buf.as_mut_ptr().cast(), len as c_int, off as i64) };
        (rc, buf)
    }

    /// Turns memory mapping on (`unix` maps nothing otherwise).
    fn set_mmap(&mut self, size: i64) {
        let mut arg = size;
        let x_fc = self.methods().xFileControl.unwrap();
        // SAFETY: the file is open; MMAP_SIZE takes a pointer to an i64.
        let rc = unsafe {
            x_fc(
                self.fp(),
                ffi::SQLITE_FCNTL_MMAP_SIZE,
                (&mut arg as *mut i64).cast(),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK, "SQLITE_FCNTL_MMAP_SIZE");
    }

    /// xFetch, copying the mapped bytes out and releasing the mapping at
    /// once: `None` when the VFS declined (NULL).
    fn fetch(&mut self, off: u64, len: usize) -> (c_int, Option<Vec<u8>>) {
        assert!(self.methods().iVersion >= 3, "xFetch needs io methods v3");
        let x_fetch = self.methods().xFetch.unwrap();
        let x_unfetch = self.methods().xUnfetch.unwrap();
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: the file is open; `p` is the result slot. A non-NULL
        // result points at `len` mapped bytes until xUnfetch.
        unsafe {
            let rc = x_fetch(self.fp(), off as i64, len as c_int, &mut p);
            if p.is_null() {
                return (rc, None);
            }
            let bytes = std::slice::from_raw_parts(p as *const u8, len).to_vec();
            let urc = x_unfetch(self.fp(), off as i64, p);
            assert_eq!(urc, ffi::SQLITE_OK, "xUnfetch");
            (rc, Some(bytes))
        }
    }
}

impl Drop for RawFile {
    fn drop(&mut self) {
        let x_close = self.methods().xClose.unwrap();
        // SAFETY: the file is open and closed exactly once, here; the name
        // outlives it and is freed after.
        unsafe {
            let rc = x_close(self.fp());
            ffi::sqlite3_free_filename(self.name);
            if !std::thread::panicking() {
                assert_eq!(rc, ffi::SQLITE_OK, "xClose");
            }
        }
    }
}

/// Which pages are damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hurt {
    None,
    Page1,
    SchemaPage,
    Both,
}

/// One operation of the property test.
#[derive(Debug, Clone, Copy)]
enum Op {
    Read(u64, usize),
    Fetch(u64, usize),
}

/// A random (offset, length), biased toward the shapes that matter: page
/// 1, the first 100 bytes, page boundaries, the damaged page, the end of
/// the file; lengths from 1 byte to several pages.
fn random_range(rng: &mut Rng, ps: u64, size: u64, hot: u64) -> (u64, usize) {
    let near = |rng: &mut Rng, at: u64| {
        let delta = rng.below(2 * ps + 1) as i64 - ps as i64;
        at.saturating_add_signed(delta)
    };
    let off = match rng.below(10) {
        0 => 0,
        1 => rng.below(100),
        2 => rng.below(ps),
        3 | 4 => near(rng, hot * ps),
        5 => {
            let k = rng.below(size / ps + 1);
            near(rng, k * ps)
        }
        6 => {
            let k = rng.below(size / ps + 1);
            k * ps
        }
        7 => near(rng, size),
        _ => rng.below(size + ps),
    };
    let len = match rng.below(8) {
        0 => 1 + rng.below(100) as usize,
        1 => ps as usize,
        2 => 2 * ps as usize,
        3 => 1 + rng.below(ps) as usize,
        4 => *rng.pick(&[16usize, 100, 1, 2 * ps as usize + 1]),
        _ => 1 + rng.below(3 * ps) as usize,
    };
    (off, len)
}

/// A damaged image of page `pgno` that is structurally broken: page 1
/// loses its header magic, any other page its B-tree page type.
fn broken_image(pgno: u32, good: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bad = Damage::Random.apply(pgno, good, rng);
    bad[0] = 0;
    bad
}

/// A protected database (the medium schema: several leaf, interior and
/// overflow pages of `sqlite_schema` at every page size), closed, with a
/// schema leaf other than page 1 as the stock shell's dbstat lists it.
struct Fixture {
    db: std::path::PathBuf,
    db_bytes: Vec<u8>,
    schema_page: u32,
}

fn fixture(dir: &TestDir, ps: u32, journal: &str, hurt: Hurt) -> Fixture {
    let db = dir.join(&format!("r-{ps}-{journal}-{hurt:?}.db"));
    make_protected_schema(&db, journal, ps, SchemaSize::Medium);
    // 400 views of 200 bytes: leaves beyond page 1 even at 64 KiB pages,
    // without a root page each.
    let conn = open(&db);
    let mut sql = String::from("BEGIN;");
    for i in 0..400 {
        let pad = common::schema::comment(i, 150);
        sql.push_str(&format!("CREATE VIEW rawv{i} AS SELECT {i} AS n {pad};"));
    }
    sql.push_str("COMMIT;");
    conn.execute_batch(&sql).unwrap();
    close_checkpointed(conn);
    // Damage to a leaf is structural: it is found whatever was read
    // before. (An overflow page has no structure; damage to it is found
    // only while page 1 as last read matched the copy.)
    let schema_page = schema_pages_cli(&db)
        .iter()
        .find(|(p, kind)| *p != 1 && *kind == PageKind::Leaf)
        .map(|(p, _)| *p)
        .expect("the schema has leaves beyond page 1");
    Fixture {
        db_bytes: std::fs::read(&db).unwrap(),
        db,
        schema_page,
    }
}

/// `r` (read at `off`) with page 1's change counter and version-valid-for
/// number zeroed, where the read covers them.
fn mask(off: u64, r: &ReadResult) -> ReadResult {
    let mut bytes = r.1.clone();
    for at in (24u64..28).chain(92..96) {
        if let Some(i) = at.checked_sub(off) {
            if let Some(b) = bytes.get_mut(i as usize) {
                *b = 0;
            }
        }
    }
    (r.0, bytes)
}

/// A read through metadwr against the same read through unix (of the
/// same undamaged file, or of the damaged file once healed).
fn check_read(what: &str, got: &ReadResult, want: &ReadResult) {
    if got.0 != want.0 {
        panic!(
            "{what}: result code {} through metadwr, {} through unix",
            got.0, want.0
        );
    }
    if got.1 != want.1 {
        let first = got.1.iter().zip(&want.1).position(|(a, b)| a != b).unwrap();
        panic!(
            "{what}: bytes differ from unix's, first at +{first} ({:#04x} instead of {:#04x})",
            got.1[first], want.1[first]
        );
    }
}

/// Runs `count` random reads and fetches of one configuration. Returns
/// (reads, fetches that mapped, reads that met the damage) for the totals.
fn run(
    fx: &Fixture,
    ps: u32,
    journal: &str,
    hurt: Hurt,
    count: usize,
    seed: u64,
) -> (usize, usize, usize) {
    let db = &fx.db;
    let ps64 = ps as u64;
    let size = fx.db_bytes.len() as u64;
    let mut rng = Rng::new(seed);
    let damaged: Vec<u32> = match hurt {
        Hurt::None => vec![],
        Hurt::Page1 => vec![1],
        Hurt::SchemaPage => vec![fx.schema_page],
        Hurt::Both => vec![1, fx.schema_page],
    };
    let hot = damaged.last().map_or(1, |p| *p as u64 - 1);
    let images: Vec<(u32, Vec<u8>)> = damaged
        .iter()
        .map(|&p| {
            let at = (p as usize - 1) * ps as usize;
            (
                p,
                broken_image(p, &fx.db_bytes[at..at + ps as usize], &mut rng),
            )
        })
        .collect();
    let damage = || {
        for (p, image) in &images {
            write_at(db, (*p as u64 - 1) * ps64, image);
        }
    };
    let what =
        |i: usize, op: &Op| format!("{ps}-byte pages, {journal}, damage {hurt:?}, #{i} {op:?}");

    let mut ops = vec![
        Op::Read(0, 2 * ps as usize),
        Op::Read(0, 100),
        Op::Read(24, 16),
    ];
    for _ in 0..count {
        let (off, len) = random_range(&mut rng, ps64, size, hot);
        ops.push(if rng.below(4) == 0 {
            Op::Fetch(off, len)
        } else {
            Op::Read(off, len)
        });
    }

    let mut mapped = 0;
    let mut reads = 0;
    if hurt == Hurt::None {
        // Undamaged: metadwr and unix side by side on the same file.
        let mut shim = RawFile::open("metadwr", db, false);
        let mut unix = RawFile::open("unix", db, false);
        shim.set_mmap(1 << 30);
        unix.set_mmap(1 << 30);
        for (i, op) in ops.iter().enumerate() {
            match *op {
                Op::Read(off, len) => {
                    reads += 1;
                    check_read(&what(i, op), &shim.read(off, len), &unix.read(off, len));
                }
                Op::Fetch(off, len) => {
                    let got = shim.fetch(off, len);
                    let want = unix.fetch(off, len);
                    assert_eq!(got, want, "{}", what(i, op));
                    mapped += got.1.is_some() as usize;
                }
            }
        }
        drop(shim);
        assert!(
            std::fs::read(db).unwrap() == fx.db_bytes,
            "undamaged file changed"
        );
        return (reads, mapped, 0);
    }

    // Damaged: every operation meets the damage, whether or not the one
    // before repaired the file. Half the reads on a read-write handle
    // (served and repaired), the rest on a read-only one (served, not
    // repaired).
    let mut results: Vec<(Op, ReadResult)> = Vec::new();
    let mut disk = RawFile::open("unix", db, true);
    let mut met_damage = 0;
    let mut fetched: Vec<(Op, c_int, Option<Vec<u8>>)> = Vec::new();
    // In WAL mode only read-only handles: a repair through a handle that
    // never opens the WAL leaves the copy marked as possibly behind the
    // WAL (`WAL_AHEAD`), and with no WAL left the next damage is refused.
    let handles = if journal == "wal" {
        [true, true]
    } else {
        [false, true]
    };
    for (h, readonly) in handles.into_iter().enumerate() {
        let mut shim = RawFile::open("metadwr", db, readonly);
        shim.set_mmap(1 << 30);
        let half = if h == 1 {
            &ops[ops.len() / 2..]
        } else {
            &ops[..ops.len() / 2]
        };
        let half: Vec<Op> = if h == 1 {
            // The fixed cases again, on the read-only handle.
            ops[..3].iter().chain(half).copied().collect()
        } else {
            half.to_vec()
        };
        for op in half {
            damage();
            match op {
                Op::Read(off, len) => {
                    // Not vacuous: count the reads that met the damage
                    // (read before metadwr's, which may repair it).
                    let damaged = disk.read(off, len);
                    let got = shim.read(off, len);
                    if got != damaged {
                        met_damage += 1;
                    }
                    results.push((op, got));
                }
                Op::Fetch(off, len) => {
                    let (rc, bytes) = shim.fetch(off, len);
                    fetched.push((op, rc, bytes));
                }
            }
        }
    }
    drop(disk);
    assert!(
        met_damage >= 10,
        "{ps}-byte pages, {journal}, {hurt:?}: only {met_damage} reads met the damage"
    );
    // Heal the file (a read of each damaged page on a read-write handle
    // repairs it), then read it through plain unix.
    damage();
    {
        let mut shim = RawFile::open("metadwr", db, false);
        for p in &damaged {
            let (rc, _) = shim.read((*p as u64 - 1) * ps64, ps as usize);
            assert_eq!(rc, ffi::SQLITE_OK);
        }
    }
    // A repair moves page 1's change counter (and version-valid-for
    // number) on, so that other connections see the file changed: those 8
    // bytes are the only ones that may differ, between the healed file
    // and the original as between it and the copy served before a repair.
    assert_file_matches(
        db,
        &fx.db_bytes,
        &format!("{ps}-byte pages, {journal}, {hurt:?}: healed"),
    );
    let mut unix = RawFile::open("unix", db, false);
    unix.set_mmap(1 << 30);
    for (i, (op, got)) in results.iter().enumerate() {
        let Op::Read(off, len) = *op else {
            unreachable!()
        };
        reads += 1;
        let want = unix.read(off, len);
        check_read(&what(i, op), &mask(off, got), &mask(off, &want));
    }
    for (i, (op, rc, got)) in fetched.iter().enumerate() {
        let Op::Fetch(off, len) = *op else {
            unreachable!()
        };
        assert_eq!(*rc, ffi::SQLITE_OK, "{}", what(i, op));
        if let Some(bytes) = got {
            let want = unix
                .fetch(off, len)
                .1
                .expect("unix maps what metadwr mapped");
            check_read(
                &what(i, op),
                &mask(off, &(0, bytes.clone())),
                &mask(off, &(0, want)),
            );
            mapped += 1;
        }
    }
    (reads, mapped, met_damage)
}

fn property(ps: u32, seed: u64) {
    let dir = TestDir::new(&format!("raw-reads-{ps}"));
    let count = 250;
    let mut total = (0, 0, 0);
    for journal in ["delete", "wal"] {
        for (k, hurt) in [Hurt::None, Hurt::Page1, Hurt::SchemaPage, Hurt::Both]
            .into_iter()
            .enumerate()
        {
            let fx = fixture(&dir, ps, journal, hurt);
            let (r, m, d) = run(&fx, ps, journal, hurt, count, seed * 16 + k as u64);
            total.0 += r;
            total.1 += m;
            total.2 += d;
        }
    }
    eprintln!(
        "{ps}-byte pages: {} reads ({} met damage), {} fetches mapped",
        total.0, total.2, total.1
    );
    // Not vacuous: the fetches that mapped were compared too.
    assert!(total.1 > 0, "no fetch ever mapped");
}

#[test]
fn random_reads_512() {
    property(512, 1);
}

#[test]
fn random_reads_4096() {
    property(4096, 2);
}

#[test]
fn random_reads_65536() {
    property(65536, 3);
}

/// The case of the report: page 1 damaged, one read of two pages from
/// offset 0 (it panicked inside metadwr and came back SQLITE_IOERR).
#[test]
fn two_page_read_of_damaged_page1() {
    let dir = TestDir::new("raw-two-pages");
    let db = dir.join("t.db");
    make_protected_schema(&db, "delete", 4096, SchemaSize::Medium);
    let good = std::fs::read(&db).unwrap();
    let mut rng = Rng::new(7);
    write_at(&db, 0, &broken_image(1, &good[..4096], &mut rng));
    let mut shim = RawFile::open("metadwr", &db, false);
    let (rc, bytes) = shim.read(0, 8192);
    assert_eq!(rc, ffi::SQLITE_OK);
    assert_eq!(bytes, good[..8192]);
}
