//! metadwr-bench: the overhead of metadwr against plain SQLite.
//!
//! ```text
//! metadwr-bench [--root DIR] [--so FILE] [--rounds N] [--quick]
//!               [--only commit,rw,schema,read,control,open,speedtest1,traffic,recovery,rss]
//!               [--out DIR] [--md FILE] [--png FILE] [--python FILE] [--no-plot]
//!               [--speedtest-size N]
//! ```
//!
//! Every A/B workload runs through the plain `unix` VFS (A: the extension is
//! not loaded at all) and through metadwr with protection enabled (B), one
//! child process per run, interleaved A B / B A over all workloads round
//! after round, after one discarded warm-up round. The report gives medians
//! and the ratio B/A of the medians, with the spread of the per-round
//! (paired) ratios as a noise indicator.
//!
//! Writes `<out>/results.json` (and a copy under `<out>/history/`), the
//! markdown report (`docs/bench.md`) and, through `scripts/plot-bench.py`,
//! the plot (`docs/bench.png`).

mod child;
// Shared with the integration tests, which the bench does not depend on.
#[path = "../../shared/extension_client.rs"]
mod extension_client;
mod json;
mod report;

use child::Opts;
use json::Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sub = args.get(1).map(String::as_str);
    let child_fn: Option<fn(&Opts) -> child::Res<child::Out>> = match sub {
        Some("__sample") => Some(child::sample),
        Some("__pair") => Some(child::pair),
        Some("__traffic") => Some(child::traffic),
        Some("__recovery") => Some(child::recovery),
        Some("__rss") => Some(child::rss),
        _ => None,
    };
    if let Some(f) = child_fn {
        match Opts::parse(&args[2..]).and_then(|o| f(&o)) {
            Ok(out) => out.print(),
            Err(e) => {
                eprintln!("metadwr-bench child: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if let Err(e) = orchestrate(&args[1..]) {
        eprintln!("metadwr-bench: {e}");
        std::process::exit(1);
    }
}

/// Sizes of the workloads.
#[derive(Clone, Copy)]
pub struct Scale {
    pub commits: u64,
    pub commit_block: u64,
    pub point_block: u64,
    pub schema_iters: u64,
    pub read_rows: u64,
    pub point_selects: u64,
    pub scans: u64,
    pub opens_small: u64,
    pub opens_big: u64,
    pub traffic_commits: u64,
    pub traffic_schema_iters: u64,
    pub rss_commits: u64,
    pub rss_rounds: usize,
    pub recovery_rounds: u64,
    pub speedtest_size: u32,
}

impl Scale {
    fn full() -> Scale {
        Scale {
            commits: 1000,
            commit_block: 20,
            point_block: 1000,
            schema_iters: 40,
            read_rows: 50_000,
            point_selects: 40_000,
            scans: 30,
            opens_small: 300,
            opens_big: 40,
            traffic_commits: 1000,
            traffic_schema_iters: 40,
            rss_commits: 500,
            rss_rounds: 5,
            recovery_rounds: 11,
            speedtest_size: 50,
        }
    }
    fn quick() -> Scale {
        Scale {
            commits: 300,
            commit_block: 20,
            point_block: 1000,
            schema_iters: 10,
            read_rows: 50_000,
            point_selects: 10_000,
            scans: 8,
            opens_small: 100,
            opens_big: 10,
            traffic_commits: 300,
            traffic_schema_iters: 10,
            rss_commits: 200,
            rss_rounds: 3,
            recovery_rounds: 5,
            speedtest_size: 10,
        }
    }
}

pub struct Cfg {
    pub root: PathBuf,
    pub so: PathBuf,
    pub out: PathBuf,
    pub md: PathBuf,
    pub png: PathBuf,
    pub python: Option<PathBuf>,
    pub rounds: usize,
    pub quick: bool,
    pub only: Option<Vec<String>>,
    pub plot: bool,
    pub exe: PathBuf,
    pub scale: Scale,
    pub command: String,
}

impl Cfg {
    fn wants(&self, group: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|g| g == group))
    }
}

