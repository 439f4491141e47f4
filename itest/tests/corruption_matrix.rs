//! The corruption matrix: build a database through metadwr, damage its page
//! 1 and/or `sqlite_schema` pages on disk, and check that metadwr restores
//! exactly what was there.
//!
//! Seven axes (see [`Case`]): journal mode (4) × page size (4) ×
//! auto_vacuum (3) × schema size (3: one table, 40 tables with indexes,
//! views and triggers, 2000 tables) × damage kind (5) × when protection is
//! enabled (2) × which pages are damaged (4). Their full product (5,760
//! combinations) is too slow, so [`covering_design`] builds a deterministic
//! pairwise covering array of [`EXPECTED_ROWS`] rows: every feasible pair of
//! axis values appears in at least one row. Each row then runs with every
//! way of asking for the restore (3, [`Route`]), except the pragma for
//! damage it does not recognise: [`EXPECTED_CASES`] cases in all.
//! `covering_design_covers_every_pair` checks the covering property, the
//! case count, and the extra requirements (the 2000-table schema with 512-
//! and 4096-byte pages, with WAL and with DELETE, and with a damaged
//! overflow page).
//!
//! Constraints of the design:
//! * damaging "one non-1 B-tree page" or "an overflow page" needs a schema
//!   tree with more than page 1, so not with the one-table schema, and the
//!   medium schema has no B-tree page besides page 1 at 64 KiB pages;
//! * recovery through `PRAGMA meta_double_write=enabled` only acts on
//!   *structural* damage, so it is not combined with bit flips confined to
//!   one non-1 page (a flip there may leave the tree structurally valid).
//!   Every other damage is structural: page 1 loses its magic string, a
//!   B-tree page its header, an overflow page (never the last of its chain)
//!   its next-page pointer.
//!
//! Each route's cases run in two test functions (even and odd case
//! numbers), so a failure names the route and both test threads stay busy.
//! Set `METADWR_MATRIX_CASE=<n>` to run a single case (numbers as printed).

mod common;

