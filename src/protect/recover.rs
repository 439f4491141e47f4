//! Explicit recovery: `meta_recover()` (and its pragma) restores the
//! damaged protected pages from the copy under an EXCLUSIVE lock, once the
//! planner (`recovery.rs`) agrees the copy describes the file, keeping
//! the damaged bytes in the quarantine first; `meta_salvage()`; and
//! [`Disk`], the database file as the planner reads it.

use super::{
    quarantine, read_page, wal_has_frames, wal_session, DbIo, Event, LockLevel, Monitor,
    Protection, Rc,
};
use crate::dwr::file::OpenMode;
use crate::dwr::format::WalSession;
use crate::dwr::identity::FileIdentity;
use crate::recovery::{self, Backfill, DiskPages, Plan};
use std::path::Path;

impl Monitor {
    /// `meta_recover()`: restore damaged protected pages from the copy.
    /// Takes an exclusive lock on the database for the duration.
    pub fn recover(&mut self, io: &mut dyn DbIo) -> Result<String, String> {
        if self.readonly {
            return Err("cannot restore into a database opened read-only".into());
        }
        if !self.is_protected() {
            if !self.dwr_path.exists() {
                return Err(format!(
                    "no copy: {} does not exist",
                    self.dwr_path.display()
                ));
            }
            let store = self
                .open_store(OpenMode::ReadWrite)
                .map_err(|e| format!("cannot open {}: {e}", self.dwr_path.display()))?;
            self.protection = Protection::On(Box::new(store));
        }
        let held = self.lock_level;
        if held >= LockLevel::Reserved {
            return Err(
                "cannot restore inside a write transaction; COMMIT or ROLLBACK first".into(),
            );
        }
        escalate(io, held)?;
        let result = self.recover_exclusive(io);
        let _ = io.unlock(held);
        result
    }

    /// Writes a salvage of this database to `out` (see `salvage/`). The
    /// file is only read, under a shared lock so that no writer changes it
    /// half-way; the `-dwr` only supplies the schema.
    pub fn salvage(&mut self, io: &mut dyn DbIo, out: &Path) -> Result<String, String> {
        let generations = if self.dwr_path.exists() {
            self.open_store(OpenMode::ReadOnly)
                .and_then(|s| s.scan())
                .map(|scan| scan.generations)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let held = self.lock_level;
        if held < LockLevel::Shared {
            io.lock(LockLevel::Shared)
                .map_err(|rc| lock_error(rc, "salvage"))?;
        }
        let db_path = self.db_path.clone();
        let mut disk = Disk {
            io: &mut *io,
            path: &db_path,
        };
        let result = crate::salvage::salvage(crate::salvage::Request {
            db_path: &db_path,
            disk: &mut disk,
            generations,
            out_path: out,
        });
        if held < LockLevel::Shared {
            let _ = io.unlock(held);
        }
        result
    }

    pub(super) fn recover_exclusive(&mut self, io: &mut dyn DbIo) -> Result<String, String> {
        // The restore writes page 1 itself; an image SQLite wrote earlier
        // no longer describes the file.
        self.written.page1_image = None;
        let db_path = self.db_path.clone();
        let store = self.store()?;
        let scan = store
            .scan()
            .map_err(|e| format!("cannot read the -dwr: {e}"))?;
        if scan.generations.is_empty() {
            return Err(format!(
                "the -dwr holds no valid copy ({})",
                if scan.rejected.is_empty() {
                    "empty".to_string()
                } else {
                    scan.rejected.join("; ")
                }
            ));
        }
        let mut disk = Disk {
            io: &mut *io,
            path: &db_path,
        };
        let plan = recovery::plan(&scan.generations, &mut disk);
        let (generation, pages) = match plan {
            Plan::Refuse(why) => return Err(why),
            Plan::Intact { generation } => {
                return Ok(format!(
                    "nothing to restore: the database matches generation {generation}"
                ))
            }
            Plan::Restore { generation, pages } => (generation, pages),
        };
        let g = scan
            .generations
            .iter()
            .find(|g| g.header.generation == generation)
            .unwrap();
        let ps = g.header.page_size;
        // Keep the damaged bytes before anything is overwritten.
        let mut damaged = Vec::new();
        for &pgno in &pages {
            damaged.push((pgno, disk.read_page(pgno, ps).map_err(|e| e.to_string())?));
        }
        quarantine::append(&self.db_path, ps, &damaged)
            .map_err(|e| format!("cannot write the quarantine file: {e}"))?;
        for (pgno, bad) in &damaged {
            let good = g.page(*pgno).unwrap();
            let image = if *pgno == 1 {
                recovery::restored_page1(good, bad)
            } else {
                good.to_vec()
            };
            io.write(&image, (*pgno as u64 - 1) * ps as u64)
                .map_err(|rc| format!("cannot write page {pgno} (error {rc})"))?;
        }
        io.sync()
            .map_err(|rc| format!("cannot sync the database (error {rc})"))?;
        let report = format!(
            "restored {} page{} ({}) from generation {generation}",
            pages.len(),
            if pages.len() == 1 { "" } else { "s" },
            pages
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        self.warn(&format!("metadwr: {}: {report}", self.db_path.display()));
        self.last_event = Some(Event::Recovered(report.clone()));
        self.changes.need_walk();
        if let Err(e) = self.refresh(io) {
            self.fail(&e);
        }
        Ok(report)
    }
}

pub(super) fn lock_error(rc: Rc, what: &str) -> String {
    if rc == Rc::BUSY {
        format!("database is locked: cannot {what} it while another connection holds a conflicting lock")
    } else {
        format!("cannot lock the database (error {rc})")
    }
}

/// Raises the lock to EXCLUSIVE from `held`; on failure restores `held`.
pub(super) fn escalate(io: &mut dyn DbIo, held: LockLevel) -> Result<(), String> {
    let steps = [LockLevel::Shared, LockLevel::Reserved, LockLevel::Exclusive];
    for level in steps.into_iter().filter(|&l| l > held) {
        if let Err(rc) = io.lock(level) {
            let _ = io.unlock(held.min(LockLevel::Shared));
            return Err(lock_error(rc, "restore"));
        }
    }
    Ok(())
}

/// The database file as the recovery planner sees it.
pub(super) struct Disk<'a> {
    pub(super) io: &'a mut dyn DbIo,
    pub(super) path: &'a Path,
}

impl DiskPages for Disk<'_> {
    fn file_size(&mut self) -> std::io::Result<u64> {
        self.io
            .size()
            .map_err(|rc| std::io::Error::other(format!("error {rc}")))
    }

    fn identity(&mut self) -> std::io::Result<FileIdentity> {
        FileIdentity::of_path(self.path)
    }

    fn read_page(&mut self, pgno: u32, page_size: u32) -> std::io::Result<Vec<u8>> {
        read_page(self.io, pgno, page_size)
    }

    fn wal_has_frames(&mut self) -> bool {
        wal_has_frames(self.path)
    }

    fn wal_session(&mut self) -> Option<WalSession> {
        wal_session(self.path)
    }

    fn wal_backfill(&mut self) -> Option<Backfill> {
        super::wal_index_backfill(self.path)
    }
}
