//! Concurrency: `PROCS` processes (this test binary re-executed on its
//! `reliability_worker` test) with `THREADS` threads each, every thread with
//! its own connection and a busy timeout, insert rows, read, and change the
//! schema (CREATE TABLE / INDEX, ALTER TABLE ADD COLUMN, DROP TABLE) of one
//! protected database at the same time, in rollback and WAL mode. The same
//! workload runs once through metadwr and once through plain SQLite
//! (`vfs=unix`, no extension in the process).
//!
//! Checked: no SQLITE_CORRUPT / NOTADB anywhere; no SQLITE_BUSY (nor any
//! other error) through metadwr beyond what plain SQLite gives under the
//! same workload (write transactions are `BEGIN IMMEDIATE` and the busy
//! timeout is 60 s, so neither should see any); afterwards a new connection
//! finds a `-dwr` generation matching the file (`PRAGMA meta_recover`:
//! nothing to restore), and destroying page 1 and every schema page is
//! repaired exactly (byte for byte).
//!
//! `METADWR_CONC_OPS` operations per thread (default 60); the torture
//! variant (ignored) runs `METADWR_TORTURE_COUNT` rounds of 150.

mod common;
mod reliability;

use common::*;
use reliability::*;
use rusqlite::{Connection, ErrorCode};
use std::fmt::Write as _;
use std::time::Duration;

const PROCS: usize = 4;
const THREADS: usize = 2;

#[derive(Debug, Default, Clone)]
struct Counts {
    ops: u64,
    commits: u64,
    busy: u64,
    waits: u64,
    corrupt: u64,
    other: u64,
    first_other: String,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.ops += o.ops;
        self.commits += o.commits;
        self.busy += o.busy;
        self.waits += o.waits;
        self.corrupt += o.corrupt;
        self.other += o.other;
        if self.first_other.is_empty() {
            self.first_other = o.first_other.clone();
        }
    }

    fn record(&mut self, e: &rusqlite::Error, sql: &str) {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => self.busy += 1,
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
                self.corrupt += 1;
                if self.first_other.is_empty() {
                    self.first_other = format!("{e} in {sql:.120}");
                }
            }
            _ => {
                self.other += 1;
                if self.first_other.is_empty() {
                    self.first_other = format!("{e} in {sql:.120}");
                }
            }
        }
    }

    fn line(&self) -> String {
        format!(
            "RESULT ops={} commits={} busy={} waits={} corrupt={} other={} first={}",
            self.ops,
            self.commits,
            self.busy,
            self.waits,
            self.corrupt,
            self.other,
            self.first_other.replace('\n', " ")
        )
    }

    fn parse(line: &str) -> Option<Counts> {
        let rest = line.strip_prefix("RESULT ")?;
        let (nums, first) = rest.split_once(" first=")?;
        let mut c = Counts {
            first_other: first.to_string(),
            ..Counts::default()
        };
        for kv in nums.split(' ') {
            let (k, v) = kv.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "ops" => c.ops = v,
                "commits" => c.commits = v,
                "busy" => c.busy = v,
                "waits" => c.waits = v,
                "corrupt" => c.corrupt = v,
                "other" => c.other = v,
                _ => return None,
            }
        }
        Some(c)
    }
}

static WAITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

unsafe extern "C" fn wait_when_busy(
    _: *mut std::ffi::c_void,
    attempt: std::ffi::c_int,
) -> std::ffi::c_int {
    WAITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1));
    std::ffi::c_int::from(attempt < 60_000)
}

