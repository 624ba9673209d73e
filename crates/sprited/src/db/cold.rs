//! The cold tier's tables: `cold_sprites` (volumes that live only in object
//! storage) and `cold_checkpoints` (checkpoints with a copy there).

use std::collections::{BTreeMap, HashMap};

use super::sql::{params, ToValue, Value};

use super::{Db, DbError};

/// A copy of an image in object storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdCopy {
    /// When it was made (RFC 3339; empty where not recorded).
    pub at: String,
    /// Bytes its chunks take in the store (compressed, each chunk once).
    pub stored_bytes: u64,
    /// Bytes of data it holds (before compression; holes not counted).
    pub data_bytes: u64,
    /// The epoch under which its holder made it (see `db::hosts`): in its
    /// manifest's name; 0 on a database of one host's own.
    pub epoch: i64,
}

/// What the cold tier holds of one sprite (see [`Db::cold_states`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColdState {
    /// Its volume's copy, while the volume lives only in object storage.
    pub evicted: Option<ColdCopy>,
    /// Its checkpoints with a copy there, and the bytes those take.
    pub checkpoints: u64,
    pub checkpoint_bytes: u64,
    /// When its newest replicated snapshot was taken (unix ms).
    pub last_snapshot_ms: Option<u64>,
}

impl Db {
    /// Where an evicted sprite's volume is: `Some` while it lives only in
    /// object storage.
    pub fn evicted(&self, sprite_id: &str) -> Result<Option<ColdCopy>, DbError> {
        self.read(|c| {
            c.query_opt(
                "SELECT evicted_at, stored_bytes, data_bytes, epoch FROM cold_sprites WHERE sprite_id = ?1",
                params![sprite_id],
                |r| {
                    Ok(ColdCopy {
                        at: r.get(0)?,
                        stored_bytes: r.get::<i64>(1)? as u64,
                        data_bytes: r.get::<i64>(2)? as u64,
                        epoch: r.get(3)?,
                    })
                },
            )
        })
    }

