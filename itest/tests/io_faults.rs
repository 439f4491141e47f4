//! I/O errors, injected by `faultvfs` under metadwr (SQLite's `ioerr*.test`
//! in spirit).
//!
//! * On the `-dwr` (write EIO, ENOSPC, short write, fsync EIO, read EIO,
//!   open failure), every user transaction still commits and its data is
//!   there; protection degrades visibly (`PRAGMA meta_double_write` answers
//!   `disabled (<why>)`, a SQLITE_WARNING goes to `sqlite3_log` naming the
//!   file); and afterwards, with page 1 and the schema destroyed, metadwr
//!   gives back exactly the database or refuses: never the stale copy.
//! * On the database, the journal and the WAL (EIO on read, write, fsync and
//!   truncate; ENOSPC; short writes; once or from then on, at the Nth such
//!   operation for every N the script reaches), a script of schema changes,
//!   inserts, a rollback and a checkpoint gives exactly the same result
//!   code for every statement through metadwr as through `faultvfs` alone
//!   (SQLite without metadwr), metadwr issues exactly the same operations
//!   on those files, the files end byte-identical, and the protected pages
//!   destroyed afterwards come back exactly or are refused.
//!
//! `SQLITE_CONFIG_LOG` must be set before SQLite initialises: hence this
//! binary of its own.

mod common;
mod reliability;

use common::*;
use reliability::faultvfs::{Domain, FaultKind, FaultRule, Op};
use reliability::workload::Workload;
use reliability::*;
use rusqlite::Connection;
use std::path::Path;
use std::sync::OnceLock;

/// The log callback first (before SQLite initialises), then faultvfs, then
/// the extension over it.
fn init() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        common::sqlite_log::install();
        load_over_faultvfs();
    });
}

// --- faults on the -dwr -------------------------------------------------------------

struct DwrCase {
    name: &'static str,
    rule: FaultRule,
}

fn dwr_cases() -> Vec<DwrCase> {
    let w = |nth, kind| FaultRule::new("-dwr", Op::Write, nth, kind);
    vec![
        DwrCase {
            name: "write EIO #1",
            rule: w(1, FaultKind::Eio),
        },
        DwrCase {
            name: "write EIO #2",
            rule: w(2, FaultKind::Eio),
        },
        DwrCase {
            name: "write EIO #4",
            rule: w(4, FaultKind::Eio),
        },
        DwrCase {
            name: "write EIO #7",
            rule: w(7, FaultKind::Eio),
        },
        DwrCase {
            name: "write EIO always",
            rule: w(1, FaultKind::Eio).persistent(),
        },
        DwrCase {
            name: "write ENOSPC always",
            rule: w(1, FaultKind::Enospc).persistent(),
        },
        DwrCase {
            name: "write ENOSPC #3 always",
            rule: w(3, FaultKind::Enospc).persistent(),
        },
        DwrCase {
            name: "short write #1",
            rule: w(1, FaultKind::Short),
        },
        DwrCase {
            name: "short write #3",
            rule: w(3, FaultKind::Short),
        },
        DwrCase {
            name: "fsync EIO #1",
            rule: FaultRule::new("-dwr", Op::Sync, 1, FaultKind::Eio),
        },
        DwrCase {
            name: "fsync EIO always",
            rule: FaultRule::new("-dwr", Op::Sync, 1, FaultKind::Eio).persistent(),
        },
        DwrCase {
            name: "read EIO #1",
            rule: FaultRule::new("-dwr", Op::Read, 1, FaultKind::Eio),
        },
        DwrCase {
            name: "read EIO always",
            rule: FaultRule::new("-dwr", Op::Read, 1, FaultKind::Eio).persistent(),
        },
        DwrCase {
            name: "open fails",
            rule: FaultRule::new("-dwr", Op::Open, 1, FaultKind::CantOpen).persistent(),
        },
    ]
}

/// Transactions before and while the fault is armed.
const BEFORE: usize = 3;
const TOTAL: usize = 10;

