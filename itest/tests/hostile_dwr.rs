//! Hostile `-dwr` files: empty, truncated, random, bad checksums, a page
//! size or page list that does not fit, another database's copy, a
//! directory, a symlink, no permission, a full disk. None may crash, hang,
//! restore wrongly or fail a user transaction; each gets a clear status.
//!
//! Every case runs three phases:
//! 1. page 1 of the database is destroyed: the reader gets SQLite's usual
//!    error, the database stays byte-identical, no quarantine file appears;
//! 2. the damage undone: user transactions (CREATE TABLE, INSERT, reading
//!    back) succeed, the status has the expected prefix, and a filesystem
//!    object in place of the `-dwr` is left alone;
//! 3. for hostile *contents*, the write in phase 2 replaced the copy: a new
//!    damage is healed.

mod common;

use common::heal::*;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

// --- the -dwr format, as far as these tests need it -------------------------------

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// A header slot with the right magic and checksum.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// 0 or 1: the slot at offset 0 or 512.
    slot: usize,
    generation: u64,
    page_size: u32,
    count: u32,
    data_offset: u64,
}

fn headers(dwr: &[u8]) -> Vec<Header> {
    (0..2)
        .filter_map(|slot| {
            let h = dwr.get(slot * 512..slot * 512 + 256)?;
            (&h[0..8] == b"MetaDWR\0" && be32(h, 252) == crc32c(&h[..252])).then(|| Header {
                slot,
                generation: be64(h, 16),
                page_size: be32(h, 24),
                count: be32(h, 28),
                data_offset: be64(h, 32),
            })
        })
        .collect()
}

fn newest(dwr: &[u8]) -> Header {
    headers(dwr)
        .into_iter()
        .max_by_key(|h| h.generation)
        .expect("setup: the -dwr has a valid header")
}

fn slot_offset(h: &Header, index: u32, w: u32) -> usize {
    (h.data_offset + (2 * index as u64 + w as u64) * (h.page_size as u64 + 32)) as usize
}

/// Offset of the page slot that `h` selects for `index` (section 4; the
/// slot checksums are not checked here).
fn selected_slot(dwr: &[u8], h: &Header, index: u32) -> usize {
    let ps = h.page_size as usize;
    (0..2)
        .map(|w| slot_offset(h, index, w))
        .filter(|&off| &dwr[off + ps..off + ps + 4] == b"DWRP")
        .filter(|&off| be64(dwr, off + ps + 8) <= h.generation)
        .max_by_key(|&off| be64(dwr, off + ps + 8))
        .expect("setup: every index selects a slot")
}

/// Rewrites field bytes of both header slots and fixes their checksums, so
/// the header is valid but says something hostile.
fn patch_headers(dwr: &mut [u8], field: usize, value: &[u8]) {
    for h in headers(dwr) {
        let base = h.slot * 512;
        dwr[base + field..base + field + value.len()].copy_from_slice(value);
        let crc = crc32c(&dwr[base..base + 252]);
        dwr[base + 252..base + 256].copy_from_slice(&crc.to_be_bytes());
    }
}

#[test]
fn crc32c_matches_the_format_spec() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

// --- the cases --------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    InsideHeader0,
    AfterHeader0,
    HeadersOnly,
    InsideFirstPageSlot,
    WithoutLastTrailer,
    LastByte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostile {
    ZeroLength,
    Truncated(Cut),
    RandomSameLength,
    RandomShort,
    /// A byte flipped inside the image of every page slot.
    BadChecksumEverySlot,
    /// A byte flipped inside the slot the newest generation selects for
    /// page 1 only: the older generation stays complete, but is not page 1
    /// on disk.
    BadChecksumNewestPage1,
    /// The `-dwr` of a 512-byte-page database next to a 4096 one.
    PageSizeMismatch,
    /// Valid header checksums; the page list ends past the end of the file.
    PageCountPastEnd,
    DataOffsetPastEnd,
    PageCountHuge,
    /// The `-dwr` of another database with the same schema.
    OtherDatabase,
    Directory,
    /// A symlink to this database's own (valid) `-dwr`, moved elsewhere.
    Symlink,
    Unreadable,
    Unwritable,
}

