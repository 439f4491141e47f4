//! Minimal, dependency-free reader for the parts of the SQLite database file format
//! (<https://www.sqlite.org/fileformat2.html>) that the VFS shim needs: the 100-byte
//! database header, the `sqlite_schema` table B-tree rooted at page 1 (with the overflow
//! pages of its cells), and the chain of freelist trunk pages.
//!
//! Everything read here may be hostile or corrupt: every offset is bounds-checked, all
//! arithmetic is checked or saturating, and every loop is bounded, either by a fixed limit
//! or by refusing to visit any page twice (which bounds the work by the file's page count).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;

/// Bytes 0..16 of every database file.
pub const HEADER_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Size of the database header at the start of page 1.
pub const HEADER_SIZE: usize = 100;
/// SQLite refuses a usable page size below this, which is what keeps the payload
/// arithmetic below (U-35, U-12, U-4) from ever going negative.
const MIN_USABLE_SIZE: u32 = 480;
/// SQLite itself gives up at 20 levels (BTCURSOR_MAX_DEPTH); a little slack costs nothing.
const MAX_TREE_DEPTH: u32 = 64;

/// B-tree page type byte: interior page of a table (rowid) B-tree.
const PAGE_TYPE_TABLE_INTERIOR: u8 = 0x05;
/// B-tree page type byte: leaf page of a table (rowid) B-tree.
const PAGE_TYPE_TABLE_LEAF: u8 = 0x0D;

/// Fields of the 100-byte database header that this crate uses. All big-endian on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbHeader {
    /// Offset 16, 2 bytes: page size in bytes; the value 1 means 65536.
    pub page_size: u32,
    /// Offset 18, 1 byte: file format write version (1 = legacy rollback journal, 2 = WAL).
    pub write_version: u8,
    /// Offset 19, 1 byte: file format read version (1 = legacy rollback journal, 2 = WAL).
    pub read_version: u8,
    /// Offset 20, 1 byte: bytes reserved for extensions at the end of every page.
    pub reserved_per_page: u8,
    /// Offset 24, 4 bytes: file change counter, bumped by every rollback-mode write transaction.
    pub change_counter: u32,
    /// Offset 28, 4 bytes: size of the database in pages (the "in-header database size").
    pub page_count: u32,
    /// Offset 32, 4 bytes: page number of the first freelist trunk page, 0 if none.
    pub freelist_trunk: u32,
    /// Offset 36, 4 bytes: total number of freelist pages (trunks and leaves).
    pub freelist_count: u32,
    /// Offset 40, 4 bytes: schema cookie, bumped whenever the schema changes.
    pub schema_cookie: u32,
    /// Offset 44, 4 bytes: schema format number (1..=4; 0 in a database without schema).
    pub schema_format: u32,
    /// Offset 52, 4 bytes: largest root B-tree page in auto/incremental vacuum mode, else 0.
    pub autovacuum_top_root: u32,
    /// Offset 56, 4 bytes: text encoding (1 = UTF-8, 2 = UTF-16le, 3 = UTF-16be).
    pub text_encoding: u32,
    /// Offset 64, 4 bytes: non-zero for incremental vacuum mode.
    pub incremental_vacuum: u32,
    /// Offset 92, 4 bytes: value of the change counter when `page_count` was last written.
    pub version_valid_for: u32,
    /// Offset 96, 4 bytes: SQLITE_VERSION_NUMBER of the library that last wrote the file.
    pub sqlite_version: u32,
}

impl DbHeader {
    /// Parses and validates the header: magic string, page size a power of two in
    /// 512..=65536, file format versions 1 or 2, payload fractions 64/32/32, usable size
    /// at least 480, schema format 0..=4 and text encoding 0..=3.
    /// Returns the first problem found. Only the first 100 bytes of `page1` are looked at.
    pub fn parse(page1: &[u8]) -> Result<DbHeader, FormatError> {
        let h: &[u8; HEADER_SIZE] = page1
            .get(..HEADER_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or(FormatError::HeaderTooShort { len: page1.len() })?;
        let u32_at = |off: usize| u32::from_be_bytes([h[off], h[off + 1], h[off + 2], h[off + 3]]);
        if &h[..16] != HEADER_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let raw_page_size = u16::from_be_bytes([h[16], h[17]]);
        let header = DbHeader {
            page_size: decode_page_size(raw_page_size).ok_or(FormatError::BadPageSize {
                value: u32::from(raw_page_size),
            })?,
            write_version: h[18],
            read_version: h[19],
            reserved_per_page: h[20],
            change_counter: u32_at(24),
            page_count: u32_at(28),
            freelist_trunk: u32_at(32),
            freelist_count: u32_at(36),
            schema_cookie: u32_at(40),
            schema_format: u32_at(44),
            autovacuum_top_root: u32_at(52),
            text_encoding: u32_at(56),
            incremental_vacuum: u32_at(64),
            version_valid_for: u32_at(92),
            sqlite_version: u32_at(96),
        };
        // Versions above 2 would make SQLite refuse to read (or write) the file; 0 is never
        // written, so either points at damage rather than at a future format.
        if !(1..=2).contains(&header.write_version) || !(1..=2).contains(&header.read_version) {
            return Err(FormatError::BadFileFormatVersion {
                write: header.write_version,
                read: header.read_version,
            });
        }
        // Offsets 21, 22, 23: maximum embedded payload fraction, minimum embedded payload
        // fraction and leaf payload fraction. The format fixes them at 64, 32 and 32.
        if (h[21], h[22], h[23]) != (64, 32, 32) {
            return Err(FormatError::BadPayloadFractions {
                max: h[21],
                min: h[22],
                leaf: h[23],
            });
        }
        header.checked_usable_size()?;
        if header.schema_format > 4 {
            return Err(FormatError::BadSchemaFormat(header.schema_format));
        }
        if header.text_encoding > 3 {
            return Err(FormatError::BadTextEncoding(header.text_encoding));
        }
        Ok(header)
    }

    /// Usable size of a page (page_size - reserved).
    pub fn usable_size(&self) -> u32 {
        self.page_size
            .saturating_sub(u32::from(self.reserved_per_page))
    }

    /// True when page_count is trustworthy (change_counter == version_valid_for and
    /// page_count != 0); older writers left it stale, and then the file size is the truth.
    pub fn page_count_is_valid(&self) -> bool {
        self.change_counter == self.version_valid_for && self.page_count != 0
    }

    /// The fields are public, so a header may not come from [`DbHeader::parse`]; the walks
    /// re-check the geometry their arithmetic depends on.
    pub fn checked_usable_size(&self) -> Result<u32, FormatError> {
        if !is_valid_page_size(self.page_size) {
            return Err(FormatError::BadPageSize {
                value: self.page_size,
            });
        }
        let usable = self.usable_size();
        if usable < MIN_USABLE_SIZE {
            return Err(FormatError::BadReservedSpace {
                reserved: self.reserved_per_page,
                page_size: self.page_size,
            });
        }
        Ok(usable)
    }
}

/// Reads the page size from bytes 16..18 of a header without validating anything else;
/// None if not a valid power of two 512..=65536.
pub fn page_size_from_header(page1: &[u8]) -> Option<u32> {
    decode_page_size(be_u16(page1, 16)?)
}

fn decode_page_size(raw: u16) -> Option<u32> {
    // 65536 does not fit in the 2-byte field, so the format stores it as 1.
    let size = if raw == 1 { 65536 } else { u32::from(raw) };
    is_valid_page_size(size).then_some(size)
}

fn is_valid_page_size(size: u32) -> bool {
    size.is_power_of_two() && (512..=65536).contains(&size)
}

/// Reads one of SQLite's variable-length integers: bytes 1..=8 contribute their low 7 bits
/// while the high bit is set, a 9th byte contributes all 8 bits. Returns the value and the
/// number of bytes consumed, or None if `buf` ends first.
pub fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for i in 0..8 {
        let byte = *buf.get(i)?;
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    let last = *buf.get(8)?;
    Some(((value << 8) | u64::from(last), 9))
}

pub(crate) fn be_u16(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

pub(crate) fn be_u32(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Why a header or page does not look like a valid part of an SQLite database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    HeaderTooShort {
        len: usize,
    },
    BadMagic,
    BadPageSize {
        value: u32,
    },
    BadFileFormatVersion {
        write: u8,
        read: u8,
    },
    BadPayloadFractions {
        max: u8,
        min: u8,
        leaf: u8,
    },
    BadReservedSpace {
        reserved: u8,
        page_size: u32,
    },
    BadSchemaFormat(u32),
    BadTextEncoding(u32),
    /// The caller-supplied usable size is impossible, or larger than the page image.
    BadUsableSize {
        usable_size: u32,
        page_len: usize,
    },
    /// Page 1's header disagrees with the usable size the caller believes in.
    UsableSizeMismatch {
        header: u32,
        expected: u32,
    },
    EmptyDatabase,
    PageSizeMismatch {
        pgno: u32,
        len: usize,
        expected: u32,
    },
    PageOutOfRange {
        referrer: u32,
        pgno: u32,
        max_page: u32,
    },
    BadPageType {
        pgno: u32,
        page_type: u8,
    },
    CellCountTooLarge {
        pgno: u32,
        cells: u16,
    },
    BadCellContentStart {
        pgno: u32,
        start: u32,
    },
    BadFreeblock {
        pgno: u32,
        offset: u16,
    },
    CellPointerOutOfRange {
        pgno: u32,
        cell: u16,
        offset: u16,
    },
    CellOverrun {
        pgno: u32,
        cell: u16,
    },
    /// A page was reached a second time: a cycle, or a page shared by two owners.
    PageRevisited {
        pgno: u32,
    },
    TreeTooDeep {
        pgno: u32,
    },
    OverflowChainTooLong {
        pgno: u32,
        cell: u16,
        pages: u64,
    },
    OverflowChainShort {
        pgno: u32,
        missing: u64,
    },
    FreelistLeafCount {
        pgno: u32,
        count: u32,
        max: u32,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FormatError::*;
        match *self {
            HeaderTooShort { len } => write!(f, "database header truncated: {len} of 100 bytes"),
            BadMagic => write!(f, "not an sqlite 3 database: bad header string"),
            BadPageSize { value } => write!(f, "invalid page size {value}"),
            BadFileFormatVersion { write, read } => {
                write!(f, "unsupported file format versions: write {write}, read {read}")
            }
            BadPayloadFractions { max, min, leaf } => {
                write!(f, "payload fractions {max}/{min}/{leaf} are not 64/32/32")
            }
            BadReservedSpace { reserved, page_size } => write!(
                f,
                "{reserved} reserved bytes leave less than {MIN_USABLE_SIZE} usable bytes in a {page_size}-byte page"
            ),
            BadSchemaFormat(v) => write!(f, "unsupported schema format {v}"),
            BadTextEncoding(v) => write!(f, "invalid text encoding {v}"),
            BadUsableSize { usable_size, page_len } => {
                write!(f, "usable size {usable_size} is invalid for a {page_len}-byte page")
            }
            UsableSizeMismatch { header, expected } => {
                write!(f, "page 1: header gives usable size {header}, expected {expected}")
            }
            EmptyDatabase => write!(f, "database has no pages"),
            PageSizeMismatch { pgno, len, expected } => {
                write!(f, "page {pgno}: image is {len} bytes, expected {expected}")
            }
            PageOutOfRange { referrer, pgno, max_page } => write!(
                f,
                "page {referrer}: page number {pgno} is outside 2..={max_page}"
            ),
            BadPageType { pgno, page_type } => write!(
                f,
                "page {pgno}: page type 0x{page_type:02x} is not a table b-tree page"
            ),
            CellCountTooLarge { pgno, cells } => {
                write!(f, "page {pgno}: cell count {cells} does not fit in the page")
            }
            BadCellContentStart { pgno, start } => write!(
                f,
                "page {pgno}: cell content area start {start} is outside the page"
            ),
            BadFreeblock { pgno, offset } => {
                write!(f, "page {pgno}: first freeblock offset {offset} is out of range")
            }
            CellPointerOutOfRange { pgno, cell, offset } => write!(
                f,
                "page {pgno}: cell pointer {cell} points outside the page (offset {offset})"
            ),
            CellOverrun { pgno, cell } => {
                write!(f, "page {pgno}: cell {cell} extends past the end of the page")
            }
            PageRevisited { pgno } => write!(
                f,
                "page {pgno}: page is referenced more than once (cycle or shared page)"
            ),
            TreeTooDeep { pgno } => write!(
                f,
                "page {pgno}: b-tree is deeper than {MAX_TREE_DEPTH} levels"
            ),
            OverflowChainTooLong { pgno, cell, pages } => write!(
                f,
                "page {pgno}: cell {cell} needs {pages} overflow pages, more than the file holds"
            ),
            OverflowChainShort { pgno, missing } => {
                write!(f, "page {pgno}: overflow chain ends {missing} page(s) early")
            }
            FreelistLeafCount { pgno, count, max } => write!(
                f,
                "page {pgno}: freelist trunk claims {count} leaves, at most {max} fit"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

/// Error of a walk: either the format was invalid at some page, or reading a page failed.
#[derive(Debug)]
pub enum WalkError {
    Format(FormatError),
    Io { pgno: u32, error: io::Error },
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::Format(e) => fmt::Display::fmt(e, f),
            WalkError::Io { pgno, error } => write!(f, "page {pgno}: read failed: {error}"),
        }
    }
}

impl std::error::Error for WalkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalkError::Format(e) => Some(e),
            WalkError::Io { error, .. } => Some(error),
        }
    }
}

impl From<FormatError> for WalkError {
    fn from(e: FormatError) -> Self {
        WalkError::Format(e)
    }
}

/// The kind of a page in the schema tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageRole {
    TableInterior,
    TableLeaf,
    Overflow,
}

