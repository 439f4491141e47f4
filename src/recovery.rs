//! Deciding whether a stored generation may be restored over the database
//! file, and which pages to restore.
//!
//! A copy is only worth restoring if it describes the *current* state of the
//! file. A stale copy restored over live data silently rolls back the schema
//! (a table added since would vanish), which is worse than an error. So the
//! planner looks for evidence that the file moved on since the generation
//! was taken, and refuses when it finds any. `docs/dwr-format.md` states the
//! rule; this module is its implementation.

use crate::dbfile::{self, DbHeader, PageRole};
use crate::format::{crc32c, Fingerprint};
use crate::store::Generation;
use std::collections::HashMap;

/// A schema B-tree page that differs from its copy in no more than this many
/// bits counts as bit rot. A legitimate change to a schema page (a new row,
/// a rewritten CREATE statement) changes far more.
pub const BIT_ROT_LIMIT: u32 = 16;

/// How the planner sees the database file.
pub trait DiskPages {
    fn file_size(&mut self) -> std::io::Result<u64>;
    /// `(st_dev, st_ino)` of the database file.
    fn identity(&mut self) -> std::io::Result<(u64, u64)>;
    /// Reads page `pgno` (1-based) of size `page_size`.
    fn read_page(&mut self, pgno: u32, page_size: u32) -> std::io::Result<Vec<u8>>;
}

/// The planner's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Restore these pages from generation `generation`.
    Restore { generation: u64, pages: Vec<u32> },
    /// The file already equals the copy.
    Intact { generation: u64 },
    /// No generation may be restored; the reason, for the user.
    Refuse(String),
}

/// Chooses the newest generation that provably describes the file and lists
/// the pages where the file differs from it.
pub fn plan(generations: &[Generation], disk: &mut dyn DiskPages) -> Plan {
    if generations.is_empty() {
        return Plan::Refuse("the -dwr holds no valid generation".into());
    }
    let mut reasons = Vec::new();
    for (age, g) in generations.iter().enumerate() {
        match evaluate(g, disk, age == 0) {
            Ok(plan) => return plan,
            Err(why) => reasons.push(format!("generation {}: {why}", g.header.generation)),
        }
    }
    Plan::Refuse(format!(
        "the copy does not match the current state of the database ({})",
        reasons.join("; ")
    ))
}

/// `newest` is false for an older generation, considered only after the
/// newest was refused. That happens legitimately when a crash came after the
/// copy was updated but before the database committed, so the file rolled
/// back to the older state. An older generation is therefore restored only
/// if page 1 on disk is exactly its page 1; evidence that the file moved
/// past the newest copy makes every older copy staler still.
fn evaluate(g: &Generation, disk: &mut dyn DiskPages, newest: bool) -> Result<Plan, String> {
    let fp = &g.header.fingerprint;
    let ps = g.header.page_size;
    let io = |e: std::io::Error| format!("cannot read the database: {e}");
    let size = disk.file_size().map_err(io)?;
    if size != fp.file_size {
        return Err(format!(
            "the file is {size} bytes, the copy was taken at {} bytes",
            fp.file_size
        ));
    }
    if disk.identity().map_err(io)? != (fp.dev, fp.ino) {
        return Err("the database file was replaced since the copy was taken".into());
    }
    let max_page = (size / ps as u64) as u32;
    let roles = copy_roles(g, max_page)?;
    let mut differing = Vec::new();
    let mut disk_pages = HashMap::new();
    for (pgno, copy) in &g.pages {
        if *pgno > max_page {
            return Err(format!(
                "page {pgno} of the copy lies past the end of the file"
            ));
        }
        let on_disk = disk.read_page(*pgno, ps).map_err(io)?;
        if on_disk != *copy {
            differing.push(*pgno);
        }
        disk_pages.insert(*pgno, on_disk);
    }
    let generation = g.header.generation;
    if differing.is_empty() {
        return Ok(Plan::Intact { generation });
    }
    let copy_p1 = g.page(1).expect("a generation always holds page 1");
    if disk_pages[&1] != copy_p1 {
        if !newest {
            return Err("page 1 on disk is not this older generation's page 1".into());
        }
        // Page 1 cannot vouch for the rest: look for signs of a legitimate
        // writer that did not keep the copy current.
        page1_evidence(&disk_pages[&1], copy_p1, fp, ps, max_page)?;
        freelist_evidence(fp, ps, max_page, disk)?;
        for &pgno in &differing {
            let role = roles.get(&pgno).copied();
            if pgno == 1 || role == Some(PageRole::Overflow) {
                continue;
            }
            let on_disk = &disk_pages[&pgno];
            let copy = g.page(pgno).unwrap();
            let usable = ps - copy_p1[20] as u32;
            if dbfile::check_btree_page(pgno, on_disk, usable, max_page).is_ok()
                && bit_distance(on_disk, copy) > BIT_ROT_LIMIT
            {
                return Err(format!(
                    "schema page {pgno} holds different valid content while page 1 is damaged"
                ));
            }
        }
    }
    Ok(Plan::Restore {
        generation,
        pages: differing,
    })
}

