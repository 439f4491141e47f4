//! What SQLite's lock calls and its WAL index mean, decoded from the raw
//! integers the VFS receives, with no FFI: lock levels of the database
//! file ([`LockLevel`]), result codes ([`Rc`]), shared-memory lock calls
//! ([`ShmLock`]) and the few WAL-index fields the monitor reads
//! ([`wal_index`]).
//!
//! The shim decodes each `xLock`, `xUnlock` and `xShmLock` into these types
//! and hands them to the monitor, which decides what they mean for the copy
//! (a commit boundary, a WAL write starting or ending, a checkpoint).

use std::fmt;

/// A lock level of the database file, as passed to `xLock` and `xUnlock`
/// (`SQLITE_LOCK_*`). Ordered: a higher level includes the lower ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum LockLevel {
    None = 0,
    Shared = 1,
    Reserved = 2,
    /// Never passed by SQLite to a VFS (the unix VFS takes it on the way
    /// to EXCLUSIVE); decoded so that every valid level has a name.
    Pending = 3,
    Exclusive = 4,
}

impl LockLevel {
    /// The level SQLite passed, or `None` for a value that names no level.
    #[inline(always)]
    pub fn from_raw(level: i32) -> Option<LockLevel> {
        Some(match level {
            0 => LockLevel::None,
            1 => LockLevel::Shared,
            2 => LockLevel::Reserved,
            3 => LockLevel::Pending,
            4 => LockLevel::Exclusive,
            _ => return None,
        })
    }

    /// The `SQLITE_LOCK_*` value.
    #[inline(always)]
    pub fn raw(self) -> i32 {
        self as i32
    }
}

/// An SQLite result code from the underlying file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rc(pub i32);

impl Rc {
    pub const OK: Rc = Rc(0);
    pub const BUSY: Rc = Rc(5);
    pub const IOERR: Rc = Rc(10);

    pub fn is_ok(self) -> bool {
        self == Rc::OK
    }
}

impl fmt::Display for Rc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Shared-memory lock slots of the WAL index (`WAL_*_LOCK` in SQLite's
/// `wal.c`).
pub mod slot {
    /// Writers of the WAL hold this lock while they append frames. So does
    /// a connection rebuilding the WAL index (recovery), which appends
    /// nothing: [`super::wal_index::initialised`] tells the two apart.
    pub const WRITE: i32 = 0;
    /// WAL checkpoints hold this lock while they copy pages into the
    /// database file.
    pub const CHECKPOINT: i32 = 1;
    /// The first of the read-mark locks; a reader holds one of them
    /// (shared) for the whole of a read transaction.
    pub const READ_0: i32 = 3;
}

/// `xShmLock` flags (`SQLITE_SHM_*`).
const SHM_UNLOCK: i32 = 1;
const SHM_LOCK: i32 = 2;
const SHM_SHARED: i32 = 4;
const SHM_EXCLUSIVE: i32 = 8;

/// Shared or exclusive, of a shared-memory lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmMode {
    Shared,
    Exclusive,
}

/// One `xShmLock` call: `n` slots from `offset`, taken or released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmLock {
    pub offset: i32,
    pub n: i32,
    /// Taken (`SQLITE_SHM_LOCK`), else released (`SQLITE_SHM_UNLOCK`).
    pub take: bool,
    pub mode: ShmMode,
}

impl ShmLock {
    /// The call SQLite made, or `None` for flags that are not exactly one
    /// of lock/unlock and one of shared/exclusive (nothing SQLite sends;
    /// such a call means nothing to the monitor).
    #[inline]
    pub fn decode(offset: i32, n: i32, flags: i32) -> Option<ShmLock> {
        let (take, mode) = match flags {
            f if f == SHM_LOCK | SHM_SHARED => (true, ShmMode::Shared),
            f if f == SHM_LOCK | SHM_EXCLUSIVE => (true, ShmMode::Exclusive),
            f if f == SHM_UNLOCK | SHM_SHARED => (false, ShmMode::Shared),
            f if f == SHM_UNLOCK | SHM_EXCLUSIVE => (false, ShmMode::Exclusive),
            _ => return None,
        };
        Some(ShmLock {
            offset,
            n,
            take,
            mode,
        })
    }

