//! The on-disk format of the `<db>-dwr` file: encoding, decoding and checksums.
//!
//! This module is pure: it turns bytes into structures and back and knows
//! nothing about files. `docs/dwr-format.md` is the normative description;
//! the layout comments here must agree with it.
//!
//! A `-dwr` file is two header slots followed by a slot region:
//!
//! ```text
//!   0    header slot 0   (HEADER_SIZE bytes used of HEADER_STRIDE)
//!   512  header slot 1
//!   data_offset ...      slot region: for every protected page index i,
//!                        two page slots (A at 2*i, B at 2*i+1), each holding
//!                        a page image followed by a SLOT_TRAILER_SIZE trailer
//! ```
//!
//! A generation `G` is current when the header slot holding it is valid and
//! the page slots it selects (for each index, the valid slot with the highest
//! generation not above `G`) hash to the header's digest. Writers never touch
//! a slot that the current generation selects, so a torn update leaves the
//! previous generation intact.
//!
//! Every integer is big-endian, like SQLite's own file format.

use crate::dwr::fnv::Fnv64;
use crate::dwr::identity::{self, FileIdentity};

/// The first eight bytes of every header slot.
pub const MAGIC: &[u8; 8] = b"MetaDWR\0";
/// The first four bytes of every slot trailer.
pub const SLOT_MAGIC: &[u8; 4] = b"DWRP";
/// Version of the layout described here. Version 2 added the `PENDING` and
/// `WAL_AHEAD` flags; a version-1 header never carries them and reads the
/// same. Version 3 added the identity evidence and the witness pages
/// (bytes 104..164); a version-1 or -2 header reads as a generation without
/// them, which the staleness rule never restores. An older reader rejects a
/// newer header, so it never restores a generation whose flags or evidence
/// it cannot honour.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest version this code reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// Bytes of a header slot that carry data (the rest of the stride is zero).
pub const HEADER_SIZE: usize = 256;
/// Distance between the two header slots; one 512-byte sector each so that a
/// torn write of one can never reach the other.
pub const HEADER_STRIDE: u64 = 512;
/// Where the slot region starts in a freshly created file.
pub const FIRST_DATA_OFFSET: u64 = 2 * HEADER_STRIDE;
/// Bytes appended to every page image in a page slot.
pub const SLOT_TRAILER_SIZE: usize = 32;

/// Header flag: the database was in WAL mode when the generation was taken.
pub const FLAG_WAL: u32 = 1;
/// Header flag: the generation was taken when the database file was synced
/// inside a transaction, before its commit point (the journal's deletion).
/// A crash can still roll the file back to the previous generation, so the
/// file is in one of two states. A later generation with the same pages
/// and without this flag confirms it once the commit point has passed.
pub const FLAG_PENDING: u32 = 2;
/// Header flag: the WAL may hold commits that this generation (the state of
/// the database file at a checkpoint) does not. A checkpoint run by a
/// program without metadwr would move the file past the copy, so the copy
/// is trusted over a damaged page 1 only while those frames are still in
/// the WAL. Cleared once the WAL is checkpointed and deleted.
pub const FLAG_WAL_AHEAD: u32 = 4;
/// Every flag this version defines.
pub const KNOWN_FLAGS: u32 = FLAG_WAL | FLAG_PENDING | FLAG_WAL_AHEAD;

/// The page-1 byte ranges whose change the staleness rule can see without
/// page 1 (see `recovery`): the change counter and the in-header database
/// size (offsets 24..32; the size shows in the file's size), the freelist
/// page count (36..40; a count that changes while the first trunk stays
/// the same rewrites that trunk, whose checksum the fingerprint holds), and
/// the version-valid-for and SQLite version numbers (92..100). A change
/// anywhere else (the schema cookie, user_version, the freelist's first
/// trunk, the schema root from offset 100) leaves no trace once page 1 is
/// destroyed.
pub const PAGE1_VISIBLE_RANGES: [std::ops::Range<usize>; 3] = [24..32, 36..40, 92..100];

/// True when `new` differs from `old` (two images of page 1) only in bytes
/// whose change the staleness rule can detect without page 1.
pub fn page1_change_is_visible(old: &[u8], new: &[u8]) -> bool {
    if old.len() != new.len() || old.len() < 100 {
        return false;
    }
    let mut start = 0;
    for r in PAGE1_VISIBLE_RANGES {
        if old[start..r.start] != new[start..r.start] {
            return false;
        }
        start = r.end;
    }
    old[start..] == new[start..]
}