use common::schema::{self, SchemaSize};
use common::*;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Journal {
    Delete,
    Truncate,
    Persist,
    Wal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AutoVacuum {
    None,
    Full,
    Incremental,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnableAt {
    /// `PRAGMA meta_double_write=enabled` on the empty database.
    BeforeSchema,
    /// ... once the schema and rows exist.
    AfterSchema,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Page 1 alone.
    Page1,
    /// One B-tree page of the schema tree other than page 1.
    OneSchemaPage,
    /// Page 1 and every other page of the schema tree.
    AllSchemaPages,
    /// One overflow page of the schema tree that is not the last of its
    /// chain.
    OverflowPage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `PRAGMA meta_recover` on a connection opened after the damage (a
    /// SELECT cannot be prepared there on SQLite 3.46+: it reads the
    /// damaged schema first).
    MetaRecover,
    /// `PRAGMA meta_double_write=enabled` on a connection opened after the
    /// damage, which must answer `recovered: …`.
    Pragma,
    /// `SELECT meta_recover()` on a connection opened (and schema-loaded)
    /// before the damage, like a long-running program that notices it.
    LongLived,
}

const JOURNALS: [Journal; 4] = [
    Journal::Delete,
    Journal::Truncate,
    Journal::Persist,
    Journal::Wal,
];
const PAGE_SIZES: [u32; 4] = [512, 1024, 4096, 65536];
const AUTO_VACUUMS: [AutoVacuum; 3] = [AutoVacuum::None, AutoVacuum::Full, AutoVacuum::Incremental];
const ENABLES: [EnableAt; 2] = [EnableAt::BeforeSchema, EnableAt::AfterSchema];
const TARGETS: [Target; 4] = [
    Target::Page1,
    Target::OneSchemaPage,
    Target::AllSchemaPages,
    Target::OverflowPage,
];
const ROUTES: [Route; 3] = [Route::MetaRecover, Route::Pragma, Route::LongLived];

/// Number of axes of the covering design (the route is crossed in full).
const N: usize = 7;
/// Number of values of each axis, in [`Case::from_indexes`] order.
const AXES: [usize; N] = [4, 4, 3, 3, 5, 2, 4];

#[derive(Debug, Clone, Copy)]
struct Case {
    journal: Journal,
    page_size: u32,
    auto_vacuum: AutoVacuum,
    schema: SchemaSize,
    damage: Damage,
    enable: EnableAt,
    target: Target,
    route: Route,
}

impl Case {
    fn from_indexes(v: &[usize; N], route: Route) -> Case {
        Case {
            journal: JOURNALS[v[0]],
            page_size: PAGE_SIZES[v[1]],
            auto_vacuum: AUTO_VACUUMS[v[2]],
            schema: SchemaSize::ALL[v[3]],
            damage: Damage::ALL[v[4]],
            enable: ENABLES[v[5]],
            target: TARGETS[v[6]],
            route,
        }
    }

    fn indexes(&self) -> [usize; N] {
        [
            JOURNALS.iter().position(|&j| j == self.journal).unwrap(),
            PAGE_SIZES
                .iter()
                .position(|&p| p == self.page_size)
                .unwrap(),
            AUTO_VACUUMS
                .iter()
                .position(|&a| a == self.auto_vacuum)
                .unwrap(),
            SchemaSize::ALL
                .iter()
                .position(|&s| s == self.schema)
                .unwrap(),
            Damage::ALL.iter().position(|&d| d == self.damage).unwrap(),
            ENABLES.iter().position(|&e| e == self.enable).unwrap(),
            TARGETS.iter().position(|&t| t == self.target).unwrap(),
        ]
    }

    /// Damage the pragma recognises as structural (see the module docs).
    fn structural(&self) -> bool {
        self.damage != Damage::BitFlip
            || matches!(self.target, Target::Page1 | Target::AllSchemaPages)
    }
}

const PS_65536: usize = 3;
const SCHEMA_ONE: usize = 0;
const SCHEMA_MEDIUM: usize = 1;
const TARGET_ONE_SCHEMA: usize = 1;
const TARGET_OVERFLOW: usize = 3;

/// Whether a (partial) assignment violates a constraint. `None` means the
/// axis is not assigned yet.
fn violates(v: &[Option<usize>; N]) -> bool {
    let needs_tree = matches!(v[6], Some(TARGET_ONE_SCHEMA | TARGET_OVERFLOW));
    if needs_tree && v[3] == Some(SCHEMA_ONE) {
        return true;
    }
    // The medium schema fits page 1 (plus overflow pages) at 64 KiB pages.
    v[6] == Some(TARGET_ONE_SCHEMA) && v[3] == Some(SCHEMA_MEDIUM) && v[1] == Some(PS_65536)
}

/// Whether the pair (axis a = x, axis b = y) can appear in a valid case.
fn pair_feasible(a: usize, x: usize, b: usize, y: usize) -> bool {
    // Every constraint can be satisfied by changing an axis outside the
    // pair (target Page1 or schema Big satisfy them all), so a pair is
    // feasible iff it is not itself forbidden.
    let mut v = [None; N];
    v[a] = Some(x);
    v[b] = Some(y);
    !violates(&v)
}

/// The pairwise covering array over the first [`N`] axes, built greedily
/// and deterministically: start each new row from the first still-uncovered
/// pair, then give every other axis the value that covers the most
/// uncovered pairs (lowest index on ties), never breaking a constraint.
// Axis numbers index several parallel arrays; ranges read best here.
#[allow(clippy::needless_range_loop)]
fn covering_design() -> Vec<[usize; N]> {
    let mut uncovered: BTreeSet<(usize, usize, usize, usize)> = BTreeSet::new();
    for a in 0..N {
        for b in a + 1..N {
            for x in 0..AXES[a] {
                for y in 0..AXES[b] {
                    if pair_feasible(a, x, b, y) {
                        uncovered.insert((a, x, b, y));
                    }
                }
            }
        }
    }
    let mut rows = Vec::new();
    while let Some(&(a, x, b, y)) = uncovered.iter().next() {
        let mut v: [Option<usize>; N] = [None; N];
        v[a] = Some(x);
        v[b] = Some(y);
        for axis in 0..N {
            if v[axis].is_some() {
                continue;
            }
            let mut best: Option<(usize, usize)> = None;
            for value in 0..AXES[axis] {
                let mut trial = v;
                trial[axis] = Some(value);
                if violates(&trial) {
                    continue;
                }
                let gain = (0..N)
                    .filter(|&other| other != axis)
                    .filter_map(|other| trial[other].map(|ov| (other, ov)))
                    .filter(|&(other, ov)| {
                        let key = if other < axis {
                            (other, ov, axis, value)
                        } else {
                            (axis, value, other, ov)
                        };
                        uncovered.contains(&key)
                    })
                    .count();
                if best.is_none_or(|(g, _)| gain > g) {
                    best = Some((gain, value));
                }
            }
            v[axis] = Some(best.expect("some value satisfies the constraints").1);
        }
        let full: [usize; N] = v.map(Option::unwrap);
        for a in 0..N {
            for b in a + 1..N {
                uncovered.remove(&(a, full[a], b, full[b]));
            }
        }
        rows.push(full);
    }
    rows
}

/// Every design row with every route, except the pragma route for damage
/// it does not recognise.
fn cases() -> Vec<Case> {
    covering_design()
        .iter()
        .flat_map(|row| ROUTES.iter().map(|&r| Case::from_indexes(row, r)))
        .filter(|c| c.route != Route::Pragma || c.structural())
        .collect()
}

/// Rows of the covering design and cases run; asserted so that a change is
/// noticed and documented.
const EXPECTED_ROWS: usize = 27;
const EXPECTED_CASES: usize = 79;

#[test]
#[allow(clippy::needless_range_loop)]
fn covering_design_covers_every_pair() {
    let rows = covering_design();
    for r in &rows {
        assert!(!violates(&r.map(Some)), "row {r:?} breaks a constraint");
    }
    for a in 0..N {
        for b in a + 1..N {
            for x in 0..AXES[a] {
                for y in 0..AXES[b] {
                    let covered = rows.iter().any(|r| r[a] == x && r[b] == y);
                    assert_eq!(
                        covered,
                        pair_feasible(a, x, b, y),
                        "pair axis{a}={x} axis{b}={y}"
                    );
                }
            }
        }
    }
    let cases = cases();
    for c in &cases {
        assert!(rows.contains(&c.indexes()));
    }
    for route in ROUTES {
        assert!(cases.iter().filter(|c| c.route == route).count() >= rows.len() - 4);
    }
    let big = |f: &dyn Fn(&Case) -> bool| cases.iter().any(|c| c.schema == SchemaSize::Big && f(c));
    assert!(big(&|c| c.page_size == 512));
    assert!(big(&|c| c.page_size == 4096));
    assert!(big(&|c| c.journal == Journal::Wal));
    assert!(big(&|c| c.journal == Journal::Delete));
    assert!(big(&|c| c.target == Target::OverflowPage));
    for (n, c) in cases.iter().enumerate() {
        eprintln!("case {n}: {c:?}");
    }
    assert_eq!(
        rows.len(),
        EXPECTED_ROWS,
        "design size changed: update the docs"
    );
    assert_eq!(
        cases.len(),
        EXPECTED_CASES,
        "case count changed: update the docs"
    );
}

fn journal_sql(j: Journal) -> &'static str {
    match j {
        Journal::Delete => "delete",
        Journal::Truncate => "truncate",
        Journal::Persist => "persist",
        Journal::Wal => "wal",
    }
}

fn auto_vacuum_value(a: AutoVacuum) -> i64 {
    match a {
        AutoVacuum::None => 0,
        AutoVacuum::Full => 1,
        AutoVacuum::Incremental => 2,
    }
}

/// Runs one case; panics with a description of the first failed check.
fn run_case(n: usize, case: &Case) {
    let dir = TestDir::new(&format!("matrix-{n}"));
    let db = dir.join("m.db");
    let mut rng = Rng::new(0x5eed_0000 + n as u64);

    // 1. Build through metadwr.
    let expected = {
        let conn = open(&db);
        conn.execute_batch(&format!(
            "PRAGMA page_size={}; PRAGMA auto_vacuum={};",
            case.page_size,
            auto_vacuum_value(case.auto_vacuum)
        ))
        .unwrap();
        let mode = query_str(
            &conn,
            &format!("PRAGMA journal_mode={}", journal_sql(case.journal)),
        )
        .unwrap();
        assert_eq!(mode, journal_sql(case.journal), "journal mode");
        if case.enable == EnableAt::BeforeSchema {
            enable(&conn);
        }
        schema::build(&conn, case.schema);
        if case.enable == EnableAt::AfterSchema {
            assert_eq!(dwr_status(&conn), "disabled");
            enable(&conn);
        }
        assert_eq!(dwr_status(&conn), "enabled");
        let ps: u32 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ps, case.page_size, "page size");
        let av: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(av, auto_vacuum_value(case.auto_vacuum), "auto_vacuum");
        assert_integrity_ok(&conn, "freshly built");
        let c = content(&conn).unwrap();
        if case.journal == Journal::Wal {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .unwrap();
        }
        c
    };
    assert_no_wal_frames(&db);
    assert!(sidecar(&db, "-dwr").exists(), "-dwr exists");

    // 2. Find the protected pages independently of the extension.
    let pages = schema_pages_cli(&db);
    let original = std::fs::read(&db).unwrap();
    let non1: Vec<(u32, PageKind)> = pages.iter().copied().filter(|p| p.0 != 1).collect();
    let btree: Vec<u32> = non1
        .iter()
        .filter(|p| p.1 != PageKind::Overflow)
        .map(|p| p.0)
        .collect();
    let overflow: Vec<u32> = non1
        .iter()
        .filter(|p| p.1 == PageKind::Overflow)
        .map(|p| p.0)
        .collect();
    if case.schema != SchemaSize::One {
        assert!(!overflow.is_empty(), "schema tree has overflow pages");
    }
    let targets: Vec<u32> = match case.target {
        Target::Page1 => vec![1],
        Target::OneSchemaPage => {
            assert!(
                !btree.is_empty(),
                "the schema tree has B-tree pages besides page 1"
            );
            vec![*rng.pick(&btree)]
        }
        Target::AllSchemaPages => pages.iter().map(|p| p.0).collect(),
        Target::OverflowPage => {
            // Not the last page of its chain: damage to its next-page
            // pointer is structural, which the pragma route relies on.
            let ps = case.page_size as usize;
            let inner: Vec<u32> = overflow
                .iter()
                .copied()
                .filter(|&p| {
                    let at = (p as usize - 1) * ps;
                    original[at..at + 4] != [0, 0, 0, 0]
                })
                .collect();
            assert!(!inner.is_empty(), "an overflow chain has two pages or more");
            vec![*rng.pick(&inner)]
        }
    };

    let long_lived = (case.route == Route::LongLived).then(|| open_long_lived(&db));

    // 3. Damage them on disk.
    let damaged = damage_pages(&db, &targets, case.damage, &mut rng);
    let damaged_file = std::fs::read(&db).unwrap();

    // 4. A program without the extension notices.
    let plain = plain_schema(&db);
    if targets.contains(&1) {
        let err = plain
            .as_ref()
            .expect_err("plain SQLite must fail on a damaged page 1");
        assert!(
            matches!(primary_code(err), Some(26 | 11)),
            "plain SQLite error on damaged page 1: {err}"
        );
    } else if case.damage != Damage::BitFlip {
        // A bit flip may land in unused space; any other damage shows.
        if let Ok(s) = &plain {
            assert_ne!(*s, expected.schema, "plain SQLite sees the damage");
        }
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        damaged_file,
        "the plain connection changed the file"
    );

    // 5. Recover through metadwr.
    let conn = long_lived.unwrap_or_else(|| open(&db));
    // Damage to page 1's header is already healed (and the file repaired)
    // by SQLite's header read at open; the explicit call then finds nothing
    // left, and the repair is reported by the status instead.
    let healed = healed_report(&conn);
    let answer = match case.route {
        Route::MetaRecover => {
            pragma_meta_recover(&conn).unwrap_or_else(|e| panic!("PRAGMA meta_recover failed: {e}"))
        }
        Route::LongLived => {
            meta_recover(&conn).unwrap_or_else(|e| panic!("SELECT meta_recover() failed: {e}"))
        }
        Route::Pragma => query_msg(&conn, "PRAGMA meta_double_write=enabled")
            .unwrap_or_else(|e| panic!("PRAGMA meta_double_write=enabled: {e}")),
    };
    let healed = healed.or_else(|| healed_report(&conn));
    let report = restore_report(&answer, healed);
    let restored = parse_restored(&report);
    let restored_set: BTreeSet<u32> = restored.pages.iter().copied().collect();
    let damaged_set: BTreeSet<u32> = damaged.keys().copied().collect();
    assert_eq!(restored_set, damaged_set, "restored pages: {report}");
    assert_eq!(
        restored.pages.len(),
        restored_set.len(),
        "duplicates in {report}"
    );
    let explicit = answer.starts_with("recovered: ") || answer.starts_with("restored ");
    let status = dwr_status(&conn);
    if explicit {
        assert_eq!(status, format!("enabled (recovered: {report})"));
    } else if case.route == Route::Pragma {
        // A clean `=enabled` after the healing read resets the status.
        assert_eq!(status, "enabled");
    } else {
        assert!(
            status.starts_with("enabled (recovered: healed ")
                && status.ends_with(&format!("file repaired: {report})")),
            "status after a healing read: {status}"
        );
    }

    // 6. Everything is back, seen from the recovering connection, a new
    //    metadwr connection and a plain one; the file equals the original
    //    except for page 1's change counter.
    assert_integrity_ok(&conn, "after recovery, same connection");
    assert_same_content(&expected, &content(&conn).unwrap(), "same connection");
    drop(conn);
    assert_file_matches(&db, &original, "after recovery");
    let conn = open(&db);
    assert_integrity_ok(&conn, "after recovery, new connection");
    assert_same_content(&expected, &content(&conn).unwrap(), "new connection");
    assert_eq!(
        meta_recover(&conn).map(|r| parse_intact(&r).is_some()),
        Ok(true),
        "a second meta_recover finds nothing to do"
    );
    drop(conn);
    let plain = open_plain(&db).unwrap();
    assert_integrity_ok(&plain, "after recovery, plain connection");
    assert_same_content(&expected, &content(&plain).unwrap(), "plain connection");
    drop(plain);

    // 7. The damaged bytes were kept.
    assert_quarantined(&db, &damaged, "quarantine");
}

/// Runs the cases of `route` whose number has parity `half`, collecting
/// failures so that one failed case does not hide the others.
fn run_shard(route: Route, half: usize) {
    let only: Option<usize> = std::env::var("METADWR_MATRIX_CASE")
        .ok()
        .and_then(|v| v.parse().ok());
    let cases = cases();
    let mut failed = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        if case.route != route || n % 2 != half || only.is_some_and(|o| o != n) {
            continue;
        }
        let t = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(|| run_case(n, case));
        eprintln!(
            "matrix case {n}: {case:?}: {} in {:.1?}",
            if outcome.is_ok() { "ok" } else { "FAILED" },
            t.elapsed()
        );
        if outcome.is_err() {
            failed.push(format!("case {n}: {case:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "failed matrix cases:\n{}",
        failed.join("\n")
    );
}

#[test]
fn matrix_meta_recover_fresh_connection_even() {
    run_shard(Route::MetaRecover, 0);
}

#[test]
fn matrix_meta_recover_fresh_connection_odd() {
    run_shard(Route::MetaRecover, 1);
}

#[test]
fn matrix_pragma_even() {
    run_shard(Route::Pragma, 0);
}

#[test]
fn matrix_pragma_odd() {
    run_shard(Route::Pragma, 1);
}

#[test]
fn matrix_meta_recover_long_lived_connection_even() {
    run_shard(Route::LongLived, 0);
}

#[test]
fn matrix_meta_recover_long_lived_connection_odd() {
    run_shard(Route::LongLived, 1);
}
