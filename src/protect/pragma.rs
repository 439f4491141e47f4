//! The pragmas a metadwr file answers: `meta_double_write`,
//! `meta_double_write_sync`, `meta_double_write_stats`, `meta_recover` and
//! `meta_salvage`. SQLite hands them to the VFS with `SQLITE_FCNTL_PRAGMA`
//! before it reads the schema, so they work on a damaged database; they
//! exist only for databases opened through metadwr (the entry point
//! re-opens an already open database through it, see `lib.rs`).

use super::{DbIo, Enabled, Monitor};
use crate::dwr::store::SyncPolicy;

/// Handles a pragma addressed to a metadwr file. `None` means "not ours":
/// the VFS passes it on to `unix`.
pub fn pragma(
    monitor: &mut Monitor,
    io: &mut dyn DbIo,
    name: &str,
    value: Option<&str>,
) -> Option<Result<String, String>> {
    match name.to_ascii_lowercase().as_str() {
        "meta_double_write" => Some(match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(monitor.status()),
            Some(v) if matches!(v.as_str(), "enabled" | "enable" | "on" | "true" | "1") => {
                match monitor.enable(io) {
                    Ok(Enabled::Enabled) => Ok("enabled".into()),
                    Ok(Enabled::Recovered(report)) => Ok(format!("recovered: {report}")),
                    Err(e) => Err(format!("meta_double_write: {e}")),
                }
            }
            Some(v) if matches!(v.as_str(), "disabled" | "disable" | "off" | "false" | "0") => {
                monitor
                    .disable()
                    .map(|()| "disabled".to_string())
                    .map_err(|e| format!("meta_double_write: {e}"))
            }
            Some(v) => Err(format!(
                "meta_double_write: unknown value '{v}'; use enabled or disabled"
            )),
        }),
        "meta_double_write_sync" => Some(match value {
            None => Ok(monitor.policy().name().to_string()),
            Some(v) => match SyncPolicy::parse(v) {
                Some(p) => {
                    monitor.set_policy(p);
                    Ok(p.name().to_string())
                }
                None => Err(format!(
                    "meta_double_write_sync: unknown value '{v}'; use off, periodic or full"
                )),
            },
        }),
        // The pragma form of meta_recover(): SQLite hands pragmas to the VFS
        // before it reads the schema, whereas newer SQLite versions read
        // the schema before running any SELECT, which fails when the schema
        // is what is damaged.
        "meta_recover" => Some(match value {
            None => monitor
                .recover(io)
                .map_err(|e| format!("meta_recover: {e}")),
            Some(_) => Err("meta_recover takes no value: PRAGMA [schema.]meta_recover".into()),
        }),
        // Like meta_recover, the pragma form works where the schema cannot
        // be read, which is exactly when a salvage is wanted.
        "meta_salvage" => Some(match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => Err(
                "meta_salvage needs the path of the new database: PRAGMA meta_salvage='out.db'"
                    .into(),
            ),
            Some(out) => monitor
                .salvage(io, std::path::Path::new(out))
                .map_err(|e| format!("meta_salvage: {e}")),
        }),
        "meta_double_write_stats" => Some(Ok(match monitor.stats() {
            Some(s) => format!(
                "generations={} pages={} bytes={} fsyncs={} flag_updates={}",
                s.generations_written, s.pages_written, s.bytes_written, s.fsyncs, s.flag_updates
            ),
            None => "disabled".to_string(),
        })),
        "locking_mode" => {
            // Only noted; SQLite itself applies it.
            if let Some(v) = value {
                monitor.note_locking_mode(v);
            }
            None
        }
        _ => None,
    }
}
