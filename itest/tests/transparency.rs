//! Transparency of the shim: what a program asks of the main database file
//! through `sqlite3_file_control` and through the `sqlite3_file` methods
//! must be answered the same whether the file is opened through `unix` or
//! through metadwr (with protection on).
//!
//! * `file_controls_*`: every `SQLITE_FCNTL_*` opcode of sqlite3.h (3.54)
//!   that a user can send, sent to the same database opened once with
//!   `vfs=unix` and once through metadwr, with the same argument, in the
//!   same connection state (idle, read transaction, write transaction;
//!   rollback journal and WAL). Return codes and outputs must be equal,
//!   except where they cannot be: `VFSNAME` carries the `metadwr/` prefix,
//!   `VFS_POINTER` is the metadwr VFS, `FILE_POINTER` and `JOURNAL_POINTER`
//!   are addresses (both non-null, the journal open in both or in neither),
//!   `TEMPFILENAME` is random (same directory). Opcodes `unix` does not
//!   know answer `SQLITE_NOTFOUND` through both.
//! * `io_methods_*`: `xDeviceCharacteristics`, `xSectorSize`,
//!   `xCheckReservedLock` and a script of lock transitions between two
//!   connections (conflicts, PENDING, lock states read back with
//!   `SQLITE_FCNTL_LOCKSTATE`) called directly through the `sqlite3_file`
//!   of `SQLITE_FCNTL_FILE_POINTER`: the transcript of two metadwr
//!   connections, and of a metadwr and a `unix` connection either way
//!   round, must be that of two `unix` connections. Afterwards both
//!   connections still work and the copy is still current.
//! * `null_io_*`: `SQLITE_FCNTL_NULL_IO` (recent SQLite closes the
//!   descriptor; 3.40.1 does not know it) is destructive, so it has its own
//!   test: same answer, same error on the next statement, a clean close.
//!
//! The opcode numbers are written out here rather than taken from
//! `rusqlite::ffi`, whose pre-generated bindings for a system SQLite stop at
//! 3.45 (`cargo test --no-default-features --features system`).

mod common;

use common::*;
use rusqlite::{ffi, Connection};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::ptr;

// --- opcodes (sqlite3.h of SQLite 3.54) ---------------------------------------

const LOCKSTATE: c_int = 1;
const GET_LOCKPROXYFILE: c_int = 2;
const SET_LOCKPROXYFILE: c_int = 3;
const LAST_ERRNO: c_int = 4;
const SIZE_HINT: c_int = 5;
const CHUNK_SIZE: c_int = 6;
const FILE_POINTER: c_int = 7;
const SYNC_OMITTED: c_int = 8;
const WIN32_AV_RETRY: c_int = 9;
const PERSIST_WAL: c_int = 10;
const OVERWRITE: c_int = 11;
const VFSNAME: c_int = 12;
const POWERSAFE_OVERWRITE: c_int = 13;
const PRAGMA: c_int = 14;
const BUSYHANDLER: c_int = 15;
const TEMPFILENAME: c_int = 16;
const MMAP_SIZE: c_int = 18;
const TRACE: c_int = 19;
const HAS_MOVED: c_int = 20;
const SYNC: c_int = 21;
const COMMIT_PHASETWO: c_int = 22;
const WIN32_SET_HANDLE: c_int = 23;
const WAL_BLOCK: c_int = 24;
const ZIPVFS: c_int = 25;
const RBU: c_int = 26;
const VFS_POINTER: c_int = 27;
const JOURNAL_POINTER: c_int = 28;
const WIN32_GET_HANDLE: c_int = 29;
const PDB: c_int = 30;
const BEGIN_ATOMIC_WRITE: c_int = 31;
const COMMIT_ATOMIC_WRITE: c_int = 32;
const ROLLBACK_ATOMIC_WRITE: c_int = 33;
const LOCK_TIMEOUT: c_int = 34;
const DATA_VERSION: c_int = 35;
const SIZE_LIMIT: c_int = 36;
const CKPT_DONE: c_int = 37;
const RESERVE_BYTES: c_int = 38;
const CKPT_START: c_int = 39;
const EXTERNAL_READER: c_int = 40;
const CKSM_FILE: c_int = 41;
const RESET_CACHE: c_int = 42;
const NULL_IO: c_int = 43;
const BLOCK_ON_CONNECT: c_int = 44;
const FILESTAT: c_int = 45;