/// True when two images of page 1 differ at most in the change counter and
/// the version-valid-for number (offsets 24..28 and 92..96), which a restore
/// rewrites anyway.
pub fn page1_same_state(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.len() >= 100
        && a[..24] == b[..24]
        && a[28..92] == b[28..92]
        && a[96..] == b[96..]
}

/// CRC-32C (Castagnoli), the checksum of every header and page slot.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// CRC-32C of `first` followed by `second`, without concatenating them.
pub fn crc32c_pair(first: &[u8], second: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(first), second)
}

/// What the database file looked like when a generation was taken. The
/// staleness rule (see `recovery`) compares these against the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// Database header offset 24: file change counter.
    pub change_counter: u32,
    /// Database header offset 28: in-header database size in pages.
    pub db_page_count: u32,
    /// Database header offset 32: first freelist trunk page.
    pub freelist_trunk: u32,
    /// Database header offset 36: number of freelist pages.
    pub freelist_count: u32,
    /// Database header offset 40: schema cookie.
    pub schema_cookie: u32,
    /// CRC-32C over the freelist trunk pages in chain order (0 without trunks).
    pub freelist_crc: u32,
    /// Size of the database file in bytes.
    pub file_size: u64,
    /// Which file this is: device, inode, and the evidence that tells a
    /// recreated file from the original (see `identity`).
    pub identity: FileIdentity,
    /// Checksums of a few unprotected pages: what ties the copy to the
    /// data of the file it was taken from (see [`Witnesses`]).
    pub witnesses: Witnesses,
    /// In WAL mode, the WAL session whose frames continue this copy.
    pub wal_session: Option<WalSession>,
}

/// One life of a WAL file between two restarts, as its 32-byte header
/// names it: the checkpoint sequence number (offset 12) and the two salts
/// (offsets 16 and 20). SQLite restarts the WAL only after a checkpoint
/// copied every frame into the database; the restart adds one to the
/// sequence number and to salt-1 and draws a new salt-2, and frames with
/// other salts stop counting. A WAL created anew starts at sequence 0 with
/// random salts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalSession {
    pub sequence: u32,
    pub salt1: u32,
    pub salt2: u32,
    /// The copy was taken when every frame of the session was in the
    /// database file: the session right after it continues the copy too.
    pub complete: bool,
    /// How many frames of the session a checkpoint had copied into the
    /// database file when the copy last followed one (`nBackfill` of the
    /// WAL index); 0 when none, or when not recorded. A WAL index that
    /// shows more backfilled frames of the session shows a checkpoint the
    /// copy did not follow (docs/dwr-format.md, rule 4b).
    pub backfilled: u32,
    /// Non-zero in a *projected* generation (docs/dwr-format.md §6.6): the
    /// frame that ends the last commit of the session, up to which the
    /// generation describes the database file as a complete checkpoint
    /// will leave it, rather than the file as it is.
    pub projected: u32,
}

impl WalSession {
    /// The session a WAL file header names, if it is a WAL header.
    pub fn from_wal_header(header: &[u8]) -> Option<WalSession> {
        if header.len() < 32 || !matches!(get_u32(header, 0), 0x377f_0682 | 0x377f_0683) {
            return None;
        }
        Some(WalSession {
            sequence: get_u32(header, 12),
            salt1: get_u32(header, 16),
            salt2: get_u32(header, 20),
            complete: false,
            backfilled: 0,
            projected: 0,
        })
    }

    /// True when the frames of `now` (the WAL as it is) continue the copy
    /// this session was recorded with: the same session, or, when the copy
    /// held all of it, the one restart after it. Any other session means a
    /// checkpoint the copy never saw emptied the WAL in between.
    pub fn continued_by(&self, now: &WalSession) -> bool {
        let same =
            now.sequence == self.sequence && now.salt1 == self.salt1 && now.salt2 == self.salt2;
        let next = self.complete
            && now.sequence == self.sequence.wrapping_add(1)
            && now.salt1 == self.salt1.wrapping_add(1);
        same || next
    }
}

/// Bits of the WAL session word (header offset 176).
const WAL_SESSION_RECORDED: u32 = 1;
const WAL_SESSION_COMPLETE: u32 = 2;
/// The backfilled-frame count at offset 180 is recorded.
const WAL_SESSION_BACKFILL: u32 = 4;
/// The generation is projected; offset 184 holds its last commit frame.
const WAL_SESSION_PROJECTED: u32 = 8;

/// The most witness pages a header records.
pub const MAX_WITNESSES: usize = 4;