fn dwr_fault(cfg: &Config, case: &DwrCase, states: &[Content], tally: &mut Tally) {
    let what = format!("{}: -dwr {}", cfg.label(), case.name);
    let dir = TestDir::new("dwr-fault");
    let db = dir.join("f.db");
    let domain = Domain::new(dir.path());
    let txns = Workload::transactions(3, TOTAL);
    let conn = open_dwr(&db, cfg.dwr_sync).unwrap();
    setup(&conn, cfg).unwrap();
    for t in &txns[..BEFORE] {
        conn.execute_batch(t).unwrap();
    }
    let id = domain.add_fault(case.rule.clone());
    // An open fault needs a new connection; it then does the writing.
    let conn = if case.rule.op == Op::Open {
        drop(conn);
        match open_dwr(&db, cfg.dwr_sync) {
            Ok(c) => c,
            Err(e) => {
                tally.fail(format!("{what}: the database cannot be opened: {e}"));
                return;
            }
        }
    } else {
        conn
    };
    for (i, t) in txns.iter().enumerate().skip(BEFORE) {
        if let Err(e) = conn.execute_batch(t) {
            tally.fail(format!("{what}: transaction {} failed: {e}", i + 1));
            return;
        }
    }
    match content(&conn) {
        Ok(c) if c == states[TOTAL] => {}
        Ok(c) => {
            tally.lost += 1;
            tally.fail(format!(
                "{what}: the data is not what was committed: {}",
                states[TOTAL].diff(&c).unwrap_or_default()
            ));
        }
        Err(e) => tally.fail(format!("{what}: reading back failed: {e}")),
    }
    let status = dwr_status(&conn);
    let fired_before_close = domain.fired(id);
    if let Err((_, e)) = conn.close() {
        tally.fail(format!("{what}: close failed: {e}"));
    }
    let fired = domain.fired(id);
    domain.clear_faults();
    drop(domain);
    if fired == 0 {
        tally.fail(format!(
            "{what}: the fault never fired ({} matching operations)",
            case.rule.nth
        ));
        return;
    }
    tally.faults += fired;
    tally.scenarios += 1;
    if fired_before_close > 0
        && (!status.starts_with("disabled (") || status.len() <= "disabled ()".len())
    {
        tally.fail(format!(
            "{what}: after the fault, PRAGMA meta_double_write answered {status:?} \
             (expected `disabled (<why>)`)"
        ));
    }
    if common::sqlite_log::warnings_about(&db).is_empty() {
        tally.fail(format!(
            "{what}: no SQLITE_WARNING naming the database was logged"
        ));
    }
    // A plain reader sees every committed row.
    match open_plain(&db).map(|c| content(&c)) {
        Ok(Ok(c)) if c == states[TOTAL] => {}
        other => {
            tally.lost += 1;
            tally.fail(format!("{what}: plain SQLite reads {other:?} after close"));
        }
    }
    // The copy missed updates: it must not come back over the database.
    tally.recoveries += 1;
    destroy_and_reopen(&db, &states[TOTAL], 0xfa17 + fired, &what, tally);
}

#[test]
fn dwr_faults_never_fail_a_transaction() {
    init();
    let mut tally = Tally::default();
    let states = committed_states(&Workload::transactions(3, TOTAL), 1024);
    for cfg in Config::all(1024)
        .into_iter()
        .filter(|c| c.synchronous == "FULL")
    {
        for case in dwr_cases() {
            dwr_fault(&cfg, &case, &states, &mut tally);
        }
    }
    tally.report_and_assert("dwr_faults_never_fail_a_transaction", "");
}

// --- faults on the database, journal and WAL -----------------------------------------

/// The statements run with the fault armed.
fn script(wal: bool) -> Vec<String> {
    let mut v: Vec<String> = [
        "BEGIN",
        "CREATE TABLE s1(id INTEGER PRIMARY KEY, a TEXT, b BLOB)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 24) \
         INSERT INTO s1(a, b) SELECT 'row' || i, zeroblob(700) FROM n",
        "COMMIT",
        "CREATE INDEX s1a ON s1(a)",
        "SELECT count(*), sum(length(b)) FROM s1",
        "BEGIN",
        "INSERT INTO base(name, v) VALUES ('rolled back', zeroblob(900))",
        "UPDATE base SET name = name || '!'",
        "ROLLBACK",
        "ALTER TABLE base ADD COLUMN z TEXT DEFAULT 'zz'",
        "DELETE FROM s1 WHERE id % 3 = 0",
        "SELECT id, name, length(v), z FROM base ORDER BY id",
        "CREATE VIEW sv AS SELECT a FROM s1",
        "DROP TABLE s1",
        "INSERT INTO base(name, v) VALUES ('late', zeroblob(300))",
        "SELECT count(*), sum(length(v)) FROM base",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if wal {
        v.insert(6, "PRAGMA wal_checkpoint(FULL)".into());
        v.push("PRAGMA wal_checkpoint(TRUNCATE)".into());
    }
    v
}

/// A statement's outcome: its rows, or its extended result code.
type Outcome = Result<String, i32>;

fn run_one(conn: &Connection, sql: &str) -> Outcome {
    dump_query(conn, sql).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) => f.extended_code,
        rusqlite::Error::SqlInputError { error, .. } => error.extended_code,
        other => panic!("non-SQLite error {other}"),
    })
}

