//! Deterministic schema and data churn: one committed change per step,
//! chosen by a seeded RNG from CREATE/ALTER/DROP TABLE, CREATE/DROP INDEX,
//! views, triggers, bulk inserts and deletes (which grow and shrink the
//! freelist), `PRAGMA incremental_vacuum` and `VACUUM`.

use super::{quote_ident, Rng};
use rusqlite::Connection;
use std::fmt::Write as _;

/// Names of the schema objects of `kind` (`table`, `index`, …) that churn
/// created, sorted.
fn objects(conn: &Connection, kind: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type=?1 AND name NOT LIKE 'sqlite_%' \
             AND sql IS NOT NULL ORDER BY name",
        )
        .unwrap();
    let names = stmt
        .query_map([kind], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    names
}

fn columns(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({})", quote_ident(table)))
        .unwrap();
    let cols = stmt
        .query_map([], |r| r.get::<_, String>(1))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    cols
}

/// The churn generator; `tag` keeps names unique across several churners
/// writing one database.
pub struct Churn {
    rng: Rng,
    tag: String,
    n: u32,
    pub vacuum: bool,
}

impl Churn {
    pub fn new(seed: u64, tag: &str) -> Churn {
        Churn {
            rng: Rng::new(seed),
            tag: tag.to_string(),
            n: 0,
            vacuum: true,
        }
    }

    fn name(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!("{prefix}_{}_{}", self.tag, self.n)
    }

    fn text(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            write!(s, "{:x}", self.rng.next_u64()).unwrap();
        }
        s.truncate(len);
        s
    }

    /// Runs `steps` changes, each committed on its own.
    pub fn run(&mut self, conn: &Connection, steps: usize) {
        for _ in 0..steps {
            self.step(conn);
        }
    }

    /// One committed change. Returns the SQL it ran.
    pub fn step(&mut self, conn: &Connection) -> String {
        let tables: Vec<String> = objects(conn, "table")
            .into_iter()
            .filter(|t| t.contains(&format!("_{}_", self.tag)))
            .collect();
        let sql = if tables.len() < 2 {
            self.create_table()
        } else {
            match self.rng.below(100) {
                0..=17 => self.create_table(),
                18..=27 => {
                    let t = self.rng.pick(&tables).clone();
                    let cols = columns(conn, &t);
                    let c = self.rng.pick(&cols[1..]).clone();
                    let i = self.name("i");
                    format!("CREATE INDEX {i} ON {t}({c})")
                }
                28..=35 => {
                    let t = self.rng.pick(&tables).clone();
                    let c = self.name("c");
                    format!("ALTER TABLE {t} ADD COLUMN {c} TEXT DEFAULT 'd{c}'")
                }
                36..=40 => {
                    let t = self.rng.pick(&tables).clone();
                    let to = self.name("t");
                    format!("ALTER TABLE {t} RENAME TO {to}")
                }
                41..=44 => {
                    let t = self.rng.pick(&tables).clone();
                    let cols: Vec<String> = columns(conn, &t)
                        .into_iter()
                        .filter(|c| c != "id" && c != "payload")
                        .collect();
                    let to = self.name("c");
                    match cols.is_empty() {
                        true => format!("ALTER TABLE {t} ADD COLUMN {to} INTEGER"),
                        false => {
                            let c = self.rng.pick(&cols).clone();
                            format!("ALTER TABLE {t} RENAME COLUMN {c} TO {to}")
                        }
                    }
                }
                45..=53 => {
                    let t = self.rng.pick(&tables).clone();
                    format!("DROP TABLE {t}")
                }
                54..=58 => {
                    let idx: Vec<String> = objects(conn, "index")
                        .into_iter()
                        .filter(|i| i.contains(&format!("_{}_", self.tag)))
                        .collect();
                    match idx.is_empty() {
                        true => self.create_table(),
                        false => format!("DROP INDEX {}", self.rng.pick(&idx)),
                    }
                }
                59..=63 => {
                    let t = self.rng.pick(&tables).clone();
                    // Over sqlite_schema, so that no DROP or RENAME breaks it.
                    let v = self.name("v");
                    format!("CREATE VIEW {v} AS SELECT name FROM sqlite_schema WHERE name > '{t}'")
                }
                64..=67 => {
                    let t = self.rng.pick(&tables).clone();
                    let g = self.name("g");
                    format!("CREATE TRIGGER {g} AFTER UPDATE ON {t} BEGIN SELECT 1; END")
                }
                68..=81 => {
                    let t = self.rng.pick(&tables).clone();
                    let n = 20 + self.rng.below(120);
                    let pad = self.text(40);
                    format!(
                        "WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s \
                         WHERE value < {n}) INSERT INTO {t}(payload) \
                         SELECT '{pad}' || value || zeroblob(300) FROM s"
                    )
                }
                82..=91 => {
                    let t = self.rng.pick(&tables).clone();
                    let m = 2 + self.rng.below(3);
                    format!("DELETE FROM {t} WHERE id % {m} = 0")
                }
                92..=96 => {
                    let n = 1 + self.rng.below(20);
                    format!("PRAGMA incremental_vacuum({n})")
                }
                _ if self.vacuum => "VACUUM".to_string(),
                _ => self.create_table(),
            }
        };
        conn.execute_batch(&sql)
            .unwrap_or_else(|e| panic!("churn step {sql:?}: {e}"));
        sql
    }

    fn create_table(&mut self) -> String {
        let t = self.name("t");
        let ncols = 1 + self.rng.below(5);
        let mut sql = format!("BEGIN; CREATE TABLE {t}(id INTEGER PRIMARY KEY, payload BLOB");
        for c in 0..ncols {
            write!(sql, ", k{c} INTEGER DEFAULT {c}").unwrap();
        }
        let len = self.rng.below(700) as usize;
        let comment = self.text(len);
        write!(sql, " /* {comment} */); ").unwrap();
        let rows = 1 + self.rng.below(60);
        write!(
            sql,
            "WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s \
             WHERE value < {rows}) INSERT INTO {t}(payload) \
             SELECT 'row ' || value || zeroblob(200) FROM s; COMMIT;"
        )
        .unwrap();
        sql
    }
}
