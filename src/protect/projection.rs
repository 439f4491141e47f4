//! Projected generations: the copy as a complete checkpoint will leave the
//! file (docs/dwr-format.md §6.6).
//!
//! In WAL mode the copy follows the database file, which changes only at
//! checkpoints. When a connection closes while others keep the database
//! open, SQLite leaves the WAL for them; the copy then lacks the commits in
//! it, and once a program without metadwr (Litestream at shutdown, a
//! script, the shell) checkpoints them and deletes the WAL, nothing on
//! disk proves what they changed, and a restore must refuse.
//!
//! So the closing connection, holding the WAL write and checkpoint locks
//! (no frame can be added, none copied, meanwhile), reads the WAL's
//! committed frames, makes them durable, and writes the protected pages of
//! the file with those frames laid over it as a *projected* generation,
//! beside the generation that describes the file as it is. The planner
//! restores it only once the WAL holds no frame; any connection through
//! metadwr that writes a frame, checkpoints or updates the copy retires it
//! first.

use super::snapshot::take_full_snapshot;
use super::wal_locks::wal_index;
use super::{wal_path_for, DbIo, LockLevel, Monitor, Protection, Rc};
use crate::dwr::format::{WalSession, FLAG_WAL, FLAG_WAL_AHEAD};
use crate::dwr::store::SyncPolicy;
use crate::salvage::wal::{committed_frames, WalFrames};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

impl Monitor {
    /// The WAL index is about to be unmapped. Unless SQLite deleted the WAL
    /// (`delete`: this was the last connection, and it checkpointed it in
    /// full), the WAL outlives this connection: project the copy over it.
    pub fn before_shm_unmap(&mut self, io: &mut dyn DbIo, delete: bool) {
        if delete || self.readonly || !self.shm_mapped || self.policy == SyncPolicy::Off {
            return;
        }
        let wanted = match &self.protection {
            Protection::On(store) => store.mirror_header().is_some_and(|h| {
                h.wal_ahead() && h.fingerprint.identity.is_same_file(&self.identity)
            }),
            Protection::Off { .. } => false,
        };
        if !wanted || wal_index::max_frame(io).is_none_or(|n| n == 0) {
            return;
        }
        // Without waiting: a checkpoint or a write in progress will leave
        // the copy to whoever makes it; the planner then refuses as before.
        if io.checkpoint_lock(true).is_err() {
            return;
        }
        if io.wal_write_lock(true).is_ok() {
            if let Err(why) = self.project(io) {
                self.warn(&format!(
                    "metadwr: {}: the copy was not projected over the WAL: {why}",
                    self.db_path.display()
                ));
            }
            let _ = io.wal_write_lock(false);
        }
        let _ = io.checkpoint_lock(false);
    }

    /// Writes the projection; both WAL locks are held.
    fn project(&mut self, io: &mut dyn DbIo) -> Result<(), String> {
        let frames_in_index = wal_index::max_frame(io).unwrap_or(0);
        // Read past the VFS, as SQLite's own reads of the WAL are not: the
        // calls it makes stay exactly its own (what a VFS under metadwr
        // sees), and these reads change nothing.
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(wal_path_for(&self.db_path))
            .map_err(|e| format!("cannot open the WAL: {e}"))?;
        let mut header = [0u8; 32];
        wal.read_exact_at(&mut header, 0)
            .map_err(|e| format!("cannot read the WAL: {e}"))?;
        let Some(session) = WalSession::from_wal_header(&header) else {
            return Err("the WAL has no valid header".into());
        };
        let page_size = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let frames = committed_frames(&mut io::BufReader::new(&wal), page_size)
            .map_err(|e| format!("cannot read the WAL: {e}"))?;
        // The index and the file must agree on every frame: the WAL index
        // counts the frames of committed transactions, and so does the
        // scan. Anything else (frames the scan could not verify) is left
        // alone.
        if frames.frames != u64::from(frames_in_index) || frames.db_pages == 0 {
            return Err(format!(
                "the WAL index counts {frames_in_index} frames, the WAL {} committed ones",
                frames.frames
            ));
        }
        // The projection vouches for these frames: they must be on disk
        // before it is (under synchronous=NORMAL SQLite has not synced
        // them yet).
        wal.sync_data()
            .map_err(|e| format!("cannot sync the WAL: {e}"))?;
        let carried = match &self.protection {
            Protection::On(store) => store
                .mirror_header()
                .filter(|h| h.page_size == page_size)
                .map(|h| h.fingerprint.witnesses)
                .unwrap_or_default(),
            Protection::Off { .. } => return Ok(()),
        };
        let mut projected = Projected {
            io,
            wal: &wal,
            frames: &frames,
        };
        let Some(mut snap) = take_full_snapshot(&mut projected, self.identity, page_size, carried)?
        else {
            return Ok(());
        };
        if snap.flags & FLAG_WAL == 0 {
            return Err("the WAL's last commit leaves the database out of WAL mode".into());
        }
        snap.flags &= !FLAG_WAL_AHEAD;
        let last_frame = frames_in_index;
        snap.fingerprint.wal_session = Some(WalSession {
            complete: true,
            backfilled: last_frame,
            projected: last_frame,
            ..session
        });
        let Protection::On(store) = &mut self.protection else {
            return Ok(());
        };
        store
            .refresh()
            .and_then(|()| store.write_projected(&snap))
            .map_err(|e| format!("cannot write the -dwr: {e}"))?;
        Ok(())
    }
}

/// The database file with the WAL's committed frames laid over it, as a
/// complete checkpoint will leave it: what [`take_full_snapshot`] reads.
struct Projected<'a> {
    io: &'a mut dyn DbIo,
    wal: &'a std::fs::File,
    frames: &'a WalFrames,
}

impl DbIo for Projected<'_> {
    fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Rc> {
        let ps = u64::from(self.frames.page_size);
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let pgno = at / ps + 1;
            let within = at % ps;
            let n = ((ps - within) as usize).min(buf.len() - done);
            let part = &mut buf[done..done + n];
            match u32::try_from(pgno)
                .ok()
                .and_then(|p| self.frames.pages.get(&p))
            {
                Some(&image) => self
                    .wal
                    .read_exact_at(part, image + within)
                    .map_err(|_| Rc::IOERR)?,
                None if at >= self.size()? => part.fill(0),
                None => self.io.read(part, at)?,
            }
            done += n;
        }
        Ok(())
    }

    fn write(&mut self, _: &[u8], _: u64) -> Result<(), Rc> {
        Err(Rc::IOERR)
    }

    /// A complete checkpoint truncates the file to the size the last
    /// commit gives the database.
    fn size(&mut self) -> Result<u64, Rc> {
        Ok(u64::from(self.frames.db_pages) * u64::from(self.frames.page_size))
    }

    fn sync(&mut self) -> Result<(), Rc> {
        Err(Rc::IOERR)
    }

    fn lock(&mut self, _: LockLevel) -> Result<(), Rc> {
        Err(Rc::IOERR)
    }

    fn unlock(&mut self, _: LockLevel) -> Result<(), Rc> {
        Err(Rc::IOERR)
    }

    fn checkpoint_lock(&mut self, _: bool) -> Result<(), Rc> {
        Err(Rc::IOERR)
    }
}
