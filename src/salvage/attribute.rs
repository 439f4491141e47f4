//! The attribution rule: which table an orphan page belongs to, if any.
//!
//! An *orphan group* is a B-tree page no walk reached (its parent was
//! unreadable), together with the pages under it. Its rows are given to a
//! table only on evidence that no other table fits, in this order:
//!
//! 1. **The pointer map** (auto_vacuum databases). It records each page's
//!    parent; following parents up from the group ends at a page a walk
//!    reached, whose tree is then the only possible owner. The rows must
//!    still fit that table (rule 2 and 3), or the group is not attributed:
//!    the pointer map may be damaged too. A pointer map that says "free
//!    page" drops the group; one that names an index drops it too, since
//!    indexes are rebuilt from the rows.
//! 2. **Rowid gaps** (rowid tables). A walk that skips an unreadable page
//!    records the key range that page covered, from its parent's divider
//!    keys. A group can only belong to a table with a gap that holds all
//!    of the group's rowids. A table whose walk was complete has no gap and
//!    can own no orphan.
//! 3. **The record shape** (see `shape.rs`): every record in the group must
//!    fit the table's column count, storage classes and NOT NULL columns.
//!
//! Exactly one candidate left: the group is that table's. None or several:
//! the rows go to `lost_and_found` with the candidates named. When the
//! freelist could not be read completely, an unreached page may be a free
//! page holding deleted rows, so without a pointer map nothing is
//! attributed: a deleted row put back would be an altered table.

use super::walk::Gap;

/// One tree of the schema, as the rule sees it.
#[derive(Debug, Clone)]
pub struct Tree {
    pub id: u32,
    /// A table (rows wanted) rather than an index (rebuilt, never needed).
    pub is_table: bool,
    /// A table B-tree (rowid table); else an index B-tree (an index, or a
    /// WITHOUT ROWID table).
    pub rowid: bool,
    /// Key ranges under unreadable pages (rowid tables).
    pub gaps: Vec<Gap>,
    /// The walk skipped at least one unreadable page.
    pub incomplete: bool,
}

/// What the pointer map says about a group's top page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ptrmap {
    /// No pointer map, or it is damaged, or the chain ends nowhere.
    Unknown,
    /// A free page.
    Free,
    /// A B-tree page whose ancestors lead to tree `id`.
    Owner(u32),
    /// The root page of a tree the schema does not list.
    StrayRoot,
}

