//! The salvage's output database, written through SQLite's C API (the
//! API table the host handed the extension).
//!
//! The `unsafe` here rests on two type invariants. A [`Db`] owns the handle
//! `sqlite3_open_v2` gave it (null only when that failed for lack of
//! memory), closes it once, on drop, and is neither `Send` nor `Sync`, so
//! every call on it comes from the thread that opened it. A [`Stmt`] owns a
//! live statement of a `Db` it borrows, so the connection outlives it, and
//! finalizes it once, on drop. Calls go through the API table, which the
//! entry point installs before anything here can run (libsqlite3-sys
//! checks that it is there).

use super::record::Value;
use libsqlite3_sys as ffi;
use std::ffi::{c_int, CStr, CString};
use std::path::Path;

/// An open output (or scratch) database. Closed on drop.
pub struct Db {
    db: *mut ffi::sqlite3,
}

/// A failed statement: SQLite's primary result code and message.
#[derive(Debug)]
pub struct SqlError {
    pub code: c_int,
    pub message: String,
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl SqlError {
    pub fn is_constraint(&self) -> bool {
        self.code & 0xff == ffi::SQLITE_CONSTRAINT
    }
}

impl Db {
    /// Opens `path` (":memory:" for a scratch database) through the VFS
    /// `vfs`, read-write, creating it if missing.
    pub fn open(path: &Path, vfs: &str) -> Result<Db, String> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| "the output path contains a NUL byte".to_string())?;
        let c_vfs = CString::new(vfs).map_err(|_| "bad VFS name".to_string())?;
        let mut db = std::ptr::null_mut();
        // SAFETY: both strings are NUL-terminated and outlive the call; db
        // receives a handle (even on failure) that the Db then owns.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                c_path.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
                c_vfs.as_ptr(),
            )
        };
        let out = Db { db };
        if rc != ffi::SQLITE_OK {
            return Err(format!("cannot open {}: {}", path.display(), out.errmsg()));
        }
        Ok(out)
    }

    fn errmsg(&self) -> String {
        if self.db.is_null() {
            return "out of memory".into();
        }
        // SAFETY: db is a live handle; errmsg returns a NUL-terminated string
        // that stays valid until the next call on the handle.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db)) }
            .to_string_lossy()
            .into_owned()
    }

    fn error(&self) -> SqlError {
        SqlError {
            // SAFETY: db is a live handle.
            code: unsafe { ffi::sqlite3_extended_errcode(self.db) },
            message: self.errmsg(),
        }
    }

    /// Runs one or more statements that return no rows.
    pub fn exec(&self, sql: &str) -> Result<(), SqlError> {
        let c = CString::new(sql).map_err(|_| SqlError {
            code: ffi::SQLITE_ERROR,
            message: "statement contains a NUL byte".into(),
        })?;
        // SAFETY: db is live, c is NUL-terminated; no callback is passed.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.db,
                c.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// Prepares exactly one statement; anything after it is an error, so
    /// that text from a damaged schema can never smuggle in a second one.
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_>, SqlError> {
        let c = CString::new(sql).map_err(|_| SqlError {
            code: ffi::SQLITE_ERROR,
            message: "statement contains a NUL byte".into(),
        })?;
        let mut st = std::ptr::null_mut();
        let mut tail = std::ptr::null();
        // SAFETY: db is live; c outlives the call; tail points into c.
        let rc = unsafe { ffi::sqlite3_prepare_v2(self.db, c.as_ptr(), -1, &mut st, &mut tail) };
        if rc != ffi::SQLITE_OK {
            return Err(self.error());
        }
        let stmt = Stmt { db: self, st };
        // SAFETY: tail points at the NUL-terminated rest of c.
        let rest = unsafe { CStr::from_ptr(tail) }.to_string_lossy();
        if !rest.trim().trim_end_matches(';').trim().is_empty() {
            return Err(SqlError {
                code: ffi::SQLITE_ERROR,
                message: "more than one statement".into(),
            });
        }
        if st.is_null() {
            return Err(SqlError {
                code: ffi::SQLITE_ERROR,
                message: "no statement".into(),
            });
        }
        Ok(stmt)
    }

    /// Runs a query and returns all its rows (for pragmas: small results).
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, SqlError> {
        let mut st = self.prepare(sql)?;
        st.bind_all(params, 1, ffi::SQLITE_UTF8)?;
        let mut rows = Vec::new();
        while st.step()? {
            rows.push(st.row());
        }
        Ok(rows)
    }

    /// Rows changed by the last statement.
    pub fn changes(&self) -> i64 {
        // SAFETY: db is a live handle.
        i64::from(unsafe { ffi::sqlite3_changes(self.db) })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: db was returned by sqlite3_open_v2 and is closed once;
        // every Stmt borrows the Db, so none is left unfinalized.
        unsafe {
            ffi::sqlite3_close(self.db);
        }
    }
}

