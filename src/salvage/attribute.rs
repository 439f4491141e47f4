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
//! 2. **Gaps.** A walk that skips an unreadable page records what the page
//!    covered: its depth, and (rowid tables) the key range its parent's
//!    divider keys assign it. A group can only belong to a tree with a gap
//!    that holds all of the group's rowids and the group's height: SQLite's
//!    B-trees are balanced, so below an unreadable page at depth d of a tree
//!    whose leaves are at depth L hang subtrees of height at most L - d - 1,
//!    and below an unreadable leaf (d = L) nothing. A tree whose walk was
//!    complete has no gap and can own no orphan.
//! 3. **The record shape** (see `shape.rs`): every record in the group must
//!    fit the table's column count, storage classes and NOT NULL columns.
//!
//! 4. **Complete indexes** (`evidence.rs`, applied by the caller to the
//!    group's `fits`): a table is dropped from the candidates when one of
//!    its completely read indexes does not list a row of the group.
//! 5. **Rowids already placed.** Groups are judged again and again until
//!    no more can be placed: a group given to a table occupies its rowid
//!    range there, and no other group whose rowids meet that range can be
//!    that table's (subtrees of one B-tree never share a key).
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
    /// What the unreadable pages covered.
    pub gaps: Vec<Gap>,
    /// The walk skipped at least one unreadable page.
    pub incomplete: bool,
    /// Depth of the tree's leaves, when the walk read leaves that agree.
    pub leaf_depth: Option<u32>,
    /// Rowid ranges of the orphan groups already given to this table.
    pub occupied: Vec<(i64, i64)>,
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
    /// Levels from the group's top page down to its leaves (0: the top is
    /// a leaf); None when no leaf was read or they disagree.
    pub height: Option<u32>,
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

/// Whether the group can be (part of) the subtree under unreadable page
/// `gap` of a tree whose leaves are at `leaf_depth`.
///
/// Keys: every rowid of the group inside the gap's range. Depth: SQLite's
/// B-trees are balanced, so an unreadable page at depth d of a tree with
/// leaves at depth L roots a subtree of height L - d. A leaf (d = L) has no
/// pages under it, so no orphan can belong there; below an interior page,
/// a group of height h starts at depth L - h, at least one level down.
fn fits_gap(group: &Group, gap: &Gap, leaf_depth: Option<u32>) -> bool {
    let keys = match group.key_range {
        Some((min, max)) => gap.lo.is_none_or(|lo| lo < min) && gap.hi.is_none_or(|hi| max <= hi),
        None => true,
    };
    let depth = match leaf_depth {
        Some(leaves) => {
            gap.depth < leaves && group.height.is_none_or(|h| gap.depth + 1 + h <= leaves)
        }
        None => true,
    };
    keys && depth
}

/// Whether the group's rowids meet those of a group already placed.
fn overlaps(range: Option<(i64, i64)>, occupied: &[(i64, i64)]) -> bool {
    range.is_some_and(|(min, max)| occupied.iter().any(|&(a, b)| min <= b && a <= max))
}

