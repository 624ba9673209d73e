//! SQLite metadata: one row per sprite. The volume is the truth for a
//! sprite's files; this is the truth for which sprites exist.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a sprite named {0} already exists")]
    Duplicate(String),
    #[error("the database lock is poisoned")]
    Poisoned,
}

/// Resource limits in force for one sprite.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub cpus: f64,
    pub ram_mb: u64,
    pub storage_gb: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpriteRecord {
    pub id: String,
    pub name: String,
    pub image: String,
    pub url_auth: String,
    pub labels: Vec<String>,
    pub limits: Limits,
    pub environment: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_running_at: Option<String>,
    pub last_active_at: Option<String>,
}

pub struct Db {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sprites (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    url_auth TEXT NOT NULL,
    labels TEXT NOT NULL,
    limits TEXT NOT NULL,
    environment TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_running_at TEXT,
    last_active_at TEXT
);
CREATE TABLE IF NOT EXISTS checkpoints (
    sprite_id TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    create_time TEXT NOT NULL,
    source_id TEXT,
    comment TEXT,
    is_auto INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sprite_id, id)
);
CREATE TABLE IF NOT EXISTS network_policies (
    sprite_id TEXT PRIMARY KEY,
    policy TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    sprite_id TEXT NOT NULL,
    name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    expires_unix_ms INTEGER NOT NULL,
    PRIMARY KEY (sprite_id, name)
);
CREATE TABLE IF NOT EXISTS usage (
    sprite_id TEXT NOT NULL,
    sprite_name TEXT NOT NULL,
    minute INTEGER NOT NULL,
    cpu_seconds REAL NOT NULL DEFAULT 0,
    ram_gb_seconds REAL NOT NULL DEFAULT 0,
    hot_gb_seconds REAL NOT NULL DEFAULT 0,
    cold_gb_hours REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (sprite_id, minute)
);
CREATE TABLE IF NOT EXISTS meter_state (
    sprite_id TEXT PRIMARY KEY,
    sampled_unix_ms INTEGER NOT NULL,
    cpu_ns INTEGER NOT NULL,
    running INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_used_at TEXT
);
CREATE TABLE IF NOT EXISTS cold_sprites (
    sprite_id TEXT PRIMARY KEY,
    evicted_at TEXT NOT NULL,
    stored_bytes INTEGER NOT NULL,
    data_bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cold_checkpoints (
    sprite_id TEXT NOT NULL,
    id TEXT NOT NULL,
    stored_bytes INTEGER NOT NULL,
    data_bytes INTEGER NOT NULL,
    PRIMARY KEY (sprite_id, id)
);
CREATE TABLE IF NOT EXISTS checkpoint_state (
    sprite_id TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    current TEXT
);
";

pub use sprites_api::usage::Amounts as Usage;

/// One sprite's usage since its last sample, and where its meter stands.
#[derive(Debug, Clone)]
pub struct UsageSample {
    pub sprite_id: String,
    pub sprite_name: String,
    /// Unix minute the usage is booked in.
    pub minute: i64,
    pub usage: Usage,
    pub sampled_unix_ms: i64,
    pub cpu_ns: u64,
    pub running: bool,
}

/// A sum of usage (per day when asked: `day` is days since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub day: i64,
    pub sprite_name: String,
    pub usage: Usage,
}

/// A copy of an image in object storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdCopy {
    /// When it was made (RFC 3339; empty where not recorded).
    pub at: String,
    /// Bytes its chunks take in the store (compressed, each chunk once).
    pub stored_bytes: u64,
    /// Bytes of data it holds (before compression; holes not counted).
    pub data_bytes: u64,
}

/// One checkpoint as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub id: String,
    pub seq: u64,
    pub create_time: String,
    pub source_id: Option<String>,
    pub comment: Option<String>,
    pub is_auto: bool,
}

