//! The `sprites` table: one row per sprite, its settings and timestamps.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, OptionalExtension, Row};

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

const COLUMNS: &str = "id, name, image, url_auth, labels, limits, environment, created_at, updated_at, last_running_at, last_active_at";

/// A row as stored: the JSON columns still text, decoded outside the row
/// callback, whose error type cannot carry a JSON error.
struct SpriteRow {
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
    fn read(row: &Row<'_>) -> rusqlite::Result<SpriteRow> {
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

    fn decode(self) -> Result<SpriteRecord, DbError> {
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

    /// Store the sprite's limits (read at its next start).
    pub fn set_limits(&self, id: &str, limits: &Limits, updated_at: &str) -> Result<(), DbError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE sprites SET limits = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, serde_json::to_string(limits)?, updated_at],
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

    pub fn get_by_id(&self, id: &str) -> Result<Option<SpriteRecord>, DbError> {
        let conn = self.lock()?;
        // Cached: every sprite URL request looks its sprite up.
        let row = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM sprites WHERE id = ?1"))?
            .query_row(params![id], SpriteRow::read)
            .optional()?;
        row.map(SpriteRow::decode).transpose()
    }

    pub fn get(&self, name: &str) -> Result<Option<SpriteRecord>, DbError> {
        let conn = self.lock()?;
        // Cached: every sprite URL request looks its sprite up.
        let row = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM sprites WHERE name = ?1"))?
            .query_row(params![name], SpriteRow::read)
            .optional()?;
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
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM sprites WHERE substr(name, 1, length(?1)) = ?1 AND name > ?2
             AND NOT EXISTS (SELECT 1 FROM json_each(?4) AS want
                 WHERE want.value NOT IN (SELECT value FROM json_each(sprites.labels)))
             ORDER BY name LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![prefix, after.unwrap_or(""), limit as i64, wanted],
            SpriteRow::read,
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?.decode()?);
        }
        Ok(out)
    }

    pub fn all(&self) -> Result<Vec<SpriteRecord>, DbError> {
        self.list("", None, usize::MAX >> 1)
    }

    /// Ids of every sprite the DB knows.
    pub fn sprite_ids(&self) -> Result<BTreeSet<String>, DbError> {
        let conn = self.lock()?;
        let mut st = conn.prepare("SELECT id FROM sprites")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets a sprite and every row of every table about it, in one
    /// transaction.
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
        tx.execute("DELETE FROM snapshots WHERE sprite_id = ?1", params![id])?;
        tx.execute(
            "DELETE FROM network_policies WHERE sprite_id = ?1",
            params![id],
        )?;
        tx.execute(
            "DELETE FROM privileges_policies WHERE sprite_id = ?1",
            params![id],
        )?;
        // Usage rows stay: what a destroyed sprite used is still owed.
        tx.execute("DELETE FROM meter_state WHERE sprite_id = ?1", params![id])?;
        // Its copies in the object store are removed after this (see
        // `forgotten`), in the same transaction: never lost track of.
        tx.execute(
            "INSERT OR REPLACE INTO forgotten (sprite_id, destroyed_at) VALUES (?1, ?2)",
            params![id, crate::time::now_rfc3339()],
        )?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

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
    fn a_label_filter_keeps_sprites_with_every_label() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("meta.db")).expect("open");
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
    }
}