/// A prepared statement, finalized on drop.
pub struct Stmt<'a> {
    db: &'a Db,
    st: *mut ffi::sqlite3_stmt,
}

impl Stmt<'_> {
    /// Binds `values` to parameters `first..`. Text is bound in the
    /// database encoding `enc` it was read in (SQLITE_UTF8, _UTF16LE or
    /// _UTF16BE: the header's values), so SQLite converts it if needed.
    pub fn bind_all(&mut self, values: &[Value], first: c_int, enc: c_int) -> Result<(), SqlError> {
        for (i, v) in values.iter().enumerate() {
            self.bind(first + i as c_int, v, enc)?;
        }
        Ok(())
    }

    pub fn bind(&mut self, i: c_int, v: &Value, enc: c_int) -> Result<(), SqlError> {
        // SAFETY: st is a live statement; buffers are copied by SQLite
        // (SQLITE_TRANSIENT) before the call returns.
        let rc = unsafe {
            match v {
                Value::Null => ffi::sqlite3_bind_null(self.st, i),
                Value::Int(n) => ffi::sqlite3_bind_int64(self.st, i, *n),
                Value::Real(r) => ffi::sqlite3_bind_double(self.st, i, *r),
                Value::Text(t) => ffi::sqlite3_bind_text64(
                    self.st,
                    i,
                    t.as_ptr().cast(),
                    t.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                    enc as u8,
                ),
                Value::Blob(b) => ffi::sqlite3_bind_blob64(
                    self.st,
                    i,
                    b.as_ptr().cast(),
                    b.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                ),
            }
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.db.error())
        }
    }

    /// Steps once: true when a row is ready.
    pub fn step(&mut self) -> Result<bool, SqlError> {
        // SAFETY: st is a live statement.
        match unsafe { ffi::sqlite3_step(self.st) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            _ => Err(self.db.error()),
        }
    }

    /// Runs the statement to completion with `values` bound, then resets
    /// it for the next use.
    pub fn run(&mut self, values: &[Value], enc: c_int) -> Result<(), SqlError> {
        let outcome = self.bind_all(values, 1, enc).and_then(|()| self.finish());
        self.reset();
        outcome
    }

    /// Steps until done, discarding rows.
    pub fn finish(&mut self) -> Result<(), SqlError> {
        while self.step()? {}
        Ok(())
    }

    /// Makes the statement ready to run again, with no values bound.
    pub fn reset(&mut self) {
        // SAFETY: st is a live statement; reset and clearing bindings are
        // always allowed.
        unsafe {
            ffi::sqlite3_reset(self.st);
            ffi::sqlite3_clear_bindings(self.st);
        }
    }

    /// The current row, as values (text as UTF-8).
    pub fn row(&self) -> Vec<Value> {
        // SAFETY: st is a live statement positioned on a row; column
        // pointers are read before the next call on it, with their lengths.
        unsafe {
            let n = ffi::sqlite3_column_count(self.st);
            (0..n)
                .map(|i| match ffi::sqlite3_column_type(self.st, i) {
                    ffi::SQLITE_INTEGER => Value::Int(ffi::sqlite3_column_int64(self.st, i)),
                    ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_column_double(self.st, i)),
                    ffi::SQLITE_TEXT => {
                        let p = ffi::sqlite3_column_text(self.st, i);
                        let len = ffi::sqlite3_column_bytes(self.st, i) as usize;
                        Value::Text(if p.is_null() {
                            Vec::new()
                        } else {
                            std::slice::from_raw_parts(p, len).to_vec()
                        })
                    }
                    ffi::SQLITE_BLOB => {
                        let p = ffi::sqlite3_column_blob(self.st, i) as *const u8;
                        let len = ffi::sqlite3_column_bytes(self.st, i) as usize;
                        Value::Blob(if p.is_null() {
                            Vec::new()
                        } else {
                            std::slice::from_raw_parts(p, len).to_vec()
                        })
                    }
                    _ => Value::Null,
                })
                .collect()
        }
    }
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        // SAFETY: st is finalized exactly once, while its Db is alive.
        unsafe {
            ffi::sqlite3_finalize(self.st);
        }
    }
}

/// `"name"` with embedded quotes doubled.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Text from a query result as a String.
pub fn text(v: &Value) -> String {
    match v {
        Value::Text(t) => String::from_utf8_lossy(t).into_owned(),
        Value::Int(n) => n.to_string(),
        Value::Real(r) => r.to_string(),
        _ => String::new(),
    }
}

pub fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        _ => 0,
    }
}
