//! `<db>-dwr-quarantine`: the damaged bytes of every page a restore
//! overwrites, kept before it overwrites them (docs/dwr-format.md section
//! 8).
//!
//! Each record is `"DWRQ"`, u32 page number, u32 page size, u64 Unix time
//! in seconds, then the page image; all big-endian. Records are in the
//! order they were written, oldest first.
//!
//! The file is bounded: it keeps at most [`MAX_IMAGES_PER_PAGE`] images of
//! any one page number and at most [`MAX_BYTES`] in all, dropping the
//! oldest records first. The records of the restore being made are always
//! kept, even when they alone exceed [`MAX_BYTES`].
//!
//! Appending is the usual case (and the directory is synced after the
//! first records, so a new file's name is durable before any page is
//! overwritten). When a record must go (a bound is
//! reached), or the file ends in bytes that are not a complete record (an
//! append cut short by a crash), the file is rewritten: the kept records
//! and the new ones go into `<db>-dwr-quarantine-tmp`, created under the
//! same rules, which is synced and renamed over the quarantine, and the
//! directory synced. A crash leaves either the old file (and perhaps a
//! stale `-tmp`, removed by the next rewrite) or the new one, both whole.
//! A torn append leaves whole records followed by part of one; the page
//! it was for was not yet overwritten (the restore writes pages only once
//! the quarantine is synced), so its bytes are quarantined again.

use crate::sidecar::{self, Create, Protection};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Images of one page number kept, newest first.
pub const MAX_IMAGES_PER_PAGE: usize = 8;
/// Bytes the file may hold (the newest restore's records aside).
pub const MAX_BYTES: u64 = 16 << 20;
/// "DWRQ", page number, page size, time.
const RECORD_HEADER: u64 = 20;

/// `<db>-dwr-quarantine`.
pub fn path_for(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-dwr-quarantine");
    PathBuf::from(s)
}

/// `<db>-dwr-quarantine-tmp`, the rewrite in progress.
fn tmp_path_for(db: &Path) -> PathBuf {
    let mut s = path_for(db).into_os_string();
    s.push("-tmp");
    PathBuf::from(s)
}

/// A whole record already in the file.
#[derive(Debug, Clone, Copy)]
struct Record {
    pgno: u32,
    offset: u64,
    len: u64,
}

/// The whole records at the start of `file` (of length `len`), and where
/// they end.
fn scan(file: &File, len: u64) -> io::Result<(Vec<Record>, u64)> {
    let mut out = Vec::new();
    let mut at = 0u64;
    let mut head = [0u8; RECORD_HEADER as usize];
    while at + RECORD_HEADER <= len {
        file.read_exact_at(&mut head, at)?;
        let pgno = u32::from_be_bytes(head[4..8].try_into().unwrap_or_default());
        let ps = u32::from_be_bytes(head[8..12].try_into().unwrap_or_default());
        let rec_len = RECORD_HEADER + ps as u64;
        if &head[0..4] != b"DWRQ"
            || pgno == 0
            || !(512..=65536).contains(&ps)
            || !ps.is_power_of_two()
            || at + rec_len > len
        {
            break;
        }
        out.push(Record {
            pgno,
            offset: at,
            len: rec_len,
        });
        at += rec_len;
    }
    Ok((out, at))
}

/// Indices into `old` of the records kept next to `new` (page numbers and
/// record lengths of this restore), oldest first.
fn choose(old: &[Record], new: &[(u32, u64)]) -> Vec<usize> {
    let mut per_page: std::collections::HashMap<u32, usize> = Default::default();
    let mut total = 0u64;
    for &(pgno, len) in new {
        *per_page.entry(pgno).or_default() += 1;
        total += len;
    }
    let mut keep = Vec::new();
    for (i, r) in old.iter().enumerate().rev() {
        if total + r.len > MAX_BYTES {
            break;
        }
        let n = per_page.entry(r.pgno).or_default();
        if *n >= MAX_IMAGES_PER_PAGE {
            continue;
        }
        *n += 1;
        total += r.len;
        keep.push(i);
    }
    keep.reverse();
    keep
}

