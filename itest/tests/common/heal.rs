//! Helpers for the self-healing tests (`healing.rs`, `healing_log.rs`,
//! `staleness.rs`, `hostile_dwr.rs`): what a reader sees, the status
//! prefixes, byte-level patches, and "nothing on disk changed" snapshots.

use super::*;
use rusqlite::Connection;
use std::path::Path;

/// The 32 bytes the reference writes over the start of a file:
/// `3333333333sss` followed by `3`s.
pub const REFERENCE_PATTERN: &[u8; 32] = b"3333333333sss3333333333333333333";

/// What a reader of a database sees: its whole content, or the primary
/// SQLite result code of the first error.
pub type Outcome = Result<Content, i32>;

/// Reads the whole content on `conn`, reducing an error to its primary code.
pub fn view(conn: &Connection) -> Outcome {
    content(conn).map_err(|e| {
        primary_code(&e).unwrap_or_else(|| panic!("reading gave a non-SQLite error: {e}"))
    })
}

/// What a program without the extension sees, on a fresh `vfs=unix`
/// connection.
pub fn plain_view(db: &Path) -> Outcome {
    let conn = open_plain(db).map_err(|e| primary_code(&e).unwrap_or(-1))?;
    view(&conn)
}

/// Short description of an outcome, for assertion messages (never the whole
/// content).
pub fn describe(o: &Outcome) -> String {
    match o {
        Ok(c) => format!(
            "a readable database with {} tables ({:?}…)",
            c.tables.len(),
            c.tables.keys().take(6).collect::<Vec<_>>()
        ),
        Err(code) => format!("SQLite error {code}"),
    }
}

/// Asserts `o` is SQLite's usual answer to a damaged header or schema:
/// SQLITE_NOTADB (26) or SQLITE_CORRUPT (11).
#[track_caller]
pub fn assert_usual_error(o: &Outcome, what: &str) {
    assert!(
        matches!(o, Err(26) | Err(11)),
        "{what}: expected SQLite's usual error (26 or 11), got {}",
        describe(o)
    );
}

/// Asserts the reader saw exactly `expected`.
#[track_caller]
pub fn assert_sees(o: &Outcome, expected: &Content, what: &str) {
    match o {
        Ok(c) => assert_same_content(expected, c, what),
        Err(code) => panic!("{what}: expected the healed content, got SQLite error {code}"),
    }
}

/// Asserts `PRAGMA meta_double_write` on `conn` starts with `prefix`.
#[track_caller]
pub fn assert_status_prefix(conn: &Connection, prefix: &str, what: &str) {
    let s = query_msg(conn, "PRAGMA meta_double_write")
        .unwrap_or_else(|e| panic!("{what}: PRAGMA meta_double_write failed: {e}"));
    assert!(
        s.starts_with(prefix),
        "{what}: PRAGMA meta_double_write answered {s:?}, expected a string starting {prefix:?}"
    );
}

/// Writes `bytes` at `offset` of `path`, in place, and syncs.
pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for writing: {e}", path.display()));
    f.write_all_at(bytes, offset)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    f.sync_all().unwrap();
}

/// Flips bit `bit` (0..8) of the byte at `offset` of `path`.
pub fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let bytes = std::fs::read(path).unwrap();
    write_at(path, offset, &[bytes[offset as usize] ^ (1 << bit)]);
}

/// Offset of the first occurrence of `needle` in the file at `path`.
pub fn find_in_file(path: &Path, needle: &[u8]) -> Option<u64> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p as u64)
}

/// Creates a protected database with `n` small tables (see [`add_tables`])
/// at an explicit page size; closes it (checkpointing a WAL) and returns its
/// content.
pub fn make_protected_ps(path: &Path, journal: &str, page_size: u32, n: usize) -> Content {
    let conn = open(path);
    conn.execute_batch(&format!("PRAGMA page_size={page_size};"))
        .unwrap();
    let mode = query_str(&conn, &format!("PRAGMA journal_mode={journal}")).unwrap();
    assert_eq!(mode, journal);
    enable(&conn);
    add_tables(&conn, "t", n);
    let c = content(&conn).unwrap();
    close_checkpointed(conn);
    assert_eq!(page_size_of(path), page_size);
    c
}

/// Creates a protected database with the deterministic schema `size` (see
/// [`super::schema`]) at `page_size`; closes it and returns its content.
pub fn make_protected_schema(
    path: &Path,
    journal: &str,
    page_size: u32,
    size: super::schema::SchemaSize,
) -> Content {
    let conn = open(path);
    conn.execute_batch(&format!("PRAGMA page_size={page_size};"))
        .unwrap();
    let mode = query_str(&conn, &format!("PRAGMA journal_mode={journal}")).unwrap();
    assert_eq!(mode, journal);
    enable(&conn);
    super::schema::build(&conn, size);
    let c = content(&conn).unwrap();
    close_checkpointed(conn);
    c
}

