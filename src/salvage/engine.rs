//! The salvage, step by step (see `mod.rs` for the outline).

use super::attribute::{self, Group, Ptrmap, Tree, Verdict};
use super::btree;
use super::evidence::{self, IndexEvidence};
use super::output::{int, quote, text, Db, SqlError, Stmt};
use super::pages::{Owner, Pages};
use super::record::{self, Class, Value};
use super::schema::{self, Entry, Source};
use super::shape::{Column, Shape};
use super::wal::WithWal;
use super::walk::{self, Row};
use crate::dbfile::be_u32;
use crate::dwr::store::Generation;
use crate::recovery::DiskPages;
use crate::sidecar::{self, Create, Protection};
use std::collections::HashMap;
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the caller provides.
pub struct Request<'a> {
    /// The damaged database's path (for its mode and owner, and the name of
    /// the output's neighbours).
    pub db_path: &'a Path,
    /// The database file's pages, read as the caller's connection sees the
    /// file (through the VFS, so that no second descriptor's close drops
    /// SQLite's POSIX locks).
    pub disk: &'a mut dyn DiskPages,
    /// The `-dwr` generations that pass their checksums, newest first.
    pub generations: Vec<Generation>,
    /// The new database to write; must not exist.
    pub out_path: &'a Path,
}

/// The most columns `lost_and_found` gets (SQLite's default limit is 2000).
const LOST_AND_FOUND_MAX_FIELDS: usize = 1990;

/// One table or index of the schema, with what the salvage learned of it.
struct Obj {
    entry: Entry,
    /// Tree id for the ownership map (1-based; 0 is sqlite_schema).
    id: u32,
    is_table: bool,
    /// Table B-tree (rowid table) rather than index B-tree.
    rowid: bool,
    shape: Option<Shape>,
    columns: Vec<Column>,
    /// The name the rowid can be written under, if any is not shadowed.
    rowid_name: Option<&'static str>,
    /// Field count of an index's entries, and whether its last field is a
    /// rowid (an index of a rowid table).
    index_fields: Option<(usize, bool)>,
    /// The table columns (cids) an index holds, in order, when they are
    /// plain columns (no expressions).
    index_columns: Option<Vec<usize>>,
    /// The index has a WHERE clause: not every row has an entry.
    index_partial: bool,
    created: bool,
    note: Vec<String>,
    walked: walk::Walked,
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    rows: u64,
    rows_from_orphans: u64,
    rows_lost_and_found: u64,
    rows_lost: u64,
    pages_from_orphans: u64,
}

/// Runs the salvage; returns the one-line summary.
pub fn salvage(req: Request) -> Result<String, String> {
    let started = Instant::now();
    if std::fs::symlink_metadata(req.out_path).is_ok() {
        return Err(format!(
            "{} already exists; the salvage writes a new file only",
            req.out_path.display()
        ));
    }
    let prot = Protection::of_database(req.db_path).map_err(|e| e.to_string())?;
    let mut disk = WithWal::new(req.db_path, req.disk);
    let chosen = schema::choose(&req.generations, &mut disk)?;
    let tmp = temp_path(req.out_path);
    // The output is built under a temporary name and linked into place
    // only when complete: a crash or error never leaves a half-built file
    // at the name the caller gave.
    let file = sidecar::open(&tmp, prot, Create::New).map_err(|e| e.to_string())?;
    let outcome = build(&mut disk, &chosen, &tmp, started);
    let finish = outcome.and_then(|summary| {
        file.sync_all()
            .map_err(|e| format!("cannot sync the output: {e}"))?;
        std::fs::hard_link(&tmp, req.out_path)
            .map_err(|e| format!("cannot create {}: {e}", req.out_path.display()))?;
        Ok(summary)
    });
    let _ = std::fs::remove_file(&tmp);
    for suffix in ["-journal", "-wal", "-shm"] {
        let mut p = tmp.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let summary = finish?;
    let _ = sidecar::sync_parent(req.out_path);
    Ok(summary)
}

fn temp_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(format!(".metadwr-salvage-{}", std::process::id()));
    PathBuf::from(s)
}

/// The header's text encoding as SQLite's SQLITE_UTF8/16LE/16BE constant.
fn encoding_of(h: &crate::dbfile::DbHeader) -> c_int {
    match h.text_encoding {
        2 | 3 => h.text_encoding as c_int,
        _ => 1,
    }
}

