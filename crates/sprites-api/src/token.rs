//! API tokens (extension): `POST /v1/tokens {name?}` → 201 with the secret
//! (shown once), `GET /v1/tokens`, `DELETE /v1/tokens/{id}` → 204. The
//! daemon keeps only a hash; a revoked token fails at once.
//! `POST /v1/organizations/{org}/tokens {description?, invite_code?}` is
//! the same create as the official SDKs call it (any org name: there is
//! one organization).

use serde::{Deserialize, Serialize};

/// What a token may do with a sprite it reaches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// See it: its record, checkpoints, services, policies, usage.
    Read,
    /// Reach inside it: exec and sessions, the filesystem, proxy and
    /// ports, its URL when it is token-protected.
    Exec,
    /// Change it: create, destroy, update, checkpoint, restore, policies,
    /// services.
    Manage,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Read, Action::Exec, Action::Manage];
}

/// What a token may do (extension). Made by an admin token; the admin
/// token and tokens made before scopes existed are admins.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenScope {
    /// Manages tokens and reads what spans the host (usage of every sprite,
    /// metrics); reaches every sprite with every action.
    #[serde(default)]
    pub admin: bool,
    /// The sprites it reaches by name; with `prefix`, a sprite matching
    /// either is reached. Both absent: every sprite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sprites: Option<Vec<String>>,
    /// Reaches every sprite whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// What it may do with them. Absent: everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<Action>>,
}

impl TokenScope {
    /// An admin: everything.
    pub fn admin() -> Self {
        TokenScope {
            admin: true,
            ..Default::default()
        }
    }

    /// Whether it reaches every sprite with every action.
    pub fn is_unlimited(&self) -> bool {
        self.admin
            || (self.sprites.is_none()
                && self.prefix.is_none()
                && self
                    .actions
                    .as_ref()
                    .is_none_or(|a| Action::ALL.iter().all(|x| a.contains(x))))
    }

    /// Whether the sprite named `name` is one it reaches.
    pub fn reaches(&self, name: &str) -> bool {
        if self.admin || (self.sprites.is_none() && self.prefix.is_none()) {
            return true;
        }
        self.sprites
            .as_ref()
            .is_some_and(|s| s.iter().any(|n| n == name))
            || self
                .prefix
                .as_ref()
                .is_some_and(|p| name.starts_with(p.as_str()))
    }

    /// Whether it may do `action` (to the sprites it reaches).
    pub fn may(&self, action: Action) -> bool {
        self.admin || self.actions.as_ref().is_none_or(|a| a.contains(&action))
    }

    /// Whether it may do `action` to the sprite named `name`.
    pub fn allows(&self, name: &str, action: Action) -> bool {
        self.reaches(name) && self.may(action)
    }

    /// A scope as a client asked for it, checked: names are sprite names,
    /// a prefix is the start of one, lists are not empty.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(names) = &self.sprites {
            if names.is_empty() {
                return Err(
                    "sprites must name at least one sprite (or be left out for all)".into(),
                );
            }
            for n in names {
                crate::name::validate(n)?;
            }
        }
        if let Some(p) = &self.prefix {
            if p.is_empty()
                || p.len() > 63
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!(
                    "prefix {p:?} is not the start of a sprite name (lowercase letters, digits, dashes)"
                ));
            }
        }
        if self.actions.as_ref().is_some_and(|a| a.is_empty()) {
            return Err("actions must hold at least one of read, exec, manage".into());
        }
        Ok(())
    }

    /// One line for people: `admin`, or the sprites and actions.
    pub fn describe(&self) -> String {
        if self.admin {
            return "admin".into();
        }
        let mut whom = Vec::new();
        if let Some(s) = &self.sprites {
            whom.push(s.join(","));
        }
        if let Some(p) = &self.prefix {
            whom.push(format!("{p}*"));
        }
        let whom = if whom.is_empty() {
            "all sprites".to_string()
        } else {
            whom.join(" ")
        };
        let what = match &self.actions {
            None => "read,exec,manage".to_string(),
            Some(a) => {
                let mut a = a.clone();
                a.sort();
                a.dedup();
                a.iter()
                    .map(|x| match x {
                        Action::Read => "read",
                        Action::Exec => "exec",
                        Action::Manage => "manage",
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            }
        };
        format!("{whom}: {what}")
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateTokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the new token may do; absent: every sprite, every action, not
    /// an admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<TokenScope>,
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
    #[serde(default)]
    pub scope: TokenScope,
}

/// The answer to a create: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewToken {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub token: String,
    #[serde(default)]
    pub scope: TokenScope,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}
