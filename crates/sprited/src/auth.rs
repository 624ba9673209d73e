//! Bearer-token authentication. The admin token comes from `SPRITED_TOKEN`
//! or is generated on first start into `<data>/admin.token` (mode 0600).
//! Tokens are never logged.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sprites_api::token::{Action, TokenScope};

use crate::error::ApiError;
use crate::AppState;

/// A secret that never prints itself.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn new(s: String) -> Self {
        Token(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compare in time independent of where the first difference is.
    pub fn matches(&self, candidate: &str) -> bool {
        let a = self.0.as_bytes();
        let b = candidate.as_bytes();
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= (x ^ b.get(i).copied().unwrap_or(0)) as usize;
        }
        diff == 0
    }
}

/// The admin token: `SPRITED_TOKEN` if set, else the token file `path`
/// (see [`crate::layout::DataDir::admin_token`]), else a new random one
/// written to it with mode 0600.
pub fn load_or_create(path: &Path, from_env: Option<String>) -> anyhow::Result<Token> {
    if let Some(t) = from_env.filter(|t| !t.trim().is_empty()) {
        return Ok(Token(t.trim().to_string()));
    }
    match fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(Token(s.trim().to_string())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = crate::layout::temp_beside(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    tracing::info!(path = %path.display(), "generated a new admin token");
    Ok(Token(token))
}

/// Who is calling: what the caller's token may do. Put on every request
/// that passed [`require_token`].
#[derive(Debug, Clone)]
pub struct Caller(pub TokenScope);

impl Caller {
    /// Refuses (403) unless the caller may do `action` to sprite `name`.
    pub fn may(&self, name: &str, action: Action) -> Result<(), ApiError> {
        if self.0.allows(name, action) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token may not {} sprite {name} (it may: {})",
                verb(action),
                self.0.describe()
            )))
        }
    }
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Read => "read",
        Action::Exec => "exec in",
        Action::Manage => "manage",
    }
}

/// Whether the request carries a credential the API takes (the admin
/// token, an API token, the console's sign-in); what it may do with it is
/// [`require_token`]'s to say.
pub fn admits(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    match headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(credential)
    {
        Some(t) => state.token.matches(t) || state.tokens.scope_of(t).is_some(),
        None => crate::console::session::of_request(state, headers).is_some(),
    }
}

/// Middleware: every `/v1` call needs `Authorization: Bearer <token>`: the
/// admin token or one made with `POST /v1/tokens`, whose scope then
/// decides what the call may do ([`authorize`]); or, from the web
/// console's page, its sign-in cookie ([`crate::console::session`]).
pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(credential);
    let scope = match bearer {
        Some(t) if state.token.matches(t) => Some(TokenScope::admin()),
        Some(t) => state.tokens.scope_of(t),
        // No token: the web console's sign-in, from its own page only.
        None => match crate::console::session::of_request(&state, req.headers()) {
            Some((_, scope, csrf)) => {
                if let Err(e) =
                    crate::console::session::check_origin(req.headers(), req.method(), &csrf)
                {
                    return e.into_response();
                }
                Some(scope)
            }
            None => None,
        },
    };
    let Some(scope) = scope else {
        return ApiError::Unauthorized.into_response();
    };
    if let Err(e) = authorize(&scope, req.method(), req.uri().path()) {
        return e.into_response();
    }
    req.extensions_mut().insert(Caller(scope));
    next.run(req).await
}

/// What a call needs of its token, by method and path: tokens and what
/// spans every sprite need an admin; a sprite's record and what it holds
/// need `read` (GET), what reaches inside it `exec`, any change `manage`.
/// The list and the create look at names themselves (the list shows what
/// the token reaches; a create names its sprite in the body).
pub fn authorize(scope: &TokenScope, method: &Method, path: &str) -> Result<(), ApiError> {
    if scope.admin {
        return Ok(());
    }
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let admin_only = || {
        Err(ApiError::Forbidden(
            "this needs an admin token (this one may: ".to_string() + &scope.describe() + ")",
        ))
    };
    match parts.as_slice() {
        ["sprites"] => Ok(()),
        ["sprites", name, rest @ ..] => {
            let inside = matches!(
                rest.first(),
                Some(&("exec" | "fs" | "proxy" | "control" | "ports"))
            );
            let action = if inside {
                Action::Exec
            } else if method == Method::GET || method == Method::HEAD {
                Action::Read
            } else {
                Action::Manage
            };
            Caller(scope.clone()).may(name, action)
        }
        ["openapi.json"] | ["organization"] => Ok(()),
        // MCP's tools act on any sprite they are told of.
        ["mcp", ..] if scope.is_unlimited() => Ok(()),
        _ => admin_only(),
    }
}

/// The token of an `Authorization` value. `FlyV1 <token>` is taken like
/// `Bearer <token>`: the official SDKs' `CreateToken` sends the caller's
/// credential that way, and here that credential is a sprited token.
fn credential(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("FlyV1 "))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = crate::layout::DataDir::new(dir.path()).admin_token();
        let t1 = load_or_create(&path, None).expect("create");
        let t2 = load_or_create(&path, None).expect("reload");
        assert_eq!(t1.expose(), t2.expose());
        assert_eq!(t1.expose().len(), 64);
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let env = load_or_create(&path, Some("from-env".into())).expect("env");
        assert_eq!(env.expose(), "from-env");
        assert!(!format!("{env:?}").contains("from-env"));
    }

    #[test]
    fn bearer_and_flyv1_carry_the_token() {
        assert_eq!(credential("Bearer abc"), Some("abc"));
        assert_eq!(credential("FlyV1 abc "), Some("abc"));
        assert_eq!(credential("Basic abc"), None);
        assert_eq!(credential("abc"), None);
    }

    #[test]
    fn comparison_requires_exact_match() {
        let t = Token::new("secret".into());
        assert!(t.matches("secret"));
        assert!(!t.matches("secre"));
        assert!(!t.matches("secret2"));
        assert!(!t.matches(""));
    }
}
