//! Shared machinery of the reliability suites (`crash_points.rs`,
//! `process_kills.rs`, `io_faults.rs`, `concurrent_writers.rs`): the
//! fault-injecting VFS, the deterministic workload, the configurations,
//! the after-crash checks, the counters every suite prints, and the
//! plumbing that runs a worker in a child process (the test binary itself,
//! re-executed on its `reliability_worker` test).
//!
//! A test binary includes it with `mod common; mod reliability;`.
#![allow(dead_code)]

pub mod faultvfs;
pub mod workload;

use crate::common::heal::{view, Outcome};
use crate::common::*;
use faultvfs::DiskImage;
use rusqlite::{Connection, OpenFlags};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

// --- set-up -------------------------------------------------------------------

/// Registers `faultvfs` and loads the extension over it
/// (`METADWR_BASE_VFS=faultvfs`), once per process. Must run before any
/// other connection of the process (a test binary is one process).
pub fn load_over_faultvfs() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        faultvfs::register();
        // The extension reads METADWR_BASE_VFS when it registers, i.e. at
        // load; this is the only thread touching the environment then.
        std::env::set_var("METADWR_BASE_VFS", faultvfs::NAME);
        load_extension();
        std::env::remove_var("METADWR_BASE_VFS");
    });
}

/// One configuration of the crash properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// `delete` or `wal`.
    pub journal: &'static str,
    /// `NORMAL` or `FULL`.
    pub synchronous: &'static str,
    /// `-dwr` sync policy: `periodic` or `full`.
    pub dwr_sync: &'static str,
    pub page_size: u32,
}

impl Config {
    /// Parses the first four of `fields`: journal, synchronous, -dwr sync
    /// policy, page size (the form of [`Config::fields`], and the start of a
    /// `METADWR_REPLAY` specification).
    pub fn from_fields(fields: &[&str]) -> Config {
        let pick = |v: &str, options: &[&'static str]| -> &'static str {
            options
                .iter()
                .copied()
                .find(|o| *o == v)
                .unwrap_or_else(|| panic!("unknown value {v:?}, expected one of {options:?}"))
        };
        Config {
            journal: pick(fields[0], &["delete", "wal"]),
            synchronous: pick(fields[1], &["NORMAL", "FULL"]),
            dwr_sync: pick(fields[2], &["periodic", "full"]),
            page_size: fields[3].parse().expect("page size"),
        }
    }

    /// `journal,synchronous,dwr_sync,page_size`, read by
    /// [`Config::from_fields`].
    pub fn fields(&self) -> String {
        format!(
            "{},{},{},{}",
            self.journal, self.synchronous, self.dwr_sync, self.page_size
        )
    }

    /// journal × synchronous × -dwr sync, the 8 configurations of the suite.
    pub fn all(page_size: u32) -> Vec<Config> {
        let mut v = Vec::new();
        for journal in ["delete", "wal"] {
            for synchronous in ["NORMAL", "FULL"] {
                for dwr_sync in ["periodic", "full"] {
                    v.push(Config {
                        journal,
                        synchronous,
                        dwr_sync,
                        page_size,
                    });
                }
            }
        }
        v
    }

    pub fn label(&self) -> String {
        format!(
            "{}/sync={}/dwr={}/ps={}",
            self.journal,
            self.synchronous.to_lowercase(),
            self.dwr_sync,
            self.page_size
        )
    }

    /// A rollback journal with `synchronous=NORMAL`: a power loss may tear
    /// the journal in a way SQLite's own rollback turns into corruption
    /// (see [`check_image`]).
    pub fn torn_journal_may_corrupt(&self) -> bool {
        !self.is_wal() && self.synchronous == "NORMAL"
    }

    pub fn is_wal(&self) -> bool {
        self.journal == "wal"
    }

    /// What SQLite guarantees after a power loss, given `committed`
    /// transactions whose COMMIT returned, whether one more was in flight,
    /// and (WAL + NORMAL) `durable_floor`, the number of commits that had
    /// returned before the last completed sync of the WAL:
    ///
    /// * rollback journal, any synchronous level, and WAL with FULL: the
    ///   state of the last commit that returned, or that of the one in
    ///   flight (atomic commit, and durable once COMMIT returns);
    /// * WAL with NORMAL: commits are durable only once the WAL is synced
    ///   (at checkpoints), so any committed state from the last one made
    ///   durable by a WAL sync up to the one in flight: WAL recovery keeps a
    ///   prefix of whole transactions.
    pub fn allowed(&self, committed: usize, in_flight: bool, durable_floor: usize) -> Vec<usize> {
        let last = committed + usize::from(in_flight);
        let first = if self.is_wal() && self.synchronous == "NORMAL" {
            durable_floor.min(committed)
        } else {
            committed
        };
        (first..=last).collect()
    }
}

/// Opens `db` through metadwr (the default VFS) with the `-dwr` sync policy
/// given as the URI parameter `dwr_sync`.
pub fn open_dwr(db: &Path, dwr_sync: &str) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        format!("file:{}?dwr_sync={dwr_sync}", db.display()),
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// Opens `db` through `vfs` (e.g. `faultvfs` for SQLite with faults and
/// without metadwr).
pub fn open_vfs(db: &Path, vfs: &str) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        format!("file:{}?vfs={vfs}", db.display()),
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// The workload's set-up on a fresh database: page size, journal mode,
/// synchronous level, a small WAL auto-checkpoint (so checkpoints, which is
/// when the copy follows a WAL database, happen within short workloads),
/// and protection.
pub fn setup(conn: &Connection, cfg: &Config) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("PRAGMA page_size={};", cfg.page_size))?;
    let mode: String =
        conn.query_row(&format!("PRAGMA journal_mode={}", cfg.journal), [], |r| {
            r.get(0)
        })?;
    if mode != cfg.journal {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(format!("journal_mode answered {mode}")),
        ));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous={}; PRAGMA wal_autocheckpoint=16;",
        cfg.synchronous
    ))?;
    let answer: String = conn.query_row("PRAGMA meta_double_write=enabled", [], |r| r.get(0))?;
    if answer != "enabled" {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(format!("meta_double_write=enabled answered {answer}")),
        ));
    }
    Ok(())
}