/// What a table B-tree page points at, as far as the walk cares.
struct TablePage {
    role: PageRole,
    children: Vec<u32>,
    /// (first overflow page, number of overflow pages) for each spilling leaf cell.
    overflow_chains: Vec<(u32, u64)>,
}

fn check_page_ref(referrer: u32, pgno: u32, max_page: u32) -> Result<u32, FormatError> {
    if (2..=max_page).contains(&pgno) {
        Ok(pgno)
    } else {
        Err(FormatError::PageOutOfRange {
            referrer,
            pgno,
            max_page,
        })
    }
}

/// Number of payload bytes a cell keeps on its own page; the rest spills to overflow
/// pages. Straight from the file format (section 1.6): X = U-35 for table leaves and
/// ((U-12)*64/255)-23 for index pages, M = ((U-12)*32/255)-23, K = M+((P-M)%(U-4));
/// local = P if P<=X, else K if K<=X, else M. Saturating arithmetic only matters for
/// U < 480, which callers have already rejected.
pub fn local_payload(index_page: bool, usable: u32, payload: u64) -> u64 {
    let u = u64::from(usable);
    let x = if index_page {
        (u.saturating_sub(12) * 64 / 255).saturating_sub(23)
    } else {
        u.saturating_sub(35)
    };
    if payload <= x {
        return payload;
    }
    let m = (u.saturating_sub(12) * 32 / 255).saturating_sub(23);
    let k = m + payload
        .saturating_sub(m)
        .checked_rem(u.saturating_sub(4))
        .unwrap_or(0);
    if k <= x {
        k
    } else {
        m
    }
}

/// A table-leaf cell's local payload (see [`local_payload`]).
fn table_leaf_local_payload(usable: u32, payload: u64) -> u64 {
    local_payload(false, usable, payload)
}

/// Parses a table B-tree page, checking everything that can be checked without reading
/// other pages. `page` must hold at least `usable` bytes; `usable` must be >= 480.
fn parse_table_page(
    pgno: u32,
    page: &[u8],
    usable: u32,
    max_page: u32,
) -> Result<TablePage, FormatError> {
    let short = || FormatError::PageSizeMismatch {
        pgno,
        len: page.len(),
        expected: usable,
    };
    // Reserved bytes at the end of the page never hold cell data.
    let area = page.get(..usable as usize).ok_or_else(short)?;
    // Page 1 starts with the database header; cell offsets stay relative to the page start.
    let hdr = if pgno == 1 { HEADER_SIZE } else { 0 };
    // B-tree page header, offsets relative to `hdr`:
    //   0  1  page type
    //   1  2  offset of the first freeblock, 0 if none
    //   3  2  number of cells
    //   5  2  start of the cell content area, 0 meaning 65536
    //   7  1  number of fragmented free bytes in the content area
    //   8  4  right-most child page number (interior pages only)
    // followed by the cell pointer array: one 2-byte offset per cell.
    let page_type = *area.get(hdr).ok_or_else(short)?;
    let (role, header_len) = match page_type {
        PAGE_TYPE_TABLE_INTERIOR => (PageRole::TableInterior, 12),
        PAGE_TYPE_TABLE_LEAF => (PageRole::TableLeaf, 8),
        _ => return Err(FormatError::BadPageType { pgno, page_type }),
    };
    let first_freeblock = be_u16(area, hdr + 1).ok_or_else(short)?;
    let cells = be_u16(area, hdr + 3).ok_or_else(short)?;
    let content_start = match be_u16(area, hdr + 5).ok_or_else(short)? {
        0 => 65536,
        n => u32::from(n),
    };
    let ptr_array = hdr + header_len;
    let ptr_end = ptr_array + 2 * usize::from(cells);
    if ptr_end > area.len() {
        return Err(FormatError::CellCountTooLarge { pgno, cells });
    }
    if (content_start as usize) < ptr_end || content_start > usable {
        return Err(FormatError::BadCellContentStart {
            pgno,
            start: content_start,
        });
    }
    // A freeblock lives inside the content area and needs 4 bytes for its own header.
    if first_freeblock != 0
        && (u32::from(first_freeblock) < content_start || u32::from(first_freeblock) + 4 > usable)
    {
        return Err(FormatError::BadFreeblock {
            pgno,
            offset: first_freeblock,
        });
    }

    let mut parsed = TablePage {
        role,
        children: Vec::new(),
        overflow_chains: Vec::new(),
    };
    if role == PageRole::TableInterior {
        let right = be_u32(area, hdr + 8).ok_or_else(short)?;
        parsed.children.push(check_page_ref(pgno, right, max_page)?);
    }
    let bytes_per_overflow_page = u64::from(usable - 4);
    for cell in 0..cells {
        let offset = be_u16(area, ptr_array + 2 * usize::from(cell)).ok_or_else(short)?;
        // Like SQLite (btreeCellSizeCheck) a cell only has to clear the pointer array; also
        // demanding it lie past `content_start` would be stricter than the library itself.
        if usize::from(offset) < ptr_end {
            return Err(FormatError::CellPointerOutOfRange { pgno, cell, offset });
        }
        let body = area
            .get(usize::from(offset)..)
            .filter(|b| !b.is_empty())
            .ok_or(FormatError::CellPointerOutOfRange { pgno, cell, offset })?;
        let overrun = FormatError::CellOverrun { pgno, cell };
        if role == PageRole::TableInterior {
            // Interior table cell: 4-byte left child page number, then the rowid varint.
            let child = be_u32(body, 0).ok_or(overrun.clone())?;
            read_varint(body.get(4..).unwrap_or_default()).ok_or(overrun)?;
            parsed.children.push(check_page_ref(pgno, child, max_page)?);
            continue;
        }
        // Leaf table cell: payload size varint, rowid varint, the locally stored part of
        // the payload, then (only if the payload spills) the 4-byte first overflow page.
        let (payload, n1) = read_varint(body).ok_or(overrun.clone())?;
        let (_rowid, n2) =
            read_varint(body.get(n1..).unwrap_or_default()).ok_or(overrun.clone())?;
        let local = table_leaf_local_payload(usable, payload);
        let local_end = (n1 + n2) as u64 + local;
        let spills = local < payload;
        let cell_end = local_end + if spills { 4 } else { 0 };
        if cell_end > body.len() as u64 {
            return Err(overrun);
        }
        if spills {
            let first = be_u32(body, local_end as usize).ok_or(overrun)?;
            let spilled = payload - local;
            let pages = spilled.div_ceil(bytes_per_overflow_page);
            if pages > u64::from(max_page) {
                return Err(FormatError::OverflowChainTooLong { pgno, cell, pages });
            }
            let first = check_page_ref(pgno, first, max_page)?;
            parsed.overflow_chains.push((first, pages));
        }
    }
    Ok(parsed)
}