const COLUMNS: &str = "id, name, image, url_auth, labels, limits, environment, created_at, updated_at, last_running_at, last_active_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(SpriteRecord, String, String, String)> {
    Ok((
        SpriteRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            image: row.get(2)?,
            url_auth: row.get(3)?,
            labels: Vec::new(),
            limits: Limits {
                cpus: 0.0,
                ram_mb: 0,
                storage_gb: 0,
            },
            environment: BTreeMap::new(),
            created_at: row.get(7)?,
            updated_at: row.get(8)?,
            last_running_at: row.get(9)?,
            last_active_at: row.get(10)?,
        },
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn decode(raw: (SpriteRecord, String, String, String)) -> Result<SpriteRecord, DbError> {
    let (mut rec, labels, limits, env) = raw;
    rec.labels = serde_json::from_str(&labels)?;
    rec.limits = serde_json::from_str(&limits)?;
    rec.environment = serde_json::from_str(&env)?;
    Ok(rec)
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, DbError> {
        self.conn.lock().map_err(|_| DbError::Poisoned)
    }

    pub fn insert(&self, rec: &SpriteRecord) -> Result<(), DbError> {
        let conn = self.lock()?;
        let res = conn.execute(
            &format!("INSERT INTO sprites ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
            params![
                rec.id,
                rec.name,
                rec.image,
                rec.url_auth,
                serde_json::to_string(&rec.labels)?,
                serde_json::to_string(&rec.limits)?,
                serde_json::to_string(&rec.environment)?,
                rec.created_at,
                rec.updated_at,
                rec.last_running_at,
                rec.last_active_at,
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(DbError::Duplicate(rec.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Store the user-settable fields: url auth, labels, updated_at.
    pub fn update(&self, rec: &SpriteRecord) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE sprites SET url_auth = ?2, labels = ?3, updated_at = ?4 WHERE id = ?1",
            params![
                rec.id,
                rec.url_auth,
                serde_json::to_string(&rec.labels)?,
                rec.updated_at,
            ],
        )?;
        Ok(())
    }

    /// Record when the sprite last started running.
    pub fn set_last_running(&self, id: &str, at: &str) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE sprites SET last_running_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    /// Record the sprite's last activity (an exec, a session, a call).
    pub fn set_last_active(&self, id: &str, at: &str) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE sprites SET last_active_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    /// A number that changes whenever anything is written through this
    /// connection, which every write of the daemon goes through: a cache
    /// of rows read when it was `g` is current while it is still `g`.
    pub fn generation(&self) -> Result<u64, DbError> {
        Ok(self.lock()?.total_changes())
    }

    pub fn get_by_id(&self, id: &str) -> Result<Option<SpriteRecord>, DbError> {
        let conn = self.lock()?;
        // Cached: every sprite URL request looks its sprite up.
        let raw = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM sprites WHERE id = ?1"))?
            .query_row(params![id], from_row)
            .optional()?;
        raw.map(decode).transpose()
    }

    pub fn get(&self, name: &str) -> Result<Option<SpriteRecord>, DbError> {
        let conn = self.lock()?;
        // Cached: every sprite URL request looks its sprite up.
        let raw = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM sprites WHERE name = ?1"))?
            .query_row(params![name], from_row)
            .optional()?;
        raw.map(decode).transpose()
    }

    /// Sprites whose name starts with `prefix` and sorts after `after`, by
    /// name, at most `limit`.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SpriteRecord>, DbError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM sprites WHERE substr(name, 1, length(?1)) = ?1 AND name > ?2 ORDER BY name LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![prefix, after.unwrap_or(""), limit as i64], from_row)?;
        let mut out = Vec::new();
        for raw in rows {
            out.push(decode(raw?)?);
        }
        Ok(out)
    }

    pub fn all(&self) -> Result<Vec<SpriteRecord>, DbError> {
        self.list("", None, usize::MAX >> 1)
    }

    pub fn delete(&self, id: &str) -> Result<(), DbError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM sprites WHERE id = ?1", params![id])?;
        tx.execute("DELETE FROM checkpoints WHERE sprite_id = ?1", params![id])?;
        tx.execute(
            "DELETE FROM checkpoint_state WHERE sprite_id = ?1",
            params![id],
        )?;
        tx.execute("DELETE FROM tasks WHERE sprite_id = ?1", params![id])?;
        tx.execute("DELETE FROM cold_sprites WHERE sprite_id = ?1", params![id])?;
        tx.execute(
            "DELETE FROM cold_checkpoints WHERE sprite_id = ?1",
            params![id],
        )?;
        tx.execute(
            "DELETE FROM network_policies WHERE sprite_id = ?1",
            params![id],
        )?;
        // Usage rows stay: what a destroyed sprite used is still owed.
        tx.execute("DELETE FROM meter_state WHERE sprite_id = ?1", params![id])?;
        tx.commit()?;
        Ok(())
    }

    /// The meter's last sample of a sprite: (unix ms, cpu ns, running).
    pub fn meter_state(&self, sprite_id: &str) -> Result<Option<(i64, u64, bool)>, DbError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT sampled_unix_ms, cpu_ns, running FROM meter_state WHERE sprite_id = ?1",
                params![sprite_id],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?)),
            )
            .optional()?)
    }

    /// Adds one round of samples to the usage and records where each
    /// sprite's meter now stands, in one transaction: a crash leaves either
    /// both or neither, so nothing is counted twice.
    pub fn record_usage(&self, samples: &[UsageSample]) -> Result<(), DbError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        for s in samples {
            tx.execute(
                "INSERT INTO usage (sprite_id, sprite_name, minute, cpu_seconds, ram_gb_seconds, hot_gb_seconds, cold_gb_hours)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(sprite_id, minute) DO UPDATE SET
                   cpu_seconds = cpu_seconds + excluded.cpu_seconds,
                   ram_gb_seconds = ram_gb_seconds + excluded.ram_gb_seconds,
                   hot_gb_seconds = hot_gb_seconds + excluded.hot_gb_seconds,
                   cold_gb_hours = cold_gb_hours + excluded.cold_gb_hours",
                params![
                    s.sprite_id,
                    s.sprite_name,
                    s.minute,
                    s.usage.cpu_seconds,
                    s.usage.ram_gb_seconds,
                    s.usage.hot_storage_gb_seconds,
                    s.usage.cold_storage_gb_hours
                ],
            )?;
            tx.execute(
                "INSERT INTO meter_state (sprite_id, sampled_unix_ms, cpu_ns, running) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(sprite_id) DO UPDATE SET sampled_unix_ms = excluded.sampled_unix_ms,
                   cpu_ns = excluded.cpu_ns, running = excluded.running",
                params![s.sprite_id, s.sampled_unix_ms, s.cpu_ns as i64, s.running],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Usage summed per sprite name and UTC day (`days`) or over the whole
    /// range, for minutes in [from, to).
    pub fn usage(
        &self,
        sprite_id: Option<&str>,
        from_minute: i64,
        to_minute: i64,
        by_day: bool,
    ) -> Result<Vec<UsageRow>, DbError> {
        let conn = self.lock()?;
        let day = if by_day { "minute / 1440" } else { "0" };
        let mut stmt = conn.prepare(&format!(
            "SELECT {day} AS d, sprite_name, sum(cpu_seconds), sum(ram_gb_seconds), sum(hot_gb_seconds), sum(cold_gb_hours)
             FROM usage WHERE minute >= ?1 AND minute < ?2 AND (?3 IS NULL OR sprite_id = ?3)
             GROUP BY d, sprite_name ORDER BY d, sprite_name"
        ))?;
        let rows = stmt.query_map(params![from_minute, to_minute, sprite_id], |r| {
            Ok(UsageRow {
                day: r.get(0)?,
                sprite_name: r.get(1)?,
                usage: Usage {
                    cpu_seconds: r.get(2)?,
                    ram_gb_seconds: r.get(3)?,
                    hot_storage_gb_seconds: r.get(4)?,
                    cold_storage_gb_hours: r.get(5)?,
                },
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn insert_token(
        &self,
        id: &str,
        name: &str,
        hash: &str,
        created_at: &str,
    ) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO tokens (id, name, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, name, hash, created_at],
        )?;
        Ok(())
    }

    /// Every token: (id, name, hash, created_at).
    pub fn tokens(&self) -> Result<Vec<(String, String, String, String)>, DbError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare("SELECT id, name, hash, created_at FROM tokens ORDER BY created_at, id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// False when there was no such token.
    pub fn delete_token(&self, id: &str) -> Result<bool, DbError> {
        let conn = self.lock()?;
        Ok(conn.execute("DELETE FROM tokens WHERE id = ?1", params![id])? > 0)
    }

    /// Creates or replaces a task.
    /// The sprite's network policy (JSON), if one was set.
    pub fn network_policy(&self, sprite_id: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .lock()?
            .query_row(
                "SELECT policy FROM network_policies WHERE sprite_id = ?1",
                params![sprite_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_network_policy(&self, sprite_id: &str, policy: &str) -> Result<(), DbError> {
        self.lock()?.execute(
            "INSERT INTO network_policies (sprite_id, policy) VALUES (?1, ?2)
             ON CONFLICT (sprite_id) DO UPDATE SET policy = excluded.policy",
            params![sprite_id, policy],
        )?;
        Ok(())
    }

    pub fn put_task(
        &self,
        sprite_id: &str,
        name: &str,
        started_at: &str,
        expires_unix_ms: i64,
    ) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO tasks (sprite_id, name, started_at, expires_unix_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(sprite_id, name) DO UPDATE SET started_at = excluded.started_at,
             expires_unix_ms = excluded.expires_unix_ms",
            params![sprite_id, name, started_at, expires_unix_ms],
        )?;
        Ok(())
    }

    pub fn delete_task(&self, sprite_id: &str, name: &str) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute(
            "DELETE FROM tasks WHERE sprite_id = ?1 AND name = ?2",
            params![sprite_id, name],
        )?;
        Ok(())
    }

    /// The sprite's tasks: (name, started_at, expires_unix_ms).
    pub fn tasks(&self, sprite_id: &str) -> Result<Vec<(String, String, i64)>, DbError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT name, started_at, expires_unix_ms FROM tasks WHERE sprite_id = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map(params![sprite_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The number the sprite's next checkpoint gets. Taken for good by
    /// [`Db::insert_checkpoint`]; numbers of deleted checkpoints are never
    /// handed out again.
    pub fn next_checkpoint_seq(&self, sprite_id: &str) -> Result<u64, DbError> {
        let conn = self.lock()?;
        let next: Option<i64> = conn
            .query_row(
                "SELECT next_seq FROM checkpoint_state WHERE sprite_id = ?1",
                params![sprite_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(next.unwrap_or(0) as u64)
    }

    /// Records a checkpoint and makes it the one the sprite stands on.
    pub fn insert_checkpoint(&self, sprite_id: &str, c: &CheckpointRecord) -> Result<(), DbError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO checkpoints (sprite_id, id, seq, create_time, source_id, comment, is_auto)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                sprite_id,
                c.id,
                c.seq as i64,
                c.create_time,
                c.source_id,
                c.comment,
                c.is_auto
            ],
        )?;
        tx.execute(
            "INSERT INTO checkpoint_state (sprite_id, next_seq, current) VALUES (?1, ?2, ?3)
             ON CONFLICT(sprite_id) DO UPDATE SET next_seq = max(next_seq, excluded.next_seq),
             current = excluded.current",
            params![sprite_id, c.seq as i64 + 1, c.id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The sprite's checkpoints, newest first.
    pub fn checkpoints(&self, sprite_id: &str) -> Result<Vec<CheckpointRecord>, DbError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT id, seq, create_time, source_id, comment, is_auto FROM checkpoints
             WHERE sprite_id = ?1 ORDER BY seq DESC",
        )?;
        let rows = stmt.query_map(params![sprite_id], checkpoint_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn checkpoint(
        &self,
        sprite_id: &str,
        id: &str,
    ) -> Result<Option<CheckpointRecord>, DbError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT id, seq, create_time, source_id, comment, is_auto FROM checkpoints
                 WHERE sprite_id = ?1 AND id = ?2",
                params![sprite_id, id],
                checkpoint_from_row,
            )
            .optional()?)
    }

    /// Removes a checkpoint's record (and its cold-tier copy's); false
    /// when there was none.
    pub fn delete_checkpoint(&self, sprite_id: &str, id: &str) -> Result<bool, DbError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM checkpoints WHERE sprite_id = ?1 AND id = ?2",
            params![sprite_id, id],
        )?;
        tx.execute(
            "DELETE FROM cold_checkpoints WHERE sprite_id = ?1 AND id = ?2",
            params![sprite_id, id],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Where an evicted sprite's volume is: `Some` while it lives only in
    /// object storage.
    pub fn evicted(&self, sprite_id: &str) -> Result<Option<ColdCopy>, DbError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT evicted_at, stored_bytes, data_bytes FROM cold_sprites WHERE sprite_id = ?1",
                params![sprite_id],
                |r| {
                    Ok(ColdCopy {
                        at: r.get(0)?,
                        stored_bytes: r.get::<_, i64>(1)? as u64,
                        data_bytes: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .optional()?)
    }

    /// Records that the sprite's volume now lives only in object storage.
    pub fn set_evicted(&self, sprite_id: &str, copy: &ColdCopy) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT OR REPLACE INTO cold_sprites (sprite_id, evicted_at, stored_bytes, data_bytes) VALUES (?1, ?2, ?3, ?4)",
            params![sprite_id, copy.at, copy.stored_bytes as i64, copy.data_bytes as i64],
        )?;
        Ok(())
    }

    /// Records that the sprite's volume is back on local disk.
    pub fn set_local(&self, sprite_id: &str) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute(
            "DELETE FROM cold_sprites WHERE sprite_id = ?1",
            params![sprite_id],
        )?;
        Ok(())
    }

    /// Checkpoints with a copy in object storage: id → copy.
    pub fn cold_checkpoints(&self, sprite_id: &str) -> Result<BTreeMap<String, ColdCopy>, DbError> {
        let conn = self.lock()?;
        let mut st = conn.prepare(
            "SELECT id, stored_bytes, data_bytes FROM cold_checkpoints WHERE sprite_id = ?1",
        )?;
        let rows = st.query_map(params![sprite_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                ColdCopy {
                    at: String::new(),
                    stored_bytes: r.get::<_, i64>(1)? as u64,
                    data_bytes: r.get::<_, i64>(2)? as u64,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that checkpoint `id` has a durable copy in object storage.
    pub fn set_cold_checkpoint(
        &self,
        sprite_id: &str,
        id: &str,
        copy: &ColdCopy,
    ) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT OR REPLACE INTO cold_checkpoints (sprite_id, id, stored_bytes, data_bytes) VALUES (?1, ?2, ?3, ?4)",
            params![sprite_id, id, copy.stored_bytes as i64, copy.data_bytes as i64],
        )?;
        Ok(())
    }

    /// Ids of every sprite the DB knows.
    pub fn sprite_ids(&self) -> Result<std::collections::BTreeSet<String>, DbError> {
        let conn = self.lock()?;
        let mut st = conn.prepare("SELECT id FROM sprites")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The checkpoint the sprite's filesystem derives from (last created or
    /// restored), if any.
    pub fn current_checkpoint(&self, sprite_id: &str) -> Result<Option<String>, DbError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT current FROM checkpoint_state WHERE sprite_id = ?1",
                params![sprite_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    pub fn set_current_checkpoint(&self, sprite_id: &str, id: Option<&str>) -> Result<(), DbError> {
        let conn = self.lock()?;
        set_current_in(&conn, sprite_id, id)
    }
}

fn set_current_in(conn: &Connection, sprite_id: &str, id: Option<&str>) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO checkpoint_state (sprite_id, next_seq, current) VALUES (?1, 0, ?2)
         ON CONFLICT(sprite_id) DO UPDATE SET current = excluded.current",
        params![sprite_id, id],
    )?;
    Ok(())
}

fn checkpoint_from_row(row: &Row<'_>) -> rusqlite::Result<CheckpointRecord> {
    Ok(CheckpointRecord {
        id: row.get(0)?,
        seq: row.get::<_, i64>(1)? as u64,
        create_time: row.get(2)?,
        source_id: row.get(3)?,
        comment: row.get(4)?,
        is_auto: row.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> SpriteRecord {
        SpriteRecord {
            id: format!("id-{name}"),
            name: name.into(),
            image: "tiny".into(),
            url_auth: "sprite".into(),
            labels: vec!["a".into()],
            limits: Limits {
                cpus: 1.0,
                ram_mb: 512,
                storage_gb: 10,
            },
            environment: BTreeMap::from([("K".to_string(), "V".to_string())]),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            last_running_at: None,
            last_active_at: None,
        }
    }

    #[test]
    fn insert_get_list_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("meta.db")).expect("open");
        for n in ["b", "a", "ab", "c"] {
            db.insert(&rec(n)).expect("insert");
        }
        assert!(matches!(db.insert(&rec("a")), Err(DbError::Duplicate(_))));
        assert_eq!(db.get("ab").expect("get"), Some(rec("ab")));
        let names = |v: Vec<SpriteRecord>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(db.list("a", None, 10).expect("list")), ["a", "ab"]);
        assert_eq!(names(db.list("", Some("ab"), 2).expect("list")), ["b", "c"]);
        // A LIKE-style wildcard in the prefix is taken literally.
        assert!(db.list("%", None, 10).expect("list").is_empty());
        db.delete("id-a").expect("delete");
        assert_eq!(db.get("a").expect("get"), None);
        assert_eq!(db.all().expect("all").len(), 3);
    }

    #[test]
    fn checkpoint_numbers_are_never_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("meta.db")).expect("open");
        db.insert(&rec("a")).expect("insert");
        let ck = |seq: u64| CheckpointRecord {
            id: format!("v{seq}"),
            seq,
            create_time: "2026-01-01T00:00:00Z".into(),
            source_id: None,
            comment: Some("c".into()),
            is_auto: false,
        };
        for want in 0..3 {
            let seq = db.next_checkpoint_seq("id-a").expect("next");
            assert_eq!(seq, want);
            db.insert_checkpoint("id-a", &ck(seq)).expect("insert");
        }
        assert_eq!(
            db.current_checkpoint("id-a").expect("current").as_deref(),
            Some("v2")
        );
        assert!(db.delete_checkpoint("id-a", "v2").expect("delete"));
        assert!(!db.delete_checkpoint("id-a", "v2").expect("delete again"));
        assert_eq!(db.next_checkpoint_seq("id-a").expect("next"), 3);
        let ids: Vec<_> = db
            .checkpoints("id-a")
            .expect("list")
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["v1", "v0"]);
        assert_eq!(db.checkpoint("id-a", "v0").expect("get"), Some(ck(0)));
        db.set_current_checkpoint("id-a", Some("v0")).expect("set");
        assert_eq!(
            db.current_checkpoint("id-a").expect("current").as_deref(),
            Some("v0")
        );
        // Another sprite counts on its own; deleting a sprite forgets its checkpoints.
        assert_eq!(db.next_checkpoint_seq("id-b").expect("next"), 0);
        db.delete("id-a").expect("delete sprite");
        assert!(db.checkpoints("id-a").expect("list").is_empty());
        assert_eq!(db.current_checkpoint("id-a").expect("current"), None);
    }
}
