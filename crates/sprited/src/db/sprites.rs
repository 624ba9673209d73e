//! The `sprites` table: one row per sprite, its settings and timestamps.

use std::collections::{BTreeMap, BTreeSet};

use super::sql::{params, Conn, Engine, Row};

use sprite_runtime::Isolation;

use super::{Db, DbError};

/// Resource limits in force for one sprite.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub cpus: f64,
    pub ram_mb: u64,
    pub storage_gb: u64,
    /// Kept with the limits (a JSON column): a row written before there
    /// was a choice reads as `container`, and a `container` sprite's row
    /// reads the same to a daemon that predates the choice.
    #[serde(default, skip_serializing_if = "Isolation::is_container")]
    pub isolation: Isolation,
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

pub(super) const COLUMNS: &str = "id, name, image, url_auth, labels, limits, environment, created_at, updated_at, last_running_at, last_active_at";

/// A row as stored: the JSON columns still text, decoded outside the row
/// callback, whose error type cannot carry a JSON error.
pub(super) struct SpriteRow {
    id: String,
    name: String,
    image: String,
    url_auth: String,
    labels: String,
    limits: String,
    environment: String,
    created_at: String,
    updated_at: String,
    last_running_at: Option<String>,
    last_active_at: Option<String>,
}

impl SpriteRow {
    /// Reads the columns of [`COLUMNS`], in its order.
    pub(super) fn read(row: &Row) -> Result<SpriteRow, DbError> {
        Ok(SpriteRow {
            id: row.get(0)?,
            name: row.get(1)?,
            image: row.get(2)?,
            url_auth: row.get(3)?,
            labels: row.get(4)?,
            limits: row.get(5)?,
            environment: row.get(6)?,
            created_at: row.get(7)?,
            updated_at: row.get(8)?,
            last_running_at: row.get(9)?,
            last_active_at: row.get(10)?,
        })
    }

    pub(super) fn decode(self) -> Result<SpriteRecord, DbError> {
        Ok(SpriteRecord {
            id: self.id,
            name: self.name,
            image: self.image,
            url_auth: self.url_auth,
            labels: serde_json::from_str(&self.labels)?,
            limits: serde_json::from_str(&self.limits)?,
            environment: serde_json::from_str(&self.environment)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_running_at: self.last_running_at,
            last_active_at: self.last_active_at,
        })
    }
}

impl Db {
    pub fn insert(&self, rec: &SpriteRecord) -> Result<(), DbError> {
        let labels = serde_json::to_string(&rec.labels)?;
        let limits = serde_json::to_string(&rec.limits)?;
        let environment = serde_json::to_string(&rec.environment)?;
        // A host sharing the database holds what it creates.
        let me = self.me();
        let res = self.tx(|c| {
            c.execute(
                &format!("INSERT INTO sprites ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![
                    rec.id,
                    rec.name,
                    rec.image,
                    rec.url_auth,
                    labels,
                    limits,
                    environment,
                    rec.created_at,
                    rec.updated_at,
                    rec.last_running_at,
                    rec.last_active_at,
                ],
            )?;
            if let Some(me) = &me {
                c.execute(
                    "INSERT INTO sprite_leases (sprite_id, host_id, epoch) VALUES (?1, ?2, 1)",
                    params![rec.id, me.host_id],
                )?;
            }
            Ok(())
        });
        if res.is_ok() && me.is_some() {
            self.local.hold(&rec.name, &rec.id);
            self.local.set_epoch(&rec.id, 1);
        }
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.is_unique_violation() => Err(DbError::Duplicate(rec.name.clone())),
            Err(e) => Err(e),
        }
    }

    /// Store the user-settable fields: url auth, labels, updated_at.
    pub fn update(&self, rec: &SpriteRecord) -> Result<(), DbError> {
        let labels = serde_json::to_string(&rec.labels)?;
        self.run(|c| {
            c.execute(
                "UPDATE sprites SET url_auth = ?2, labels = ?3, updated_at = ?4 WHERE id = ?1",
                params![rec.id, rec.url_auth, labels, rec.updated_at],
            )
        })?;
        Ok(())
    }

    /// Store the sprite's limits (read at its next start).
    pub fn set_limits(&self, id: &str, limits: &Limits, updated_at: &str) -> Result<(), DbError> {
        let limits = serde_json::to_string(limits)?;
        self.run(|c| {
            c.execute(
                "UPDATE sprites SET limits = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, limits, updated_at],
            )
        })?;
        Ok(())
    }

    /// Record when the sprite last started running.
    pub fn set_last_running(&self, id: &str, at: &str) -> Result<(), DbError> {
        self.run_unflushed(|c| {
            c.execute(
                "UPDATE sprites SET last_running_at = ?2 WHERE id = ?1",
                params![id, at],
            )
        })?;
        Ok(())
    }

    /// Record the sprite's last activity (an exec, a session, a call).
    pub fn set_last_active(&self, id: &str, at: &str) -> Result<(), DbError> {
        self.run_unflushed(|c| {
            c.execute(
                "UPDATE sprites SET last_active_at = ?2 WHERE id = ?1",
                params![id, at],
            )
        })?;
        Ok(())
    }

    pub fn get_by_id(&self, id: &str) -> Result<Option<SpriteRecord>, DbError> {
        // Prepared once per connection: every sprite URL request looks its
        // sprite up.
        let row = self.read(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM sprites WHERE id = ?1"),
                params![id],
                SpriteRow::read,
            )
        })?;
        row.map(SpriteRow::decode).transpose()
    }

    pub fn get(&self, name: &str) -> Result<Option<SpriteRecord>, DbError> {
        let row = self.read(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM sprites WHERE name = ?1"),
                params![name],
                SpriteRow::read,
            )
        })?;
        row.map(SpriteRow::decode).transpose()
    }

    /// Sprites whose name starts with `prefix` and sorts after `after`, by
    /// name, at most `limit`.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SpriteRecord>, DbError> {
        self.list_labelled(prefix, &[], after, limit)
    }

    /// Like [`Db::list`], only sprites that have every one of `labels`
    /// (filtered in the query, so that a page is full when more match).
    pub fn list_labelled(
        &self,
        prefix: &str,
        labels: &[String],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SpriteRecord>, DbError> {
        let wanted = serde_json::to_string(labels)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.read(|c| {
            let sql = list_sql(c);
            c.query_map(
                &sql,
                params![prefix, after.unwrap_or(""), limit, wanted],
                SpriteRow::read,
            )
        })?;
        rows.into_iter().map(SpriteRow::decode).collect()
    }

    pub fn all(&self) -> Result<Vec<SpriteRecord>, DbError> {
        self.list("", None, usize::MAX >> 1)
    }

    /// Ids of every sprite the DB knows.
    pub fn sprite_ids(&self) -> Result<BTreeSet<String>, DbError> {
        let ids = self.read(|c| c.query_map("SELECT id FROM sprites", &[], |r| r.get(0)))?;
        Ok(ids.into_iter().collect())
    }

    /// Forgets a sprite and every row of every table about it, in one
    /// transaction.
    pub fn delete(&self, id: &str) -> Result<(), DbError> {
        let now = crate::time::now_rfc3339();
        // Not served here from now on, whatever the transaction's fate (a
        // failed one only costs a lookup).
        self.local.drop_id(id);
        self.tx(|c| {
            for table in [
                "checkpoints",
                "checkpoint_state",
                "tasks",
                "cold_sprites",
                "cold_checkpoints",
                "snapshots",
                "network_policies",
                "privileges_policies",
                "sprite_leases",
                // Usage rows stay: what a destroyed sprite used is still owed.
                "meter_state",
            ] {
                c.execute(
                    &format!("DELETE FROM {table} WHERE sprite_id = ?1"),
                    params![id],
                )?;
            }
            c.execute("DELETE FROM sprites WHERE id = ?1", params![id])?;
            // Its copies in the object store are removed after this (see
            // `forgotten`), in the same transaction: never lost track of.
            c.execute(
                "INSERT INTO forgotten (sprite_id, destroyed_at) VALUES (?1, ?2)
                 ON CONFLICT (sprite_id) DO UPDATE SET destroyed_at = excluded.destroyed_at",
                params![id, now],
            )?;
            Ok(())
        })
    }
}

