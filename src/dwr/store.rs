//! The `-dwr` store: reading generations, writing new ones, and the sync policy.
//!
//! The store owns the open `-dwr` file and a *mirror*: the page images and
//! slot trailers of the generation it last read or wrote. The mirror lets a
//! commit write only the protected pages that changed, and lets the writer
//! know which slot of every index it must not touch.
//!
//! Several connections (and processes) may share one `-dwr`. SQLite's own
//! locks serialise writers of the database file, and the store is only
//! written while such a lock is held, so before every update the store
//! re-reads the two header slots and reloads the mirror if another
//! connection wrote a newer generation.

use crate::dwr::file::{DwrFile, DwrOpener, OpenMode, StdOpener};
use crate::dwr::format::{
    self, header_offset, slot_offset, slot_size, DecodeError, Digest, Fingerprint, Header, Trailer,
    FIRST_DATA_OFFSET, FLAG_WAL_AHEAD, HEADER_SIZE, HEADER_STRIDE, SLOT_TRAILER_SIZE,
};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// When the store fsyncs the `-dwr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Never; the operating system writes the file back when it likes.
    Off,
    /// After every `PERIODIC_UPDATES` updates or `PERIODIC_INTERVAL`,
    /// whichever comes first, and when the file is closed. The default.
    Periodic,
    /// After every update, before the database lock is released.
    Full,
}

pub const PERIODIC_UPDATES: u32 = 100;
pub const PERIODIC_INTERVAL: Duration = Duration::from_secs(30);

impl SyncPolicy {
    pub fn parse(s: &str) -> Option<SyncPolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "0" => Some(SyncPolicy::Off),
            "periodic" | "normal" | "1" => Some(SyncPolicy::Periodic),
            "full" | "2" => Some(SyncPolicy::Full),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SyncPolicy::Off => "off",
            SyncPolicy::Periodic => "periodic",
            SyncPolicy::Full => "full",
        }
    }
}

/// The protected pages of one database state, ready to become a generation.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub page_size: u32,
    /// (page number, page image), page 1 first, no duplicates.
    pub pages: Vec<(u32, Vec<u8>)>,
    pub fingerprint: Fingerprint,
    pub flags: u32,
}

/// A complete, verified generation read from the file.
#[derive(Debug, Clone)]
pub struct Generation {
    pub header: Header,
    /// (page number, page image) in index order.
    pub pages: Vec<(u32, Vec<u8>)>,
}

impl Generation {
    pub fn page(&self, pgno: u32) -> Option<&[u8]> {
        self.pages
            .iter()
            .find(|(p, _)| *p == pgno)
            .map(|(_, d)| d.as_slice())
    }
}

/// What reading the whole `-dwr` found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid generations, newest first (at most two).
    pub generations: Vec<Generation>,
    /// Why each header slot that did not yield a generation was refused.
    pub rejected: Vec<String>,
    /// Highest generation number found in any header or slot trailer.
    pub max_generation_seen: u64,
    /// Per index of the newest valid generation: the selected slot, its
    /// trailer, and the generation in the other slot (0 if not valid).
    selected: Vec<(u8, Trailer, u64)>,
}

/// Counters the benchmarks read; cumulative per store.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Generations with page content written (see also `flag_updates`).
    pub generations_written: u64,
    /// Header-only updates: confirmations of `PENDING` generations and
    /// changes of `WAL_AHEAD`.
    pub flag_updates: u64,
    pub pages_written: u64,
    pub bytes_written: u64,
    pub fsyncs: u64,
    /// Projected generations retired (section 6.6).
    pub projections_retired: u64,
}

struct Slot {
    pgno: u32,
    /// Which of the two slots the mirror's generation selects.
    current: u8,
    trailer: Trailer,
    /// Generation stored in the other slot, if it is valid.
    other_generation: u64,
    image: Vec<u8>,
}

struct Mirror {
    header: Header,
    slots: Vec<Slot>,
    max_generation_seen: u64,
    /// Index of each page's slot in `slots`.
    by_pgno: PageMap<usize>,
}

impl Mirror {
    fn new(header: Header, slots: Vec<Slot>, max_generation_seen: u64) -> Mirror {
        let by_pgno = slots.iter().enumerate().map(|(i, s)| (s.pgno, i)).collect();
        Mirror {
            header,
            slots,
            max_generation_seen,
            by_pgno,
        }
    }
}

/// Hashes page numbers with one multiplication (Fibonacci hashing). Page
/// numbers come from our own files, so SipHash's resistance to chosen keys
/// buys nothing, and these sets are probed on every read.
#[derive(Default, Clone, Copy)]
pub struct PageHasher(u64);

impl std::hash::Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64 ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type BuildPageHasher = std::hash::BuildHasherDefault<PageHasher>;
/// A set of page numbers.
pub type PageSet = std::collections::HashSet<u32, BuildPageHasher>;
/// A map keyed by page number.
pub type PageMap<V> = HashMap<u32, V, BuildPageHasher>;

/// A set of page numbers tuned for the read path, where almost every
/// lookup misses: a 1,024-bit filter (page number mod 1,024) answers most
/// misses with one bit test before the hash set is consulted.
#[derive(Debug, Default, Clone)]
pub struct PageFilterSet {
    filter: [u64; 16],
    set: PageSet,
}

impl PageFilterSet {
    #[inline]
    pub fn contains(&self, pgno: u32) -> bool {
        self.may_contain(pgno) && self.set.contains(&pgno)
    }

    /// The filter alone: false means `pgno` is not in the set; true means
    /// it may be.
    #[inline(always)]
    pub fn may_contain(&self, pgno: u32) -> bool {
        let (word, mask) = Self::filter_bit(pgno);
        self.filter[word] & mask != 0
    }

    /// The filter word and bit of `pgno` (page number mod 1,024).
    #[inline(always)]
    fn filter_bit(pgno: u32) -> (usize, u64) {
        let bit = (pgno % 1024) as usize;
        (bit / 64, 1 << (bit % 64))
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn clear(&mut self) {
        self.filter = [0; 16];
        self.set.clear();
    }
}

impl FromIterator<u32> for PageFilterSet {
    fn from_iter<I: IntoIterator<Item = u32>>(pages: I) -> Self {
        let mut out = PageFilterSet::default();
        for pgno in pages {
            let (word, mask) = Self::filter_bit(pgno);
            out.filter[word] |= mask;
            out.set.insert(pgno);
        }
        out
    }
}

/// An open `-dwr` file.
pub struct Store {
    file: Box<dyn DwrFile>,
    path: PathBuf,
    mirror: Option<Mirror>,
    policy: SyncPolicy,
    updates_since_sync: u32,
    /// Something was written since the last fsync (a header-only update
    /// does not count towards `updates_since_sync`, but is synced at close).
    unsynced: bool,
    /// While set, an fsync the policy asks for is not done but noted in
    /// `sync_due`, for the caller to run alongside the database's own.
    defer_sync: bool,
    sync_due: bool,
    last_sync: Instant,
    stats: Stats,
    /// The header slot of a valid projected generation, as the last
    /// refresh found it; every update retires it first (section 6.6).
    projected_slot: Option<u64>,
}

/// Why a generation could not be written or read.
#[derive(Debug)]
pub enum StoreError {
    Io(io::Error),
    Invalid(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "{e}"),
            StoreError::Invalid(s) => write!(f, "{s}"),
        }
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

impl Store {
    /// Opens (and with `create`, creates) the `-dwr` at `path` as a plain
    /// file. Symlinks are refused: the copy must live next to its database.
    pub fn open(path: &Path, create: bool, policy: SyncPolicy) -> io::Result<Store> {
        let mode = if create {
            OpenMode::Create
        } else {
            OpenMode::ReadWrite
        };
        Store::open_with(&StdOpener, path, mode, policy)
    }

    /// Opens an existing `-dwr` for reading only (inspection tools).
    pub fn open_read_only(path: &Path, policy: SyncPolicy) -> io::Result<Store> {
        Store::open_with(&StdOpener, path, OpenMode::ReadOnly, policy)
    }

