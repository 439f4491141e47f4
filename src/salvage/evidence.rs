//! What a complete index says about its table's rows.
//!
//! An index of a rowid table holds one entry per row: the indexed columns'
//! values and the rowid. An entry for rowid r with other values than a row
//! r of an orphan group says that the group is not that table's. When the
//! index's own B-tree was read completely and the index is not partial, it
//! lists every row the table had, including those on the table's
//! unreadable pages, so a row it does not list is not the table's either.
//! The rule in `attribute.rs` then drops the table from the group's
//! candidates. The evidence is only ever used to exclude, never to choose.
//!
//! Indexes on expressions give no evidence (the salvage cannot compute
//! them). Values are compared by what they are, not by their bytes: SQLite
//! may store an integral REAL as an integer in one record and not in
//! another.

use super::record::Value;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// At most this many index entries are held, over all indexes: beyond it
/// the evidence is not worth its memory, and the salvage goes without.
pub const MAX_ENTRIES: usize = 4_000_000;

/// A digest of values, equal for equal values whatever their storage.
pub fn fingerprint<'a>(values: impl Iterator<Item = &'a Value>) -> u64 {
    // SipHash with fixed keys: deterministic. A collision can only admit a
    // row the index should have excluded, which the other rules still judge.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in values {
        match v {
            Value::Null => 0u8.hash(&mut h),
            Value::Int(i) => (1u8, *i).hash(&mut h),
            Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => (1u8, *f as i64).hash(&mut h),
            Value::Real(f) => (2u8, f.to_bits()).hash(&mut h),
            Value::Text(t) => (3u8, t).hash(&mut h),
            Value::Blob(b) => (4u8, b).hash(&mut h),
        }
    }
    h.finish()
}

/// The entries of one complete index, by rowid.
pub struct IndexEvidence {
    /// Record field of the table for each indexed column, in index order.
    fields: Vec<usize>,
    /// The table's INTEGER PRIMARY KEY field, which holds NULL in the
    /// table's record and the rowid in the index's.
    ipk_field: Option<usize>,
    /// Read completely, and not partial: every row has an entry.
    lists_every_row: bool,
    entries: HashMap<i64, u64>,
}

impl IndexEvidence {
    pub fn new(fields: Vec<usize>, ipk_field: Option<usize>, lists_every_row: bool) -> Self {
        IndexEvidence {
            fields,
            ipk_field,
            lists_every_row,
            entries: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds one index entry: the indexed values, then the rowid.
    pub fn add(&mut self, entry: &[Value]) -> bool {
        let Some((Value::Int(rowid), keys)) = entry.split_last() else {
            return false;
        };
        if keys.len() != self.fields.len() {
            return false;
        }
        self.entries.insert(*rowid, fingerprint(keys.iter()));
        true
    }

    /// Whether a table row (`rowid`, its record's `values`) can be one the
    /// index lists. A record too short to hold an indexed column (a column
    /// added later) cannot be judged, and is admitted.
    pub fn admits(&self, rowid: i64, values: &[Value]) -> bool {
        let as_rowid = Value::Int(rowid);
        let mut keys = Vec::with_capacity(self.fields.len());
        for &f in &self.fields {
            if Some(f) == self.ipk_field {
                keys.push(&as_rowid);
            } else {
                match values.get(f) {
                    Some(v) => keys.push(v),
                    None => return true,
                }
            }
        }
        match self.entries.get(&rowid) {
            Some(&fp) => fp == fingerprint(keys.into_iter()),
            None => !self.lists_every_row,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_admits_only_its_rows() {
        // Table (id INTEGER PRIMARY KEY, code TEXT, amount REAL), index on
        // (code, amount): fields 1 and 2.
        let mut ix = IndexEvidence::new(vec![1, 2], Some(0), true);
        assert!(ix.add(&[Value::Text(b"a".to_vec()), Value::Int(3), Value::Int(7)]));
        let row =
            |code: &[u8], amount: Value| vec![Value::Null, Value::Text(code.to_vec()), amount];
        assert!(
            ix.admits(7, &row(b"a", Value::Real(3.0))),
            "3.0 stored as 3"
        );
        assert!(!ix.admits(7, &row(b"b", Value::Int(3))));
        assert!(
            !ix.admits(8, &row(b"a", Value::Int(3))),
            "no entry for rowid 8"
        );
        assert!(
            ix.admits(7, &[Value::Null, Value::Text(b"a".to_vec())]),
            "too short to judge"
        );
        // An index that includes the rowid alias.
        let mut by_id = IndexEvidence::new(vec![0, 1], Some(0), true);
        assert!(by_id.add(&[Value::Int(5), Value::Text(b"x".to_vec()), Value::Int(5)]));
        assert!(by_id.admits(5, &row(b"x", Value::Null)));
        assert!(!by_id.add(&[Value::Text(b"no rowid".to_vec())]));
        // A partial (or partly read) index: only a conflicting entry counts.
        let mut partial = IndexEvidence::new(vec![1], Some(0), false);
        assert!(partial.add(&[Value::Text(b"a".to_vec()), Value::Int(7)]));
        assert!(
            partial.admits(8, &row(b"z", Value::Null)),
            "no entry: no evidence"
        );
        assert!(
            !partial.admits(7, &row(b"z", Value::Null)),
            "rowid 7 has another value"
        );
    }
}
