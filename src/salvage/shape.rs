//! What a row of a table looks like on disk, and whether a record fits.
//!
//! The salvage learns each table's columns from SQLite itself (it creates
//! the table in the output and asks `PRAGMA table_xinfo`), so no CREATE
//! statement is parsed here. From the columns follow the record layout
//! (which columns are stored, in which order) and the storage classes each
//! field may hold: the *shape* a record of that table must have.
//!
//! The classes a column allows follow from its type affinity (SQLite's
//! "Datatypes" page §3): a TEXT column converts numbers to text, so it
//! never stores an integer or a real; a STRICT column stores only its type
//! (REAL also as an integer: SQLite writes integral reals that way); NOT
//! NULL forbids NULL; an INTEGER PRIMARY KEY is stored as NULL because the
//! value is the rowid. Every other combination is possible.

use super::record::{class_of, Class};

/// Set of storage classes, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classes(u8);

impl Classes {
    pub const ALL: Classes = Classes(0b11111);
    pub const fn of(c: Class) -> u8 {
        match c {
            Class::Null => 1,
            Class::Integer => 2,
            Class::Real => 4,
            Class::Text => 8,
            Class::Blob => 16,
        }
    }
    pub fn allows(self, c: Class) -> bool {
        self.0 & Classes::of(c) != 0
    }
    fn without(self, c: Class) -> Classes {
        Classes(self.0 & !Classes::of(c))
    }
    fn only(cs: &[Class]) -> Classes {
        Classes(cs.iter().fold(0, |a, &c| a | Classes::of(c)))
    }
}

/// One column, as `PRAGMA table_xinfo` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub decl_type: String,
    pub not_null: bool,
    /// Position in the primary key (1-based), 0 if not part of it.
    pub pk: u32,
    /// table_xinfo's `hidden`: 0 normal, 2 virtual generated, 3 stored
    /// generated (1, a virtual table's hidden column, never occurs here).
    pub hidden: u32,
}

impl Column {
    pub fn is_generated(&self) -> bool {
        self.hidden == 2 || self.hidden == 3
    }
}

/// Type affinity from a declared type (the rules of Datatypes §3.1, in
/// their order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