    /// The flags of this call.
    pub fn flags(self) -> i32 {
        (if self.take { SHM_LOCK } else { SHM_UNLOCK })
            | match self.mode {
                ShmMode::Shared => SHM_SHARED,
                ShmMode::Exclusive => SHM_EXCLUSIVE,
            }
    }

    /// Taking (`take`) or releasing the checkpoint lock alone, exclusive:
    /// what the monitor asks for to keep checkpointers out.
    pub fn checkpoint(take: bool) -> ShmLock {
        ShmLock {
            offset: slot::CHECKPOINT,
            n: 1,
            take,
            mode: ShmMode::Exclusive,
        }
    }

    /// Taking (`take`) or releasing the WAL write lock, exclusive: what
    /// the monitor asks for to keep writers out while it projects.
    pub fn write(take: bool) -> ShmLock {
        ShmLock {
            offset: slot::WRITE,
            n: 1,
            take,
            mode: ShmMode::Exclusive,
        }
    }

    fn covers(self, slot: i32) -> bool {
        self.offset <= slot && slot < self.offset.saturating_add(self.n)
    }

    fn is(self, take: bool, mode: ShmMode) -> bool {
        self.take == take && self.mode == mode
    }

    /// Whether [`crate::protect::Monitor::before_shm_lock`] has anything
    /// to do for this call: the VFS skips the call (and its panic guard)
    /// otherwise, which is most of the locks a WAL transaction takes.
    #[inline]
    pub fn matters_before(self) -> bool {
        self.releases_write_lock() || self.releases_checkpoint_lock()
    }

    /// Whether [`crate::protect::Monitor::shm_locked`] has anything to do
    /// after this call succeeded.
    #[inline]
    pub fn matters_after(self) -> bool {
        self.takes_read_mark() || self.takes_write_lock() || self.takes_checkpoint_lock()
    }

    /// The WAL write lock is being released: a WAL write transaction (or a
    /// RESTART/TRUNCATE checkpoint, or a recovery of the index) ends.
    pub fn releases_write_lock(self) -> bool {
        self.is(false, ShmMode::Exclusive) && self.offset == slot::WRITE
    }

    /// The checkpoint lock is being released (alone or with others): a
    /// checkpoint ends.
    pub fn releases_checkpoint_lock(self) -> bool {
        self.is(false, ShmMode::Exclusive) && self.covers(slot::CHECKPOINT)
    }

    /// A read-mark lock was taken shared: a WAL read transaction starts.
    pub fn takes_read_mark(self) -> bool {
        self.is(true, ShmMode::Shared) && self.offset >= slot::READ_0
    }

    /// The WAL write lock was taken.
    pub fn takes_write_lock(self) -> bool {
        self.is(true, ShmMode::Exclusive) && self.offset == slot::WRITE
    }

    /// The checkpoint lock was taken (alone or with others): this
    /// connection checkpoints, or rebuilds the WAL index.
    pub fn takes_checkpoint_lock(self) -> bool {
        self.is(true, ShmMode::Exclusive) && self.covers(slot::CHECKPOINT)
    }
}

/// The fields of region 0 of the WAL index the monitor reads: the two
/// copies of the WAL-index header (`WalIndexHdr`, 48 bytes each) and
/// `nBackfill`, the first field of the checkpoint information after them.
/// Integers are in native byte order.
pub mod wal_index {
    use crate::protect::DbIo;

    /// Size of one copy of the WAL-index header.
    pub const HEADER: usize = 48;
    /// Both copies of the header.
    pub const HEADERS: usize = 2 * HEADER;
    /// `isInit`: non-zero once the index is built.
    pub const IS_INIT: usize = 12;
    /// `mxFrame`: the frames the WAL holds.
    pub const MAX_FRAME: usize = 16;
    /// `nBackfill`: the frames a checkpoint has copied into the database
    /// file.
    pub const BACKFILL: usize = HEADERS;