fn build(
    disk: &mut WithWal,
    chosen: &schema::Chosen,
    out_path: &Path,
    started: Instant,
) -> Result<String, String> {
    let h = chosen.header;
    let usable = h.checked_usable_size().map_err(|e| e.to_string())?;
    let file_pages = disk
        .file_size()
        .map(|s| u32::try_from(s / u64::from(h.page_size)).unwrap_or(u32::MAX))
        .map_err(|e| format!("cannot read the database size: {e}"))?;
    let header_pages = h.page_count_is_valid().then_some(h.page_count);
    // Walks may follow pointers up to the larger; orphans are looked for
    // only where the database has pages (a file may be longer than the
    // database, with stale pages at the end).
    let max_page = file_pages.max(header_pages.unwrap_or(0)).max(1);
    let orphan_limit = match (header_pages, &chosen.source) {
        (Some(n), Source::Copy { proven: true, .. } | Source::File { complete: true }) => {
            n.min(file_pages)
        }
        _ => file_pages,
    };
    let page_size = h.page_size;
    let wal_pages: std::collections::HashSet<u32> = if disk.frames.page_size == page_size {
        disk.frames.pages.keys().copied().collect()
    } else {
        Default::default()
    };
    let wal_frames = disk.frames.frames;
    let mut read = |pgno: u32, buf: &mut [u8]| -> std::io::Result<()> {
        let p = disk.read_page(pgno, page_size)?;
        buf.copy_from_slice(&p);
        Ok(())
    };
    let mut pages = Pages::new(page_size, usable, max_page, &mut read);
    // A committed WAL frame is newer than any copy: it is what SQLite
    // itself would read, and its checksum vouches for it.
    for (pgno, image) in &chosen.overlay {
        if !wal_pages.contains(pgno) {
            pages.overlay(*pgno, image.clone());
        }
    }
    let (entries, schema_walk) = schema::read_entries(&mut pages, h.text_encoding);
    if entries.is_empty() && schema_walk.pages_unreadable > 0 {
        return Err(format!(
            "the schema ({}) cannot be read",
            chosen.source.describe()
        ));
    }
    reserve_special_pages(&mut pages, &h, usable, max_page);

    let enc = encoding_of(&h);
    let out = Db::open(out_path, "unix")?;
    let scratch = Db::open(Path::new(":memory:"), "unix")?;
    prepare_output(&out, &h).map_err(|e| format!("cannot set up the output: {e}"))?;
    let mut objs = create_schema(&out, &scratch, &entries)?;
    drop(scratch);
    let lost = LostAndFound::create(&out)?;
    let mut writer = Writer {
        db: &out,
        stmts: HashMap::new(),
        lost,
        enc,
        sequence: Vec::new(),
    };
    out.exec("BEGIN").map_err(|e| e.to_string())?;

    // 1. Every table's own B-tree, from its root.
    for obj in objs.iter_mut() {
        let (id, root, rowid) = (obj.id, obj.entry.root, obj.rowid);
        if root == 0 {
            continue;
        }
        obj.walked = if obj.is_table {
            writer.copy_tree(&mut pages, obj, root, Owner::Tree(id), false)?
        } else {
            // Index pages are only claimed: indexes are rebuilt.
            walk::walk(
                &mut pages,
                root,
                rowid,
                Owner::Tree(id),
                false,
                &mut |_, _| {},
            )
        };
    }
    // 2. The freelist, after the walks: a stale header must not claim a
    // page a table still uses.
    let freelist_complete = read_freelist(&mut pages, &h, usable);
    // 3. Pages no walk reached.
    let (orphan_pages, unplaced_pages) = place_orphans(
        &mut pages,
        &mut objs,
        &mut writer,
        &h,
        usable,
        orphan_limit,
        freelist_complete,
    )?;
    writer.finish_sequence()?;
    out.exec("COMMIT").map_err(|e| e.to_string())?;
    let lost_rows = writer.lost.rows;
    drop(writer);

    // 4. What the rows could not be checked against until now.
    let mut late_notes = Vec::new();
    for e in &entries {
        let Some(sql) = &e.sql else { continue };
        let late = match e.kind.as_str() {
            "index" => !is_unique_index(sql),
            "view" | "trigger" => true,
            _ => false,
        };
        if late {
            if let Err(err) = create_one(&out, sql) {
                late_notes.push(format!("{} {}: not created: {err}", e.kind, e.name));
            }
        }
    }
    let elapsed = started.elapsed();
    let summary = write_report(
        &out,
        &objs,
        &chosen.source,
        &schema_walk,
        &late_notes,
        (orphan_pages, unplaced_pages),
        freelist_complete,
        lost_rows,
        pages.io_errors,
        wal_frames,
        elapsed,
    )?;
    finish_output(&out, &chosen.page1, &h).map_err(|e| format!("cannot finish the output: {e}"))?;
    drop(out);
    Ok(summary)
}

/// Claims the pages that are never part of a table: pointer-map pages and
/// the lock-byte page.
fn reserve_special_pages(
    pages: &mut Pages,
    h: &crate::dbfile::DbHeader,
    usable: u32,
    max_page: u32,
) {
    if h.autovacuum_top_root != 0 {
        let step = usable / 5 + 1;
        let mut p = 2u32;
        while p <= max_page {
            pages.claim(p, Owner::Reserved);
            match p.checked_add(step) {
                Some(n) => p = n,
                None => break,
            }
        }
    }
    // The page holding byte offset 2^30 is never used (SQLite's locks).
    let lock_page = (1u64 << 30) / u64::from(h.page_size) + 1;
    if lock_page <= u64::from(max_page) {
        pages.claim(lock_page as u32, Owner::Reserved);
    }
}

/// Claims the freelist's pages; true when it read completely and holds as
/// many pages as the header says.
fn read_freelist(pages: &mut Pages, h: &crate::dbfile::DbHeader, usable: u32) -> bool {
    let max_leaves = usable / 4 - 2;
    let mut count = 0u64;
    let mut next = h.freelist_trunk;
    let mut ok = true;
    while next != 0 {
        if !pages.claim(next, Owner::Free) {
            ok = false;
            break;
        }
        count += 1;
        let Some(trunk) = pages.get(next) else {
            ok = false;
            break;
        };
        let n = be_u32(&trunk, 4).unwrap_or(u32::MAX);
        if n > max_leaves {
            ok = false;
            break;
        }
        for i in 0..n as usize {
            let leaf = be_u32(&trunk, 8 + 4 * i).unwrap_or(0);
            if pages.claim(leaf, Owner::Free) {
                count += 1;
            } else {
                ok = false;
            }
        }
        next = be_u32(&trunk, 0).unwrap_or(0);
    }
    ok && count == u64::from(h.freelist_count)
}

