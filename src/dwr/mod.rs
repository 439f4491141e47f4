//! The `-dwr` sidecar: what is stored, and how.
//!
//! * [`format`]: the on-disk format (headers, slots, trailers, the
//!   fingerprint a generation carries) and its checksums;
//! * [`store`]: generations written and read, the mirror, the sync policy;
//! * [`file`]: the file itself, opened through the base VFS or `std`;
//! * [`identity`]: which database file a copy was taken from;
//! * [`fnv`]: the FNV-1a digest both use.
//!
//! docs/dwr-format.md specifies the format.

pub mod file;
pub mod fnv;
pub mod format;
pub mod identity;
pub mod store;
