//! Healing on the read path.
//!
//! Before any read or memory-mapped fetch reaches the file,
//! [`Monitor::read_is_watched`] decides from the offset and length alone
//! whether the bytes can matter: page 1, a page the protected set's filter
//! may hold, or a read spanning pages (never SQLite's, but programs call
//! xRead with any offset and length; each page is then judged on its own).
//! Nearly every read is not, and the shim hands it on untouched. A watched
//! read passes through [`Monitor::on_read`] (a fetch through
//! [`Monitor::fetch_is_suspicious`]), which only compares bytes already in
//! memory: the page as read against the copy's image, and a structural check
//! of the B-tree page. Reads add no system call.
//!
//! A read is *suspicious* when the page is structurally damaged, or when it
//! differs from the copy although the copy claims to describe the current
//! state of the file: page 1 with the copy's change counter, or any protected
//! page while the last page 1 read matched the copy exactly ("trusted").
//! Only then does the slow path run: re-read the `-dwr` in case another
//! connection updated it, then ask the recovery planner, which applies the
//! staleness rule against the file. If the planner restores this page, the
//! reader gets the copy's image and the file is repaired as soon as an
//! exclusive lock can be had; otherwise the damaged bytes are passed on as
//! plain SQLite would, and the verdict is remembered so the slow path does
//! not run again for the same bytes.

use super::recover::{escalate, Disk};
use super::{Event, LockLevel, Monitor, Protection};
use crate::dbfile::{self, DbHeader};
use crate::dwr::format::crc32c;
use crate::protect::DbIo;
use crate::recovery::{self, Plan};
use std::collections::HashSet;

/// Bytes of page 1 that SQLite reads at the start of every rollback-mode
/// transaction: the change counter and the three fields after it.
const COUNTER_OFFSET: u64 = 24;
const COUNTER_LEN: usize = 16;

#[derive(Default)]
pub(super) struct ReadState {
    /// The last page 1 SQLite read equals the copy's page 1, so the copy
    /// describes the file and any other difference is damage.
    trusted: bool,
    /// The mirror could not be loaded (no valid generation); do not retry
    /// on every read.
    mirror_unavailable: bool,
    /// (page, CRC-32C of the bytes) the planner declined to heal.
    declined: HashSet<(u32, u32)>,
    /// Pages were served from the copy and the file still holds the damage.
    repair_pending: bool,
    /// What the page 1 just classified asks of the copy, acted on once
    /// that read is in hand.
    page1_asks: Page1Asks,
}

/// What reading page 1 asked for: at most one thing, set when page 1 is
/// classified and taken (acted on or dropped) by the end of that read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Page1Asks {
    #[default]
    Nothing,
    /// A healthy page 1 newer than the copy was read (or the file was
    /// replaced by one with the same page 1): refresh the copy.
    Refresh,
    /// Page 1 equals the copy's, whose newest generation is `PENDING` and
    /// not this connection's: its writer stopped between the commit point
    /// and the confirmation. SQLite rolls a hot journal back before it
    /// reads page 1, so the commit did happen: confirm it.
    Confirm,
}

impl ReadState {
    pub(super) fn forget_trust(&mut self) {
        self.trusted = false;
    }

    /// A new generation was written: earlier verdicts were about the old one.
    pub(super) fn copy_refreshed(&mut self) {
        self.declined.clear();
        self.mirror_unavailable = false;
    }
}

/// What the fast path concluded about a read.
enum Verdict {
    Fine,
    Suspicious(u32),
}

impl Monitor {
    /// The read path's first test, made before a read or fetch of `len`
    /// (> 0) bytes at `offset` reaches the file: false when the bytes
    /// cannot matter to the copy, which is nearly always (one bit of the
    /// protected set's filter). Inlined into `xRead` and `xFetch`, which
    /// then hand the call on without looking at the bytes. Page 1, the
    /// change counter's page, is always watched, and so is a read that
    /// ends in another page than it starts in (SQLite never makes one;
    /// programs calling xRead themselves do), whose pages
    /// [`Self::on_read`] sorts one by one.
    #[inline(always)]
    pub fn read_is_watched(&self, offset: u64, len: usize) -> bool {
        if !self.is_protected() {
            return false;
        }
        let ps = self.page_size;
        if ps == 0 {
            // No copy in memory yet: the first read loads it (SQLite's is
            // of page 1, another program's may be of any page). If it
            // cannot be loaded, only the header read at open is watched,
            // as a copy written since may turn up there.
            return !self.read.mirror_unavailable || offset < 100;
        }
        if offset < ps as u64 {
            return true;
        }
        // Page sizes are powers of two: a shift, not a division.
        let shift = ps.trailing_zeros();
        let first = offset >> shift;
        // Wrapping: an offset near u64::MAX (a negative i64) lands here
        // too, and the read fails in the file.
        if offset.wrapping_add(len as u64 - 1) >> shift != first {
            return true;
        }
        self.protected.may_contain(first as u32 + 1)
    }