/// The logical states of a workload: `[0]` is the empty database, `[i]`
/// the content once transaction `i` committed. Computed on a scratch
/// database through plain SQLite.
pub fn committed_states(txns: &[String], page_size: u32) -> Vec<Content> {
    let dir = TestDir::new("states");
    let db = dir.join("states.db");
    let conn = open_plain(&db).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA page_size={page_size}; PRAGMA synchronous=OFF;"
    ))
    .unwrap();
    let mut states = vec![content(&conn).unwrap()];
    for t in txns {
        conn.execute_batch(t)
            .unwrap_or_else(|e| panic!("workload transaction failed: {e}\n{t}"));
        states.push(content(&conn).unwrap());
    }
    states
}

// --- counters -------------------------------------------------------------------

/// What a suite did and found; printed as one `RELIABILITY` line per test
/// (and appended to `$METADWR_RELIABILITY_LOG` when set).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Configurations / scenarios run.
    pub scenarios: u64,
    /// Simulated power losses (each materialised and checked).
    pub crash_points: u64,
    /// Injected I/O errors that fired.
    pub faults: u64,
    /// SIGKILLed processes.
    pub kills: u64,
    /// Recoveries checked (each crash is checked twice: plain SQLite first,
    /// and metadwr first).
    pub recoveries: u64,
    /// The restored or healed database differed from the state it had to
    /// give back: must be 0.
    pub wrong_restores: u64,
    /// A recovered state that is not one SQLite guarantees (rows lost or a
    /// half transaction): must be 0.
    pub lost: u64,
    /// Destroyed protected pages given back exactly.
    pub healed: u64,
    /// Destroyed protected pages refused (SQLite's usual error, stale).
    pub refused: u64,
    /// Crashes that left no page to destroy (empty database).
    pub empty: u64,
    /// Of `refused`: the `-dwr` held no complete generation at all (the
    /// status then stays `enabled`), or did not exist (a writer killed
    /// before it enabled protection: `disabled`).
    pub refused_no_copy: u64,
    /// Of `wrong_restores`: after a recovery through metadwr itself (no
    /// program without the extension involved).
    pub wrong_metadwr_first: u64,
    /// Plain SQLite (no metadwr anywhere in the recovery) recovered a state
    /// outside its own guarantee: the model or SQLite, not metadwr.
    pub sqlite_lost: u64,
    /// Of `wrong_restores`: after plain SQLite recovered first (finding
    /// F2, docs/reliability.md).
    pub wrong_plain_first: u64,
    /// Of `refused`: after plain SQLite recovered first. A program without the extension can move the file past the
    /// copy (a WAL checkpoint), and metadwr must then refuse.
    pub refused_plain_first: u64,
    /// Every other failed check, described.
    pub failures: Vec<String>,
}