/// One thread of a worker: `ops` operations on its own connection.
fn worker_thread(db: &str, metadwr: bool, wid: usize, tid: usize, ops: u64, seed: u64) -> Counts {
    let path = std::path::Path::new(db);
    let conn = if metadwr {
        Connection::open(path).expect("open through metadwr")
    } else {
        open_vfs(path, "unix").expect("open plain")
    };
    // A busy handler that waits up to about 60 s and counts the waits: they
    // show the connections really contended.
    // (Through the C API: rusqlite's busy_handler needs SQLite 3.44.)
    // SAFETY: the handle is live; the callback is a plain function that
    // never unwinds.
    unsafe {
        rusqlite::ffi::sqlite3_busy_handler(
            conn.handle(),
            Some(wait_when_busy),
            std::ptr::null_mut(),
        );
    }
    let mut rng = Rng::new(seed ^ ((wid as u64) << 32) ^ tid as u64);
    let mut c = Counts::default();
    let mut own: Vec<(String, usize)> = Vec::new();
    let mut n = 0u64;
    for _ in 0..ops {
        c.ops += 1;
        n += 1;
        let tag = format!("w{wid}_{tid}_{n}");
        let r = rng.below(100);
        let (sql, writes) = if r < 40 {
            let mut s = String::from("BEGIN IMMEDIATE;");
            for k in 0..1 + rng.below(5) {
                write!(
                    s,
                    "INSERT INTO shared(who, n, payload) VALUES('{tag}', {k}, x'{:016x}{:016x}');",
                    rng.next_u64(),
                    rng.next_u64()
                )
                .unwrap();
            }
            if let Some((t, _)) = own.last() {
                write!(s, "INSERT INTO {t}(v) VALUES('{tag}');").unwrap();
            }
            s.push_str("COMMIT;");
            (s, true)
        } else if r < 60 {
            let choice = rng.below(4);
            let s = match (choice, own.is_empty()) {
                (0, _) | (_, true) => {
                    let t = format!("t_{tag}");
                    own.push((t.clone(), 0));
                    format!(
                        "BEGIN IMMEDIATE; CREATE TABLE {t}(id INTEGER PRIMARY KEY, v TEXT \
                         /* {} */); INSERT INTO {t}(v) VALUES('{tag}'); COMMIT;",
                        "x".repeat(rng.below(300) as usize)
                    )
                }
                (1, false) => {
                    let i = rng.below(own.len() as u64) as usize;
                    own[i].1 += 1;
                    format!(
                        "BEGIN IMMEDIATE; ALTER TABLE {} ADD COLUMN a{} TEXT DEFAULT 'd'; COMMIT;",
                        own[i].0, own[i].1
                    )
                }
                (2, false) => {
                    let i = rng.below(own.len() as u64) as usize;
                    format!(
                        "BEGIN IMMEDIATE; CREATE INDEX i_{tag} ON {}(v); COMMIT;",
                        own[i].0
                    )
                }
                _ => {
                    let i = rng.below(own.len() as u64) as usize;
                    let (t, _) = own.remove(i);
                    format!("BEGIN IMMEDIATE; DROP TABLE {t}; COMMIT;")
                }
            };
            (s, true)
        } else if r < 95 {
            (
                "SELECT count(*), sum(n), sum(length(payload)) FROM shared; \
                 SELECT count(*) FROM sqlite_schema; \
                 SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name;"
                    .to_string(),
                false,
            )
        } else {
            ("PRAGMA wal_checkpoint(PASSIVE);".to_string(), false)
        };
        match conn.execute_batch(&sql) {
            Ok(()) => c.commits += u64::from(writes),
            Err(e) => {
                c.record(&e, &sql);
                let _ = conn.execute_batch("ROLLBACK;");
                if sql.contains("CREATE TABLE") {
                    own.pop();
                }
            }
        }
        // A read transaction that reads every own table.
        if rng.below(4) == 0 {
            for (t, _) in &own {
                if let Err(e) = conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| {
                    r.get::<_, i64>(0)
                }) {
                    c.record(&e, t);
                }
            }
        }
    }
    if metadwr {
        // Protection must not have degraded under contention.
        match query_str(&conn, "PRAGMA meta_double_write") {
            Ok(s) if s == "enabled" => {}
            other => {
                c.other += 1;
                if c.first_other.is_empty() {
                    c.first_other = format!("status {other:?}");
                }
            }
        }
    }
    c
}

extern "C" fn log_to_stderr(
    _: *mut std::ffi::c_void,
    code: std::ffi::c_int,
    msg: *const std::ffi::c_char,
) {
    // SAFETY: SQLite passes a NUL-terminated message valid for the call.
    let text = unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy();
    if code & 0xff == rusqlite::ffi::SQLITE_WARNING {
        eprintln!("sqlite3_log({code}): {text}");
    }
}