    /// True unless the index whose two header copies are `headers` is yet
    /// to be built (the copies differ, or `isInit` is 0): a connection that
    /// takes the WAL write lock then is recovering the index, not about to
    /// append frames.
    pub fn headers_initialised(headers: &[u8; HEADERS]) -> bool {
        headers[IS_INIT] != 0 && headers[..HEADER] == headers[HEADER..]
    }

    /// The number of frames the WAL index says the log holds, `None` when
    /// no WAL index is mapped.
    pub fn max_frame(io: &mut dyn DbIo) -> Option<u32> {
        io.wal_index_u32(MAX_FRAME)
    }

    /// Whether every frame of the WAL is in the database file (`nBackfill`
    /// ≥ `mxFrame`); `None` when no WAL index is mapped.
    pub fn backfill_complete(io: &mut dyn DbIo) -> Option<bool> {
        let max_frame = max_frame(io)?;
        Some(io.wal_index_u32(BACKFILL)? >= max_frame)
    }

    pub use crate::recovery::Backfill;

    /// Offset of the salts (copied from the WAL header, so big-endian) in a
    /// copy of the WAL-index header.
    const SALTS: usize = 32;

    /// The [`Backfill`] of a WAL index whose first bytes are `shm` (the
    /// bytes of the `-shm` file, which are the bytes SQLite maps, so a
    /// connection that has not mapped the index yet sees them too); `None`
    /// when the index is not built (a connection rebuilds it before it
    /// reads, and sets `nBackfill` to 0 then) or `shm` is too short.
    pub fn backfill_of(shm: &[u8]) -> Option<Backfill> {
        let headers: &[u8; HEADERS] = shm.get(..HEADERS)?.try_into().ok()?;
        if !headers_initialised(headers) {
            return None;
        }
        let be = |at: usize| u32::from_be_bytes(shm[at..at + 4].try_into().unwrap());
        let frames = u32::from_ne_bytes(shm.get(BACKFILL..BACKFILL + 4)?.try_into().ok()?);
        Some(Backfill {
            salt1: be(SALTS),
            salt2: be(SALTS + 4),
            frames,
        })
    }

