//! metadwr: a SQLite loadable extension that keeps a double-write copy of
//! the pages every database depends on (page 1 and the `sqlite_schema`
//! B-tree) in a sidecar `<db>-dwr` file, and restores them when damaged;
//! and salvages every readable row when other pages are damaged too.
//!
//! Module map, from the edge inwards:
//! * [`ffi`]: everything that touches SQLite's C API: the shim VFS, the SQL
//!   functions, adopting open databases, the entry point. No policy.
//! * [`protect`]: per file, when to copy and when to restore: the monitor,
//!   healing on read, the pragmas, the quarantine of damaged pages.
//! * [`dwr`]: the `-dwr` sidecar: its format, its store of generations, the
//!   file, and the identity of the database a copy belongs to.
//! * [`recovery`]: the staleness rule, deciding what may be restored.
//! * [`salvage`]: every readable row of a damaged database into a new one.
//! * [`dbfile`]: a reader of SQLite's own file format.
//! * [`sidecar`]: creating files next to a database with its protection.

pub mod dbfile;
pub mod dwr;
pub mod ffi;
pub mod protect;
pub mod recovery;
pub mod salvage;
pub mod sidecar;
#[cfg(test)]
mod test_support;

pub use ffi::entry::sqlite3_metadwr_init;