/// What the group looked like.
#[derive(Debug, Clone)]
pub struct Group {
    /// Table B-tree pages (else index B-tree pages).
    pub rowid: bool,
    /// Smallest and largest rowid in the group (rowid groups with rows).
    pub key_range: Option<(i64, i64)>,
    /// Trees whose shape every record of the group fits.
    pub fits: Vec<u32>,
    pub ptrmap: Ptrmap,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Table(u32),
    /// Not needed: free pages, or index entries.
    Drop(&'static str),
    LostAndFound {
        candidates: Vec<u32>,
        reason: String,
    },
}

fn in_gap(range: Option<(i64, i64)>, gap: &Gap) -> bool {
    let Some((min, max)) = range else {
        // A group without rows has nothing to place; any gap holds it.
        return true;
    };
    gap.0.is_none_or(|lo| lo < min) && gap.1.is_none_or(|hi| max <= hi)
}

/// Applies the rule.
pub fn attribute(group: &Group, trees: &[Tree], freelist_complete: bool) -> Verdict {
    let tree = |id: u32| trees.iter().find(|t| t.id == id);
    // Could the group be part of `t`, judging by the gaps and the shape?
    let possible = |t: &Tree| {
        t.rowid == group.rowid
            && group.fits.contains(&t.id)
            && t.incomplete
            && (!t.rowid || t.gaps.iter().any(|g| in_gap(group.key_range, g)))
    };
    match group.ptrmap {
        Ptrmap::Free => return Verdict::Drop("the pointer map marks the page free"),
        Ptrmap::StrayRoot => {
            return Verdict::LostAndFound {
                candidates: vec![],
                reason: "the root of a tree the schema does not list".into(),
            }
        }
        Ptrmap::Owner(id) => {
            return match tree(id) {
                Some(t) if !t.is_table => Verdict::Drop("index pages are rebuilt"),
                Some(t) if possible(t) => Verdict::Table(id),
                _ => Verdict::LostAndFound {
                    candidates: vec![id],
                    reason: "the pointer map names a table the rows do not fit".into(),
                },
            };
        }
        Ptrmap::Unknown => {}
    }
    if !freelist_complete {
        return Verdict::LostAndFound {
            candidates: vec![],
            reason: "the freelist is damaged, so the page may be a free page".into(),
        };
    }
    let tables: Vec<u32> = trees
        .iter()
        .filter(|t| t.is_table && possible(t))
        .map(|t| t.id)
        .collect();
    // Index entries are never needed; a group that could only be index
    // entries is dropped, one that could be either is not guessed at. Like
    // a table, an index whose walk was complete owns no orphan.
    let indexes = trees
        .iter()
        .any(|t| !t.is_table && !group.rowid && t.incomplete && group.fits.contains(&t.id));
    match (tables.len(), indexes) {
        (0, true) => Verdict::Drop("index pages are rebuilt"),
        (1, false) => Verdict::Table(tables[0]),
        (0, false) => Verdict::LostAndFound {
            candidates: vec![],
            reason: "fits no table".into(),
        },
        _ => Verdict::LostAndFound {
            reason: if indexes {
                "could be index entries or rows".into()
            } else {
                "fits several tables".into()
            },
            candidates: tables,
        },
    }
}

/// Pointer-map geometry (file format §1.7): the first pointer-map page is
/// page 2 and every `usable/5 + 1` pages there is another; each holds one
/// 5-byte entry (type, parent) per page that follows it.
pub fn ptrmap_location(pgno: u32, usable: u32) -> Option<(u32, usize)> {
    let per_page = usable / 5;
    if pgno < 3 {
        return None;
    }
    let map = 2 + ((pgno - 2) / (per_page + 1)) * (per_page + 1);
    if map == pgno {
        return None;
    }
    Some((map, 5 * (pgno - map - 1) as usize))
}

pub fn is_ptrmap_page(pgno: u32, usable: u32) -> bool {
    pgno >= 2 && (pgno - 2).is_multiple_of(usable / 5 + 1)
}

/// A pointer-map page is trusted only if every entry is well formed: a
/// known type and a parent inside the file (0 where the format says so).
pub fn ptrmap_page_plausible(image: &[u8], usable: u32, max_page: u32) -> bool {
    image[..usable as usize / 5 * 5].chunks_exact(5).all(|e| {
        let parent = u32::from_be_bytes([e[1], e[2], e[3], e[4]]);
        match e[0] {
            0 => parent == 0,
            1 | 2 => parent == 0,
            3..=5 => (1..=max_page).contains(&parent),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(id: u32, gaps: Vec<Gap>) -> Tree {
        Tree {
            id,
            is_table: true,
            rowid: true,
            incomplete: !gaps.is_empty(),
            gaps,
        }
    }

    fn group(range: (i64, i64), fits: Vec<u32>) -> Group {
        Group {
            rowid: true,
            key_range: Some(range),
            fits,
            ptrmap: Ptrmap::Unknown,
        }
    }

    #[test]
    fn one_gap_and_shape_decide() {
        let trees = [
            table(1, vec![(Some(100), Some(200))]),
            table(2, vec![(None, None)]),
            table(3, vec![]),
        ];
        // Fits tables 1 and 2 by shape; only table 1 has no... both gaps hold it.
        let v = attribute(&group((120, 150), vec![1, 2, 3]), &trees, true);
        assert!(matches!(v, Verdict::LostAndFound { ref candidates, .. } if candidates == &[1, 2]));
        // Shape rules out table 2.
        assert_eq!(
            attribute(&group((120, 150), vec![1, 3]), &trees, true),
            Verdict::Table(1)
        );
        // Outside table 1's gap: only table 2's unbounded gap holds it.
        assert_eq!(
            attribute(&group((90, 150), vec![1, 2, 3]), &trees, true),
            Verdict::Table(2)
        );
        // A complete table owns no orphan, whatever the shape.
        assert!(matches!(
            attribute(&group((1, 5), vec![3]), &trees, true),
            Verdict::LostAndFound { .. }
        ));
        // The gap is (lo, hi]: lo itself is outside.
        assert!(matches!(
            attribute(&group((100, 150), vec![1]), &trees, true),
            Verdict::LostAndFound { .. }
        ));
    }

    #[test]
    fn a_damaged_freelist_stops_guessing() {
        let trees = [table(1, vec![(None, None)])];
        assert!(matches!(
            attribute(&group((1, 5), vec![1]), &trees, false),
            Verdict::LostAndFound { .. }
        ));
        let mut g = group((1, 5), vec![1]);
        g.ptrmap = Ptrmap::Owner(1);
        assert_eq!(attribute(&g, &trees, false), Verdict::Table(1));
        g.ptrmap = Ptrmap::Free;
        assert!(matches!(attribute(&g, &trees, true), Verdict::Drop(_)));
    }

    #[test]
    fn the_pointer_map_must_agree_with_the_rows() {
        let trees = [
            table(1, vec![(Some(10), Some(20))]),
            table(2, vec![(None, None)]),
        ];
        let mut g = group((30, 40), vec![1, 2]);
        g.ptrmap = Ptrmap::Owner(1);
        assert!(matches!(
            attribute(&g, &trees, true),
            Verdict::LostAndFound { .. }
        ));
        g.ptrmap = Ptrmap::Owner(2);
        assert_eq!(attribute(&g, &trees, true), Verdict::Table(2));
    }

    #[test]
    fn index_pages_are_dropped_unless_they_could_be_rows() {
        let wr = Tree {
            id: 1,
            is_table: true,
            rowid: false,
            gaps: vec![],
            incomplete: true,
        };
        let idx = Tree {
            id: 2,
            is_table: false,
            rowid: false,
            gaps: vec![],
            incomplete: true,
        };
        let trees = [wr, idx];
        let g = |fits: Vec<u32>| Group {
            rowid: false,
            key_range: None,
            fits,
            ptrmap: Ptrmap::Unknown,
        };
        assert_eq!(attribute(&g(vec![1]), &trees, true), Verdict::Table(1));
        assert!(matches!(
            attribute(&g(vec![2]), &trees, true),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            attribute(&g(vec![1, 2]), &trees, true),
            Verdict::LostAndFound { .. }
        ));
    }

    #[test]
    fn ptrmap_geometry() {
        // usable 1024: 204 entries per map page; maps at 2, 207, 412, ...
        assert_eq!(ptrmap_location(3, 1024), Some((2, 0)));
        assert_eq!(ptrmap_location(206, 1024), Some((2, 5 * 203)));
        assert_eq!(ptrmap_location(207, 1024), None);
        assert_eq!(ptrmap_location(208, 1024), Some((207, 0)));
        assert!(is_ptrmap_page(2, 1024) && is_ptrmap_page(207, 1024) && !is_ptrmap_page(208, 1024));
    }
}
