//! Walking one B-tree of the damaged file, and reading its rows.
//!
//! A walk starts at a root and claims every page it reaches. A page that
//! fails the strict check of [`btree::parse`], is of the wrong kind, holds
//! keys outside the range its parent assigned it, or was already claimed,
//! is *unreadable*: its subtree is skipped, and (in a rowid table) the key
//! range it covered is recorded as a gap, where orphan pages may later be
//! placed (see `attribute.rs`). The walk never recurses (an explicit stack)
//! and never visits a page twice, so a hostile file bounds it by its size.

use super::btree::{self, Cell, Kind};
use super::pages::{Owner, Pages};
use crate::dbfile::be_u32;

/// SQLite gives up at 20 levels (BTCURSOR_MAX_DEPTH).
pub const MAX_DEPTH: u32 = 24;

/// What an unreadable page covered: in a rowid tree the half-open key
/// range (lo, hi] its parent assigned it (None is unbounded; index trees
/// record no keys), and its depth (the root is at depth 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub lo: Option<i64>,
    pub hi: Option<i64>,
    pub depth: u32,
}

/// What one row looked like on its page.
pub struct Row {
    pub pgno: u32,
    pub cell: u16,
    pub rowid: i64,
    /// The whole record, or why it could not be read (a broken overflow
    /// chain): such a row is lost, never written cut short.
    pub payload: Result<Vec<u8>, &'static str>,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walked {
    /// Pages read and accepted.
    pub pages_read: u64,
    /// Pages reached that were not accepted.
    pub pages_unreadable: u64,
    /// What each unreadable page covered.
    pub gaps: Vec<Gap>,
    /// Depth of the leaves read: SQLite's B-trees are balanced, every leaf
    /// at the same depth. None when no leaf was read or they disagree.
    pub leaf_depth: Option<u32>,
    leaf_depths_disagree: bool,
    /// Every page this walk claimed (b-tree and overflow pages).
    pub claimed: Vec<u32>,
    /// Smallest and largest rowid seen (rowid trees).
    pub key_range: Option<(i64, i64)>,
    /// The reason the first unreadable page was refused, for the report.
    pub first_reject: Option<(u32, &'static str)>,
}

/// Walks the tree rooted at `root`, claiming pages as `owner`. With
/// `revisit`, pages `owner` already holds are walked again (the second pass
/// over an orphan group); without it, a page reached twice is unreadable
/// the second time. `rowid_tree` selects table or index pages. Each row is
/// handed to `emit`.
pub fn walk(
    pages: &mut Pages,
    root: u32,
    rowid_tree: bool,
    owner: Owner,
    revisit: bool,
    emit: &mut dyn FnMut(&mut Pages, Row),
) -> Walked {
    let mut out = Walked::default();
    // (page, depth, (lo, hi]): what the parent assigned each page.
    type Bounds = (Option<i64>, Option<i64>);
    let mut stack: Vec<(u32, u32, Bounds)> = vec![(root, 0, (None, None))];
    // A second pass may re-enter pages this owner holds, so claiming alone
    // no longer stops a cycle there: each walk also visits a page once.
    let mut visited = std::collections::HashSet::new();
    while let Some((pgno, depth, (lo, hi))) = stack.pop() {
        let first_visit = visited.insert(pgno);
        let mine =
            first_visit && (pages.claim(pgno, owner) || (revisit && pages.owner(pgno) == owner));
        let reject = |out: &mut Walked, why: &'static str| {
            out.pages_unreadable += 1;
            out.first_reject.get_or_insert((pgno, why));
            out.gaps.push(Gap { lo, hi, depth });
        };
        if !first_visit {
            reject(&mut out, "page reached twice");
            continue;
        }
        if !mine {
            reject(&mut out, "page already belongs to another tree");
            continue;
        }
        out.claimed.push(pgno);
        let Some(image) = pages.get(pgno) else {
            reject(&mut out, "page cannot be read");
            continue;
        };
        let page = match btree::parse(pgno, &image, pages.usable, pages.max_page) {
            Ok(p) => p,
            Err(why) => {
                reject(&mut out, why);
                continue;
            }
        };
        if page.kind.is_table() != rowid_tree {
            reject(&mut out, "page of the wrong kind of tree");
            continue;
        }
        if rowid_tree && !keys_in_range(&page.cells, lo, hi) {
            reject(&mut out, "keys out of order or outside the parent's range");
            continue;
        }
        if !page.kind.is_leaf() && depth + 1 >= MAX_DEPTH {
            reject(&mut out, "tree too deep");
            continue;
        }
        out.pages_read += 1;
        if page.kind.is_leaf() {
            match out.leaf_depth {
                None if !out.leaf_depths_disagree => out.leaf_depth = Some(depth),
                Some(d) if d != depth => {
                    out.leaf_depth = None;
                    out.leaf_depths_disagree = true;
                }
                _ => {}
            }
        }
        // Children, pushed right to left so that rows come out in key order.
        if !page.kind.is_leaf() {
            let mut bounds = Vec::with_capacity(page.cells.len() + 1);
            let mut prev = lo;
            for c in &page.cells {
                let upper = if rowid_tree { Some(c.rowid) } else { None };
                bounds.push((c.child, (prev, upper)));
                prev = upper;
            }
            bounds.push((page.right_child, (prev, hi)));
            for (child, gap) in bounds.into_iter().rev() {
                stack.push((child, depth + 1, gap));
            }
        }
        // Rows: table leaf cells, and every cell of an index tree (an
        // index interior cell holds an entry too).
        if page.kind == Kind::TableInterior {
            continue;
        }
        for (i, c) in page.cells.iter().enumerate() {
            if rowid_tree {
                out.key_range = Some(match out.key_range {
                    None => (c.rowid, c.rowid),
                    Some((a, b)) => (a.min(c.rowid), b.max(c.rowid)),
                });
            }
            let payload = read_payload(
                pages,
                &image,
                c,
                owner,
                revisit,
                &mut visited,
                &mut out.claimed,
            );
            emit(
                pages,
                Row {
                    pgno,
                    cell: i as u16,
                    rowid: c.rowid,
                    payload,
                },
            );
        }
    }
    out
}