/// Adds the images of `pages` (page number, damaged bytes; page size `ps`)
/// to the quarantine of `db` and makes them durable.
pub fn append(db: &Path, ps: u32, pages: &[(u32, Vec<u8>)]) -> io::Result<()> {
    let prot = Protection::of_database(db)?;
    let path = path_for(db);
    let file = sidecar::open(&path, prot, Create::IfMissing)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut fresh = Vec::new();
    let mut new = Vec::new();
    for (pgno, image) in pages {
        let start = fresh.len();
        fresh.extend_from_slice(b"DWRQ");
        fresh.extend_from_slice(&pgno.to_be_bytes());
        fresh.extend_from_slice(&ps.to_be_bytes());
        fresh.extend_from_slice(&now.to_be_bytes());
        fresh.extend_from_slice(image);
        new.push((*pgno, (fresh.len() - start) as u64));
    }
    let len = file.metadata()?.len();
    let (old, end) = scan(&file, len)?;
    let keep = choose(&old, &new);
    if keep.len() == old.len() && end == len {
        file.write_all_at(&fresh, len)?;
        file.sync_data()?;
        if len == 0 {
            // Perhaps just created: make its name durable too, as SQLite
            // does for a new journal, before any page is overwritten.
            sidecar::sync_parent(&path)?;
        }
        return Ok(());
    }
    rewrite(db, prot, &file, &old, &keep, &fresh)
}

/// Replaces the quarantine with the `keep` records of `file` and `fresh`.
fn rewrite(
    db: &Path,
    prot: Protection,
    file: &File,
    old: &[Record],
    keep: &[usize],
    fresh: &[u8],
) -> io::Result<()> {
    let tmp = tmp_path_for(db);
    // A rewrite a crash interrupted. Removing a symlink removes the link.
    match std::fs::symlink_metadata(&tmp) {
        Ok(m) if m.file_type().is_dir() => return Err(sidecar::not_regular(&tmp, m.file_type())),
        Ok(_) => std::fs::remove_file(&tmp)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let out = sidecar::open(&tmp, prot, Create::New)?;
    let written = (|| {
        let mut at = 0u64;
        let mut buf = Vec::new();
        for &i in keep {
            let r = old[i];
            buf.resize(r.len as usize, 0);
            file.read_exact_at(&mut buf, r.offset)?;
            out.write_all_at(&buf, at)?;
            at += r.len;
        }
        out.write_all_at(fresh, at)?;
        out.sync_all()?;
        std::fs::rename(&tmp, path_for(db))?;
        sidecar::sync_parent(&tmp)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(pages: &[u32], len: u64) -> Vec<Record> {
        pages
            .iter()
            .enumerate()
            .map(|(i, &pgno)| Record {
                pgno,
                offset: i as u64 * len,
                len,
            })
            .collect()
    }

    #[test]
    fn keeps_the_newest_images_of_each_page() {
        let old = recs(&[1; 10], 4116);
        assert_eq!(choose(&old, &[(1, 4116)]), (3..10).collect::<Vec<_>>());
        let old = recs(
            &[1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2],
            4116,
        );
        let kept = choose(&old, &[(2, 4116)]);
        assert_eq!(kept.iter().filter(|&&i| old[i].pgno == 1).count(), 8);
        assert_eq!(kept.iter().filter(|&&i| old[i].pgno == 2).count(), 7);
        assert_eq!(*kept.last().unwrap(), 17);
    }

    #[test]
    fn keeps_the_newest_records_within_the_size_cap() {
        let len = 65536 + RECORD_HEADER;
        let old = recs(&(1..=300).collect::<Vec<_>>(), len);
        let kept = choose(&old, &[(400, len)]);
        let fit = (MAX_BYTES / len) as usize - 1;
        assert_eq!(kept, (300 - fit..300).collect::<Vec<_>>());
        // This restore's records stay even when they alone are too many.
        assert!(choose(&old, &[(7, MAX_BYTES); 2]).is_empty());
    }
}
