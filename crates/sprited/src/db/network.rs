//! The `network_policies` table: each sprite's egress policy, as the JSON
//! the API was given (validated there).

use super::sql::params;

use super::{Db, DbError};

impl Db {
    /// The sprite's network policy (JSON), if one was set.
    pub fn network_policy(&self, sprite_id: &str) -> Result<Option<String>, DbError> {
        self.read(|c| {
            c.query_opt(
                "SELECT policy FROM network_policies WHERE sprite_id = ?1",
                params![sprite_id],
                |r| r.get(0),
            )
        })
    }

    pub fn set_network_policy(&self, sprite_id: &str, policy: &str) -> Result<(), DbError> {
        self.run(|c| {
            c.execute(
                "INSERT INTO network_policies (sprite_id, policy) VALUES (?1, ?2)
             ON CONFLICT (sprite_id) DO UPDATE SET policy = excluded.policy",
                params![sprite_id, policy],
            )
        })?;
        Ok(())
    }
}
