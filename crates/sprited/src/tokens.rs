//! API tokens besides the admin token: made on request, stored as BLAKE3
//! hashes (a token is 256 random bits, so a plain hash is enough; the DB
//! never holds a usable secret), checked against an in-memory set that a
//! revoke updates before it answers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rand::RngCore;
use sprites_api::token::{NewToken, TokenInfo, TokenScope};

use crate::db::{Db, TokenRow};
use crate::error::Error;
use crate::time::now_rfc3339;

/// Prefix of the tokens made here (the admin token has none).
pub const PREFIX: &str = "spr_";

pub fn hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

pub struct Tokens {
    db: Arc<Db>,
    /// hash → (token id, scope).
    valid: RwLock<HashMap<String, (String, TokenScope)>>,
    /// When `valid` was last read from a database other hosts share (they
    /// make and revoke tokens too); `None` for a database of this host's.
    loaded: Option<std::sync::Mutex<std::time::Instant>>,
}

/// How old what a host knows of a shared database's tokens may get: a
/// token revoked on another host fails here within this.
const SHARED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// A stored scope; a token from before scopes (none stored) is an admin,
/// as it could do everything then. An unreadable one grants nothing.
fn stored_scope(id: &str, scope: Option<&str>) -> TokenScope {
    match scope {
        None => TokenScope::admin(),
        Some(json) => serde_json::from_str(json).unwrap_or_else(|e| {
            tracing::warn!(token_id = %id, error = %e, "unreadable token scope: the token reaches nothing");
            TokenScope {
                sprites: Some(Vec::new()),
                actions: Some(Vec::new()),
                ..Default::default()
            }
        }),
    }
}

fn read_all(db: &Db) -> Result<HashMap<String, (String, TokenScope)>, Error> {
    Ok(db
        .tokens()?
        .into_iter()
        .map(|t| {
            let scope = stored_scope(&t.id, t.scope.as_deref());
            (t.hash, (t.id, scope))
        })
        .collect())
}

impl Tokens {
    pub fn load(db: Arc<Db>) -> Result<Tokens, Error> {
        let valid = read_all(&db)?;
        let loaded = (db.engine() == crate::db::Engine::Postgres)
            .then(|| std::sync::Mutex::new(std::time::Instant::now()));
        Ok(Tokens {
            db,
            valid: RwLock::new(valid),
            loaded,
        })
    }