const LOCK_NONE: c_int = 0;
const LOCK_SHARED: c_int = 1;
const LOCK_RESERVED: c_int = 2;
const LOCK_EXCLUSIVE: c_int = 4;

/// What an opcode takes.
#[derive(Clone, Copy, Debug)]
enum Arg {
    /// An `int` in and out.
    Int(c_int),
    /// An `sqlite3_int64` in and out.
    I64(i64),
    /// A pointer the call may fill (`char**`, `sqlite3_file**`, ...).
    Out,
    /// A zeroed buffer the call may write to; compared byte for byte.
    Buf,
    /// `char*[3]`: result slot, pragma name, value (NULL).
    Pragma(&'static CStr),
    /// An `sqlite3_str*` (FILESTAT).
    Str,
}

/// How the answers of `unix` and metadwr are compared.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    /// Return code and output equal.
    Exact,
    /// A `char*` from sqlite3_malloc: equal after metadwr's `metadwr/` prefix.
    VfsName,
    /// A `char*` from sqlite3_malloc naming a random file: same directory.
    TempName,
    /// An address: both non-null (or both null).
    Address,
    /// An `sqlite3_vfs*`: `unix` through unix, `metadwr` through metadwr.
    VfsPointer,
    /// An `sqlite3_file*` of the journal: both non-null, open in both or neither.
    Journal,
    /// FILESTAT's JSON, with the descriptor and VFS name masked.
    FileStat,
}

struct Op {
    name: &'static str,
    code: c_int,
    arg: Arg,
    cmp: Cmp,
}

const fn op(name: &'static str, code: c_int, arg: Arg, cmp: Cmp) -> Op {
    Op {
        name,
        code,
        arg,
        cmp,
    }
}

