//! SQLite metadata (`<data>/meta.db`): which sprites exist and everything
//! the daemon keeps about them outside their volumes. The volume is the
//! truth for a sprite's files; this is the truth for which sprites exist.
//!
//! One module per table group, each adding its methods to [`Db`]; the
//! schema's history is [`migrations`], applied in order when the file is
//! opened. A file written by a newer sprited (a schema version this build
//! does not know) is refused, never opened.

mod checkpoints;
mod cold;
mod dump;
mod migrations;
mod network;
mod privileges;
mod sprites;
mod tasks;
mod tokens;
mod usage;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use checkpoints::CheckpointRecord;
pub use cold::{ColdCopy, Snapshot};
pub use dump::{Row as DumpRow, SpriteDump};
pub use migrations::LATEST as SCHEMA_VERSION;
pub use sprites::{Limits, SpriteRecord};
pub use tasks::TaskRow;
pub use tokens::TokenRow;
pub use usage::{MeterState, Usage, UsageRow, UsageSample};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a sprite named {0} already exists")]
    Duplicate(String),
    #[error("a sprite's metadata from the object store cannot be loaded: {0}")]
    Dump(String),
    #[error("the database lock is poisoned")]
    Poisoned,
    #[error("restricting {path} to the daemon: {source}")]
    Permissions {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the metadata database has schema version {found} but this sprited knows versions up \
         to {known}: it was written by a newer sprited; run that release (or a newer one) on it"
    )]
    TooNew { found: u32, known: u32 },
}

pub struct Db {
    conn: Mutex<Connection>,
}

/// The database and its WAL files are the daemon's alone (0600): they
/// hold token hashes, policies and every sprite's settings. SQLite gives
/// the WAL files the main file's mode, and data dirs made by older
/// releases had 0644.
fn restrict(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::PermissionsExt;
    let mut name = path.as_os_str().to_owned();
    let main = path.to_path_buf();
    name.push("-wal");
    let wal = std::path::PathBuf::from(&name);
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    for p in [main, wal, std::path::PathBuf::from(shm)] {
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DbError::Permissions {
                    path: p.display().to_string(),
                    source,
                })
            }
        }
    }
    Ok(())
}

impl Db {
    /// Opens (or creates) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Refused before anything is written to it, the journal mode included.
        migrations::check_known(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        restrict(path)?;
        migrations::migrate(&mut conn)?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, DbError> {
        self.conn.lock().map_err(|_| DbError::Poisoned)
    }

    /// A number that changes whenever anything is written through this
    /// connection, which every write of the daemon goes through: a cache
    /// of rows read when it was `g` is current while it is still `g`.
    pub fn generation(&self) -> Result<u64, DbError> {
        Ok(self.lock()?.total_changes())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::Db;

    /// A data dir of an older release (meta.db 0644) is tightened on open.
    #[test]
    fn the_database_is_the_daemons_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("meta.db");
        std::fs::write(&path, b"").expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let db = Db::open(&path).expect("open");
        db.generation().expect("usable");
        for name in ["meta.db", "meta.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .expect(name)
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
        }
    }
}