/// Pages outside the protected set whose checksums a generation records,
/// as they were when it was taken. A database file that is not the one the
/// copy was taken from (another database copied over it, an older backup
/// restored into it) has other bytes there; so does one a program without
/// metadwr wrote to since. Only pages with enough content to tell two
/// databases apart are chosen (see `witness_worthy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Witnesses {
    len: u8,
    pages: [(u32, u32); MAX_WITNESSES],
}

impl Witnesses {
    /// `(page number, CRC-32C of the page)`, in recording order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.pages[..self.len as usize].iter().copied()
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, pgno: u32) -> bool {
        self.iter().any(|(p, _)| p == pgno)
    }

    /// Adds a witness unless the page is already one or the list is full.
    /// Returns whether it was added.
    pub fn push(&mut self, pgno: u32, crc: u32) -> bool {
        if pgno == 0 || self.len() == MAX_WITNESSES || self.contains(pgno) {
            return false;
        }
        self.pages[self.len as usize] = (pgno, crc);
        self.len += 1;
        true
    }

    pub fn is_full(&self) -> bool {
        self.len() == MAX_WITNESSES
    }
}

/// True when `page` carries enough content to tell two databases apart:
/// an empty or nearly empty B-tree page looks the same in every database
/// with that page size, so it proves nothing about which file it is in.
pub fn witness_worthy(page: &[u8]) -> bool {
    const MIN_NONZERO_BYTES: usize = 32;
    // Stops at the 32nd, counting from the end: a B-tree page keeps its
    // cells at the end and its free space in the middle, so a page with
    // data gets there within its last cells. This runs for every page a
    // commit writes.
    page.iter()
        .rev()
        .filter(|&&b| b != 0)
        .nth(MIN_NONZERO_BYTES - 1)
        .is_some()
}