    /// Opens the `-dwr` through `opener` (in the extension: the base VFS).
    pub fn open_with(
        opener: &dyn DwrOpener,
        path: &Path,
        mode: OpenMode,
        policy: SyncPolicy,
    ) -> io::Result<Store> {
        Ok(Store {
            file: opener.open(path, mode)?,
            path: path.to_owned(),
            mirror: None,
            policy,
            updates_since_sync: 0,
            unsynced: false,
            defer_sync: false,
            sync_due: false,
            last_sync: Instant::now(),
            stats: Stats::default(),
            projected_slot: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn policy(&self) -> SyncPolicy {
        self.policy
    }

    pub fn set_policy(&mut self, policy: SyncPolicy) {
        self.policy = policy;
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// True while the file still has a name (another connection may have
    /// disabled protection and removed it).
    pub fn is_linked(&self) -> bool {
        self.file.is_linked()
    }

    /// True when the file holds nothing yet: protection is on, but no copy
    /// was taken (the database has no pages).
    pub fn holds_nothing(&self) -> bool {
        self.mirror.is_none() && matches!(self.file.len(), Ok(0))
    }

    /// Generation number the mirror holds, if any.
    pub fn mirror_generation(&self) -> Option<u64> {
        self.mirror.as_ref().map(|m| m.header.generation)
    }

    /// Page numbers of the mirror's generation, in index order.
    pub fn mirror_pages(&self) -> impl Iterator<Item = u32> + '_ {
        self.mirror
            .iter()
            .flat_map(|m| m.slots.iter().map(|s| s.pgno))
    }

    /// The mirror's image of `pgno`, if it is protected.
    pub fn mirror_page(&self, pgno: u32) -> Option<&[u8]> {
        let m = self.mirror.as_ref()?;
        let &i = m.by_pgno.get(&pgno)?;
        Some(m.slots[i].image.as_slice())
    }

    /// Bytes 24..40 of the mirror's page 1 (change counter, page count,
    /// first freelist trunk, freelist count), when page 1 is its first slot
    /// (always, for copies this crate writes). For the read path.
    #[inline(always)]
    pub fn mirror_counter(&self) -> Option<&[u8; 16]> {
        let slot = self.mirror.as_ref()?.slots.first()?;
        if slot.pgno != 1 {
            return None;
        }
        slot.image.get(24..40)?.try_into().ok()
    }

    /// The mirror's image of page 1. Page 1 has index 0 in every file this
    /// code writes, so that is looked at first (the read path asks at every
    /// transaction); a file written otherwise still answers.
    #[inline]
    pub fn mirror_page1(&self) -> Option<&[u8]> {
        match self.mirror.as_ref()?.slots.first() {
            Some(slot) if slot.pgno == 1 => Some(slot.image.as_slice()),
            _ => self.mirror_page(1),
        }
    }

    pub fn mirror_header(&self) -> Option<&Header> {
        self.mirror.as_ref().map(|m| &m.header)
    }

    /// Reads both header slots and returns the highest generation whose
    /// header checksum is valid (not yet checked against its slots).
    /// The newest valid header that is not projected, and the header slot
    /// of a valid projected one, if any (section 6.6 of
    /// docs/dwr-format.md). Headers only: one small read.
    fn newest_headers(&self) -> io::Result<(Option<u64>, Option<u64>)> {
        let mut buf = vec![0u8; (2 * HEADER_STRIDE) as usize];
        let n = self.file.read_at(&mut buf, 0)?;
        let mut best = None;
        let mut projected = None;
        for which in 0..2u64 {
            let start = header_offset(which) as usize;
            if n >= start + HEADER_SIZE {
                if let Ok(h) = Header::decode(&buf[start..start + HEADER_SIZE]) {
                    if h.projected_through().is_some() {
                        projected = Some(which);
                    } else {
                        best = best.max(Some(h.generation));
                    }
                }
            }
        }
        Ok((best, projected))
    }

    /// Page 1 as the newest header's generation selects it, read without
    /// loading (or verifying) the whole file: two small reads. Enough to
    /// tell whether another connection already brought the copy up to date;
    /// never enough to restore from.
    pub fn peek_page1(&self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; (2 * HEADER_STRIDE) as usize];
        let n = self.file.read_at(&mut buf, 0)?;
        let newest = (0..2u64)
            .filter_map(|which| {
                let start = header_offset(which) as usize;
                buf.get(start..start + HEADER_SIZE)
                    .filter(|_| n >= start + HEADER_SIZE)
                    .and_then(|b| Header::decode(b).ok())
            })
            .max_by_key(|h| h.generation);
        let Some(h) = newest else {
            return Ok(None);
        };
        // Page 1 always has index 0 (snapshots list it first, and indexes
        // are kept stable).
        let ss = slot_size(h.page_size) as usize;
        let mut pair = vec![0u8; 2 * ss];
        if self
            .file
            .read_at(&mut pair, slot_offset(h.data_offset, h.page_size, 0, 0))?
            != pair.len()
        {
            return Ok(None);
        }
        let best = (0..2)
            .filter_map(|w| {
                Trailer::verify_slot(&pair[w * ss..(w + 1) * ss], 0, h.page_size)
                    .ok()
                    .filter(|t| t.pgno == 1 && t.generation <= h.generation)
                    .map(|t| (t.generation, w))
            })
            .max();
        Ok(best.map(|(_, w)| pair[w * ss..w * ss + h.page_size as usize].to_vec()))
    }

    /// Makes sure the mirror reflects the newest valid generation in the
    /// file; cheap (one small read) when nobody else wrote since.
    pub fn refresh(&mut self) -> Result<(), StoreError> {
        let (newest, projected) = self.newest_headers()?;
        self.projected_slot = projected;
        if let (Some(m), Some(g)) = (&self.mirror, newest) {
            if m.header.generation == g {
                return Ok(());
            }
        }
        let scan = self.scan_newest()?;
        self.adopt_scan(scan);
        Ok(())
    }

    fn adopt_scan(&mut self, scan: Scan) {
        let max_seen = scan.max_generation_seen;
        self.mirror = scan.generations.into_iter().next().map(|g| {
            let slots = g
                .pages
                .into_iter()
                .zip(scan.selected)
                .map(
                    |((pgno, image), (current, trailer, other_generation))| Slot {
                        pgno,
                        current,
                        trailer,
                        other_generation,
                        image,
                    },
                )
                .collect();
            Mirror::new(g.header, slots, max_seen)
        });
    }

    /// Reads and verifies everything in the file: both generations, as the
    /// recovery planner needs them, a projected one included.
    pub fn scan(&self) -> io::Result<Scan> {
        self.scan_generations(2, true)
    }

    /// Reads and verifies the newest complete generation only: all the
    /// mirror needs. When both header slots are complete (the usual case,
    /// and after a confirmation they even select the same slots), this
    /// reads and checksums the slots once instead of twice.
    /// A projected generation is never the mirror: it describes the file
    /// as it is not yet, and every update is made over the generation that
    /// describes it as it is.
    fn scan_newest(&self) -> io::Result<Scan> {
        self.scan_generations(1, false)
    }

    fn scan_generations(&self, wanted: usize, projected: bool) -> io::Result<Scan> {
        let len = self.file.len()?;
        let mut scan = Scan::default();
        let mut headers = Vec::new();
        let mut hbuf = [0u8; HEADER_SIZE];
        for which in 0..2u64 {
            let off = header_offset(which);
            if len < off + HEADER_SIZE as u64 {
                scan.rejected
                    .push(format!("header slot {which}: truncated"));
                continue;
            }
            self.file.read_exact_at(&mut hbuf, off)?;
            match Header::decode(&hbuf) {
                Ok(h) => headers.push(h),
                Err(e) => scan.rejected.push(format!("header slot {which}: {e}")),
            }
        }
        headers.sort_by_key(|h| std::cmp::Reverse(h.generation));
        // A generation the durability rule made durable is in both slots.
        headers.dedup_by_key(|h| h.generation);
        scan.max_generation_seen = headers.iter().map(|h| h.generation).max().unwrap_or(0);
        for h in headers {
            if scan.generations.len() == wanted {
                break;
            }
            if !projected && h.projected_through().is_some() {
                continue;
            }
            match self.read_generation(&h, len) {
                Ok((generation, selected, max_slot_gen)) => {
                    scan.max_generation_seen = scan.max_generation_seen.max(max_slot_gen);
                    if scan.generations.is_empty() {
                        scan.selected = selected;
                    }
                    scan.generations.push(generation);
                }
                Err(e) => scan
                    .rejected
                    .push(format!("generation {}: {e}", h.generation)),
            }
        }
        Ok(scan)
    }

    #[allow(clippy::type_complexity)]
    fn read_generation(
        &self,
        h: &Header,
        file_len: u64,
    ) -> Result<(Generation, Vec<(u8, Trailer, u64)>, u64), DecodeError> {
        if h.region_end() > file_len {
            return Err(DecodeError::BadLayout(
                "slot region extends past end of file",
            ));
        }
        let ss = slot_size(h.page_size) as usize;
        let ps = h.page_size as usize;
        let mut pair = vec![0u8; 2 * ss];
        let mut pages = Vec::with_capacity(h.page_count as usize);
        let mut selected = Vec::with_capacity(h.page_count as usize);
        let mut digest = Digest::default();
        let mut max_slot_gen = 0;
        let mut seen = HashMap::new();
        for index in 0..h.page_count {
            let off = slot_offset(h.data_offset, h.page_size, index, 0);
            self.file
                .read_exact_at(&mut pair, off)
                .map_err(|_| DecodeError::TooShort)?;
            let mut gens = [0u64; 2];
            let mut best: Option<(Trailer, usize)> = None;
            for which in 0..2 {
                let slot = &pair[which * ss..(which + 1) * ss];
                if let Ok(t) = Trailer::verify_slot(slot, index, h.page_size) {
                    gens[which] = t.generation;
                    max_slot_gen = max_slot_gen.max(t.generation);
                    if t.generation <= h.generation
                        && best.is_none_or(|(b, _)| t.generation > b.generation)
                    {
                        best = Some((t, which));
                    }
                }
            }
            let Some((t, which)) = best else {
                return Err(DecodeError::BadLayout("a protected page has no valid copy"));
            };
            if seen.insert(t.pgno, index).is_some() {
                return Err(DecodeError::BadLayout("a page is listed twice"));
            }
            digest.add(&t);
            selected.push((which as u8, t, gens[1 - which]));
            pages.push((t.pgno, pair[which * ss..which * ss + ps].to_vec()));
        }
        if digest.finish() != h.digest {
            return Err(DecodeError::BadLayout(
                "page copies do not match the header (incomplete update)",
            ));
        }
        if !seen.contains_key(&1) {
            return Err(DecodeError::BadLayout("page 1 is not protected"));
        }
        Ok((Generation { header: *h, pages }, selected, max_slot_gen))
    }

    /// Writes `snap` as a new generation. Only pages whose images differ from
    /// the mirror are written; a page-size change rewrites everything into a
    /// fresh region so the previous generation stays intact until the new
    /// header lands.
    pub fn write_generation(&mut self, snap: &Snapshot) -> Result<u64, StoreError> {
        self.retire_projected()?;
        if snap.pages.is_empty() || snap.pages[0].0 != 1 {
            return Err(StoreError::Invalid(
                "snapshot must start with page 1".into(),
            ));
        }
        if snap
            .pages
            .iter()
            .any(|(_, d)| d.len() != snap.page_size as usize)
        {
            return Err(StoreError::Invalid(
                "snapshot page of the wrong size".into(),
            ));
        }
        let incremental = matches!(&self.mirror, Some(m) if m.header.page_size == snap.page_size);
        let invisible = change_is_invisible(self.mirror.as_ref(), snap);
        let before = self.stats.generations_written;
        // Only an update that adds slots (or rewrites all) can grow the file.
        let may_grow = !incremental
            || self
                .mirror
                .as_ref()
                .is_none_or(|m| snap.pages.len() > m.slots.len());
        let len_before = if may_grow {
            Some(self.file.len()?)
        } else {
            None
        };
        let written = if incremental {
            self.write_incremental(snap)
        } else {
            self.write_full(snap)
        };
        let generation = match written {
            Ok(g) => g,
            Err(e) => {
                // Give back what a failed update appended: on a full disk
                // those bytes would fail the user's next write. The current
                // generation lies within the old length, so it stays intact.
                if let Some(len_before) = len_before {
                    if matches!(self.file.len(), Ok(len) if len > len_before) {
                        let _ = self.file.set_len(len_before);
                    }
                }
                self.mirror = None;
                return Err(e);
            }
        };
        if self.stats.generations_written != before {
            self.after_update(invisible)?;
        }
        Ok(generation)
    }

    /// The common commit: only page 1 (and the fingerprint) changed, the
    /// rest of the schema tree is as in the mirror. Writes at most one slot
    /// and the header, in time independent of the schema's size. Returns
    /// `None` when the general path is needed (no mirror, another page
    /// size, leftovers of a crashed update to clean up).
    pub fn write_page1(
        &mut self,
        page1: &[u8],
        fingerprint: Fingerprint,
        flags: u32,
    ) -> Result<Option<u64>, StoreError> {
        self.retire_projected()?;
        let Some(m) = &self.mirror else {
            return Ok(None);
        };
        if m.header.page_size as usize != page1.len()
            || m.slots.first().map(|s| s.pgno) != Some(1)
            || m.slots
                .iter()
                .any(|s| s.other_generation > s.trailer.generation)
        {
            return Ok(None);
        }
        let page1_same = m.slots[0].image == page1;
        if page1_same && m.header.fingerprint == fingerprint && m.header.flags == flags {
            return Ok(Some(m.header.generation));
        }
        let invisible = !format::page1_change_is_visible(&m.slots[0].image, page1)
            || m.header.fingerprint.freelist_trunk != fingerprint.freelist_trunk
            || (flags & FLAG_WAL_AHEAD != 0 && !m.header.wal_ahead());
        let mut m = self.mirror.take().unwrap();
        let generation = m.max_generation_seen + 1;
        let result = (|| -> Result<Header, StoreError> {
            if !page1_same {
                let old = &m.slots[0];
                let which = 1 - old.current;
                let trailer = Trailer::seal(page1, 1, generation, 0);
                let off = slot_offset(m.header.data_offset, m.header.page_size, 0, which);
                self.write_slot(off, page1, &trailer)?;
                let slot = &mut m.slots[0];
                slot.other_generation = slot.trailer.generation;
                slot.current = which;
                slot.trailer = trailer;
                slot.image.copy_from_slice(page1);
            }
            let mut digest = Digest::default();
            m.slots.iter().for_each(|s| digest.add(&s.trailer));
            let header = Header {
                generation,
                digest: digest.finish(),
                flags,
                fingerprint,
                ..m.header
            };
            self.write_header(&header)?;
            Ok(header)
        })();
        match result {
            Ok(header) => {
                m.header = header;
                m.max_generation_seen = generation;
                self.mirror = Some(m);
                self.after_update(invisible)?;
                Ok(Some(generation))
            }
            // The mirror is dropped: the next update rescans the file.
            Err(e) => Err(e),
        }
    }

    /// Writes the mirror's generation again under a new number, with `set`
    /// flags added and `clear` flags removed: a header-only update that
    /// selects the same page slots. It lands in the other header slot, so
    /// the generation it replaces stays readable until it is complete.
    /// Returns the new generation, or `None` when the flags already are so.
    /// Setting `WAL_AHEAD` is made durable at once (unless the policy is
    /// `off`): it must be on disk before the WAL frames it announces.
    pub fn rewrite_flags(&mut self, set: u32, clear: u32) -> Result<Option<u64>, StoreError> {
        self.retire_projected()?;
        let Some(m) = &mut self.mirror else {
            return Err(StoreError::Invalid("no generation to update".into()));
        };
        let flags = (m.header.flags | set) & !clear;
        if flags == m.header.flags {
            return Ok(None);
        }
        let durable = flags & FLAG_WAL_AHEAD != 0 && !m.header.wal_ahead();
        let mut header = Header {
            generation: m.max_generation_seen + 1,
            flags,
            ..m.header
        };
        if durable {
            // Set when the first frames are about to go into an empty WAL:
            // they start a session the copy has not seen yet, which the
            // writer records when it releases the WAL write lock.
            header.fingerprint.wal_session = None;
        }
        self.rewrite_header(header, durable)
    }

    /// Records in the mirror's generation, by a header-only update, the
    /// WAL session that continues it (see [`format::WalSession`]). Not made
    /// durable: losing it only makes a restore refuse.
    pub fn record_wal_session(
        &mut self,
        session: format::WalSession,
    ) -> Result<Option<u64>, StoreError> {
        self.retire_projected()?;
        let Some(m) = &self.mirror else {
            return Err(StoreError::Invalid("no generation to update".into()));
        };
        if m.header.fingerprint.wal_session == Some(session) {
            return Ok(None);
        }
        let mut header = Header {
            generation: m.max_generation_seen + 1,
            ..m.header
        };
        header.fingerprint.wal_session = Some(session);
        self.rewrite_header(header, false)
    }

    /// Whether the last refresh found a projected generation.
    pub fn has_projected(&self) -> bool {
        self.projected_slot.is_some()
    }

    /// Looks for a projected generation on disk (one small read) and
    /// retires it: what a connection does before it writes WAL frames,
    /// which a projection written by another connection cannot see.
    pub fn retire_projected_on_disk(&mut self) -> Result<(), StoreError> {
        let (_, projected) = self.newest_headers()?;
        self.projected_slot = projected;
        self.retire_projected()
    }

    /// Retires the projected generation the last refresh found, if it is
    /// still there: its header slot is zeroed and, unless the policy is
    /// `off`, fsynced. Done before every other update, and by a connection
    /// about to write WAL frames or checkpoint: a projection vouches for
    /// the file only as long as nobody through metadwr writes after its
    /// commit frame, so it must be gone from the disk before anyone does
    /// (section 6.6 of docs/dwr-format.md).
    pub fn retire_projected(&mut self) -> Result<(), StoreError> {
        let Some(which) = self.projected_slot.take() else {
            return Ok(());
        };
        let mut hbuf = [0u8; HEADER_SIZE];
        let off = header_offset(which);
        if self.file.read_at(&mut hbuf, off)? == HEADER_SIZE
            && Header::decode(&hbuf).is_ok_and(|h| h.projected_through().is_some())
        {
            self.file.write_all_at(&[0u8; HEADER_SIZE], off)?;
            self.unsynced = true;
            if self.policy != SyncPolicy::Off {
                self.sync()?;
            }
            self.stats.projections_retired += 1;
        }
        Ok(())
    }

    /// Writes `snap`, the protected pages as a complete checkpoint of the
    /// WAL through the commit frame its WAL session names will leave the
    /// file, as a *projected* generation over the mirror's (section 6.6 of
    /// docs/dwr-format.md). The mirror's generation must stay intact and
    /// readable beside it, since it still describes the file while the WAL
    /// holds frames: so the new pages go only into the slots it does not
    /// select, the header into the slot it does not use (the number is
    /// chosen for that), and never into both. An older projection is
    /// replaced. Made durable unless the policy is `off`. Returns the
    /// generation number, or `None` when the mirror cannot carry one
    /// (none, another page size, or the snapshot is not projected).
    pub fn write_projected(&mut self, snap: &Snapshot) -> Result<Option<u64>, StoreError> {
        let projected = snap
            .fingerprint
            .wal_session
            .is_some_and(|w| w.projected != 0);
        let Some(m) = &mut self.mirror else {
            return Ok(None);
        };
        if !projected
            || m.header.page_size != snap.page_size
            || snap.pages.first().map(|p| p.0) != Some(1)
            || snap
                .pages
                .iter()
                .any(|(_, d)| d.len() != snap.page_size as usize)
        {
            return Ok(None);
        }
        let base = m.header.generation;
        // Generation G lives in header slot G mod 2: skip a number rather
        // than land on the base's slot.
        if (m.max_generation_seen + 1) % 2 == base % 2 {
            m.max_generation_seen += 1;
        }
        let written = self.write_incremental(snap);
        // The mirror now holds the projection; the next update must start
        // from the base again, which a rescan (skipping projections) gives.
        self.mirror = None;
        let generation = written?;
        if generation == base {
            // Nothing differs from the base, not even the fingerprint;
            // cannot happen for a projected snapshot, but never claim one.
            return Ok(None);
        }
        self.projected_slot = Some(generation % 2);
        self.unsynced = true;
        if self.policy != SyncPolicy::Off {
            self.sync()?;
        }
        Ok(Some(generation))
    }

    /// Writes `header`, which selects the mirror's page slots, as the new
    /// generation: a header-only update. `durable`: fsync it at once
    /// (unless the policy is `off`).
    fn rewrite_header(&mut self, header: Header, durable: bool) -> Result<Option<u64>, StoreError> {
        if let Err(e) = self.write_header_bytes(&header) {
            self.mirror = None;
            return Err(e.into());
        }
        self.stats.flag_updates += 1;
        let m = self.mirror.as_mut().expect("checked above");
        m.header = header;
        m.max_generation_seen = header.generation;
        self.unsynced = true;
        if durable && self.policy != SyncPolicy::Off {
            if self.policy == SyncPolicy::Periodic {
                self.write_header_into_other_slot(&header)?;
            }
            self.sync()?;
        }
        Ok(Some(header.generation))
    }

    fn write_slot(&mut self, off: u64, image: &[u8], trailer: &Trailer) -> io::Result<()> {
        let mut buf = Vec::with_capacity(image.len() + SLOT_TRAILER_SIZE);
        buf.extend_from_slice(image);
        buf.extend_from_slice(&trailer.encode());
        self.file.write_all_at(&buf, off)?;
        self.stats.pages_written += 1;
        self.stats.bytes_written += buf.len() as u64;
        Ok(())
    }

    /// Zeroes a slot's trailer, so it fails verification.
    fn invalidate_slot(
        &mut self,
        data_offset: u64,
        ps: u32,
        index: u32,
        which: u8,
    ) -> io::Result<()> {
        let trailer_at = slot_offset(data_offset, ps, index, which) + ps as u64;
        self.file
            .write_all_at(&[0u8; SLOT_TRAILER_SIZE], trailer_at)
    }

    fn write_header(&mut self, h: &Header) -> io::Result<()> {
        self.write_header_bytes(h)?;
        self.stats.generations_written += 1;
        Ok(())
    }

    /// Writes `h` into the header slot its generation does not use, over
    /// the generation before it. Done before an fsync the durability rule
    /// asks for under `periodic` (section 6.2 of docs/dwr-format.md): once
    /// that fsync is done, no header older than `h` is left on disk, so no
    /// later power loss can bring back a generation from before the change.
    /// Without it, the generation before `h` stays durable in the other
    /// slot, and the unsynced updates after `h` overwrite `h`'s own slot: a
    /// power loss that tears one of them and loses the rest leaves that
    /// older generation as the newest valid one.
    fn write_header_into_other_slot(&mut self, h: &Header) -> io::Result<()> {
        self.write_header_at(h, 1 - h.generation % 2)
    }

    fn write_header_bytes(&mut self, h: &Header) -> io::Result<()> {
        self.write_header_at(h, h.generation % 2)
    }

    fn write_header_at(&mut self, h: &Header, which: u64) -> io::Result<()> {
        let bytes = h.encode();
        self.file.write_all_at(&bytes, header_offset(which))?;
        self.stats.bytes_written += bytes.len() as u64;
        Ok(())
    }

    fn write_incremental(&mut self, snap: &Snapshot) -> Result<u64, StoreError> {
        let mut m = self
            .mirror
            .take()
            .expect("incremental write needs a mirror");
        let generation = m.max_generation_seen + 1;
        let assignment = assign_indexes(&m.slots.iter().map(|s| s.pgno).collect::<Vec<_>>(), snap);
        let ps = snap.page_size;
        let mut digest = Digest::default();
        let mut new_slots = Vec::with_capacity(assignment.len());
        let mut old_slots: Vec<Option<Slot>> = m.slots.drain(..).map(Some).collect();
        let result = (|| -> io::Result<()> {
            for (index, &snap_pos) in assignment.iter().enumerate() {
                let (pgno, image) = &snap.pages[snap_pos];
                let old = old_slots.get_mut(index).and_then(Option::take);
                let unchanged = old.as_ref().is_some_and(|o| {
                    o.pgno == *pgno
                        && o.image == *image
                        && o.other_generation <= o.trailer.generation
                });
                let slot = if unchanged {
                    old.unwrap()
                } else {
                    // Write into the slot the previous generation does not select.
                    let which = old.as_ref().map_or(0, |o| 1 - o.current);
                    let trailer = Trailer::seal(image, *pgno, generation, index as u32);
                    let off = slot_offset(m.header.data_offset, ps, index as u32, which);
                    self.write_slot(off, image, &trailer)?;
                    if old.is_none() {
                        // A newly used index: its slot B may hold bytes of an
                        // older layout; make sure it can never be selected.
                        self.invalidate_slot(m.header.data_offset, ps, index as u32, 1)?;
                    }
                    Slot {
                        pgno: *pgno,
                        current: which,
                        trailer,
                        other_generation: old.map_or(0, |o| o.trailer.generation),
                        image: image.clone(),
                    }
                };
                digest.add(&slot.trailer);
                new_slots.push(slot);
            }
            Ok(())
        })();
        if let Err(e) = result {
            // The file may now hold slots newer than the mirror knows of;
            // drop the mirror so the next update rescans.
            return Err(e.into());
        }
        let header = Header {
            generation,
            page_size: ps,
            page_count: new_slots.len() as u32,
            data_offset: m.header.data_offset,
            digest: digest.finish(),
            flags: snap.flags,
            fingerprint: snap.fingerprint,
        };
        let same = Header {
            generation: m.header.generation,
            ..header
        };
        if same == m.header {
            // Nothing changed (a rolled-back transaction, a rewrite of the
            // same bytes): the current generation already describes the file.
            let generation = m.header.generation;
            self.mirror = Some(Mirror::new(m.header, new_slots, m.max_generation_seen));
            return Ok(generation);
        }
        self.write_header(&header)?;
        self.mirror = Some(Mirror::new(header, new_slots, generation));
        Ok(generation)
    }

    fn write_full(&mut self, snap: &Snapshot) -> Result<u64, StoreError> {
        let len = self.file.len()?;
        // Scan when there is no mirror, so a valid generation already in the
        // file is neither overwritten nor outnumbered.
        let (keep_region, max_seen) = match &self.mirror {
            Some(m) => (
                Some((m.header.data_offset, m.header.region_end())),
                m.max_generation_seen,
            ),
            None => {
                let scan = self.scan()?;
                let region = scan
                    .generations
                    .first()
                    .map(|g| (g.header.data_offset, g.header.region_end()));
                (region, scan.max_generation_seen)
            }
        };
        let ps = snap.page_size;
        let needed = 2 * snap.pages.len() as u64 * slot_size(ps);
        let data_offset = match keep_region {
            None => {
                self.file.set_len(0)?;
                FIRST_DATA_OFFSET
            }
            Some((start, _)) if FIRST_DATA_OFFSET + needed <= start => FIRST_DATA_OFFSET,
            Some((_, end)) => round_up(end.max(len), HEADER_STRIDE),
        };
        let generation = max_seen + 1;
        let mut digest = Digest::default();
        let mut slots = Vec::with_capacity(snap.pages.len());
        for (index, (pgno, image)) in snap.pages.iter().enumerate() {
            let trailer = Trailer::seal(image, *pgno, generation, index as u32);
            self.write_slot(
                slot_offset(data_offset, ps, index as u32, 0),
                image,
                &trailer,
            )?;
            // Slot B may hold an older region's bytes.
            self.invalidate_slot(data_offset, ps, index as u32, 1)?;
            digest.add(&trailer);
            slots.push(Slot {
                pgno: *pgno,
                current: 0,
                trailer,
                other_generation: 0,
                image: image.clone(),
            });
        }
        let header = Header {
            generation,
            page_size: ps,
            page_count: slots.len() as u32,
            data_offset,
            digest: digest.finish(),
            flags: snap.flags,
            fingerprint: snap.fingerprint,
        };
        self.write_header(&header)?;
        if data_offset == FIRST_DATA_OFFSET && keep_region.is_some() {
            // The region moved back to the front: once the new generation is
            // durable, the old region is dead weight.
            self.sync()?;
            self.file.set_len(header.region_end())?;
        }
        self.mirror = Some(Mirror::new(header, slots, generation));
        Ok(generation)
    }

    /// Counts an update and fsyncs when the policy says so. `invisible`:
    /// the update changed something the staleness rule cannot see once page
    /// 1 is destroyed (see [`change_is_invisible`]); under `periodic` it is
    /// made durable at once, so that a power loss can only lose updates
    /// whose absence the rule detects.
    fn after_update(&mut self, invisible: bool) -> io::Result<()> {
        self.updates_since_sync += 1;
        self.unsynced = true;
        if invisible && self.policy == SyncPolicy::Periodic {
            if let Some(m) = &self.mirror {
                let header = m.header;
                self.write_header_into_other_slot(&header)?;
            }
        }
        let due = match self.policy {
            SyncPolicy::Off => false,
            SyncPolicy::Full => true,
            SyncPolicy::Periodic => {
                invisible
                    || self.updates_since_sync >= PERIODIC_UPDATES
                    || self.last_sync.elapsed() >= PERIODIC_INTERVAL
            }
        };
        if due && self.defer_sync {
            self.sync_due = true;
        } else if due {
            self.sync()?;
        }
        Ok(())
    }

    /// Holds back (or stops holding back) the fsyncs the policy asks for;
    /// see [`Store::take_sync_due`].
    pub fn set_defer_sync(&mut self, defer: bool) {
        self.defer_sync = defer;
    }

    /// Whether an fsync was held back since the last call; the caller must
    /// then run [`Store::sync`] before the update is relied on.
    pub fn take_sync_due(&mut self) -> bool {
        std::mem::take(&mut self.sync_due)
    }

    /// fsyncs the `-dwr` now.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync()?;
        self.stats.fsyncs += 1;
        self.updates_since_sync = 0;
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Called when the database file is closed: under the periodic policy,
    /// pending updates are made durable.
    pub fn sync_if_pending(&mut self) -> io::Result<()> {
        if self.policy != SyncPolicy::Off && self.unsynced {
            self.sync()?;
        }
        Ok(())
    }

    /// Forgets the mirror, e.g. after an error left the file in an unknown state.
    pub fn forget_mirror(&mut self) {
        self.mirror = None;
    }
}

/// True when `snap` differs from the mirror's generation in a way that
/// leaves no trace once page 1 (and the schema pages) are destroyed: a
/// schema page, the page set, page 1 outside the fields the staleness rule
/// checks against the file (`format::page1_change_is_visible`), the first
/// freelist trunk, or a newly set `WAL_AHEAD`. A copy that lost such an
/// update to a power loss could be restored as if it were current.
fn change_is_invisible(mirror: Option<&Mirror>, snap: &Snapshot) -> bool {
    let Some(m) = mirror else {
        return true;
    };
    if m.header.page_size != snap.page_size
        || m.slots.len() != snap.pages.len()
        || m.header.fingerprint.freelist_trunk != snap.fingerprint.freelist_trunk
        || (snap.flags & FLAG_WAL_AHEAD != 0 && !m.header.wal_ahead())
    {
        return true;
    }
    snap.pages.iter().any(|(pgno, image)| {
        let Some(&i) = m.by_pgno.get(pgno) else {
            return true;
        };
        let old = &m.slots[i].image;
        if *pgno == 1 {
            !format::page1_change_is_visible(old, image)
        } else {
            old != image
        }
    })
}

/// Decides which snapshot page goes to which index. Pages keep their index
/// when they stay protected, so an unchanged page is never rewritten; new
/// pages fill the holes left by pages that left the schema, and the live
/// indexes stay dense (`0..snap.pages.len()`). Returns, per index, the
/// position of its page in `snap.pages`.
fn assign_indexes(current: &[u32], snap: &Snapshot) -> Vec<usize> {
    let n = snap.pages.len();
    let position: HashMap<u32, usize> = snap
        .pages
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (*p, i))
        .collect();
    let mut assignment: Vec<Option<usize>> = vec![None; n];
    let mut placed = vec![false; n];
    for (index, pgno) in current.iter().enumerate().take(n) {
        if let Some(&pos) = position.get(pgno) {
            assignment[index] = Some(pos);
            placed[pos] = true;
        }
    }
    let mut unplaced = (0..n).filter(|&pos| !placed[pos]);
    assignment
        .into_iter()
        .map(|a| a.unwrap_or_else(|| unplaced.next().expect("as many pages as indexes")))
        .collect()
}

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

/// Re-exported for the recovery module's checks.
pub use format::valid_page_size;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dwr::format::FLAG_PENDING;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("metadwr-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    fn page(ps: u32, seed: u8) -> Vec<u8> {
        (0..ps)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn snap(ps: u32, pages: &[(u32, u8)], counter: u32) -> Snapshot {
        Snapshot {
            page_size: ps,
            pages: pages.iter().map(|&(p, s)| (p, page(ps, s))).collect(),
            fingerprint: Fingerprint {
                change_counter: counter,
                ..Default::default()
            },
            flags: 0,
        }
    }

    fn newest(store: &Store) -> Generation {
        store
            .scan()
            .unwrap()
            .generations
            .into_iter()
            .next()
            .unwrap()
    }

    fn projected(ps: u32, pages: &[(u32, u8)], counter: u32, frame: u32) -> Snapshot {
        let mut s = snap(ps, pages, counter);
        s.fingerprint.wal_session = Some(format::WalSession {
            sequence: 0,
            salt1: 11,
            salt2: 22,
            complete: true,
            backfilled: 0,
            projected: frame,
        });
        s
    }

    #[test]
    fn a_projection_keeps_its_base_readable_and_is_retired_by_the_next_update() {
        let path = tmp("projected");
        let mut s = Store::open(&path, true, SyncPolicy::Full).unwrap();
        // Base generation 1 in slot 1; a second one (2, slot 0) so the
        // numbering has to skip to keep the base's slot.
        s.write_generation(&snap(512, &[(1, 1), (2, 2), (5, 5)], 1))
            .unwrap();
        let base = s
            .write_generation(&snap(512, &[(1, 3), (2, 2), (5, 5)], 2))
            .unwrap();
        let w = s
            .write_projected(&projected(512, &[(1, 4), (2, 2), (5, 6), (7, 7)], 3, 40))
            .unwrap()
            .expect("a projection over the base");
        assert_ne!(w % 2, base % 2, "the base's header slot is kept");
        assert!(w > base);
        // Both are complete: the planner sees the projection first...
        let scan = s.scan().unwrap();
        let gens: Vec<u64> = scan
            .generations
            .iter()
            .map(|g| g.header.generation)
            .collect();
        assert_eq!(gens, vec![w, base]);
        assert_eq!(scan.generations[0].header.projected_through(), Some(40));
        assert_eq!(scan.generations[0].page(7).unwrap(), page(512, 7));
        assert_eq!(scan.generations[1].page(1).unwrap(), page(512, 3));
        assert_eq!(scan.generations[1].page(5).unwrap(), page(512, 5));
        // ...while every update starts from the base, and retires it.
        let mut other = Store::open(&path, false, SyncPolicy::Full).unwrap();
        other.refresh().unwrap();
        assert_eq!(other.mirror_generation(), Some(base));
        assert!(other.has_projected());
        let next = other
            .write_generation(&snap(512, &[(1, 8), (2, 2), (5, 5)], 4))
            .unwrap();
        assert_eq!(other.stats().projections_retired, 1);
        assert!(next > w);
        let scan = other.scan().unwrap();
        assert!(scan
            .generations
            .iter()
            .all(|g| g.header.projected_through().is_none()));
        assert_eq!(scan.generations[0].header.generation, next);
        assert_eq!(scan.generations[0].page(1).unwrap(), page(512, 8));
        // A second projection replaces the first, still over the base.
        let mut s = Store::open(&path, false, SyncPolicy::Full).unwrap();
        s.refresh().unwrap();
        let base = s.mirror_generation().unwrap();
        let w1 = s
            .write_projected(&projected(512, &[(1, 9), (2, 2), (5, 5)], 5, 50))
            .unwrap()
            .unwrap();
        s.refresh().unwrap();
        let w2 = s
            .write_projected(&projected(512, &[(1, 10), (2, 2), (5, 5)], 6, 60))
            .unwrap()
            .unwrap();
        assert!(w2 > w1);
        let scan = s.scan().unwrap();
        let gens: Vec<u64> = scan
            .generations
            .iter()
            .map(|g| g.header.generation)
            .collect();
        assert_eq!(gens, vec![w2, base]);
        assert_eq!(scan.generations[0].page(1).unwrap(), page(512, 10));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn round_trip_and_incremental_writes_only_changed_pages() {
        let path = tmp("incr");
        let mut s = Store::open(&path, true, SyncPolicy::Off).unwrap();
        let g1 = s
            .write_generation(&snap(512, &[(1, 1), (2, 2), (5, 5)], 1))
            .unwrap();
        assert_eq!(s.stats().pages_written, 3);
        let g2 = s
            .write_generation(&snap(512, &[(1, 9), (2, 2), (5, 5)], 2))
            .unwrap();
        assert_eq!(g2, g1 + 1);
        assert_eq!(s.stats().pages_written, 4, "only page 1 changed");
        let g = newest(&Store::open(&path, false, SyncPolicy::Off).unwrap());
        assert_eq!(g.header.generation, g2);
        assert_eq!(g.header.fingerprint.change_counter, 2);
        assert_eq!(g.page(1).unwrap(), page(512, 9).as_slice());
        assert_eq!(g.page(5).unwrap(), page(512, 5).as_slice());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn page1_fast_path_matches_the_general_path() {
        let path = tmp("fast");
        let mut s = Store::open(&path, true, SyncPolicy::Off).unwrap();
        s.write_generation(&snap(512, &[(1, 1), (2, 2), (9, 9)], 1))
            .unwrap();
        let before = s.stats();
        let fp = Fingerprint {
            change_counter: 2,
            ..Default::default()
        };
        let g = s
            .write_page1(&page(512, 7), fp, 0)
            .unwrap()
            .expect("fast path applies");
        assert_eq!(s.stats().pages_written - before.pages_written, 1);
        // Unchanged page 1, new fingerprint: only a header.
        let fp3 = Fingerprint {
            change_counter: 3,
            ..Default::default()
        };
        let g3 = s.write_page1(&page(512, 7), fp3, 0).unwrap().unwrap();
        assert_eq!(
            (g3, s.stats().pages_written - before.pages_written),
            (g + 1, 1)
        );
        let read = newest(&Store::open(&path, false, SyncPolicy::Off).unwrap());
        assert_eq!(read.header.generation, g3);
        assert_eq!(read.header.fingerprint.change_counter, 3);
        assert_eq!(read.page(1).unwrap(), page(512, 7).as_slice());
        assert_eq!(read.page(9).unwrap(), page(512, 9).as_slice());
        // Then the general path continues from it.
        s.write_generation(&snap(512, &[(1, 8), (2, 2), (9, 10)], 4))
            .unwrap();
        let read = newest(&Store::open(&path, false, SyncPolicy::Off).unwrap());
        assert_eq!(read.page(1).unwrap(), page(512, 8).as_slice());
        assert_eq!(read.page(9).unwrap(), page(512, 10).as_slice());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn peek_page1_sees_another_writers_newest_page1() {
        let path = tmp("peek");
        let mut a = Store::open(&path, true, SyncPolicy::Off).unwrap();
        a.write_generation(&snap(512, &[(1, 1), (2, 2)], 1))
            .unwrap();
        let b = Store::open(&path, false, SyncPolicy::Off).unwrap();
        assert_eq!(b.peek_page1().unwrap().unwrap(), page(512, 1));
        a.write_generation(&snap(512, &[(1, 5), (2, 2)], 2))
            .unwrap();
        assert_eq!(b.peek_page1().unwrap().unwrap(), page(512, 5));
        std::fs::write(&path, b"junk").unwrap();
        assert_eq!(b.peek_page1().unwrap(), None);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn unchanged_snapshot_writes_nothing() {
        let path = tmp("same");
        let mut s = Store::open(&path, true, SyncPolicy::Full).unwrap();
        let g = s
            .write_generation(&snap(512, &[(1, 1), (2, 2)], 1))
            .unwrap();
        let before = s.stats();
        assert_eq!(
            s.write_generation(&snap(512, &[(1, 1), (2, 2)], 1))
                .unwrap(),
            g
        );
        let after = s.stats();
        assert_eq!(
            (after.bytes_written, after.fsyncs),
            (before.bytes_written, before.fsyncs)
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn protected_set_can_grow_shrink_and_change_page_size() {
        let path = tmp("grow");
        let mut s = Store::open(&path, true, SyncPolicy::Off).unwrap();
        s.write_generation(&snap(1024, &[(1, 1), (2, 2)], 1))
            .unwrap();
        s.write_generation(&snap(1024, &[(1, 3), (2, 2), (7, 7), (8, 8)], 2))
            .unwrap();
        // Growing by many pages at once (a big schema created in one go).
        let many: Vec<(u32, u8)> = (1..=300).map(|p| (p, p as u8)).collect();
        s.write_generation(&snap(1024, &many, 3)).unwrap();
        let g = newest(&Store::open(&path, false, SyncPolicy::Off).unwrap());
        assert_eq!(g.pages.len(), 300);
        assert_eq!(g.page(300).unwrap(), page(1024, 300u32 as u8).as_slice());
        s.write_generation(&snap(1024, &[(1, 4), (8, 8)], 3))
            .unwrap();
        let g = newest(&s);
        assert_eq!(g.pages.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 8]);
        s.write_generation(&snap(4096, &[(1, 5), (3, 3)], 4))
            .unwrap();
        let g = newest(&s);
        assert_eq!(g.header.page_size, 4096);
        assert_eq!(g.page(3).unwrap(), page(4096, 3).as_slice());
        // And back again: the region returns to the front when it fits.
        s.write_generation(&snap(512, &[(1, 6)], 5)).unwrap();
        let g = newest(&Store::open(&path, false, SyncPolicy::Off).unwrap());
        assert_eq!(g.header.data_offset, FIRST_DATA_OFFSET);
        assert_eq!(g.page(1).unwrap(), page(512, 6).as_slice());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn torn_update_leaves_previous_generation() {
        let path = tmp("torn");
        let mut s = Store::open(&path, true, SyncPolicy::Off).unwrap();
        s.write_generation(&snap(512, &[(1, 1), (2, 2)], 1))
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        s.write_generation(&snap(512, &[(1, 7), (2, 8)], 2))
            .unwrap();
        let after = std::fs::read(&path).unwrap();
        // Replay the update byte range by byte range: every prefix of the
        // changed bytes must still yield a complete generation.
        let changed: Vec<usize> = (0..after.len())
            .filter(|&i| before.get(i) != Some(&after[i]))
            .collect();
        for cut in (0..changed.len()).step_by(97).chain([changed.len()]) {
            let mut img = before.clone();
            img.resize(after.len(), 0);
            for &i in &changed[..cut] {
                img[i] = after[i];
            }
            std::fs::write(&path, &img).unwrap();
            let g = newest(&Store::open(&path, false, SyncPolicy::Off).unwrap());
            let expect = if g.header.fingerprint.change_counter == 1 {
                (1, 2)
            } else {
                (7, 8)
            };
            assert_eq!(
                g.page(1).unwrap(),
                page(512, expect.0).as_slice(),
                "cut {cut}"
            );
            assert_eq!(
                g.page(2).unwrap(),
                page(512, expect.1).as_slice(),
                "cut {cut}"
            );
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn dropped_slot_write_invalidates_the_newer_header_only() {
        let path = tmp("dropped");
        let mut s = Store::open(&path, true, SyncPolicy::Off).unwrap();
        s.write_generation(&snap(512, &[(1, 1), (2, 2)], 1))
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        s.write_generation(&snap(512, &[(1, 1), (2, 9)], 2))
            .unwrap();
        let mut after = std::fs::read(&path).unwrap();
        // Power loss kept the header write but dropped the page write.
        let off = slot_offset(FIRST_DATA_OFFSET, 512, 1, 1) as usize;
        let end = off + slot_size(512) as usize;
        after[off..end].copy_from_slice(
            &before
                .get(off..end)
                .map_or(vec![0; end - off], |b| b.to_vec()),
        );
        std::fs::write(&path, &after).unwrap();
        let scan = Store::open(&path, false, SyncPolicy::Off)
            .unwrap()
            .scan()
            .unwrap();
        assert_eq!(scan.generations.len(), 1);
        assert_eq!(scan.generations[0].header.fingerprint.change_counter, 1);
        assert_eq!(
            scan.generations[0].page(2).unwrap(),
            page(512, 2).as_slice()
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn leftover_slots_from_a_crashed_update_are_never_selected() {
        let path = tmp("leftover");
        let mut s = Store::open(&path, true, SyncPolicy::Off).unwrap();
        s.write_generation(&snap(512, &[(1, 1), (2, 2), (3, 3)], 1))
            .unwrap();
        let good = std::fs::read(&path).unwrap();
        // A crashed update wrote page 3's slot but not the header.
        s.write_generation(&snap(512, &[(1, 1), (2, 2), (3, 99)], 2))
            .unwrap();
        let mut img = std::fs::read(&path).unwrap();
        img[..1024].copy_from_slice(&good[..1024]);
        std::fs::write(&path, &img).unwrap();
        // A new process changes only page 2; page 3 must come back as seed 3.
        let mut s = Store::open(&path, false, SyncPolicy::Off).unwrap();
        s.refresh().unwrap();
        s.write_generation(&snap(512, &[(1, 1), (2, 50), (3, 3)], 3))
            .unwrap();
        let g = newest(&Store::open(&path, false, SyncPolicy::Off).unwrap());
        assert_eq!(g.header.fingerprint.change_counter, 3);
        assert_eq!(g.page(3).unwrap(), page(512, 3).as_slice());
        assert_eq!(g.page(2).unwrap(), page(512, 50).as_slice());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn refresh_picks_up_another_writer() {
        let path = tmp("refresh");
        let mut a = Store::open(&path, true, SyncPolicy::Off).unwrap();
        a.write_generation(&snap(512, &[(1, 1), (2, 2)], 1))
            .unwrap();
        let mut b = Store::open(&path, false, SyncPolicy::Off).unwrap();
        b.refresh().unwrap();
        b.write_generation(&snap(512, &[(1, 5), (2, 2)], 2))
            .unwrap();
        a.refresh().unwrap();
        a.write_generation(&snap(512, &[(1, 6), (2, 2)], 3))
            .unwrap();
        let g = newest(&a);
        assert_eq!(g.header.fingerprint.change_counter, 3);
        assert_eq!(g.page(1).unwrap(), page(512, 6).as_slice());
        let _ = std::fs::remove_file(&path);
    }

    /// A snapshot of page 1 only, `seed`'s image with `counter` as its
    /// change counter: what a row commit changes.
    fn counter_snap(seed: u8, counter: u32) -> Snapshot {
        let mut s = snap(512, &[(1, seed)], counter);
        s.pages[0].1[24..28].copy_from_slice(&counter.to_be_bytes());
        s
    }

    #[test]
    fn page_filter_set_answers_like_a_set() {
        let pages = [1u32, 2, 1025, 4096, 70_000, u32::MAX];
        let set: PageFilterSet = pages.iter().copied().collect();
        assert_eq!(set.len(), pages.len());
        for p in 0..5000u32 {
            assert_eq!(set.contains(p), pages.contains(&p), "page {p}");
        }
        assert!(set.contains(70_000) && set.contains(u32::MAX) && !set.contains(70_001));
        let mut set = set;
        set.clear();
        assert!(set.is_empty() && !set.contains(1));
    }

    #[test]
    fn periodic_policy_syncs_once_per_hundred_updates() {
        let path = tmp("sync");
        let mut s = Store::open(&path, true, SyncPolicy::Periodic).unwrap();
        // The first generation is new, hence synced at once.
        s.write_generation(&counter_snap(1, 0)).unwrap();
        assert_eq!(s.stats().fsyncs, 1);
        for i in 1..=250u32 {
            s.write_generation(&counter_snap(1, i)).unwrap();
        }
        assert_eq!(s.stats().fsyncs, 3);
        s.set_policy(SyncPolicy::Full);
        s.write_generation(&counter_snap(1, 999)).unwrap();
        assert_eq!(s.stats().fsyncs, 4);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn periodic_policy_syncs_at_once_what_the_staleness_rule_cannot_see() {
        let path = tmp("sync-invisible");
        let mut s = Store::open(&path, true, SyncPolicy::Periodic).unwrap();
        s.write_generation(&counter_snap(1, 0)).unwrap();
        let base = s.stats().fsyncs;
        // The schema cookie (offset 40) and a schema page each change state
        // that no evidence on disk reveals once page 1 is gone.
        let mut cookie = counter_snap(1, 1);
        cookie.pages[0].1[40] ^= 1;
        s.write_generation(&cookie).unwrap();
        assert_eq!(s.stats().fsyncs, base + 1);
        let mut with_schema_page = cookie.clone();
        with_schema_page.pages.push((2, page(512, 9)));
        s.write_generation(&with_schema_page).unwrap();
        assert_eq!(s.stats().fsyncs, base + 2);
        // A new first freelist trunk, too.
        let mut trunk = with_schema_page.clone();
        trunk.fingerprint.freelist_trunk = 7;
        s.write_generation(&trunk).unwrap();
        assert_eq!(s.stats().fsyncs, base + 3);
        // A change counter alone waits for the periodic sync.
        let mut counter = trunk.clone();
        counter.pages[0].1[24..28].copy_from_slice(&5u32.to_be_bytes());
        s.write_generation(&counter).unwrap();
        assert_eq!(s.stats().fsyncs, base + 3);
        // A header-only confirmation never forces one; setting WAL_AHEAD does.
        assert!(s.rewrite_flags(FLAG_PENDING, 0).unwrap().is_some());
        assert!(s.rewrite_flags(0, FLAG_PENDING).unwrap().is_some());
        assert_eq!(s.stats().fsyncs, base + 3);
        assert_eq!(s.stats().flag_updates, 2);
        assert!(s.rewrite_flags(FLAG_WAL_AHEAD, 0).unwrap().is_some());
        assert_eq!(s.stats().fsyncs, base + 4);
        assert!(s.rewrite_flags(FLAG_WAL_AHEAD, 0).unwrap().is_none());
        // Closing syncs what is left.
        assert!(s.rewrite_flags(0, FLAG_WAL_AHEAD).unwrap().is_some());
        s.sync_if_pending().unwrap();
        assert_eq!(s.stats().fsyncs, base + 5);
        let _ = std::fs::remove_file(&path);
    }

    /// An in-memory `-dwr` that remembers what an fsync made durable and
    /// the writes since, so that a test can build every image a power loss
    /// could leave.
    #[derive(Clone, Default)]
    struct CrashFile(std::sync::Arc<std::sync::Mutex<CrashState>>);

    #[derive(Default)]
    struct CrashState {
        durable: Vec<u8>,
        current: Vec<u8>,
        /// Writes since the last fsync: (offset, bytes).
        unsynced: Vec<(u64, Vec<u8>)>,
    }

    fn put(image: &mut Vec<u8>, off: u64, bytes: &[u8]) {
        let end = off as usize + bytes.len();
        if image.len() < end {
            image.resize(end, 0);
        }
        image[off as usize..end].copy_from_slice(bytes);
    }

    impl DwrFile for CrashFile {
        fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
            let st = self.0.lock().unwrap();
            let from = (off as usize).min(st.current.len());
            let n = buf.len().min(st.current.len() - from);
            buf[..n].copy_from_slice(&st.current[from..from + n]);
            Ok(n)
        }
        fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
            let mut st = self.0.lock().unwrap();
            put(&mut st.current, off, buf);
            st.unsynced.push((off, buf.to_vec()));
            Ok(())
        }
        fn len(&self) -> io::Result<u64> {
            Ok(self.0.lock().unwrap().current.len() as u64)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            let mut st = self.0.lock().unwrap();
            st.current.resize(len as usize, 0);
            let image = st.current.clone();
            // Not modelled as a crash point: tests here never shrink.
            st.durable = image;
            st.unsynced.clear();
            Ok(())
        }
        fn sync(&self) -> io::Result<()> {
            let mut st = self.0.lock().unwrap();
            st.durable = st.current.clone();
            st.unsynced.clear();
            Ok(())
        }
        fn is_linked(&self) -> bool {
            true
        }
    }

    impl DwrOpener for CrashFile {
        fn open(&self, _: &Path, _: OpenMode) -> io::Result<Box<dyn DwrFile>> {
            Ok(Box::new(self.clone()))
        }
    }

    /// Finding F5: under `periodic`, a generation fsynced by the durability
    /// rule (a schema change) could be lost to a later power loss after
    /// all: the updates after it overwrite its header slot without an
    /// fsync, while the other slot still durably holds the generation
    /// before the change. Every image a power loss can leave (each unsynced
    /// write lost, kept, or torn) must hold no valid generation older than
    /// the fsynced one.
    #[test]
    fn no_power_loss_brings_back_a_generation_from_before_a_durable_change() {
        let file = CrashFile::default();
        let path = Path::new("crash.db-dwr");
        let mut s = Store::open_with(&file, path, OpenMode::Create, SyncPolicy::Periodic).unwrap();
        s.write_generation(&counter_snap(1, 1)).unwrap();
        for i in 2..6 {
            s.write_generation(&counter_snap(1, i)).unwrap();
        }
        let fsyncs = s.stats().fsyncs;
        // A schema change (the cookie) is made durable at once.
        let mut schema = counter_snap(1, 6);
        schema.pages[0].1[40] ^= 1;
        let durable = s.write_generation(&schema).unwrap();
        assert_eq!(s.stats().fsyncs, fsyncs + 1);
        // Row commits after it: page 1's counter only, no fsync.
        for i in 7..10u32 {
            let mut row = schema.clone();
            row.pages[0].1[24..28].copy_from_slice(&i.to_be_bytes());
            row.fingerprint.change_counter = i;
            s.write_generation(&row).unwrap();
        }
        assert_eq!(s.stats().fsyncs, fsyncs + 1);
        let st = file.0.lock().unwrap();
        let writes = st.unsynced.clone();
        assert!(writes.len() >= 6, "the row commits wrote slots and headers");
        // 0: lost, 1: kept, 2: torn (its first half kept, the rest zeroed).
        let mut images = 0;
        for pattern in 0..3u32.pow(writes.len() as u32) {
            let mut image = st.durable.clone();
            let mut p = pattern;
            for (off, bytes) in &writes {
                match p % 3 {
                    1 => put(&mut image, *off, bytes),
                    2 => {
                        let mut torn = bytes.clone();
                        torn[bytes.len() / 2..].fill(0);
                        put(&mut image, *off, &torn);
                    }
                    _ => {}
                }
                p /= 3;
            }
            let crashed = CrashFile::default();
            crashed.0.lock().unwrap().current = image;
            let reader =
                Store::open_with(&crashed, path, OpenMode::ReadOnly, SyncPolicy::Off).unwrap();
            for g in reader.scan().unwrap().generations {
                assert!(
                    g.header.generation >= durable,
                    "pattern {pattern}: generation {} is valid after a power loss, older than \
                     the durable schema change {durable}",
                    g.header.generation
                );
            }
            images += 1;
        }
        assert!(images >= 729);
    }

    #[test]
    fn a_flag_update_keeps_the_pages_and_the_previous_header() {
        let path = tmp("flags");
        let mut s = Store::open(&path, true, SyncPolicy::Off).unwrap();
        s.write_generation(&snap(512, &[(1, 1), (2, 2)], 1))
            .unwrap();
        let mut pending = snap(512, &[(1, 3), (2, 2)], 2);
        pending.flags = FLAG_PENDING;
        let g = s.write_generation(&pending).unwrap();
        let confirmed = s.rewrite_flags(0, FLAG_PENDING).unwrap().unwrap();
        assert_eq!(confirmed, g + 1);
        let scan = Store::open(&path, false, SyncPolicy::Off)
            .unwrap()
            .scan()
            .unwrap();
        let gens = &scan.generations;
        assert_eq!(gens.len(), 2);
        assert_eq!(gens[0].header.generation, confirmed);
        assert!(!gens[0].header.is_pending());
        assert_eq!(gens[1].header.generation, g);
        assert!(gens[1].header.is_pending());
        assert_eq!(gens[0].pages, gens[1].pages);
        assert_eq!(gens[0].page(1).unwrap(), page(512, 3).as_slice());
        // The next update writes around the confirmed generation.
        s.write_generation(&snap(512, &[(1, 4), (2, 2)], 3))
            .unwrap();
        let g = newest(&Store::open(&path, false, SyncPolicy::Off).unwrap());
        assert_eq!(g.page(1).unwrap(), page(512, 4).as_slice());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn garbage_files_scan_without_generations() {
        let path = tmp("garbage");
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in [0usize, 1, 255, 256, 1024, 5000, 70000] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            std::fs::write(&path, &bytes).unwrap();
            let scan = Store::open(&path, false, SyncPolicy::Off)
                .unwrap()
                .scan()
                .unwrap();
            assert!(scan.generations.is_empty());
            assert_eq!(scan.rejected.len(), 2);
        }
        let _ = std::fs::remove_file(&path);
    }
}