    /// The read of the change counter and the fields after it that starts
    /// every rollback-mode transaction. Kept apart from [`Self::on_read`]
    /// because it is frequent and cheap.
    #[inline(always)]
    pub fn is_counter_read(offset: u64, len: usize) -> bool {
        offset == COUNTER_OFFSET && len == COUNTER_LEN
    }

    /// SQLite reads the change counter and the fields after it at the start
    /// of every rollback-mode transaction: equal to the copy's, the copy
    /// describes the file.
    /// Returns false when the bytes differ from the copy's (then see
    /// [`Self::on_counter_mismatch`]).
    #[inline(always)]
    pub fn note_counter_read(&mut self, data: &[u8]) -> bool {
        if let Protection::On(store) = &self.protection {
            if let (Some(copy), Ok(read)) = (store.mirror_counter(), <&[u8; 16]>::try_from(data)) {
                self.read.trusted = copy == read;
                return self.read.trusted;
            }
        }
        self.note_counter_read_slow(data)
    }

    /// Called with the bytes of a read at `offset` that
    /// [`Self::read_is_watched`] let through, successful or `short` (past
    /// the end of the file, the rest zero-filled); replaces the bytes of
    /// each damaged protected page it covers with the copy's when the copy
    /// provably belongs to the file, and leaves every other byte alone.
    pub fn on_read(&mut self, io: &mut dyn DbIo, offset: u64, data: &mut [u8], short: bool) {
        if !self.is_protected() {
            return;
        }
        // SQLite's own reads: one whole page, or the header at the start
        // of page 1, or page 1 at the page size its header gives (a VACUUM
        // changed it, the copy does not know yet).
        let ps = self.page_size as u64;
        let len = data.len() as u64;
        let page1 = offset == 0
            && len >= 100
            && (len < ps || DbHeader::parse(data).is_ok_and(|h| h.page_size as u64 == len));
        if !short && ps != 0 && (len == ps && offset & (ps - 1) == 0 || page1) {
            self.on_page_read(io, offset, data, true);
        } else {
            self.on_span_read(io, offset, data, short);
        }
    }

    /// A read of one page at `offset`, or of page 1 from its start (100
    /// bytes or more). Returns whether the bytes were replaced by the copy's.
    /// `extras`: act on what reading page 1 asked for (refresh or confirm
    /// the copy), which needs page 1 as SQLite itself read it.
    fn on_page_read(
        &mut self,
        io: &mut dyn DbIo,
        offset: u64,
        data: &mut [u8],
        extras: bool,
    ) -> bool {
        let healed = match self.classify(offset, data) {
            Verdict::Suspicious(pgno) => self.heal(io, pgno, offset, data),
            Verdict::Fine => false,
        };
        // What classify_page1 asks for needs page 1 in hand.
        if offset != 0 {
            return healed;
        }
        let asks = std::mem::take(&mut self.read.page1_asks);
        if !extras {
            return healed;
        }
        match asks {
            Page1Asks::Nothing => {}
            Page1Asks::Refresh => self.refresh_while_reading(io, data),
            Page1Asks::Confirm => self.confirm_while_reading(io, data),
        }
        healed
    }