/// Every opcode a user can send through `sqlite3_file_control`, in number
/// order, each with an argument that asks rather than changes where it can
/// (`-1` queries PERSIST_WAL, POWERSAFE_OVERWRITE, MMAP_SIZE, RESERVE_BYTES).
/// NULL_IO is left out: it closes the file (see `null_io_*`).
const OPS: &[Op] = &[
    op("LOCKSTATE", LOCKSTATE, Arg::Int(-7), Cmp::Exact),
    op(
        "GET_LOCKPROXYFILE",
        GET_LOCKPROXYFILE,
        Arg::Out,
        Cmp::Address,
    ),
    op("SET_LOCKPROXYFILE", SET_LOCKPROXYFILE, Arg::Buf, Cmp::Exact),
    op("LAST_ERRNO", LAST_ERRNO, Arg::Int(-7), Cmp::Exact),
    op("SIZE_HINT", SIZE_HINT, Arg::I64(4096), Cmp::Exact),
    op("CHUNK_SIZE", CHUNK_SIZE, Arg::Int(0), Cmp::Exact),
    op("FILE_POINTER", FILE_POINTER, Arg::Out, Cmp::Address),
    op("SYNC_OMITTED", SYNC_OMITTED, Arg::Buf, Cmp::Exact),
    op("WIN32_AV_RETRY", WIN32_AV_RETRY, Arg::Buf, Cmp::Exact),
    op("PERSIST_WAL", PERSIST_WAL, Arg::Int(-1), Cmp::Exact),
    op("OVERWRITE", OVERWRITE, Arg::Buf, Cmp::Exact),
    op("VFSNAME", VFSNAME, Arg::Out, Cmp::VfsName),
    op(
        "POWERSAFE_OVERWRITE",
        POWERSAFE_OVERWRITE,
        Arg::Int(-1),
        Cmp::Exact,
    ),
    op("PRAGMA", PRAGMA, Arg::Pragma(c"journal_mode"), Cmp::Exact),
    op("BUSYHANDLER", BUSYHANDLER, Arg::Buf, Cmp::Exact),
    op("TEMPFILENAME", TEMPFILENAME, Arg::Out, Cmp::TempName),
    op("MMAP_SIZE", MMAP_SIZE, Arg::I64(-1), Cmp::Exact),
    op("TRACE", TRACE, Arg::Buf, Cmp::Exact),
    op("HAS_MOVED", HAS_MOVED, Arg::Int(-7), Cmp::Exact),
    op("SYNC", SYNC, Arg::Buf, Cmp::Exact),
    op("COMMIT_PHASETWO", COMMIT_PHASETWO, Arg::Buf, Cmp::Exact),
    op("WIN32_SET_HANDLE", WIN32_SET_HANDLE, Arg::Buf, Cmp::Exact),
    op("WAL_BLOCK", WAL_BLOCK, Arg::Buf, Cmp::Exact),
    op("ZIPVFS", ZIPVFS, Arg::Buf, Cmp::Exact),
    op("RBU", RBU, Arg::Buf, Cmp::Exact),
    op("VFS_POINTER", VFS_POINTER, Arg::Out, Cmp::VfsPointer),
    op("JOURNAL_POINTER", JOURNAL_POINTER, Arg::Out, Cmp::Journal),
    op("WIN32_GET_HANDLE", WIN32_GET_HANDLE, Arg::Out, Cmp::Address),
    op("PDB", PDB, Arg::Buf, Cmp::Exact),
    op(
        "BEGIN_ATOMIC_WRITE",
        BEGIN_ATOMIC_WRITE,
        Arg::Buf,
        Cmp::Exact,
    ),
    op(
        "COMMIT_ATOMIC_WRITE",
        COMMIT_ATOMIC_WRITE,
        Arg::Buf,
        Cmp::Exact,
    ),
    op(
        "ROLLBACK_ATOMIC_WRITE",
        ROLLBACK_ATOMIC_WRITE,
        Arg::Buf,
        Cmp::Exact,
    ),
    op("LOCK_TIMEOUT", LOCK_TIMEOUT, Arg::Int(0), Cmp::Exact),
    op("DATA_VERSION", DATA_VERSION, Arg::Int(-7), Cmp::Exact),
    op("SIZE_LIMIT", SIZE_LIMIT, Arg::I64(-1), Cmp::Exact),
    op("CKPT_DONE", CKPT_DONE, Arg::Buf, Cmp::Exact),
    op("RESERVE_BYTES", RESERVE_BYTES, Arg::Int(-1), Cmp::Exact),
    op("CKPT_START", CKPT_START, Arg::Buf, Cmp::Exact),
    op("EXTERNAL_READER", EXTERNAL_READER, Arg::Int(-7), Cmp::Exact),
    op("CKSM_FILE", CKSM_FILE, Arg::Buf, Cmp::Exact),
    op("RESET_CACHE", RESET_CACHE, Arg::Buf, Cmp::Exact),
    op(
        "BLOCK_ON_CONNECT",
        BLOCK_ON_CONNECT,
        Arg::Int(0),
        Cmp::Exact,
    ),
    op("FILESTAT", FILESTAT, Arg::Str, Cmp::FileStat),
];

/// The answer to one opcode: the raw text and the text compared.
struct Answer {
    rc: c_int,
    raw: String,
    norm: String,
}

fn c_string(p: *const c_char) -> String {
    // SAFETY: callers pass a NUL-terminated string from SQLite.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn file_control(conn: &Connection, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: the handle is live for the borrow of `conn`; `arg` is what
    // the opcode expects (see `send`).
    unsafe { ffi::sqlite3_file_control(conn.handle(), c"main".as_ptr(), op, arg) }
}

