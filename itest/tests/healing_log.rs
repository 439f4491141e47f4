//! A heal on the read path is reported through `sqlite3_log` with
//! SQLITE_WARNING, naming the database file and the healed pages.
//!
//! `SQLITE_CONFIG_LOG` must be set before SQLite is initialised, i.e. before
//! the first connection of the process; hence this test binary of its own,
//! with a single test.

mod common;

use common::heal::*;
use common::schema::SchemaSize;
use common::*;

/// True when `text` contains `n` as a whole number (not part of another).
fn mentions_number(text: &str, n: u32) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|w| w == n.to_string())
}

#[test]
fn a_heal_is_logged_as_a_warning_naming_the_file_and_pages() {
    common::sqlite_log::install();
    let dir = TestDir::new("heal-log");
    let db = dir.join("logged.db");
    let expected = make_protected_schema(&db, "delete", 4096, SchemaSize::Medium);
    // Page 1 and a leaf with a number that cannot be mistaken for another.
    let leaf = schema_pages_cli(&db)
        .into_iter()
        .filter(|(p, k)| *p >= 10 && *k == PageKind::Leaf)
        .map(|p| p.0)
        .next()
        .expect("a schema leaf numbered 10 or more");
    damage_pages(&db, &[1, leaf], Damage::Random, &mut Rng::new(4000));
    common::sqlite_log::clear();
    let conn = open_and_expect_healed(&db, &expected, "logged heal");
    drop(conn);
    let path = db.display().to_string();
    let named = common::sqlite_log::warnings_about(&db);
    assert!(
        !named.is_empty(),
        "no SQLITE_WARNING naming {path}; the warnings were: {:?}",
        common::sqlite_log::warnings()
            .iter()
            .map(|m| format!("{m:.200}"))
            .collect::<Vec<_>>()
    );
    for page in [1, leaf] {
        assert!(
            named
                .iter()
                .any(|m| mentions_number(&m.replace(&path, ""), page)),
            "no SQLITE_WARNING naming {path} mentions healed page {page}: {named:?}"
        );
    }
}