    /// Any other read: several pages, part of a page, past the end of the
    /// file. Each protected page it covers (and page 1) is judged on its
    /// own, as if SQLite had read it alone; the bytes of the others are
    /// left as the file gave them.
    #[cold]
    #[inline(never)]
    fn on_span_read(&mut self, io: &mut dyn DbIo, offset: u64, data: &mut [u8], short: bool) {
        if self.page_size == 0 {
            // Learn the page size from the copy.
            self.ensure_mirror();
        }
        let ps = self.page_size as u64;
        if ps == 0 {
            return;
        }
        let mut end = offset.saturating_add(data.len() as u64);
        if short {
            // Past the end of the file the base VFS zero-filled: nothing
            // there to heal.
            match io.size() {
                Ok(size) => end = end.min(size),
                Err(_) => return,
            }
        }
        let mut at = offset;
        let mut healed = false;
        while at < end {
            let page_start = at & !(ps - 1);
            let page_end = page_start.saturating_add(ps);
            let chunk_end = page_end.min(end);
            let Ok(pgno) = u32::try_from(page_start / ps + 1) else {
                return;
            };
            let range = (at - offset) as usize..(chunk_end - offset) as usize;
            at = chunk_end;
            if pgno != 1 && !self.protected.contains(pgno) {
                continue;
            }
            let chunk = &mut data[range];
            let from = chunk_end - chunk.len() as u64;
            if healed {
                // A page healed earlier in this read may have repaired the
                // file, this page too: read it again rather than judge the
                // bytes from before the repair.
                let mut fresh = vec![0u8; chunk.len()];
                if io.read(&mut fresh, from).is_ok() {
                    chunk.copy_from_slice(&fresh);
                }
            }
            let whole = from == page_start && chunk_end == page_end;
            let header = pgno == 1 && from == 0 && chunk.len() >= 100;
            healed |= if whole || header {
                self.on_page_read(io, from, chunk, true)
            } else {
                self.on_partial_read(io, pgno, from - page_start, chunk)
            };
        }
    }

    /// Part of protected page `pgno` (or page 1), `data` read at `skip`
    /// bytes into it: bytes equal to the copy's are fine; otherwise the
    /// whole page is read and judged, and if the copy is served for it the
    /// matching part of the copy's image replaces `data`.
    fn on_partial_read(
        &mut self,
        io: &mut dyn DbIo,
        pgno: u32,
        skip: u64,
        data: &mut [u8],
    ) -> bool {
        let ps = self.page_size as usize;
        let skip = skip as usize;
        let part = skip..skip + data.len();
        let Some(copy) = self.ensure_mirror().and_then(|s| s.mirror_page(pgno)) else {
            return false;
        };
        if copy.get(part.clone()) == Some(&*data) {
            return false;
        }
        let page_start = (pgno as u64 - 1) * ps as u64;
        let mut page = vec![0u8; ps];
        // The page as SQLite would read it; if it no longer holds the
        // bytes just read, a writer got in between: pass them on.
        if io.read(&mut page, page_start).is_err() || page[part.clone()] != *data {
            return false;
        }
        // Not SQLite's read of page 1: no refresh or confirmation from it.
        let healed = self.on_page_read(io, page_start, &mut page, false);
        if healed {
            data.copy_from_slice(&page[part]);
        }
        healed
    }

    /// The change counter read ([`Self::note_counter_read`]) gave bytes
    /// other than the copy's: page 1 may be damaged, judge it as any
    /// partial read of page 1.
    pub fn on_counter_mismatch(&mut self, io: &mut dyn DbIo, data: &mut [u8]) {
        if self.is_protected() && self.page_size != 0 {
            self.on_partial_read(io, 1, COUNTER_OFFSET, data);
        }
    }

    /// Takes the lock that keeps writers of the database file out, without
    /// waiting: RESERVED in rollback mode (SQLite holds SHARED while it
    /// reads), the checkpoint lock in WAL mode (checkpointers are the only
    /// writers of the file). Returns false if it cannot be had.
    ///
    /// `page1` is the page 1 just read: a WAL database whose WAL index is
    /// not mapped yet (its first read, before SQLite opens the WAL) gives
    /// no lock while a WAL file exists, since RESERVED does not keep
    /// checkpointers out.
    fn lock_out_writers(&mut self, io: &mut dyn DbIo, page1: &[u8]) -> bool {
        if self.shm_mapped {
            // Not while this connection checkpoints: it holds the lock.
            !self.checkpointing() && io.checkpoint_lock(true).is_ok()
        } else if page1.get(18) == Some(&2) && super::wal_exists(&self.db_path) {
            false
        } else {
            self.lock_level == LockLevel::Shared && io.lock(LockLevel::Reserved).is_ok()
        }
    }