/// A plain `vfs=unix` connection reads `db`, `integrity_check` says ok and
/// the content is `expected`.
#[track_caller]
pub fn assert_plain_reads(db: &Path, expected: &Content, what: &str) {
    let conn = open_plain(db).unwrap_or_else(|e| panic!("{what}: plain open: {e}"));
    assert_integrity_ok(&conn, &format!("{what} (plain connection)"));
    match content(&conn) {
        Ok(c) => assert_same_content(expected, &c, &format!("{what} (plain connection)")),
        Err(e) => panic!("{what}: a plain connection cannot read the database: {e}"),
    }
}

/// The bytes of a database and its `-dwr`, and whether a quarantine file
/// exists: "nothing on disk changed" is checked against this.
pub struct DiskState {
    db: std::path::PathBuf,
    db_bytes: Vec<u8>,
    dwr_bytes: Option<Vec<u8>>,
    quarantine: Option<Vec<u8>>,
}

impl DiskState {
    pub fn take(db: &Path) -> DiskState {
        DiskState {
            db: db.to_owned(),
            db_bytes: std::fs::read(db).unwrap(),
            dwr_bytes: read_regular(&sidecar(db, "-dwr")),
            quarantine: read_regular(&sidecar(db, "-dwr-quarantine")),
        }
    }

    /// The database file is byte-identical and no quarantine record was
    /// added.
    #[track_caller]
    pub fn assert_db_unchanged(&self, what: &str) {
        let now = std::fs::read(&self.db).unwrap();
        if now != self.db_bytes {
            let first = now
                .iter()
                .zip(&self.db_bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(now.len().min(self.db_bytes.len()));
            panic!(
                "{what}: the database file changed ({} -> {} bytes, first difference at offset {first})",
                self.db_bytes.len(),
                now.len()
            );
        }
        let q = read_regular(&sidecar(&self.db, "-dwr-quarantine"));
        assert!(
            q == self.quarantine,
            "{what}: the quarantine file was {} (it must not be written when nothing is restored)",
            if self.quarantine.is_none() {
                "created"
            } else {
                "changed"
            }
        );
    }

    /// As [`assert_db_unchanged`](Self::assert_db_unchanged), and the `-dwr`
    /// is byte-identical too.
    #[track_caller]
    pub fn assert_all_unchanged(&self, what: &str) {
        self.assert_db_unchanged(what);
        let now = read_regular(&sidecar(&self.db, "-dwr"));
        assert!(
            now == self.dwr_bytes,
            "{what}: the -dwr changed ({:?} -> {:?} bytes)",
            self.dwr_bytes.as_ref().map(Vec::len),
            now.as_ref().map(Vec::len)
        );
    }

    pub fn db_bytes(&self) -> &[u8] {
        &self.db_bytes
    }
}

/// The bytes of a regular file (not following symlinks), or `None`.
fn read_regular(path: &Path) -> Option<Vec<u8>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => std::fs::read(path).ok(),
        _ => None,
    }
}

/// Opens `db` through metadwr after the damage and reads everything: the
/// heal must be invisible. Returns the connection (still open) after
/// checking the content, `integrity_check` and the `recovered` status.
#[track_caller]
pub fn open_and_expect_healed(db: &Path, expected: &Content, what: &str) -> Connection {
    let conn = open(db);
    let o = view(&conn);
    assert_sees(&o, expected, &format!("{what}: reading through metadwr"));
    assert_integrity_ok(&conn, &format!("{what}: healed connection"));
    assert_status_prefix(&conn, "enabled (recovered: ", what);
    conn
}

/// After a heal with no other connection around: the file on disk equals
/// `original` (change counter aside), the damaged images are quarantined, a
/// plain connection reads `expected`, and `PRAGMA meta_double_write=enabled`
/// answers `enabled` and resets the status.
#[track_caller]
pub fn assert_repaired(
    db: &Path,
    conn: &Connection,
    original: &[u8],
    damaged: &BTreeMap<u32, Vec<u8>>,
    expected: &Content,
    what: &str,
) {
    assert_file_matches(db, original, &format!("{what}: repaired file"));
    assert_quarantined(db, damaged, what);
    assert_plain_reads(db, expected, what);
    assert_eq!(
        query_msg(conn, "PRAGMA meta_double_write=enabled"),
        Ok("enabled".to_string()),
        "{what}: re-enabling after a heal"
    );
    assert_eq!(
        dwr_status(conn),
        "enabled",
        "{what}: status after re-enabling"
    );
}

/// Runs `f` on another thread and fails if it does not finish within
/// `secs` seconds: a hostile input must not hang the library.
#[track_caller]
pub fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(()) => handle.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {secs} s (hang?)")
        }
    }
}
