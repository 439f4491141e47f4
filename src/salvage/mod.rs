//! Salvage: every readable row of a damaged database, back into its
//! original table, in a new database.
//!
//! The heal (`recovery.rs`, `protect/heal.rs`) restores page 1 and the
//! schema exactly, or refuses. The salvage is for what the heal cannot
//! fix: damaged table, index and overflow pages. It never writes to the
//! damaged file. It takes the best schema it can prove (see
//! [`schema::choose`]), creates that schema in a new database, walks every
//! table's B-tree and copies each row whose page passes the strict checks
//! of [`btree`] and whose record fits the table's shape, then places the
//! pages no walk reached by the rule of [`attribute`], and writes a report.
//! `docs/salvage.md` describes the rule and the report.
//!
//! Data flows one way: pages in (`pages.rs`), rows out (`output.rs`); rows
//! are streamed, never held, so memory does not grow with the database.

pub mod attribute;
pub mod btree;
mod engine;
pub mod evidence;
pub mod output;
pub mod pages;
pub mod record;
pub mod schema;
pub mod shape;
pub mod wal;
pub mod walk;

pub use engine::{salvage, Request};