    /// [`headers_initialised`] of the mapped index; with no mapping known,
    /// true (assume a writer).
    pub fn initialised(io: &mut dyn DbIo) -> bool {
        io.wal_index_headers()
            .is_none_or(|h| headers_initialised(&h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_levels_round_trip_and_order() {
        for raw in 0..=4 {
            assert_eq!(LockLevel::from_raw(raw).unwrap().raw(), raw);
        }
        assert_eq!(LockLevel::from_raw(5), None);
        assert_eq!(LockLevel::from_raw(-1), None);
        assert!(LockLevel::None < LockLevel::Shared);
        assert!(LockLevel::Shared < LockLevel::Reserved);
        assert!(LockLevel::Reserved < LockLevel::Exclusive);
    }

    #[test]
    fn shm_flags_decode_and_encode() {
        // SQLite's values: SQLITE_SHM_UNLOCK 1, LOCK 2, SHARED 4, EXCLUSIVE 8.
        let l = ShmLock::decode(3, 1, 2 | 4).unwrap();
        assert_eq!((l.take, l.mode), (true, ShmMode::Shared));
        let l = ShmLock::decode(0, 1, 1 | 8).unwrap();
        assert_eq!((l.take, l.mode), (false, ShmMode::Exclusive));
        for flags in [2 | 4, 2 | 8, 1 | 4, 1 | 8] {
            assert_eq!(ShmLock::decode(0, 1, flags).unwrap().flags(), flags);
        }
        for flags in [0, 1, 2, 4, 8, 1 | 2 | 8, 2 | 4 | 8, 16 | 2 | 8] {
            assert_eq!(ShmLock::decode(0, 1, flags), None, "flags {flags}");
        }
        assert_eq!(ShmLock::checkpoint(true).flags(), 2 | 8);
        assert_eq!(ShmLock::checkpoint(false).flags(), 1 | 8);
        assert!(ShmLock::checkpoint(true).takes_checkpoint_lock());
        assert!(ShmLock::checkpoint(false).releases_checkpoint_lock());
    }

    /// The calls SQLite's wal.c makes, and what each means.
    #[test]
    fn shm_calls_are_classified_as_sqlite_uses_them() {
        let lock = |offset, n, flags| ShmLock::decode(offset, n, flags).unwrap();
        let (lock_sh, lock_ex, unlock_sh, unlock_ex) = (2 | 4, 2 | 8, 1 | 4, 1 | 8);
        // The write lock of a WAL write transaction.
        let w = lock(0, 1, lock_ex);
        assert!(w.takes_write_lock() && !w.takes_checkpoint_lock() && !w.takes_read_mark());
        let w = lock(0, 1, unlock_ex);
        assert!(w.releases_write_lock() && !w.releases_checkpoint_lock());
        // The checkpoint lock of a checkpoint.
        let c = lock(1, 1, lock_ex);
        assert!(c.takes_checkpoint_lock() && !c.takes_write_lock());
        let c = lock(1, 1, unlock_ex);
        assert!(c.releases_checkpoint_lock() && !c.releases_write_lock());
        // Recovery of the WAL index takes every lock but the write lock
        // (1..8) or, holding the checkpoint lock already, from 2: the
        // first covers the checkpoint lock.
        assert!(lock(1, 7, lock_ex).takes_checkpoint_lock());
        assert!(lock(1, 7, unlock_ex).releases_checkpoint_lock());
        assert!(!lock(2, 6, lock_ex).takes_checkpoint_lock());
        // Read marks: shared starts a read transaction; the exclusive lock
        // a writer takes to set a mark does not.
        for mark in 3..8 {
            assert!(lock(mark, 1, lock_sh).takes_read_mark());
            assert!(!lock(mark, 1, lock_ex).takes_read_mark());
            assert!(!lock(mark, 1, unlock_sh).takes_read_mark());
        }
        // Shared locks below the read marks (a shared checkpoint lock
        // guards snapshot recovery) mean nothing here.
        let s = lock(1, 1, lock_sh);
        assert!(!s.takes_checkpoint_lock() && !s.takes_read_mark());
        let s = lock(0, 1, unlock_sh);
        assert!(!s.releases_write_lock());
    }

    #[test]
    fn wal_index_header_is_initialised_only_when_built_and_consistent() {
        let mut h = [0u8; wal_index::HEADERS];
        assert!(!wal_index::headers_initialised(&h), "isInit 0");
        h[wal_index::IS_INIT] = 1;
        assert!(!wal_index::headers_initialised(&h), "copies differ");
        h[wal_index::HEADER + wal_index::IS_INIT] = 1;
        assert!(wal_index::headers_initialised(&h));
        h[wal_index::MAX_FRAME] = 7;
        assert!(!wal_index::headers_initialised(&h), "copies differ");
        h[wal_index::HEADER + wal_index::MAX_FRAME] = 7;
        assert!(wal_index::headers_initialised(&h));
    }

    #[test]
    fn backfill_is_read_from_a_built_index_only() {
        let mut shm = vec![0u8; wal_index::BACKFILL + 4];
        for copy in [0, wal_index::HEADER] {
            shm[copy + wal_index::IS_INIT] = 1;
            // The salts, as the WAL header has them (big-endian).
            shm[copy + 32..copy + 40].copy_from_slice(&[0, 0, 1, 2, 0xa0, 0, 0, 3]);
        }
        shm[wal_index::BACKFILL..].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(
            wal_index::backfill_of(&shm),
            Some(wal_index::Backfill {
                salt1: 0x0102,
                salt2: 0xa000_0003,
                frames: 9
            })
        );
        assert_eq!(wal_index::backfill_of(&shm[..wal_index::BACKFILL]), None);
        shm[wal_index::HEADER + 33] ^= 1;
        assert_eq!(wal_index::backfill_of(&shm), None, "copies differ");
        shm[wal_index::HEADER + 33] ^= 1;
        shm[wal_index::IS_INIT] = 0;
        shm[wal_index::HEADER + wal_index::IS_INIT] = 0;
        assert_eq!(wal_index::backfill_of(&shm), None, "not built");
    }
}