impl Tally {
    pub fn absorb(&mut self, o: &Tally) {
        self.scenarios += o.scenarios;
        self.crash_points += o.crash_points;
        self.faults += o.faults;
        self.kills += o.kills;
        self.recoveries += o.recoveries;
        self.wrong_restores += o.wrong_restores;
        self.lost += o.lost;
        self.healed += o.healed;
        self.refused += o.refused;
        self.empty += o.empty;
        self.refused_no_copy += o.refused_no_copy;
        self.wrong_metadwr_first += o.wrong_metadwr_first;
        self.sqlite_lost += o.sqlite_lost;
        self.wrong_plain_first += o.wrong_plain_first;
        self.refused_plain_first += o.refused_plain_first;
        self.failures.extend(o.failures.iter().cloned());
    }

    pub fn fail(&mut self, what: String) {
        eprintln!("FAILURE: {what}");
        self.failures.push(what);
    }

    /// Prints the counters and fails the test if anything went wrong.
    #[track_caller]
    pub fn report_and_assert(&self, test: &str, extra: &str) {
        self.report(test, extra);
        assert_no_failures(self.clone());
    }

    /// Prints the counters (and appends them to
    /// `$METADWR_RELIABILITY_LOG`).
    pub fn report(&self, test: &str, extra: &str) {
        let line = format!(
            "RELIABILITY test={test} scenarios={} crash_points={} faults={} kills={} recoveries={} \
             healed={} refused={} refused_no_copy={} refused_plain_first={} empty={} \
             wrong_restores={} wrong_metadwr_first={} wrong_plain_first={} lost={} \
             sqlite_lost={} failures={}{}{extra}",
            self.scenarios,
            self.crash_points,
            self.faults,
            self.kills,
            self.recoveries,
            self.healed,
            self.refused,
            self.refused_no_copy,
            self.refused_plain_first,
            self.empty,
            self.wrong_restores,
            self.wrong_metadwr_first,
            self.wrong_plain_first,
            self.lost,
            self.sqlite_lost,
            self.failures.len(),
            if extra.is_empty() { "" } else { " " },
        );
        println!("{line}");
        eprintln!("{line}");
        if let Some(path) = std::env::var_os("METADWR_RELIABILITY_LOG") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{line}");
            }
        }
    }
}

/// Fails the test, listing the first failures, if any check failed.
#[track_caller]
pub fn assert_no_failures(t: Tally) {
    if !t.failures.is_empty() {
        let mut msg = format!("{} failed checks:\n", t.failures.len());
        for f in t.failures.iter().take(12) {
            writeln!(msg, "  - {f}").unwrap();
        }
        panic!("{msg}");
    }
}

/// `$name` parsed, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// --- after a crash ---------------------------------------------------------------

