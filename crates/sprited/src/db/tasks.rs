//! The `tasks` table: named leases that keep a sprite awake until they
//! expire, kept across daemon restarts.

use super::sql::params;

use super::{Db, DbError};

/// One task as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub name: String,
    pub started_at: String,
    pub expires_unix_ms: i64,
}

impl Db {
    /// Creates or replaces a task.
    pub fn put_task(
        &self,
        sprite_id: &str,
        name: &str,
        started_at: &str,
        expires_unix_ms: i64,
    ) -> Result<(), DbError> {
        self.run(|c| c.execute(
            "INSERT INTO tasks (sprite_id, name, started_at, expires_unix_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(sprite_id, name) DO UPDATE SET started_at = excluded.started_at,
             expires_unix_ms = excluded.expires_unix_ms",
            params![sprite_id, name, started_at, expires_unix_ms],
        ))?;
        Ok(())
    }

    pub fn delete_task(&self, sprite_id: &str, name: &str) -> Result<(), DbError> {
        self.run(|c| {
            c.execute(
                "DELETE FROM tasks WHERE sprite_id = ?1 AND name = ?2",
                params![sprite_id, name],
            )
        })?;
        Ok(())
    }

    /// The sprite's tasks, by name.
    pub fn tasks(&self, sprite_id: &str) -> Result<Vec<TaskRow>, DbError> {
        self.read(|c| c.query_map("SELECT name, started_at, expires_unix_ms FROM tasks WHERE sprite_id = ?1 ORDER BY name", params![sprite_id], |r| {
            Ok(TaskRow {
                name: r.get(0)?,
                started_at: r.get(1)?,
                expires_unix_ms: r.get(2)?,
            })
        }))
    }
}