fn load_page(
    pgno: u32,
    page_size: u32,
    read_page: &mut dyn FnMut(u32) -> io::Result<Vec<u8>>,
) -> Result<Vec<u8>, WalkError> {
    let page = read_page(pgno).map_err(|error| WalkError::Io { pgno, error })?;
    if page.len() != page_size as usize {
        return Err(FormatError::PageSizeMismatch {
            pgno,
            len: page.len(),
            expected: page_size,
        }
        .into());
    }
    Ok(page)
}

/// Walks the sqlite_schema table B-tree rooted at page 1 and returns every page that belongs
/// to it (interior pages, leaf pages, and overflow pages of leaf cells), sorted by page
/// number, page 1 first. `read_page(pgno)` must return the full page image (page_size bytes);
/// page 1 includes the 100-byte header. `max_page` is the number of pages in the file.
///
/// No page is read twice: a second reference to a page is reported as
/// [`FormatError::PageRevisited`], which also bounds the walk by `max_page` reads.
pub fn schema_tree_pages(
    header: &DbHeader,
    max_page: u32,
    read_page: &mut dyn FnMut(u32) -> io::Result<Vec<u8>>,
) -> Result<Vec<(u32, PageRole)>, WalkError> {
    let usable = header.checked_usable_size()?;
    if max_page == 0 {
        return Err(FormatError::EmptyDatabase.into());
    }
    let mut found: BTreeMap<u32, PageRole> = BTreeMap::new();
    let mut claimed: HashSet<u32> = HashSet::from([1]);
    let mut claim = |pgno: u32| -> Result<u32, FormatError> {
        if claimed.insert(pgno) {
            Ok(pgno)
        } else {
            Err(FormatError::PageRevisited { pgno })
        }
    };
    // Depth-first with an explicit stack so hostile input cannot exhaust the call stack.
    let mut stack: Vec<(u32, u32)> = vec![(1, 0)];
    while let Some((pgno, depth)) = stack.pop() {
        let page = load_page(pgno, header.page_size, read_page)?;
        let node = parse_table_page(pgno, &page, usable, max_page)?;
        found.insert(pgno, node.role);
        for child in node.children {
            if depth + 1 >= MAX_TREE_DEPTH {
                return Err(FormatError::TreeTooDeep { pgno: child }.into());
            }
            stack.push((claim(child)?, depth + 1));
        }
        for (first, pages) in node.overflow_chains {
            // Overflow page layout: 4-byte next page number (0 on the last page), then
            // U-4 bytes of payload. Only as many pages as the payload needs are followed,
            // as SQLite does; the last page's next pointer is not looked at.
            let mut current = first;
            for i in 0..pages {
                claim(current)?;
                let ovfl = load_page(current, header.page_size, read_page)?;
                found.insert(current, PageRole::Overflow);
                if i + 1 == pages {
                    break;
                }
                match be_u32(&ovfl, 0).unwrap_or(0) {
                    0 => {
                        return Err(FormatError::OverflowChainShort {
                            pgno: current,
                            missing: pages - i - 1,
                        }
                        .into())
                    }
                    next => current = check_page_ref(current, next, max_page)?,
                }
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Returns the freelist trunk pages in chain order, starting at `header.freelist_trunk`.
/// Each trunk's leaf count must fit in the page, each next pointer must be 0 or in
/// 2..=max_page, and no trunk may appear twice.
pub fn freelist_trunk_pages(
    header: &DbHeader,
    max_page: u32,
    read_page: &mut dyn FnMut(u32) -> io::Result<Vec<u8>>,
) -> Result<Vec<u32>, WalkError> {
    let usable = header.checked_usable_size()?;
    // SQLite's own limit when reading a trunk (btree.c allocateBtreePage).
    let max_leaves = usable / 4 - 2;
    let mut trunks = Vec::new();
    let mut seen = HashSet::new();
    let (mut referrer, mut next) = (1, header.freelist_trunk);
    while next != 0 {
        let pgno = check_page_ref(referrer, next, max_page)?;
        if !seen.insert(pgno) {
            return Err(FormatError::PageRevisited { pgno }.into());
        }
        let page = load_page(pgno, header.page_size, read_page)?;
        // Freelist trunk page layout:
        //   0  4  page number of the next trunk, 0 on the last one
        //   4  4  number of leaf page numbers that follow
        //   8  4*n  leaf page numbers
        let leaves = be_u32(&page, 4).unwrap_or(u32::MAX);
        if leaves > max_leaves {
            return Err(FormatError::FreelistLeafCount {
                pgno,
                count: leaves,
                max: max_leaves,
            }
            .into());
        }
        trunks.push(pgno);
        referrer = pgno;
        next = be_u32(&page, 0).unwrap_or(0);
    }
    Ok(trunks)
}

/// The root pages of the B-trees `sqlite_schema` lists (its `rootpage` column: tables and
/// indexes; views and triggers have none), in the order of its rows. These pages are in
/// use whatever else the file holds. `read_page` is called for the schema tree's pages as
/// in [`schema_tree_pages`]. A row whose `rootpage` does not lie in the part of its record
/// stored on the leaf page itself (only a name of hundreds of bytes pushes it out) is
/// skipped, and so is anything that is not a page number in 2..=max_page: the list is a
/// set of hints, never evidence.
pub fn schema_root_pages(
    header: &DbHeader,
    max_page: u32,
    read_page: &mut dyn FnMut(u32) -> io::Result<Vec<u8>>,
) -> Result<Vec<u32>, WalkError> {
    let usable = header.checked_usable_size()?;
    let tree = schema_tree_pages(header, max_page, read_page)?;
    let mut roots = Vec::new();
    for (pgno, role) in tree {
        if role == PageRole::TableLeaf {
            let page = load_page(pgno, header.page_size, read_page)?;
            leaf_root_pages(pgno, &page, usable, max_page, &mut roots);
        }
    }
    Ok(roots)
}

/// Appends the `rootpage` of every `sqlite_schema` row on the table-leaf page `page`.
fn leaf_root_pages(pgno: u32, page: &[u8], usable: u32, max_page: u32, roots: &mut Vec<u32>) {
    let Some(area) = page.get(..usable as usize) else {
        return;
    };
    let hdr = if pgno == 1 { HEADER_SIZE } else { 0 };
    if area.get(hdr) != Some(&PAGE_TYPE_TABLE_LEAF) {
        return;
    }
    let cells = be_u16(area, hdr + 3).unwrap_or(0);
    for cell in 0..cells {
        let Some(offset) = be_u16(area, hdr + 8 + 2 * usize::from(cell)) else {
            return;
        };
        let Some(body) = area.get(usize::from(offset)..) else {
            continue;
        };
        if let Some(root) = cell_root_page(body, usable) {
            if (2..=max_page).contains(&root) {
                roots.push(root);
            }
        }
    }
}

/// Column 3 (`rootpage`) of the `sqlite_schema` record in the table-leaf cell `cell`, if it
/// is an integer stored on the page.
fn cell_root_page(cell: &[u8], usable: u32) -> Option<u32> {
    let (payload, n1) = read_varint(cell)?;
    let (_rowid, n2) = read_varint(cell.get(n1..)?)?;
    let local = table_leaf_local_payload(usable, payload).min(payload);
    let record = cell.get(n1 + n2..)?;
    let record = record.get(..usize::try_from(local).ok()?.min(record.len()))?;
    // Record: a header (its own length as a varint, then one serial type per column), then
    // the column values in order; a serial type fixes the size of its value.
    let (header_len, mut at) = read_varint(record)?;
    let header_len = usize::try_from(header_len).ok()?;
    let mut value_at = header_len;
    for column in 0..4 {
        if at >= header_len {
            return None;
        }
        let (serial, n) = read_varint(record.get(at..header_len)?)?;
        at += n;
        let size: usize = match serial {
            0 | 8 | 9 => 0,
            1..=4 => serial as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return None,
            n => usize::try_from((n - 12) / 2).ok()?,
        };
        if column == 3 {
            let value = match serial {
                1..=6 => record.get(value_at..value_at.checked_add(size)?)?,
                9 => return Some(1),
                _ => return None,
            };
            // Big-endian two's complement; a page number is positive and fits in 32 bits.
            let negative = value[0] & 0x80 != 0;
            let v = value.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
            return if negative {
                None
            } else {
                u32::try_from(v).ok()
            };
        }
        value_at = value_at.checked_add(size)?;
    }
    None
}

/// The right-most child of an interior B-tree page (table or index) other than page 1, or
/// None for any other page.
pub fn interior_right_child(page: &[u8]) -> Option<u32> {
    const PAGE_TYPE_INDEX_INTERIOR: u8 = 0x02;
    match page.first()? {
        &PAGE_TYPE_TABLE_INTERIOR | &PAGE_TYPE_INDEX_INTERIOR => be_u32(page, 8),
        _ => None,
    }
}

/// Cheap structural check of one schema-tree B-tree page image, for a read path deciding
/// whether a page "looks damaged". Page 1 must also carry a valid header agreeing with
/// `usable_size`. Checks the page type (0x05/0x0D), cell count, content area, cell pointers,
/// that cells fit in the page, and that child and overflow page numbers are in 2..=max_page.
pub fn check_btree_page(
    pgno: u32,
    page: &[u8],
    usable_size: u32,
    max_page: u32,
) -> Result<(), FormatError> {
    if !(MIN_USABLE_SIZE..=65536).contains(&usable_size) || page.len() < usable_size as usize {
        return Err(FormatError::BadUsableSize {
            usable_size,
            page_len: page.len(),
        });
    }
    if pgno == 1 {
        let header = DbHeader::parse(page)?;
        if header.usable_size() != usable_size {
            return Err(FormatError::UsableSizeMismatch {
                header: header.usable_size(),
                expected: usable_size,
            });
        }
    }
    parse_table_page(pgno, page, usable_size, max_page).map(|_| ())
}

/// Overflow pages carry no structure beyond their next pointer, so all that can be checked
/// is that it is 0 (end of chain) or a page number in 2..=max_page other than the page itself.
pub fn check_overflow_page(pgno: u32, page: &[u8], max_page: u32) -> Result<(), FormatError> {
    let next = be_u32(page, 0).ok_or(FormatError::PageSizeMismatch {
        pgno,
        len: page.len(),
        expected: 4,
    })?;
    if next == pgno {
        return Err(FormatError::PageRevisited { pgno });
    }
    if next != 0 {
        check_page_ref(pgno, next, max_page)?;
    }
    Ok(())
}

/// What the bytes of a page outside the schema tree can still say. The staleness rule
/// (`recovery`) reads a few such pages as evidence (freelist trunks, witness pages) and must
/// tell a page that was rewritten (evidence that the file moved on) from one that was
/// destroyed (evidence of nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageShape {
    /// Every byte is zero. SQLite writes such pages itself (`secure_delete` zeroes every
    /// page it frees, an overflow page of a zero-filled value is all zeros, a page taken
    /// without reading its content starts zeroed), so a blank page proves nothing.
    Blank,
    /// No page SQLite writes, or leaves behind, has these bytes: see [`page_shape`].
    Destroyed,
    /// These bytes can be a page of some kind, or what one left behind.
    Plausible,
}

/// Classifies `page`, a page image of a file of `max_page` pages with `usable` usable bytes
/// per page, in a database that is not in auto-vacuum mode.
///
/// Every page past page 1 that SQLite writes is a B-tree page, a freelist trunk page, an
/// overflow page or a freelist leaf, and a freelist leaf keeps the bytes of what it was
/// before. A trunk page starts with the number of the next trunk and an overflow page with
/// the number of the next overflow page, 0 on the last one; either is at most the number of
/// pages the file had when it was written, and without auto-vacuum the file never shrinks
/// except by `VACUUM`, which rewrites every page it keeps. So a page is [`Destroyed`] when
/// it is not blank, its first four bytes are not a page number of the file (nor 0), and it
/// does not begin with a B-tree page header whose cell pointers stay inside the page.
/// Random bytes pass for a page with a probability of about `max_page / 2^32`.
///
/// (In auto-vacuum mode the file shrinks at every commit, and a freed page may keep a
/// pointer past the new end; pointer-map pages have yet another layout. Callers do not
/// classify pages of such databases.)
///
/// [`Destroyed`]: PageShape::Destroyed
pub fn page_shape(page: &[u8], usable: u32, max_page: u32) -> PageShape {
    if page.iter().all(|&b| b == 0) {
        return PageShape::Blank;
    }
    match be_u32(page, 0) {
        Some(first) if first <= max_page => PageShape::Plausible,
        _ if could_be_btree_page(page, usable) => PageShape::Plausible,
        _ => PageShape::Destroyed,
    }
}

/// True when `page` (not page 1) begins with a header that a B-tree page of any of the four
/// kinds could have: its type byte, a cell pointer array that fits in the page, a cell
/// content area and first freeblock inside the usable space, and every cell pointer past
/// the pointer array and inside the usable space. SQLite keeps all of this true on every
/// page it writes, and a freed page keeps it. Deliberately lenient (no cell is parsed, no
/// child page number checked): a page it accepts counts as content, never as damage.
pub fn could_be_btree_page(page: &[u8], usable: u32) -> bool {
    let usable = (usable as usize).min(page.len());
    let area = &page[..usable];
    let header_len = match area.first() {
        Some(0x02 | 0x05) => 12, // interior index, interior table
        Some(0x0a | 0x0d) => 8,  // leaf index, leaf table
        _ => return false,
    };
    let (Some(freeblock), Some(cells), Some(content)) =
        (be_u16(area, 1), be_u16(area, 3), be_u16(area, 5))
    else {
        return false;
    };
    let content = if content == 0 {
        65536
    } else {
        content as usize
    };
    let ptr_end = header_len + 2 * cells as usize;
    if ptr_end > usable || content < ptr_end || content > usable {
        return false;
    }
    if freeblock != 0 && ((freeblock as usize) < ptr_end || freeblock as usize + 4 > usable) {
        return false;
    }
    (0..cells as usize).all(|i| {
        be_u16(area, header_len + 2 * i)
            .is_some_and(|ptr| (ptr as usize) >= ptr_end && (ptr as usize) < usable)
    })
}

/// Dispatches to [`check_btree_page`] or [`check_overflow_page`] according to the role
/// recorded by [`schema_tree_pages`].
pub fn check_schema_page(
    pgno: u32,
    role: PageRole,
    page: &[u8],
    usable_size: u32,
    max_page: u32,
) -> Result<(), FormatError> {
    match role {
        PageRole::Overflow => check_overflow_page(pgno, page, max_page),
        PageRole::TableInterior | PageRole::TableLeaf => {
            check_btree_page(pgno, page, usable_size, max_page)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PS: usize = 512;
    type Pages = BTreeMap<u32, Vec<u8>>;

    fn put_varint(v: u64) -> Vec<u8> {
        if v >> 56 != 0 {
            let mut out = vec![0u8; 9];
            out[8] = v as u8;
            let mut rest = v >> 8;
            for b in out[..8].iter_mut().rev() {
                *b = (rest & 0x7f) as u8 | 0x80;
                rest >>= 7;
            }
            return out;
        }
        let mut out = vec![(v & 0x7f) as u8];
        let mut rest = v >> 7;
        while rest != 0 {
            out.push((rest & 0x7f) as u8 | 0x80);
            rest >>= 7;
        }
        out.reverse();
        out
    }

    fn header_bytes(page_size: u32) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_SIZE];
        h[..16].copy_from_slice(HEADER_MAGIC);
        let raw = if page_size == 65536 {
            1
        } else {
            page_size as u16
        };
        h[16..18].copy_from_slice(&raw.to_be_bytes());
        h[18..24].copy_from_slice(&[1, 1, 0, 64, 32, 32]);
        h[24..28].copy_from_slice(&7u32.to_be_bytes());
        h[28..32].copy_from_slice(&9u32.to_be_bytes());
        h[44..48].copy_from_slice(&4u32.to_be_bytes());
        h[56..60].copy_from_slice(&1u32.to_be_bytes());
        h[92..96].copy_from_slice(&7u32.to_be_bytes());
        h[96..100].copy_from_slice(&3_040_001u32.to_be_bytes());
        h
    }

    /// A PS-byte table page with `cells` packed at the end of the page.
    fn btree_page(pgno: u32, page_type: u8, right_child: u32, cells: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0u8; PS];
        let hdr = if pgno == 1 { HEADER_SIZE } else { 0 };
        if pgno == 1 {
            p[..HEADER_SIZE].copy_from_slice(&header_bytes(PS as u32));
        }
        p[hdr] = page_type;
        p[hdr + 3..hdr + 5].copy_from_slice(&(cells.len() as u16).to_be_bytes());
        let header_len = if page_type == PAGE_TYPE_TABLE_INTERIOR {
            p[hdr + 8..hdr + 12].copy_from_slice(&right_child.to_be_bytes());
            12
        } else {
            8
        };
        let mut top = PS;
        for (i, cell) in cells.iter().enumerate() {
            top -= cell.len();
            p[top..top + cell.len()].copy_from_slice(cell);
            let ptr = hdr + header_len + 2 * i;
            p[ptr..ptr + 2].copy_from_slice(&(top as u16).to_be_bytes());
        }
        p[hdr + 5..hdr + 7].copy_from_slice(&(top as u16).to_be_bytes());
        p
    }

    fn interior_cell(child: u32, rowid: u64) -> Vec<u8> {
        let mut c = child.to_be_bytes().to_vec();
        c.extend(put_varint(rowid));
        c
    }

    fn leaf_cell(rowid: u64, payload: u64, local: usize, overflow: Option<u32>) -> Vec<u8> {
        let mut c = put_varint(payload);
        c.extend(put_varint(rowid));
        c.resize(c.len() + local, b'x');
        if let Some(first) = overflow {
            c.extend(first.to_be_bytes());
        }
        c
    }

    fn overflow_page(next: u32) -> Vec<u8> {
        let mut p = vec![b'o'; PS];
        p[..4].copy_from_slice(&next.to_be_bytes());
        p
    }

    /// Page 1 (interior) -> leaves 2 and 3; page 2 has a 1000-byte payload spilling into
    /// 4 -> 5 (local 39, 961 spilled), page 3 a 600-byte one spilling into 6 (local 92).
    fn sample_tree() -> Pages {
        let mut pages = Pages::new();
        pages.insert(1, btree_page(1, 0x05, 3, &[interior_cell(2, 2)]));
        let leaf2 = [leaf_cell(1, 20, 20, None), leaf_cell(2, 1000, 39, Some(4))];
        pages.insert(2, btree_page(2, 0x0D, 0, &leaf2));
        pages.insert(3, btree_page(3, 0x0D, 0, &[leaf_cell(3, 600, 92, Some(6))]));
        pages.insert(4, overflow_page(5));
        pages.insert(5, overflow_page(0));
        pages.insert(6, overflow_page(0));
        pages
    }

    fn walk(pages: &Pages, max_page: u32) -> Result<Vec<(u32, PageRole)>, WalkError> {
        let header = DbHeader::parse(&pages[&1]).expect("fixture header");
        schema_tree_pages(&header, max_page, &mut |pgno| {
            pages
                .get(&pgno)
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no such page"))
        })
    }

    fn walk_err(pages: &Pages, max_page: u32) -> FormatError {
        match walk(pages, max_page) {
            Err(WalkError::Format(e)) => e,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn varints() {
        assert_eq!(read_varint(&[0x00]), Some((0, 1)));
        assert_eq!(read_varint(&[0x7f, 0xff]), Some((127, 1)));
        assert_eq!(read_varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(read_varint(&[0x81, 0x80, 0x00]), Some((1 << 14, 3)));
        assert_eq!(read_varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            Some((1, 9))
        );
        assert_eq!(read_varint(&[]), None);
        assert_eq!(read_varint(&[0x81]), None);
        assert_eq!(read_varint(&[0xff; 8]), None);
        for bits in 0..64 {
            for v in [1u64 << bits, (1u64 << bits) - 1, (1u64 << bits) + 1] {
                let enc = put_varint(v);
                let expected_len = if v >> 56 != 0 {
                    9
                } else {
                    (64 - v.leading_zeros() as usize).div_ceil(7).max(1)
                };
                assert_eq!(enc.len(), expected_len, "{v}");
                let mut buf = enc.clone();
                buf.push(0xaa);
                assert_eq!(read_varint(&buf), Some((v, enc.len())), "{v}");
                assert_eq!(read_varint(&enc[..enc.len() - 1]), None, "{v}");
            }
        }
    }

    #[test]
    fn header_parse_good_and_accessors() {
        let mut page = header_bytes(4096);
        page[20] = 8;
        page.resize(4096, 0);
        let h = DbHeader::parse(&page).unwrap();
        assert_eq!(
            (h.page_size, h.usable_size(), h.page_count),
            (4096, 4088, 9)
        );
        assert_eq!(
            (h.write_version, h.read_version, h.text_encoding),
            (1, 1, 1)
        );
        assert_eq!(h.sqlite_version, 3_040_001);
        assert!(h.page_count_is_valid());
        assert_eq!(page_size_from_header(&page), Some(4096));
        let stale = DbHeader {
            version_valid_for: 6,
            ..h
        };
        assert!(!stale.page_count_is_valid());
        assert!(!DbHeader { page_count: 0, ..h }.page_count_is_valid());
    }

    #[test]
    fn header_page_sizes() {
        let with_raw = |raw: u16| {
            let mut h = header_bytes(512);
            h[16..18].copy_from_slice(&raw.to_be_bytes());
            h
        };
        let h = DbHeader::parse(&with_raw(1)).unwrap();
        assert_eq!(h.page_size, 65536);
        assert_eq!(page_size_from_header(&with_raw(1)), Some(65536));
        assert_eq!(page_size_from_header(&with_raw(32768)), Some(32768));
        for bad in [0u16, 2, 256, 1000, 4097, 65535] {
            assert_eq!(page_size_from_header(&with_raw(bad)), None, "{bad}");
            assert_eq!(
                DbHeader::parse(&with_raw(bad)),
                Err(FormatError::BadPageSize {
                    value: u32::from(bad)
                })
            );
        }
        assert_eq!(page_size_from_header(&[0u8; 17]), None);
    }

    #[test]
    fn header_rejections() {
        assert_eq!(DbHeader::parse(&[0u8; 4096]), Err(FormatError::BadMagic));
        assert_eq!(
            DbHeader::parse(&header_bytes(512)[..99]),
            Err(FormatError::HeaderTooShort { len: 99 })
        );
        let cases: [(usize, u8, FormatError); 5] = [
            (
                18,
                3,
                FormatError::BadFileFormatVersion { write: 3, read: 1 },
            ),
            (
                19,
                0,
                FormatError::BadFileFormatVersion { write: 1, read: 0 },
            ),
            (
                21,
                65,
                FormatError::BadPayloadFractions {
                    max: 65,
                    min: 32,
                    leaf: 32,
                },
            ),
            (
                20,
                33,
                FormatError::BadReservedSpace {
                    reserved: 33,
                    page_size: 512,
                },
            ),
            (59, 4, FormatError::BadTextEncoding(4)),
        ];
        for (offset, value, expected) in cases {
            let mut h = header_bytes(512);
            h[offset] = value;
            assert_eq!(DbHeader::parse(&h), Err(expected));
        }
        let mut h = header_bytes(512);
        h[20] = 32; // usable exactly 480 is the smallest SQLite accepts
        assert_eq!(DbHeader::parse(&h).unwrap().usable_size(), 480);
        h[47] = 5;
        assert_eq!(DbHeader::parse(&h), Err(FormatError::BadSchemaFormat(5)));
    }

    #[test]
    fn payload_split_matches_file_format() {
        assert_eq!(table_leaf_local_payload(512, 477), 477);
        assert_eq!(table_leaf_local_payload(512, 1000), 39); // K = 492 > X, so M
        assert_eq!(table_leaf_local_payload(512, 600), 92); // K = 39 + 561 % 508
        assert_eq!(table_leaf_local_payload(4096, 4061), 4061);
        assert_eq!(table_leaf_local_payload(4096, 5000), 908); // K = 489 + 4511 % 4092
        assert_eq!(table_leaf_local_payload(4096, u64::MAX), 489); // K = 4107 > X, so M
                                                                   // Index pages keep less: X = ((U-12)*64/255)-23.
        assert_eq!(local_payload(true, 4096, 1002), 1002);
        assert_eq!(local_payload(true, 4096, 1003), 489); // K = 1003 > X, so M
        assert_eq!(local_payload(true, 4096, 5000), 908); // K = 489 + 4511 % 4092
    }

    #[test]
    fn walks_hand_built_tree() {
        use PageRole::*;
        let pages = sample_tree();
        let expected = vec![
            (1, TableInterior),
            (2, TableLeaf),
            (3, TableLeaf),
            (4, Overflow),
            (5, Overflow),
            (6, Overflow),
        ];
        assert_eq!(walk(&pages, 6).unwrap(), expected);
        for (pgno, role) in expected {
            check_schema_page(pgno, role, &pages[&pgno], 512, 6).unwrap();
        }
        // A lone leaf page 1 is the schema of a database with a handful of tables.
        let mut single = Pages::new();
        single.insert(1, btree_page(1, 0x0D, 0, &[leaf_cell(1, 30, 30, None)]));
        assert_eq!(walk(&single, 1).unwrap(), vec![(1, TableLeaf)]);
    }

    #[test]
    fn walk_detects_cycles_and_shared_pages() {
        let mut pages = sample_tree();
        pages.insert(3, btree_page(3, 0x05, 2, &[]));
        assert_eq!(walk_err(&pages, 6), FormatError::PageRevisited { pgno: 2 });
        pages.insert(3, btree_page(3, 0x05, 3, &[]));
        assert_eq!(walk_err(&pages, 6), FormatError::PageRevisited { pgno: 3 });
        // Overflow page 4 also claimed by a second cell.
        pages.insert(3, btree_page(3, 0x0D, 0, &[leaf_cell(3, 600, 92, Some(4))]));
        assert_eq!(walk_err(&pages, 6), FormatError::PageRevisited { pgno: 4 });
    }

    #[test]
    fn walk_detects_looping_and_short_overflow_chains() {
        // 2000 bytes keep K = 476 locally and spill 1524 bytes into 3 pages: 4 -> 5 -> 4 loops.
        let mut pages = sample_tree();
        pages.insert(
            2,
            btree_page(2, 0x0D, 0, &[leaf_cell(2, 2000, 476, Some(4))]),
        );
        pages.insert(5, overflow_page(4));
        assert_eq!(walk_err(&pages, 6), FormatError::PageRevisited { pgno: 4 });
        pages.insert(5, overflow_page(0));
        assert_eq!(
            walk_err(&pages, 6),
            FormatError::OverflowChainShort {
                pgno: 5,
                missing: 1
            }
        );
        pages.insert(5, overflow_page(7));
        let expected = FormatError::PageOutOfRange {
            referrer: 5,
            pgno: 7,
            max_page: 6,
        };
        assert_eq!(walk_err(&pages, 6), expected);
        // A payload needing more overflow pages than the file has is rejected up front.
        pages.insert(
            2,
            btree_page(2, 0x0D, 0, &[leaf_cell(2, 1 << 40, 39, Some(4))]),
        );
        assert!(matches!(
            walk_err(&pages, 6),
            FormatError::OverflowChainTooLong {
                pgno: 2,
                cell: 0,
                ..
            }
        ));
    }

    #[test]
    fn walk_rejects_bad_references() {
        let pages = sample_tree();
        let out_of_range = |referrer, pgno, max_page| FormatError::PageOutOfRange {
            referrer,
            pgno,
            max_page,
        };
        assert_eq!(walk_err(&pages, 5), out_of_range(3, 6, 5));
        assert_eq!(walk_err(&pages, 2), out_of_range(1, 3, 2));
        assert_eq!(walk_err(&pages, 0), FormatError::EmptyDatabase);
        let mut bad = sample_tree();
        bad.insert(1, btree_page(1, 0x05, 1, &[]));
        assert_eq!(walk_err(&bad, 6), out_of_range(1, 1, 6));
        let mut bad = sample_tree();
        bad.get_mut(&6).unwrap().truncate(100);
        let expected = FormatError::PageSizeMismatch {
            pgno: 6,
            len: 100,
            expected: 512,
        };
        assert_eq!(walk_err(&bad, 6), expected);
        bad.remove(&5);
        match walk(&bad, 6) {
            Err(e @ WalkError::Io { pgno: 5, .. }) => {
                assert!(e.to_string().starts_with("page 5: read failed"))
            }
            other => panic!("expected io error, got {other:?}"),
        }
    }

    #[test]
    fn walk_rejects_damaged_page_structure() {
        // (byte offset on page 3, big-endian u16 written there, expected error)
        let cases = [
            (
                8,
                600,
                FormatError::CellPointerOutOfRange {
                    pgno: 3,
                    cell: 0,
                    offset: 600,
                },
            ),
            (
                8,
                4,
                FormatError::CellPointerOutOfRange {
                    pgno: 3,
                    cell: 0,
                    offset: 4,
                },
            ),
            (8, 500, FormatError::CellOverrun { pgno: 3, cell: 0 }),
            (
                3,
                300,
                FormatError::CellCountTooLarge {
                    pgno: 3,
                    cells: 300,
                },
            ),
            (5, 4, FormatError::BadCellContentStart { pgno: 3, start: 4 }),
            (
                1,
                510,
                FormatError::BadFreeblock {
                    pgno: 3,
                    offset: 510,
                },
            ),
            (
                0,
                0x0A00,
                FormatError::BadPageType {
                    pgno: 3,
                    page_type: 0x0A,
                },
            ),
        ];
        for (offset, value, expected) in cases.clone() {
            let mut pages = sample_tree();
            pages.get_mut(&3).unwrap()[offset..offset + 2]
                .copy_from_slice(&u16::to_be_bytes(value));
            assert_eq!(walk_err(&pages, 6), expected);
        }
        assert_eq!(
            cases[0].2.to_string(),
            "page 3: cell pointer 0 points outside the page (offset 600)"
        );
    }

    #[test]
    fn walk_bounds_depth() {
        // A chain of interior pages with only right children, deeper than the limit.
        let n = MAX_TREE_DEPTH + 5;
        let mut pages: Pages = (1..n)
            .map(|p| (p, btree_page(p, 0x05, p + 1, &[])))
            .collect();
        pages.insert(n, btree_page(n, 0x0D, 0, &[]));
        assert_eq!(
            walk_err(&pages, n),
            FormatError::TreeTooDeep {
                pgno: MAX_TREE_DEPTH + 1
            }
        );
        let message = walk(&pages, n).unwrap_err().to_string();
        assert_eq!(message, "page 65: b-tree is deeper than 64 levels");
    }

    #[test]
    fn freelist_trunks() {
        let trunk = |next: u32, leaves: &[u32]| {
            let mut p = vec![0u8; PS];
            p[..4].copy_from_slice(&next.to_be_bytes());
            p[4..8].copy_from_slice(&(leaves.len() as u32).to_be_bytes());
            for (i, l) in leaves.iter().enumerate() {
                p[8 + 4 * i..12 + 4 * i].copy_from_slice(&l.to_be_bytes());
            }
            p
        };
        let run = |pages: &Pages, first: u32| {
            let mut header = DbHeader::parse(&header_bytes(512)).unwrap();
            header.freelist_trunk = first;
            match freelist_trunk_pages(&header, 6, &mut |pgno| Ok(pages[&pgno].clone())) {
                Ok(trunks) => Ok(trunks),
                Err(WalkError::Format(e)) => Err(e),
                Err(e) => panic!("unexpected {e}"),
            }
        };
        let mut pages: Pages = [(5, trunk(3, &[4, 6])), (3, trunk(0, &[2]))].into();
        assert_eq!(run(&pages, 5), Ok(vec![5, 3]));
        assert_eq!(run(&pages, 0), Ok(vec![]));
        let out_of_range = |referrer, pgno| FormatError::PageOutOfRange {
            referrer,
            pgno,
            max_page: 6,
        };
        assert_eq!(run(&pages, 7), Err(out_of_range(1, 7)));
        pages.insert(3, trunk(5, &[]));
        assert_eq!(run(&pages, 5), Err(FormatError::PageRevisited { pgno: 5 }));
        pages.insert(3, trunk(9, &[]));
        assert_eq!(run(&pages, 5), Err(out_of_range(3, 9)));
        pages.get_mut(&3).unwrap()[4..8].copy_from_slice(&127u32.to_be_bytes());
        let expected = FormatError::FreelistLeafCount {
            pgno: 3,
            count: 127,
            max: 126,
        };
        assert_eq!(run(&pages, 3), Err(expected));
    }

    #[test]
    fn check_single_pages() {
        let pages = sample_tree();
        check_btree_page(1, &pages[&1], 512, 6).unwrap();
        check_btree_page(2, &pages[&2], 512, 6).unwrap();
        assert!(matches!(
            check_btree_page(4, &pages[&4], 512, 6),
            Err(FormatError::BadPageType { pgno: 4, .. })
        ));
        let mismatch = FormatError::UsableSizeMismatch {
            header: 512,
            expected: 500,
        };
        assert_eq!(check_btree_page(1, &pages[&1], 500, 6), Err(mismatch));
        for usable in [100, 1024] {
            let err = check_btree_page(2, &pages[&2], usable, 6);
            assert!(matches!(err, Err(FormatError::BadUsableSize { .. })));
        }
        let mut damaged = pages[&1].clone();
        damaged[..16].fill(0);
        assert_eq!(
            check_btree_page(1, &damaged, 512, 6),
            Err(FormatError::BadMagic)
        );
        check_overflow_page(4, &pages[&4], 6).unwrap();
        check_overflow_page(5, &pages[&5], 6).unwrap();
        assert!(check_overflow_page(4, &pages[&4], 4).is_err());
        assert!(check_overflow_page(5, &overflow_page(5), 6).is_err());
        assert!(check_overflow_page(5, &[0, 0], 6).is_err());
    }

    #[test]
    fn page_shapes() {
        let usable = PS as u32;
        assert_eq!(page_shape(&[0; PS], usable, 6), PageShape::Blank);
        let pages = sample_tree();
        // Table B-tree pages, overflow pages, a freelist trunk.
        for pgno in 2..=6 {
            assert_eq!(
                page_shape(&pages[&pgno], usable, 6),
                PageShape::Plausible,
                "page {pgno}"
            );
        }
        let mut trunk = vec![0u8; PS];
        trunk[4..12].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 5]);
        assert_eq!(page_shape(&trunk, usable, 6), PageShape::Plausible);
        // Index pages: an empty leaf and an interior page with one cell.
        let mut leaf = vec![0xeeu8; PS];
        leaf[..8].copy_from_slice(&[0x0a, 0, 0, 0, 0, 2, 0, 0]);
        assert_eq!(page_shape(&leaf, usable, 6), PageShape::Plausible);
        let mut interior = leaf.clone();
        interior[..14].copy_from_slice(&[0x02, 0, 0, 0, 1, 1, 0xf0, 0, 0, 0, 0, 3, 1, 0xf0]);
        assert_eq!(page_shape(&interior, usable, 6), PageShape::Plausible);
        // The same with a cell pointer out of the page, or inside its
        // own pointer array: no page at all.
        let mut bad = interior.clone();
        bad[12..14].copy_from_slice(&0x0300u16.to_be_bytes());
        assert_eq!(page_shape(&bad, usable, 6), PageShape::Destroyed);
        bad[12..14].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(page_shape(&bad, usable, 6), PageShape::Destroyed);
        // A page number past the end of the file, and no B-tree header.
        assert_eq!(
            page_shape(&overflow_page(7), usable, 6),
            PageShape::Destroyed
        );
        assert_eq!(
            page_shape(&overflow_page(7), usable, 7),
            PageShape::Plausible
        );
        // Random bytes are damage, all but a few in a thousand.
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let plausible = (0..1000)
            .filter(|_| {
                let page: Vec<u8> = (0..PS).map(|_| rng.next() as u8).collect();
                page_shape(&page, usable, 1000) != PageShape::Destroyed
            })
            .count();
        assert!(
            plausible < 5,
            "{plausible} random pages of 1000 pass for a page"
        );
    }

    /// The claim [`page_shape`] rests on: no page a real SQLite leaves in a
    /// file that is not in auto-vacuum mode is `Destroyed`, with and without
    /// `secure_delete`, whatever the page held (index and table pages,
    /// overflow pages of random and zero-filled values, trunks, freed pages).
    #[test]
    fn no_page_of_a_real_database_is_destroyed() {
        if !Path::new(SQLITE3).exists() {
            eprintln!("note: {SQLITE3} not found, skipping the real-database cross-check");
            return;
        }
        for page_size in [512u32, 4096] {
            for secure_delete in [0, 1] {
                let name = format!(
                    "dbfile-shape-{}-{page_size}-{secure_delete}.db",
                    std::process::id()
                );
                let db = std::env::temp_dir().join(name);
                let _ = std::fs::remove_file(&db);
                let mut sql = format!(
                    "PRAGMA page_size={page_size}; PRAGMA secure_delete={secure_delete};\n"
                );
                for t in 0..8 {
                    sql += &format!(
                        "CREATE TABLE t{t}(id INTEGER PRIMARY KEY, a TEXT, b BLOB);\n\
                         CREATE INDEX t{t}_a ON t{t}(a);\n\
                         CREATE TABLE w{t}(k TEXT PRIMARY KEY, v) WITHOUT ROWID;\n\
                         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<60)\n\
                         INSERT INTO t{t}(a, b) SELECT printf('%.*c', x * 7, 'a') || x,\n\
                           CASE x % 3 WHEN 0 THEN randomblob(x * 40) WHEN 1 THEN zeroblob(x * 50)\n\
                           ELSE NULL END FROM n;\n\
                         INSERT INTO w{t} SELECT a, b FROM t{t};\n"
                    );
                }
                for t in (0..8).step_by(3) {
                    sql += &format!("DROP TABLE t{t};\n");
                }
                sql += "DELETE FROM t1 WHERE id % 2 = 0; DELETE FROM w2 WHERE length(k) > 200;\n\
                        INSERT INTO t4(a, b) SELECT a, zeroblob(3000) FROM t5;\n\
                        DELETE FROM t5; INSERT INTO t7(a, b) SELECT a, randomblob(700) FROM t4;\n";
                sqlite(&db, &sql);
                let file = std::fs::read(&db).unwrap();
                let header = DbHeader::parse(&file).unwrap();
                assert_eq!(header.autovacuum_top_root, 0);
                assert!(header.freelist_count > 0, "the fixture has a freelist");
                let ps = page_size as usize;
                let max_page = (file.len() / ps) as u32;
                let mut blank = 0;
                for pgno in 2..=max_page {
                    let page = &file[(pgno as usize - 1) * ps..pgno as usize * ps];
                    match page_shape(page, header.usable_size(), max_page) {
                        PageShape::Destroyed => panic!(
                            "page {pgno} of a real database (page size {page_size}, \
                             secure_delete={secure_delete}) classified as destroyed"
                        ),
                        PageShape::Blank => blank += 1,
                        PageShape::Plausible => {}
                    }
                }
                if secure_delete == 1 {
                    assert!(blank > 0, "secure_delete leaves blank pages");
                }
                let _ = std::fs::remove_file(&db);
            }
        }
    }

    /// xorshift64*: deterministic, good enough to shake out panics.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_pages_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000u32 {
            let len = [0, 50, 100, 511, 512, 4096][rng.below(6) as usize];
            let mut page: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Make deeper code paths reachable: valid header, table page types, small counts.
            if len >= 112 && round % 2 == 0 {
                page[..HEADER_SIZE].copy_from_slice(&header_bytes(512));
                page[100] = [0x05, 0x0D][rng.below(2) as usize];
                page[103] = 0;
                page[104] = rng.below(8) as u8;
            }
            let _ = DbHeader::parse(&page);
            let _ = page_size_from_header(&page);
            let _ = read_varint(&page);
            for pgno in [0, 1, 2, 7] {
                let usable = [0, 480, 500, 512, 4096, 65536][rng.below(6) as usize];
                let _ = check_btree_page(pgno, &page, usable, rng.below(1000) as u32);
                let _ = check_overflow_page(pgno, &page, 10);
            }
        }
        // Whole walks over random files: noise pages with a table page type, few cells and
        // a plausible content area, so that walks get past the first checks.
        for seed in 1..300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x1234_5678_9abc_def1) | 1);
            let max_page = 1 + rng.below(40) as u32;
            let mut header = DbHeader::parse(&header_bytes(512)).unwrap();
            header.freelist_trunk = rng.below(45) as u32;
            let mut read = |pgno: u32| {
                let mut r = Rng(seed ^ u64::from(pgno).wrapping_mul(0xdead_beef) | 1);
                let mut p: Vec<u8> = (0..PS).map(|_| r.next() as u8).collect();
                let hdr = if pgno == 1 { HEADER_SIZE } else { 0 };
                if pgno == 1 {
                    p[..HEADER_SIZE].copy_from_slice(&header_bytes(512));
                }
                p[hdr] = [0x05, 0x0D, 0x0D, 0x02][r.below(4) as usize];
                p[hdr + 1..hdr + 7].copy_from_slice(&[
                    0,
                    0,
                    0,
                    r.below(6) as u8,
                    0,
                    hdr as u8 + 40,
                ]);
                for i in (0..40).step_by(2) {
                    p[hdr + 8 + i] = 1;
                }
                Ok(p)
            };
            let _ = schema_tree_pages(&header, max_page, &mut read);
            let _ = freelist_trunk_pages(&header, max_page, &mut read);
        }
    }

    #[test]
    fn mutated_trees_never_panic() {
        let base = sample_tree();
        let mut rng = Rng(42);
        let mut outcomes = [0usize; 2];
        for _ in 0..4000 {
            let mut pages = base.clone();
            for _ in 0..1 + rng.below(4) {
                let pgno = 1 + rng.below(6) as u32;
                // Half the hits go to the b-tree header and pointer array, where damage matters.
                let off = if rng.below(2) == 0 {
                    rng.below(PS as u64)
                } else {
                    rng.below(16) + if pgno == 1 { 100 } else { 0 }
                };
                pages.get_mut(&pgno).unwrap()[off as usize] = rng.next() as u8;
            }
            let Ok(header) = DbHeader::parse(&pages[&1]) else {
                continue;
            };
            let r = schema_tree_pages(&header, 6, &mut |pgno| {
                pages
                    .get(&pgno)
                    .cloned()
                    .ok_or_else(|| io::Error::other("missing"))
            });
            outcomes[usize::from(r.is_ok())] += 1;
            for (pgno, page) in &pages {
                let _ = check_btree_page(*pgno, page, 512, 6);
            }
        }
        assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
    }

    const SQLITE3: &str = "/usr/bin/sqlite3";

    use crate::test_support::sqlite3_shell as sqlite;

    type Walked = (DbHeader, Vec<u8>, Vec<(u32, PageRole)>, Vec<u32>);

    fn walk_file(db: &Path) -> Walked {
        let file = std::fs::read(db).unwrap();
        let header = DbHeader::parse(&file).unwrap();
        let ps = header.page_size as usize;
        let max_page = (file.len() / ps) as u32;
        assert!(header.page_count_is_valid());
        assert_eq!(header.page_count, max_page);
        let page = |pgno: u32| &file[(pgno as usize - 1) * ps..pgno as usize * ps];
        let mut read = |pgno: u32| Ok(page(pgno).to_vec());
        let tree = schema_tree_pages(&header, max_page, &mut read).unwrap();
        let trunks = freelist_trunk_pages(&header, max_page, &mut read).unwrap();
        for &(pgno, role) in &tree {
            check_schema_page(pgno, role, page(pgno), header.usable_size(), max_page).unwrap();
        }
        (header, file, tree, trunks)
    }

    fn dbstat_schema_pages(db: &Path) -> Vec<(u32, PageRole)> {
        let sql = "SELECT pageno, pagetype FROM dbstat WHERE name='sqlite_schema' ORDER BY pageno;";
        let parse = |line: &str| {
            let (pgno, kind) = line.split_once('|').unwrap();
            let role = match kind {
                "internal" => PageRole::TableInterior,
                "leaf" => PageRole::TableLeaf,
                "overflow" => PageRole::Overflow,
                other => panic!("unexpected pagetype {other}"),
            };
            (pgno.parse().unwrap(), role)
        };
        sqlite(db, sql).lines().map(parse).collect()
    }

    fn create_schema_sql(page_size: u32) -> String {
        let mut sql = format!("PRAGMA page_size={page_size}; PRAGMA auto_vacuum=NONE; BEGIN;\n");
        for t in 0..300 {
            // From a few dozen bytes to ~11 KB, so both page sizes see spilling cells.
            let columns = [1, 5, 20, 60, 120, 250][t % 6];
            let cols: Vec<String> = (0..columns)
                .map(|c| format!("column_with_a_fairly_long_name_{c} TEXT DEFAULT 'v{c}'"))
                .collect();
            sql += &format!("CREATE TABLE t{t}({});\n", cols.join(", "));
            if t % 10 == 0 {
                sql += &format!("CREATE INDEX i{t} ON t{t}(column_with_a_fairly_long_name_0);\n");
                sql += &format!(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<40) \
                     INSERT INTO t{t}(column_with_a_fairly_long_name_0) SELECT x FROM n;\n"
                );
            }
        }
        sql + "COMMIT;\n"
    }

    #[test]
    fn real_database_matches_dbstat() {
        if !Path::new(SQLITE3).exists() {
            eprintln!("note: {SQLITE3} not found, skipping the real-database cross-check");
            return;
        }
        for page_size in [512u32, 4096] {
            let name = format!("dbfile-test-{}-{page_size}.db", std::process::id());
            let db = std::env::temp_dir().join(name);
            let _ = std::fs::remove_file(&db);
            sqlite(&db, &create_schema_sql(page_size));
            let (_, _, tree, trunks) = walk_file(&db);
            assert_eq!(tree, dbstat_schema_pages(&db), "page size {page_size}");
            assert!(trunks.is_empty());
            let roles: HashSet<PageRole> = tree.iter().map(|&(_, role)| role).collect();
            assert_eq!(roles.len(), 3, "fixture should exercise every page role");
            if page_size == 512 {
                assert!(tree.len() > 1000, "{} pages", tree.len());
            }

            let drops: String = (0..300)
                .filter(|t| t % 3 != 1)
                .map(|t| format!("DROP TABLE t{t};\n"))
                .collect();
            sqlite(&db, &drops);
            let (header, file, tree, trunks) = walk_file(&db);
            assert_eq!(
                tree,
                dbstat_schema_pages(&db),
                "page size {page_size} after drops"
            );
            assert_eq!(trunks.first().copied(), Some(header.freelist_trunk));
            if page_size == 512 {
                assert!(trunks.len() > 1, "expected several trunks, got {trunks:?}");
            }
            // In-use pages (dbstat), trunks and trunk leaves must partition the whole file.
            let ps = header.page_size as usize;
            let mut leaves = Vec::new();
            for &trunk in &trunks {
                let page = &file[(trunk as usize - 1) * ps..trunk as usize * ps];
                let n = be_u32(page, 4).unwrap() as usize;
                leaves.extend((0..n).map(|i| be_u32(page, 8 + 4 * i).unwrap()));
            }
            let in_use = sqlite(&db, "SELECT pageno FROM dbstat;");
            let mut owners: BTreeMap<u32, &str> = BTreeMap::new();
            let all = in_use
                .lines()
                .map(|l| (l.parse::<u32>().unwrap(), "in use"));
            let all = all.chain(trunks.iter().map(|&p| (p, "trunk")));
            for (pgno, what) in all.chain(leaves.iter().map(|&p| (p, "leaf"))) {
                assert_eq!(owners.insert(pgno, what), None, "page {pgno} claimed twice");
            }
            let every_page: Vec<u32> = (1..=header.page_count).collect();
            assert_eq!(owners.into_keys().collect::<Vec<_>>(), every_page);
            assert_eq!(trunks.len() + leaves.len(), header.freelist_count as usize);
            let pragma = sqlite(&db, "PRAGMA freelist_count;");
            assert_eq!(pragma.trim().parse::<u32>().unwrap(), header.freelist_count);
            let _ = std::fs::remove_file(&db);
        }
    }

    fn roots_of(db: &Path) -> Vec<u32> {
        let file = std::fs::read(db).unwrap();
        let header = DbHeader::parse(&file).unwrap();
        let ps = header.page_size as usize;
        let max_page = (file.len() / ps) as u32;
        let mut roots = schema_root_pages(&header, max_page, &mut |pgno: u32| {
            Ok(file[(pgno as usize - 1) * ps..pgno as usize * ps].to_vec())
        })
        .unwrap();
        roots.sort_unstable();
        roots
    }

    fn sqlite_roots(db: &Path) -> Vec<u32> {
        let out = sqlite(
            db,
            "SELECT rootpage FROM sqlite_schema WHERE rootpage > 0 ORDER BY rootpage;",
        );
        out.lines().map(|l| l.parse().unwrap()).collect()
    }

    #[test]
    fn schema_roots_match_sqlite_schema() {
        if !Path::new(SQLITE3).exists() {
            eprintln!("note: {SQLITE3} not found, skipping the real-database cross-check");
            return;
        }
        for page_size in [512u32, 4096] {
            let name = format!("dbfile-roots-{}-{page_size}.db", std::process::id());
            let db = std::env::temp_dir().join(name);
            let _ = std::fs::remove_file(&db);
            // Spilling CREATE statements (page 512), indexes, views and
            // triggers (no root page), root page numbers past 127 (a
            // two-byte integer) and, with 512-byte pages, past 32767 (three
            // bytes) once a table grows the file.
            let mut sql = create_schema_sql(page_size);
            sql += "CREATE VIEW v AS SELECT 1; \
                    CREATE TRIGGER tr AFTER INSERT ON t0 BEGIN SELECT 1; END; \
                    CREATE TABLE big(x); \
                    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 40000) \
                    INSERT INTO big SELECT zeroblob(400) FROM n; \
                    CREATE TABLE late(x); CREATE INDEX late_x ON late(x);";
            sqlite(&db, &sql);
            let roots = roots_of(&db);
            assert!(roots.len() > 300, "{} roots", roots.len());
            let past = if page_size == 512 { 32767 } else { 127 };
            assert!(*roots.last().unwrap() > past, "{roots:?}");
            assert_eq!(roots, sqlite_roots(&db), "page size {page_size}");
            let _ = std::fs::remove_file(&db);
        }
    }

    #[test]
    fn root_pages_of_hostile_leaves_never_panic() {
        // Every truncation and a few corruptions of a real-looking leaf.
        let record = [
            6u8, 0x17, 0x13, 0x13, 0x03, 0x0f, b't', b'a', b'b', b'l', b'e', b'a', b'b', b'c',
            b'a', b'b', b'c', 0x01, 0x00, 0x00, b'x',
        ];
        let mut cell = put_varint(record.len() as u64);
        cell.extend(put_varint(1));
        cell.extend(record);
        let page = btree_page(2, PAGE_TYPE_TABLE_LEAF, 0, &[cell.clone()]);
        let mut roots = Vec::new();
        leaf_root_pages(2, &page, PS as u32, 1 << 20, &mut roots);
        assert_eq!(roots, vec![0x010000]);
        for cut in 0..cell.len() {
            let _ = cell_root_page(&cell[..cut], PS as u32);
        }
        let mut rng = 7u64;
        for _ in 0..2000 {
            let mut bad = page.clone();
            for _ in 0..4 {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let at = (rng >> 33) as usize % PS;
                bad[at] = (rng >> 20) as u8;
            }
            let mut roots = Vec::new();
            leaf_root_pages(2, &bad, PS as u32, 1 << 20, &mut roots);
            assert!(roots.iter().all(|r| (2..=1 << 20).contains(r)));
        }
    }
}