/// The worker process: THREADS threads.
#[test]
#[ignore = "run by the concurrency tests in a child process"]
fn reliability_worker() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    let metadwr = param("W_MODE") == "metadwr";
    // metadwr's warnings (heals, refusals, protection turned off) go to
    // stderr, where the test reports them when a check fails.
    // SAFETY: the first SQLite call of this process; the callback never
    // unwinds.
    unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_LOG,
            log_to_stderr
                as extern "C" fn(*mut std::ffi::c_void, std::ffi::c_int, *const std::ffi::c_char),
            std::ptr::null_mut::<std::ffi::c_void>(),
        );
    }
    if metadwr {
        load_extension();
    }
    let db = param("W_DB");
    let wid: usize = param("W_ID").parse().unwrap();
    let ops: u64 = param("W_OPS").parse().unwrap();
    let seed: u64 = param("W_SEED").parse().unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|tid| {
            let db = db.clone();
            std::thread::spawn(move || worker_thread(&db, metadwr, wid, tid, ops, seed))
        })
        .collect();
    let mut total = Counts::default();
    for h in handles {
        total.add(&h.join().expect("worker thread"));
    }
    total.waits = WAITS.load(std::sync::atomic::Ordering::Relaxed);
    println!("{}", total.line());
}

/// Creates the database, runs PROCS workers on it, returns their counts.
fn run(
    db: &std::path::Path,
    journal: &str,
    metadwr: bool,
    ops: u64,
    seed: u64,
) -> (Counts, String) {
    {
        let conn = if metadwr {
            open(db)
        } else {
            open_plain(db).unwrap()
        };
        conn.execute_batch("PRAGMA page_size=1024;").unwrap();
        let mode = query_str(&conn, &format!("PRAGMA journal_mode={journal}")).unwrap();
        assert_eq!(mode, journal);
        conn.execute_batch(
            "CREATE TABLE shared(id INTEGER PRIMARY KEY, who TEXT, n INTEGER, payload BLOB);
             CREATE INDEX shared_who ON shared(who);",
        )
        .unwrap();
        if metadwr {
            enable(&conn);
        }
    }
    let children: Vec<_> = (0..PROCS)
        .map(|wid| {
            spawn_worker(&[
                (
                    "W_MODE",
                    if metadwr { "metadwr" } else { "plain" }.to_string(),
                ),
                ("W_DB", db.display().to_string()),
                ("W_ID", wid.to_string()),
                ("W_OPS", ops.to_string()),
                ("W_SEED", seed.to_string()),
            ])
        })
        .collect();
    let mut total = Counts::default();
    let mut logs = String::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let counts = stdout
            .lines()
            .find_map(Counts::parse)
            .unwrap_or_else(|| panic!("a worker printed no RESULT: {stdout:.500} {stderr:.2000}"));
        assert!(out.status.success(), "a worker failed: {stderr:.2000}");
        total.add(&counts);
        for l in stderr
            .lines()
            .filter(|l| l.starts_with("sqlite3_log") || l.starts_with("TRACE"))
        {
            logs.push_str(l);
            logs.push('\n');
        }
    }
    (total, logs)
}