/// The pages of the `sqlite_schema` tree (page 1 included), from the
/// bundled SQLite's dbstat on a plain read-only connection.
pub fn schema_pages(db: &Path) -> Vec<u32> {
    let conn = Connection::open_with_flags(
        format!("file:{}?vfs=unix&mode=ro", db.display()),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .expect("open read-only");
    let mut stmt = conn
        .prepare("SELECT pageno FROM dbstat WHERE name='sqlite_schema' ORDER BY pageno")
        .unwrap();
    let pages = stmt
        .query_map([], |r| r.get::<_, u32>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    pages
}

/// Index of `c` among `states[i]` for `i` in `allowed`.
fn which_state(c: &Content, states: &[Content], allowed: &[usize]) -> Option<usize> {
    allowed.iter().copied().find(|&i| states[i] == *c)
}

/// Describes where `c` differs from the allowed states (for messages).
fn describe_mismatch(c: &Content, states: &[Content], allowed: &[usize]) -> String {
    let matches_any = states.iter().position(|s| s == c);
    let nearest = allowed
        .iter()
        .filter_map(|&i| states[i].diff(c).map(|d| format!("vs state {i}: {d}")))
        .next()
        .unwrap_or_default();
    format!(
        "allowed states {allowed:?}, got {} ; {nearest:.600}",
        match matches_any {
            Some(i) => format!("state {i}"),
            None => "no committed state".to_string(),
        }
    )
}

/// How a crash is recovered before the protected pages are destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Plain SQLite (`vfs=unix`) opens first and runs its hot-journal or WAL
    /// recovery without metadwr's knowledge (a program without the
    /// extension), then metadwr faces the damage.
    PlainFirst,
    /// The application reopens through metadwr (which sees the recovery),
    /// closes, then the damage.
    MetadwrFirst,
}

/// Checks one recovered disk image both ways; `what` names the case for
/// messages (it should say how to reproduce it).
///
/// `torn_journal_may_corrupt`: the configuration is a rollback journal with
/// `synchronous=NORMAL`, where SQLite writes the journal's record count and
/// its records under one fsync. A power loss during that fsync can leave
/// the count with a torn record whose sampled checksum still matches, and
/// the rollback then writes the torn page into an intact file: SQLite's
/// documented risk of NORMAL on a filesystem that reorders writes. When
/// SQLite alone (plain-first) corrupts an image that way, it counts as a
/// loss of SQLite's, not a failure, and the same image recovered through
/// metadwr (the same rollback, passed through) is not held against it.
#[allow(clippy::too_many_arguments)]
pub fn check_image(
    db: &Path,
    image: &DiskImage,
    states: &[Content],
    allowed: &[usize],
    seed: u64,
    what: &str,
    torn_journal_may_corrupt: bool,
    tally: &mut Tally,
) {
    let mut sqlite_corrupted = false;
    for variant in [Variant::PlainFirst, Variant::MetadwrFirst] {
        image.materialise(db);
        let excuse =
            torn_journal_may_corrupt && (variant == Variant::PlainFirst || sqlite_corrupted);
        let corrupted = check_variant(db, variant, states, allowed, seed, what, excuse, tally);
        if variant == Variant::PlainFirst {
            sqlite_corrupted = corrupted;
        }
    }
}

/// Returns true when the recovered database failed `integrity_check` and
/// `corruption_is_sqlites` excused it.
#[allow(clippy::too_many_arguments)]
fn check_variant(
    db: &Path,
    variant: Variant,
    states: &[Content],
    allowed: &[usize],
    seed: u64,
    what: &str,
    corruption_is_sqlites: bool,
    tally: &mut Tally,
) -> bool {
    let what = format!("{what} [{variant:?}]");
    keep_files(db, &format!("{seed:x}-{variant:?}-crashed"));
    tally.recoveries += 1;
    let opened = match variant {
        Variant::PlainFirst => open_plain(db),
        Variant::MetadwrFirst => Connection::open(db),
    };
    let conn = match opened {
        Ok(c) => c,
        Err(e) => {
            tally.fail(format!("{what}: cannot open the crashed database: {e}"));
            return false;
        }
    };
    let lost = |t: &mut Tally| match variant {
        Variant::PlainFirst => t.sqlite_lost += 1,
        Variant::MetadwrFirst => t.lost += 1,
    };
    let recovered = match content(&conn) {
        Ok(c) => c,
        Err(e) => {
            lost(tally);
            tally.fail(format!(
                "{what}: the recovered database cannot be read: {e}"
            ));
            return false;
        }
    };
    if which_state(&recovered, states, allowed).is_none() {
        lost(tally);
        tally.fail(format!(
            "{what}: recovered state is not one SQLite guarantees: {}",
            describe_mismatch(&recovered, states, allowed)
        ));
        return false;
    }
    let ic = integrity(&conn);
    if ic != "ok" {
        if corruption_is_sqlites {
            if variant == Variant::PlainFirst {
                tally.sqlite_lost += 1;
            }
            return true;
        }
        tally.fail(format!("{what}: integrity_check after recovery: {ic:.300}"));
        return false;
    }
    if let Err((_, e)) = conn.close() {
        tally.fail(format!("{what}: close after recovery: {e}"));
        return false;
    }
    let wrong = tally.wrong_restores;
    let refused = tally.refused;
    destroy_and_reopen(db, &recovered, seed, &what, tally);
    let new_wrong = tally.wrong_restores - wrong;
    let new_refused = tally.refused - refused;
    match variant {
        Variant::MetadwrFirst => tally.wrong_metadwr_first += new_wrong,
        // Finding F2 (fixed): a program without the extension recovered
        // the crash first. A wrong restore is a failure like any other (it
        // is in `failures` already); refusals are expected more often here.
        Variant::PlainFirst => {
            tally.wrong_plain_first += new_wrong;
            tally.refused_plain_first += new_refused;
        }
    }
    false
}

/// Debugging aid: with `METADWR_KEEP_FILES=<dir>`, copies the database and
/// its side files to `<dir>/<n>-<label>/`.
fn keep_files(db: &Path, label: &str) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if let Some(keep) = std::env::var_os("METADWR_KEEP_FILES") {
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = Path::new(&keep).join(format!("{n:05}-{label}"));
        let _ = std::fs::create_dir_all(&dir);
        for suffix in ["", "-dwr", "-wal", "-shm", "-journal"] {
            let _ = std::fs::copy(sidecar(db, suffix), dir.join(format!("k.db{suffix}")));
        }
    }
}

