//! Taking a new generation: the protected pages as the file holds them
//! now, written to the `-dwr`.
//!
//! [`Monitor::refresh_as`] decides what the snapshot may reuse (the
//! mirror's schema pages when no schema page was written, its freelist
//! checksum when no trunk was, the witnesses it carries), which flags the
//! generation gets (`WAL`, `WAL_AHEAD`, the WAL session), and what a
//! snapshot that cannot be taken means (damage, or a partial checkpoint);
//! [`take_snapshot`] reads the pages, and [`choose_witnesses`] the
//! witness pages.

use super::commit::WrittenFilter;
use super::wal_locks::wal_index;
use super::{read_page, wal_session, Checkpoint, DbIo, Event, Monitor, Protection};
use crate::dbfile::{self, DbHeader};
use crate::dwr::format::{self, Fingerprint, WalSession, Witnesses, FLAG_WAL, FLAG_WAL_AHEAD};
use crate::dwr::identity::FileIdentity;
use crate::dwr::store::{Snapshot, Store};
use crate::recovery;
use std::collections::HashMap;

impl Monitor {
    /// Writes a new, confirmed generation from the file as it is now.
    pub(super) fn refresh(&mut self, io: &mut dyn DbIo) -> Result<(), String> {
        self.refresh_as(io, 0, WalAhead::Set).map(|_| ())
    }

    /// Writes a new generation from the file as it is now, with `flags`
    /// (`PENDING` or none) added to those the file's state implies, and in
    /// WAL mode `WAL_AHEAD` as `wal_ahead` says. Returns whether a
    /// generation was written.
    ///
    /// The steps: note whether a partial checkpoint left the file mixed
    /// ([`Self::checkpoint_left_mix`]); reload the `-dwr`
    /// ([`Self::reload_copy`]); decide whether its schema pages may be
    /// reused ([`Self::distrust_foreign_copy`]); read the file
    /// ([`Self::take_with_hints`]); say what a snapshot that could not be
    /// taken means; set the generation's flags ([`Self::flag_generation`]);
    /// write it, page 1 only when it can ([`Self::write_page1_only`]),
    /// else in full ([`Self::write_full`]).
    pub(super) fn refresh_as(
        &mut self,
        io: &mut dyn DbIo,
        flags: u32,
        wal_ahead: WalAhead,
    ) -> Result<bool, String> {
        let mixed = self.checkpoint_left_mix(io);
        if !self.reload_copy()? {
            return Ok(false);
        }
        let same_file = self.distrust_foreign_copy();
        let taken = self.take_with_hints(io, same_file)?;
        // A snapshot was just read from the file: what the writes since
        // the last refresh left has been used.
        self.written.clear();
        let taken = match taken {
            Ok(Some(taken)) => taken,
            Ok(None) => {
                // Empty database: nothing to protect yet.
                self.changes.dirty = false;
                return Ok(false);
            }
            Err(_) if mixed => return Ok(false),
            Err(damage) => {
                // The database itself is damaged: keep the copy as it is
                // (it is what a restore needs) and stay protected.
                self.changes.dirty = false;
                self.last_event = Some(Event::Damaged(damage));
                return Ok(false);
            }
        };
        if let Some(trunks) = taken.trunks {
            self.freelist_trunks = trunks;
        }
        self.changes.freelist = false;
        let snap = self.flag_generation(io, taken.snapshot, flags, wal_ahead);
        if taken.page1_only {
            if let Some(wrote) = self.write_page1_only(&snap)? {
                return Ok(wrote);
            }
        }
        let snap = self.complete_from_mirror(snap, taken.page1_only);
        self.write_full(&snap)
    }

    /// Whether a WAL checkpoint that could not copy every frame (readers
    /// held it back) left the database file a mix of states: the pages
    /// whose newest frame it had to leave keep older images, and only the
    /// WAL makes the whole consistent. Readers read the pages it copied
    /// from the file, so the copy follows them; but if the mix does not
    /// even form a valid schema tree, that is not damage: wait for the next
    /// checkpoint (`dirty` stays set).
    fn checkpoint_left_mix(&self, io: &mut dyn DbIo) -> bool {
        self.shm_mapped
            && self.checkpoint != Checkpoint::Complete
            && wal_index::backfill_complete(io) == Some(false)
    }

