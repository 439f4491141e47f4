//! Strict parsing of one B-tree page of any kind, and of the payload of its
//! cells, for the salvage.
//!
//! The heal path asks "is this schema page damaged?"; the salvage asks
//! more: "may the rows on this page be trusted?". A page of random bytes
//! passes a loose check now and then, and a row read from it would be an
//! altered row. So a page is accepted only when it accounts for every byte
//! of its content area exactly, as `PRAGMA integrity_check` demands: the
//! cells, the freeblock chain and the fragment count must tile the area
//! from the content start to the end of the usable space without overlap.
//! Random bytes essentially never do.
//!
//! Everything here treats the page as hostile: offsets are bounds-checked,
//! arithmetic is checked, and every loop is bounded by the page size.

use crate::dbfile::{be_u16, be_u32, read_varint, HEADER_SIZE};

/// The four kinds of B-tree page (file format §1.6, the page type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 0x05: rowids and child pointers.
    TableInterior,
    /// 0x0D: rowids and records.
    TableLeaf,
    /// 0x02: keys (records) and child pointers.
    IndexInterior,
    /// 0x0A: keys (records).
    IndexLeaf,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            0x05 => Some(Kind::TableInterior),
            0x0D => Some(Kind::TableLeaf),
            0x02 => Some(Kind::IndexInterior),
            0x0A => Some(Kind::IndexLeaf),
            _ => None,
        }
    }

    pub fn is_leaf(self) -> bool {
        matches!(self, Kind::TableLeaf | Kind::IndexLeaf)
    }

    pub fn is_table(self) -> bool {
        matches!(self, Kind::TableLeaf | Kind::TableInterior)
    }
}

/// One cell, located but not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Left child page (interior pages), else 0.
    pub child: u32,
    /// The rowid (table pages), else 0.
    pub rowid: i64,
    /// Total payload length (0 for table interior cells).
    pub payload_len: u64,
    /// Where the locally stored part of the payload lies in the page.
    pub local_start: usize,
    pub local_len: usize,
    /// First overflow page, 0 when the payload is all local.
    pub overflow: u32,
}

/// A parsed page.
#[derive(Debug, Clone)]
pub struct Page {
    pub kind: Kind,
    pub cells: Vec<Cell>,
    /// Right-most child (interior pages), else 0.
    pub right_child: u32,
}

impl Page {
    /// Every child page, left to right.
    pub fn children(&self) -> impl Iterator<Item = u32> + '_ {
        self.cells
            .iter()
            .map(|c| c.child)
            .chain(std::iter::once(self.right_child))
            .filter(|&c| c != 0)
    }
}

/// How many payload bytes a cell of a page of `kind` keeps on its own page
/// (the file format's rule, in [`crate::dbfile::local_payload`]).
pub fn local_payload(kind: Kind, usable: u32, payload: u64) -> u64 {
    crate::dbfile::local_payload(!kind.is_table(), usable, payload)
}

/// Why a page was not accepted. Short, for the report.
pub type Reject = &'static str;