/// Applies the rule.
pub fn attribute(group: &Group, trees: &[Tree], freelist_complete: bool) -> Verdict {
    let tree = |id: u32| trees.iter().find(|t| t.id == id);
    // Could the group be part of `t`, judging by the gaps and the shape?
    let possible = |t: &Tree| {
        t.rowid == group.rowid
            && group.fits.contains(&t.id)
            && t.incomplete
            && t.gaps.iter().any(|g| fits_gap(group, g, t.leaf_depth))
            && !overlaps(group.key_range, &t.occupied)
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
        .any(|t| !t.is_table && !group.rowid && possible(t));
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

/// A pointer-map page (page `map`) is trusted only if every entry for a
/// page of the file is well formed: a known type and a parent inside the
/// file (0 where the format says so). Entries past the end of the file
/// describe pages an auto-vacuum truncated away; SQLite leaves them as
/// they were, so they are not looked at.
pub fn ptrmap_page_plausible(map: u32, image: &[u8], usable: u32, max_page: u32) -> bool {
    image[..usable as usize / 5 * 5]
        .chunks_exact(5)
        .enumerate()
        .take_while(|(i, _)| u64::from(map) + 1 + *i as u64 <= u64::from(max_page))
        .all(|(_, e)| {
            let parent = u32::from_be_bytes([e[1], e[2], e[3], e[4]]);
            match e[0] {
                0..=2 => parent == 0,
                3..=5 => (1..=max_page).contains(&parent),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gap at the root (depth 0) or at depth 1, keys (lo, hi].
    fn gap(lo: Option<i64>, hi: Option<i64>, depth: u32) -> Gap {
        Gap { lo, hi, depth }
    }

    fn table(id: u32, gaps: Vec<Gap>, leaf_depth: Option<u32>) -> Tree {
        Tree {
            id,
            is_table: true,
            rowid: true,
            incomplete: !gaps.is_empty(),
            gaps,
            leaf_depth,
            occupied: Vec::new(),
        }
    }

    fn group(range: (i64, i64), fits: Vec<u32>) -> Group {
        Group {
            rowid: true,
            key_range: Some(range),
            height: Some(0),
            fits,
            ptrmap: Ptrmap::Unknown,
        }
    }

    #[test]
    fn one_gap_and_shape_decide() {
        let trees = [
            table(1, vec![gap(Some(100), Some(200), 1)], Some(2)),
            table(2, vec![gap(None, None, 0)], None),
            table(3, vec![], Some(1)),
        ];
        // Fits tables 1 and 2 by shape, and both gaps hold it.
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
    fn balanced_trees_place_groups_by_height() {
        // Table 1 lost a leaf (depth 2 = its leaf depth): nothing hangs
        // under a leaf. Table 2 lost an interior page at depth 1 of a tree
        // with leaves at depth 2: leaves (height 0) hang under it.
        let trees = [
            table(1, vec![gap(None, None, 2)], Some(2)),
            table(2, vec![gap(None, None, 1)], Some(2)),
        ];
        assert_eq!(
            attribute(&group((5, 9), vec![1, 2]), &trees, true),
            Verdict::Table(2)
        );
        // A group of height 1 cannot hang below depth 1 of a 2-deep tree.
        let mut g = group((5, 9), vec![1, 2]);
        g.height = Some(1);
        assert!(matches!(
            attribute(&g, &trees, true),
            Verdict::LostAndFound { .. }
        ));
        // Leaves that disagree tell nothing: every gap may hold it.
        let trees = [
            table(1, vec![gap(None, None, 2)], None),
            table(2, vec![gap(None, None, 1)], Some(2)),
        ];
        assert!(matches!(
            attribute(&group((5, 9), vec![1, 2]), &trees, true),
            Verdict::LostAndFound { .. }
        ));
    }

    #[test]
    fn a_placed_group_occupies_its_rowids() {
        let mut trees = [
            table(1, vec![gap(None, None, 0)], None),
            table(2, vec![gap(None, None, 0)], None),
        ];
        trees[0].occupied.push((1, 200));
        // Rowids 150..300 meet table 1's placed group: table 2's.
        assert_eq!(
            attribute(&group((150, 300), vec![1, 2]), &trees, true),
            Verdict::Table(2)
        );
        // 201..300 could be either.
        assert!(matches!(
            attribute(&group((201, 300), vec![1, 2]), &trees, true),
            Verdict::LostAndFound { .. }
        ));
    }

    #[test]
    fn a_damaged_freelist_stops_guessing() {
        let trees = [table(1, vec![gap(None, None, 0)], None)];
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
            table(1, vec![gap(Some(10), Some(20), 0)], None),
            table(2, vec![gap(None, None, 0)], None),
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
        let index_tree = |id, is_table| Tree {
            id,
            is_table,
            rowid: false,
            gaps: vec![gap(None, None, 0)],
            incomplete: true,
            leaf_depth: None,
            occupied: Vec::new(),
        };
        let trees = [index_tree(1, true), index_tree(2, false)];
        let g = |fits: Vec<u32>| Group {
            rowid: false,
            key_range: None,
            height: Some(0),
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
    fn ptrmap_entries_past_the_end_are_not_judged() {
        let mut map = vec![0u8; 1024];
        map[0..5].copy_from_slice(&[5, 0, 0, 0, 9]); // page 3: parent 9
        map[50..55].copy_from_slice(&[3, 0, 0, 4, 0]); // page 13: parent 1024
        assert!(
            !ptrmap_page_plausible(2, &map, 1024, 20),
            "page 13's parent is past the end"
        );
        assert!(
            ptrmap_page_plausible(2, &map, 1024, 12),
            "page 13 is past the end"
        );
        map[0] = 9;
        assert!(!ptrmap_page_plausible(2, &map, 1024, 12), "an unknown type");
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
