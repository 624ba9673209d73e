//! The `privileges_policies` table: each sprite's privileges policy, as
//! the JSON the API was given (validated there). No row is the default.

use super::sql::params;

use super::{Db, DbError};

impl Db {
    /// The sprite's privileges policy (JSON), if one was set.
    pub fn privileges_policy(&self, sprite_id: &str) -> Result<Option<String>, DbError> {
        self.read(|c| {
            c.query_opt(
                "SELECT policy FROM privileges_policies WHERE sprite_id = ?1",
                params![sprite_id],
                |r| r.get(0),
            )
        })
    }

    /// Stores the policy; `None` removes it (back to the default).
    pub fn set_privileges_policy(
        &self,
        sprite_id: &str,
        policy: Option<&str>,
    ) -> Result<(), DbError> {
        self.run(|c| match policy {
            Some(p) => c.execute(
                "INSERT INTO privileges_policies (sprite_id, policy) VALUES (?1, ?2)
                 ON CONFLICT (sprite_id) DO UPDATE SET policy = excluded.policy",
                params![sprite_id, p],
            ),
            None => c.execute(
                "DELETE FROM privileges_policies WHERE sprite_id = ?1",
                params![sprite_id],
            ),
        })?;
        Ok(())
    }
}