fn prepare_output(out: &Db, h: &crate::dbfile::DbHeader) -> Result<(), SqlError> {
    let auto_vacuum = match (h.autovacuum_top_root, h.incremental_vacuum) {
        (0, _) => 0,
        (_, 0) => 1,
        _ => 2,
    };
    let encoding = match h.text_encoding {
        2 => "UTF-16le",
        3 => "UTF-16be",
        _ => "UTF-8",
    };
    out.exec(&format!(
        "PRAGMA page_size={}; PRAGMA auto_vacuum={auto_vacuum}; PRAGMA encoding='{encoding}';
         PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA trusted_schema=OFF;",
        h.page_size
    ))
}

/// Copies what the header keeps for the application and makes the file
/// durable in the journal mode the original had.
fn finish_output(out: &Db, page1: &[u8], h: &crate::dbfile::DbHeader) -> Result<(), SqlError> {
    // Header offsets 60 (user version) and 68 (application id).
    let field = |at: usize| be_u32(page1, at).unwrap_or(0) as i32;
    out.exec(&format!(
        "PRAGMA user_version={}; PRAGMA application_id={};",
        field(60),
        field(68)
    ))?;
    out.exec("PRAGMA synchronous=FULL; PRAGMA journal_mode=DELETE;")?;
    if h.write_version == 2 {
        out.exec("PRAGMA journal_mode=WAL;")?;
    }
    Ok(())
}

fn is_unique_index(sql: &str) -> bool {
    sql.split_whitespace()
        .nth(1)
        .is_some_and(|w| w.eq_ignore_ascii_case("UNIQUE"))
}

/// Runs one CREATE statement from the schema: exactly one statement, and
/// only the kinds `sqlite_schema` holds.
fn create_one(db: &Db, sql: &str) -> Result<(), SqlError> {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let allowed = words.first().is_some_and(|w| w == "CREATE")
        && matches!(
            words.get(1).map(String::as_str),
            Some(
                "TABLE"
                    | "INDEX"
                    | "UNIQUE"
                    | "VIEW"
                    | "TRIGGER"
                    | "VIRTUAL"
                    | "TEMP"
                    | "TEMPORARY"
            )
        );
    if !allowed {
        return Err(SqlError {
            code: 1,
            message: "not a CREATE statement".into(),
        });
    }
    let mut st = db.prepare(sql)?;
    while st.step()? {}
    Ok(())
}

/// Creates the tables (and unique indexes, which must check the rows as
/// they go in) in the output, and learns each one's layout from a scratch
/// copy of the whole schema.
fn create_schema(out: &Db, scratch: &Db, entries: &[Entry]) -> Result<Vec<Obj>, String> {
    // The scratch database gets every table and index, so that SQLite can
    // describe their layouts; virtual tables are left out (their modules
    // may be missing), their shadow tables are ordinary tables.
    for e in entries {
        if let (Some(sql), "table" | "index") = (&e.sql, e.kind.as_str()) {
            if !e.name.starts_with("sqlite_") && !is_virtual(sql) {
                let _ = create_one(scratch, sql);
            }
        }
    }
    let mut objs = Vec::new();
    // Virtual tables first: creating one creates its shadow tables, which
    // then receive their salvaged rows in place of the initial ones.
    for e in entries.iter().filter(|e| e.kind == "table") {
        if let Some(sql) = e.sql.as_ref().filter(|s| is_virtual(s)) {
            let _ = create_one(out, sql);
        }
    }
    let mut next_id = 1u32;
    for e in entries {
        let is_table = e.kind == "table";
        if !(is_table || e.kind == "index") {
            continue;
        }
        let mut obj = Obj {
            entry: e.clone(),
            id: next_id,
            is_table,
            rowid: true,
            shape: None,
            columns: Vec::new(),
            rowid_name: None,
            index_fields: None,
            index_columns: None,
            index_partial: false,
            created: false,
            note: Vec::new(),
            walked: walk::Walked::default(),
            stats: Stats::default(),
        };
        next_id += 1;
        if is_table {
            describe_table(scratch, &mut obj);
            if e.name.starts_with("sqlite_stat") {
                obj.note
                    .push("statistics are not salvaged; run ANALYZE".into());
                obj.entry.root = 0;
            } else if e.name == "sqlite_sequence" {
                // Created with the first AUTOINCREMENT table; its rows are
                // merged at the end.
                obj.created = true;
            } else if let Some(sql) = &e.sql {
                if is_virtual(sql) {
                    obj.note
                        .push("virtual table: its shadow tables hold its rows".into());
                    obj.entry.root = 0;
                } else {
                    match create_one(out, sql) {
                        Ok(()) => obj.created = true,
                        Err(err) if exists(out, &e.name) => {
                            // A shadow table its virtual table just made.
                            obj.created = out
                                .exec(&format!("DELETE FROM main.{}", quote(&e.name)))
                                .is_ok();
                            if !obj.created {
                                obj.note.push(format!("not created: {err}"));
                            }
                        }
                        Err(err) => obj.note.push(format!("not created: {err}")),
                    }
                }
            }
        } else {
            describe_index(scratch, &mut obj, entries);
            if let Some(sql) = e.sql.as_ref().filter(|s| is_unique_index(s)) {
                if let Err(err) = create_one(out, sql) {
                    obj.note.push(format!("not created: {err}"));
                }
            }
        }
        objs.push(obj);
    }
    Ok(objs)
}

fn is_virtual(sql: &str) -> bool {
    sql.split_whitespace()
        .nth(1)
        .is_some_and(|w| w.eq_ignore_ascii_case("VIRTUAL"))
}

fn exists(db: &Db, name: &str) -> bool {
    db.query(
        "SELECT 1 FROM main.sqlite_schema WHERE type='table' AND name=?1",
        &[Value::Text(name.as_bytes().to_vec())],
    )
    .is_ok_and(|r| !r.is_empty())
}

