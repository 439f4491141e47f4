//! Everything that touches SQLite's C API, and nothing that decides policy.
//!
//! * [`vfs`]: the shim VFS over the base VFS: the method tables and their
//!   forwarders; each method turns its arguments into events for the
//!   per-file monitor (`protect`);
//! * [`adopt`]: switching a database opened before the extension was
//!   loaded over to the shim;
//! * [`functions`]: the SQL functions `meta_recover` and `meta_salvage`;
//! * [`entry`]: `sqlite3_metadwr_init`, which SQLite calls to load the
//!   extension, and what it sets up.
//!
//! SQLite owns the memory of strings it frees: [`sqlite_string`] makes one.

pub mod adopt;
pub mod entry;
pub mod functions;
pub mod vfs;

use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int};

/// `s` copied into memory from `sqlite3_malloc`, NUL-terminated (NUL bytes
/// inside become spaces), for SQLite to free: error messages and pragma
/// answers. Null when out of memory.
pub fn sqlite_string(s: &str) -> *mut c_char {
    let bytes = s.replace('\0', " ");
    // SAFETY: the API table is installed before any of this crate's code
    // runs inside SQLite; the buffer is len+1 bytes and fully written
    // before SQLite sees it.
    unsafe {
        let p = ffi::sqlite3_malloc(bytes.len() as c_int + 1) as *mut u8;
        if !p.is_null() {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
            *p.add(bytes.len()) = 0;
        }
        p.cast()
    }
}