const CONTENT_CASES: [Hostile; 16] = [
    Hostile::ZeroLength,
    Hostile::Truncated(Cut::InsideHeader0),
    Hostile::Truncated(Cut::AfterHeader0),
    Hostile::Truncated(Cut::HeadersOnly),
    Hostile::Truncated(Cut::InsideFirstPageSlot),
    Hostile::Truncated(Cut::WithoutLastTrailer),
    Hostile::Truncated(Cut::LastByte),
    Hostile::RandomSameLength,
    Hostile::RandomShort,
    Hostile::BadChecksumEverySlot,
    Hostile::BadChecksumNewestPage1,
    Hostile::PageSizeMismatch,
    Hostile::PageCountPastEnd,
    Hostile::DataOffsetPastEnd,
    Hostile::PageCountHuge,
    Hostile::OtherDatabase,
];

impl Hostile {
    /// The hostility is in the file's bytes (not in what the path is).
    fn is_content(self) -> bool {
        !matches!(
            self,
            Hostile::Directory | Hostile::Symlink | Hostile::Unreadable | Hostile::Unwritable
        )
    }

    /// Status prefix after a reader met the destroyed page 1.
    fn status_when_damaged(self) -> &'static str {
        match self {
            Hostile::PageSizeMismatch | Hostile::OtherDatabase => "enabled (stale: ",
            h if h.is_content() => "enabled",
            _ => "disabled (",
        }
    }

    /// Status prefix after the user's transactions on the healthy database.
    fn status_after_writes(self) -> &'static str {
        if self.is_content() {
            "enabled"
        } else {
            "disabled ("
        }
    }
}

/// A second protected database in `dir` with the same tables as the one
/// under test, at `page_size`; returns its `-dwr` bytes.
fn foreign_dwr(dir: &TestDir, page_size: u32) -> Vec<u8> {
    let other = dir.join(&format!("other-{page_size}.db"));
    make_protected_ps(&other, "delete", page_size, 3);
    std::fs::read(sidecar(&other, "-dwr")).unwrap()
}

/// True when this process can read a file after `chmod 000` (root).
fn permissions_are_not_enforced(dir: &TestDir) -> bool {
    let probe = dir.join("probe");
    std::fs::write(&probe, b"x").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable = std::fs::read(&probe).is_ok();
    let _ = std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o600));
    readable
}