    /// Re-reads the `-dwr` header (another connection may have written a
    /// generation). Returns false, with protection turned off, when
    /// another connection disabled protection and removed the file.
    fn reload_copy(&mut self) -> Result<bool, String> {
        let store = self.store()?;
        if !store.is_linked() {
            self.protection = Protection::Off { reason: None };
            self.protected.clear();
            return Ok(false);
        }
        store
            .refresh()
            .map_err(|e| format!("cannot read the -dwr: {e}"))?;
        Ok(true)
    }

    /// Whether the copy (if any) was taken from this file. When it was not,
    /// or it protects other pages than the ones this connection tracked
    /// writes against, marks the schema touched: only a walk can tell what
    /// changed.
    fn distrust_foreign_copy(&mut self) -> bool {
        let Protection::On(store) = &self.protection else {
            return true;
        };
        let Some(h) = store.mirror_header() else {
            return true;
        };
        // Another connection may have written a generation with another
        // schema tree: this transaction's writes were then tracked against
        // the wrong pages.
        let same_pages = h.page_size == self.page_size
            && h.page_count as usize == self.protected.len()
            && store.mirror_pages().all(|p| self.protected.contains(p));
        let same_file = h.fingerprint.identity.is_same_file(&self.identity);
        if !same_pages || !same_file {
            // A copy of another file vouches for nothing here: walk this one.
            self.changes.schema = true;
        }
        same_file
    }

    /// Reads the file into a snapshot, reusing what the monitor knows (see
    /// [`Hints`]). The outer error is the `-dwr`'s (protection is off); the
    /// inner one is the database's (what [`take_snapshot`] found wrong).
    fn take_with_hints(
        &self,
        io: &mut dyn DbIo,
        same_file: bool,
    ) -> Result<Result<Option<Taken>, String>, String> {
        let Protection::On(store) = &self.protection else {
            return Err("protection is off".into());
        };
        let mirror = store.mirror_header();
        // The mirror's freelist checksum holds while no trunk was written.
        let freelist = mirror.filter(|_| !self.changes.freelist).map(|h| {
            let fp = h.fingerprint;
            (fp.freelist_trunk, fp.freelist_count, fp.freelist_crc)
        });
        // Witness page numbers count in the copy's page size.
        let carried = mirror
            .filter(|h| same_file && h.page_size == self.page_size)
            .map(|h| h.fingerprint.witnesses)
            .unwrap_or_default();
        let hints = Hints {
            identity: self.identity,
            page1: self.written.page1_image.as_deref(),
            reuse: (!self.changes.schema).then_some(&**store),
            freelist,
            witnesses: WitnessHints {
                page_size: self.page_size,
                written: self.written.witness_candidates,
                carried,
                maybe_rewritten: &self.written.pages,
            },
        };
        Ok(take_snapshot(io, hints))
    }

    /// Adds `flags` and the flags the WAL implies to a snapshot: in WAL
    /// mode, the WAL session that continues the copy, and `WAL_AHEAD`
    /// unless the WAL is being retired.
    fn flag_generation(
        &self,
        io: &mut dyn DbIo,
        mut snap: Snapshot,
        flags: u32,
        wal_ahead: WalAhead,
    ) -> Snapshot {
        snap.flags |= flags;
        if snap.flags & FLAG_WAL != 0 {
            // The frames of this session (and, when the file holds all of
            // it, of the next) continue this copy.
            let complete = self.checkpoint == Checkpoint::Complete
                || wal_index::backfill_complete(io) == Some(true);
            // The frames of the session a checkpoint copied that the copy
            // followed stay followed (rule 4b); only a complete checkpoint
            // of this connection adds to them (`record_backfill`).
            let followed = |s: &WalSession| match &self.protection {
                Protection::On(store) => store
                    .mirror_header()
                    .and_then(|h| h.fingerprint.wal_session)
                    .filter(|m| m.salt1 == s.salt1 && m.salt2 == s.salt2)
                    .map_or(0, |m| m.backfilled),
                Protection::Off { .. } => 0,
            };
            snap.fingerprint.wal_session = wal_session(&self.db_path).map(|s| WalSession {
                complete,
                backfilled: followed(&s),
                ..s
            });
            if wal_ahead == WalAhead::Set {
                snap.flags |= FLAG_WAL_AHEAD;
            }
        }
        snap
    }

    /// Writes `snap` as a whole generation (unchanged pages are not
    /// written) and makes its pages the protected set. Returns whether a
    /// generation was written.
    fn write_full(&mut self, snap: &Snapshot) -> Result<bool, String> {
        let store = self.store()?;
        let before = store.mirror_generation();
        let written = store
            .write_generation(snap)
            .map_err(|e| format!("cannot write the -dwr: {e}"))?;
        self.page_size = snap.page_size;
        self.protected = snap.pages.iter().map(|(p, _)| *p).collect();
        self.after_refresh();
        self.changes.schema = false;
        Ok(before != Some(written))
    }