fn describe_table(scratch: &Db, obj: &mut Obj) {
    let name = obj.entry.name.clone();
    let q = quote(&name);
    let Ok(cols) = scratch.query(&format!("PRAGMA main.table_xinfo({q})"), &[]) else {
        return;
    };
    obj.columns = cols
        .iter()
        .map(|r| Column {
            name: text(&r[1]),
            decl_type: text(&r[2]),
            not_null: int(&r[3]) != 0,
            pk: int(&r[5]) as u32,
            hidden: int(&r[6]) as u32,
        })
        .collect();
    if obj.columns.is_empty() {
        return;
    }
    let sql_upper = obj
        .entry
        .sql
        .clone()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let (without_rowid, strict) = match scratch.query(&format!("PRAGMA main.table_list({q})"), &[])
    {
        Ok(r) if !r.is_empty() => (int(&r[0][4]) != 0, int(&r[0][5]) != 0),
        // Before 3.37 there is no table_list (and no STRICT).
        _ => (
            sql_upper
                .trim_end()
                .trim_end_matches(';')
                .ends_with("WITHOUT ROWID"),
            false,
        ),
    };
    let pk_index = scratch
        .query(&format!("PRAGMA main.index_list({q})"), &[])
        .unwrap_or_default()
        .into_iter()
        .find(|r| text(&r[3]) == "pk")
        .map(|r| text(&r[1]));
    let pk_cols: Vec<usize> = obj
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.pk > 0)
        .map(|(i, _)| i)
        .collect();
    if without_rowid {
        obj.rowid = false;
        let Some(pk) = pk_index else { return };
        let order: Vec<usize> = scratch
            .query(&format!("PRAGMA main.index_xinfo({})", quote(&pk)), &[])
            .unwrap_or_default()
            .iter()
            .filter_map(|r| usize::try_from(int(&r[1])).ok())
            .collect();
        obj.shape = Some(Shape::new(&obj.columns, strict, Some(&order), None));
        return;
    }
    // INTEGER PRIMARY KEY aliases the rowid, except the DESC quirk, which
    // makes an ordinary primary-key index (so index_list shows one).
    let ipk = match pk_cols.as_slice() {
        [i] if obj.columns[*i].decl_type.eq_ignore_ascii_case("INTEGER") && pk_index.is_none() => {
            Some(*i)
        }
        _ => None,
    };
    obj.rowid_name = ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|n| !obj.columns.iter().any(|c| c.name.eq_ignore_ascii_case(n)));
    if ipk.is_none() && obj.rowid_name.is_none() {
        obj.note
            .push("every name for the rowid is a column name: rowids are not kept".into());
    }
    obj.shape = Some(Shape::new(&obj.columns, strict, None, ipk));
}

fn describe_index(scratch: &Db, obj: &mut Obj, entries: &[Entry]) {
    obj.rowid = false;
    let rows = scratch
        .query(
            &format!("PRAGMA main.index_xinfo({})", quote(&obj.entry.name)),
            &[],
        )
        .unwrap_or_default();
    let of_rowid_table = !entries.iter().any(|e| {
        e.kind == "table"
            && e.name == obj.entry.tbl_name
            && e.sql.as_ref().is_some_and(|s| {
                s.to_ascii_uppercase()
                    .trim_end()
                    .trim_end_matches(';')
                    .ends_with("WITHOUT ROWID")
            })
    });
    if !rows.is_empty() {
        obj.index_fields = Some((rows.len(), of_rowid_table));
    }
    // index_xinfo: (seqno, cid, name, desc, coll, key); cid -2 is an
    // expression. A WHERE clause makes the index partial.
    let partial = obj
        .entry
        .sql
        .as_ref()
        .is_some_and(|s| s.to_ascii_uppercase().contains("WHERE"));
    let keys: Vec<i64> = rows
        .iter()
        .filter(|r| int(&r[5]) == 1)
        .map(|r| int(&r[1]))
        .collect();
    obj.index_partial = partial;
    if !keys.is_empty() && keys.iter().all(|&c| c >= 0) {
        obj.index_columns = Some(keys.into_iter().map(|c| c as usize).collect());
    }
}

/// Reads the indexes of the tables that lost pages, as evidence of which
/// rows those tables had (see `evidence.rs`).
fn index_evidence(pages: &mut Pages, objs: &[Obj]) -> HashMap<u32, Vec<IndexEvidence>> {
    let mut out: HashMap<u32, Vec<IndexEvidence>> = HashMap::new();
    let mut held = 0usize;
    for ix in objs.iter().filter(|o| !o.is_table && o.entry.root != 0) {
        let Some(cols) = &ix.index_columns else {
            continue;
        };
        let Some(t) = objs.iter().find(|t| {
            t.is_table
                && t.rowid
                && t.entry.name == ix.entry.tbl_name
                && t.walked.pages_unreadable > 0
        }) else {
            continue;
        };
        let Some(shape) = &t.shape else { continue };
        let fields: Option<Vec<usize>> = cols
            .iter()
            .map(|&c| shape.fields.iter().position(|&(col, _)| col == c))
            .collect();
        let Some(fields) = fields else { continue };
        let complete = ix.walked.pages_unreadable == 0 && !ix.index_partial;
        let mut ev = IndexEvidence::new(fields, shape.ipk_field, complete);
        let mut sound = true;
        walk::walk(
            pages,
            ix.entry.root,
            false,
            Owner::Tree(ix.id),
            true,
            &mut |_, row| {
                let decoded = row.payload.ok().and_then(|p| record::decode(&p).ok());
                if !decoded.is_some_and(|v| ev.add(&v)) || held + ev.len() > evidence::MAX_ENTRIES {
                    sound = false;
                }
            },
        );
        if sound && !ev.is_empty() {
            held += ev.len();
            out.entry(t.id).or_default().push(ev);
        }
    }
    out
}