/// Everything one run produced.
#[derive(Debug, PartialEq)]
struct Run {
    outcomes: Vec<Outcome>,
    close: Outcome,
    /// Matching operations the rule saw, and how many it failed.
    seen: u64,
    fired: u64,
    /// After the fault: what plain SQLite reads, and the file's bytes.
    after: Result<Content, i32>,
    db_bytes: Vec<u8>,
}

/// The set-up of both runs, without faults.
fn prepare(db: &Path, journal: &str, metadwr: bool) -> Connection {
    let conn = if metadwr {
        open_dwr(db, "full").unwrap()
    } else {
        open_vfs(db, reliability::faultvfs::NAME).unwrap()
    };
    conn.execute_batch("PRAGMA page_size=1024;").unwrap();
    let mode = query_str(&conn, &format!("PRAGMA journal_mode={journal}")).unwrap();
    assert_eq!(mode, journal);
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=2;
         CREATE TABLE base(id INTEGER PRIMARY KEY, name TEXT, v BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 30)
         INSERT INTO base(name, v) SELECT 'base' || i, zeroblob(200 + i) FROM n;",
    )
    .unwrap();
    if metadwr {
        enable(&conn);
    }
    conn
}

/// A data page of table `base` (never a protected page).
fn base_leaf(db: &Path) -> u32 {
    let conn = open_plain(db).unwrap();
    conn.query_row(
        "SELECT pageno FROM dbstat WHERE name='base' AND pagetype='leaf' ORDER BY pageno LIMIT 1",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Every page of table `base` (none is ever protected).
fn base_pages(db: &Path) -> Vec<u32> {
    let conn = open_plain(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT pageno FROM dbstat WHERE name='base' ORDER BY pageno")
        .unwrap();
    let pages = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<u32>, _>>()
        .unwrap();
    pages
}

fn run_with_fault(journal: &str, metadwr: bool, rule: Option<FaultRule>) -> (Run, tempdir::Kept) {
    let dir = TestDir::new(if metadwr { "fault-dwr" } else { "fault-plain" });
    let db = dir.join("f.db");
    let domain = Domain::new(dir.path());
    let conn = prepare(&db, journal, metadwr);
    let counting =
        rule.unwrap_or_else(|| FaultRule::new("f.db", Op::Read, u64::MAX, FaultKind::Eio));
    let id = domain.add_fault(counting);
    let outcomes = script(journal == "wal")
        .iter()
        .map(|s| run_one(&conn, s))
        .collect();
    let close = match conn.close() {
        Ok(()) => Ok(String::new()),
        Err((c, e)) => {
            drop(c);
            Err(match e {
                rusqlite::Error::SqliteFailure(f, _) => f.extended_code,
                _ => -1,
            })
        }
    };
    let (seen, fired) = (domain.seen(id), domain.fired(id));
    domain.clear_faults();
    drop(domain);
    let db_bytes = std::fs::read(&db).unwrap_or_default();
    // The application reopens the database with the same stack, faults
    // cleared: SQLite alone, or metadwr (which then sees the hot-journal
    // rollback or WAL checkpoint; a plain connection would move the file
    // past the copy behind metadwr's back, finding F2).
    let after = match if metadwr {
        Connection::open(&db)
    } else {
        open_vfs(&db, reliability::faultvfs::NAME)
    } {
        Ok(c) => {
            let v = crate::common::heal::view(&c);
            let ic = integrity(&c);
            drop(c);
            if ic != "ok" {
                Err(-11)
            } else {
                v
            }
        }
        Err(e) => Err(primary_code(&e).unwrap_or(-1)),
    };
    (
        Run {
            outcomes,
            close,
            seen,
            fired,
            after,
            db_bytes,
        },
        tempdir::Kept { _dir: dir, db },
    )
}

mod tempdir {
    /// Keeps a run's directory alive for the checks after it.
    pub struct Kept {
        pub _dir: super::TestDir,
        pub db: std::path::PathBuf,
    }
}

fn db_faults(journal: &str, tally: &mut Tally) {
    let wal = journal == "wal";
    let side = if wal { "-wal" } else { "-journal" };
    // The data page a read fault hits, the same in both runs.
    let leaf = {
        let (_, kept) = run_with_fault(journal, false, None);
        base_leaf(&kept.db)
    };
    let leaf_offset = (leaf as u64 - 1) * 1024;
    // Reads of the other pages of `base` too, counted without injecting
    // anything: metadwr reads page 1, the schema tree and the freelist to
    // take its copies, but a data page only to choose a witness, which the
    // pages SQLite writes provide. A read fault on one it reads more
    // often would fail there and not in SQLite alone. (A WAL checkpoint
    // once re-read every witness: SQLite truncates the file to its own
    // size at the end of each one.)
    let pages = {
        let (_, kept) = run_with_fault(journal, false, None);
        base_pages(&kept.db)
    };
    assert!(pages.len() > 4, "base has {} pages", pages.len());
    for pgno in pages {
        let rule = FaultRule::new("f.db", Op::Read, u64::MAX, FaultKind::Eio)
            .at_offset((pgno as u64 - 1) * 1024);
        let (plain, _) = run_with_fault(journal, false, Some(rule.clone()));
        let (dwr, _) = run_with_fault(journal, true, Some(rule));
        if plain.seen != dwr.seen {
            tally.fail(format!(
                "{journal}: reads of page {pgno} of base: metadwr {}, SQLite alone {}",
                dwr.seen, plain.seen
            ));
        }
    }
    let mut rules: Vec<(String, FaultRule)> = Vec::new();
    for file in ["f.db", side] {
        for (op, kind) in [
            (Op::Write, FaultKind::Eio),
            (Op::Write, FaultKind::Enospc),
            (Op::Write, FaultKind::Short),
            (Op::Sync, FaultKind::Eio),
            (Op::Read, FaultKind::Eio),
            (Op::Truncate, FaultKind::Eio),
        ] {
            let base = FaultRule::new(file, op, u64::MAX, kind);
            let base = if file == "f.db" && op == Op::Read {
                base.at_offset(leaf_offset)
            } else {
                base
            };
            // How many such operations the script issues, with and
            // without metadwr: they must be the same.
            let (plain, _) = run_with_fault(journal, false, Some(base.clone()));
            let (dwr, _) = run_with_fault(journal, true, Some(base.clone()));
            let label = format!("{journal}: {op:?} {kind:?} on {file}");
            if plain.seen != dwr.seen {
                tally.fail(format!(
                    "{label}: metadwr issues {} such operations, SQLite alone {}",
                    dwr.seen, plain.seen
                ));
            }
            if plain != dwr {
                tally.fail(format!("{label}: without a fault, the runs differ"));
            }
            let n = plain.seen;
            let mut nths: Vec<u64> = vec![1, 2, 3, n / 2, n.saturating_sub(1), n];
            nths.retain(|&k| k >= 1 && k <= n);
            nths.sort_unstable();
            nths.dedup();
            for nth in nths {
                for persistent in [false, true] {
                    let mut r = base.clone();
                    r.nth = nth;
                    r.times = if persistent { u64::MAX } else { 1 };
                    rules.push((
                        format!(
                            "{label} #{nth}{}",
                            if persistent { " and after" } else { "" }
                        ),
                        r,
                    ));
                }
            }
        }
    }
    for (label, rule) in rules {
        let (plain, _) = run_with_fault(journal, false, Some(rule.clone()));
        let (dwr, kept) = run_with_fault(journal, true, Some(rule.clone()));
        tally.scenarios += 1;
        tally.faults += dwr.fired;
        if plain.fired == 0 {
            tally.fail(format!("{label}: the fault never fired"));
            continue;
        }
        if plain.outcomes != dwr.outcomes || plain.close != dwr.close {
            let i = plain
                .outcomes
                .iter()
                .zip(&dwr.outcomes)
                .position(|(a, b)| a != b);
            tally.fail(format!(
                "{label}: result codes differ: statement {i:?}: plain {:?}, metadwr {:?}; close: plain {:?}, metadwr {:?}",
                i.map(|i| &plain.outcomes[i]),
                i.map(|i| &dwr.outcomes[i]),
                plain.close,
                dwr.close
            ));
            continue;
        }
        if plain.seen != dwr.seen || plain.fired != dwr.fired {
            tally.fail(format!(
                "{label}: operations differ: plain {}/{} metadwr {}/{}",
                plain.seen, plain.fired, dwr.seen, dwr.fired
            ));
        }
        if plain.after != dwr.after {
            tally.lost += 1;
            tally.fail(format!("{label}: the database after the fault differs"));
            continue;
        }
        if plain.db_bytes != dwr.db_bytes {
            tally.fail(format!("{label}: the database files differ byte-wise"));
        }
        let expected = match &dwr.after {
            Ok(c) => c.clone(),
            Err(code) => {
                tally.fail(format!(
                    "{label}: plain SQLite cannot read the database: {code}"
                ));
                continue;
            }
        };
        tally.recoveries += 1;
        destroy_and_reopen(&kept.db, &expected, rule.nth, &label, tally);
    }
}

#[test]
fn db_journal_wal_faults_pass_through_rollback() {
    init();
    let mut tally = Tally::default();
    db_faults("delete", &mut tally);
    tally.report_and_assert("db_journal_wal_faults_pass_through_rollback", "");
}

#[test]
fn db_journal_wal_faults_pass_through_wal() {
    init();
    let mut tally = Tally::default();
    db_faults("wal", &mut tally);
    tally.report_and_assert("db_journal_wal_faults_pass_through_wal", "");
}