/// Makes `db`'s `-dwr` hostile. Returns what must still be there unchanged
/// afterwards when the `-dwr` path is not a regular file of ours: the
/// symlink's target and its bytes.
fn make_hostile(h: Hostile, dir: &TestDir, db: &Path) -> Option<(PathBuf, Vec<u8>)> {
    let dwr = sidecar(db, "-dwr");
    let bytes = std::fs::read(&dwr).unwrap();
    let mut rng = Rng::new(6000);
    let head = newest(&bytes);
    let ps = head.page_size as usize;
    let mut out = bytes.clone();
    match h {
        Hostile::ZeroLength => out.clear(),
        Hostile::Truncated(cut) => {
            let keep = match cut {
                Cut::InsideHeader0 => 100,
                Cut::AfterHeader0 => 512,
                Cut::HeadersOnly => 1024,
                Cut::InsideFirstPageSlot => head.data_offset as usize + ps / 2,
                Cut::WithoutLastTrailer => bytes.len() - 32,
                Cut::LastByte => bytes.len() - 1,
            };
            out.truncate(keep);
        }
        Hostile::RandomSameLength => rng.fill(&mut out),
        Hostile::RandomShort => {
            out = vec![0; 700];
            rng.fill(&mut out);
        }
        Hostile::BadChecksumEverySlot => {
            for index in 0..head.count {
                for w in 0..2 {
                    out[slot_offset(&head, index, w) + ps / 2] ^= 0x5a;
                }
            }
        }
        Hostile::BadChecksumNewestPage1 => {
            let page1 = (0..head.count)
                .map(|i| selected_slot(&bytes, &head, i))
                .find(|&off| be32(&bytes, off + ps + 4) == 1)
                .expect("setup: page 1 is protected");
            out[page1 + ps / 2] ^= 0x5a;
            assert!(headers(&bytes).len() == 2, "setup: two generations");
        }
        Hostile::PageSizeMismatch => out = foreign_dwr(dir, 512),
        Hostile::PageCountPastEnd => patch_headers(&mut out, 28, &1000u32.to_be_bytes()),
        Hostile::DataOffsetPastEnd => patch_headers(&mut out, 32, &(1u64 << 40).to_be_bytes()),
        Hostile::PageCountHuge => patch_headers(&mut out, 28, &u32::MAX.to_be_bytes()),
        Hostile::OtherDatabase => out = foreign_dwr(dir, page_size_of(db)),
        Hostile::Directory => {
            std::fs::remove_file(&dwr).unwrap();
            std::fs::create_dir(&dwr).unwrap();
            std::fs::write(dwr.join("inside"), b"keep me").unwrap();
            return None;
        }
        Hostile::Symlink => {
            let elsewhere = dir.join("elsewhere");
            std::fs::create_dir(&elsewhere).unwrap();
            let target = elsewhere.join("real-dwr");
            std::fs::rename(&dwr, &target).unwrap();
            std::os::unix::fs::symlink(&target, &dwr).unwrap();
            return Some((target, bytes));
        }
        Hostile::Unreadable | Hostile::Unwritable => {
            let mode = if h == Hostile::Unreadable {
                0o000
            } else {
                0o444
            };
            std::fs::set_permissions(&dwr, std::fs::Permissions::from_mode(mode)).unwrap();
            return None;
        }
    }
    assert!(out != bytes, "setup: {h:?} changed nothing");
    std::fs::write(&dwr, &out).unwrap();
    None
}

/// The user's transactions on a healthy database: all must succeed.
fn user_transactions(conn: &rusqlite::Connection, what: &str) {
    conn.execute_batch(
        "CREATE TABLE u(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO u(v) VALUES ('one'), ('two');
         BEGIN; INSERT INTO t0(name) VALUES ('hostile'); CREATE INDEX u_v ON u(v); COMMIT;",
    )
    .unwrap_or_else(|e| panic!("{what}: a user transaction failed: {e}"));
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM u WHERE v IN ('one', 'two')",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{what}: reading back: {e}"));
    assert_eq!(n, 2, "{what}: rows read back");
}

