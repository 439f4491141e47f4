//! Real process kills: a writer process (this test binary re-executed on
//! its `reliability_worker` test, loading the extension into the bundled
//! SQLite) runs the deterministic workload of schema changes and inserts on
//! a protected database and prints `COMMITTED <i>` (flushed) after each
//! COMMIT returns. The test SIGKILLs it at a random moment, then checks, as
//! after a simulated power loss (everything the process wrote is in the
//! page cache, so nothing is lost but the process):
//!
//! 1. recovered by plain SQLite or by metadwr, the database is exactly the
//!    state of the last printed commit or of the one in flight;
//! 2. with page 1 and every schema page destroyed, metadwr gives back
//!    exactly that state or refuses (SQLite's usual error, `stale`),
//!    changing nothing.
//!
//! Rollback and WAL journals; synchronous and the `-dwr` sync policy are
//! drawn per iteration. `process_kills_bounded` (make test) kills
//! `METADWR_KILLS` (default 16) writers per journal mode;
//! `torture_process_kills` (ignored; make torture) `METADWR_TORTURE_COUNT`
//! (default 300) per mode from `METADWR_TORTURE_SEED`.

mod common;
mod reliability;

use common::*;
use reliability::faultvfs::DiskImage;
use reliability::workload::Workload;
use reliability::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Transactions per writer run.
const TXNS: usize = 30;

/// The writer process.
#[test]
#[ignore = "run by the kill tests in a child process"]
fn reliability_worker() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    use std::io::Write;
    load_extension();
    let db = std::path::PathBuf::from(param("W_DB"));
    let label = param("W_CONFIG");
    let cfg = Config::from_fields(&label.split(',').collect::<Vec<_>>());
    let seed: u64 = param("W_SEED").parse().unwrap();
    let txns = Workload::transactions(seed, TXNS);
    let conn = open_dwr(&db, cfg.dwr_sync).expect("open through metadwr");
    setup(&conn, &cfg).expect("set-up");
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    for (i, t) in txns.iter().enumerate() {
        conn.execute_batch(t).expect("workload transaction");
        writeln!(out, "COMMITTED {}", i + 1).unwrap();
        out.flush().unwrap();
    }
    writeln!(out, "DONE").unwrap();
    out.flush().unwrap();
}

/// Committed states per (workload seed, page size), computed once.
struct States(HashMap<(u64, u32), Vec<Content>>);

impl States {
    fn get(&mut self, seed: u64, page_size: u32) -> &Vec<Content> {
        self.0
            .entry((seed, page_size))
            .or_insert_with(|| committed_states(&Workload::transactions(seed, TXNS), page_size))
    }
}

/// One writer, killed at a random moment, then checked.
fn kill_once(journal: &'static str, rng: &mut Rng, states: &mut States, tally: &mut Tally) {
    let synchronous = *rng.pick(&["NORMAL", "FULL"]);
    let dwr_sync = *rng.pick(&["periodic", "full"]);
    let cfg = Config {
        journal,
        synchronous,
        dwr_sync,
        page_size: *rng.pick(&[1024, 4096]),
    };
    let wseed = rng.below(4);
    let dir = TestDir::new("kill");
    let db = dir.join("k.db");
    let mut child = spawn_worker(&[
        ("W_DB", db.display().to_string()),
        ("W_CONFIG", cfg.fields()),
        ("W_SEED", wseed.to_string()),
    ]);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Kill after a random number of commits plus a random delay, or (one
    // time in eight) at a random time during the set-up.
    let target = if rng.below(8) == 0 {
        None
    } else {
        Some(rng.below(TXNS as u64) as usize)
    };
    let delay = Duration::from_micros(rng.below(4000));
    let started = Instant::now();
    let mut committed = 0usize;
    let mut ready = false;
    let mut done = false;
    if let Some(target) = target {
        while !done && (!ready || committed < target) {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => note(&line, &mut ready, &mut committed, &mut done),
                Err(_) => break,
            }
            assert!(started.elapsed() < Duration::from_secs(120), "writer hangs");
        }
    }
    std::thread::sleep(delay);
    let _ = child.kill();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    while let Ok(line) = rx.try_recv() {
        note(&line, &mut ready, &mut committed, &mut done);
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    if !done && status.success() {
        tally.fail(format!(
            "writer ended on its own without DONE: {stderr:.500}"
        ));
        return;
    }
    if stderr.contains("panicked") {
        tally.fail(format!("{}: the writer failed: {stderr:.800}", cfg.label()));
        return;
    }
    tally.kills += u64::from(!done);
    let image = DiskImage::capture(&db);
    let states = states.get(wseed, cfg.page_size);
    let in_flight = ready && !done && committed < TXNS;
    let allowed = cfg.allowed(committed, in_flight, committed);
    let what = format!(
        "{} workload seed {wseed}: killed after {committed} commits (+{delay:?}){}",
        cfg.label(),
        if done { ", writer had finished" } else { "" }
    );
    let seed = rng.next_u64();
    // A killed process loses nothing the OS already has: no torn journal.
    check_image(&db, &image, states, &allowed, seed, &what, false, tally);
}

fn note(line: &str, ready: &mut bool, committed: &mut usize, done: &mut bool) {
    if line == "READY" {
        *ready = true;
    } else if line == "DONE" {
        *done = true;
    } else if let Some(n) = line.strip_prefix("COMMITTED ") {
        *committed = n.trim().parse().unwrap();
    }
}

fn kills(test: &str, per_mode: u64, seed: u64) {
    load_extension();
    let mut tally = Tally::default();
    let mut states = States(HashMap::new());
    let mut rng = Rng::new(seed);
    for journal in ["delete", "wal"] {
        tally.scenarios += 1;
        for _ in 0..per_mode {
            kill_once(journal, &mut rng, &mut states, &mut tally);
        }
    }
    tally.report_and_assert(test, &format!("seed={seed} per_mode={per_mode}"));
}

#[test]
fn process_kills_bounded() {
    kills("process_kills_bounded", env_u64("METADWR_KILLS", 16), 7);
}

#[test]
#[ignore = "long: make torture"]
fn torture_process_kills() {
    kills(
        "torture_process_kills",
        env_u64("METADWR_TORTURE_COUNT", 300),
        env_u64("METADWR_TORTURE_SEED", 1),
    );
}
