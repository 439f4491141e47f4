//! Property test of the `-dwr` reader against hostile bytes.
//!
//! Valid files with several generations are written, then mutated (bit
//! flips, overwritten runs, truncation, extension, splices of another
//! file). Whatever the mutation, `Store::scan` must not panic, and every
//! generation it accepts must be one that was really written, byte for byte:
//! a damaged `-dwr` may lose a generation but may never invent one.
//!
//! `METADWR_FUZZ_ITERATIONS` sets the number of mutated files (default
//! 3000, a few seconds); `make fuzz` runs a long campaign.

use metadwr::dwr::format::Fingerprint;
use metadwr::dwr::store::{Snapshot, Store, SyncPolicy};
use std::collections::HashMap;
use std::path::PathBuf;

mod common;

use common::Rng;

fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("metadwr-fuzz-{}-{tag}", std::process::id()))
}

/// The pages of each generation written, by generation number.
type Written = HashMap<u64, Vec<(u32, Vec<u8>)>>;

/// Writes a few generations; returns the file bytes and what was written.
fn build_valid_file(rng: &mut Rng, tag: &str) -> (Vec<u8>, Written) {
    let path = temp_path(tag);
    let _ = std::fs::remove_file(&path);
    let mut store = Store::open(&path, true, SyncPolicy::Off).unwrap();
    let page_size = [512u32, 1024][rng.below(2) as usize];
    let mut written = HashMap::new();
    let mut pages: Vec<(u32, Vec<u8>)> = vec![(1, vec![0u8; page_size as usize])];
    for round in 0..(2 + rng.below(4)) {
        // Change, add or drop a few pages each round.
        for (_, image) in pages.iter_mut() {
            if rng.below(2) == 0 {
                let at = rng.below(page_size as u64) as usize;
                image[at] = image[at].wrapping_add(1 + round as u8);
            }
        }
        if rng.below(2) == 0 {
            let pgno = 2 + rng.below(50) as u32;
            if !pages.iter().any(|(p, _)| *p == pgno) {
                pages.push((pgno, (0..page_size).map(|_| rng.next() as u8).collect()));
            }
        }
        if pages.len() > 2 && rng.below(3) == 0 {
            pages.remove(1 + rng.below(pages.len() as u64 - 1) as usize);
        }
        let snap = Snapshot {
            page_size,
            pages: pages.clone(),
            fingerprint: Fingerprint {
                change_counter: round as u32,
                ..Default::default()
            },
            flags: 0,
        };
        let generation = store.write_generation(&snap).unwrap();
        written.insert(generation, pages.clone());
    }
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    (bytes, written)
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..(1 + rng.below(4)) {
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let at = rng.below(bytes.len() as u64) as usize;
                let len = (rng.below(600) as usize).min(bytes.len() - at);
                let fill = rng.next() as u8;
                bytes[at..at + len].iter_mut().for_each(|b| *b = fill);
            }
            2 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
            3 => bytes.extend((0..rng.below(3000)).map(|_| rng.next() as u8)),
            4 if !other.is_empty() && !bytes.is_empty() => {
                // Splice in a run of another valid -dwr (e.g. a copied file).
                let from = rng.below(other.len() as u64) as usize;
                let to = rng.below(bytes.len() as u64) as usize;
                let len = (rng.below(5000) as usize)
                    .min(other.len() - from)
                    .min(bytes.len() - to);
                bytes[to..to + len].copy_from_slice(&other[from..from + len]);
            }
            _ => {
                let len = rng.below(bytes.len() as u64 + 1) as usize;
                *bytes = (0..len).map(|_| rng.next() as u8).collect();
            }
        }
    }
}

#[test]
fn mutated_dwr_files_never_yield_an_unwritten_generation() {
    let (iterations, seed) = common::iterations_and_seed(3000, 0x5eed_d00d);
    let mut rng = Rng(seed | 1);
    let path = temp_path("mutated");
    let (mut accepted, mut refused) = (0u64, 0u64);
    for i in 0..iterations {
        let (original, written) = build_valid_file(&mut rng, "a");
        let (other, _) = build_valid_file(&mut rng, "b");
        let mut bytes = original.clone();
        mutate(&mut rng, &mut bytes, &other);
        std::fs::write(&path, &bytes).unwrap();
        let store = Store::open(&path, false, SyncPolicy::Off).unwrap();
        let scan = store.scan().unwrap();
        for g in &scan.generations {
            let expected = written.get(&g.header.generation).unwrap_or_else(|| {
                panic!(
                    "iteration {i} (seed {seed}): generation {} was never written",
                    g.header.generation
                )
            });
            // Indexes are stable across generations, so compare as sets.
            let mut got = g.pages.clone();
            got.sort();
            let mut want = expected.clone();
            want.sort();
            assert!(
                got == want,
                "iteration {i} (seed {seed}): generation {} differs from what was written",
                g.header.generation
            );
        }
        if scan.generations.is_empty() {
            refused += 1;
        } else {
            accepted += 1;
        }
    }
    let _ = std::fs::remove_file(&path);
    eprintln!("{iterations} mutated -dwr files: {accepted} still yielded a written generation, {refused} refused");
    assert!(
        accepted > 0 && refused > 0,
        "the mutations should exercise both outcomes"
    );
}