fn run_case(h: Hostile) {
    let what = format!("{h:?}");
    let dir = TestDir::new(&format!("hostile-{what}"));
    if matches!(h, Hostile::Unreadable | Hostile::Unwritable) && permissions_are_not_enforced(&dir)
    {
        eprintln!(
            "note: {what} skipped: running as root, where file permissions do not block access"
        );
        return;
    }
    let db = dir.join("h.db");
    // Several commits, so the -dwr holds two generations.
    make_protected(&db, "delete", 2);
    add_tables(&open(&db), "more", 1);
    let kept = make_hostile(h, &dir, &db);
    let dwr = sidecar(&db, "-dwr");
    let dwr_kind = std::fs::symlink_metadata(&dwr).unwrap().file_type();
    let dwr_mode = std::fs::symlink_metadata(&dwr)
        .unwrap()
        .permissions()
        .mode();

    // 1. Destroyed page 1: the usual error, nothing on disk changes.
    let good_page1 = read_page(&db, 1, page_size_of(&db));
    damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(6100));
    let state = DiskState::take(&db);
    let conn = open(&db);
    assert_usual_error(&view(&conn), &format!("{what}: damaged database"));
    assert_status_prefix(
        &conn,
        h.status_when_damaged(),
        &format!("{what}: damaged database"),
    );
    drop(conn);
    state.assert_db_unchanged(&format!("{what}: damaged database"));
    write_at(&db, 0, &good_page1);

    // 2. Healthy again: the user's transactions succeed.
    let conn = open(&db);
    user_transactions(&conn, &what);
    assert_status_prefix(
        &conn,
        h.status_after_writes(),
        &format!("{what}: after writes"),
    );
    let expected = content(&conn).unwrap();
    drop(conn);
    assert_plain_reads(&db, &expected, &format!("{what}: after writes"));
    let meta = std::fs::symlink_metadata(&dwr).unwrap();
    assert_eq!(
        meta.file_type(),
        dwr_kind,
        "{what}: the -dwr path changed kind"
    );
    assert_eq!(
        meta.permissions().mode(),
        dwr_mode,
        "{what}: the -dwr mode changed"
    );
    if let Some((target, bytes)) = kept {
        assert!(
            std::fs::read(&target).unwrap() == bytes,
            "{what}: the symlink was followed: its target was written"
        );
    }
    if h == Hostile::Directory {
        assert_eq!(std::fs::read(dwr.join("inside")).unwrap(), b"keep me");
    }

    // 3. A copy rewritten by those writes heals the next damage.
    if h.is_content() {
        let original = std::fs::read(&db).unwrap();
        let damaged = damage_pages(&db, &[1], Damage::Zero, &mut Rng::new(6200));
        let conn = open_and_expect_healed(&db, &expected, &format!("{what}: after the rewrite"));
        assert_repaired(&db, &conn, &original, &damaged, &expected, &what);
    }
    if matches!(h, Hostile::Unreadable | Hostile::Unwritable) {
        // Let the test directory be removed.
        let _ = std::fs::set_permissions(&dwr, std::fs::Permissions::from_mode(0o644));
    }
}