    fn let_writers_in(&mut self, io: &mut dyn DbIo) {
        if self.shm_mapped {
            let _ = io.checkpoint_lock(false);
        } else {
            let _ = io.unlock(LockLevel::Shared);
        }
    }

    /// In WAL mode checkpointers write the database file under the
    /// checkpoint lock alone; the planner should not read the file
    /// half-way through one. Returns `None` when the lock cannot be had at once,
    /// else whether it was taken here (and must be released).
    fn hold_checkpoint_lock(&mut self, io: &mut dyn DbIo) -> Option<bool> {
        if self.checkpointing() {
            return Some(false);
        }
        if !self.shm_mapped {
            // Page 1 of a WAL database is read before SQLite opens the WAL
            // (it tells whether to), so there is no checkpoint lock to take
            // yet. The plan is only read here; the repair that writes
            // re-plans under EXCLUSIVE or the checkpoint lock.
            return Some(false);
        }
        io.checkpoint_lock(true).ok().map(|()| true)
    }

    #[cold]
    fn confirm_while_reading(&mut self, io: &mut dyn DbIo, page1: &[u8]) {
        if self.readonly || !self.is_protected() || !self.lock_out_writers(io, page1) {
            return;
        }
        let still_pending = match &mut self.protection {
            Protection::On(store) => {
                store.refresh().is_ok()
                    && store.mirror_header().is_some_and(|h| h.is_pending())
                    && store.mirror_page(1) == Some(page1)
            }
            Protection::Off { .. } => false,
        };
        if still_pending {
            self.update_flags(false, 0, crate::dwr::format::FLAG_PENDING);
        }
        self.let_writers_in(io);
    }

    /// The file moved past the copy (a power loss lost its newest
    /// generation, or a program without metadwr wrote): refresh the copy
    /// now rather than at this connection's next write, so that damage
    /// meeting the file before then finds a current copy. Runs only if the
    /// lock that keeps writers out can be had without waiting.
    #[cold]
    fn refresh_while_reading(&mut self, io: &mut dyn DbIo, page1: &[u8]) {
        if self.readonly || !self.is_protected() {
            return;
        }
        let Protection::On(store) = &mut self.protection else {
            return;
        };
        // Another connection may already have written a matching copy: a
        // peek at page 1 tells, without loading the whole copy (the mirror
        // reloads when it is next needed: a suspicious read or a refresh).
        if matches!(store.peek_page1(), Ok(Some(p)) if p == page1) && self.copy_is_of_this_file() {
            return;
        }
        if !self.lock_out_writers(io, page1) {
            return;
        }
        self.changes.need_walk();
        if let Err(e) = self.refresh(io) {
            self.fail(&e);
        }
        self.let_writers_in(io);
    }

    /// For a memory-mapped fetch that [`Self::read_is_watched`] let
    /// through: true when the bytes must instead be read with xRead (which
    /// heals); the caller then declines the mapping.
    pub fn fetch_is_suspicious(&mut self, offset: u64, data: &[u8]) -> bool {
        if !self.is_protected() {
            return false;
        }
        let ps = self.page_size as u64;
        let suspicious = if ps != 0 && data.len() as u64 == ps && offset & (ps - 1) == 0 {
            // SQLite's own fetch: one page.
            matches!(self.classify(offset, data), Verdict::Suspicious(_))
        } else {
            self.span_fetch_is_suspicious(offset, data)
        };
        // A fetch cannot act on these (SQLite never maps page 1); the next
        // read of page 1 asks again.
        self.read.page1_asks = Page1Asks::Nothing;
        suspicious
    }