/// Refuses when the page 1 on disk looks like a later, legitimate version
/// rather than a damaged copy of the one we hold.
fn page1_evidence(
    disk_p1: &[u8],
    copy_p1: &[u8],
    fp: &Fingerprint,
    ps: u32,
    max_page: u32,
) -> Result<(), String> {
    // The schema root on page 1 (from offset 100) can be intact while the
    // header is destroyed. Judge it under the copy's header: a valid B-tree
    // page that differs by more than bit rot is another writer's schema.
    let mut hybrid = copy_p1.to_vec();
    hybrid[100..].copy_from_slice(&disk_p1[100..]);
    let usable = ps - copy_p1[20] as u32;
    if dbfile::check_btree_page(1, &hybrid, usable, max_page).is_ok()
        && bit_distance(&disk_p1[100..], &copy_p1[100..]) > BIT_ROT_LIMIT
    {
        return Err("page 1 holds a different valid schema root than the copy".into());
    }
    let Ok(h) = DbHeader::parse(disk_p1) else {
        return Ok(()); // unreadable header: damage, not a newer version
    };
    if h.page_size != ps {
        return Err(format!(
            "page 1 declares page size {}, the copy has {ps}",
            h.page_size
        ));
    }
    // SQLite bumps both fields together on every commit in rollback mode;
    // damage rarely keeps them equal and different from the copy.
    if h.change_counter == h.version_valid_for && h.change_counter != fp.change_counter {
        return Err(format!(
            "page 1 shows a later commit (change counter {}, copy {})",
            h.change_counter, fp.change_counter
        ));
    }
    Ok(())
}

/// Refuses when the freelist trunk pages the copy recorded have changed: a
/// writer allocated or freed pages since.
fn freelist_evidence(
    fp: &Fingerprint,
    ps: u32,
    max_page: u32,
    disk: &mut dyn DiskPages,
) -> Result<(), String> {
    if fp.freelist_trunk == 0 {
        return Ok(());
    }
    let crc = freelist_crc(fp.freelist_trunk, ps, max_page, &mut |p| {
        disk.read_page(p, ps)
    })
    .map_err(|e| format!("cannot read the freelist: {e}"))?;
    if crc != fp.freelist_crc {
        return Err("the freelist changed since the copy was taken".into());
    }
    Ok(())
}

/// CRC-32C over the freelist trunk chain starting at `first`, in chain order.
/// The walk is bounded by the file size, so a damaged chain cannot loop.
pub fn freelist_crc(
    first: u32,
    ps: u32,
    max_page: u32,
    read: &mut dyn FnMut(u32) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<u32> {
    freelist_chain(first, ps, max_page, read).map(|(crc, _)| crc)
}

/// [`freelist_crc`], and the trunk pages it read.
pub fn freelist_chain(
    first: u32,
    ps: u32,
    max_page: u32,
    read: &mut dyn FnMut(u32) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<(u32, Vec<u32>)> {
    let mut crc = 0u32;
    let mut chain = Vec::new();
    let mut next = first;
    while next != 0 && next <= max_page && (chain.len() as u32) < max_page {
        let page = read(next)?;
        debug_assert_eq!(page.len(), ps as usize);
        crc = crc32c::crc32c_append(crc, &page);
        chain.push(next);
        next = u32::from_be_bytes(page[0..4].try_into().unwrap());
    }
    Ok((crc, chain))
}

/// Roles of the copy's pages, from walking the copy itself.
fn copy_roles(g: &Generation, max_page: u32) -> Result<HashMap<u32, PageRole>, String> {
    let p1 = g.page(1).ok_or("the copy has no page 1")?;
    let header = DbHeader::parse(p1).map_err(|e| format!("the copy of page 1 is invalid: {e}"))?;
    let mut read = |pgno: u32| {
        g.page(pgno).map(<[u8]>::to_vec).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("page {pgno} not in copy"),
            )
        })
    };
    let pages = dbfile::schema_tree_pages(&header, max_page, &mut read)
        .map_err(|e| format!("the copy's schema tree is incomplete: {e}"))?;
    Ok(pages.into_iter().collect())
}

/// Number of differing bits between two equally long pages.
pub fn bit_distance(a: &[u8], b: &[u8]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// The page-1 image to write when restoring: the copy with its change
/// counter moved past both the copy's and the damaged page's, so that every
/// connection's page cache sees a change and drops the damaged image.
pub fn restored_page1(copy: &[u8], damaged: &[u8]) -> Vec<u8> {
    let counter = |p: &[u8]| u32::from_be_bytes(p[24..28].try_into().unwrap());
    let mut next = counter(copy).wrapping_add(1);
    if damaged.len() >= 28 && next == counter(damaged) {
        next = next.wrapping_add(1);
    }
    let mut page = copy.to_vec();
    page[24..28].copy_from_slice(&next.to_be_bytes());
    page[92..96].copy_from_slice(&next.to_be_bytes());
    page
}

/// Checksum used for the freelist fingerprint of a whole snapshot.
pub fn page_crc(page: &[u8]) -> u32 {
    crc32c(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_distance_counts_bits() {
        assert_eq!(bit_distance(&[0, 0xff], &[1, 0x0f]), 5);
        assert_eq!(bit_distance(&[7; 10], &[7; 10]), 0);
    }

    #[test]
    fn restored_page1_moves_the_counter_past_both() {
        let mut copy = vec![0u8; 512];
        copy[24..28].copy_from_slice(&5u32.to_be_bytes());
        let mut damaged = vec![0u8; 512];
        damaged[24..28].copy_from_slice(&6u32.to_be_bytes());
        let p = restored_page1(&copy, &damaged);
        assert_eq!(&p[24..28], &7u32.to_be_bytes());
        assert_eq!(&p[92..96], &7u32.to_be_bytes());
        assert_eq!(p[..24], copy[..24]);
        assert_eq!(p[28..92], copy[28..92]);
    }
}
