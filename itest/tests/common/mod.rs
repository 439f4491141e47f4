//! Helpers shared by the integration tests: loading the extension, opening
//! connections with and without metadwr, dumping a database's logical
//! content, finding the protected pages with the stock `sqlite3` shell,
//! damaging pages on disk and reading the quarantine file.
//!
//! Every test binary includes this module with `mod common;`; not every
//! binary uses every helper.
#![allow(dead_code)]

pub mod churn;
pub mod heal;
pub mod schema;
pub mod sqlite_log;

// Shared with the bench, which cannot depend on this crate.
#[path = "../../../shared/extension_client.rs"]
mod extension_client;
pub use extension_client::{vfs_name as vfs_of, Stats};

use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The extension under test: `$METADWR_SO`, else `../libmetadwr.so`.
pub fn so_path() -> PathBuf {
    match std::env::var_os("METADWR_SO") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../libmetadwr.so"),
    }
}

/// Loads the extension into this process once. Afterwards `metadwr` is the
/// default VFS, so every connection opened without `vfs=` goes through it.
/// A no-op after [`load_extension_from`].
pub fn load_extension() {
    loaded(so_path);
}

/// Loads `so` as this process's extension instead of `$METADWR_SO`: for a
/// test binary that needs another build of it (`panic_guard.rs`). Must come
/// before anything loads the default one.
pub fn load_extension_from(so: &Path) {
    let got = loaded(|| so.to_owned());
    assert_eq!(got, so, "another build of the extension is already loaded");
}

/// The extension this process loaded, loading `which()` if none yet.
fn loaded(which: impl FnOnce() -> PathBuf) -> &'static Path {
    static LOADED: OnceLock<PathBuf> = OnceLock::new();
    LOADED.get_or_init(|| {
        let so = which();
        assert!(
            so.exists(),
            "{} does not exist: build it with `make build` or set METADWR_SO",
            so.display()
        );
        extension_client::load_extension(&so).unwrap_or_else(|e| panic!("{e}"));
        so
    })
}

/// A fresh directory under the system temp dir, removed when dropped unless
/// the test is panicking (then it is kept for inspection).
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "metadwr-itest-{}-{n}-{}",
            std::process::id(),
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create test dir");
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `<db><suffix>`, e.g. `-dwr`, `-dwr-quarantine`, `-wal`.
pub fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Opens `path` through metadwr (the default VFS once loaded).
pub fn open(path: &Path) -> Connection {
    load_extension();
    let conn = Connection::open(path)
        .unwrap_or_else(|e| panic!("open {} through metadwr: {e}", path.display()));
    assert_eq!(
        vfs_of(&conn).as_deref(),
        Some("metadwr/unix"),
        "connection not opened through metadwr"
    );
    conn
}

/// Opens `path` through metadwr with extra URI parameters (`a=b&c=d`).
pub fn open_uri(path: &Path, params: &str) -> Connection {
    load_extension();
    let uri = format!("file:{}?{params}", path.display());
    Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {} with ?{params}: {e}", path.display()))
}

/// Opens `path` through the stock `unix` VFS, bypassing metadwr: what a
/// program without the extension sees and does.
pub fn open_plain(path: &Path) -> rusqlite::Result<Connection> {
    load_extension();
    let conn = open_uri_raw(path, "vfs=unix")?;
    assert_eq!(vfs_of(&conn).as_deref(), Some("unix"));
    Ok(conn)
}

fn open_uri_raw(path: &Path, params: &str) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        format!("file:{}?{params}", path.display()),
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// Runs a statement answering one text value (a pragma, a function).
pub fn query_str(conn: &Connection, sql: &str) -> rusqlite::Result<String> {
    conn.query_row(sql, [], |r| r.get::<_, String>(0))
}

/// Like [`query_str`], but returns the error message as text.
pub fn query_msg(conn: &Connection, sql: &str) -> Result<String, String> {
    query_str(conn, sql).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(_, Some(m)) => m,
        other => other.to_string(),
    })
}

