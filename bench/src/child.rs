//! The measurements themselves. Each runs in a child process of its own
//! (`metadwr-bench __sample …` and friends), so that the plain runs never
//! have the extension loaded, every run starts from a fresh copy of a
//! template database, and peak RSS belongs to one mode only. A child prints
//! one line `RESULT key=value …` on stdout.

use crate::extension_client::{load_extension, Stats};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub type Res<T> = Result<T, String>;

fn e<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

/// Command-line options of a child: `--key value` pairs.
pub struct Opts(BTreeMap<String, String>);

impl Opts {
    pub fn parse(args: &[String]) -> Res<Opts> {
        let mut m = BTreeMap::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {k}"))?;
            let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            m.insert(key.to_string(), v.clone());
        }
        Ok(Opts(m))
    }
    pub fn get(&self, k: &str) -> Res<&str> {
        self.0
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| format!("missing --{k}"))
    }
    pub fn opt(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    pub fn num(&self, k: &str) -> Res<u64> {
        self.get(k)?
            .parse()
            .map_err(|_| format!("--{k} must be a number"))
    }
    pub fn path(&self, k: &str) -> Res<PathBuf> {
        Ok(PathBuf::from(self.get(k)?))
    }
}

/// Output of a child: `RESULT k=v k=v`.
#[derive(Default)]
pub struct Out(Vec<(String, String)>);

impl Out {
    pub fn put(&mut self, k: &str, v: impl std::fmt::Display) {
        let v = v.to_string().replace([' ', '\n'], "_");
        self.0.push((k.to_string(), v));
    }
    pub fn print(&self) {
        let body: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("RESULT {}", body.join(" "));
    }
}

fn status(conn: &Connection) -> Res<String> {
    conn.query_row("PRAGMA meta_double_write", [], |r| r.get(0))
        .map_err(e("meta_double_write"))
}