fn parse_cfg(args: &[String]) -> Result<Cfg, String> {
    let mut root = std::env::current_dir().map_err(|e| e.to_string())?;
    let (mut so, mut out, mut md, mut png, mut python) = (None, None, None, None, None);
    let (mut rounds, mut quick, mut only, mut plot, mut st_size) = (None, false, None, true, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--root" => root = PathBuf::from(val()?),
            "--so" => so = Some(PathBuf::from(val()?)),
            "--out" => out = Some(PathBuf::from(val()?)),
            "--md" => md = Some(PathBuf::from(val()?)),
            "--png" => png = Some(PathBuf::from(val()?)),
            "--python" => python = Some(PathBuf::from(val()?)),
            "--rounds" => {
                rounds = Some(
                    val()?
                        .parse::<usize>()
                        .map_err(|_| "--rounds must be a number")?,
                )
            }
            "--quick" => quick = true,
            "--no-plot" => plot = false,
            "--only" => only = Some(val()?.split(',').map(str::to_string).collect()),
            "--speedtest-size" => {
                st_size = Some(val()?.parse::<u32>().map_err(|_| "bad --speedtest-size")?)
            }
            "-h" | "--help" => {
                println!("{}", include_str!("usage.txt"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    let root = std::fs::canonicalize(&root).map_err(|e| format!("--root: {e}"))?;
    let mut scale = if quick { Scale::quick() } else { Scale::full() };
    if let Some(s) = st_size {
        scale.speedtest_size = s;
    }
    let mut command = String::from("metadwr-bench");
    for a in args {
        command.push(' ');
        command.push_str(a);
    }
    Ok(Cfg {
        so: so.unwrap_or_else(|| root.join("libmetadwr.so")),
        out: out.unwrap_or_else(|| root.join("build/bench")),
        md: md.unwrap_or_else(|| root.join("docs/bench.md")),
        png: png.unwrap_or_else(|| root.join("docs/bench.png")),
        python,
        rounds: rounds.unwrap_or(if quick { 3 } else { 7 }).max(1),
        quick,
        only,
        plot,
        exe: std::env::current_exe().map_err(|e| e.to_string())?,
        scale,
        command,
        root,
    })
}

// ---------------------------------------------------------------- templates

const TEMPLATE_VERSION: &str = "3";

fn table_sql(i: u64) -> String {
    format!(
        "CREATE TABLE t{i}(id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL, \
         created TEXT DEFAULT CURRENT_TIMESTAMP);\
         INSERT INTO t{i}(name, value) VALUES ('row {i}', {i}.5);"
    )
}

fn make_template(path: &Path, tables: u64, kv: bool, read_rows: u64) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let conn =
        rusqlite::Connection::open_with_flags_and_vfs(&tmp, rusqlite::OpenFlags::default(), "unix")
            .map_err(|e| e.to_string())?;
    let mut sql = String::from("PRAGMA page_size=4096; PRAGMA journal_mode=DELETE; BEGIN;");
    for i in 0..tables {
        sql.push_str(&table_sql(i));
    }
    if kv {
        sql.push_str("CREATE TABLE kv(id INTEGER PRIMARY KEY, v BLOB);");
    }
    if read_rows > 0 {
        sql.push_str(&format!(
            "CREATE TABLE r(id INTEGER PRIMARY KEY, v BLOB);\
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{read_rows}) \
             INSERT INTO r(id, v) SELECT x, randomblob(200) FROM c;"
        ));
    }
    sql.push_str("COMMIT;");
    conn.execute_batch(&sql).map_err(|e| e.to_string())?;
    drop(conn);
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

pub struct Templates {
    pub small: PathBuf,
    pub big: PathBuf,
    pub read: PathBuf,
    pub schema: Vec<(u64, PathBuf)>,
}

pub const RECOVERY_SIZES: [u64; 4] = [1, 100, 1000, 5000];
pub const BIG_TABLES: u64 = 2000;

fn templates(cfg: &Cfg) -> Result<Templates, String> {
    let dir = cfg.out.join("templates");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let marker = dir.join("VERSION");
    let version = format!("{TEMPLATE_VERSION} rows={}", cfg.scale.read_rows);
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(version.as_str()) {
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let _ = std::fs::remove_file(entry.map_err(|e| e.to_string())?.path());
        }
    }
    let t = Templates {
        small: dir.join("small-10.db"),
        big: dir.join(format!("big-{BIG_TABLES}.db")),
        read: dir.join("read.db"),
        schema: RECOVERY_SIZES
            .iter()
            .map(|&n| (n, dir.join(format!("schema-{n}.db"))))
            .collect(),
    };
    let mk = |p: &Path, tables, kv, rows| -> Result<(), String> {
        if !p.exists() {
            eprintln!("  template {}", p.display());
            make_template(p, tables, kv, rows)?;
        }
        Ok(())
    };
    mk(&t.small, 10, true, 0)?;
    mk(&t.big, BIG_TABLES, true, 0)?;
    mk(&t.read, 10, true, cfg.scale.read_rows)?;
    for (n, p) in &t.schema {
        mk(p, *n, false, 0)?;
    }
    std::fs::write(&marker, version).map_err(|e| e.to_string())?;
    Ok(t)
}

// ---------------------------------------------------------------- A/B runs

pub enum Runner {
    /// `metadwr-bench __pair <args>`: both modes in one process, blocks of
    /// operations interleaved.
    Pair(Vec<String>),
    /// `metadwr-bench __sample <args> --mode plain|metadwr …`: one process
    /// per mode (the plain one never loads the extension).
    Child(Vec<String>),
    /// speedtest1: the two binaries with their arguments; wall time.
    External {
        plain: PathBuf,
        metadwr: PathBuf,
        args: Vec<String>,
    },
}

pub struct Spec {
    pub id: String,
    pub group: &'static str,
    pub label: String,
    pub target: Option<f64>,
    pub unit: &'static str,
    pub runner: Runner,
}

/// Per-operation seconds measured in one round.
#[derive(Default, Clone)]
pub struct RoundData {
    pub plain: Vec<f64>,
    pub metadwr: Vec<f64>,
    /// CPU seconds (user + system) per operation of the same runs.
    pub plain_cpu: Vec<f64>,
    pub metadwr_cpu: Vec<f64>,
    /// speedtest1 only: the per-test times it printed, per mode.
    pub plain_tests: Vec<(String, f64)>,
    pub metadwr_tests: Vec<(String, f64)>,
}

/// speedtest1's own per-test lines: ` 100 - 5000 INSERTs …....    0.747s`.
fn speedtest_tests(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (id, rest) = l.trim_start().split_once(" - ")?;
            id.trim().parse::<u32>().ok()?;
            let secs = rest.split_whitespace().last()?.strip_suffix('s')?;
            Some((id.trim().to_string(), secs.parse::<f64>().ok()?))
        })
        .collect()
}

#[derive(Default)]
pub struct AbResult {
    pub rounds: Vec<RoundData>,
    pub ops: u64,
    /// -dwr stats of the last metadwr run: generations, pages, bytes, fsyncs.
    pub dwr: Option<[u64; 4]>,
    pub error: Option<String>,
    pub note: Option<String>,
    /// Per-test times of the last external run (speedtest1).
    pub last_tests: Vec<(String, f64)>,
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn ab_specs(cfg: &Cfg, t: &Templates, speedtest: Option<(PathBuf, PathBuf)>) -> Vec<Spec> {
    let sc = cfg.scale;
    let mut v = Vec::new();
    let p = |p: &Path| p.display().to_string();
    if cfg.wants("commit") {
        for (journal, jl) in [("delete", "rollback"), ("wal", "WAL")] {
            for sync in ["normal", "full"] {
                // WAL with synchronous=NORMAL commits without an fsync, in
                // ~15 µs: more commits and bigger blocks, so that a block
                // lasts milliseconds like the others.
                let (n, block) = if journal == "wal" && sync == "normal" {
                    (sc.commits * 10, sc.commit_block * 10)
                } else {
                    (sc.commits, sc.commit_block)
                };
                v.push(Spec {
                    id: format!("commit-{journal}-{sync}"),
                    group: "commit-heavy",
                    label: format!("commit-heavy, {jl}, synchronous={}", sync.to_uppercase()),
                    target: Some(1.03),
                    unit: "commit",
                    runner: Runner::Pair(vec![
                        s("--kind"),
                        s("commit"),
                        s("--n"),
                        s(n),
                        s("--block"),
                        s(block),
                        s("--template"),
                        p(&t.small),
                        s("--journal"),
                        s(journal),
                        s("--sync"),
                        s(sync),
                    ]),
                });
            }
        }
        v.push(Spec {
            id: format!("commit-delete-normal-{BIG_TABLES}t"),
            group: "commit-heavy",
            label: format!("commit-heavy, rollback, NORMAL, {BIG_TABLES}-table schema"),
            target: Some(1.03),
            unit: "commit",
            runner: Runner::Pair(vec![
                s("--kind"),
                s("commit"),
                s("--n"),
                s(sc.commits),
                s("--block"),
                s(sc.commit_block),
                s("--template"),
                p(&t.big),
                s("--journal"),
                s("delete"),
                s("--sync"),
                s("normal"),
            ]),
        });
    }
    if cfg.wants("rw") {
        // Two connections to one database: one commits a row, the other
        // then reads (and so sees page 1 change under its copy).
        for (tables, tpl) in [(10, &t.small), (BIG_TABLES, &t.big)] {
            v.push(Spec {
                id: format!("rw-{tables}t"),
                group: "two connections",
                label: format!("writer commits, 2nd connection reads, rollback, {tables} tables"),
                target: None,
                unit: "commit+read",
                runner: Runner::Pair(vec![
                    s("--kind"),
                    s("rw"),
                    s("--n"),
                    s(sc.commits / 2),
                    s("--block"),
                    s(sc.commit_block),
                    s("--template"),
                    p(tpl),
                    s("--journal"),
                    s("delete"),
                    s("--sync"),
                    s("normal"),
                ]),
            });
        }
    }
    if cfg.wants("schema") {
        for (tables, tpl) in [(10, &t.small), (BIG_TABLES, &t.big)] {
            v.push(Spec {
                id: format!("schema-{tables}t"),
                group: "schema-heavy",
                label: format!("schema-heavy, CREATE/ALTER/DROP, {tables} tables"),
                target: None,
                unit: "DDL statement",
                runner: Runner::Pair(vec![
                    s("--kind"),
                    s("schema"),
                    s("--n"),
                    s(sc.schema_iters),
                    s("--block"),
                    s(1),
                    s("--template"),
                    p(tpl),
                    s("--journal"),
                    s("delete"),
                    s("--sync"),
                    s("normal"),
                ]),
            });
        }
    }
    if cfg.wants("read") {
        for (kind, n, block, what) in [
            (
                "point",
                sc.point_selects,
                sc.point_block,
                "point selects by rowid",
            ),
            ("scan", sc.scans, 1, "full scan"),
        ] {
            for mmap in [0u64, 268_435_456] {
                v.push(Spec {
                    id: format!("read-{kind}-mmap{}", if mmap > 0 { "256M" } else { "0" }),
                    group: "read-heavy",
                    label: format!(
                        "read-heavy, {what}, mmap_size={}",
                        if mmap > 0 { "256M" } else { "0" }
                    ),
                    target: Some(1.01),
                    unit: if kind == "point" { "select" } else { "scan" },
                    runner: Runner::Pair(vec![
                        s("--kind"),
                        s(kind),
                        s("--n"),
                        s(n),
                        s("--block"),
                        s(block),
                        s("--template"),
                        p(&t.read),
                        s("--rows"),
                        s(sc.read_rows),
                        s("--mmap"),
                        s(mmap),
                    ]),
                });
            }
        }
    }
    if cfg.wants("control") {
        // A/A: both sides plain. How far from 1.000 these land is the
        // harness's noise floor on this machine at the time of the run.
        v.push(Spec {
            id: "control-commit".into(),
            group: "control (A/A)",
            label: "control A/A: commit-heavy, rollback, NORMAL".into(),
            target: None,
            unit: "commit",
            runner: Runner::Pair(vec![
                s("--kind"),
                s("commit"),
                s("--n"),
                s(sc.commits),
                s("--block"),
                s(sc.commit_block),
                s("--template"),
                p(&t.small),
                s("--journal"),
                s("delete"),
                s("--sync"),
                s("normal"),
                s("--control"),
                s(1),
            ]),
        });
        v.push(Spec {
            id: "control-scan".into(),
            group: "control (A/A)",
            label: "control A/A: full scan, mmap_size=0".into(),
            target: None,
            unit: "scan",
            runner: Runner::Pair(vec![
                s("--kind"),
                s("scan"),
                s("--n"),
                s(sc.scans),
                s("--block"),
                s(1),
                s("--template"),
                p(&t.read),
                s("--rows"),
                s(sc.read_rows),
                s("--mmap"),
                s(0),
                s("--control"),
                s(1),
            ]),
        });
    }
    if cfg.wants("open") {
        for (tables, tpl, n) in [
            (10, &t.small, sc.opens_small),
            (BIG_TABLES, &t.big, sc.opens_big),
        ] {
            v.push(Spec {
                id: format!("open-{tables}t"),
                group: "open",
                label: format!("open + first query, {tables} tables"),
                target: None,
                unit: "open",
                runner: Runner::Child(vec![
                    s("--kind"),
                    s("open"),
                    s("--n"),
                    s(n),
                    s("--template"),
                    p(tpl),
                ]),
            });
        }
    }
    if let Some((plain, metadwr)) = speedtest {
        for (journal, jl) in [("delete", "rollback"), ("wal", "WAL")] {
            let mut args = vec![s("--size"), s(sc.speedtest_size)];
            if journal == "wal" {
                args.extend([s("--journal"), s("wal")]);
            }
            v.push(Spec {
                id: format!("speedtest1-{journal}"),
                group: "speedtest1",
                label: format!("speedtest1 --size {}, {jl}", sc.speedtest_size),
                target: Some(1.02),
                unit: "run",
                runner: Runner::External {
                    plain: plain.clone(),
                    metadwr: metadwr.clone(),
                    args,
                },
            });
        }
    }
    v
}

/// Runs a child subcommand; returns its RESULT fields.
fn run_child(
    cfg: &Cfg,
    sub: &str,
    args: &[String],
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let out = Command::new(&cfg.exe)
        .arg(sub)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cfg.exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{sub} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("{sub}: no RESULT line in {stdout}"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn num(m: &std::collections::BTreeMap<String, String>, k: &str) -> f64 {
    m.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

fn list(m: &std::collections::BTreeMap<String, String>, k: &str) -> Vec<f64> {
    m.get(k)
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

/// One paired run (both modes) of `spec`.
fn run_pair(
    cfg: &Cfg,
    spec: &Spec,
    args: &[String],
    res: &mut AbResult,
) -> Result<RoundData, String> {
    let dir = cfg.out.join("work").join(&spec.id);
    let mut a = args.to_vec();
    a.extend([
        s("--dir"),
        dir.display().to_string(),
        s("--so"),
        cfg.so.display().to_string(),
    ]);
    let m = run_child(cfg, "__pair", &a)?;
    res.ops = num(&m, "ops") as u64;
    res.dwr = Some([
        num(&m, "generations") as u64,
        num(&m, "pages") as u64,
        num(&m, "bytes") as u64,
        num(&m, "fsyncs") as u64,
    ]);
    Ok(RoundData {
        plain: list(&m, "plain"),
        metadwr: list(&m, "metadwr"),
        plain_cpu: list(&m, "plain_cpu"),
        metadwr_cpu: list(&m, "metadwr_cpu"),
        ..RoundData::default()
    })
}

/// One run of one mode of `spec`; returns wall and CPU seconds per operation.
fn run_one(
    cfg: &Cfg,
    spec: &Spec,
    metadwr: bool,
    res: &mut AbResult,
) -> Result<(f64, f64), String> {
    let mode = if metadwr { "metadwr" } else { "plain" };
    let dir = cfg.out.join("work").join(format!("{}-{mode}", spec.id));
    match &spec.runner {
        Runner::Pair(_) => unreachable!("paired runs go through run_pair"),
        Runner::Child(args) => {
            let mut a = args.clone();
            a.extend([
                s("--mode"),
                s(mode),
                s("--dir"),
                dir.display().to_string(),
                s("--so"),
                cfg.so.display().to_string(),
            ]);
            let m = run_child(cfg, "__sample", &a)?;
            res.ops = num(&m, "ops") as u64;
            if metadwr {
                res.dwr = Some([
                    num(&m, "generations") as u64,
                    num(&m, "pages") as u64,
                    num(&m, "bytes") as u64,
                    num(&m, "fsyncs") as u64,
                ]);
            }
            let ops = num(&m, "ops").max(1.0);
            Ok((num(&m, "secs") / ops, num(&m, "cpu") / ops))
        }
        Runner::External {
            plain,
            metadwr: mbin,
            args,
        } => {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let db = dir.join("speedtest1.db");
            let bin = if metadwr { mbin } else { plain };
            let mut cmd = Command::new(bin);
            cmd.args(args).arg(&db).stdin(Stdio::null());
            cmd.env_remove("METADWR_ENABLE");
            if metadwr {
                cmd.env("METADWR_ENABLE", "1");
            }
            let cpu0 = child::cpu_seconds(libc::RUSAGE_CHILDREN);
            let t0 = Instant::now();
            let out = cmd
                .output()
                .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
            let secs = t0.elapsed().as_secs_f64();
            let cpu = child::cpu_seconds(libc::RUSAGE_CHILDREN) - cpu0;
            if !out.status.success() {
                return Err(format!(
                    "{} failed: {}",
                    bin.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            res.ops = 1;
            res.last_tests = speedtest_tests(&String::from_utf8_lossy(&out.stdout));
            let dwr = dir.join("speedtest1.db-dwr");
            if metadwr && !dwr.exists() && db.exists() {
                res.note =
                    Some("no -dwr after the metadwr run: protection may not have been on".into());
            }
            let _ = std::fs::remove_dir_all(&dir);
            Ok((secs, cpu))
        }
    }
}

fn run_ab(cfg: &Cfg, specs: &[Spec]) -> Vec<AbResult> {
    let mut results: Vec<AbResult> = specs.iter().map(|_| AbResult::default()).collect();
    // Round 0 is a warm-up and is discarded (paired runs warm up inside).
    for round in 0..=cfg.rounds {
        let t0 = Instant::now();
        for (i, spec) in specs.iter().enumerate() {
            let res = &mut results[i];
            if res.error.is_some() {
                continue;
            }
            if let Runner::Pair(args) = &spec.runner {
                if round == 0 {
                    continue;
                }
                let mut args = args.clone();
                args.extend([s("--swap"), s(round % 2)]);
                match run_pair(cfg, spec, &args, res) {
                    Ok(data) => res.rounds.push(data),
                    Err(e) => {
                        eprintln!("  {}: {e}", spec.id);
                        res.error = Some(e);
                    }
                }
                continue;
            }
            let order = if (round + i) % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            let mut data = RoundData::default();
            for metadwr in order {
                match run_one(cfg, spec, metadwr, res) {
                    Ok((secs, cpu)) => {
                        let tests = std::mem::take(&mut res.last_tests);
                        if metadwr {
                            data.metadwr.push(secs);
                            data.metadwr_cpu.push(cpu);
                            data.metadwr_tests = tests;
                        } else {
                            data.plain.push(secs);
                            data.plain_cpu.push(cpu);
                            data.plain_tests = tests;
                        }
                    }
                    Err(e) => {
                        eprintln!("  {}: {e}", spec.id);
                        res.error = Some(e);
                        break;
                    }
                }
            }
            if round > 0 && res.error.is_none() {
                res.rounds.push(data);
            }
        }
        eprintln!(
            "  round {round}/{}{} done in {:.1} s",
            cfg.rounds,
            if round == 0 { " (warm-up)" } else { "" },
            t0.elapsed().as_secs_f64()
        );
    }
    results
}

// ---------------------------------------------------------------- others

pub struct TrafficSpec {
    pub label: String,
    pub policy: &'static str,
    pub args: Vec<String>,
}

fn traffic_specs(cfg: &Cfg, t: &Templates) -> Vec<TrafficSpec> {
    let sc = cfg.scale;
    let p = |p: &Path| p.display().to_string();
    let commit = |journal: &str, tpl: &Path| {
        vec![
            s("--kind"),
            s("commit"),
            s("--n"),
            s(sc.traffic_commits),
            s("--template"),
            p(tpl),
            s("--journal"),
            s(journal),
            s("--sync"),
            s("normal"),
        ]
    };
    let mut v = Vec::new();
    for policy in ["periodic", "full", "off"] {
        v.push(TrafficSpec {
            label: "commit-heavy, rollback, 10 tables".into(),
            policy,
            args: commit("delete", &t.small),
        });
    }
    for policy in ["periodic", "full"] {
        let mut args = commit("wal", &t.small);
        args.extend([s("--autockpt"), s(100)]);
        v.push(TrafficSpec {
            label: "commit-heavy, WAL, wal_autocheckpoint=100".into(),
            policy,
            args,
        });
    }
    v.push(TrafficSpec {
        label: format!("commit-heavy, rollback, {BIG_TABLES} tables"),
        policy: "periodic",
        args: commit("delete", &t.big),
    });
    for (tables, tpl) in [(10, &t.small), (BIG_TABLES, &t.big)] {
        for policy in ["periodic", "full"] {
            v.push(TrafficSpec {
                label: format!("schema-heavy (each DDL statement a commit), {tables} tables"),
                policy,
                args: vec![
                    s("--kind"),
                    s("schema"),
                    s("--n"),
                    s(sc.traffic_schema_iters),
                    s("--template"),
                    p(tpl),
                    s("--journal"),
                    s("delete"),
                    s("--sync"),
                    s("normal"),
                ],
            });
        }
    }
    v
}

fn run_traffic(cfg: &Cfg, specs: &[TrafficSpec]) -> Vec<Json> {
    let mut v = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut a = spec.args.clone();
        a.extend([
            s("--policy"),
            s(spec.policy),
            s("--dir"),
            cfg.out
                .join("work")
                .join(format!("traffic-{i}"))
                .display()
                .to_string(),
            s("--so"),
            cfg.so.display().to_string(),
        ]);
        let mut j = Json::obj()
            .with("label", spec.label.as_str())
            .with("policy", spec.policy);
        match run_child(cfg, "__traffic", &a) {
            Ok(m) => {
                for k in [
                    "commits",
                    "generations",
                    "pages",
                    "bytes",
                    "fsyncs",
                    "flag_updates",
                    "changed",
                    "excess_commits",
                    "max_pages_one_commit",
                    "protected_pages",
                ] {
                    j.set(k, num(&m, k));
                }
            }
            Err(e) => {
                eprintln!("  traffic {}: {e}", spec.label);
                j.set("error", e);
            }
        }
        v.push(j);
    }
    v
}

fn run_recovery(cfg: &Cfg, t: &Templates) -> Vec<Json> {
    let mut v = Vec::new();
    for (n, tpl) in &t.schema {
        let dir = cfg.out.join("work").join(format!("recovery-{n}"));
        let base = vec![
            s("--tables"),
            s(n),
            s("--dir"),
            dir.display().to_string(),
            s("--so"),
            cfg.so.display().to_string(),
        ];
        let mut j = Json::obj().with("tables", *n);
        let phase = |p: &str, extra: &[String]| {
            let mut a = base.clone();
            a.extend([s("--phase"), s(p)]);
            a.extend_from_slice(extra);
            run_child(cfg, "__recovery", &a)
        };
        let result = (|| -> Result<(), String> {
            let m = phase("prepare", &[s("--template"), tpl.display().to_string()])?;
            j.set("db_bytes", num(&m, "db_bytes"));
            j.set("dwr_bytes", num(&m, "dwr_bytes"));
            let (mut rec, mut load) = (vec![], vec![]);
            // One process per meta_recover; the first is a warm-up.
            for round in 0..=cfg.scale.recovery_rounds {
                let m = phase("pragma", &[])?;
                if round > 0 {
                    rec.push(num(&m, "recover_ms"));
                    load.push(num(&m, "load_ms"));
                }
            }
            j.set("recover_ms", median(&rec));
            j.set("recover_runs_ms", rec);
            j.set("load_adopt_ms", median(&load));
            let m = phase("inproc", &[s("--rounds"), s(cfg.scale.recovery_rounds)])?;
            for k in ["heal_open_ms", "open_metadwr_ms", "open_plain_ms"] {
                j.set(k, num(&m, k));
            }
            Ok(())
        })();
        if let Err(e) = result {
            eprintln!("  recovery {n}: {e}");
            j.set("error", e);
        }
        let _ = std::fs::remove_dir_all(&dir);
        v.push(j);
    }
    v
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn run_rss(cfg: &Cfg, t: &Templates) -> Vec<Json> {
    let big = &t.schema.last().expect("schema templates").1;
    let mut v = Vec::new();
    for (label, tpl) in [
        ("10 tables".to_string(), &t.small),
        (format!("{} tables", RECOVERY_SIZES[3]), big),
    ] {
        let (mut plain, mut metadwr) = (vec![], vec![]);
        let mut err = None;
        for round in 0..cfg.scale.rss_rounds {
            let order = if round % 2 == 0 {
                ["plain", "metadwr"]
            } else {
                ["metadwr", "plain"]
            };
            for mode in order {
                let a = vec![
                    s("--mode"),
                    s(mode),
                    s("--n"),
                    s(cfg.scale.rss_commits),
                    s("--template"),
                    tpl.display().to_string(),
                    s("--dir"),
                    cfg.out
                        .join("work")
                        .join(format!("rss-{mode}"))
                        .display()
                        .to_string(),
                    s("--so"),
                    cfg.so.display().to_string(),
                ];
                match run_child(cfg, "__rss", &a) {
                    Ok(m) => {
                        if mode == "plain" {
                            plain.push(num(&m, "hwm_kb"))
                        } else {
                            metadwr.push(num(&m, "hwm_kb"))
                        }
                    }
                    Err(e) => err = Some(e),
                }
            }
        }
        let mut j = Json::obj()
            .with("database", label.as_str())
            .with("commits", cfg.scale.rss_commits)
            .with("plain_kb", median(&plain))
            .with("metadwr_kb", median(&metadwr))
            .with("plain_runs_kb", plain)
            .with("metadwr_runs_kb", metadwr);
        if let Some(e) = err {
            eprintln!("  rss {label}: {e}");
            j.set("error", e);
        }
        v.push(j);
    }
    v
}

/// The speedtest1 binaries, built by scripts/build-speedtest1.sh when it
/// exists and they do not. Err: why speedtest1 is skipped.
fn speedtest_binaries(cfg: &Cfg) -> Result<(PathBuf, PathBuf), String> {
    let plain = cfg.root.join("build/speedtest1");
    let metadwr = cfg.root.join("build/speedtest1-metadwr");
    let present = || plain.exists() && metadwr.exists();
    if !present() {
        let script = cfg.root.join("scripts/build-speedtest1.sh");
        if !script.exists() {
            return Err(format!(
                "skipped: {} and {} do not exist and there is no scripts/build-speedtest1.sh to build them",
                plain.display(),
                metadwr.display()
            ));
        }
        eprintln!("  building speedtest1 with {}", script.display());
        let log = cfg.out.join("build-speedtest1.log");
        let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let status = Command::new("bash")
            .arg(&script)
            .current_dir(&cfg.root)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(|e| e.to_string())?)
            .stderr(logf)
            .status()
            .map_err(|e| format!("skipped: cannot run {}: {e}", script.display()))?;
        if !status.success() || !present() {
            return Err(format!(
                "skipped: scripts/build-speedtest1.sh did not produce build/speedtest1 and build/speedtest1-metadwr ({status}; log in {})",
                log.display()
            ));
        }
    }
    Ok((plain, metadwr))
}

fn orchestrate(args: &[String]) -> Result<(), String> {
    let cfg = parse_cfg(args)?;
    if !cfg.so.exists() {
        return Err(format!(
            "{} does not exist: run `make build` first (or pass --so)",
            cfg.so.display()
        ));
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let machine = report::machine(&cfg);
    // Every run of this bench uses one private copy of the extension, so a
    // `make build` elsewhere during the run cannot mix two versions (or
    // rewrite a library that a child has mapped).
    let mut cfg = cfg;
    let private = cfg.out.join("libmetadwr.so");
    let _ = std::fs::remove_file(&private);
    std::fs::copy(&cfg.so, &private)
        .map_err(|e| format!("cannot copy {}: {e}", cfg.so.display()))?;
    cfg.so = private;
    let cfg = cfg;
    eprintln!(
        "metadwr-bench: {} rounds{}, results in {}",
        cfg.rounds,
        if cfg.quick { " (quick)" } else { "" },
        cfg.out.display()
    );
    let t = templates(&cfg)?;
    let speedtest = if cfg.wants("speedtest1") {
        speedtest_binaries(&cfg)
    } else {
        Err("not selected (--only)".into())
    };
    if let Err(why) = &speedtest {
        eprintln!("  speedtest1: {why}");
    }
    let specs = ab_specs(&cfg, &t, speedtest.clone().ok());
    eprintln!("A/B workloads: {}", specs.len());
    let ab = run_ab(&cfg, &specs);
    let traffic = if cfg.wants("traffic") {
        eprintln!("-dwr traffic");
        run_traffic(&cfg, &traffic_specs(&cfg, &t))
    } else {
        vec![]
    };
    let recovery = if cfg.wants("recovery") {
        eprintln!("recovery");
        run_recovery(&cfg, &t)
    } else {
        vec![]
    };
    let rss = if cfg.wants("rss") {
        eprintln!("peak RSS");
        run_rss(&cfg, &t)
    } else {
        vec![]
    };
    let _ = std::fs::remove_dir_all(cfg.out.join("work"));
    let mut machine = machine;
    machine.set("load_average_end", report::loadavg());
    machine.set("duration_s", started.elapsed().as_secs_f64());
    let results = report::results_json(
        &cfg,
        machine,
        &specs,
        &ab,
        traffic,
        recovery,
        rss,
        speedtest.as_ref().err().cloned(),
    );
    let json_path = cfg.out.join("results.json");
    std::fs::write(&json_path, results.render()).map_err(|e| e.to_string())?;
    let hist = cfg.out.join("history");
    let _ = std::fs::create_dir_all(&hist);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let _ = std::fs::copy(&json_path, hist.join(format!("results-{stamp}.json")));
    let plot_note = if cfg.plot {
        report::plot(&cfg, &json_path)
    } else {
        Some("not generated (--no-plot)".to_string())
    };
    let md = report::markdown(&cfg, &results, plot_note.as_deref());
    if let Some(dir) = cfg.md.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&cfg.md, md).map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {}, {}{} in {:.0} s",
        json_path.display(),
        cfg.md.display(),
        if plot_note.is_none() {
            format!(", {}", cfg.png.display())
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