/// Destroys page 1 and every other page of the schema tree of the closed
/// database `db`, whose content is `expected`, then opens it through
/// metadwr: it must give back exactly `expected` (and repair the file) or
/// refuse with SQLite's usual error, leaving the file as it is.
pub fn destroy_and_reopen(db: &Path, expected: &Content, seed: u64, what: &str, tally: &mut Tally) {
    let size = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    if size < 512 {
        tally.empty += 1;
        return;
    }
    let _ = std::fs::remove_file(sidecar(db, "-dwr-quarantine"));
    let pages = schema_pages(db);
    let ps = page_size_of(db) as u64;
    if let Some(&beyond) = pages.iter().find(|&&p| p as u64 * ps > size) {
        tally.fail(format!(
            "{what}: schema page {beyond} lies past the end of the {size}-byte file \
             (pages {pages:?}); the recovered database is not whole"
        ));
        return;
    }
    let before = std::fs::read(db).unwrap();
    keep_files(db, &format!("{seed:x}-before-damage"));
    let mut rng = Rng::new(seed ^ 0xdead_5eed);
    let kind = *rng.pick(&[
        Damage::Random,
        Damage::Zero,
        Damage::Random,
        Damage::First100,
    ]);
    // First100 only damages page 1's header; the other pages get random
    // bytes. They are damaged first: damage_pages reads the page size from
    // page 1.
    let mut all = std::collections::BTreeMap::new();
    if pages.len() > 1 {
        let other = if kind == Damage::First100 {
            Damage::Random
        } else {
            kind
        };
        all.extend(damage_pages(db, &pages[1..], other, &mut rng));
    }
    all.extend(damage_pages(db, &pages[..1], kind, &mut rng));
    let damaged_bytes = std::fs::read(db).unwrap();
    let what = format!("{what} (destroyed pages {pages:?} with {kind:?})");
    let conn = match Connection::open(db) {
        Ok(c) => c,
        Err(e) => {
            tally.fail(format!("{what}: opening through metadwr failed: {e}"));
            return;
        }
    };
    let outcome: Outcome = view(&conn);
    let status = query_msg(&conn, "PRAGMA meta_double_write").unwrap_or_else(|e| e);
    match outcome {
        Ok(got) => {
            if let Some(d) = expected.diff(&got) {
                tally.wrong_restores += 1;
                tally.fail(format!(
                    "{what}: WRONG RESTORE: metadwr served a database that is not the one \
                     before the damage: {d:.600} (status {status:?})"
                ));
                return;
            }
            let ic = integrity(&conn);
            drop(conn);
            if ic != "ok" {
                tally.wrong_restores += 1;
                tally.fail(format!(
                    "{what}: healed database fails integrity_check: {ic:.300}"
                ));
                return;
            }
            // The file itself must be repaired, byte for byte.
            let after = std::fs::read(db).unwrap();
            if after.len() != before.len() || mask_counters(&after) != mask_counters(&before) {
                let first = mask_counters(&after)
                    .iter()
                    .zip(mask_counters(&before).iter())
                    .position(|(a, b)| a != b);
                tally.wrong_restores += 1;
                tally.fail(format!(
                    "{what}: the repaired file differs from the file before the damage \
                     ({} vs {} bytes, first difference at {first:?}; status {status:?})",
                    after.len(),
                    before.len()
                ));
                return;
            }
            match crate::common::heal::plain_view(db) {
                Ok(c) if c == *expected => tally.healed += 1,
                other => {
                    tally.wrong_restores += 1;
                    tally.fail(format!(
                        "{what}: after the heal, plain SQLite reads {}",
                        crate::common::heal::describe(&other)
                    ));
                }
            }
        }
        Err(code) if status.contains("recovered") => {
            // metadwr restored something, and SQLite cannot read the result.
            tally.wrong_restores += 1;
            tally.fail(format!(
                "{what}: WRONG RESTORE: metadwr restored pages but the database then fails \
                 with SQLite error {code} (status {status:?})"
            ));
        }
        Err(code) if code == 26 || code == 11 => {
            drop(conn);
            if !status.contains("stale") {
                // Without any complete generation there is nothing to call
                // stale: the answer stays `enabled` (see the report).
                let unprotected = !sidecar(db, "-dwr").exists() && status == "disabled";
                match dwr_generations(db) {
                    // Killed before protection was enabled: no -dwr at all.
                    _ if unprotected => tally.refused_no_copy += 1,
                    Some(0) if status == "enabled" => tally.refused_no_copy += 1,
                    g => tally.fail(format!(
                        "{what}: refused with error {code}, but PRAGMA meta_double_write says \
                         {status:?} (expected a `stale` status; dwr-inspect finds {g:?} \
                         complete generations)"
                    )),
                }
            }
            if std::fs::read(db).unwrap() != damaged_bytes {
                tally.wrong_restores += 1;
                tally.fail(format!(
                    "{what}: refused, yet the database file was changed"
                ));
                return;
            }
            // An explicit restore must refuse as well, or be exact.
            let conn = Connection::open(db).unwrap();
            match pragma_meta_recover(&conn) {
                Err(_) => {
                    drop(conn);
                    if std::fs::read(db).unwrap() != damaged_bytes {
                        tally.wrong_restores += 1;
                        tally.fail(format!(
                            "{what}: PRAGMA meta_recover refused, yet the file was changed"
                        ));
                    } else {
                        tally.refused += 1;
                    }
                }
                Ok(report) => {
                    let got = view(&conn);
                    match got {
                        Ok(c) if c == *expected => tally.healed += 1,
                        other => {
                            tally.wrong_restores += 1;
                            tally.fail(format!(
                                "{what}: the read path refused but PRAGMA meta_recover answered \
                                 {report:?} and gave {}",
                                crate::common::heal::describe(&other)
                            ));
                        }
                    }
                }
            }
        }
        Err(code) => {
            tally.fail(format!(
                "{what}: reading through metadwr failed with error {code} (status {status:?})"
            ));
        }
    }
    let _ = all;
}

