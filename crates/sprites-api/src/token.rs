//! API tokens (extension): `POST /v1/tokens {name?}` → 201 with the secret
//! (shown once), `GET /v1/tokens`, `DELETE /v1/tokens/{id}` → 204. The
//! daemon keeps only a hash; a revoked token fails at once.
//! `POST /v1/organizations/{org}/tokens {description?, invite_code?}` is
//! the same create as the official SDKs call it (any org name: there is
//! one organization).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateTokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `POST /v1/organizations/{org}/tokens`, the official SDKs' `CreateToken`:
/// what they send. The description names the new token; an invite code
/// means nothing here (there is nothing to be invited to).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrgTokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_code: Option<String>,
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