    /// A fetch of several pages or part of one: suspicious as soon as one
    /// protected page it covers (or page 1) is. Part of a page cannot be
    /// judged without the rest: it is suspicious when it differs from the
    /// copy, and the xRead it falls back to judges the whole page.
    #[cold]
    #[inline(never)]
    fn span_fetch_is_suspicious(&mut self, offset: u64, data: &[u8]) -> bool {
        if self.page_size == 0 {
            self.ensure_mirror();
        }
        let ps = self.page_size as u64;
        if ps == 0 {
            return false;
        }
        let end = offset.saturating_add(data.len() as u64);
        let mut at = offset;
        while at < end {
            let page_start = at & !(ps - 1);
            let page_end = page_start.saturating_add(ps);
            let chunk_end = page_end.min(end);
            let Ok(pgno) = u32::try_from(page_start / ps + 1) else {
                return false;
            };
            let chunk = &data[(at - offset) as usize..(chunk_end - offset) as usize];
            let from = at;
            at = chunk_end;
            if pgno != 1 && !self.protected.contains(pgno) {
                continue;
            }
            let whole = from == page_start && chunk_end == page_end;
            let header = pgno == 1 && from == 0 && chunk.len() >= 100;
            let suspicious = if whole || header {
                matches!(self.classify(from, chunk), Verdict::Suspicious(_))
            } else {
                let skip = (from - page_start) as usize;
                self.store_ref()
                    .and_then(|s| s.mirror_page(pgno))
                    .is_some_and(|copy| copy.get(skip..skip + chunk.len()) != Some(chunk))
            };
            if suspicious {
                return true;
            }
        }
        false
    }

    /// Sorts a read or fetch that [`Self::read_is_watched`] let through:
    /// page 1, a protected page, or (the filter's false positives) neither.
    /// The change counter read never comes here: the shim hands it to
    /// [`Self::note_counter_read`].
    fn classify(&mut self, offset: u64, data: &[u8]) -> Verdict {
        if offset == 0 && data.len() >= 100 {
            return self.classify_page1(data);
        }
        let ps = self.page_size as u64;
        if ps == 0 || data.len() as u64 != ps || offset & (ps - 1) != 0 {
            return Verdict::Fine;
        }
        let pgno = (offset >> ps.trailing_zeros()) as u32 + 1;
        if !self.protected.contains(pgno) {
            return Verdict::Fine;
        }
        self.classify_protected(pgno, data)
    }

    /// [`Self::note_counter_read`] when the copy is not in memory yet (or
    /// its first slot is not page 1).
    #[inline(never)]
    fn note_counter_read_slow(&mut self, data: &[u8]) -> bool {
        if let Some(copy) = self.ensure_mirror().and_then(|s| s.mirror_page1()) {
            self.read.trusted = copy.get(24..40) == Some(data);
            return self.read.trusted;
        }
        true
    }

    #[inline(never)]
    fn classify_protected(&mut self, pgno: u32, data: &[u8]) -> Verdict {
        let trusted = self.read.trusted;
        let Some(copy) = self.store_ref().and_then(|s| s.mirror_page(pgno)) else {
            return Verdict::Fine;
        };
        if copy == data {
            return Verdict::Fine;
        }
        // Overflow pages have no structure to check; interior and leaf
        // pages of the schema tree do.
        let btree_copy = matches!(copy[0], 0x05 | 0x0d);
        let usable = self.usable_size();
        let broken = btree_copy && dbfile::check_btree_page(pgno, data, usable, u32::MAX).is_err();
        if (broken || trusted) && !self.read.declined.contains(&(pgno, crc32c(data))) {
            Verdict::Suspicious(pgno)
        } else {
            Verdict::Fine
        }
    }

    #[inline(never)]
    fn classify_page1(&mut self, data: &[u8]) -> Verdict {
        let Some(copy) = self.ensure_mirror().and_then(|s| s.mirror_page1()) else {
            return Verdict::Fine;
        };
        let n = data.len().min(copy.len());
        if data[..n] == copy[..n] {
            let full_page = n == copy.len();
            if full_page && !self.copy_is_of_this_file() {
                // The file was replaced by one with the same page 1 (a
                // restored backup, say). The copy still names the old
                // file, so it can never be restored here: take a new one
                // while the file is healthy.
                if !self.readonly {
                    self.read.page1_asks = Page1Asks::Refresh;
                }
                self.read.trusted = false;
                return Verdict::Fine;
            }
            if full_page {
                self.read.trusted = true;
                let foreign_pending = !self.tentative
                    && self
                        .store_ref()
                        .and_then(|s| s.mirror_header())
                        .is_some_and(|h| h.is_pending());
                if foreign_pending {
                    self.read.page1_asks = Page1Asks::Confirm;
                }
            }
            return Verdict::Fine;
        }
        let counter = |p: &[u8]| u32::from_be_bytes(p[24..28].try_into().unwrap());
        let valid_for = |p: &[u8]| u32::from_be_bytes(p[92..96].try_into().unwrap());
        let broken = match DbHeader::parse(data) {
            Err(_) => true,
            Ok(h) => {
                n == copy.len()
                    && dbfile::check_btree_page(1, data, h.usable_size(), u32::MAX).is_err()
            }
        };
        // A legitimate writer moves the change counter and sets the
        // version-valid-for number to it. Bytes that differ from the copy
        // under the copy's own counter, or a counter that disagrees with
        // its valid-for number, are damage SQLite itself may not notice.
        let same_state_claimed = counter(data) == counter(copy)
            || (valid_for(data) == counter(copy) && counter(data) != valid_for(data));
        let full_page = n == copy.len();
        self.read.trusted = false;
        if (broken || same_state_claimed) && !self.read.declined.contains(&(1, crc32c(data))) {
            Verdict::Suspicious(1)
        } else {
            // A healthy, later page 1: the copy is behind the file.
            if !broken && full_page {
                self.read.page1_asks = Page1Asks::Refresh;
            }
            Verdict::Fine
        }
    }