fn concurrency(test: &str, journal: &str, rounds: u64, ops: u64) -> Tally {
    load_extension();
    let mut tally = Tally::default();
    let mut extra = String::new();
    for round in 0..rounds {
        let seed = 100 + round;
        tally.scenarios += 1;
        let failures_before = tally.failures.len();
        let dir = TestDir::new(&format!("conc-{journal}"));
        let plain_db = dir.join("plain.db");
        let dwr_db = dir.join("dwr.db");
        let started = std::time::Instant::now();
        let (plain, _) = run(&plain_db, journal, false, ops, seed);
        let t_plain = started.elapsed();
        let started = std::time::Instant::now();
        let (dwr, logs) = run(&dwr_db, journal, true, ops, seed);
        if !logs.is_empty() {
            eprintln!("{journal} round {round}: metadwr logged:\n{logs}");
        }
        let t_dwr = started.elapsed();
        eprintln!("{journal} round {round}: plain {plain:?} in {t_plain:.1?}; metadwr {dwr:?} in {t_dwr:.1?}");
        write!(
            extra,
            "{}plain_busy={} dwr_busy={} plain_waits={} dwr_waits={} plain_commits={} dwr_commits={}",
            if extra.is_empty() { "" } else { " " },
            plain.busy,
            dwr.busy,
            plain.waits,
            dwr.waits,
            plain.commits,
            dwr.commits
        )
        .unwrap();
        if plain.waits + dwr.waits == 0 {
            tally.fail(format!(
                "{journal}: no connection ever waited: no contention was tested"
            ));
        }
        if plain.corrupt + dwr.corrupt > 0 {
            tally.fail(format!(
                "{journal}: SQLITE_CORRUPT/NOTADB: plain {}, metadwr {} ({}); metadwr logged: {logs:.3000}",
                plain.corrupt, dwr.corrupt, dwr.first_other
            ));
        }
        if dwr.busy > plain.busy {
            tally.fail(format!(
                "{journal}: metadwr saw {} SQLITE_BUSY, plain SQLite {}",
                dwr.busy, plain.busy
            ));
        }
        if dwr.other > plain.other {
            tally.fail(format!(
                "{journal}: metadwr saw {} other errors, plain SQLite {} (first: {}); metadwr logged: {logs:.3000}",
                dwr.other, plain.other, dwr.first_other
            ));
        }
        // The copy matches the file, and a total loss of the protected
        // pages is repaired exactly.
        let conn = open(&dwr_db);
        let ic = integrity(&conn);
        if ic != "ok" {
            tally.fail(format!(
                "{journal}: after the workers, integrity_check: {ic:.300}"
            ));
            continue;
        }
        match pragma_meta_recover(&conn) {
            Ok(a) if parse_intact(&a).is_some() => {}
            other => tally.fail(format!(
                "{journal}: after the workers, PRAGMA meta_recover answered {other:?} \
                 (expected: nothing to restore, the copy matches)"
            )),
        }
        let status = dwr_status(&conn);
        if !status.starts_with("enabled") {
            tally.fail(format!("{journal}: status after the workers: {status:?}"));
        }
        let expected = content(&conn).unwrap();
        close_checkpointed(conn);
        if dwr_generations(&dwr_db).unwrap_or(0) == 0 {
            tally.fail(format!(
                "{journal}: dwr-inspect finds no complete generation"
            ));
        }
        if tally.failures.len() > failures_before {
            // A database already wrong is no test of the recovery.
            continue;
        }
        let recovered = std::panic::catch_unwind(|| {
            damage_and_recover(&dwr_db, &expected, Via::Pragma, Damage::Random, seed)
        });
        tally.recoveries += 1;
        match recovered {
            Ok(pages) => {
                tally.healed += 1;
                eprintln!("{journal} round {round}: {pages} destroyed pages restored exactly");
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tally.wrong_restores += 1;
                tally.fail(format!("{journal}: the destroyed protected pages did not come back exactly: {msg:.600}"));
            }
        }
    }
    tally.report(test, &extra);
    tally
}

#[test]
fn concurrent_writers_rollback() {
    reliability::assert_no_failures(concurrency(
        "concurrent_writers_rollback",
        "delete",
        1,
        env_u64("METADWR_CONC_OPS", 100),
    ));
}

#[test]
fn concurrent_writers_wal() {
    reliability::assert_no_failures(concurrency(
        "concurrent_writers_wal",
        "wal",
        1,
        env_u64("METADWR_CONC_OPS", 100),
    ));
}

#[test]
#[ignore = "long: make torture"]
fn torture_concurrent_writers() {
    let rounds = env_u64("METADWR_TORTURE_COUNT", 300).div_ceil(100).max(1);
    let mut all = Tally::default();
    for journal in ["delete", "wal"] {
        all.absorb(&concurrency(
            &format!("torture_concurrent_writers_{journal}"),
            journal,
            rounds,
            150,
        ));
    }
    reliability::assert_no_failures(all);
}
