//! Property test of the salvage's reader against hostile database files.
//!
//! Real databases (made by the `sqlite3` shell: rowid and WITHOUT ROWID
//! tables, overflow chains, indexes, auto_vacuum with a pointer map) are
//! mutated: bit flips, runs of one byte, random pages, pages copied over
//! others, child pointers turned into cycles (to the root, to the page
//! itself, to page 0 or past the end), varints of 2^63, and page-size
//! fields of 0 and 3250. Whatever the bytes, reading the schema, walking
//! every tree and parsing every other page must not panic, and must read
//! each page at most once per claim: a cycle or a self-reference can make
//! no walk loop, so the work is bounded by the file's size.
//!
//! `METADWR_FUZZ_ITERATIONS` sets the number of mutated files (default
//! 1500, a few seconds); `make fuzz` runs a long campaign.

use metadwr::dbfile::DbHeader;
use metadwr::salvage::pages::{Owner, Pages};
use metadwr::salvage::{btree, record, schema, walk};
use std::cell::Cell;

use std::process::Command;

mod common;

use common::Rng;

/// A database made by the real shell, as bytes.
fn make_database(page_size: u32, auto_vacuum: bool) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!(
        "metadwr-salvage-fuzz-{}-{page_size}-{auto_vacuum}.db",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let script = format!(
        "PRAGMA page_size={page_size}; PRAGMA auto_vacuum={};
         CREATE TABLE a(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL);
         CREATE TABLE b(x, y BLOB, z TEXT);
         CREATE TABLE c(k TEXT PRIMARY KEY, v INT) WITHOUT ROWID;
         CREATE INDEX a_name ON a(name);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<400)
           INSERT INTO a(name, score) SELECT 'name'||i, i*1.5 FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<40)
           INSERT INTO b SELECT i, randomblob(i*40), printf('%.*c', i*30, 'x') FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<300)
           INSERT INTO c SELECT 'k'||i, i FROM n;
         DELETE FROM a WHERE id % 7 = 0;",
        if auto_vacuum { 1 } else { 0 }
    );
    let sqlite3 = std::env::var("SQLITE3").unwrap_or_else(|_| "sqlite3".into());
    let status = Command::new(sqlite3)
        .arg(&path)
        .arg(script)
        .status()
        .expect("the sqlite3 shell runs");
    assert!(status.success());
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    bytes
}

fn mutate(rng: &mut Rng, bytes: &mut [u8], ps: usize) {
    let pages = bytes.len() / ps;
    for _ in 0..(1 + rng.below(6)) {
        let page = rng.below(pages as u64) as usize;
        let base = page * ps;
        match rng.below(9) {
            0 => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(bytes.len() as u64) as usize;
                let len = (rng.below(300) as usize).min(bytes.len() - at);
                let fill = rng.next() as u8;
                bytes[at..at + len].fill(fill);
            }
            2 => bytes[base..base + ps]
                .iter_mut()
                .for_each(|b| *b = rng.next() as u8),
            3 => {
                let from = rng.below(pages as u64) as usize * ps;
                bytes.copy_within(from..from + ps, base);
            }
            4 => {
                // A child or right-child pointer aimed at a cycle or at
                // nothing: the root, the page itself, page 0, past the end.
                let target: u32 = match rng.below(4) {
                    0 => 2,
                    1 => page as u32 + 1,
                    2 => 0,
                    _ => u32::MAX,
                };
                let hdr = if page == 0 { 100 } else { 0 };
                if matches!(bytes[base + hdr], 0x02 | 0x05) {
                    let at = if rng.below(2) == 0 {
                        base + hdr + 8
                    } else {
                        let cell =
                            u16::from_be_bytes([bytes[base + hdr + 12], bytes[base + hdr + 13]]);
                        base + (cell as usize % ps).min(ps - 4)
                    };
                    bytes[at..at + 4].copy_from_slice(&target.to_be_bytes());
                }
            }
            5 => {
                // A payload-size varint of 2^63 at a cell.
                let hdr = if page == 0 { 100 } else { 0 };
                let cell = u16::from_be_bytes([bytes[base + hdr + 8], bytes[base + hdr + 9]]);
                let at = base + (cell as usize % ps).min(ps - 9);
                bytes[at..at + 9]
                    .copy_from_slice(&[0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0]);
            }
            6 => {
                // Overlapping cells: two pointers to one offset.
                let hdr = if page == 0 { 100 } else { 0 };
                let n = u16::from_be_bytes([bytes[base + hdr + 3], bytes[base + hdr + 4]]) as usize;
                let ptrs = base + hdr + 8;
                if n >= 2 && ptrs + 4 <= base + ps {
                    bytes.copy_within(ptrs..ptrs + 2, ptrs + 2);
                }
            }
            7 => {
                let size: u16 = if rng.below(2) == 0 { 0 } else { 3250 };
                bytes[16..18].copy_from_slice(&size.to_be_bytes());
            }
            _ => {
                // An overflow chain looped back on itself.
                let next = (page as u32 + 1).to_be_bytes();
                bytes[base..base + 4].copy_from_slice(&next);
            }
        }
    }
}

