//! API tokens (extension): `POST /v1/tokens {name?}` → 201 with the secret
//! (shown once), `GET /v1/tokens`, `DELETE /v1/tokens/{id}` → 204. The
//! daemon keeps only a hash; a revoked token fails at once.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateTokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A token as listed: never the secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

/// The answer to a create: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewToken {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}