/// Sends `op` to the main database of `conn`.
fn send(conn: &Connection, op: &Op) -> Answer {
    let (rc, raw, norm) = match op.arg {
        Arg::Int(v) => {
            let mut x = v;
            let rc = file_control(conn, op.code, (&mut x as *mut c_int).cast());
            (rc, x.to_string(), x.to_string())
        }
        Arg::I64(v) => {
            let mut x = v;
            let rc = file_control(conn, op.code, (&mut x as *mut i64).cast());
            (rc, x.to_string(), x.to_string())
        }
        Arg::Buf => {
            let mut buf = [0u64; 16];
            let rc = file_control(conn, op.code, buf.as_mut_ptr().cast());
            let s = if buf.iter().all(|&w| w == 0) {
                "untouched".to_string()
            } else {
                format!("{buf:x?}")
            };
            (rc, s.clone(), s)
        }
        Arg::Pragma(name) => {
            let mut args: [*mut c_char; 3] =
                [ptr::null_mut(), name.as_ptr().cast_mut(), ptr::null_mut()];
            let rc = file_control(conn, op.code, args.as_mut_ptr().cast());
            let s = if args[0].is_null() {
                "no result".to_string()
            } else {
                let s = c_string(args[0]);
                // SAFETY: a result of FCNTL_PRAGMA comes from sqlite3_malloc.
                unsafe { ffi::sqlite3_free(args[0].cast()) };
                format!("result {s:?}")
            };
            (rc, s.clone(), s)
        }
        Arg::Str => {
            // SAFETY: sqlite3_str_new never returns NULL (an out-of-memory
            // string object at worst); sqlite3_str_finish frees it and
            // returns an sqlite3_malloc string or NULL.
            unsafe {
                let s = ffi::sqlite3_str_new(conn.handle());
                let rc = file_control(conn, op.code, s.cast());
                let text = ffi::sqlite3_str_finish(s);
                let raw = if text.is_null() {
                    String::new()
                } else {
                    let t = c_string(text);
                    ffi::sqlite3_free(text.cast());
                    t
                };
                let norm = mask_filestat(&raw);
                (rc, raw, norm)
            }
        }
        Arg::Out => {
            let mut p: *mut c_void = ptr::null_mut();
            let rc = file_control(conn, op.code, (&mut p as *mut *mut c_void).cast());
            if p.is_null() {
                (rc, "null".into(), "null".into())
            } else {
                match op.cmp {
                    Cmp::VfsName | Cmp::TempName => {
                        let s = c_string(p.cast());
                        // SAFETY: VFSNAME and TEMPFILENAME hand over a string
                        // from sqlite3_malloc.
                        unsafe { ffi::sqlite3_free(p) };
                        let norm = if op.cmp == Cmp::VfsName {
                            s.strip_prefix("metadwr/").unwrap_or(&s).to_string()
                        } else {
                            match s.rfind('/') {
                                Some(i) => format!("{}/<random>", &s[..i]),
                                None => "<random>".into(),
                            }
                        };
                        (rc, s, norm)
                    }
                    Cmp::VfsPointer => {
                        // SAFETY: VFS_POINTER hands out the live sqlite3_vfs.
                        let name = c_string(unsafe { (*(p as *mut ffi::sqlite3_vfs)).zName });
                        (rc, name, "a VFS".into())
                    }
                    Cmp::Journal => {
                        // SAFETY: JOURNAL_POINTER hands out the pager's
                        // journal sqlite3_file, open or not.
                        let open = unsafe { !(*(p as *mut ffi::sqlite3_file)).pMethods.is_null() };
                        let s = if open {
                            "journal open"
                        } else {
                            "journal not open"
                        };
                        (rc, format!("{p:p} ({s})"), s.into())
                    }
                    _ => (rc, format!("{p:p}"), "non-null".into()),
                }
            }
        }
    };
    Answer { rc, raw, norm }
}

/// FILESTAT's JSON with what differs by nature masked: the descriptor and
/// the VFS name.
fn mask_filestat(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\"h\":") {
        out.push_str(&rest[..i + 4]);
        rest = rest[i + 4..].trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
        out.push('N');
    }
    out.push_str(rest);
    out.replace("\"metadwr\"", "\"unix\"")
}

/// A connection state in which the opcodes are sent.
#[derive(Clone, Copy, Debug)]
enum State {
    Idle,
    Reading,
    Writing,
}

impl State {
    fn enter(self, conn: &Connection) {
        match self {
            State::Idle => {}
            State::Reading => {
                conn.execute_batch("BEGIN").unwrap();
                let _: i64 = conn
                    .query_row("SELECT count(*) FROM t0", [], |r| r.get(0))
                    .unwrap();
            }
            State::Writing => {
                conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO t0(name) VALUES ('written');")
                    .unwrap();
            }
        }
    }

    fn leave(self, conn: &Connection) {
        if !matches!(self, State::Idle) {
            conn.execute_batch("ROLLBACK").unwrap();
        }
    }
}

/// The answers of every opcode through `conn` in `state`.
fn answers(conn: &Connection, state: State) -> Vec<(&'static Op, Answer)> {
    state.enter(conn);
    let out = OPS.iter().map(|op| (op, send(conn, op))).collect();
    state.leave(conn);
    out
}