/// `PRAGMA meta_double_write` (status query).
pub fn dwr_status(conn: &Connection) -> String {
    query_str(conn, "PRAGMA meta_double_write").expect("PRAGMA meta_double_write")
}

/// `PRAGMA meta_double_write=enabled`, asserting the plain `enabled` answer.
pub fn enable(conn: &Connection) {
    assert_eq!(
        query_msg(conn, "PRAGMA meta_double_write=enabled"),
        Ok("enabled".to_string())
    );
}

/// `SELECT meta_recover()`.
pub fn meta_recover(conn: &Connection) -> Result<String, String> {
    query_msg(conn, "SELECT meta_recover()")
}

/// `PRAGMA meta_recover`: the form that works on a connection opened after
/// the damage. SQLite passes pragmas to the VFS before reading the schema,
/// while SQLite 3.46 and later read the schema before preparing any SELECT,
/// so `SELECT meta_recover()` cannot even be prepared there.
pub fn pragma_meta_recover(conn: &Connection) -> Result<String, String> {
    query_msg(conn, "PRAGMA meta_recover")
}

/// The counters of `PRAGMA meta_double_write_stats`.
pub fn stats(conn: &Connection) -> Stats {
    Stats::read(conn).unwrap_or_else(|e| panic!("{e}"))
}

/// A parsed `restored N page(s) (list) from generation G` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub pages: Vec<u32>,
    pub generation: u64,
}

/// Parses a restore report, checking its exact wording.
pub fn parse_restored(report: &str) -> Restored {
    fn bad(report: &str) -> ! {
        panic!("not a restore report: {report:?}")
    }
    let rest = report
        .strip_prefix("restored ")
        .unwrap_or_else(|| bad(report));
    let (n, rest) = rest.split_once(' ').unwrap_or_else(|| bad(report));
    let n: usize = n.parse().unwrap_or_else(|_| bad(report));
    let word = if n == 1 { "page (" } else { "pages (" };
    let rest = rest.strip_prefix(word).unwrap_or_else(|| bad(report));
    let (list, rest) = rest.split_once(')').unwrap_or_else(|| bad(report));
    let generation: u64 = rest
        .strip_prefix(" from generation ")
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| bad(report));
    let pages: Vec<u32> = list
        .split(',')
        .map(|p| p.parse().unwrap_or_else(|_| bad(report)))
        .collect();
    assert_eq!(pages.len(), n, "page count and list disagree in {report:?}");
    Restored { pages, generation }
}

/// When a read through metadwr already healed the damage and repaired the
/// file (at open, SQLite reads the header), `PRAGMA meta_double_write`
/// reports it as `enabled (recovered: healed … on read; file repaired:
/// restored N pages (…) from generation G)`. Returns that restore report.
/// Query it before `PRAGMA meta_double_write=enabled`, which resets it.
pub fn healed_report(conn: &Connection) -> Option<String> {
    let status = query_msg(conn, "PRAGMA meta_double_write").ok()?;
    let (_, report) = status.split_once("file repaired: ")?;
    Some(report.strip_suffix(')').unwrap_or(report).to_string())
}

/// The restore report of a recovery, whichever way it happened: the answer
/// of the explicit call when it restored, otherwise the repair that a
/// healing read did before it (`healed`, from [`healed_report`]).
pub fn restore_report(explicit: &str, healed: Option<String>) -> String {
    if let Some(r) = explicit.strip_prefix("recovered: ") {
        return r.to_string();
    }
    if explicit.starts_with("restored ") {
        return explicit.to_string();
    }
    healed.unwrap_or_else(|| panic!("nothing was restored: the call answered {explicit:?}"))
}

/// Parses `nothing to restore: the database matches generation G`.
pub fn parse_intact(report: &str) -> Option<u64> {
    report
        .strip_prefix("nothing to restore: the database matches generation ")
        .and_then(|g| g.parse().ok())
}

