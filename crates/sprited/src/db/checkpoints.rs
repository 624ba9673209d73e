//! The `checkpoints` table (one row per checkpoint) and `checkpoint_state`
//! (per sprite: the next number to hand out, the checkpoint it stands on).

use super::sql::{params, Row};

use super::{Db, DbError};

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

impl CheckpointRecord {
    fn read(row: &Row) -> Result<CheckpointRecord, DbError> {
        Ok(CheckpointRecord {
            id: row.get(0)?,
            seq: row.get::<i64>(1)? as u64,
            create_time: row.get(2)?,
            source_id: row.get(3)?,
            comment: row.get(4)?,
            is_auto: row.get(5)?,
        })
    }
}

impl Db {
    /// The number the sprite's next checkpoint gets. Taken for good by
    /// [`Db::insert_checkpoint`]; numbers of deleted checkpoints are never
    /// handed out again.
    pub fn next_checkpoint_seq(&self, sprite_id: &str) -> Result<u64, DbError> {
        let next: Option<i64> = self.run(|c| {
            c.query_opt(
                "SELECT next_seq FROM checkpoint_state WHERE sprite_id = ?1",
                params![sprite_id],
                |r| r.get(0),
            )
        })?;
        Ok(next.unwrap_or(0) as u64)
    }

    /// Records a checkpoint and makes it the one the sprite stands on.
    pub fn insert_checkpoint(&self, sprite_id: &str, ck: &CheckpointRecord) -> Result<(), DbError> {
        self.tx(|c| {
            c.execute(
                "INSERT INTO checkpoints (sprite_id, id, seq, create_time, source_id, comment, is_auto)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    sprite_id,
                    ck.id,
                    ck.seq as i64,
                    ck.create_time,
                    ck.source_id,
                    ck.comment,
                    ck.is_auto
                ],
            )?;
            c.execute(
                "INSERT INTO checkpoint_state (sprite_id, next_seq, current) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sprite_id) DO UPDATE SET
                   next_seq = CASE WHEN checkpoint_state.next_seq > excluded.next_seq
                                   THEN checkpoint_state.next_seq ELSE excluded.next_seq END,
                   current = excluded.current",
                params![sprite_id, ck.seq as i64 + 1, ck.id],
            )?;
            Ok(())
        })
    }

    /// The sprite's checkpoints, newest first.
    pub fn checkpoints(&self, sprite_id: &str) -> Result<Vec<CheckpointRecord>, DbError> {
        self.read(|c| {
            c.query_map(
                "SELECT id, seq, create_time, source_id, comment, is_auto FROM checkpoints
                 WHERE sprite_id = ?1 ORDER BY seq DESC",
                params![sprite_id],
                CheckpointRecord::read,
            )
        })
    }

    pub fn checkpoint(
        &self,
        sprite_id: &str,
        id: &str,
    ) -> Result<Option<CheckpointRecord>, DbError> {
        self.read(|c| {
            c.query_opt(
                "SELECT id, seq, create_time, source_id, comment, is_auto FROM checkpoints
                 WHERE sprite_id = ?1 AND id = ?2",
                params![sprite_id, id],
                CheckpointRecord::read,
            )
        })
    }

    /// Removes a checkpoint's record (and its cold-tier copy's); false
    /// when there was none.
    pub fn delete_checkpoint(&self, sprite_id: &str, id: &str) -> Result<bool, DbError> {
        self.tx(|c| {
            let n = c.execute(
                "DELETE FROM checkpoints WHERE sprite_id = ?1 AND id = ?2",
                params![sprite_id, id],
            )?;
            c.execute(
                "DELETE FROM cold_checkpoints WHERE sprite_id = ?1 AND id = ?2",
                params![sprite_id, id],
            )?;
            Ok(n > 0)
        })
    }

    /// The checkpoint the sprite's filesystem derives from (last created or
    /// restored), if any.
    pub fn current_checkpoint(&self, sprite_id: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .run(|c| {
                c.query_opt(
                    "SELECT current FROM checkpoint_state WHERE sprite_id = ?1",
                    params![sprite_id],
                    |r| r.get::<Option<String>>(0),
                )
            })?
            .flatten())
    }

    pub fn set_current_checkpoint(&self, sprite_id: &str, id: Option<&str>) -> Result<(), DbError> {
        self.run(|c| {
            c.execute(
                "INSERT INTO checkpoint_state (sprite_id, next_seq, current) VALUES (?1, 0, ?2)
                 ON CONFLICT (sprite_id) DO UPDATE SET current = excluded.current",
                params![sprite_id, id],
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sprites::tests::rec;
    use crate::db::testing::each_engine;

    #[test]
    fn checkpoint_numbers_are_never_reused() {
        each_engine(|fresh| {
            let db = fresh();
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
        });
    }
}