    /// False when the copy in memory records another file's identity.
    fn copy_is_of_this_file(&self) -> bool {
        self.store_ref()
            .and_then(|s| s.mirror_header())
            .is_none_or(|h| h.fingerprint.identity.is_same_file(&self.identity))
    }

    fn store_ref(&self) -> Option<&crate::dwr::store::Store> {
        match &self.protection {
            Protection::On(s) => Some(s),
            Protection::Off { .. } => None,
        }
    }

    fn usable_size(&self) -> u32 {
        let reserved = self
            .store_ref()
            .and_then(|s| s.mirror_page(1))
            .map_or(0, |p| p[20] as u32);
        self.page_size - reserved
    }

    /// Loads the copy into memory the first time a read needs it (once per
    /// connection), and learns the page size and protected pages from it.
    fn ensure_mirror(&mut self) -> Option<&crate::dwr::store::Store> {
        let Protection::On(store) = &mut self.protection else {
            return None;
        };
        if store.mirror_generation().is_none() && !self.read.mirror_unavailable {
            if store.refresh().is_err() || store.mirror_generation().is_none() {
                self.read.mirror_unavailable = true;
            }
            self.adopt_mirror_geometry();
        }
        self.store_ref()
    }

    /// Takes page size and the protected set from the mirror when this
    /// connection has not taken a snapshot itself.
    fn adopt_mirror_geometry(&mut self) {
        let Protection::On(store) = &self.protection else {
            return;
        };
        if let Some(h) = store.mirror_header() {
            if self.page_size != h.page_size || !self.changes.dirty {
                self.page_size = h.page_size;
                self.protected = store.mirror_pages().collect();
            }
        }
    }