/// `dwr-inspect`, built with the extension (`make build`): `$DWR_INSPECT`,
/// else `target/release/dwr-inspect` next to the `.so`, else `dwr-inspect`
/// in the `.so`'s own directory (a cargo target directory).
pub fn dwr_inspect_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("DWR_INSPECT") {
        return p.into();
    }
    let so = so_path();
    let dir = so.parent().unwrap_or(Path::new("."));
    let beside = dir.join("target/release/dwr-inspect");
    if beside.exists() {
        beside
    } else {
        dir.join("dwr-inspect")
    }
}

/// Number of complete generations `dwr-inspect` finds in `<db>-dwr`, or
/// None when it cannot be run.
pub fn dwr_generations(db: &Path) -> Option<usize> {
    let out = std::process::Command::new(dwr_inspect_bin())
        .arg(sidecar(db, "-dwr"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| l.starts_with("generation "))
            .count(),
    )
}

// --- workers in child processes ----------------------------------------------------

/// Environment variable that makes `reliability_worker` run.
pub const WORKER_ENV: &str = "METADWR_RELIABILITY_WORKER";

/// Starts this test binary again in a child process, running only its
/// `reliability_worker` test with `env`; its stdout is piped.
pub fn spawn_worker(env: &[(&str, String)]) -> std::process::Child {
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("current test binary");
    Command::new(exe)
        .args([
            "reliability_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(WORKER_ENV, "1")
        .env_remove("METADWR_BASE_VFS")
        .env_remove("METADWR_ENABLE")
        .env_remove("METADWR_SYNC")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a worker")
}

/// The worker's parameter `name` (an environment variable).
pub fn param(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("worker parameter {name} missing"))
}