// --- logical content -------------------------------------------------------

/// One value rendered so that type and content both count.
fn render(v: rusqlite::types::ValueRef<'_>, out: &mut String) {
    use rusqlite::types::ValueRef::*;
    match v {
        Null => out.push_str("NULL"),
        Integer(i) => write!(out, "i{i}").unwrap(),
        Real(f) => write!(out, "r{:016x}", f.to_bits()).unwrap(),
        Text(t) => {
            write!(out, "t{}:", t.len()).unwrap();
            out.push_str(&String::from_utf8_lossy(t));
        }
        Blob(b) => {
            write!(out, "b{}:", b.len()).unwrap();
            for x in b {
                write!(out, "{x:02x}").unwrap();
            }
        }
    }
}

/// Every row of `sql`, rendered one per line.
pub fn dump_query(conn: &Connection, sql: &str) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare(sql)?;
    let n = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut out = String::new();
    while let Some(row) = rows.next()? {
        for i in 0..n {
            if i > 0 {
                out.push('|');
            }
            render(row.get_ref(i)?, &mut out);
        }
        out.push('\n');
    }
    Ok(out)
}

/// `SELECT * FROM sqlite_schema` in storage order, rendered.
pub fn schema_dump(conn: &Connection) -> rusqlite::Result<String> {
    dump_query(conn, "SELECT * FROM sqlite_schema")
}

/// The logical content of a database: its schema and every table's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub schema: String,
    /// table name → its rows, ordered by rowid (or primary key).
    pub tables: BTreeMap<String, String>,
}

impl Content {
    /// A short description of the first difference, for assertion messages.
    pub fn diff(&self, other: &Content) -> Option<String> {
        if self.schema != other.schema {
            let a: Vec<&str> = self.schema.lines().collect();
            let b: Vec<&str> = other.schema.lines().collect();
            let i = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            return Some(format!(
                "sqlite_schema differs ({} vs {} rows); first difference at row {i}:\n  {:.300}\n  {:.300}",
                a.len(),
                b.len(),
                a.get(i).unwrap_or(&"<none>"),
                b.get(i).unwrap_or(&"<none>")
            ));
        }
        let ka: Vec<&String> = self.tables.keys().collect();
        let kb: Vec<&String> = other.tables.keys().collect();
        if ka != kb {
            return Some(format!("table sets differ: {ka:?} vs {kb:?}"));
        }
        for (name, rows) in &self.tables {
            if other.tables[name] != *rows {
                return Some(format!(
                    "rows of table {name} differ:\n  {:.300}\n  {:.300}",
                    rows, other.tables[name]
                ));
            }
        }
        None
    }
}

/// Asserts two contents are equal, with a readable message.
#[track_caller]
pub fn assert_same_content(expected: &Content, actual: &Content, what: &str) {
    if let Some(d) = expected.diff(actual) {
        panic!("{what}: {d}");
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Reads the schema and every table.
pub fn content(conn: &Connection) -> rusqlite::Result<Content> {
    let schema = schema_dump(conn)?;
    let mut names = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT name, sql LIKE '%WITHOUT ROWID%' FROM sqlite_schema \
             WHERE type='table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            names.push((r.get::<_, String>(0)?, r.get::<_, bool>(1)?));
        }
    }
    let mut tables = BTreeMap::new();
    for (name, without_rowid) in names {
        let order = if without_rowid { "1" } else { "rowid" };
        let rows = dump_query(
            conn,
            &format!("SELECT * FROM {} ORDER BY {order}", quote_ident(&name)),
        )?;
        tables.insert(name, rows);
    }
    Ok(Content { schema, tables })
}

/// `PRAGMA integrity_check` answer, all rows joined.
pub fn integrity(conn: &Connection) -> String {
    match dump_query(conn, "PRAGMA integrity_check") {
        Ok(s) => s
            .lines()
            .map(|l| l.split_once(':').map_or(l, |(_, t)| t))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("error: {e}"),
    }
}

