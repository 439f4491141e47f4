//! The pages the salvage reads: the database file, with the schema copy
//! (and committed WAL frames) laid over it, and who owns each page.

use std::collections::HashMap;

/// Reads page `pgno` of the database file into `buf` (page-size bytes).
pub type FileReader<'a> = dyn FnMut(u32, &mut [u8]) -> std::io::Result<()> + 'a;

/// A page's owner, as the walks and the scans claim pages. Claiming is
/// what keeps a hostile file from making a walk visit a page twice (a
/// cycle), and what leaves the unclaimed pages as orphans at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Unclaimed,
    /// Page 1, the schema tree, pointer-map pages, the lock-byte page.
    Reserved,
    /// On the freelist.
    Free,
    /// Reached by the walk of tree `n` (readable or not).
    Tree(u32),
    /// Part of orphan group `n`.
    Group(u32),
}

const UNCLAIMED: u32 = 0;
const RESERVED: u32 = 1;
const FREE: u32 = 2;
const TREE_BASE: u32 = 16;
const GROUP_BASE: u32 = 1 << 31;

/// Page images and the ownership map.
pub struct Pages<'a> {
    pub page_size: u32,
    pub usable: u32,
    /// Pages 1..=max_page exist.
    pub max_page: u32,
    file: &'a mut FileReader<'a>,
    /// Pages served instead of the file's: the schema copy, WAL frames.
    overlay: HashMap<u32, Vec<u8>>,
    owners: Vec<u32>,
    /// Pages that could not be read from the file at all.
    pub io_errors: u64,
}

impl<'a> Pages<'a> {
    pub fn new(page_size: u32, usable: u32, max_page: u32, file: &'a mut FileReader<'a>) -> Self {
        Pages {
            page_size,
            usable,
            max_page,
            file,
            overlay: HashMap::new(),
            owners: vec![UNCLAIMED; max_page as usize + 1],
            io_errors: 0,
        }
    }

    /// Serves `image` for `pgno` instead of the file's page.
    pub fn overlay(&mut self, pgno: u32, image: Vec<u8>) {
        if (1..=self.max_page).contains(&pgno) && image.len() == self.page_size as usize {
            self.overlay.insert(pgno, image);
        }
    }

    /// The image of page `pgno`, or None past the end or on a read error.
    pub fn get(&mut self, pgno: u32) -> Option<Vec<u8>> {
        if !(1..=self.max_page).contains(&pgno) {
            return None;
        }
        if let Some(p) = self.overlay.get(&pgno) {
            return Some(p.clone());
        }
        let mut buf = vec![0u8; self.page_size as usize];
        match (self.file)(pgno, &mut buf) {
            Ok(()) => Some(buf),
            Err(_) => {
                self.io_errors += 1;
                None
            }
        }
    }

    pub fn owner(&self, pgno: u32) -> Owner {
        match self.owners.get(pgno as usize).copied() {
            None => Owner::Reserved,
            Some(UNCLAIMED) => Owner::Unclaimed,
            Some(RESERVED) => Owner::Reserved,
            Some(FREE) => Owner::Free,
            Some(n) if n >= GROUP_BASE => Owner::Group(n - GROUP_BASE),
            Some(n) => Owner::Tree(n - TREE_BASE),
        }
    }

    /// Claims `pgno` for `owner` if nobody has it; true when claimed.
    pub fn claim(&mut self, pgno: u32, owner: Owner) -> bool {
        let code = match owner {
            Owner::Unclaimed => return false,
            Owner::Reserved => RESERVED,
            Owner::Free => FREE,
            Owner::Tree(n) => TREE_BASE + n,
            Owner::Group(n) => GROUP_BASE + n,
        };
        match self.owners.get_mut(pgno as usize) {
            Some(slot) if *slot == UNCLAIMED && pgno >= 1 => {
                *slot = code;
                true
            }
            _ => false,
        }
    }

    /// Hands `pages` of group `from` to tree `to` (an orphan group
    /// attributed to a tree, so that later pointer-map chains end there).
    pub fn reassign(&mut self, pages: &[u32], from: Owner, to: Owner) {
        let (Owner::Group(g), Owner::Tree(t)) = (from, to) else {
            return;
        };
        for &p in pages {
            if let Some(slot) = self.owners.get_mut(p as usize) {
                if *slot == GROUP_BASE + g {
                    *slot = TREE_BASE + t;
                }
            }
        }
    }

    /// Pages nobody claimed, in file order.
    pub fn unclaimed(&self) -> Vec<u32> {
        (2..=self.max_page)
            .filter(|&p| self.owners[p as usize] == UNCLAIMED)
            .collect()
    }
}