/// Copies `template` (and nothing else) to `dir/db.db`.
fn fresh_copy(template: &Path, dir: &Path) -> Res<PathBuf> {
    std::fs::create_dir_all(dir).map_err(e("mkdir"))?;
    let db = dir.join("db.db");
    for suffix in ["", "-dwr", "-wal", "-shm", "-journal", "-dwr-quarantine"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(template, &db).map_err(e("copy template"))?;
    // Written back now, not by the flusher in the middle of the timed loop
    // (where it would slow down whichever side it happened to coincide with).
    std::fs::File::open(&db)
        .and_then(|f| f.sync_all())
        .map_err(e("sync the copy"))?;
    Ok(db)
}

fn is_metadwr(mode: &str) -> Res<bool> {
    match mode {
        "plain" => Ok(false),
        "metadwr" => Ok(true),
        m => Err(format!("unknown mode {m}")),
    }
}

/// Opens `db` for a sample: through the plain `unix` VFS (the extension is
/// not even loaded), or through metadwr with protection enabled.
fn open_for(mode: &str, so: &Path, db: &Path, policy: Option<&str>) -> Res<Connection> {
    if is_metadwr(mode)? {
        load_extension(so)?;
        let conn = Connection::open(db).map_err(e("open"))?;
        let s: String = conn
            .query_row("PRAGMA meta_double_write=enabled", [], |r| r.get(0))
            .map_err(e("meta_double_write=enabled"))?;
        if s != "enabled" {
            return Err(format!("meta_double_write=enabled answered {s}"));
        }
        if let Some(p) = policy {
            let s: String = conn
                .query_row(&format!("PRAGMA meta_double_write_sync={p}"), [], |r| {
                    r.get(0)
                })
                .map_err(e("meta_double_write_sync"))?;
            if s != p {
                return Err(format!("meta_double_write_sync={p} answered {s}"));
            }
        }
        Ok(conn)
    } else {
        let conn = Connection::open(db).map_err(e("open"))?;
        let vfs = vfs_name(&conn);
        if vfs != "unix" {
            return Err(format!("plain run goes through VFS {vfs}"));
        }
        Ok(conn)
    }
}

fn configure(conn: &Connection, o: &Opts) -> Res<()> {
    if let Some(j) = o.opt("journal") {
        let got: String = conn
            .query_row(&format!("PRAGMA journal_mode={j}"), [], |r| r.get(0))
            .map_err(e("journal_mode"))?;
        if !got.eq_ignore_ascii_case(j) {
            return Err(format!("journal_mode={j} answered {got}"));
        }
    }
    if let Some(s) = o.opt("sync") {
        conn.execute_batch(&format!("PRAGMA synchronous={s}"))
            .map_err(e("synchronous"))?;
    }
    if let Some(n) = o.opt("autockpt") {
        let _: i64 = conn
            .query_row(&format!("PRAGMA wal_autocheckpoint={n}"), [], |r| r.get(0))
            .map_err(e("wal_autocheckpoint"))?;
    }
    if let Some(m) = o.opt("mmap") {
        let _: i64 = conn
            .query_row(&format!("PRAGMA mmap_size={m}"), [], |r| r.get(0))
            .map_err(e("mmap_size"))?;
    }
    Ok(())
}

/// User + system CPU time of `who` (RUSAGE_SELF or RUSAGE_CHILDREN), seconds.
pub fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: rusage is a plain C struct of integers, for which all-zero is
    // a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given, which is ours.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A deterministic xorshift generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The VFS stack of `conn`'s main database: `unix`, or `metadwr/unix`
/// through metadwr; `?` when no VFS answers.
pub fn vfs_name(conn: &Connection) -> String {
    crate::extension_client::vfs_name(conn).unwrap_or_else(|| "?".into())
}

/// State of one side of a paired run.
struct Side {
    conn: Connection,
    rng: Rng,
    next_table: u64,
    /// `rw`: a second connection to the same database, which reads after
    /// every commit of the first.
    reader: Option<Connection>,
}

/// Runs `count` operations of `kind` on one side.
fn run_ops(side: &mut Side, kind: &str, count: u64, rows: u64) -> Res<()> {
    let conn = &side.conn;
    match kind {
        "commit" => {
            let mut st = conn
                .prepare_cached("INSERT INTO kv(v) VALUES (randomblob(100))")
                .map_err(e("prepare"))?;
            for _ in 0..count {
                st.execute([]).map_err(e("insert"))?;
            }
        }
        "schema" => {
            for _ in 0..count {
                let i = side.next_table;
                side.next_table += 1;
                conn.execute_batch(&format!(
                    "CREATE TABLE bench_x{i}(a INTEGER PRIMARY KEY, b TEXT NOT NULL, c REAL)"
                ))
                .map_err(e("create"))?;
                conn.execute_batch(&format!(
                    "ALTER TABLE bench_x{i} ADD COLUMN d TEXT DEFAULT 'x'"
                ))
                .map_err(e("alter"))?;
                conn.execute_batch(&format!("DROP TABLE bench_x{i}"))
                    .map_err(e("drop"))?;
            }
        }
        "point" => {
            let mut st = conn
                .prepare_cached("SELECT length(v) FROM r WHERE id=?1")
                .map_err(e("prepare"))?;
            let mut total = 0i64;
            for _ in 0..count {
                let id = (side.rng.next() % rows) as i64 + 1;
                let len: i64 = st
                    .query_row([id], |r| r.get(0))
                    .map_err(e("point select"))?;
                total += len;
            }
            std::hint::black_box(total);
        }
        "rw" => {
            let reader = side.reader.as_ref().ok_or("rw needs a reader")?;
            let mut w = conn
                .prepare_cached("INSERT INTO kv(v) VALUES (randomblob(100))")
                .map_err(e("prepare"))?;
            let mut r = reader
                .prepare_cached("SELECT count(*) FROM kv WHERE id > ?1")
                .map_err(e("prepare"))?;
            for _ in 0..count {
                let id = w.insert([]).map_err(e("insert"))?;
                let c: i64 = r.query_row([id - 1], |row| row.get(0)).map_err(e("read"))?;
                std::hint::black_box(c);
            }
        }
        "scan" => {
            let mut st = conn
                .prepare_cached("SELECT count(*), sum(length(v)) FROM r")
                .map_err(e("prepare"))?;
            for _ in 0..count {
                let (c, s): (i64, i64) = st
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(e("scan"))?;
                std::hint::black_box((c, s));
            }
        }
        k => return Err(format!("unknown kind {k}")),
    }
    Ok(())
}

fn join(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.9}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A paired run: both modes in one process, on two copies of the template,
/// alternating blocks of `--block` operations (A B, then B A, …) so that a
/// burst of load on the machine hits both sides alike. A is a connection
/// opened with the `unix` VFS by name (metadwr is bypassed entirely; its
/// code is never called for that file); B goes through metadwr with
/// protection enabled. `--n` operations per side, after one warm-up block
/// each. Prints the per-operation wall and CPU time of every block.
pub fn pair(o: &Opts) -> Res<Out> {
    let so = o.path("so")?;
    let dir = o.path("dir")?;
    let kind = o.get("kind")?;
    let n = o.num("n")?;
    let block = o.num("block")?.max(1);
    let rows = o.opt("rows").map_or(Ok(1), |_| o.num("rows"))?;
    let template = o.path("template")?;
    load_extension(&so)?;
    // `--swap 1` (odd rounds): the two sides trade directories, so that
    // neither mode always gets the same file placement.
    let (da, db) = if o.opt("swap") == Some("1") {
        ("b", "a")
    } else {
        ("a", "b")
    };
    let db_a = fresh_copy(&template, &dir.join(da))?;
    let db_b = fresh_copy(&template, &dir.join(db))?;
    let conn_a = Connection::open_with_flags_and_vfs(&db_a, OpenFlags::default(), "unix")
        .map_err(e("open A"))?;
    // `--control 1`: B is plain too (an A/A run, to see the harness's own
    // noise and bias).
    let control = o.opt("control") == Some("1");
    let conn_b = if control {
        Connection::open_with_flags_and_vfs(&db_b, OpenFlags::default(), "unix")
    } else {
        Connection::open(&db_b)
    }
    .map_err(e("open B"))?;
    let s: String = if control {
        "enabled".into()
    } else {
        conn_b
            .query_row("PRAGMA meta_double_write=enabled", [], |r| r.get(0))
            .map_err(e("meta_double_write=enabled"))?
    };
    if s != "enabled" {
        return Err(format!("meta_double_write=enabled answered {s}"));
    }
    if control {
        // nothing to configure on B's protection
    } else if let Some(p) = o.opt("policy") {
        conn_b
            .execute_batch(&format!("PRAGMA meta_double_write_sync={p}"))
            .map_err(e("policy"))?;
    }
    configure(&conn_a, o)?;
    configure(&conn_b, o)?;
    let (va, vb) = (vfs_name(&conn_a), vfs_name(&conn_b));
    if va != "unix" || (!control && !vb.starts_with("metadwr")) || (control && vb != "unix") {
        return Err(format!("VFS of A is {va}, of B {vb}"));
    }
    let (reader_a, reader_b) = if kind == "rw" {
        let ra = Connection::open_with_flags_and_vfs(&db_a, OpenFlags::default(), "unix")
            .map_err(e("open reader A"))?;
        let rb = if control {
            Connection::open_with_flags_and_vfs(&db_b, OpenFlags::default(), "unix")
        } else {
            Connection::open(&db_b)
        }
        .map_err(e("open reader B"))?;
        for r in [&ra, &rb] {
            // (rusqlite's busy_timeout() needs SQLite 3.44's client data.)
            r.execute_batch("PRAGMA busy_timeout=5000")
                .map_err(e("busy"))?;
        }
        (Some(ra), Some(rb))
    } else {
        (None, None)
    };
    let seed = 0x9e37_79b9_7f4a_7c15;
    let mut sides = [
        Side {
            conn: conn_a,
            rng: Rng(seed),
            next_table: 0,
            reader: reader_a,
        },
        Side {
            conn: conn_b,
            rng: Rng(seed),
            next_table: 0,
            reader: reader_b,
        },
    ];
    for side in sides.iter_mut() {
        run_ops(side, kind, block, rows)?;
    }
    let stats = |c: &Connection| {
        if control {
            Ok(Stats::default())
        } else {
            Stats::read(c)
        }
    };
    let before = stats(&sides[1].conn)?;
    let blocks = n.div_ceil(block);
    let mut wall = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    for b in 0..blocks {
        let order = if b % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let c0 = cpu_seconds(libc::RUSAGE_SELF);
            let t0 = Instant::now();
            run_ops(&mut sides[which], kind, block, rows)?;
            let t = t0.elapsed().as_secs_f64();
            let c = cpu_seconds(libc::RUSAGE_SELF) - c0;
            let per = if kind == "schema" { 3 * block } else { block } as f64;
            wall[which].push(t / per);
            cpu[which].push(c / per);
        }
    }
    let d = stats(&sides[1].conn)?.since(before);
    let st = if control {
        "enabled".into()
    } else {
        status(&sides[1].conn)?
    };
    if st != "enabled" {
        return Err(format!("protection status at the end: {st}"));
    }
    let mut out = Out::default();
    out.put("plain", join(&wall[0]));
    out.put("metadwr", join(&wall[1]));
    out.put("plain_cpu", join(&cpu[0]));
    out.put("metadwr_cpu", join(&cpu[1]));
    out.put("ops", blocks * block * if kind == "schema" { 3 } else { 1 });
    out.put("generations", d.generations);
    out.put("pages", d.pages);
    out.put("bytes", d.bytes);
    out.put("fsyncs", d.fsyncs);
    out.put("flag_updates", d.flag_updates);
    drop(sides);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

/// One A/B sample: `--kind commit|schema|point|scan|open`.
pub fn sample(o: &Opts) -> Res<Out> {
    let mode = o.get("mode")?;
    let so = o.path("so")?;
    let dir = o.path("dir")?;
    let kind = o.get("kind")?;
    let n = o.num("n")?;
    let db = fresh_copy(&o.path("template")?, &dir)?;
    let conn = open_for(mode, &so, &db, o.opt("policy"))?;
    configure(&conn, o)?;
    let metadwr = is_metadwr(mode)?;
    let before = if metadwr {
        Some(Stats::read(&conn)?)
    } else {
        None
    };
    let mut ops = n;
    let cpu0 = cpu_seconds(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    match kind {
        "commit" => {
            let mut st = conn
                .prepare("INSERT INTO kv(v) VALUES (randomblob(100))")
                .map_err(e("prepare"))?;
            for _ in 0..n {
                st.execute([]).map_err(e("insert"))?;
            }
        }
        "schema" => {
            for i in 0..n {
                conn.execute_batch(&format!(
                    "CREATE TABLE bench_x{i}(a INTEGER PRIMARY KEY, b TEXT NOT NULL, c REAL)"
                ))
                .map_err(e("create"))?;
                conn.execute_batch(&format!(
                    "ALTER TABLE bench_x{i} ADD COLUMN d TEXT DEFAULT 'x'"
                ))
                .map_err(e("alter"))?;
                conn.execute_batch(&format!("DROP TABLE bench_x{i}"))
                    .map_err(e("drop"))?;
            }
            ops = 3 * n;
        }
        "point" => {
            let rows = o.num("rows")?;
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let mut st = conn
                .prepare("SELECT length(v) FROM r WHERE id=?1")
                .map_err(e("prepare"))?;
            let mut total = 0i64;
            for _ in 0..n {
                let id = (rng.next() % rows) as i64 + 1;
                let len: i64 = st
                    .query_row([id], |r| r.get(0))
                    .map_err(e("point select"))?;
                total += len;
            }
            std::hint::black_box(total);
        }
        "scan" => {
            let mut st = conn
                .prepare("SELECT count(*), sum(length(v)) FROM r")
                .map_err(e("prepare"))?;
            for _ in 0..n {
                let (c, s): (i64, i64) = st
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(e("scan"))?;
                std::hint::black_box((c, s));
            }
        }
        "open" => {
            for _ in 0..n {
                let c = Connection::open(&db).map_err(e("open"))?;
                let k: i64 = c
                    .query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
                    .map_err(e("count"))?;
                std::hint::black_box(k);
            }
        }
        k => return Err(format!("unknown kind {k}")),
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(libc::RUSAGE_SELF) - cpu0;
    let mut out = Out::default();
    out.put("secs", secs);
    out.put("cpu", cpu);
    out.put("ops", ops);
    if let Some(before) = before {
        let d = Stats::read(&conn)?.since(before);
        out.put("generations", d.generations);
        out.put("pages", d.pages);
        out.put("bytes", d.bytes);
        out.put("fsyncs", d.fsyncs);
        out.put("flag_updates", d.flag_updates);
        let s = status(&conn)?;
        if s != "enabled" {
            return Err(format!("protection status at the end: {s}"));
        }
    }
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

/// Page images of page 1 and the sqlite_schema tree as they are in the file.
fn protected_images(conn: &Connection, db: &Path, ps: u64) -> Res<BTreeMap<u32, Vec<u8>>> {
    let mut st = conn
        .prepare_cached("SELECT pageno FROM dbstat WHERE name='sqlite_schema'")
        .map_err(e("dbstat"))?;
    let pages: Vec<u32> = st
        .query_map([], |r| r.get(0))
        .map_err(e("dbstat"))?
        .collect::<Result<_, _>>()
        .map_err(e("dbstat"))?;
    let f = std::fs::File::open(db).map_err(e("open db file"))?;
    let mut m = BTreeMap::new();
    for p in pages.into_iter().chain([1]) {
        let mut buf = vec![0u8; ps as usize];
        f.read_exact_at(&mut buf, (p as u64 - 1) * ps)
            .map_err(e("read db page"))?;
        m.insert(p, buf);
    }
    Ok(m)
}

/// -dwr traffic per commit, metadwr only: `--kind commit|schema`.
pub fn traffic(o: &Opts) -> Res<Out> {
    let so = o.path("so")?;
    let dir = o.path("dir")?;
    let kind = o.get("kind")?;
    let n = o.num("n")?;
    let db = fresh_copy(&o.path("template")?, &dir)?;
    let conn = open_for("metadwr", &so, &db, o.opt("policy"))?;
    configure(&conn, o)?;
    let ps: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(e("page_size"))?;
    let ps = ps as u64;
    let stmts: Vec<String> = match kind {
        "commit" => (0..n)
            .map(|_| "INSERT INTO kv(v) VALUES (randomblob(100))".to_string())
            .collect(),
        "schema" => (0..n)
            .flat_map(|i| {
                [
                    format!(
                        "CREATE TABLE bench_x{i}(a INTEGER PRIMARY KEY, b TEXT NOT NULL, c REAL)"
                    ),
                    format!("ALTER TABLE bench_x{i} ADD COLUMN d TEXT DEFAULT 'x'"),
                    format!("DROP TABLE bench_x{i}"),
                ]
            })
            .collect(),
        k => return Err(format!("unknown kind {k}")),
    };
    let mut prev = protected_images(&conn, &db, ps)?;
    let start = Stats::read(&conn)?;
    let mut last = start;
    let (mut changed_total, mut excess, mut max_written) = (0u64, 0u64, 0u64);
    let mut checkpoints_seen = 0u64;
    for s in &stmts {
        conn.execute_batch(s).map_err(e("statement"))?;
        let now = Stats::read(&conn)?;
        let written = now.pages - last.pages;
        if now.generations > last.generations {
            checkpoints_seen += 1;
        }
        let cur = protected_images(&conn, &db, ps)?;
        let changed = cur
            .iter()
            .filter(|(p, img)| prev.get(p) != Some(img))
            .count() as u64;
        changed_total += changed;
        if written > changed {
            excess += 1;
        }
        max_written = max_written.max(written);
        prev = cur;
        last = now;
    }
    let d = last.since(start);
    let mut out = Out::default();
    out.put("commits", stmts.len());
    out.put("generations", d.generations);
    out.put("pages", d.pages);
    out.put("bytes", d.bytes);
    out.put("fsyncs", d.fsyncs);
    out.put("flag_updates", d.flag_updates);
    out.put("changed", changed_total);
    out.put("excess_commits", excess);
    out.put("max_pages_one_commit", max_written);
    out.put("updates", checkpoints_seen);
    out.put("protected_pages", prev.len());
    let s = status(&conn)?;
    if s != "enabled" {
        return Err(format!("protection status at the end: {s}"));
    }
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Puts `db_bytes` and `dwr_bytes` back into the *same* files (the copy's
/// fingerprint includes the database's inode, so a fresh copy would be a
/// different file, which metadwr rightly refuses to restore into).
fn put_back(db: &Path, db_bytes: &[u8], dwr_bytes: &[u8]) -> Res<()> {
    std::fs::write(db, db_bytes).map_err(e("rewrite db"))?;
    std::fs::write(format!("{}-dwr", db.display()), dwr_bytes).map_err(e("rewrite -dwr"))?;
    for suffix in ["-journal", "-wal", "-shm", "-dwr-quarantine"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    Ok(())
}

const COUNT_TABLES: &str = "SELECT count(*) FROM sqlite_schema WHERE type='table'";

struct Images {
    db: PathBuf,
    good: Vec<u8>,
    bad: Vec<u8>,
    dwr: Vec<u8>,
    page_size: usize,
}

fn images(dir: &Path) -> Res<Images> {
    let rd = |n: &str| std::fs::read(dir.join(n)).map_err(e("read image"));
    let good = rd("good.img")?;
    let ps = u16::from_be_bytes([good[16], good[17]]) as usize;
    Ok(Images {
        db: dir.join("db.db"),
        bad: rd("bad.img")?,
        dwr: rd("dwr.img")?,
        page_size: if ps == 1 { 65536 } else { ps },
        good,
    })
}

/// Recovery against schema size, in three phases (`--phase`):
///
/// * `prepare`: `dir/db.db` from the template, protected; its healthy image,
///   the image with page 1 zeroed, and the -dwr are kept beside it. The
///   database file itself stays (same inode) for the later phases.
/// * `pragma`: one `PRAGMA meta_recover`, the shell way: a process without
///   the extension opens the damaged database through plain `unix` (SQLite
///   reads the 100-byte header at open, so opening through metadwr would
///   already heal page 1), loads the extension into that connection, which
///   re-opens it through metadwr in place, and runs the pragma. One process
///   per measurement, since only the first load re-opens a connection.
/// * `inproc`: `--rounds` rounds of heal on open + first query on the
///   damaged database, and the first query on the healthy one through
///   metadwr and through plain `unix`.
pub fn recovery(o: &Opts) -> Res<Out> {
    let so = o.path("so")?;
    let dir = o.path("dir")?;
    let tables = o.num("tables")? as i64;
    let mut out = Out::default();
    match o.get("phase")? {
        "prepare" => {
            let db = fresh_copy(&o.path("template")?, &dir)?;
            load_extension(&so)?;
            {
                let conn = Connection::open(&db).map_err(e("open"))?;
                let s: String = conn
                    .query_row("PRAGMA meta_double_write=enabled", [], |r| r.get(0))
                    .map_err(e("enable"))?;
                if s != "enabled" {
                    return Err(format!("enable answered {s}"));
                }
            }
            let good = std::fs::read(&db).map_err(e("read db"))?;
            let dwr = std::fs::read(format!("{}-dwr", db.display())).map_err(e("read -dwr"))?;
            let ps = u16::from_be_bytes([good[16], good[17]]) as usize;
            let ps = if ps == 1 { 65536 } else { ps };
            let mut bad = good.clone();
            bad[..ps].fill(0);
            let wr = |n: &str, b: &[u8]| std::fs::write(dir.join(n), b).map_err(e("write image"));
            wr("good.img", &good)?;
            wr("bad.img", &bad)?;
            wr("dwr.img", &dwr)?;
            out.put("db_bytes", good.len());
            out.put("dwr_bytes", dwr.len());
        }
        "pragma" => {
            let im = images(&dir)?;
            put_back(&im.db, &im.bad, &im.dwr)?;
            let t0 = Instant::now();
            let conn = Connection::open(&im.db).map_err(e("open"))?;
            let t1 = Instant::now();
            // SAFETY: loading the extension under test.
            unsafe {
                conn.load_extension_enable().map_err(e("enable loading"))?;
                conn.load_extension(&so, None::<&str>)
                    .map_err(e("load_extension"))?;
            }
            let t2 = Instant::now();
            let answer: String = conn
                .query_row("PRAGMA meta_recover", [], |r| r.get(0))
                .map_err(e("meta_recover"))?;
            let t3 = Instant::now();
            if !answer.starts_with("restored") {
                return Err(format!("meta_recover answered {answer}"));
            }
            let got: i64 = conn
                .query_row(COUNT_TABLES, [], |r| r.get(0))
                .map_err(e("count after meta_recover"))?;
            if got != tables {
                return Err(format!(
                    "{got} tables after meta_recover, expected {tables}"
                ));
            }
            out.put("recover_ms", (t3 - t2).as_secs_f64() * 1e3);
            out.put("load_ms", (t2 - t1).as_secs_f64() * 1e3);
            out.put("open_ms", (t1 - t0).as_secs_f64() * 1e3);
        }
        "inproc" => {
            let im = images(&dir)?;
            let rounds = o.num("rounds")?;
            load_extension(&so)?;
            let (mut heal, mut open_m, mut open_p) = (vec![], vec![], vec![]);
            let first_query = |conn: &Connection| -> Res<()> {
                let got: i64 = conn
                    .query_row(COUNT_TABLES, [], |r| r.get(0))
                    .map_err(e("first query"))?;
                if got != tables {
                    return Err(format!("{got} tables, expected {tables}"));
                }
                Ok(())
            };
            // Round 0 is a warm-up.
            for round in 0..=rounds {
                // Heal on open: SQLite's first read of page 1 gets the copy.
                put_back(&im.db, &im.bad, &im.dwr)?;
                let t0 = Instant::now();
                let conn = Connection::open(&im.db).map_err(e("open"))?;
                first_query(&conn)?;
                let t = t0.elapsed().as_secs_f64();
                let s = status(&conn)?;
                if !s.contains("healed") {
                    return Err(format!("status after the healing read: {s}"));
                }
                drop(conn);
                // The restored page 1 is the copy with the change counter
                // (and version-valid-for) moved on.
                let mask = |p: &[u8]| {
                    let mut p = p[..im.page_size].to_vec();
                    p[24..28].fill(0);
                    p[92..96].fill(0);
                    p
                };
                if mask(&std::fs::read(&im.db).map_err(e("read db"))?) != mask(&im.good) {
                    return Err("page 1 not repaired on disk after the healing read".into());
                }
                if round > 0 {
                    heal.push(t);
                }
                for (metadwr, v) in [(true, &mut open_m), (false, &mut open_p)] {
                    put_back(&im.db, &im.good, &im.dwr)?;
                    let t0 = Instant::now();
                    let conn = if metadwr {
                        Connection::open(&im.db)
                    } else {
                        Connection::open_with_flags_and_vfs(&im.db, OpenFlags::default(), "unix")
                    }
                    .map_err(e("open"))?;
                    first_query(&conn)?;
                    let t = t0.elapsed().as_secs_f64();
                    drop(conn);
                    if round > 0 {
                        v.push(t);
                    }
                }
            }
            out.put("heal_open_ms", median(&mut heal) * 1e3);
            out.put("open_metadwr_ms", median(&mut open_m) * 1e3);
            out.put("open_plain_ms", median(&mut open_p) * 1e3);
        }
        p => return Err(format!("unknown phase {p}")),
    }
    Ok(out)
}

fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak RSS of one mode: open, `--n` commits, a schema read, reads of every
/// table's row; then VmHWM.
pub fn rss(o: &Opts) -> Res<Out> {
    let mode = o.get("mode")?;
    let so = o.path("so")?;
    let dir = o.path("dir")?;
    let n = o.num("n")?;
    let db = fresh_copy(&o.path("template")?, &dir)?;
    let hwm_start = proc_status_kb("VmHWM:");
    let conn = open_for(mode, &so, &db, None)?;
    conn.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA synchronous=NORMAL; CREATE TABLE IF NOT EXISTS kv(id INTEGER PRIMARY KEY, v BLOB)")
        .map_err(e("setup"))?;
    let mut st = conn
        .prepare("INSERT INTO kv(v) VALUES (randomblob(100))")
        .map_err(e("prepare"))?;
    for _ in 0..n {
        st.execute([]).map_err(e("insert"))?;
    }
    drop(st);
    let names: Vec<String> = {
        let mut q = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type='table'")
            .map_err(e("schema"))?;
        let v = q
            .query_map([], |r| r.get(0))
            .map_err(e("schema"))?
            .collect::<Result<_, _>>()
            .map_err(e("schema"))?;
        v
    };
    for name in &names {
        let _: i64 = conn
            .query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |r| {
                r.get(0)
            })
            .map_err(e("count"))?;
    }
    let hwm = proc_status_kb("VmHWM:");
    drop(conn);
    let mut out = Out::default();
    out.put("hwm_kb", hwm);
    out.put("hwm_start_kb", hwm_start);
    out.put("tables", names.len());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}
