//! A deterministic workload of transactions mixing schema changes (CREATE
//! TABLE / INDEX / VIEW, ALTER TABLE ADD COLUMN, DROP TABLE / INDEX / VIEW)
//! and inserts/deletes, generated from a seed without looking at the
//! database, so that a writer in another process and the test that checks
//! its crashes agree on every transaction.
//!
//! Every value is a literal (no `random()`), so replaying the transactions
//! gives byte-for-byte the same logical content.

use crate::common::Rng;
use std::fmt::Write as _;

struct Table {
    name: String,
    cols: Vec<String>,
    next_id: u64,
}

/// The generator's model of the schema.
pub struct Workload {
    rng: Rng,
    tables: Vec<Table>,
    indexes: Vec<String>,
    views: Vec<String>,
    n: u32,
    /// Longest CREATE comment, so page size 1024 gets a multi-page schema.
    pub max_comment: usize,
    /// Largest blob, so rows spill into overflow pages now and then.
    pub max_blob: usize,
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload {
            rng: Rng::new(seed ^ 0x005e_ed0f_c4a5),
            tables: Vec::new(),
            indexes: Vec::new(),
            views: Vec::new(),
            n: 0,
            max_comment: 600,
            max_blob: 1500,
        }
    }

    /// `count` transactions, each a complete `BEGIN; …; COMMIT;` text.
    pub fn transactions(seed: u64, count: usize) -> Vec<String> {
        let mut w = Workload::new(seed);
        (0..count).map(|_| w.next_txn()).collect()
    }

    fn name(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!("{prefix}{}", self.n)
    }

    fn hex(&mut self, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes * 2);
        while s.len() < bytes * 2 {
            write!(s, "{:016x}", self.rng.next_u64()).unwrap();
        }
        s.truncate(bytes * 2);
        s
    }

    fn comment(&mut self) -> String {
        let len = self.rng.below(self.max_comment as u64 + 1) as usize;
        const WORDS: [&str; 8] = [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
        ];
        let mut s = String::from("/* ");
        while s.len() < len {
            s.push_str(WORDS[self.rng.below(8) as usize]);
            s.push(' ');
        }
        s.push_str("*/");
        s
    }

    fn insert_rows(&mut self, t: usize, rows: u64, sql: &mut String) {
        for _ in 0..rows {
            let id = self.tables[t].next_id;
            self.tables[t].next_id += 1;
            let ncols = self.tables[t].cols.len();
            let mut vals = vec![id.to_string()];
            for c in 1..ncols {
                let v = match (c + id as usize) % 4 {
                    0 => format!("{}", self.rng.next_u64() as i64 >> 8),
                    1 => {
                        let n = 4 + self.rng.below(24) as usize;
                        format!("'t{}'", self.hex(n))
                    }
                    2 => {
                        let big = self.rng.below(6) == 0;
                        let n = if big {
                            self.max_blob / 2 + self.rng.below(self.max_blob as u64 / 2) as usize
                        } else {
                            1 + self.rng.below(60) as usize
                        };
                        format!("x'{}'", self.hex(n))
                    }
                    _ => format!("{}.5", self.rng.below(100000)),
                };
                vals.push(v);
            }
            let t = &self.tables[t];
            writeln!(
                sql,
                "INSERT INTO {}({}) VALUES({});",
                t.name,
                t.cols.join(","),
                vals.join(",")
            )
            .unwrap();
        }
    }

    fn create_table(&mut self, sql: &mut String) {
        let name = self.name("t");
        let ncols = 2 + self.rng.below(4) as usize;
        let mut cols = vec!["id".to_string()];
        let comment = self.comment();
        let mut ddl = format!("CREATE TABLE {name}(id INTEGER PRIMARY KEY {comment}");
        for c in 0..ncols {
            let col = format!("c{c}");
            write!(ddl, ", {col}").unwrap();
            cols.push(col);
        }
        ddl.push(')');
        writeln!(sql, "{ddl};").unwrap();
        self.tables.push(Table {
            name,
            cols,
            next_id: 1,
        });
        let t = self.tables.len() - 1;
        let rows = 1 + self.rng.below(8);
        self.insert_rows(t, rows, sql);
    }

    fn pick_table(&mut self) -> usize {
        self.rng.below(self.tables.len() as u64) as usize
    }

    /// One transaction: one or two schema changes and some rows.
    pub fn next_txn(&mut self) -> String {
        let mut sql = String::from("BEGIN;\n");
        let changes = 1 + self.rng.below(2);
        for _ in 0..changes {
            if self.tables.len() < 2 {
                self.create_table(&mut sql);
                continue;
            }
            match self.rng.below(100) {
                0..=24 => self.create_table(&mut sql),
                25..=39 => {
                    let t = self.pick_table();
                    let ncols = self.tables[t].cols.len() as u64;
                    let col = self.tables[t].cols[1 + self.rng.below(ncols - 1) as usize].clone();
                    let i = self.name("i");
                    writeln!(sql, "CREATE INDEX {i} ON {}({col});", self.tables[t].name).unwrap();
                    self.indexes.push(format!("{i}:{}", self.tables[t].name));
                }
                40..=49 => {
                    let t = self.pick_table();
                    let v = self.name("v");
                    let comment = self.comment();
                    writeln!(
                        sql,
                        "CREATE VIEW {v} AS SELECT id {comment} FROM {} WHERE id > 1;",
                        self.tables[t].name
                    )
                    .unwrap();
                    self.views.push(format!("{v}:{}", self.tables[t].name));
                }
                50..=64 => {
                    let t = self.pick_table();
                    let c = self.name("a");
                    let d = self.hex(3);
                    writeln!(
                        sql,
                        "ALTER TABLE {} ADD COLUMN {c} TEXT DEFAULT 'd{d}';",
                        self.tables[t].name
                    )
                    .unwrap();
                    self.tables[t].cols.push(c);
                }
                65..=74 if self.tables.len() > 3 => {
                    let t = self.pick_table();
                    let table = self.tables.remove(t);
                    // Views first: DROP TABLE leaves views of it dangling.
                    let suffix = format!(":{}", table.name);
                    for v in self.views.iter().filter(|v| v.ends_with(&suffix)) {
                        writeln!(sql, "DROP VIEW {};", v.split(':').next().unwrap()).unwrap();
                    }
                    self.views.retain(|v| !v.ends_with(&suffix));
                    self.indexes.retain(|i| !i.ends_with(&suffix));
                    writeln!(sql, "DROP TABLE {};", table.name).unwrap();
                }
                75..=82 if !self.indexes.is_empty() => {
                    let i = self.rng.below(self.indexes.len() as u64) as usize;
                    let idx = self.indexes.remove(i);
                    writeln!(sql, "DROP INDEX {};", idx.split(':').next().unwrap()).unwrap();
                }
                83..=87 if !self.views.is_empty() => {
                    let i = self.rng.below(self.views.len() as u64) as usize;
                    let v = self.views.remove(i);
                    writeln!(sql, "DROP VIEW {};", v.split(':').next().unwrap()).unwrap();
                }
                88..=93 => {
                    let t = self.pick_table();
                    let m = 2 + self.rng.below(3);
                    writeln!(
                        sql,
                        "DELETE FROM {} WHERE id % {m} = 0;",
                        self.tables[t].name
                    )
                    .unwrap();
                }
                _ => {
                    let t = self.pick_table();
                    let rows = 2 + self.rng.below(10);
                    self.insert_rows(t, rows, &mut sql);
                }
            }
        }
        // Rows into a table or two in every transaction.
        for _ in 0..1 + self.rng.below(2) {
            let t = self.pick_table();
            let rows = 1 + self.rng.below(5);
            self.insert_rows(t, rows, &mut sql);
        }
        sql.push_str("COMMIT;\n");
        sql
    }
}