#[track_caller]
pub fn assert_integrity_ok(conn: &Connection, what: &str) {
    assert_eq!(integrity(conn), "ok", "{what}: integrity_check");
}

// --- pages on disk ----------------------------------------------------------

/// Page size from the header of the file at `path`.
pub fn page_size_of(path: &Path) -> u32 {
    let bytes = std::fs::read(path).expect("read db");
    let raw = u16::from_be_bytes([bytes[16], bytes[17]]) as u32;
    if raw == 1 {
        65536
    } else {
        raw
    }
}

pub fn read_page(path: &Path, pgno: u32, ps: u32) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).expect("open db for reading");
    let mut buf = vec![0u8; ps as usize];
    f.read_exact_at(&mut buf, (pgno as u64 - 1) * ps as u64)
        .unwrap_or_else(|e| panic!("read page {pgno}: {e}"));
    buf
}

pub fn write_page(path: &Path, pgno: u32, ps: u32, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    assert_eq!(data.len(), ps as usize);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open db for writing");
    f.write_all_at(data, (pgno as u64 - 1) * ps as u64)
        .unwrap_or_else(|e| panic!("write page {pgno}: {e}"));
    f.sync_all().expect("sync damaged db");
}

/// Bytes of page 1 whose value a restore is allowed to change: the file
/// change counter (24..28) and version-valid-for (92..96).
pub fn mask_counters(file: &[u8]) -> Vec<u8> {
    let mut v = file.to_vec();
    v[24..28].fill(0);
    v[92..96].fill(0);
    v
}

/// Asserts the database file equals `expected` except for the change
/// counter bytes of page 1, naming the first differing page.
#[track_caller]
pub fn assert_file_matches(path: &Path, expected: &[u8], what: &str) {
    let actual = std::fs::read(path).expect("read db");
    assert_eq!(actual.len(), expected.len(), "{what}: file size changed");
    let (a, e) = (mask_counters(&actual), mask_counters(expected));
    if a != e {
        let ps = page_size_of(path) as usize;
        let first = a.iter().zip(&e).position(|(x, y)| x != y).unwrap();
        panic!(
            "{what}: file differs from the expected bytes, first at offset {first} (page {})",
            first / ps + 1
        );
    }
}

/// The kind of a page of the sqlite_schema tree, as dbstat names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageKind {
    Internal,
    Leaf,
    Overflow,
}

/// The pages of the sqlite_schema B-tree, found with the stock `sqlite3`
/// shell's dbstat table, independently of the extension. Page 1 is always
/// among them.
pub fn schema_pages_cli(path: &Path) -> Vec<(u32, PageKind)> {
    let out = sqlite3_cli(
        path,
        "SELECT pageno, pagetype FROM dbstat WHERE name='sqlite_schema' ORDER BY pageno;",
    );
    let pages: Vec<(u32, PageKind)> = out
        .lines()
        .map(|l| {
            let (p, t) = l.split_once('|').expect("pageno|pagetype");
            let kind = match t {
                "internal" => PageKind::Internal,
                "leaf" => PageKind::Leaf,
                "overflow" => PageKind::Overflow,
                other => panic!("unexpected dbstat page type {other}"),
            };
            (p.parse().expect("page number"), kind)
        })
        .collect();
    assert_eq!(pages.first().map(|p| p.0), Some(1), "dbstat lists page 1");
    pages
}

/// The stock shell. `$SQLITE3` overrides it.
pub fn sqlite3_bin() -> String {
    std::env::var("SQLITE3").unwrap_or_else(|_| "sqlite3".into())
}