/// The `lost_and_found` table and how many value columns it has so far.
struct LostAndFound {
    width: usize,
    rows: u64,
}

impl LostAndFound {
    fn create(out: &Db) -> Result<LostAndFound, String> {
        out.exec(
            "CREATE TABLE lost_and_found(pgno INTEGER, cell INTEGER, rowid_or_null INTEGER, \
             candidates TEXT, reason TEXT, nfield INTEGER)",
        )
        .map_err(|e| format!("cannot create lost_and_found: {e}"))?;
        Ok(LostAndFound { width: 0, rows: 0 })
    }
}

/// Inserts rows into the output, with a prepared statement per table and
/// field count.
struct Writer<'a> {
    db: &'a Db,
    stmts: HashMap<(u32, usize), Stmt<'a>>,
    lost: LostAndFound,
    enc: c_int,
    /// Rows of sqlite_sequence, merged at the end.
    sequence: Vec<(Value, Value)>,
}

impl Writer<'_> {
    /// Writes one row read from `obj`'s tree (or placed there from an
    /// orphan page). Errors only when the output itself fails.
    fn put(&mut self, obj: &mut Obj, mut row: Row, from_orphan: bool) -> Result<(), String> {
        let payload = match std::mem::replace(&mut row.payload, Err("taken")) {
            Ok(p) => p,
            Err(_) => {
                obj.stats.rows_lost += 1;
                return Ok(());
            }
        };
        let Ok(values) = record::decode(&payload) else {
            obj.stats.rows_lost += 1;
            return Ok(());
        };
        let types = record::serial_types(&payload).unwrap_or_default();
        let fits = obj.shape.as_ref().is_some_and(|s| s.fits(&types));
        if !fits || !obj.created {
            let why = if !obj.created {
                "its table could not be created"
            } else {
                "does not fit the table's columns"
            };
            obj.stats.rows_lost_and_found += 1;
            return self.put_lost_and_found(
                &row,
                obj.rowid.then_some(row.rowid),
                &obj.entry.name,
                why,
                values,
            );
        }
        if obj.entry.name == "sqlite_sequence" {
            if values.len() >= 2 {
                self.sequence.push((values[0].clone(), values[1].clone()));
                obj.stats.rows += 1;
            }
            return Ok(());
        }
        let key = (obj.id, values.len());
        if !self.stmts.contains_key(&key) {
            let sql = insert_sql(obj, values.len());
            let st = self
                .db
                .prepare(&sql)
                .map_err(|e| format!("cannot write to {}: {e}", obj.entry.name))?;
            self.stmts.insert(key, st);
        }
        let shape = obj.shape.as_ref().expect("fits implies a shape");
        let mut bound = Vec::with_capacity(values.len() + 1);
        let ipk = shape.ipk_field.is_some();
        if obj.rowid && (ipk || obj.rowid_name.is_some()) {
            bound.push(Value::Int(row.rowid));
        }
        for (i, v) in values.iter().enumerate() {
            let col = &obj.columns[shape.fields[i].0];
            if Some(i) == shape.ipk_field || col.is_generated() {
                continue;
            }
            bound.push(v.clone());
        }
        let st = self.stmts.get_mut(&key).expect("inserted above");
        match st.run(&bound, self.enc) {
            Ok(()) => {
                obj.stats.rows += 1;
                if from_orphan {
                    obj.stats.rows_from_orphans += 1;
                }
                Ok(())
            }
            Err(e) if e.is_constraint() => {
                obj.stats.rows_lost_and_found += 1;
                let why = format!("violates a constraint of the table: {e}");
                self.put_lost_and_found(
                    &row,
                    obj.rowid.then_some(row.rowid),
                    &obj.entry.name,
                    &why,
                    values,
                )
            }
            Err(e) => Err(format!("cannot write to {}: {e}", obj.entry.name)),
        }
    }

    /// Walks the tree at `root` as `owner` and writes each row into `obj`
    /// (rows from an orphan group when `owner` is a group, whose pages the
    /// first pass already claimed).
    fn copy_tree(
        &mut self,
        pages: &mut Pages,
        obj: &mut Obj,
        root: u32,
        owner: Owner,
        revisit: bool,
    ) -> Result<walk::Walked, String> {
        let from_orphan = matches!(owner, Owner::Group(_));
        let mut failure = None;
        let walked = walk::walk(pages, root, obj.rowid, owner, revisit, &mut |_, row| {
            if failure.is_none() {
                if let Err(e) = self.put(obj, row, from_orphan) {
                    failure = Some(e);
                }
            }
        });
        failure.map_or(Ok(walked), Err)
    }

    fn put_lost_and_found(
        &mut self,
        row: &Row,
        rowid: Option<i64>,
        candidates: &str,
        reason: &str,
        mut values: Vec<Value>,
    ) -> Result<(), String> {
        let nfield = values.len();
        values.truncate(LOST_AND_FOUND_MAX_FIELDS);
        while self.lost.width < values.len() {
            self.db
                .exec(&format!(
                    "ALTER TABLE lost_and_found ADD COLUMN c{}",
                    self.lost.width
                ))
                .map_err(|e| format!("cannot widen lost_and_found: {e}"))?;
            self.lost.width += 1;
            // The prepared inserts into lost_and_found name its columns.
            self.stmts.retain(|k, _| k.0 != 0);
        }
        let key = (0, values.len());
        if !self.stmts.contains_key(&key) {
            let cols: String = (0..values.len()).map(|i| format!(", c{i}")).collect();
            let params: String = (0..values.len()).map(|i| format!(", ?{}", i + 7)).collect();
            let sql = format!(
                "INSERT INTO lost_and_found(pgno, cell, rowid_or_null, candidates, reason, nfield{cols}) \
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6{params})"
            );
            let st = self
                .db
                .prepare(&sql)
                .map_err(|e| format!("lost_and_found: {e}"))?;
            self.stmts.insert(key, st);
        }
        let mut bound = vec![
            Value::Int(i64::from(row.pgno)),
            Value::Int(i64::from(row.cell)),
            rowid.map_or(Value::Null, Value::Int),
            Value::Text(candidates.as_bytes().to_vec()),
            Value::Text(reason.as_bytes().to_vec()),
            Value::Int(nfield as i64),
        ];
        bound.extend(values);
        let enc = self.enc;
        let st = self.stmts.get_mut(&key).expect("inserted above");
        // Metadata is UTF-8 text; the values keep the database encoding.
        for (i, v) in bound.iter().enumerate() {
            let e = if i < 6 { 1 } else { enc };
            st.bind(i as c_int + 1, v, e)
                .map_err(|e| format!("lost_and_found: {e}"))?;
        }
        let r = st.finish();
        st.reset();
        r.map_err(|e| format!("lost_and_found: {e}"))?;
        self.lost.rows += 1;
        Ok(())
    }

    /// Puts the salvaged AUTOINCREMENT counters back, never below a rowid
    /// now in the table, so no new row reuses an old id.
    fn finish_sequence(&mut self) -> Result<(), String> {
        for (name, seq) in std::mem::take(&mut self.sequence) {
            let params = [name, seq];
            self.db
                .query(
                    "UPDATE sqlite_sequence SET seq = max(seq, ?2) WHERE name = ?1",
                    &params,
                )
                .and_then(|_| {
                    self.db.query(
                        "INSERT INTO sqlite_sequence(name, seq) SELECT ?1, ?2 \
                         WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)",
                        &params,
                    )
                })
                .map_err(|e| format!("sqlite_sequence: {e}"))?;
        }
        Ok(())
    }
}