    /// What the cold tier holds of each of `ids`, in one query (a listing
    /// asks it for a whole page): sprites it holds nothing of, and ids of no
    /// sprite, are left out.
    pub fn cold_states(&self, ids: &[&str]) -> Result<HashMap<String, ColdState>, DbError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let marks: Vec<String> = (1..=ids.len()).map(|i| format!("?{i}")).collect();
        // SUM is NUMERIC on PostgreSQL: cast back to the column's type.
        let sql = format!(
            "SELECT s.id, c.evicted_at, c.stored_bytes, c.data_bytes, c.epoch,
               (SELECT COUNT(*) FROM cold_checkpoints k WHERE k.sprite_id = s.id),
               (SELECT CAST(COALESCE(SUM(k.stored_bytes), 0) AS BIGINT) FROM cold_checkpoints k WHERE k.sprite_id = s.id),
               (SELECT MAX(n.at_ms) FROM snapshots n WHERE n.sprite_id = s.id)
             FROM sprites s LEFT JOIN cold_sprites c ON c.sprite_id = s.id
             WHERE s.id IN ({})",
            marks.join(", ")
        );
        let params: Vec<Value> = ids.iter().map(|id| id.to_value()).collect();
        let rows = self.read(|c| {
            c.query_map(&sql, &params, |r| {
                let evicted = match r.get::<Option<String>>(1)? {
                    None => None,
                    Some(at) => Some(ColdCopy {
                        at,
                        stored_bytes: u64::try_from(r.get::<i64>(2)?).unwrap_or(0),
                        data_bytes: u64::try_from(r.get::<i64>(3)?).unwrap_or(0),
                        epoch: r.get(4)?,
                    }),
                };
                let state = ColdState {
                    evicted,
                    checkpoints: u64::try_from(r.get::<i64>(5)?).unwrap_or(0),
                    checkpoint_bytes: u64::try_from(r.get::<i64>(6)?).unwrap_or(0),
                    last_snapshot_ms: r
                        .get::<Option<i64>>(7)?
                        .and_then(|ms| u64::try_from(ms).ok()),
                };
                Ok((r.get::<String>(0)?, state))
            })
        })?;
        Ok(rows
            .into_iter()
            .filter(|(_, s)| *s != ColdState::default())
            .collect())
    }

    /// Records that the sprite's volume now lives only in object storage.
    pub fn set_evicted(&self, sprite_id: &str, copy: &ColdCopy) -> Result<(), DbError> {
        self.run(|c| {
            c.execute(
                "INSERT INTO cold_sprites (sprite_id, evicted_at, stored_bytes, data_bytes, epoch) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (sprite_id) DO UPDATE SET evicted_at = excluded.evicted_at,
                   stored_bytes = excluded.stored_bytes, data_bytes = excluded.data_bytes,
                   epoch = excluded.epoch",
                params![
                    sprite_id,
                    copy.at,
                    copy.stored_bytes as i64,
                    copy.data_bytes as i64,
                    copy.epoch
                ],
            )
        })?;
        Ok(())
    }

    /// How many sprite volumes and checkpoints live only in object storage.
    pub fn cold_count(&self) -> Result<u64, DbError> {
        let n: Option<i64> = self.read(|c| {
            c.query_opt(
                "SELECT (SELECT COUNT(*) FROM cold_sprites) + (SELECT COUNT(*) FROM cold_checkpoints)",
                &[],
                |r| r.get(0),
            )
        })?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// Records that the sprite's volume is back on local disk.
    pub fn set_local(&self, sprite_id: &str) -> Result<(), DbError> {
        self.run(|c| {
            c.execute(
                "DELETE FROM cold_sprites WHERE sprite_id = ?1",
                params![sprite_id],
            )
        })?;
        Ok(())
    }

    /// Checkpoints with a copy in object storage: id → copy.
    pub fn cold_checkpoints(&self, sprite_id: &str) -> Result<BTreeMap<String, ColdCopy>, DbError> {
        let rows = self.read(|c| {
            c.query_map(
                "SELECT id, stored_bytes, data_bytes, epoch FROM cold_checkpoints WHERE sprite_id = ?1",
                params![sprite_id],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        ColdCopy {
                            at: String::new(),
                            stored_bytes: r.get::<i64>(1)? as u64,
                            data_bytes: r.get::<i64>(2)? as u64,
                            epoch: r.get(3)?,
                        },
                    ))
                },
            )
        })?;
        Ok(rows.into_iter().collect())
    }

    /// Records that checkpoint `id` has a durable copy in object storage.
    pub fn set_cold_checkpoint(
        &self,
        sprite_id: &str,
        id: &str,
        copy: &ColdCopy,
    ) -> Result<(), DbError> {
        self.run(|c| {
            c.execute(
                "INSERT INTO cold_checkpoints (sprite_id, id, stored_bytes, data_bytes, epoch) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (sprite_id, id) DO UPDATE SET stored_bytes = excluded.stored_bytes,
                   data_bytes = excluded.data_bytes, epoch = excluded.epoch",
                params![
                    sprite_id,
                    id,
                    copy.stored_bytes as i64,
                    copy.data_bytes as i64,
                    copy.epoch
                ],
            )
        })?;
        Ok(())
    }

    /// Records a snapshot of the sprite's volume replicated to the store.
    pub fn add_snapshot(&self, sprite_id: &str, snap: &Snapshot) -> Result<(), DbError> {
        self.run(|c| {
            c.execute(
                "INSERT INTO snapshots (sprite_id, at_ms, stored_bytes, data_bytes, epoch) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (sprite_id, at_ms) DO UPDATE SET stored_bytes = excluded.stored_bytes,
                   data_bytes = excluded.data_bytes, epoch = excluded.epoch",
                params![
                    sprite_id,
                    snap.at_ms as i64,
                    snap.stored_bytes as i64,
                    snap.data_bytes as i64,
                    snap.epoch
                ],
            )
        })?;
        Ok(())
    }

    /// The sprite's replicated snapshots, newest first.
    pub fn snapshots(&self, sprite_id: &str) -> Result<Vec<Snapshot>, DbError> {
        self.read(|c| {
            c.query_map(
                "SELECT at_ms, stored_bytes, data_bytes, epoch FROM snapshots WHERE sprite_id = ?1 ORDER BY at_ms DESC",
                params![sprite_id],
                snapshot_row,
            )
        })
    }

    /// The newest replicated snapshot of the sprite.
    pub fn last_snapshot(&self, sprite_id: &str) -> Result<Option<Snapshot>, DbError> {
        // Asked for every sprite a listing shows: the one row, not them all.
        self.read(|c| {
            c.query_opt(
                "SELECT at_ms, stored_bytes, data_bytes, epoch FROM snapshots WHERE sprite_id = ?1 ORDER BY at_ms DESC LIMIT 1",
                params![sprite_id],
                snapshot_row,
            )
        })
    }

    /// Forgets every snapshot of the sprite (their manifests stay in the
    /// store until the sprite's copies there are removed).
    pub fn delete_snapshots(&self, sprite_id: &str) -> Result<(), DbError> {
        self.run(|c| {
            c.execute(
                "DELETE FROM snapshots WHERE sprite_id = ?1",
                params![sprite_id],
            )
        })?;
        Ok(())
    }

    pub fn delete_snapshot(&self, sprite_id: &str, at_ms: u64) -> Result<(), DbError> {
        self.run(|c| {
            c.execute(
                "DELETE FROM snapshots WHERE sprite_id = ?1 AND at_ms = ?2",
                params![sprite_id, at_ms as i64],
            )
        })?;
        Ok(())
    }
}

/// One replicated snapshot of a sprite's volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// When it was taken (unix ms); also its manifest's name.
    pub at_ms: u64,
    pub stored_bytes: u64,
    pub data_bytes: u64,
    /// The epoch under which its holder took it: in its manifest's name.
    pub epoch: i64,
}

/// A row of `snapshots` (`at_ms, stored_bytes, data_bytes, epoch`).
fn snapshot_row(r: &super::sql::Row) -> Result<Snapshot, DbError> {
    Ok(Snapshot {
        at_ms: u64::try_from(r.get::<i64>(0)?).unwrap_or(0),
        stored_bytes: u64::try_from(r.get::<i64>(1)?).unwrap_or(0),
        data_bytes: u64::try_from(r.get::<i64>(2)?).unwrap_or(0),
        epoch: r.get(3)?,
    })
}