    /// The common commit: page 1 changed, the rest of the schema did not.
    /// Returns `None` when the store needs the general path, else whether
    /// a generation was written.
    fn write_page1_only(&mut self, snap: &Snapshot) -> Result<Option<bool>, String> {
        let store = self.store()?;
        let before = store.mirror_generation();
        let written = store
            .write_page1(&snap.pages[0].1, snap.fingerprint, snap.flags)
            .map_err(|e| format!("cannot write the -dwr: {e}"))?;
        let Some(written) = written else {
            return Ok(None);
        };
        self.after_refresh();
        Ok(Some(before != Some(written)))
    }

    /// Fills a page-1-only snapshot with the mirror's other pages.
    fn complete_from_mirror(&self, mut snap: Snapshot, page1_only: bool) -> Snapshot {
        if page1_only {
            if let Protection::On(store) = &self.protection {
                for pgno in store.mirror_pages().filter(|&p| p != 1) {
                    snap.pages
                        .push((pgno, store.mirror_page(pgno).unwrap().to_vec()));
                }
            }
        }
        snap
    }

    /// Bookkeeping after a new generation was written.
    fn after_refresh(&mut self) {
        self.changes.dirty = false;
        if self.is_stale() {
            // The copy describes the file again.
            self.last_event = None;
        }
        self.read.copy_refreshed();
    }

    fn is_stale(&self) -> bool {
        matches!(self.last_event, Some(Event::Stale(_)))
    }
}

/// Reads every protected page through `io`, walking the schema and the
/// freelist, nothing taken from a mirror; witnesses start from `carried`
/// (page numbers in `page_size`), every one read again. For a projection,
/// where `io` is the file as a checkpoint will leave it.
pub(super) fn take_full_snapshot(
    io: &mut dyn DbIo,
    identity: FileIdentity,
    page_size: u32,
    carried: Witnesses,
) -> Result<Option<Snapshot>, String> {
    let mut all = WrittenFilter::default();
    all.insert_all();
    let hints = Hints {
        identity,
        page1: None,
        reuse: None,
        freelist: None,
        witnesses: WitnessHints {
            page_size,
            written: Witnesses::default(),
            carried,
            maybe_rewritten: &all,
        },
    };
    Ok(take_snapshot(io, hints)?.map(|t| t.snapshot))
}

/// Whether a WAL-mode generation says the WAL may hold commits it lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WalAhead {
    /// It does (`WAL_AHEAD`): every generation but the one below.
    Set,
    /// It does not: the WAL was checkpointed in full and deleted, no frame
    /// is left anywhere (see `retire_wal_if_gone`).
    Retired,
}

/// What the monitor already knows, so that a snapshot need not read it
/// again from the file.
struct Hints<'a> {
    /// Which file this is.
    identity: FileIdentity,
    /// The page 1 image SQLite wrote in this transaction, if any.
    page1: Option<&'a [u8]>,
    /// The store, when no schema page other than page 1 was written: if page
    /// 1's B-tree area and the schema cookie are unchanged too, the other
    /// images come from its mirror.
    reuse: Option<&'a Store>,
    /// The mirror's `(trunk, count, checksum)` of the freelist, when no
    /// trunk page was written since.
    freelist: Option<(u32, u32, u32)>,
    witnesses: WitnessHints<'a>,
}

/// Where the next generation's witness pages come from.
struct WitnessHints<'a> {
    /// The page size the page numbers below count in.
    page_size: u32,
    /// Pages this connection wrote, with the checksums of what it wrote.
    written: Witnesses,
    /// The witnesses of the copy being replaced, when it is this file's.
    carried: Witnesses,
    /// Pages that may have been written since the copy being replaced.
    maybe_rewritten: &'a WrittenFilter,
}

