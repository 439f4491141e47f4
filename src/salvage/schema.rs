//! Which schema the salvage uses, and reading it.
//!
//! In order of preference:
//! 1. the `-dwr` generation the staleness rule proves current: exactly the
//!    schema the damaged file had;
//! 2. the file's own `sqlite_schema` tree, when every page of it passes the
//!    strict checks (the damage spared it): also exact;
//! 3. the newest `-dwr` generation that passes its checksums, even if it
//!    cannot be proven current: a slightly old schema is far better than
//!    none, and the walks still check every page and row against it;
//! 4. the file's own schema pages as far as they parse.
//!
//! The report names the source, the generation and whether it is proven.

use super::pages::{Owner, Pages};
use super::record::{self, Value};
use super::wal::WithWal;
use super::walk;
use crate::dbfile::DbHeader;
use crate::dwr::store::Generation;
use crate::recovery::{self, DiskPages, Plan};

/// One row of `sqlite_schema`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub kind: String,
    pub name: String,
    pub tbl_name: String,
    pub root: u32,
    pub sql: Option<String>,
}

/// Where the schema came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `-dwr` generation; `proven` when the staleness rule says it
    /// describes the file as it is.
    Copy { generation: u64, proven: bool },
    /// The file's own schema pages; `complete` when every page was read.
    File { complete: bool },
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Copy {
                generation,
                proven: true,
            } => format!("-dwr generation {generation} (proven current)"),
            Source::Copy {
                generation,
                proven: false,
            } => format!("-dwr generation {generation} (not provably current)"),
            Source::File { complete: true } => "the file's own schema pages (intact)".into(),
            Source::File { complete: false } => {
                "the file's own schema pages (partly unreadable)".into()
            }
        }
    }
}

/// The chosen schema: its page 1 and, for a copy, the pages to lay over the
/// file.
pub struct Chosen {
    pub source: Source,
    pub page1: Vec<u8>,
    pub header: DbHeader,
    pub overlay: Vec<(u32, Vec<u8>)>,
}

/// Picks the schema source (see the module comment). The staleness rule
/// judges the file itself; the file's own schema is read as SQLite would
/// see it, with the WAL's committed frames.
pub fn choose(generations: &[Generation], disk: &mut WithWal) -> Result<Chosen, String> {
    let proven = match recovery::plan(generations, &mut *disk.disk) {
        Plan::Restore { generation, .. } | Plan::Intact { generation } => Some(generation),
        Plan::Refuse(_) => None,
    };
    let from_copy = |g: &Generation, proven: bool| -> Option<Chosen> {
        let page1 = g.page(1)?.to_vec();
        let header = DbHeader::parse(&page1).ok()?;
        Some(Chosen {
            source: Source::Copy {
                generation: g.header.generation,
                proven,
            },
            page1,
            header,
            overlay: g.pages.clone(),
        })
    };
    if let Some(n) = proven {
        if let Some(c) = generations
            .iter()
            .find(|g| g.header.generation == n)
            .and_then(|g| from_copy(g, true))
        {
            return Ok(c);
        }
    }
    let own = own_schema(disk);
    if let Some(c) = own
        .as_ref()
        .filter(|c| c.source == Source::File { complete: true })
    {
        return Ok(Chosen {
            source: c.source.clone(),
            page1: c.page1.clone(),
            header: c.header,
            overlay: Vec::new(),
        });
    }
    if let Some(c) = generations.first().and_then(|g| from_copy(g, false)) {
        return Ok(c);
    }
    own.ok_or_else(|| {
        "no schema to salvage with: page 1 of the file is damaged and there is no -dwr copy"
            .to_string()
    })
}

/// The file's own page 1, and whether its schema tree reads completely.
fn own_schema(disk: &mut dyn DiskPages) -> Option<Chosen> {
    let mut first = vec![0u8; 512];
    // The page size is in the header, which is in the first 512 bytes.
    let probe = disk.read_page(1, 512).ok()?;
    first.copy_from_slice(&probe);
    let header = DbHeader::parse(&first).ok()?;
    let page1 = disk.read_page(1, header.page_size).ok()?;
    let usable = header.checked_usable_size().ok()?;
    let size = disk.file_size().ok()?;
    let max_page = u32::try_from(size / u64::from(header.page_size)).unwrap_or(u32::MAX);
    let mut read = |pgno: u32, buf: &mut [u8]| -> std::io::Result<()> {
        let p = disk.read_page(pgno, header.page_size)?;
        buf.copy_from_slice(&p);
        Ok(())
    };
    let mut pages = Pages::new(header.page_size, usable, max_page.max(1), &mut read);
    let (_, walked) = read_entries(&mut pages, header.text_encoding);
    Some(Chosen {
        source: Source::File {
            complete: walked.pages_unreadable == 0,
        },
        page1,
        header,
        overlay: Vec::new(),
    })
}

/// Walks `sqlite_schema` (root page 1), claiming its pages as tree 0.
pub fn read_entries(pages: &mut Pages, encoding: u32) -> (Vec<Entry>, walk::Walked) {
    let mut entries = Vec::new();
    let walked = walk::walk(pages, 1, true, Owner::Tree(0), false, &mut |_, row| {
        let Ok(payload) = row.payload else { return };
        let Ok(v) = record::decode(&payload) else {
            return;
        };
        if v.len() < 5 {
            return;
        }
        let root = match v[3] {
            Value::Int(n) if (0..=i64::from(u32::MAX)).contains(&n) => n as u32,
            _ => 0,
        };
        entries.push(Entry {
            kind: text(&v[0], encoding),
            name: text(&v[1], encoding),
            tbl_name: text(&v[2], encoding),
            root,
            sql: match &v[4] {
                Value::Text(_) => Some(text(&v[4], encoding)),
                _ => None,
            },
        });
    });
    (entries, walked)
}

/// Text of a schema field in the database's encoding, as a String.
pub fn text(v: &Value, encoding: u32) -> String {
    let Value::Text(b) = v else {
        return String::new();
    };
    match encoding {
        2 | 3 => {
            let units: Vec<u16> = b
                .chunks_exact(2)
                .map(|c| {
                    if encoding == 2 {
                        u16::from_le_bytes([c[0], c[1]])
                    } else {
                        u16::from_be_bytes([c[0], c[1]])
                    }
                })
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::from_utf8_lossy(b).into_owned(),
    }
}