/// Runs one SQL text with the stock shell on `path` (no extension), and
/// returns its standard output; fails the test on any error.
pub fn sqlite3_cli(path: &Path, sql: &str) -> String {
    let out = Command::new(sqlite3_bin())
        .args(["-batch", "-bail", "-init", "/dev/null"])
        .arg(path)
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .expect("run the sqlite3 shell");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "sqlite3 {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a script with the stock shell after `.load`ing the extension:
/// `.load <so>` then `.open <db>` then `script`. Returns stdout; fails the
/// test when the shell reports an error.
pub fn sqlite3_cli_with_extension(db: &Path, script: &str, env: &[(&str, &str)]) -> String {
    use std::io::Write;
    let mut child = Command::new(sqlite3_bin())
        .args(["-batch", "-bail", "-init", "/dev/null"])
        .env_remove("METADWR_ENABLE")
        .env_remove("METADWR_SYNC")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the sqlite3 shell");
    let full = format!(
        ".load {}\n.open {}\n{script}\n.quit\n",
        so_path().display(),
        db.display()
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(full.as_bytes())
        .expect("feed the shell");
    let out = child.wait_with_output().expect("wait for the shell");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "sqlite3 shell script failed ({}): {}\nscript:\n{full}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

// --- damage -----------------------------------------------------------------

/// A small deterministic RNG (SplitMix64): every case is reproducible from
/// its seed, with no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// How a page is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The whole page becomes zeros.
    Zero,
    /// The whole page becomes random bytes.
    Random,
    /// The first 32 bytes become random bytes.
    First32,
    /// The first 100 bytes become random bytes (all of page 1's header).
    First100,
    /// 1 to 8 random bits are flipped. On page 1 the first flip lands in the
    /// 16-byte magic string, so that plain SQLite must notice.
    BitFlip,
}

impl Damage {
    pub const ALL: [Damage; 5] = [
        Damage::Zero,
        Damage::Random,
        Damage::First32,
        Damage::First100,
        Damage::BitFlip,
    ];

    /// Returns the damaged image of `page` (page number `pgno`); it always
    /// differs from the original.
    pub fn apply(self, pgno: u32, page: &[u8], rng: &mut Rng) -> Vec<u8> {
        let mut out = page.to_vec();
        loop {
            match self {
                Damage::Zero => out.fill(0),
                Damage::Random => rng.fill(&mut out),
                Damage::First32 => rng.fill(&mut out[..32]),
                Damage::First100 => rng.fill(&mut out[..100]),
                Damage::BitFlip => {
                    let flips = 1 + rng.below(8);
                    let mut done = std::collections::HashSet::new();
                    for i in 0..flips {
                        let bit = if i == 0 && pgno == 1 {
                            rng.below(16 * 8)
                        } else {
                            rng.below(out.len() as u64 * 8)
                        };
                        if done.insert(bit) {
                            out[(bit / 8) as usize] ^= 1 << (bit % 8);
                        }
                    }
                }
            }
            if out != page {
                return out;
            }
            // Zeroing a zero page cannot happen for a schema page; random
            // bytes equal to the original are astronomically unlikely, but
            // the contract of this function is "differs".
            assert!(self != Damage::Zero, "page {pgno} is already all zeros");
        }
    }
}

// --- quarantine ---------------------------------------------------------------

/// One record of `<db>-dwr-quarantine`.
#[derive(Debug, Clone)]
pub struct QuarantineRecord {
    pub pgno: u32,
    pub page_size: u32,
    pub image: Vec<u8>,
}

/// Parses the quarantine file: "DWRQ", u32 page, u32 page size, u64 time,
/// then the image; big-endian.
pub fn read_quarantine(db: &Path) -> Vec<QuarantineRecord> {
    let path = sidecar(db, "-dwr-quarantine");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        assert!(bytes.len() >= at + 20, "truncated quarantine record");
        assert_eq!(&bytes[at..at + 4], b"DWRQ", "quarantine record magic");
        let pgno = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let page_size = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        let start = at + 20;
        let end = start + page_size as usize;
        assert!(end <= bytes.len(), "truncated quarantine image");
        out.push(QuarantineRecord {
            pgno,
            page_size,
            image: bytes[start..end].to_vec(),
        });
        at = end;
    }
    out
}

/// Asserts that the quarantine file holds, for every damaged page, a
/// record with exactly the damaged bytes.
#[track_caller]
pub fn assert_quarantined(db: &Path, damaged: &BTreeMap<u32, Vec<u8>>, what: &str) {
    let records = read_quarantine(db);
    for (pgno, image) in damaged {
        assert!(
            records.iter().any(|r| r.pgno == *pgno
                && r.page_size as usize == image.len()
                && r.image == *image),
            "{what}: the quarantine file has no record of damaged page {pgno}"
        );
    }
}

/// Damages `pages` of the closed database at `path` with `kind`; returns
/// the damaged images written.
pub fn damage_pages(
    path: &Path,
    pages: &[u32],
    kind: Damage,
    rng: &mut Rng,
) -> BTreeMap<u32, Vec<u8>> {
    let ps = page_size_of(path);
    let mut written = BTreeMap::new();
    for &pgno in pages {
        let original = read_page(path, pgno, ps);
        let bad = kind.apply(pgno, &original, rng);
        write_page(path, pgno, ps, &bad);
        written.insert(pgno, bad);
    }
    written
}

/// The primary result code of a rusqlite error, if it carries one.
pub fn primary_code(e: &rusqlite::Error) -> Option<i32> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.extended_code & 0xff),
        _ => None,
    }
}