/// Keys strictly ascending and inside (lo, hi].
fn keys_in_range(cells: &[Cell], lo: Option<i64>, hi: Option<i64>) -> bool {
    let mut prev = lo;
    for c in cells {
        if prev.is_some_and(|p| c.rowid <= p) {
            return false;
        }
        prev = Some(c.rowid);
    }
    match (prev, hi) {
        (Some(last), Some(h)) => last <= h,
        _ => true,
    }
}

/// The whole payload of `cell`: its local part and its overflow chain.
/// The chain must be exactly as long as the payload needs, end with a zero
/// pointer, and hold no page that is all zeros (a wiped page cannot be told
/// from data that happens to be zero, so it is not trusted).
pub fn read_payload(
    pages: &mut Pages,
    image: &[u8],
    cell: &Cell,
    owner: Owner,
    revisit: bool,
    visited: &mut std::collections::HashSet<u32>,
    claimed: &mut Vec<u32>,
) -> Result<Vec<u8>, &'static str> {
    let local = image
        .get(cell.local_start..cell.local_start + cell.local_len)
        .ok_or("cell runs past the page")?;
    let total = cell.payload_len as usize;
    let mut payload = Vec::with_capacity(total.min(1 << 20));
    payload.extend_from_slice(local);
    let mut next = cell.overflow;
    let per_page = pages.usable as usize - 4;
    while payload.len() < total {
        if next == 0 {
            return Err("overflow chain ends early");
        }
        if !(visited.insert(next)
            && (pages.claim(next, owner) || (revisit && pages.owner(next) == owner)))
        {
            return Err("overflow page belongs to something else");
        }
        claimed.push(next);
        let page = pages.get(next).ok_or("overflow page cannot be read")?;
        let usable = &page[..pages.usable as usize];
        if usable.iter().all(|&b| b == 0) {
            return Err("overflow page is all zeros");
        }
        let take = per_page.min(total - payload.len());
        payload.extend_from_slice(&usable[4..4 + take]);
        next = be_u32(usable, 0).unwrap_or(u32::MAX);
        if payload.len() < total && !(2..=pages.max_page).contains(&next) {
            return Err("overflow chain points outside the file");
        }
    }
    if next != 0 && cell.overflow != 0 {
        return Err("overflow chain does not end where the payload does");
    }
    Ok(payload)
}