/// One decoded header slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub generation: u64,
    pub page_size: u32,
    /// Number of protected pages (slot indexes `0..page_count` are live).
    pub page_count: u32,
    pub data_offset: u64,
    /// FNV-1a 64 over the selected slot trailers, see [`Digest`].
    pub digest: u64,
    pub flags: u32,
    pub fingerprint: Fingerprint,
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    TooShort,
    BadMagic,
    UnsupportedVersion(u32),
    BadChecksum,
    BadPageSize(u32),
    BadLayout(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooShort => write!(f, "truncated"),
            DecodeError::BadMagic => write!(f, "not a -dwr header (bad magic)"),
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported -dwr format version {v}"),
            DecodeError::BadChecksum => write!(f, "checksum mismatch"),
            DecodeError::BadPageSize(p) => write!(f, "invalid page size {p}"),
            DecodeError::BadLayout(why) => write!(f, "invalid layout: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// True for the page sizes SQLite supports.
pub fn valid_page_size(page_size: u32) -> bool {
    (512..=65536).contains(&page_size) && page_size.is_power_of_two()
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().unwrap())
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(buf[at..at + 8].try_into().unwrap())
}

impl Header {
    /// Encodes the header into its `HEADER_SIZE` bytes, checksum last.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(MAGIC);
        put_u32(&mut b, 8, FORMAT_VERSION);
        put_u32(&mut b, 12, HEADER_SIZE as u32);
        put_u64(&mut b, 16, self.generation);
        put_u32(&mut b, 24, self.page_size);
        put_u32(&mut b, 28, self.page_count);
        put_u64(&mut b, 32, self.data_offset);
        put_u64(&mut b, 40, self.digest);
        put_u32(&mut b, 48, self.flags);
        let fp = &self.fingerprint;
        put_u32(&mut b, 56, fp.change_counter);
        put_u32(&mut b, 60, fp.db_page_count);
        put_u32(&mut b, 64, fp.freelist_trunk);
        put_u32(&mut b, 68, fp.freelist_count);
        put_u32(&mut b, 72, fp.schema_cookie);
        put_u32(&mut b, 76, fp.freelist_crc);
        put_u64(&mut b, 80, fp.file_size);
        let id = &fp.identity;
        put_u64(&mut b, 88, id.dev);
        put_u64(&mut b, 96, id.ino);
        put_u32(&mut b, 104, id.evidence);
        put_u64(&mut b, 112, id.birth_ns);
        put_u64(&mut b, 120, id.handle);
        put_u32(&mut b, 128, fp.witnesses.len() as u32);
        for (i, (pgno, crc)) in fp.witnesses.iter().enumerate() {
            put_u32(&mut b, 132 + 8 * i, pgno);
            put_u32(&mut b, 136 + 8 * i, crc);
        }
        if let Some(w) = fp.wal_session {
            put_u32(&mut b, 164, w.sequence);
            put_u32(&mut b, 168, w.salt1);
            put_u32(&mut b, 172, w.salt2);
            let mut bits = WAL_SESSION_RECORDED | if w.complete { WAL_SESSION_COMPLETE } else { 0 };
            if w.backfilled != 0 {
                bits |= WAL_SESSION_BACKFILL;
                put_u32(&mut b, 180, w.backfilled);
            }
            if w.projected != 0 {
                bits |= WAL_SESSION_PROJECTED;
                put_u32(&mut b, 184, w.projected);
            }
            put_u32(&mut b, 176, bits);
        }
        let crc = crc32c(&b[..HEADER_SIZE - 4]);
        put_u32(&mut b, HEADER_SIZE - 4, crc);
        b
    }

    /// Decodes and validates one header slot.
    pub fn decode(b: &[u8]) -> Result<Header, DecodeError> {
        if b.len() < HEADER_SIZE {
            return Err(DecodeError::TooShort);
        }
        if &b[0..8] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if crc32c(&b[..HEADER_SIZE - 4]) != get_u32(b, HEADER_SIZE - 4) {
            return Err(DecodeError::BadChecksum);
        }
        let version = get_u32(b, 8);
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version)
            || get_u32(b, 12) != HEADER_SIZE as u32
        {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let mut h = Header {
            generation: get_u64(b, 16),
            page_size: get_u32(b, 24),
            page_count: get_u32(b, 28),
            data_offset: get_u64(b, 32),
            digest: get_u64(b, 40),
            flags: get_u32(b, 48),
            fingerprint: Fingerprint {
                change_counter: get_u32(b, 56),
                db_page_count: get_u32(b, 60),
                freelist_trunk: get_u32(b, 64),
                freelist_count: get_u32(b, 68),
                schema_cookie: get_u32(b, 72),
                freelist_crc: get_u32(b, 76),
                file_size: get_u64(b, 80),
                identity: FileIdentity {
                    dev: get_u64(b, 88),
                    ino: get_u64(b, 96),
                    ..FileIdentity::default()
                },
                witnesses: Witnesses::default(),
                wal_session: None,
            },
        };
        if version >= 3 {
            let id = &mut h.fingerprint.identity;
            id.evidence = get_u32(b, 104);
            id.birth_ns = get_u64(b, 112);
            id.handle = get_u64(b, 120);
            if id.evidence & !(identity::HAS_BIRTH | identity::HAS_HANDLE) != 0 {
                return Err(DecodeError::BadLayout("unknown identity evidence"));
            }
            let count = get_u32(b, 128) as usize;
            if count > MAX_WITNESSES {
                return Err(DecodeError::BadLayout("too many witness pages"));
            }
            for i in 0..count {
                if !h
                    .fingerprint
                    .witnesses
                    .push(get_u32(b, 132 + 8 * i), get_u32(b, 136 + 8 * i))
                {
                    return Err(DecodeError::BadLayout("invalid witness page"));
                }
            }
            let bits = get_u32(b, 176);
            let known = WAL_SESSION_RECORDED
                | WAL_SESSION_COMPLETE
                | WAL_SESSION_BACKFILL
                | WAL_SESSION_PROJECTED;
            let needs_session = WAL_SESSION_BACKFILL | WAL_SESSION_PROJECTED;
            if bits & !known != 0
                || (bits & needs_session != 0 && bits & WAL_SESSION_RECORDED == 0)
                || (bits & WAL_SESSION_PROJECTED != 0 && get_u32(b, 184) == 0)
            {
                return Err(DecodeError::BadLayout("unknown WAL session bits"));
            }
            if bits & WAL_SESSION_RECORDED != 0 {
                h.fingerprint.wal_session = Some(WalSession {
                    sequence: get_u32(b, 164),
                    salt1: get_u32(b, 168),
                    salt2: get_u32(b, 172),
                    complete: bits & WAL_SESSION_COMPLETE != 0,
                    backfilled: if bits & WAL_SESSION_BACKFILL != 0 {
                        get_u32(b, 180)
                    } else {
                        0
                    },
                    projected: if bits & WAL_SESSION_PROJECTED != 0 {
                        get_u32(b, 184)
                    } else {
                        0
                    },
                });
            }
        }
        if !valid_page_size(h.page_size) {
            return Err(DecodeError::BadPageSize(h.page_size));
        }
        if h.data_offset < FIRST_DATA_OFFSET {
            return Err(DecodeError::BadLayout("slot region overlaps the headers"));
        }
        if h.page_count == 0 {
            return Err(DecodeError::BadLayout("no protected pages"));
        }
        if h.flags & !KNOWN_FLAGS != 0 {
            // A flag from a later version may restrict when the generation
            // can be restored; ignoring it could restore a stale copy.
            return Err(DecodeError::BadLayout("unknown header flags"));
        }
        Ok(h)
    }

    /// Taken before its transaction's commit point (see [`FLAG_PENDING`]).
    pub fn is_pending(&self) -> bool {
        self.flags & FLAG_PENDING != 0
    }

    /// The commit frame up to which this generation describes the file as
    /// a complete checkpoint will leave it, when it is *projected*
    /// (docs/dwr-format.md §6.6).
    pub fn projected_through(&self) -> Option<u32> {
        self.fingerprint
            .wal_session
            .map(|w| w.projected)
            .filter(|&k| k != 0)
    }

    /// The WAL may hold later commits (see [`FLAG_WAL_AHEAD`]).
    pub fn wal_ahead(&self) -> bool {
        self.flags & FLAG_WAL_AHEAD != 0
    }

    /// Size of one page slot (page image plus trailer).
    pub fn slot_size(&self) -> u64 {
        slot_size(self.page_size)
    }

    /// End of the slot region this header describes.
    pub fn region_end(&self) -> u64 {
        slot_offset(self.data_offset, self.page_size, self.page_count, 0)
    }
}