pub fn affinity(decl: &str) -> Affinity {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        Affinity::Integer
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        Affinity::Text
    } else if d.contains("BLOB") || d.trim().is_empty() {
        Affinity::Blob
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

/// A table's on-disk row layout.
#[derive(Debug, Clone)]
pub struct Shape {
    /// For each record field, in record order: the column's index in
    /// `columns` and the classes it allows.
    pub fields: Vec<(usize, Classes)>,
    /// Record field that holds NULL in place of the INTEGER PRIMARY KEY.
    pub ipk_field: Option<usize>,
    pub without_rowid: bool,
}

impl Shape {
    /// `columns` in declaration order; `record_order` (WITHOUT ROWID: the
    /// primary key's columns first, as `PRAGMA index_xinfo` of the
    /// table's primary-key index lists them) or None for a rowid table;
    /// `ipk` the INTEGER PRIMARY KEY column, if the table has one.
    pub fn new(
        columns: &[Column],
        strict: bool,
        record_order: Option<&[usize]>,
        ipk: Option<usize>,
    ) -> Shape {
        let stored: Vec<usize> = match record_order {
            Some(order) => order.to_vec(),
            None => (0..columns.len()).collect(),
        };
        let mut fields = Vec::new();
        let mut ipk_field = None;
        for i in stored {
            let Some(col) = columns.get(i) else { continue };
            // A VIRTUAL generated column is computed on read, never stored.
            if col.hidden == 2 {
                continue;
            }
            if Some(i) == ipk {
                ipk_field = Some(fields.len());
                fields.push((i, Classes::only(&[Class::Null])));
                continue;
            }
            let mut allowed = if strict {
                strict_classes(&col.decl_type)
            } else {
                match affinity(&col.decl_type) {
                    Affinity::Text => Classes::ALL.without(Class::Integer).without(Class::Real),
                    _ => Classes::ALL,
                }
            };
            // WITHOUT ROWID primary keys are NOT NULL, declared or not.
            if col.not_null || (record_order.is_some() && col.pk > 0) {
                allowed = allowed.without(Class::Null);
            }
            fields.push((i, allowed));
        }
        Shape {
            fields,
            ipk_field,
            without_rowid: record_order.is_some(),
        }
    }

    /// Whether a record with these serial types can be a row of the table.
    /// Fewer fields than columns is allowed (columns added later by ALTER
    /// TABLE are missing from older rows); more is not.
    pub fn fits(&self, types: &[u64]) -> bool {
        if types.is_empty() || types.len() > self.fields.len() {
            return false;
        }
        if self.without_rowid && types.len() != self.fields.len() {
            // ALTER TABLE ADD COLUMN cannot add to a WITHOUT ROWID table's
            // key, but can add columns after it; a shorter record must
            // still hold the whole key. Being strict costs nothing here.
            return false;
        }
        types
            .iter()
            .zip(&self.fields)
            .all(|(&t, &(_, allowed))| allowed.allows(class_of(t)))
    }
}

/// The classes a STRICT table's column type allows.
fn strict_classes(decl: &str) -> Classes {
    let null_ok = [Class::Null];
    let with = |cs: &[Class]| {
        let mut v = null_ok.to_vec();
        v.extend_from_slice(cs);
        Classes::only(&v)
    };
    match decl.to_ascii_uppercase().as_str() {
        "INT" | "INTEGER" => with(&[Class::Integer]),
        "REAL" => with(&[Class::Real, Class::Integer]),
        "TEXT" => with(&[Class::Text]),
        "BLOB" => with(&[Class::Blob]),
        _ => Classes::ALL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, not_null: bool, pk: u32) -> Column {
        Column {
            name: name.into(),
            decl_type: ty.into(),
            not_null,
            pk,
            hidden: 0,
        }
    }

    #[test]
    fn affinity_follows_sqlite_rules() {
        assert_eq!(affinity("INTEGER"), Affinity::Integer);
        assert_eq!(affinity("BIGINT"), Affinity::Integer);
        assert_eq!(affinity("VARCHAR(10)"), Affinity::Text);
        assert_eq!(affinity("CHARINT"), Affinity::Integer, "INT wins, rule 1");
        assert_eq!(affinity(""), Affinity::Blob);
        assert_eq!(affinity("DOUBLE PRECISION"), Affinity::Real);
        assert_eq!(affinity("DECIMAL(10,5)"), Affinity::Numeric);
        assert_eq!(
            affinity("FLOATING POINT"),
            Affinity::Integer,
            "the documented quirk"
        );
    }

    #[test]
    fn shapes_tell_tables_apart() {
        // id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL
        let cols = [
            col("id", "INTEGER", false, 1),
            col("name", "TEXT", true, 0),
            col("score", "REAL", false, 0),
        ];
        let s = Shape::new(&cols, false, None, Some(0));
        let text = 13 + 2 * 3; // a 3-byte text
        assert!(s.fits(&[0, text, 7]));
        assert!(s.fits(&[0, text, 1]), "integral real stored as integer");
        assert!(s.fits(&[0, text]), "a column added later");
        assert!(!s.fits(&[1, text, 7]), "the rowid alias is stored as NULL");
        assert!(!s.fits(&[0, 0, 7]), "NOT NULL");
        assert!(!s.fits(&[0, 1, 7]), "an integer in a TEXT column");
        assert!(!s.fits(&[0, text, 7, 0]), "one field too many");
        assert!(!s.fits(&[]));
    }

    #[test]
    fn strict_and_without_rowid() {
        let cols = [col("k", "TEXT", false, 1), col("v", "INT", false, 0)];
        let s = Shape::new(&cols, true, Some(&[0, 1]), None);
        assert!(s.fits(&[15, 1]));
        assert!(!s.fits(&[0, 1]), "a WITHOUT ROWID key is never NULL");
        assert!(!s.fits(&[15, 7]), "STRICT INT holds no real");
        assert!(!s.fits(&[15]), "the whole record");
    }

    #[test]
    fn virtual_columns_are_not_stored() {
        let mut cols = vec![
            col("a", "", false, 0),
            col("b", "", false, 0),
            col("c", "", false, 0),
        ];
        cols[1].hidden = 2;
        cols[2].hidden = 3;
        let s = Shape::new(&cols, false, None, None);
        assert_eq!(s.fields.iter().map(|f| f.0).collect::<Vec<_>>(), vec![0, 2]);
    }
}