    /// On a shared database: reads the tokens again when what is known is
    /// older than `age` (a database that cannot be read keeps what is known).
    fn refresh(&self, age: std::time::Duration) {
        let Some(loaded) = &self.loaded else {
            return;
        };
        let Ok(mut at) = loaded.lock() else {
            return;
        };
        if at.elapsed() < age {
            return;
        }
        match read_all(&self.db) {
            Ok(all) => {
                if let Ok(mut v) = self.valid.write() {
                    *v = all;
                }
                *at = std::time::Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the API tokens again"),
        }
    }

    /// What a live token may do; `None` for anything else.
    pub fn scope_of(&self, candidate: &str) -> Option<TokenScope> {
        if !candidate.starts_with(PREFIX) {
            return None;
        }
        let h = hash(candidate);
        self.refresh(SHARED_FOR);
        let known = self.valid.read().ok()?.get(&h).map(|(_, s)| s.clone());
        if known.is_some() || self.loaded.is_none() {
            return known;
        }
        // Not known here: perhaps made on another host a moment ago.
        let row = self.db.token_by_hash(&h).ok()??;
        let scope = stored_scope(&row.id, row.scope.as_deref());
        if let Ok(mut v) = self.valid.write() {
            v.insert(row.hash, (row.id, scope.clone()));
        }
        Some(scope)
    }

    /// Whether `candidate` is a live token.
    pub fn check(&self, candidate: &str) -> bool {
        self.scope_of(candidate).is_some()
    }

    /// The id of a live token (a login session names its token by id).
    pub fn id_of(&self, candidate: &str) -> Option<String> {
        if !candidate.starts_with(PREFIX) {
            return None;
        }
        let h = hash(candidate);
        self.valid.read().ok()?.get(&h).map(|(id, _)| id.clone())
    }

    /// The scope of the live token with this id.
    pub fn scope_of_id(&self, id: &str) -> Option<TokenScope> {
        self.refresh(SHARED_FOR);
        self.valid
            .read()
            .ok()?
            .values()
            .find(|(t, _)| t == id)
            .map(|(_, s)| s.clone())
    }

    /// Whether the token with this id is still live.
    pub fn is_live_id(&self, id: &str) -> bool {
        self.scope_of_id(id).is_some()
    }

    pub fn create(
        &self,
        name: Option<String>,
        scope: Option<TokenScope>,
    ) -> Result<NewToken, Error> {
        let scope = scope.unwrap_or_default();
        scope.validate().map_err(Error::Invalid)?;
        let name = name.unwrap_or_else(|| "token".into());
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "token name must be 1-100 printable characters".into(),
            ));
        }
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let token = format!(
            "{PREFIX}{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let row = TokenRow {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            hash: hash(&token),
            created_at: now_rfc3339(),
            scope: Some(
                serde_json::to_string(&scope)
                    .map_err(|e| Error::Internal(format!("encoding a token scope: {e}")))?,
            ),
        };
        self.db.insert_token(&row)?;
        if let Ok(mut v) = self.valid.write() {
            v.insert(row.hash, (row.id.clone(), scope.clone()));
        }
        tracing::info!(token_id = %row.id, name = %row.name, scope = %scope.describe(), "API token created");
        Ok(NewToken {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            token,
            scope,
        })
    }

    pub fn list(&self) -> Result<Vec<TokenInfo>, Error> {
        Ok(self
            .db
            .tokens()?
            .into_iter()
            .map(|t| TokenInfo {
                scope: stored_scope(&t.id, t.scope.as_deref()),
                id: t.id,
                name: t.name,
                created_at: t.created_at,
            })
            .collect())
    }

    /// Revokes a token: it fails from the moment this returns.
    pub fn revoke(&self, id: &str) -> Result<(), Error> {
        if let Ok(mut v) = self.valid.write() {
            v.retain(|_, (tid, _)| tid != id);
        }
        if !self.db.delete_token(id)? {
            return Err(Error::NotFound(format!("no token with id {id}")));
        }
        tracing::info!(token_id = %id, "API token revoked");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_check_revoke() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Db::open(&dir.path().join("meta.db")).expect("db"));
        let tokens = Tokens::load(db.clone()).expect("load");
        let t = tokens.create(Some("ci".into()), None).expect("create");
        assert!(t.token.starts_with(PREFIX) && t.token.len() == PREFIX.len() + 64);
        assert!(tokens.check(&t.token));
        assert!(!tokens.check("spr_nope"));
        // The DB holds the hash, not the secret; a reload knows the token.
        let stored = db.tokens().expect("tokens");
        assert!(stored
            .iter()
            .all(|s| s.hash != t.token && !s.hash.contains(&t.token[4..])));
        assert!(Tokens::load(db.clone()).expect("reload").check(&t.token));
        tokens.revoke(&t.id).expect("revoke");
        assert!(!tokens.check(&t.token));
        assert!(tokens.revoke(&t.id).is_err());
        assert!(tokens.create(Some(String::new()), None).is_err());
    }

    /// Two hosts on one database: a token made on one works on the other
    /// at once; one revoked there fails here within a second.
    #[test]
    fn a_token_works_on_every_host_sharing_the_database() {
        crate::db::testing::each_engine_twice(|fresh| {
            let (a, b) = fresh();
            if a.engine() != crate::db::Engine::Postgres {
                return;
            }
            let (a, b) = (Arc::new(a), Arc::new(b));
            let on_a = Tokens::load(a).expect("load");
            let on_b = Tokens::load(b).expect("load");
            let t = on_a.create(Some("ci".into()), None).expect("create");
            assert!(on_b.check(&t.token), "made on a, unknown on b");
            on_a.revoke(&t.id).expect("revoke");
            let deadline = std::time::Instant::now() + SHARED_FOR * 3;
            while on_b.check(&t.token) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "revoked on a, live on b"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
    }
}