fn rc_name(rc: c_int) -> String {
    match rc {
        0 => "OK".into(),
        12 => "NOTFOUND".into(),
        _ => format!("rc {rc}"),
    }
}

/// Opens `db` through unix and through metadwr in turn and compares every
/// opcode's answers in every state.
fn compare_file_controls(journal: &str) {
    let dir = TestDir::new(&format!("transparency-fcntl-{journal}"));
    let db = dir.join("app.db");
    make_protected(&db, journal, 3);
    let mut report = Vec::new();
    let mut diffs = Vec::new();
    for state in [State::Idle, State::Reading, State::Writing] {
        let plain = open_plain(&db).expect("open through unix");
        let via_unix = answers(&plain, state);
        drop(plain);
        let conn = open(&db);
        assert!(
            dwr_status(&conn).starts_with("enabled"),
            "{}",
            dwr_status(&conn)
        );
        let via_metadwr = answers(&conn, state);
        drop(conn);
        for ((op, u), (_, m)) in via_unix.iter().zip(via_metadwr.iter()) {
            let line = format!(
                "{journal}/{state:?} {:<22} unix: {} {:<28} metadwr: {} {}",
                op.name,
                rc_name(u.rc),
                u.raw,
                rc_name(m.rc),
                m.raw
            );
            report.push(line.clone());
            let mut same = u.rc == m.rc && u.norm == m.norm;
            if op.cmp == Cmp::VfsPointer && u.rc == ffi::SQLITE_OK {
                same &= u.raw == "unix" && m.raw == "metadwr";
            }
            if op.cmp == Cmp::VfsName && u.rc == ffi::SQLITE_OK {
                same &= m.raw == format!("metadwr/{}", u.raw);
            }
            if !same {
                diffs.push(line);
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        diffs.is_empty(),
        "file controls answered differently through metadwr:\n{}",
        diffs.join("\n")
    );
    // Nothing the opcodes did disturbed the copy.
    let conn = open(&db);
    let r = meta_recover(&conn).expect("meta_recover");
    assert!(r.starts_with("nothing to restore"), "{r}");
    assert_integrity_ok(&conn, "after the file controls");
}

#[test]
fn file_controls_rollback() {
    compare_file_controls("delete");
}

#[test]
fn file_controls_wal() {
    compare_file_controls("wal");
}

// --- the sqlite3_file methods ---------------------------------------------------

/// The main database file of `conn`, from SQLITE_FCNTL_FILE_POINTER.
fn file_of(conn: &Connection) -> *mut ffi::sqlite3_file {
    let mut f: *mut ffi::sqlite3_file = ptr::null_mut();
    let rc = file_control(
        conn,
        FILE_POINTER,
        (&mut f as *mut *mut ffi::sqlite3_file).cast(),
    );
    assert_eq!(rc, ffi::SQLITE_OK);
    assert!(!f.is_null());
    f
}

fn methods(f: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: f is the open main database file of a live connection; its
    // method table lives as long as the file is open.
    unsafe { &*(*f).pMethods }
}

fn x_lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: as in `methods`; xLock takes a lock level.
    unsafe { methods(f).xLock.unwrap()(f, level) }
}

fn x_unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: as in `methods`.
    unsafe { methods(f).xUnlock.unwrap()(f, level) }
}

fn x_check_reserved(f: *mut ffi::sqlite3_file) -> String {
    let mut out: c_int = -7;
    // SAFETY: as in `methods`; the out-parameter is a live int.
    let rc = unsafe { methods(f).xCheckReservedLock.unwrap()(f, &mut out) };
    format!("{} reserved={out}", rc_name(rc))
}

fn lock_state(f: *mut ffi::sqlite3_file) -> String {
    let mut out: c_int = -7;
    // SAFETY: as in `methods`; LOCKSTATE writes an int.
    let rc =
        unsafe { methods(f).xFileControl.unwrap()(f, LOCKSTATE, (&mut out as *mut c_int).cast()) };
    match rc {
        0 => ["NONE", "SHARED", "RESERVED", "PENDING", "EXCLUSIVE"]
            .get(out as usize)
            .map_or_else(|| format!("level {out}"), |s| s.to_string()),
        _ => rc_name(rc),
    }
}