/// Chooses the witness pages of a new generation: the pages this
/// connection wrote first, then the ones the previous copy recorded (read
/// again if they may have been written since), all in the file and outside
/// the protected set. Every checksum is of what the file holds now.
///
/// When that leaves fewer than `MAX_WITNESSES`, and either the snapshot
/// walked the schema anyway (`walked`) or a witness of the previous copy
/// had to be dropped, a few pages are read to find more (see
/// [`search_witnesses`]). Dropping one is what empties the list: SQLite
/// built with `SECURE_DELETE` (Debian's, for one) zeroes every page it
/// frees, so dropping a table or deleting its rows turns the witnesses on
/// its pages into empty pages at once, and without a search a copy of a
/// database full of data would end up recording none.
fn choose_witnesses(
    io: &mut dyn DbIo,
    hints: &WitnessHints,
    ps: u32,
    max_page: u32,
    protected: &dyn Fn(u32) -> bool,
    walked: bool,
    roots: &mut dyn FnMut() -> Vec<u32>,
) -> Result<Witnesses, String> {
    let usable = |p: u32| p >= 2 && p <= max_page && !protected(p);
    let mut chosen = Witnesses::default();
    let (written, carried) = if hints.page_size == ps {
        (hints.written, hints.carried)
    } else {
        Default::default()
    };
    for (pgno, crc) in written.iter().filter(|(p, _)| usable(*p)) {
        chosen.push(pgno, crc);
    }
    let mut lost = false;
    for (pgno, crc) in carried.iter() {
        if chosen.is_full() {
            break;
        }
        if chosen.contains(pgno) {
            continue;
        }
        if !usable(pgno) {
            lost = true;
        } else if hints.maybe_rewritten.may_contain(pgno) {
            let page = read_page(io, pgno, ps).map_err(|e| e.to_string())?;
            if format::witness_worthy(&page) {
                chosen.push(pgno, format::crc32c(&page));
            } else {
                lost = true;
            }
        } else {
            chosen.push(pgno, crc);
        }
    }
    if (walked || lost) && !chosen.is_full() {
        search_witnesses(io, &mut chosen, ps, max_page, &usable, roots)?;
    }
    Ok(chosen)
}

/// Reads up to eight pages to add witnesses to `chosen`: first pages in
/// use, the root pages of the tables and indexes the schema lists (newest,
/// that is highest, first), and for a root too sparse to serve its
/// right-most child, where a B-tree grows; then, with the reads left, pages
/// from the end of the file. The roots come first because the end of the
/// file is where SQLite leaves the pages a dropped table freed: with
/// `SECURE_DELETE` they are all zeros, and eight of them would use up the
/// reads while the data lies below.
fn search_witnesses(
    io: &mut dyn DbIo,
    chosen: &mut Witnesses,
    ps: u32,
    max_page: u32,
    usable: &dyn Fn(u32) -> bool,
    roots: &mut dyn FnMut() -> Vec<u32>,
) -> Result<(), String> {
    /// Pages read to find witnesses when too few are known.
    const SEARCH_READS: u32 = 8;
    let mut reads = 0;
    let mut looked = std::collections::HashSet::new();
    let mut queue = roots();
    queue.sort_unstable();
    // Popped from the back: highest first, and a child pushed is next.
    while let Some(pgno) = queue.pop() {
        if reads == SEARCH_READS || chosen.is_full() {
            return Ok(());
        }
        if !usable(pgno) || chosen.contains(pgno) || !looked.insert(pgno) {
            continue;
        }
        reads += 1;
        let page = read_page(io, pgno, ps).map_err(|e| e.to_string())?;
        if format::witness_worthy(&page) {
            chosen.push(pgno, format::crc32c(&page));
        } else if let Some(child) = dbfile::interior_right_child(&page) {
            queue.push(child);
        }
    }
    let mut pgno = max_page;
    while pgno >= 2 && reads < SEARCH_READS && !chosen.is_full() {
        if usable(pgno) && !chosen.contains(pgno) && !looked.contains(&pgno) {
            reads += 1;
            let page = read_page(io, pgno, ps).map_err(|e| e.to_string())?;
            if format::witness_worthy(&page) {
                chosen.push(pgno, format::crc32c(&page));
            }
        }
        pgno -= 1;
    }
    Ok(())
}

/// What `take_snapshot` read.
struct Taken {
    snapshot: Snapshot,
    /// The freelist trunk pages, when it walked the freelist.
    trunks: Option<Vec<u32>>,
    /// The schema tree is as in the store's mirror: `snapshot.pages` holds
    /// page 1 only, and the other pages are the mirror's.
    page1_only: bool,
}

