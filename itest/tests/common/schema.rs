//! Deterministic schemas with rows in every table.
//!
//! Every schema but the one-table one holds a CREATE statement three times
//! longer than the largest page (a 200 KB comment), so its `sqlite_schema`
//! tree has overflow chains of several pages at every page size; the
//! 2000-table schema also has a 5 KB statement every 97 tables (overflow at
//! 4096-byte pages) and ~800 bytes per ordinary statement (overflow at
//! 512-byte pages).

use rusqlite::Connection;
use std::fmt::Write as _;

/// How big the schema is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaSize {
    /// One table; at small page sizes too the tree is page 1 alone.
    One,
    /// 40 tables with indexes, views and triggers, plus one huge statement.
    Medium,
    /// 2000 tables with long CREATE statements.
    Big,
}

impl SchemaSize {
    pub const ALL: [SchemaSize; 3] = [SchemaSize::One, SchemaSize::Medium, SchemaSize::Big];
}

/// Words for deterministic comment text.
const WORDS: [&str; 16] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa",
];

/// A deterministic comment of at least `len` bytes, varying with `seed`.
pub fn comment(seed: u64, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    s.push_str("/* ");
    let mut i = seed;
    while s.len() < len {
        s.push_str(WORDS[(i % 16) as usize]);
        s.push(' ');
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            >> 7;
    }
    s.push_str("*/");
    s
}

/// A deterministic row value of SQL type `ty` for row `row` of table `t`.
pub fn value_sql(t: usize, row: usize, col: usize, ty: &str) -> String {
    let k = (t * 131 + row * 17 + col * 7) as i64;
    match ty {
        "INTEGER" => format!("{}", k * 1_000_003 - 77),
        "REAL" => format!("{}.{}", k, (k * 7) % 1000),
        "TEXT" => format!("'v{t}_{row}_{col}_{}'", WORDS[(k % 16) as usize]),
        "BLOB" => format!("x'{:08x}{:04x}'", k as u32, (row * 31 + col) as u16),
        _ => "NULL".into(),
    }
}

const TYPES: [&str; 4] = ["INTEGER", "REAL", "TEXT", "BLOB"];

/// Column types of table `t` with `n` columns (after `id`).
fn column_types(t: usize, n: usize) -> Vec<&'static str> {
    (0..n).map(|c| TYPES[(t + c) % 4]).collect()
}

/// `CREATE TABLE name(id INTEGER PRIMARY KEY, c0 T0, …) <comment>`.
fn create_table(name: &str, t: usize, ncols: usize, comment_len: usize) -> String {
    let mut sql = format!("CREATE TABLE {name}(id INTEGER PRIMARY KEY");
    if comment_len > 0 {
        // Inside the parentheses: SQLite keeps the statement text only up
        // to the closing one.
        sql.push(' ');
        sql.push_str(&comment(t as u64, comment_len));
    }
    for (c, ty) in column_types(t, ncols).iter().enumerate() {
        write!(sql, ", c{c}_{} {ty}", WORDS[(t + c) % 16]).unwrap();
        if c % 3 == 1 {
            sql.push_str(" NOT NULL DEFAULT 0");
        }
    }
    sql.push(')');
    sql
}

/// `INSERT INTO name VALUES(…)` for `rows` rows.
fn insert_rows(name: &str, t: usize, ncols: usize, rows: usize) -> String {
    let types = column_types(t, ncols);
    let mut sql = String::new();
    for row in 0..rows {
        write!(sql, "INSERT INTO {name} VALUES({}", row + 1).unwrap();
        for (c, ty) in types.iter().enumerate() {
            write!(sql, ", {}", value_sql(t, row, c, ty)).unwrap();
        }
        sql.push_str(");\n");
    }
    sql
}

/// Creates the schema of `size` with rows in every table, committing in a
/// few transactions.
pub fn build(conn: &Connection, size: SchemaSize) {
    match size {
        SchemaSize::One => {
            conn.execute_batch(&format!(
                "BEGIN; {}; {} COMMIT;",
                create_table("t0", 0, 4, 0),
                insert_rows("t0", 0, 4, 5)
            ))
            .expect("build one-table schema");
        }
        SchemaSize::Medium => build_medium(conn),
        SchemaSize::Big => build_big(conn),
    }
}

fn build_medium(conn: &Connection) {
    let mut ddl =
        String::from("BEGIN;\nCREATE TABLE log(id INTEGER PRIMARY KEY, what TEXT, n INTEGER);\n");
    for t in 0..40 {
        let name = format!("m{t:02}");
        ddl.push_str(&create_table(&name, t, 3 + t % 6, 0));
        ddl.push_str(";\n");
        if t % 2 == 0 {
            writeln!(
                ddl,
                "CREATE INDEX m{t:02}_i0 ON {name}(c0_{});",
                WORDS[t % 16]
            )
            .unwrap();
        }
        if t % 5 == 0 {
            writeln!(
                ddl,
                "CREATE UNIQUE INDEX m{t:02}_u ON {name}(id, c1_{});",
                WORDS[(t + 1) % 16]
            )
            .unwrap();
        }
        if t % 4 == 1 {
            writeln!(
                ddl,
                "CREATE VIEW v{t:02} AS SELECT id, c0_{} AS first FROM {name} WHERE id > 1;",
                WORDS[t % 16]
            )
            .unwrap();
        }
        if t % 4 == 3 {
            writeln!(
                ddl,
                "CREATE TRIGGER g{t:02} AFTER INSERT ON {name} BEGIN \
                 INSERT INTO log(what, n) VALUES('{name}', new.id); END;"
            )
            .unwrap();
        }
    }
    ddl.push_str(&create_table("huge", 99, 5, 200_000));
    ddl.push_str(";\nCOMMIT;\n");
    conn.execute_batch(&ddl).expect("build medium schema");
    let mut rows = String::from("BEGIN;\n");
    for t in 0..40 {
        rows.push_str(&insert_rows(&format!("m{t:02}"), t, 3 + t % 6, 3));
    }
    rows.push_str(&insert_rows("huge", 99, 5, 2));
    rows.push_str("COMMIT;\n");
    conn.execute_batch(&rows).expect("fill medium schema");
}

/// Number of tables of the big schema.
pub const BIG_TABLES: usize = 2000;

fn build_big(conn: &Connection) {
    let mut ddl = String::from("BEGIN;\n");
    for t in 0..BIG_TABLES {
        let comment_len = if t == 1000 {
            200_000
        } else if t % 97 == 0 {
            5_000
        } else {
            420
        };
        ddl.push_str(&create_table(&format!("w{t:04}"), t, 12, comment_len));
        ddl.push_str(";\n");
    }
    ddl.push_str("COMMIT;\n");
    conn.execute_batch(&ddl).expect("build big schema");
    let mut rows = String::from("BEGIN;\n");
    for t in 0..BIG_TABLES {
        rows.push_str(&insert_rows(&format!("w{t:04}"), t, 12, 1 + t % 2));
    }
    rows.push_str("COMMIT;\n");
    conn.execute_batch(&rows).expect("fill big schema");
}