/// `INSERT INTO t(rowid?, columns of the first n fields) VALUES(...)`.
fn insert_sql(obj: &Obj, n: usize) -> String {
    let shape = obj
        .shape
        .as_ref()
        .expect("only tables with a shape get rows");
    let mut names = Vec::new();
    if obj.rowid {
        if let Some(i) = shape.ipk_field {
            names.push(quote(&obj.columns[shape.fields[i].0].name));
        } else if let Some(r) = obj.rowid_name {
            names.push(r.to_string());
        }
    }
    for (i, &(c, _)) in shape.fields.iter().take(n).enumerate() {
        let col = &obj.columns[c];
        if Some(i) == shape.ipk_field || col.is_generated() {
            continue;
        }
        names.push(quote(&col.name));
    }
    let params: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    if names.is_empty() {
        return format!("INSERT INTO main.{} DEFAULT VALUES", quote(&obj.entry.name));
    }
    format!(
        "INSERT INTO main.{}({}) VALUES({})",
        quote(&obj.entry.name),
        names.join(", "),
        params.join(", ")
    )
}

/// Finds the pages no walk reached, groups them into subtrees, and places
/// each group by the attribution rule. Returns the number of pages in
/// orphan groups, and of those in groups no table was given.
#[allow(clippy::too_many_arguments)]
fn place_orphans(
    pages: &mut Pages,
    objs: &mut [Obj],
    writer: &mut Writer,
    h: &crate::dbfile::DbHeader,
    usable: u32,
    limit: u32,
    freelist_complete: bool,
) -> Result<(u64, u64), String> {
    // One pass in file order: which unclaimed pages are B-tree pages.
    let mut orphans: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut order = Vec::new();
    for pgno in pages.unclaimed() {
        if pgno > limit {
            break;
        }
        let Some(image) = pages.get(pgno) else {
            continue;
        };
        if let Ok(page) = btree::parse(pgno, &image, usable, pages.max_page) {
            orphans.insert(pgno, page.children().collect());
            order.push(pgno);
        }
    }
    let mut is_child = std::collections::HashSet::new();
    for children in orphans.values() {
        for c in children {
            if orphans.contains_key(c) {
                is_child.insert(*c);
            }
        }
    }
    let trees: Vec<Tree> = objs
        .iter()
        .map(|o| Tree {
            id: o.id,
            is_table: o.is_table && o.shape.is_some() && o.created,
            rowid: o.rowid,
            gaps: o.walked.gaps.clone(),
            incomplete: o.walked.pages_unreadable > 0,
            leaf_depth: o.walked.leaf_depth,
            occupied: Vec::new(),
        })
        .collect();
    let roots: HashMap<u32, u32> = objs
        .iter()
        .filter(|o| o.entry.root != 0)
        .map(|o| (o.entry.root, o.id))
        .collect();
    let evidence = index_evidence(pages, objs);
    let mut ptrmaps = PtrmapReader::new(h.autovacuum_top_root != 0, usable);
    let mut count = 0u64;
    // First pass over every group: the evidence. Which shapes fit every
    // record, which keys and height it has, what the pointer map says.
    let mut pending: Vec<Pending> = Vec::new();
    for (g, top) in order
        .into_iter()
        .filter(|p| !is_child.contains(p))
        .enumerate()
    {
        let g = g as u32;
        if pages.owner(top) != Owner::Unclaimed {
            continue;
        }
        let rowid = pages
            .get(top)
            .and_then(|i| btree::parse(top, &i, usable, pages.max_page).ok())
            .is_some_and(|p| p.kind.is_table());
        let mut fits: Vec<u32> = trees
            .iter()
            .filter(|t| t.rowid == rowid)
            .map(|t| t.id)
            .collect();
        let mut rows = 0u64;
        let mut schema_like = false;
        let walked = walk::walk(pages, top, rowid, Owner::Group(g), false, &mut |_, row| {
            rows += 1;
            let Ok(payload) = &row.payload else { return };
            let Ok(types) = record::serial_types(payload) else {
                fits.clear();
                return;
            };
            if fits.iter().any(|id| evidence.contains_key(id)) {
                if let Ok(values) = record::decode(payload) {
                    fits.retain(|id| {
                        evidence
                            .get(id)
                            .is_none_or(|evs| evs.iter().all(|e| e.admits(row.rowid, &values)))
                    });
                }
            }
            if rowid && looks_like_schema_row(payload, &types) {
                schema_like = true;
            }
            fits.retain(|id| {
                let o = &objs[(*id - 1) as usize];
                match (&o.shape, o.index_fields) {
                    (Some(s), _) => s.fits(&types),
                    (None, Some((n, rowid_last))) => {
                        types.len() == n
                            && (!rowid_last
                                || types
                                    .last()
                                    .is_some_and(|&t| record::class_of(t) == Class::Integer))
                    }
                    _ => false,
                }
            });
        });
        count += walked.claimed.len() as u64;
        let group = Group {
            rowid,
            key_range: walked.key_range,
            height: walked.leaf_depth,
            fits,
            ptrmap: ptrmaps.verdict(pages, top, &roots),
        };
        let settled = if rows == 0 {
            Some(Verdict::Drop("no rows"))
        } else if schema_like {
            Some(Verdict::Drop("looks like sqlite_schema pages"))
        } else {
            None
        };
        pending.push(Pending {
            g,
            top,
            group,
            walked,
            verdict: settled,
        });
    }
    // Then the rule, until nothing changes: a group placed in a table
    // occupies its rowids there, which may leave a single candidate for
    // another group (two groups of one table never share a rowid range).
    let mut trees = trees;
    loop {
        let mut progress = false;
        for p in pending.iter_mut().filter(|p| p.verdict.is_none()) {
            if let Verdict::Table(id) = attribute::attribute(&p.group, &trees, freelist_complete) {
                if let (Some(t), Some(range)) =
                    (trees.iter_mut().find(|t| t.id == id), p.group.key_range)
                {
                    t.occupied.push(range);
                }
                p.verdict = Some(Verdict::Table(id));
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    // Second pass: the rows, to where the verdict sends them.
    let mut unplaced = 0u64;
    for p in pending {
        let verdict = p
            .verdict
            .unwrap_or_else(|| attribute::attribute(&p.group, &trees, freelist_complete));
        let (g, top, rowid) = (p.g, p.top, p.group.rowid);
        let mut failure = None;
        match verdict {
            Verdict::Drop(_) => unplaced += p.walked.claimed.len() as u64,
            Verdict::Table(id) => {
                let obj = &mut objs[(id - 1) as usize];
                obj.stats.pages_from_orphans += p.walked.pages_read;
                writer.copy_tree(pages, obj, top, Owner::Group(g), true)?;
                pages.reassign(&p.walked.claimed, Owner::Group(g), Owner::Tree(id));
            }
            Verdict::LostAndFound { candidates, reason } => {
                unplaced += p.walked.claimed.len() as u64;
                let names: Vec<&str> = candidates
                    .iter()
                    .map(|id| objs[(*id - 1) as usize].entry.name.as_str())
                    .collect();
                let names = names.join(", ");
                walk::walk(pages, top, rowid, Owner::Group(g), true, &mut |_, row| {
                    if failure.is_some() {
                        return;
                    }
                    let Ok(payload) = &row.payload else { return };
                    let Ok(values) = record::decode(payload) else {
                        return;
                    };
                    let rowid = rowid.then_some(row.rowid);
                    if let Err(e) = writer.put_lost_and_found(&row, rowid, &names, &reason, values)
                    {
                        failure = Some(e);
                    }
                });
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok((count, unplaced))
}

/// An orphan group between the two passes.
struct Pending {
    g: u32,
    top: u32,
    group: Group,
    walked: walk::Walked,
    verdict: Option<Verdict>,
}

/// A row of sqlite_schema: ('table'|'index'|'view'|'trigger', name,
/// tbl_name, rootpage, sql).
fn looks_like_schema_row(payload: &[u8], types: &[u64]) -> bool {
    if types.len() != 5 || record::class_of(types[0]) != Class::Text {
        return false;
    }
    let Ok(v) = record::decode(payload) else {
        return false;
    };
    matches!(&v[0], Value::Text(t) if [&b"table"[..], b"index", b"view", b"trigger"].contains(&t.as_slice()))
}

/// Reads pointer-map entries, trusting a pointer-map page only when all of
/// it is well formed.
struct PtrmapReader {
    enabled: bool,
    usable: u32,
    cache: HashMap<u32, Option<Vec<u8>>>,
}

impl PtrmapReader {
    fn new(enabled: bool, usable: u32) -> Self {
        PtrmapReader {
            enabled,
            usable,
            cache: HashMap::new(),
        }
    }

    fn entry(&mut self, pages: &mut Pages, pgno: u32) -> Option<(u8, u32)> {
        let (map, off) = attribute::ptrmap_location(pgno, self.usable)?;
        let usable = self.usable;
        let max_page = pages.max_page;
        let image = self
            .cache
            .entry(map)
            .or_insert_with(|| {
                pages
                    .get(map)
                    .filter(|i| attribute::ptrmap_page_plausible(map, i, usable, max_page))
            })
            .as_ref()?;
        let e = image.get(off..off + 5)?;
        Some((e[0], u32::from_be_bytes([e[1], e[2], e[3], e[4]])))
    }

    /// Follows parents up from `top` until a page some tree owns.
    fn verdict(&mut self, pages: &mut Pages, top: u32, roots: &HashMap<u32, u32>) -> Ptrmap {
        if !self.enabled {
            return Ptrmap::Unknown;
        }
        let mut p = top;
        for _ in 0..walk::MAX_DEPTH {
            match self.entry(pages, p) {
                Some((1, _)) => {
                    return roots
                        .get(&p)
                        .map_or(Ptrmap::StrayRoot, |&id| Ptrmap::Owner(id))
                }
                Some((2, _)) if p == top => return Ptrmap::Free,
                Some((5, parent)) => match pages.owner(parent) {
                    Owner::Tree(0) => return Ptrmap::Unknown,
                    Owner::Tree(id) => return Ptrmap::Owner(id),
                    Owner::Unclaimed | Owner::Group(_) => p = parent,
                    _ => return Ptrmap::Unknown,
                },
                _ => return Ptrmap::Unknown,
            }
        }
        Ptrmap::Unknown
    }
}

#[allow(clippy::too_many_arguments)]
fn write_report(
    out: &Db,
    objs: &[Obj],
    source: &Source,
    schema_walk: &walk::Walked,
    late_notes: &[String],
    (orphan_pages, unplaced_pages): (u64, u64),
    freelist_complete: bool,
    lost_and_found: u64,
    io_errors: u64,
    wal_frames: u64,
    elapsed: std::time::Duration,
) -> Result<String, String> {
    let e = |e: SqlError| format!("cannot write the report: {e}");
    out.exec(
        "CREATE TABLE metadwr_salvage_report(name TEXT, type TEXT, rows_salvaged INTEGER, \
         rows_from_orphan_pages INTEGER, rows_to_lost_and_found INTEGER, rows_lost INTEGER, \
         pages_read INTEGER, pages_unreadable INTEGER, note TEXT);
         CREATE TABLE metadwr_salvage_info(key TEXT, value);",
    )
    .map_err(e)?;
    let mut total = Stats::default();
    let mut tables = 0;
    let mut unreadable = 0u64;
    for o in objs {
        let mut note = o.note.clone();
        if let Some((p, why)) = o.walked.first_reject {
            note.push(format!("first unreadable page {p}: {why}"));
        }
        out.query(
            "INSERT INTO metadwr_salvage_report VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &[
                Value::Text(o.entry.name.clone().into_bytes()),
                Value::Text(o.entry.kind.clone().into_bytes()),
                Value::Int(o.stats.rows as i64),
                Value::Int(o.stats.rows_from_orphans as i64),
                Value::Int(o.stats.rows_lost_and_found as i64),
                Value::Int(o.stats.rows_lost as i64),
                Value::Int((o.walked.pages_read + o.stats.pages_from_orphans) as i64),
                Value::Int(o.walked.pages_unreadable as i64),
                if note.is_empty() {
                    Value::Null
                } else {
                    Value::Text(note.join("; ").into_bytes())
                },
            ],
        )
        .map_err(e)?;
        if o.is_table {
            tables += 1;
            total.rows += o.stats.rows;
            total.rows_from_orphans += o.stats.rows_from_orphans;
            total.rows_lost += o.stats.rows_lost;
        }
        unreadable += o.walked.pages_unreadable;
    }
    let ms = elapsed.as_millis() as i64;
    let info: Vec<(&str, Value)> = vec![
        ("schema_source", Value::Text(source.describe().into_bytes())),
        (
            "schema_generation",
            match source {
                Source::Copy { generation, .. } => Value::Int(*generation as i64),
                _ => Value::Null,
            },
        ),
        (
            "schema_proven_current",
            Value::Int(matches!(
                source,
                Source::Copy { proven: true, .. } | Source::File { complete: true }
            ) as i64),
        ),
        (
            "schema_pages_unreadable",
            Value::Int(schema_walk.pages_unreadable as i64),
        ),
        ("rows_salvaged", Value::Int(total.rows as i64)),
        (
            "rows_from_orphan_pages",
            Value::Int(total.rows_from_orphans as i64),
        ),
        ("rows_in_lost_and_found", Value::Int(lost_and_found as i64)),
        ("rows_lost", Value::Int(total.rows_lost as i64)),
        ("pages_unreadable", Value::Int(unreadable as i64)),
        ("orphan_pages", Value::Int(orphan_pages as i64)),
        (
            "orphan_pages_not_attributed",
            Value::Int(unplaced_pages as i64),
        ),
        ("freelist_complete", Value::Int(freelist_complete as i64)),
        ("read_errors", Value::Int(io_errors as i64)),
        ("wal_frames_read", Value::Int(wal_frames as i64)),
        ("milliseconds", Value::Int(ms)),
        (
            "notes",
            if late_notes.is_empty() {
                Value::Null
            } else {
                Value::Text(late_notes.join("; ").into_bytes())
            },
        ),
    ];
    for (k, v) in info {
        out.query(
            "INSERT INTO metadwr_salvage_info VALUES(?1, ?2)",
            &[Value::Text(k.as_bytes().to_vec()), v],
        )
        .map_err(e)?;
    }
    Ok(format!(
        "salvaged {} rows into {tables} tables ({} from unreachable pages), {lost_and_found} in lost_and_found, \
         {} lost; {unreadable} pages unreadable; schema from {}; {ms} ms",
        total.rows,
        total.rows_from_orphans,
        total.rows_lost,
        source.describe()
    ))
}