/// Reads the protected pages as they are in the file now.
fn take_snapshot(io: &mut dyn DbIo, hints: Hints) -> Result<Option<Taken>, String> {
    let size = io
        .size()
        .map_err(|rc| format!("cannot size the database (error {rc})"))?;
    if size < 100 {
        return Ok(None);
    }
    let p1 = match hints.page1 {
        Some(p1) => p1.to_vec(),
        None => {
            let mut head = [0u8; 100];
            io.read(&mut head, 0)
                .map_err(|rc| format!("cannot read page 1 (error {rc})"))?;
            let ps = dbfile::page_size_from_header(&head)
                .ok_or("page 1 of the database is not valid; not copying it")?;
            if size < ps as u64 {
                return Ok(None);
            }
            read_page(io, 1, ps).map_err(|e| e.to_string())?
        }
    };
    let ps = p1.len() as u32;
    let header = DbHeader::parse(&p1).map_err(|e| format!("page 1 is not valid: {e}"))?;
    let max_page = (size / ps as u64) as u32;
    let mirror_matches = hints.reuse.and_then(|s| {
        let h = s.mirror_header()?;
        let old_p1 = s.mirror_page(1)?;
        (h.page_size == ps
            && h.fingerprint.schema_cookie == header.schema_cookie
            && old_p1[100..] == p1[100..])
            .then_some(s)
    });
    let mut pages = vec![(1u32, p1)];
    let page1_only = mirror_matches.is_some();
    match mirror_matches {
        // The schema tree is the mirror's: the snapshot carries page 1 only
        // and the store takes the rest as it is (see Taken::page1_only).
        Some(_) => {}
        None => {
            // The walk keeps the images it reads: each page is read once.
            // Every image comes from the disk: the copy is never trusted
            // over the file it is about to describe.
            let mut images: HashMap<u32, Vec<u8>> = HashMap::new();
            let tree = dbfile::schema_tree_pages(&header, max_page, &mut |p| {
                let image = read_page(io, p, ps)?;
                images.insert(p, image.clone());
                Ok(image)
            })
            .map_err(|e| format!("the schema tree is not valid: {e}"))?;
            for (pgno, _) in tree.into_iter().filter(|(p, _)| *p != 1) {
                let image = images
                    .remove(&pgno)
                    .expect("the walk read every page it lists");
                pages.push((pgno, image));
            }
        }
    }
    let (freelist_crc, trunks) = match hints.freelist {
        Some((trunk, count, crc))
            if trunk == header.freelist_trunk && count == header.freelist_count =>
        {
            (crc, None)
        }
        _ if header.freelist_trunk == 0 => (0, Some(Vec::new())),
        _ => {
            let (crc, chain) =
                recovery::freelist_chain(header.freelist_trunk, ps, max_page, &mut |p| {
                    read_page(io, p, ps)
                })
                .map_err(|e| e.to_string())?;
            (crc, Some(chain))
        }
    };
    let witnesses = {
        let in_snapshot: HashMap<u32, &[u8]> =
            pages.iter().map(|(p, image)| (*p, &image[..])).collect();
        let mirror = hints.reuse.filter(|_| page1_only);
        let in_mirror = |p: u32| mirror.is_some_and(|s| s.mirror_page(p).is_some());
        let protected = |p: u32| in_snapshot.contains_key(&p) || in_mirror(p);
        // The schema tree as this snapshot describes it, from memory: the
        // snapshot's pages, and the mirror's for those it took from there.
        let mut roots = || {
            let image = |p: u32| {
                in_snapshot
                    .get(&p)
                    .copied()
                    .or_else(|| mirror.and_then(|s| s.mirror_page(p)))
            };
            dbfile::schema_root_pages(&header, max_page, &mut |p| {
                image(p).map(<[u8]>::to_vec).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "not in the snapshot")
                })
            })
            .unwrap_or_default()
        };
        choose_witnesses(
            io,
            &hints.witnesses,
            ps,
            max_page,
            &protected,
            !page1_only,
            &mut roots,
        )?
    };
    let snapshot = Snapshot {
        page_size: ps,
        pages,
        fingerprint: Fingerprint {
            change_counter: header.change_counter,
            db_page_count: header.page_count,
            freelist_trunk: header.freelist_trunk,
            freelist_count: header.freelist_count,
            schema_cookie: header.schema_cookie,
            freelist_crc,
            file_size: size,
            identity: hints.identity,
            witnesses,
            // Set by the caller, which knows whether a checkpoint runs.
            wal_session: None,
        },
        flags: if header.write_version == 2 {
            FLAG_WAL
        } else {
            0
        },
    };
    Ok(Some(Taken {
        snapshot,
        trunks,
        page1_only,
    }))
}