fn rc_lock(rc: c_int) -> String {
    match rc {
        0 => "OK".into(),
        5 => "BUSY".into(),
        _ => format!("rc {rc}"),
    }
}

/// The script of lock transitions between two connections' files `a` and
/// `b`, as a transcript of every answer.
fn lock_script(a: *mut ffi::sqlite3_file, b: *mut ffi::sqlite3_file) -> Vec<String> {
    let mut t = Vec::new();
    let mut note = |what: &str, answer: String| {
        t.push(format!(
            "{what:<26} -> {answer:<8} a={:<9} b={:<9} a.check {} b.check {}",
            lock_state(a),
            lock_state(b),
            x_check_reserved(a),
            x_check_reserved(b)
        ))
    };
    note("start", String::new());
    note("a SHARED", rc_lock(x_lock(a, LOCK_SHARED)));
    note("b SHARED", rc_lock(x_lock(b, LOCK_SHARED)));
    note("a RESERVED", rc_lock(x_lock(a, LOCK_RESERVED)));
    note("b RESERVED (conflict)", rc_lock(x_lock(b, LOCK_RESERVED)));
    note("a EXCLUSIVE (b reads)", rc_lock(x_lock(a, LOCK_EXCLUSIVE)));
    note("b SHARED again", rc_lock(x_lock(b, LOCK_SHARED)));
    note("b unlock NONE", rc_lock(x_unlock(b, LOCK_NONE)));
    note("b SHARED (a PENDING)", rc_lock(x_lock(b, LOCK_SHARED)));
    note("a EXCLUSIVE", rc_lock(x_lock(a, LOCK_EXCLUSIVE)));
    note("b SHARED (a EXCLUSIVE)", rc_lock(x_lock(b, LOCK_SHARED)));
    note("a EXCLUSIVE again", rc_lock(x_lock(a, LOCK_EXCLUSIVE)));
    note("a unlock SHARED", rc_lock(x_unlock(a, LOCK_SHARED)));
    note("b SHARED", rc_lock(x_lock(b, LOCK_SHARED)));
    note("b RESERVED", rc_lock(x_lock(b, LOCK_RESERVED)));
    note("a RESERVED (conflict)", rc_lock(x_lock(a, LOCK_RESERVED)));
    note("b unlock SHARED", rc_lock(x_unlock(b, LOCK_SHARED)));
    note("a unlock NONE", rc_lock(x_unlock(a, LOCK_NONE)));
    note("b EXCLUSIVE", rc_lock(x_lock(b, LOCK_EXCLUSIVE)));
    note("b unlock NONE", rc_lock(x_unlock(b, LOCK_NONE)));
    note("a unlock NONE again", rc_lock(x_unlock(a, LOCK_NONE)));
    t
}

/// Which VFS each of the two connections is opened through.
#[derive(Clone, Copy, Debug)]
enum Pair {
    UnixUnix,
    MetadwrMetadwr,
    MetadwrUnix,
    UnixMetadwr,
}

fn connect(db: &Path, metadwr: bool) -> Connection {
    if metadwr {
        open(db)
    } else {
        open_plain(db).expect("open through unix")
    }
}

struct MethodRun {
    device: c_int,
    sector: c_int,
    versions: (c_int, c_int),
    locks: Vec<String>,
}

fn run_methods(db: &Path, pair: Pair) -> MethodRun {
    let (ma, mb) = match pair {
        Pair::UnixUnix => (false, false),
        Pair::MetadwrMetadwr => (true, true),
        Pair::MetadwrUnix => (true, false),
        Pair::UnixMetadwr => (false, true),
    };
    let ca = connect(db, ma);
    let cb = connect(db, mb);
    // Both connections have read the database (the pager holds no lock
    // between statements in rollback mode).
    for c in [&ca, &cb] {
        let _: i64 = c
            .query_row("SELECT count(*) FROM t0", [], |r| r.get(0))
            .unwrap();
    }
    let (a, b) = (file_of(&ca), file_of(&cb));
    // SAFETY: as in `methods`.
    let (device, sector) = unsafe {
        (
            methods(a).xDeviceCharacteristics.unwrap()(a),
            methods(a).xSectorSize.unwrap()(a),
        )
    };
    let versions = (methods(a).iVersion, methods(b).iVersion);
    let locks = lock_script(a, b);
    // Both connections still work, and write.
    ca.execute("INSERT INTO t0(name) VALUES (?1)", [format!("{pair:?} a")])
        .unwrap_or_else(|e| panic!("{pair:?}: connection a after the lock script: {e}"));
    cb.execute("INSERT INTO t0(name) VALUES (?1)", [format!("{pair:?} b")])
        .unwrap_or_else(|e| panic!("{pair:?}: connection b after the lock script: {e}"));
    MethodRun {
        device,
        sector,
        versions,
        locks,
    }
}