    /// The slow path: decide with the planner and serve the copy's image.
    /// Returns whether `data` now holds the copy's image.
    #[cold]
    fn heal(&mut self, io: &mut dyn DbIo, pgno: u32, offset: u64, data: &mut [u8]) -> bool {
        let crc = crc32c(data);
        let Protection::On(store) = &mut self.protection else {
            return false;
        };
        // Another connection may have updated the copy since it was loaded:
        // the page may match it now, or no longer belong to the schema at
        // all (a table dropped, its pages freed and reused).
        if store.refresh().is_ok() {
            if store
                .mirror_header()
                .is_some_and(|h| h.page_size != self.page_size)
            {
                // The copy has another page size than the one the read
                // was cut into pages with (another connection changed it
                // with VACUUM): take it, and judge the next read with it.
                self.adopt_mirror_geometry();
                return false;
            }
            let settled = match store.mirror_page(pgno) {
                Some(copy) => {
                    let start = if pgno == 1 { offset as usize } else { 0 };
                    copy.get(start..start + data.len()) == Some(&*data)
                }
                None => store.mirror_generation().is_some(),
            };
            if settled {
                self.adopt_mirror_geometry();
                return false;
            }
        }
        if self.lock_level == LockLevel::None || (!self.shm_mapped && self.copy_is_wal_mode()) {
            // No lock keeps writers out of these bytes (the header SQLite
            // reads at open, or page 1 of a WAL database before its WAL is
            // open): a read that raced a write can be torn. Damage reads
            // the same twice.
            let mut again = vec![0u8; data.len()];
            if io.read(&mut again, offset).is_err() || again != *data {
                return false;
            }
        }
        let Some(took_lock) = self.hold_checkpoint_lock(io) else {
            // A checkpoint is copying pages into the file: what is on disk
            // now says nothing; pass the bytes on and look again next time.
            return false;
        };
        let Protection::On(store) = &mut self.protection else {
            return false;
        };
        let scan = store.scan();
        let db_path = self.db_path.clone();
        let plan = scan
            .as_ref()
            .ok()
            .map(|scan| recovery::plan(&scan.generations, &mut Disk { io, path: &db_path }));
        if took_lock {
            let _ = io.checkpoint_lock(false);
        }
        let (Ok(scan), Some(plan)) = (scan, plan) else {
            return false;
        };
        match plan {
            Plan::Restore { generation, pages } if pages.contains(&pgno) => {
                let g = scan
                    .generations
                    .iter()
                    .find(|g| g.header.generation == generation)
                    .expect("the plan names a scanned generation");
                let image = g.page(pgno).expect("a restored page is in its generation");
                let start = if pgno == 1 { offset as usize } else { 0 };
                let Some(served) = image.get(start..start + data.len()) else {
                    // The read is not of this page at the copy's page
                    // size: nothing to serve it from.
                    return false;
                };
                data.copy_from_slice(served);
                let list = page_list(&pages);
                self.warn(&format!(
                    "metadwr: {}: damaged page{} {list} served from the copy (generation {generation})",
                    self.db_path.display(),
                    if pages.len() == 1 { "" } else { "s" },
                ));
                self.last_event = Some(Event::Healed {
                    pages,
                    generation,
                    repair: None,
                });
                self.read.repair_pending = true;
                if pgno == 1 {
                    self.read.trusted = data.len() == image.len();
                }
                self.try_repair_now(io);
                true
            }
            Plan::Refuse(why) => {
                if !matches!(self.last_event, Some(Event::Stale(_))) {
                    self.warn(&format!(
                        "metadwr: {}: page {pgno} is damaged but the copy cannot be used: {why}",
                        self.db_path.display()
                    ));
                }
                self.last_event = Some(Event::Stale(why));
                self.read.declined.insert((pgno, crc));
                false
            }
            _ => {
                self.read.declined.insert((pgno, crc));
                false
            }
        }
    }

    /// Repairs the file now if an exclusive lock can be had without
    /// waiting; otherwise the repair waits for SQLite's next write lock.
    fn try_repair_now(&mut self, io: &mut dyn DbIo) {
        if self.readonly {
            self.read.repair_pending = false;
            return;
        }
        let held = self.lock_level;
        if held == LockLevel::Exclusive {
            self.repair_if_pending(io);
        } else if held <= LockLevel::Shared && escalate(io, held).is_ok() {
            self.repair_if_pending(io);
            let _ = io.unlock(held);
        }
    }

    /// Writes the copy over the damaged pages (re-planned under the lock the
    /// caller holds: exclusive, or the WAL checkpoint lock).
    pub(super) fn repair_if_pending(&mut self, io: &mut dyn DbIo) {
        if !self.read.repair_pending || self.readonly {
            return;
        }
        self.read.repair_pending = false;
        let healed = match &self.last_event {
            Some(Event::Healed {
                pages, generation, ..
            }) => Some((pages.clone(), *generation)),
            _ => None,
        };
        let outcome = self.recover_exclusive(io);
        if let Err(e) = &outcome {
            self.warn(&format!(
                "metadwr: {}: could not repair the file: {e}",
                self.db_path.display()
            ));
        }
        match (healed, outcome) {
            // The reader was served the copy: say whether the file on disk
            // was repaired too.
            (Some((pages, generation)), outcome) => {
                self.last_event = Some(Event::Healed {
                    pages,
                    generation,
                    repair: Some(outcome),
                });
            }
            (None, Ok(report)) => self.last_event = Some(Event::Recovered(report)),
            (None, Err(_)) => {}
        }
    }

    /// The WAL checkpoint lock was taken: the checkpointer is the only
    /// writer of the database file, so a pending repair can run.
    pub(super) fn checkpoint_started(&mut self, io: &mut dyn DbIo) {
        self.repair_if_pending(io);
    }
}

pub(super) fn page_list(pages: &[u32]) -> String {
    pages
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
