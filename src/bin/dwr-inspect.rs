//! `dwr-inspect FILE-dwr`: prints what a `-dwr` file holds: each header
//! slot, each valid generation with its fingerprint and pages, and why any
//! header slot was refused. Read-only.

use metadwr::dwr::store::{Store, SyncPolicy};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dwr-inspect DB-dwr");
        return ExitCode::from(2);
    };
    let store = match Store::open_read_only(Path::new(&path), SyncPolicy::Off) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dwr-inspect: cannot open {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scan = match store.scan() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dwr-inspect: cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for g in &scan.generations {
        let h = &g.header;
        let fp = &h.fingerprint;
        println!(
            "generation {}: page size {}, {} pages, data at {}, flags {:#x}",
            h.generation, h.page_size, h.page_count, h.data_offset, h.flags
        );
        println!(
            "  database: {} bytes, change counter {}, {} pages, cookie {}, freelist {}/{} (crc {:#010x}), dev {} ino {}",
            fp.file_size,
            fp.change_counter,
            fp.db_page_count,
            fp.schema_cookie,
            fp.freelist_trunk,
            fp.freelist_count,
            fp.freelist_crc,
            fp.identity.dev,
            fp.identity.ino
        );
        let id = &fp.identity;
        let mut evidence = Vec::new();
        if id.evidence & metadwr::dwr::identity::HAS_HANDLE != 0 {
            evidence.push(format!("file handle {:#018x}", id.handle));
        }
        if id.evidence & metadwr::dwr::identity::HAS_BIRTH != 0 {
            evidence.push(format!("born {} ns", id.birth_ns));
        }
        if evidence.is_empty() {
            evidence.push("none (format 2 or a file system without it)".into());
        }
        println!("  identity evidence: {}", evidence.join(", "));
        let witnesses: Vec<String> = fp
            .witnesses
            .iter()
            .map(|(p, crc)| format!("{p} (crc {crc:#010x})"))
            .collect();
        match fp.wal_session {
            Some(w) => println!(
                "  WAL session: sequence {}, salts {:#010x} {:#010x}{}, {} frames seen backfilled",
                w.sequence,
                w.salt1,
                w.salt2,
                if w.complete { ", complete" } else { "" },
                w.backfilled
            ),
            None => println!("  WAL session: none recorded"),
        }
        println!(
            "  witness pages: {}",
            if witnesses.is_empty() {
                "none".to_string()
            } else {
                witnesses.join(", ")
            }
        );
        let pages: Vec<String> = g.pages.iter().map(|(p, _)| p.to_string()).collect();
        println!("  pages: {}", pages.join(","));
    }
    for r in &scan.rejected {
        println!("refused: {r}");
    }
    println!("highest generation seen: {}", scan.max_generation_seen);
    if scan.generations.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