#[test]
fn io_methods_match_unix() {
    let dir = TestDir::new("transparency-methods");
    let db = dir.join("app.db");
    make_protected(&db, "delete", 3);
    let reference = run_methods(&db, Pair::UnixUnix);
    println!(
        "unix: xDeviceCharacteristics {:#x}, xSectorSize {}, io_methods version {:?}\n{}",
        reference.device,
        reference.sector,
        reference.versions,
        reference.locks.join("\n")
    );
    let mut problems = Vec::new();
    for pair in [Pair::MetadwrMetadwr, Pair::MetadwrUnix, Pair::UnixMetadwr] {
        let run = run_methods(&db, pair);
        if run.device != reference.device {
            problems.push(format!(
                "{pair:?}: xDeviceCharacteristics {:#x}, unix {:#x}",
                run.device, reference.device
            ));
        }
        if run.sector != reference.sector {
            problems.push(format!(
                "{pair:?}: xSectorSize {}, unix {}",
                run.sector, reference.sector
            ));
        }
        if run.versions != reference.versions {
            problems.push(format!(
                "{pair:?}: io_methods versions {:?}, unix {:?}",
                run.versions, reference.versions
            ));
        }
        for (i, (got, want)) in run.locks.iter().zip(reference.locks.iter()).enumerate() {
            if got != want {
                problems.push(format!(
                    "{pair:?}: lock step {i}:\n  metadwr: {got}\n  unix:    {want}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The copy followed the writes made after the lock script.
    let conn = open(&db);
    let r = meta_recover(&conn).expect("meta_recover");
    assert!(r.starts_with("nothing to restore"), "{r}");
    assert_integrity_ok(&conn, "after the lock script");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t0", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3 + 2 * 4);
}

// --- NULL_IO --------------------------------------------------------------------

/// Sends NULL_IO, then runs a statement and closes: rc, the statement's
/// primary error code (or OK), and the close's.
fn null_io_run(db: &Path, metadwr: bool) -> (c_int, String, String) {
    let conn = connect(db, metadwr);
    // A fresh read: the next statement must go to the file.
    let _: i64 = conn
        .query_row("SELECT count(*) FROM t0", [], |r| r.get(0))
        .unwrap();
    let rc = file_control(&conn, NULL_IO, ptr::null_mut());
    conn.execute_batch("PRAGMA cache_size=0").ok();
    let stmt = match conn.execute("INSERT INTO t0(name) VALUES ('after null_io')", []) {
        Ok(_) => "OK".to_string(),
        Err(e) => format!("error {:?}", primary_code(&e)),
    };
    let close = match conn.close() {
        Ok(()) => "OK".to_string(),
        Err((_, e)) => format!("error {:?}", primary_code(&e)),
    };
    (rc, stmt, close)
}

#[test]
fn null_io_matches_unix() {
    let dir = TestDir::new("transparency-null-io");
    let db = dir.join("app.db");
    let before = make_protected(&db, "delete", 3);
    let via_unix = null_io_run(&db, false);
    let via_metadwr = null_io_run(&db, true);
    println!("NULL_IO: unix {via_unix:?}, metadwr {via_metadwr:?}");
    assert_eq!(via_metadwr, via_unix, "NULL_IO through metadwr vs unix");
    // The database and its copy are as they were when the statements did not
    // reach the file; whatever happened, both still agree.
    let conn = open(&db);
    assert_integrity_ok(&conn, "after NULL_IO");
    let r = meta_recover(&conn).expect("meta_recover");
    assert!(r.starts_with("nothing to restore"), "{r}");
    if via_unix.0 == ffi::SQLITE_OK {
        assert_same_content(&before, &content(&conn).unwrap(), "after NULL_IO");
    }
}
