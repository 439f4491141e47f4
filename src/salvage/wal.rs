//! The committed frames of a `-wal` file, for a salvage that must see what
//! SQLite sees.
//!
//! In WAL mode a commit reaches the database file only at a checkpoint;
//! until then the newest version of a page is its last frame in the WAL
//! that belongs to a committed transaction. Which frames count is decided
//! as SQLite's own WAL recovery decides it (file format §4.3): frames are
//! read in order while their salts match the WAL header's and the running
//! checksum holds; everything after the last frame that ends a transaction
//! (a non-zero "database size" field) is ignored.
//!
//! WAL header (32 bytes, big-endian fields):
//!   0 magic 0x377f0682 (checksums of little-endian words) or 0x377f0683
//!     (big-endian words); 4 format version 3007000; 8 page size;
//!   12 checkpoint sequence; 16 salt-1; 20 salt-2; 24 checksum-1;
//!   28 checksum-2 (of bytes 0..24).
//! Frame header (24 bytes): 0 page number; 4 database size in pages after
//!   a commit, else 0; 8 salt-1; 12 salt-2; 16 checksum-1; 20 checksum-2
//!   (over bytes 0..8 of this header and the page, continuing the chain).

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;

const HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// Where the newest committed image of each page is in the WAL.
#[derive(Debug, Default)]
pub struct WalFrames {
    /// Page number → offset of its image in the WAL file.
    pub pages: HashMap<u32, u64>,
    /// Database size in pages after the last commit.
    pub db_pages: u32,
    /// Committed frames found.
    pub frames: u64,
    pub page_size: u32,
}