/// The page query of [`Db::list_labelled`]: `?1` prefix, `?2` after,
/// `?3` limit, `?4` the labels wanted (a JSON array), each engine with its
/// own JSON functions. The prefix is compared, not matched (a `%` in it is
/// a `%`).
fn list_sql(c: &dyn Conn) -> String {
    let (wanted, has) = match c.engine() {
        Engine::Sqlite => (
            "SELECT value FROM json_each(?4)",
            "SELECT value FROM json_each(sprites.labels)",
        ),
        Engine::Postgres => (
            "SELECT jsonb_array_elements_text(CAST(?4 AS TEXT)::jsonb) AS value",
            "SELECT jsonb_array_elements_text(sprites.labels::jsonb)",
        ),
    };
    format!(
        "SELECT {COLUMNS} FROM sprites
         WHERE substr(name, 1, length(CAST(?1 AS TEXT))) = CAST(?1 AS TEXT) AND name > ?2
         AND NOT EXISTS (SELECT 1 FROM ({wanted}) AS want
             WHERE want.value NOT IN ({has}))
         ORDER BY name LIMIT ?3"
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::db::testing::each_engine;

    /// A sprite record named `name`, with id `id-<name>`.
    pub(in crate::db) fn rec(name: &str) -> SpriteRecord {
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
                isolation: Isolation::Container,
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
        each_engine(|fresh| {
            let db = fresh();
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
        });
    }

    #[test]
    fn a_label_filter_keeps_sprites_with_every_label() {
        each_engine(|fresh| {
            let db = fresh();
            for (n, labels) in [
                ("a", &["x", "y"][..]),
                ("b", &["y"]),
                ("c", &[]),
                ("d", &["x", "y", "z"]),
            ] {
                let mut r = rec(n);
                r.labels = labels.iter().map(|l| l.to_string()).collect();
                db.insert(&r).expect("insert");
            }
            let names = |labels: &[&str], after: Option<&str>, limit: usize| {
                let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
                db.list_labelled("", &labels, after, limit)
                    .expect("list")
                    .into_iter()
                    .map(|r| r.name)
                    .collect::<Vec<_>>()
            };
            assert_eq!(names(&[], None, 10), ["a", "b", "c", "d"]);
            assert_eq!(names(&["y"], None, 10), ["a", "b", "d"]);
            assert_eq!(names(&["x", "y"], None, 10), ["a", "d"]);
            assert!(names(&["nope"], None, 10).is_empty());
            // Pages fill up with matches only.
            assert_eq!(names(&["x"], None, 1), ["a"]);
            assert_eq!(names(&["x"], Some("a"), 1), ["d"]);
        });
    }
}
