//! The `tokens` table: API tokens beside the admin one, stored hashed.

use super::sql::{params, Row};

use super::{Db, DbError};

/// One API token as stored: its hash, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub hash: String,
    pub created_at: String,
    /// JSON; `None` for a token made before scopes.
    pub scope: Option<String>,
}

/// A row of [`TOKEN_COLUMNS`], in its order.
fn token_row(r: &Row) -> Result<TokenRow, DbError> {
    Ok(TokenRow {
        id: r.get(0)?,
        name: r.get(1)?,
        hash: r.get(2)?,
        created_at: r.get(3)?,
        scope: r.get(4)?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, hash, created_at, scope";

impl Db {
    pub fn insert_token(&self, t: &TokenRow) -> Result<(), DbError> {
        self.run(|c| {
            c.execute(
            "INSERT INTO tokens (id, name, hash, created_at, scope) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![t.id, t.name, t.hash, t.created_at, t.scope],
        )
        })?;
        Ok(())
    }

    /// Every token, oldest first.
    /// The token whose secret hashes to `hash`, if there is one.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, DbError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"),
                params![hash],
                token_row,
            )
        })
    }

    pub fn tokens(&self) -> Result<Vec<TokenRow>, DbError> {
        self.read(|c| {
            c.query_map(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"),
                &[],
                token_row,
            )
        })
    }

    /// False when there was no such token.
    pub fn delete_token(&self, id: &str) -> Result<bool, DbError> {
        Ok(self.run(|c| c.execute("DELETE FROM tokens WHERE id = ?1", params![id]))? > 0)
    }
}