/// Parses page `pgno` strictly. `page` holds at least `usable` bytes
/// (`usable` in 480..=65536); `max_page` bounds child and overflow pointers.
pub fn parse(pgno: u32, page: &[u8], usable: u32, max_page: u32) -> Result<Page, Reject> {
    let usable_len = usable as usize;
    let area = page.get(..usable_len).ok_or("short page")?;
    let hdr = if pgno == 1 { HEADER_SIZE } else { 0 };
    // B-tree page header (offsets from `hdr`): 0 type, 1 first freeblock,
    // 3 cell count, 5 content start (0 = 65536), 7 fragmented bytes,
    // 8 right child (interior only).
    let kind = Kind::from_byte(*area.get(hdr).ok_or("short page")?).ok_or("not a b-tree page")?;
    let header_len = if kind.is_leaf() { 8 } else { 12 };
    let first_free = usize::from(be_u16(area, hdr + 1).ok_or("short page")?);
    let ncells = usize::from(be_u16(area, hdr + 3).ok_or("short page")?);
    let content_start = match be_u16(area, hdr + 5).ok_or("short page")? {
        0 => 65536,
        n => usize::from(n),
    };
    let fragmented = usize::from(area[hdr + 7]);
    let ptr_array = hdr + header_len;
    let ptr_end = ptr_array + 2 * ncells;
    if ptr_end > usable_len || content_start < ptr_end || content_start > usable_len {
        return Err("cell area out of bounds");
    }
    let right_child = if kind.is_leaf() {
        0
    } else {
        let c = be_u32(area, hdr + 8).ok_or("short page")?;
        check_ref(c, max_page)?;
        c
    };
    // Extents of everything in the content area, to prove it is tiled.
    let mut extents: Vec<(usize, usize)> = Vec::with_capacity(ncells + 8);
    let mut cells = Vec::with_capacity(ncells);
    for i in 0..ncells {
        let off = usize::from(be_u16(area, ptr_array + 2 * i).ok_or("short page")?);
        if off < content_start || off >= usable_len {
            return Err("cell pointer out of range");
        }
        let body = &area[off..];
        let (cell, size) = parse_cell(kind, body, off, usable, max_page)?;
        // SQLite never stores a cell in fewer than 4 bytes.
        let size = size.max(4);
        if off + size > usable_len {
            return Err("cell runs past the page");
        }
        extents.push((off, off + size));
        cells.push(cell);
    }
    // The freeblock chain: ascending offsets, each at least 4 bytes, inside
    // the content area; the ascending rule also bounds the loop.
    let mut free = first_free;
    let mut last_end = 0;
    while free != 0 {
        if free < content_start || free < last_end || free + 4 > usable_len {
            return Err("bad freeblock chain");
        }
        let next = usize::from(be_u16(area, free).ok_or("short page")?);
        let size = usize::from(be_u16(area, free + 2).ok_or("short page")?);
        if size < 4 || free + size > usable_len || (next != 0 && next < free + size) {
            return Err("bad freeblock chain");
        }
        extents.push((free, free + size));
        last_end = free + size;
        free = next;
    }
    extents.sort_unstable();
    let mut at = content_start;
    let mut gaps = 0usize;
    for &(start, end) in &extents {
        if start < at {
            return Err("overlapping cells");
        }
        gaps += start - at;
        at = end;
    }
    gaps += usable_len - at;
    // Gaps between cells and freeblocks are the fragments (each under 4
    // bytes); their total is recorded in the header.
    if gaps != fragmented {
        return Err("content area does not add up");
    }
    if kind.is_table() && !kind.is_leaf() && ncells == 0 && pgno != 1 {
        // An interior page always has at least one cell besides the right child.
        return Err("empty interior page");
    }
    Ok(Page {
        kind,
        cells,
        right_child,
    })
}

fn check_ref(pgno: u32, max_page: u32) -> Result<(), Reject> {
    if (2..=max_page).contains(&pgno) {
        Ok(())
    } else {
        Err("page pointer out of range")
    }
}

/// Parses the cell at the start of `body` (which runs to the end of the
/// usable area); returns it and its size on the page.
fn parse_cell(
    kind: Kind,
    body: &[u8],
    off: usize,
    usable: u32,
    max_page: u32,
) -> Result<(Cell, usize), Reject> {
    const OVERRUN: Reject = "cell runs past the page";
    let mut cell = Cell {
        child: 0,
        rowid: 0,
        payload_len: 0,
        local_start: 0,
        local_len: 0,
        overflow: 0,
    };
    let mut at = 0usize;
    if !kind.is_leaf() {
        cell.child = be_u32(body, 0).ok_or(OVERRUN)?;
        check_ref(cell.child, max_page)?;
        at = 4;
    }
    if kind == Kind::TableInterior {
        let (rowid, n) = read_varint(&body[at..]).ok_or(OVERRUN)?;
        cell.rowid = rowid as i64;
        return Ok((cell, at + n));
    }
    let (payload, n) = read_varint(&body[at..]).ok_or(OVERRUN)?;
    at += n;
    if kind == Kind::TableLeaf {
        let (rowid, n) = read_varint(&body[at..]).ok_or(OVERRUN)?;
        cell.rowid = rowid as i64;
        at += n;
    }
    // SQLite's own limit on a payload is 2^31-1 bytes (SQLITE_MAX_LENGTH
    // cannot exceed it); a larger size is damage, not data.
    if payload > i32::MAX as u64 {
        return Err("payload too large");
    }
    let local = local_payload(kind, usable, payload) as usize;
    cell.payload_len = payload;
    cell.local_start = off + at;
    cell.local_len = local;
    at = at.checked_add(local).ok_or(OVERRUN)?;
    if (local as u64) < payload {
        cell.overflow = be_u32(body, at).ok_or(OVERRUN)?;
        check_ref(cell.overflow, max_page)?;
        at += 4;
    }
    if at > body.len() {
        return Err(OVERRUN);
    }
    Ok((cell, at))
}
