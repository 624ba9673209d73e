//! The `privileges_policies` table: each sprite's privileges policy, as
//! the JSON the API was given (validated there). No row is the default.

use rusqlite::{params, OptionalExtension};

use super::{Db, DbError};

impl Db {
    /// The sprite's privileges policy (JSON), if one was set.
    pub fn privileges_policy(&self, sprite_id: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .lock()?
            .query_row(
                "SELECT policy FROM privileges_policies WHERE sprite_id = ?1",
                params![sprite_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Stores the policy; `None` removes it (back to the default).
    pub fn set_privileges_policy(
        &self,
        sprite_id: &str,
        policy: Option<&str>,
    ) -> Result<(), DbError> {
        let conn = self.lock()?;
        match policy {
            Some(p) => conn.execute(
                "INSERT INTO privileges_policies (sprite_id, policy) VALUES (?1, ?2)
                 ON CONFLICT (sprite_id) DO UPDATE SET policy = excluded.policy",
                params![sprite_id, p],
            )?,
            None => conn.execute(
                "DELETE FROM privileges_policies WHERE sprite_id = ?1",
                params![sprite_id],
            )?,
        };
        Ok(())
    }
}