/// Size of one page slot for `page_size`.
pub fn slot_size(page_size: u32) -> u64 {
    page_size as u64 + SLOT_TRAILER_SIZE as u64
}

/// Byte offset of slot `which` (0 = A, 1 = B) of protected index `index`.
pub fn slot_offset(data_offset: u64, page_size: u32, index: u32, which: u8) -> u64 {
    data_offset + (2 * index as u64 + which as u64) * slot_size(page_size)
}

/// Offset of header slot `which` (0 or 1). Generation `g` lives in slot `g % 2`.
pub fn header_offset(which: u64) -> u64 {
    which * HEADER_STRIDE
}

/// The trailer written after a page image in a page slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub pgno: u32,
    pub generation: u64,
    pub index: u32,
    pub page_size: u32,
    /// CRC-32C of the page image followed by trailer bytes 0..28.
    pub crc: u32,
}

impl Trailer {
    /// Builds the trailer for `page` and computes its checksum.
    pub fn seal(page: &[u8], pgno: u32, generation: u64, index: u32) -> Trailer {
        let mut t = Trailer {
            pgno,
            generation,
            index,
            page_size: page.len() as u32,
            crc: 0,
        };
        let bytes = t.encode();
        t.crc = crc32c_pair(page, &bytes[..SLOT_TRAILER_SIZE - 4]);
        t
    }

    pub fn encode(&self) -> [u8; SLOT_TRAILER_SIZE] {
        let mut b = [0u8; SLOT_TRAILER_SIZE];
        b[0..4].copy_from_slice(SLOT_MAGIC);
        put_u32(&mut b, 4, self.pgno);
        put_u64(&mut b, 8, self.generation);
        put_u32(&mut b, 16, self.index);
        put_u32(&mut b, 20, self.page_size);
        put_u32(&mut b, 28, self.crc);
        b
    }

    /// Decodes a whole slot (page image plus trailer) and verifies it.
    /// `index` and `page_size` are what the reader expects at this position.
    pub fn verify_slot(slot: &[u8], index: u32, page_size: u32) -> Result<Trailer, DecodeError> {
        let ps = page_size as usize;
        if slot.len() != ps + SLOT_TRAILER_SIZE {
            return Err(DecodeError::TooShort);
        }
        let (page, tb) = slot.split_at(ps);
        if &tb[0..4] != SLOT_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let t = Trailer {
            pgno: get_u32(tb, 4),
            generation: get_u64(tb, 8),
            index: get_u32(tb, 16),
            page_size: get_u32(tb, 20),
            crc: get_u32(tb, 28),
        };
        if crc32c_pair(page, &tb[..SLOT_TRAILER_SIZE - 4]) != t.crc {
            return Err(DecodeError::BadChecksum);
        }
        if t.index != index || t.page_size != page_size || t.pgno == 0 {
            return Err(DecodeError::BadLayout(
                "slot trailer does not match its position",
            ));
        }
        Ok(t)
    }
}

/// FNV-1a 64 over the trailers a generation selects, in index order. It binds
/// the header to exactly one set of page slots: a header whose slots were not
/// all persisted (power loss under a relaxed sync policy) fails to match.
#[derive(Debug, Clone, Copy, Default)]
pub struct Digest(Fnv64);

