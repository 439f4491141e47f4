//! Helpers the unit tests share.

use std::path::Path;

/// Runs `sql` with the stock `sqlite3` shell on `db` (no extension) and
/// returns what it prints; fails the test when the shell fails. Real
/// database images come from here, so that the readers are tested on
/// what SQLite itself writes.
pub fn sqlite3_shell(db: &Path, sql: &str) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("/usr/bin/sqlite3")
        .arg("-batch")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sqlite3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sqlite3 failed on {sql:.200}");
    String::from_utf8(out.stdout).unwrap()
}