/// Reads everything the salvage would read; returns (page reads, rows,
/// pages in the file at the page size the header gives).
fn read_all(bytes: &[u8], fallback_ps: u32) -> (u64, u64, u64) {
    let header = DbHeader::parse(bytes).ok();
    let ps = header.map_or(fallback_ps, |h| h.page_size);
    let usable = header
        .and_then(|h| h.checked_usable_size().ok())
        .unwrap_or(ps);
    if usable < 480 || ps as usize > bytes.len() {
        return (0, 0, 0);
    }
    let max_page = (bytes.len() / ps as usize) as u32;
    let reads = Cell::new(0u64);
    let mut file = |pgno: u32, buf: &mut [u8]| -> std::io::Result<()> {
        reads.set(reads.get() + 1);
        let at = (pgno as usize - 1) * ps as usize;
        let src = bytes
            .get(at..at + buf.len())
            .ok_or_else(|| std::io::Error::other("past the end"))?;
        buf.copy_from_slice(src);
        Ok(())
    };
    let mut pages = Pages::new(ps, usable, max_page, &mut file);
    let encoding = header.map_or(1, |h| h.text_encoding);
    let (entries, _) = schema::read_entries(&mut pages, encoding);
    let mut rows = 0u64;
    for (i, e) in entries.iter().enumerate() {
        for rowid in [true, false] {
            walk::walk(
                &mut pages,
                e.root,
                rowid,
                Owner::Tree(i as u32 + 1),
                false,
                &mut |_, r| {
                    rows += 1;
                    if let Ok(p) = r.payload {
                        let _ = record::decode(&p);
                    }
                },
            );
        }
    }
    for (g, pgno) in pages.unclaimed().into_iter().enumerate() {
        if let Some(image) = pages.get(pgno) {
            if let Ok(p) = btree::parse(pgno, &image, usable, max_page) {
                let owner = Owner::Group(g as u32);
                let rowid = p.kind.is_table();
                for revisit in [false, true] {
                    walk::walk(&mut pages, pgno, rowid, owner, revisit, &mut |_, r| {
                        rows += 1;
                        if let Ok(p) = r.payload {
                            let _ = record::serial_types(&p);
                        }
                    });
                }
            }
        }
    }
    drop(pages);
    (reads.get(), rows, u64::from(max_page))
}

#[test]
fn mutated_databases_are_read_without_panics_or_loops() {
    let (iterations, seed) = common::iterations_and_seed(1500, 0x5a1_0a9e);
    let mut rng = Rng(seed | 1);
    let originals: Vec<(u32, Vec<u8>)> = [(512, false), (1024, true), (4096, false)]
        .into_iter()
        .map(|(ps, av)| (ps, make_database(ps, av)))
        .collect();
    // The undamaged files read completely: the test reads real trees.
    for (ps, bytes) in &originals {
        let (_, rows, _) = read_all(bytes, *ps);
        assert!(
            rows >= 400 + 40 + 300 - 57,
            "page size {ps}: only {rows} rows read"
        );
    }
    let mut total_rows = 0u64;
    for i in 0..iterations {
        let (ps, original) = &originals[rng.below(originals.len() as u64) as usize];
        let mut bytes = original.clone();
        mutate(&mut rng, &mut bytes, *ps as usize);
        let (reads, rows, max_page) = read_all(&bytes, *ps);
        // Every page is read once per walk that claims it: the schema walk,
        // the table walks, and the two passes over an orphan group; the
        // orphan scan reads each unclaimed page once more.
        assert!(
            reads <= 4 * max_page + 4,
            "iteration {i} (seed {seed}): {reads} page reads of a {max_page}-page file"
        );
        total_rows += rows;
    }
    eprintln!("salvage fuzz: {iterations} mutated databases, {total_rows} rows read");
}