impl Digest {
    pub fn add(&mut self, t: &Trailer) {
        let mut bytes = [0u8; 20];
        put_u32(&mut bytes, 0, t.index);
        put_u32(&mut bytes, 4, t.pgno);
        put_u64(&mut bytes, 8, t.generation);
        put_u32(&mut bytes, 16, t.crc);
        self.0.write(&bytes);
    }

    pub fn finish(self) -> u64 {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> Header {
        Header {
            generation: 42,
            page_size: 4096,
            page_count: 3,
            data_offset: FIRST_DATA_OFFSET,
            digest: 0x1234_5678_9abc_def0,
            flags: FLAG_WAL,
            fingerprint: Fingerprint {
                change_counter: 7,
                db_page_count: 10,
                freelist_trunk: 0,
                freelist_count: 0,
                schema_cookie: 3,
                freelist_crc: 0,
                file_size: 40960,
                identity: FileIdentity {
                    dev: 2049,
                    ino: 123456,
                    evidence: identity::HAS_BIRTH | identity::HAS_HANDLE,
                    birth_ns: 1_780_000_000_123_456_789,
                    handle: 0x0bad_cafe_f00d_d00d,
                },
                witnesses: {
                    let mut w = Witnesses::default();
                    w.push(17, 0xdead_beef);
                    w.push(3, 1);
                    w
                },
                wal_session: Some(WalSession {
                    sequence: 9,
                    salt1: 0x1234_5678,
                    salt2: 0x9abc_def0,
                    complete: true,
                    backfilled: 77,
                    projected: 0,
                }),
            },
        }
    }

    #[test]
    fn version_2_headers_read_without_identity_evidence_or_witnesses() {
        let h = sample_header();
        let mut b = h.encode();
        put_u32(&mut b, 8, 2);
        b[104..252].fill(0);
        let crc = crc32c(&b[..HEADER_SIZE - 4]);
        put_u32(&mut b, HEADER_SIZE - 4, crc);
        let old = Header::decode(&b).unwrap();
        assert_eq!(old.fingerprint.identity.evidence, 0);
        assert_eq!(old.fingerprint.identity.ino, 123456);
        assert!(old.fingerprint.witnesses.is_empty());
    }

    #[test]
    fn a_wal_session_is_continued_by_itself_and_after_a_complete_copy_by_the_next() {
        let mut wal = [0u8; 32];
        put_u32(&mut wal, 0, 0x377f_0682);
        put_u32(&mut wal, 12, 4);
        put_u32(&mut wal, 16, 100);
        put_u32(&mut wal, 20, 7);
        let s = WalSession::from_wal_header(&wal).unwrap();
        assert!(WalSession::from_wal_header(&[0u8; 32]).is_none());
        let restarted = WalSession {
            sequence: 5,
            salt1: 101,
            salt2: 99,
            complete: false,
            backfilled: 0,
            projected: 0,
        };
        let twice = WalSession {
            sequence: 6,
            salt1: 102,
            salt2: 3,
            complete: false,
            backfilled: 0,
            projected: 0,
        };
        let anew = WalSession {
            sequence: 0,
            salt1: 55,
            salt2: 66,
            complete: false,
            backfilled: 0,
            projected: 0,
        };
        assert!(s.continued_by(&s));
        assert!(
            !s.continued_by(&restarted),
            "the copy missed part of the session"
        );
        let complete = WalSession {
            complete: true,
            ..s
        };
        assert!(complete.continued_by(&s));
        assert!(complete.continued_by(&restarted));
        assert!(!complete.continued_by(&twice));
        assert!(!complete.continued_by(&anew));
        assert!(!complete.continued_by(&WalSession { salt2: 8, ..s }));
    }

    #[test]
    fn witness_lists_are_bounded_and_checked() {
        let mut w = Witnesses::default();
        assert!(!w.push(0, 1), "page 0 does not exist");
        for p in 2..2 + MAX_WITNESSES as u32 {
            assert!(w.push(p, p));
        }
        assert!(!w.push(99, 1), "full");
        assert!(!w.push(2, 5), "no duplicates");
        let mut h = sample_header();
        h.fingerprint.witnesses = w;
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        // A count past the maximum, or a duplicate, is not a valid header.
        for (at, value) in [(128, MAX_WITNESSES as u32 + 1), (140, 2)] {
            let mut b = h.encode();
            put_u32(&mut b, at, value);
            let crc = crc32c(&b[..HEADER_SIZE - 4]);
            put_u32(&mut b, HEADER_SIZE - 4, crc);
            assert!(matches!(Header::decode(&b), Err(DecodeError::BadLayout(_))));
        }
        assert!(!witness_worthy(&[0u8; 4096]));
        let mut empty_leaf = vec![0u8; 4096];
        empty_leaf[0] = 0x0d;
        empty_leaf[5] = 0x10;
        assert!(!witness_worthy(&empty_leaf));
        let rows: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        assert!(witness_worthy(&rows));
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // The check value docs/dwr-format.md gives.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_pair(b"1234", b"56789"), 0xE306_9283);
    }

    #[test]
    fn header_round_trips() {
        let h = sample_header();
        let bytes = h.encode();
        assert_eq!(&bytes[0..8], MAGIC);
        assert_eq!(Header::decode(&bytes).unwrap(), h);
        assert_eq!(get_u32(&bytes, 180), 77, "the WAL backfill");
    }

    #[test]
    fn the_wal_backfill_needs_a_recorded_session() {
        let mut h = sample_header();
        let session = h.fingerprint.wal_session.as_mut().unwrap();
        session.backfilled = 0;
        // Nothing recorded: bit 2 clear, the field 0.
        let b = h.encode();
        assert_eq!(get_u32(&b, 176) & WAL_SESSION_BACKFILL, 0);
        assert_eq!(get_u32(&b, 180), 0);
        assert_eq!(Header::decode(&b).unwrap(), h);
        // Bit 2 without bit 0 is no valid header.
        let mut b = sample_header().encode();
        put_u32(&mut b, 176, WAL_SESSION_BACKFILL);
        let crc = crc32c(&b[..HEADER_SIZE - 4]);
        put_u32(&mut b, HEADER_SIZE - 4, crc);
        assert!(matches!(Header::decode(&b), Err(DecodeError::BadLayout(_))));
    }

    #[test]
    fn a_projected_generation_records_its_commit_frame() {
        let mut h = sample_header();
        h.fingerprint.wal_session.as_mut().unwrap().projected = 4242;
        let b = h.encode();
        assert_eq!(
            get_u32(&b, 176) & WAL_SESSION_PROJECTED,
            WAL_SESSION_PROJECTED
        );
        assert_eq!(get_u32(&b, 184), 4242);
        assert_eq!(Header::decode(&b).unwrap(), h);
        let reseal = |b: &mut [u8; HEADER_SIZE]| {
            let crc = crc32c(&b[..HEADER_SIZE - 4]);
            put_u32(b, HEADER_SIZE - 4, crc);
        };
        // Bit 3 without a recorded session, or without a frame, is no
        // valid header.
        let mut lone = b;
        put_u32(&mut lone, 176, WAL_SESSION_PROJECTED);
        reseal(&mut lone);
        assert!(matches!(
            Header::decode(&lone),
            Err(DecodeError::BadLayout(_))
        ));
        let mut frameless = b;
        put_u32(&mut frameless, 184, 0);
        reseal(&mut frameless);
        assert!(matches!(
            Header::decode(&frameless),
            Err(DecodeError::BadLayout(_))
        ));
    }

    #[test]
    fn header_rejects_every_single_bit_flip() {
        let bytes = sample_header().encode();
        for bit in 0..HEADER_SIZE * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Header::decode(&b).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn version_1_headers_still_read_and_unknown_flags_do_not() {
        let h = sample_header();
        let mut b = h.encode();
        put_u32(&mut b, 8, 1);
        let crc = crc32c(&b[..HEADER_SIZE - 4]);
        put_u32(&mut b, HEADER_SIZE - 4, crc);
        // Version 1 reads as version 3 without identity evidence and
        // witnesses (the bytes that hold them were reserved then).
        let mut v1 = h;
        v1.fingerprint.identity.evidence = 0;
        v1.fingerprint.identity.birth_ns = 0;
        v1.fingerprint.identity.handle = 0;
        v1.fingerprint.witnesses = Witnesses::default();
        v1.fingerprint.wal_session = None;
        assert_eq!(Header::decode(&b).unwrap(), v1);
        put_u32(&mut b, 8, FORMAT_VERSION + 1);
        let crc = crc32c(&b[..HEADER_SIZE - 4]);
        put_u32(&mut b, HEADER_SIZE - 4, crc);
        assert_eq!(
            Header::decode(&b),
            Err(DecodeError::UnsupportedVersion(FORMAT_VERSION + 1))
        );
        let mut h = sample_header();
        h.flags = FLAG_PENDING | FLAG_WAL_AHEAD;
        let decoded = Header::decode(&h.encode()).unwrap();
        assert!(decoded.is_pending() && decoded.wal_ahead());
        h.flags = 8;
        assert!(matches!(
            Header::decode(&h.encode()),
            Err(DecodeError::BadLayout(_))
        ));
    }

    #[test]
    fn page1_changes_are_classified_by_what_survives_page_1() {
        let base: Vec<u8> = (0..512u32).map(|i| (i * 7) as u8).collect();
        let changed = |at: usize| {
            let mut p = base.clone();
            p[at] ^= 0x40;
            p
        };
        // Counter, size, freelist count, valid-for, SQLite version: visible.
        for at in [24, 27, 28, 31, 36, 39, 92, 99] {
            assert!(page1_change_is_visible(&base, &changed(at)), "offset {at}");
        }
        // Trunk, schema cookie, user_version, header bytes, schema root: not.
        for at in [0, 18, 32, 35, 40, 43, 60, 91, 100, 511] {
            assert!(!page1_change_is_visible(&base, &changed(at)), "offset {at}");
        }
        assert!(page1_change_is_visible(&base, &base));
        assert!(!page1_change_is_visible(&base, &base[..256]));
        // Only the counter and valid-for are the same state.
        assert!(page1_same_state(&base, &changed(24)));
        assert!(page1_same_state(&base, &changed(95)));
        assert!(!page1_same_state(&base, &changed(28)));
        assert!(!page1_same_state(&base, &changed(96)));
    }

    #[test]
    fn header_rejects_short_zero_and_bad_fields() {
        assert_eq!(Header::decode(&[0u8; 10]), Err(DecodeError::TooShort));
        assert_eq!(
            Header::decode(&[0u8; HEADER_SIZE]),
            Err(DecodeError::BadMagic)
        );
        let mut h = sample_header();
        h.page_size = 1000;
        assert_eq!(
            Header::decode(&h.encode()),
            Err(DecodeError::BadPageSize(1000))
        );
        let mut h = sample_header();
        h.data_offset = 0;
        assert!(matches!(
            Header::decode(&h.encode()),
            Err(DecodeError::BadLayout(_))
        ));
    }

    #[test]
    fn slot_round_trips_and_detects_damage() {
        let page: Vec<u8> = (0..512u32).map(|i| (i * 7) as u8).collect();
        let t = Trailer::seal(&page, 5, 9, 2);
        let mut slot = page.clone();
        slot.extend_from_slice(&t.encode());
        assert_eq!(Trailer::verify_slot(&slot, 2, 512).unwrap(), t);
        // Wrong position or page size is refused even with a good checksum.
        assert!(Trailer::verify_slot(&slot, 3, 512).is_err());
        let mut torn = slot.clone();
        torn[100] ^= 0x10;
        assert_eq!(
            Trailer::verify_slot(&torn, 2, 512),
            Err(DecodeError::BadChecksum)
        );
        let mut zeroed = slot.clone();
        zeroed[512..].fill(0);
        assert_eq!(
            Trailer::verify_slot(&zeroed, 2, 512),
            Err(DecodeError::BadMagic)
        );
    }

    #[test]
    fn digest_depends_on_every_field_and_order() {
        let a = Trailer {
            pgno: 1,
            generation: 1,
            index: 0,
            page_size: 512,
            crc: 10,
        };
        let b = Trailer {
            pgno: 2,
            generation: 1,
            index: 1,
            page_size: 512,
            crc: 20,
        };
        let d = |ts: &[Trailer]| {
            let mut d = Digest::default();
            ts.iter().for_each(|t| d.add(t));
            d.finish()
        };
        assert_ne!(d(&[a, b]), d(&[b, a]));
        assert_ne!(d(&[a, b]), d(&[a, Trailer { generation: 2, ..b }]));
        assert_ne!(d(&[a, b]), d(&[a, Trailer { crc: 21, ..b }]));
        assert_eq!(d(&[a, b]), d(&[a, b]));
    }

    #[test]
    fn slots_never_overlap_headers_or_each_other() {
        let ps = 512;
        assert!(slot_offset(FIRST_DATA_OFFSET, ps, 0, 0) >= 2 * HEADER_STRIDE);
        assert_eq!(
            slot_offset(FIRST_DATA_OFFSET, ps, 0, 1) - slot_offset(FIRST_DATA_OFFSET, ps, 0, 0),
            slot_size(ps)
        );
        assert_eq!(
            slot_offset(FIRST_DATA_OFFSET, ps, 1, 0),
            slot_offset(FIRST_DATA_OFFSET, ps, 0, 1) + slot_size(ps)
        );
        assert!(HEADER_SIZE as u64 <= HEADER_STRIDE);
    }
}