/// Runs `cases`, each bounded in time, and reports every failure at once.
fn run_all(cases: &[Hostile]) {
    let mut failures = Vec::new();
    for &h in cases {
        let outcome =
            std::panic::catch_unwind(|| within(120, &format!("{h:?}"), move || run_case(h)));
        if let Err(p) = outcome {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            failures.push(format!("{h:?}: {msg}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile -dwr cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn hostile_dwr_contents() {
    run_all(&CONTENT_CASES);
}

#[test]
fn a_directory_in_place_of_the_dwr() {
    run_all(&[Hostile::Directory]);
}

#[test]
fn a_symlink_in_place_of_the_dwr_is_not_followed() {
    run_all(&[Hostile::Symlink]);
}

#[test]
fn an_unreadable_dwr() {
    run_all(&[Hostile::Unreadable]);
}

#[test]
fn an_unwritable_dwr() {
    run_all(&[Hostile::Unwritable]);
}

// --- disk full while writing the -dwr ---------------------------------------------

/// A CREATE TABLE whose statement spills onto ~50 overflow pages: the
/// database grows by ~200 KB, its copy by twice that.
fn big_table_sql() -> String {
    format!(
        "CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT {});\n\
         INSERT INTO big(v) VALUES ('first'), ('second');\n",
        common::schema::comment(7, 200_000)
    )
}

/// After the failed `-dwr` write: the data is there for a plain reader, and
/// a destroyed page 1 is not "restored" from the incomplete copy.
fn after_disk_full(db: &Path, what: &str) {
    let plain = open_plain(db).unwrap();
    assert_integrity_ok(&plain, what);
    let n: i64 = plain
        .query_row("SELECT count(*) FROM big", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{what}: the big table is not there: {e}"));
    assert_eq!(n, 2, "{what}: rows of the big table");
    drop(plain);
    damage_pages(db, &[1], Damage::Zero, &mut Rng::new(6300));
    let state = DiskState::take(db);
    let conn = open(db);
    assert_usual_error(&view(&conn), &format!("{what}: damaged afterwards"));
    drop(conn);
    state.assert_db_unchanged(&format!("{what}: damaged afterwards"));
}

extern "C" {
    fn setrlimit(resource: std::ffi::c_int, rlim: *const [u64; 2]) -> std::ffi::c_int;
    fn signal(sig: std::ffi::c_int, handler: usize) -> usize;
}

/// The stock shell with the extension, in a child whose file-size limit
/// (RLIMIT_FSIZE) lets the database grow but not its copy; SIGXFSZ is
/// ignored, so writes past the limit fail with EFBIG.
#[test]
fn disk_full_while_writing_the_dwr_rlimit() {
    use std::os::unix::process::CommandExt;
    let dir = TestDir::new("disk-full-rlimit");
    let db = dir.join("full.db");
    make_protected(&db, "delete", 1);
    const LIMIT: u64 = 300 * 1024;
    let script = format!(
        ".load {}\n.open {}\n{}SELECT count(*) FROM big;\nPRAGMA meta_double_write;\n",
        so_path().display(),
        db.display(),
        big_table_sql()
    );
    let mut cmd = std::process::Command::new(sqlite3_bin());
    cmd.args(["-batch", "-bail", "-init", "/dev/null", ":memory:"])
        .env_remove("METADWR_ENABLE")
        .env_remove("METADWR_SYNC")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (signal, setrlimit), on values owned by the closure.
    unsafe {
        cmd.pre_exec(|| {
            const SIGXFSZ: std::ffi::c_int = 25;
            const SIG_IGN: usize = 1;
            const RLIMIT_FSIZE: std::ffi::c_int = 1;
            signal(SIGXFSZ, SIG_IGN);
            if setrlimit(RLIMIT_FSIZE, &[LIMIT, LIMIT]) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = within(120, "the shell under RLIMIT_FSIZE", move || {
        use std::io::Write;
        let mut child = cmd.spawn().expect("spawn the sqlite3 shell");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "the user's statements must succeed when the -dwr cannot grow ({}): {stderr:.500}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"2"),
        "rows read back in the shell: {stdout:.300}"
    );
    assert!(
        lines.get(1).is_some_and(|s| s.starts_with("disabled (")),
        "status after the failed -dwr write: {stdout:.300}"
    );
    assert!(
        std::fs::metadata(&db).unwrap().len() < LIMIT,
        "setup: the database fits under the limit"
    );
    after_disk_full(&db, "RLIMIT_FSIZE");
}

/// A mounted tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(&at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The same on a really full file system, when a tmpfs can be mounted.
#[test]
fn disk_full_while_writing_the_dwr_tmpfs() {
    let dir = TestDir::new("disk-full-tmpfs");
    let Some(fs) = Tmpfs::mount(dir.join("mnt"), "2m") else {
        eprintln!("note: disk_full_while_writing_the_dwr_tmpfs skipped: cannot mount a tmpfs here");
        return;
    };
    let db = fs.0.join("full.db");
    make_protected(&db, "delete", 1);
    // Fill the file system, then free 300 KB: room for the database to grow
    // by ~200 KB (plus its journal), not for the copy to grow by ~400 KB.
    let filler = fs.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xa5u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(300 * 1024)).unwrap();
    }
    let db2 = db.clone();
    within(120, "writing on a full tmpfs", move || {
        let conn = open(&db2);
        let (create, insert) = big_table_sql()
            .split_once('\n')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        conn.execute_batch(&create).unwrap_or_else(|e| {
            panic!("the user's CREATE TABLE must succeed when the -dwr cannot grow: {e}")
        });
        // The database had room for this row; only a failed -dwr update that
        // keeps the space it took could make it fail.
        conn.execute_batch(&insert).unwrap_or_else(|e| {
            panic!(
                "the user's next INSERT failed ({e}): the failed -dwr update must give back \
                 the space it took (the -dwr is {} bytes)",
                std::fs::metadata(sidecar(&db2, "-dwr")).map_or(0, |m| m.len())
            )
        });
        let n: i64 = conn
            .query_row("SELECT count(*) FROM big", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        assert_status_prefix(&conn, "disabled (", "after the failed -dwr write");
    });
    std::fs::remove_file(&filler).unwrap();
    after_disk_full(&db, "full tmpfs");
    drop(fs);
}
