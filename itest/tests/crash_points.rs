//! Power loss at every write and sync of a workload (SQLite's crash-test
//! model, `src/test6.c`), through `faultvfs` under metadwr.
//!
//! For each configuration (rollback and WAL journal × synchronous NORMAL and
//! FULL × `-dwr` sync periodic and full), a deterministic workload of schema
//! changes and inserts runs once to learn its committed states and how many
//! writes and syncs it issues. Then, for every one of those operations `k`,
//! the workload runs again in a fresh directory and the power fails at `k`:
//! the connection gets I/O errors and is dropped, and the disk image a
//! power loss could leave (durable bytes, plus any subset of the unsynced
//! writes, torn at 512-byte sectors) is put in place. Then, twice (plain
//! SQLite recovering first, or metadwr):
//!
//! 1. the recovered database is exactly a state SQLite guarantees (see
//!    [`Config::allowed`]);
//! 2. page 1 and every other schema page are destroyed, and metadwr either
//!    gives back exactly that state (and repairs the file byte for byte),
//!    or refuses with SQLite's usual error and a `stale` status, changing
//!    nothing.
//!
//! `crash_at_every_point` is the bounded sweep of `make test`;
//! `torture_sampled_crash_points` (ignored; `make torture`) samples points
//! of longer workloads from `METADWR_TORTURE_SEED`, `METADWR_TORTURE_COUNT`
//! points per configuration.

mod common;
mod reliability;

use common::*;
use reliability::faultvfs::{CrashMode, Domain};
use reliability::workload::Workload;
use reliability::*;

/// The reference run of a workload: committed states and operation counts.
struct Reference {
    seed: u64,
    txns: Vec<String>,
    states: Vec<Content>,
    /// `commit_ops[i]`: operations counted when transaction `i` returned
    /// (`[0]`: after the set-up).
    commit_ops: Vec<u64>,
    /// Operations of the whole run, close included.
    total_ops: u64,
}

fn reference(cfg: &Config, seed: u64, count: usize) -> Reference {
    let txns = Workload::transactions(seed, count);
    let states = committed_states(&txns, cfg.page_size);
    let dir = TestDir::new("crash-ref");
    let db = dir.join("c.db");
    let domain = Domain::new(dir.path());
    let conn = open_dwr(&db, cfg.dwr_sync).unwrap();
    setup(&conn, cfg).unwrap();
    let mut commit_ops = vec![domain.ops()];
    for (i, t) in txns.iter().enumerate() {
        conn.execute_batch(t).unwrap();
        let c = content(&conn).unwrap();
        assert_same_content(&states[i + 1], &c, &format!("reference state {}", i + 1));
        commit_ops.push(domain.ops());
    }
    drop(conn);
    let total_ops = domain.ops();
    Reference {
        seed,
        txns,
        states,
        commit_ops,
        total_ops,
    }
}

/// Runs the workload with a power loss at operation `k` and checks the
/// result; `seed` picks the crash image and the damage.
fn crash_run(
    cfg: &Config,
    r: &Reference,
    k: u64,
    seed: u64,
    mode: Option<CrashMode>,
    tally: &mut Tally,
) {
    let dir = TestDir::new("crash");
    let db = dir.join("c.db");
    let domain = Domain::new(dir.path());
    domain.crash_at(k, mode, seed);
    let what = format!(
        "{} workload seed {} crash at op {k} of {} (image seed {seed})",
        cfg.label(),
        r.seed,
        r.total_ops
    );
    let mut committed = 0usize;
    let mut in_flight = false;
    match open_dwr(&db, cfg.dwr_sync) {
        Ok(conn) => {
            if setup(&conn, cfg).is_ok() {
                if domain.ops() != r.commit_ops[0] && !domain.crashed() {
                    tally.fail(format!(
                        "{what}: set-up took {} ops, reference {}",
                        domain.ops(),
                        r.commit_ops[0]
                    ));
                }
                for (i, t) in r.txns.iter().enumerate() {
                    match conn.execute_batch(t) {
                        Ok(()) => {
                            committed = i + 1;
                            if !domain.crashed() && domain.ops() != r.commit_ops[i + 1] {
                                tally.fail(format!(
                                    "{what}: not deterministic: transaction {} ended at op {}, reference {}",
                                    i + 1,
                                    domain.ops(),
                                    r.commit_ops[i + 1]
                                ));
                            }
                        }
                        Err(_) => {
                            in_flight = true;
                            break;
                        }
                    }
                }
            } else {
                in_flight = true;
            }
            drop(conn);
        }
        Err(_) => in_flight = true,
    }
    let Some(image) = domain.crash_image() else {
        tally.fail(format!("{what}: the power loss never happened"));
        return;
    };
    // Commits made durable by a completed sync of the WAL.
    let floor = match domain.last_sync("-wal") {
        Some(s) => r.commit_ops.iter().rposition(|&c| c <= s).unwrap_or(0),
        None => 0,
    };
    drop(domain);
    tally.crash_points += 1;
    let allowed = cfg.allowed(committed, in_flight && committed < r.txns.len(), floor);
    let what = format!(
        "{what} mode {:?}, {committed} committed",
        image.mode.unwrap()
    );
    let before = tally.failures.len();
    check_image(
        &db,
        &image,
        &r.states,
        &allowed,
        seed,
        &what,
        cfg.torn_journal_may_corrupt(),
        tally,
    );
    if tally.failures.len() > before && std::env::var_os("METADWR_KEEP").is_some() {
        // Keep the crash image for inspection.
        image.materialise(&db);
        eprintln!("kept {}", dir.path().display());
        std::mem::forget(dir);
    }
}