/// What a program without the extension sees: the schema dump, or the
/// error reading it.
pub fn plain_schema(path: &Path) -> rusqlite::Result<String> {
    let conn = open_plain(path)?;
    schema_dump(&conn)
}

/// Asserts no `-wal` holds frames that the main file lacks.
#[track_caller]
pub fn assert_no_wal_frames(db: &Path) {
    let wal = sidecar(db, "-wal");
    if let Ok(m) = std::fs::metadata(&wal) {
        assert_eq!(m.len(), 0, "{} still holds frames", wal.display());
    }
}

// --- small databases ------------------------------------------------------------

/// Creates tables `<prefix>0..<prefix>{n-1}` with an index each and three
/// deterministic rows, in one transaction.
pub fn add_tables(conn: &Connection, prefix: &str, n: usize) {
    let mut sql = String::from("BEGIN;\n");
    for i in 0..n {
        let t = format!("{prefix}{i}");
        writeln!(
            sql,
            "CREATE TABLE {t}(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, tag BLOB);\n\
             CREATE INDEX {t}_name ON {t}(name);\n\
             INSERT INTO {t}(name, score, tag) VALUES ('{t}-a', {i}.5, x'01'), ('{t}-b', -{i}.25, NULL), ('{t}-c', 1e{i}, x'ff00');"
        )
        .unwrap();
    }
    sql.push_str("COMMIT;\n");
    conn.execute_batch(&sql).expect("add tables");
}

/// Creates a protected database at `path` in journal mode `journal` with
/// `n` small tables; closes it (checkpointing a WAL) and returns its
/// content.
pub fn make_protected(path: &Path, journal: &str, n: usize) -> Content {
    let conn = open(path);
    let mode = query_str(&conn, &format!("PRAGMA journal_mode={journal}")).unwrap();
    assert_eq!(mode, journal);
    enable(&conn);
    add_tables(&conn, "t", n);
    let c = content(&conn).unwrap();
    close_checkpointed(conn);
    c
}

/// Checkpoints (when in WAL mode) and closes a connection; fails the test
/// if the close fails.
pub fn close_checkpointed(conn: Connection) {
    let mode = query_str(&conn, "PRAGMA journal_mode").unwrap();
    if mode == "wal" {
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    conn.close().map_err(|(_, e)| e).expect("close");
}

/// A metadwr connection that has read the schema: it stays usable for
/// `SELECT meta_recover()` after the file is damaged underneath it.
pub fn open_long_lived(path: &Path) -> Connection {
    let conn = open(path);
    schema_dump(&conn).expect("read the schema before the damage");
    conn
}

/// How a test asks metadwr for the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `SELECT meta_recover()` on a metadwr connection opened (and
    /// schema-loaded) before the damage.
    LongLivedMetaRecover,
    /// `PRAGMA meta_double_write=enabled` on a connection opened after the
    /// damage; it must answer `recovered: …`.
    Pragma,
}