fn checksum(words: &[u8], big_endian: bool, mut s: (u32, u32)) -> (u32, u32) {
    for pair in words.chunks_exact(8) {
        let w = |b: &[u8]| {
            let a = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        s.0 = s.0.wrapping_add(w(&pair[0..4])).wrapping_add(s.1);
        s.1 = s.1.wrapping_add(w(&pair[4..8])).wrapping_add(s.0);
    }
    s
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads the committed frames from `wal` (any reader of the WAL file's
/// bytes, from offset 0). `page_size` is the database's; a WAL of another
/// page size is not this database's and is ignored.
pub fn committed_frames(wal: &mut dyn Read, page_size: u32) -> io::Result<WalFrames> {
    let mut out = WalFrames {
        page_size,
        ..WalFrames::default()
    };
    let mut header = [0u8; HEADER];
    if wal.read_exact(&mut header).is_err() {
        return Ok(out);
    }
    let magic = be32(&header, 0);
    if magic & !1 != 0x377f_0682 || be32(&header, 8) != page_size || be32(&header, 4) != 3_007_000 {
        return Ok(out);
    }
    let big_endian = magic & 1 == 1;
    let mut sum = checksum(&header[..24], big_endian, (0, 0));
    if sum != (be32(&header, 24), be32(&header, 28)) {
        return Ok(out);
    }
    let salts = (be32(&header, 16), be32(&header, 20));
    let mut frame = vec![0u8; FRAME_HEADER + page_size as usize];
    let mut pending: Vec<(u32, u64)> = Vec::new();
    let mut offset = HEADER as u64;
    while wal.read_exact(&mut frame).is_ok() {
        let pgno = be32(&frame, 0);
        let commit = be32(&frame, 4);
        if pgno == 0 || (be32(&frame, 8), be32(&frame, 12)) != salts {
            break;
        }
        sum = checksum(&frame[..8], big_endian, sum);
        sum = checksum(&frame[FRAME_HEADER..], big_endian, sum);
        if sum != (be32(&frame, 16), be32(&frame, 20)) {
            break;
        }
        pending.push((pgno, offset + FRAME_HEADER as u64));
        if commit != 0 {
            out.frames += pending.len() as u64;
            out.pages.extend(pending.drain(..));
            out.db_pages = commit;
        }
        offset += frame.len() as u64;
    }
    Ok(out)
}

/// The database as SQLite sees it: the file, with the WAL's committed
/// frames laid over it.
pub struct WithWal<'a> {
    pub disk: &'a mut dyn crate::recovery::DiskPages,
    pub frames: WalFrames,
    wal: Option<std::fs::File>,
}

impl<'a> WithWal<'a> {
    /// Reads the committed frames of `<db>-wal` (if any) over `disk`.
    pub fn new(db: &Path, disk: &'a mut dyn crate::recovery::DiskPages) -> WithWal<'a> {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        let file = std::fs::File::open(&name).ok();
        let frames = file
            .as_ref()
            .and_then(|f| {
                let mut header = [0u8; HEADER];
                use std::os::unix::fs::FileExt;
                f.read_exact_at(&mut header, 0).ok()?;
                let page_size = be32(&header, 8);
                let mut r = io::BufReader::new(f);
                committed_frames(&mut r, page_size).ok()
            })
            .unwrap_or_default();
        WithWal {
            disk,
            wal: file.filter(|_| frames.frames > 0),
            frames,
        }
    }
}

impl crate::recovery::DiskPages for WithWal<'_> {
    fn file_size(&mut self) -> io::Result<u64> {
        if self.frames.db_pages > 0 {
            return Ok(u64::from(self.frames.db_pages) * u64::from(self.frames.page_size));
        }
        self.disk.file_size()
    }

    fn identity(&mut self) -> io::Result<crate::dwr::identity::FileIdentity> {
        self.disk.identity()
    }

    fn read_page(&mut self, pgno: u32, page_size: u32) -> io::Result<Vec<u8>> {
        if let (Some(f), true) = (&self.wal, page_size == self.frames.page_size) {
            if let Some(&at) = self.frames.pages.get(&pgno) {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; page_size as usize];
                f.read_exact_at(&mut buf, at)?;
                return Ok(buf);
            }
        }
        self.disk.read_page(pgno, page_size)
    }

    fn wal_has_frames(&mut self) -> bool {
        self.disk.wal_has_frames()
    }

    fn wal_session(&mut self) -> Option<crate::dwr::format::WalSession> {
        self.disk.wal_session()
    }

    fn wal_backfill(&mut self) -> Option<crate::recovery::Backfill> {
        self.disk.wal_backfill()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal(page_size: u32, frames: &[(u32, u32, u8)], big_endian: bool) -> Vec<u8> {
        let mut h = vec![0u8; HEADER];
        h[0..4].copy_from_slice(&(0x377f_0682u32 | big_endian as u32).to_be_bytes());
        h[4..8].copy_from_slice(&3_007_000u32.to_be_bytes());
        h[8..12].copy_from_slice(&page_size.to_be_bytes());
        h[16..24].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut s = checksum(&h[..24], big_endian, (0, 0));
        h[24..28].copy_from_slice(&s.0.to_be_bytes());
        h[28..32].copy_from_slice(&s.1.to_be_bytes());
        for &(pgno, commit, fill) in frames {
            let mut f = vec![fill; FRAME_HEADER + page_size as usize];
            f[0..4].copy_from_slice(&pgno.to_be_bytes());
            f[4..8].copy_from_slice(&commit.to_be_bytes());
            f[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            s = checksum(&f[..8], big_endian, s);
            s = checksum(&f[FRAME_HEADER..], big_endian, s);
            f[16..20].copy_from_slice(&s.0.to_be_bytes());
            f[20..24].copy_from_slice(&s.1.to_be_bytes());
            h.extend_from_slice(&f);
        }
        h
    }

    #[test]
    fn only_committed_frames_count() {
        for be in [false, true] {
            let bytes = wal(512, &[(2, 0, 1), (3, 5, 2), (2, 0, 3), (4, 0, 4)], be);
            let f = committed_frames(&mut &bytes[..], 512).unwrap();
            assert_eq!(f.frames, 2, "the last transaction never committed");
            assert_eq!(f.db_pages, 5);
            assert_eq!(f.pages[&2], (HEADER + FRAME_HEADER) as u64);
            assert!(!f.pages.contains_key(&4));
        }
    }

    #[test]
    fn a_broken_checksum_ends_the_log() {
        let mut bytes = wal(512, &[(2, 3, 1), (3, 4, 2)], false);
        let second = HEADER + FRAME_HEADER + 512 + FRAME_HEADER + 7;
        bytes[second] ^= 1;
        let f = committed_frames(&mut &bytes[..], 512).unwrap();
        assert_eq!((f.frames, f.db_pages), (1, 3));
        // Another page size: not this database's WAL.
        assert_eq!(committed_frames(&mut &bytes[..], 1024).unwrap().frames, 0);
    }
}