const WORKLOAD_SEED: u64 = 1;

/// Every write and sync point of a short workload, all 8 configurations.
fn sweep(page_size: u32, txns: usize, tally: &mut Tally, configs: &[Config]) {
    for cfg in configs {
        let started = std::time::Instant::now();
        let r = reference(cfg, WORKLOAD_SEED, txns);
        let mut t = Tally {
            scenarios: 1,
            ..Tally::default()
        };
        let only = std::env::var("METADWR_CRASH_ONLY")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        for k in 0..r.total_ops {
            if only.is_some_and(|o| o != k) {
                continue;
            }
            crash_run(cfg, &r, k, 1000 + k, None, &mut t);
        }
        eprintln!(
            "{}: {} crash points, healed {} refused {} empty {} in {:.1?}",
            cfg.label(),
            t.crash_points,
            t.healed,
            t.refused,
            t.empty,
            started.elapsed()
        );
        let _ = page_size;
        tally.absorb(&t);
    }
}

#[test]
fn crash_at_every_point_rollback() {
    load_over_faultvfs();
    let mut tally = Tally::default();
    let configs: Vec<Config> = Config::all(1024)
        .into_iter()
        .filter(|c| !c.is_wal())
        .collect();
    sweep(1024, 8, &mut tally, &configs);
    tally.report_and_assert("crash_at_every_point_rollback", "");
}

#[test]
fn crash_at_every_point_wal() {
    load_over_faultvfs();
    let mut tally = Tally::default();
    let configs: Vec<Config> = Config::all(1024)
        .into_iter()
        .filter(|c| c.is_wal())
        .collect();
    sweep(1024, 8, &mut tally, &configs);
    tally.report_and_assert("crash_at_every_point_wal", "");
}

/// `make torture`: `METADWR_TORTURE_COUNT` sampled crash points per
/// configuration and page size (1024, 4096), over workloads of 60
/// transactions, from `METADWR_TORTURE_SEED`.
fn torture(test: &str, wal: bool) {
    load_over_faultvfs();
    let seed = env_u64("METADWR_TORTURE_SEED", 1);
    let count = env_u64("METADWR_TORTURE_COUNT", 200);
    let mut tally = Tally::default();
    let mut rng = Rng::new(seed ^ u64::from(wal));
    for page_size in [1024u32, 4096] {
        for cfg in Config::all(page_size)
            .into_iter()
            .filter(|c| c.is_wal() == wal)
        {
            let wseed = seed * 1000 + page_size as u64 + u64::from(wal);
            let r = reference(&cfg, wseed, 60);
            tally.scenarios += 1;
            let started = std::time::Instant::now();
            let before = tally.clone();
            for _ in 0..count {
                let k = rng.below(r.total_ops);
                let s = rng.next_u64();
                crash_run(&cfg, &r, k, s, None, &mut tally);
            }
            eprintln!(
                "{}: {} points of {} ops, healed {} refused {} in {:.1?}",
                cfg.label(),
                tally.crash_points - before.crash_points,
                r.total_ops,
                tally.healed - before.healed,
                tally.refused - before.refused,
                started.elapsed()
            );
        }
    }
    tally.report_and_assert(test, &format!("seed={seed} count={count}"));
}

#[test]
#[ignore = "long: make torture"]
fn torture_sampled_crash_points_rollback() {
    torture("torture_sampled_crash_points_rollback", false);
}

#[test]
#[ignore = "long: make torture"]
fn torture_sampled_crash_points_wal() {
    torture("torture_sampled_crash_points_wal", true);
}

/// Replays one crash point from a failure message:
/// `METADWR_REPLAY=journal,SYNC,dwr_sync,page_size,workload_seed,txns,op,image_seed`
/// (e.g. `delete,NORMAL,periodic,1024,2024,60,963,3040997344044028170`;
/// torture workloads have 60 transactions, the bounded sweep 8). With
/// `METADWR_KEEP=1` the crash image is kept when a check fails.
#[test]
#[ignore = "replays METADWR_REPLAY"]
fn replay_crash_point() {
    let Ok(spec) = std::env::var("METADWR_REPLAY") else {
        return;
    };
    replay("replay_crash_point", &spec);
}

/// Finding F5 (docs/reliability.md), from `make torture SEED=3 COUNT=600`:
/// a `DROP VIEW` was fsynced at once (the durability rule), then the row
/// commits after it rewrote both `-dwr` header slots without an fsync.
/// The power failed while one of them was written: the slot of the `DROP
/// VIEW` generation was torn, the other lost its unsynced writes and held
/// the generation before the `DROP VIEW` again. Recovered by SQLite alone,
/// page 1 and the schema pages destroyed: metadwr restored the view.
#[test]
fn f5_durable_schema_change_lost_behind_unsynced_header_writes() {
    replay(
        "f5_durable_schema_change_lost_behind_unsynced_header_writes",
        "delete,FULL,periodic,4096,7096,60,1593,16861393314921668354",
    );
}

fn replay(test: &str, spec: &str) {
    load_over_faultvfs();
    let f: Vec<&str> = spec.split(',').collect();
    let cfg = Config::from_fields(&f);
    let r = reference(&cfg, f[4].parse().unwrap(), f[5].parse().unwrap());
    let mut tally = Tally::default();
    crash_run(
        &cfg,
        &r,
        f[6].parse().unwrap(),
        f[7].parse().unwrap(),
        None,
        &mut tally,
    );
    tally.report_and_assert(test, spec);
}