/// Damages page 1 and every other `sqlite_schema` page of `db` (no
/// connection may hold a lock on it; idle rollback-mode connections are
/// fine), restores it via `via`, and checks that the result is exactly
/// `expected`: integrity, schema and rows seen from the recovering and a
/// new connection, the file byte-identical to before the damage (change
/// counter aside), and the damaged bytes in the quarantine file.
/// Returns the number of pages damaged and restored.
#[track_caller]
pub fn damage_and_recover(
    db: &Path,
    expected: &Content,
    via: Via,
    kind: Damage,
    seed: u64,
) -> usize {
    let mut rng = Rng::new(seed);
    let pages: Vec<u32> = schema_pages_cli(db).into_iter().map(|p| p.0).collect();
    let original = std::fs::read(db).unwrap();
    let pre = (via == Via::LongLivedMetaRecover).then(|| open_long_lived(db));
    let damaged = damage_pages(db, &pages, kind, &mut rng);
    let (conn, report) = match via {
        Via::LongLivedMetaRecover => {
            let conn = pre.unwrap();
            let r = meta_recover(&conn).unwrap_or_else(|e| panic!("meta_recover: {e}"));
            let healed = healed_report(&conn);
            (conn, restore_report(&r, healed))
        }
        Via::Pragma => {
            let conn = open(db);
            let healed = healed_report(&conn);
            let answer = query_msg(&conn, "PRAGMA meta_double_write=enabled")
                .unwrap_or_else(|e| panic!("PRAGMA meta_double_write=enabled: {e}"));
            (conn, restore_report(&answer, healed))
        }
    };
    let restored = parse_restored(&report);
    let mut got = restored.pages.clone();
    got.sort_unstable();
    let want: Vec<u32> = damaged.keys().copied().collect();
    assert_eq!(got, want, "restored pages ({report})");
    assert_file_matches(db, &original, "restored file");
    assert_integrity_ok(&conn, "recovering connection");
    assert_same_content(expected, &content(&conn).unwrap(), "recovering connection");
    drop(conn);
    let fresh = open(db);
    assert_integrity_ok(&fresh, "new connection");
    assert_same_content(expected, &content(&fresh).unwrap(), "new connection");
    drop(fresh);
    assert_quarantined(db, &damaged, "quarantine");
    damaged.len()
}

/// Runs `script` in the stock shell with the extension loaded, waits until
/// the shell has printed `ready` (the script must end with
/// `SELECT 'ready';`), then kills it with SIGKILL: a crash after the
/// script's last commit, with no close.
pub fn sqlite3_shell_killed(db: &Path, script: &str) {
    use std::io::{BufRead, BufReader, Write};
    let mut child = Command::new(sqlite3_bin())
        .args(["-batch", "-bail", "-init", "/dev/null"])
        .env_remove("METADWR_ENABLE")
        .env_remove("METADWR_SYNC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the sqlite3 shell");
    let mut stdin = child.stdin.take().unwrap();
    write!(
        stdin,
        ".load {}\n.open {}\n{script}\n",
        so_path().display(),
        db.display()
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "the shell ended before 'ready'; output: {seen}");
        if line.trim_end() == "ready" {
            break;
        }
        seen.push_str(&line);
    }
    child.kill().expect("kill the shell");
    child.wait().unwrap();
    drop(stdin);
}

// --- bytes of the -dwr format, for tests that read or forge it --------------

/// CRC-32C (Castagnoli, reflected), as docs/dwr-format.md section 2,
/// written out bit by bit so that the tests check the extension's
/// table-driven one against the specification.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The big-endian u32 at `at`.
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
