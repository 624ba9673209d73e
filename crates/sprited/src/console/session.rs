//! The console's sign-ins: a random session id in an HttpOnly,
//! SameSite=Strict cookie, held in memory beside who signed in (the admin
//! token's fingerprint or an API token's id, never the token) and a CSRF
//! secret the page sends back in `X-CSRF-Token` on every change.
//!
//! Sessions live in the daemon's memory: a restart signs everyone out,
//! and signing out ends a session for good (a copied cookie stops
//! working too). A session ends with its token: revoking the token, or
//! changing the admin token, refuses the session's next request.
//!
//! A request carried by the cookie rather than a bearer token must come
//! from the console's own page: any `Origin` it has names this host,
//! `Sec-Fetch-Site` (sent by every current browser) is `same-origin` or
//! `none`, a WebSocket upgrade has an `Origin`, and a change carries the
//! CSRF secret. Sprite URLs are other host names under the same site, so
//! SameSite alone would not keep a sprite's page from using a session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, Method};
use rand::RngCore;
use sprites_api::token::TokenScope;

use crate::error::ApiError;
use crate::AppState;

pub const COOKIE: &str = "sprited_console";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a sign-in lasts.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at once; past it the oldest is signed out.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    subject: String,
    csrf: String,
    expires: Instant,
}

/// The signed-in browsers.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// What the page learns about its session.
#[derive(serde::Serialize)]
pub struct SessionInfo {
    pub csrf: String,
    pub admin: bool,
    pub scope: String,
}

fn random_hex() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    crate::auth::Token::new(a.to_string()).matches(b)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `subject`: its id (the cookie's value) and CSRF
    /// secret.
    pub fn open(&self, subject: String) -> (String, String) {
        let id = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(
            id.clone(),
            Session {
                subject,
                csrf: csrf.clone(),
                expires: now + LIFETIME,
            },
        );
        (id, csrf)
    }

    /// The subject and CSRF secret of a live session.
    fn find(&self, id: &str) -> Option<(String, String)> {
        let mut map = self.lock();
        let s = map.get(id)?;
        if s.expires <= Instant::now() {
            map.remove(id);
            return None;
        }
        Some((s.subject.clone(), s.csrf.clone()))
    }

    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Every value of the console's cookie among a request's `Cookie` headers
/// (a sprite's page may have tossed one for a parent domain: each is
/// tried).
pub fn cookies(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .collect()
}

/// Remove the console's cookie from a request bound for a sprite's URL.
pub fn strip_cookie(headers: &mut HeaderMap) {
    crate::urls::session::strip_cookie_named(headers, COOKIE);
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The scope of a subject that may still act.
fn scope_of(state: &AppState, subject: &str) -> Option<TokenScope> {
    if !crate::urls::session::subject_live(state, subject) {
        return None;
    }
    if subject.starts_with("admin-") {
        Some(TokenScope::admin())
    } else {
        state.tokens.scope_of_id(subject)
    }
}

/// A live session of the request's cookies: its id, subject's scope and
/// CSRF secret.
pub fn of_request(state: &AppState, headers: &HeaderMap) -> Option<(String, TokenScope, String)> {
    cookies(headers).into_iter().find_map(|id| {
        let (subject, csrf) = state.console.find(id)?;
        let scope = scope_of(state, &subject)?;
        Some((id.to_string(), scope, csrf))
    })
}

/// What the page is told of a session.
pub fn info(scope: &TokenScope, csrf: String) -> SessionInfo {
    SessionInfo {
        csrf,
        admin: scope.admin,
        scope: scope.describe(),
    }
}

/// Whether the request names no `Origin`, or names this host's (the
/// `Host` it was sent to, over http or https).
pub fn from_this_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    origin_host.is_some() && origin_host == host
}

/// Whether a request carried by the cookie comes from the console's own
/// page (see the module's comment); `changes` for any method but GET and
/// HEAD, and for WebSocket upgrades.
pub fn check_origin(headers: &HeaderMap, method: &Method, csrf: &str) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::Forbidden(format!("console session: {why}")));
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !from_this_origin(headers) {
        return refuse("the request comes from another origin");
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return refuse("the request comes from another site");
        }
    }
    let upgrade = headers.contains_key(header::UPGRADE);
    if upgrade && origin.is_none() {
        return refuse("a WebSocket needs an Origin");
    }
    let changes = !(method == Method::GET || method == Method::HEAD);
    if changes {
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same(csrf, given) {
            return refuse("missing or wrong X-CSRF-Token");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn sessions_open_find_and_close() {
        let s = Sessions::default();
        let (id, csrf) = s.open("admin-x".into());
        assert_eq!(id.len(), 64);
        assert_ne!(id, csrf);
        assert_eq!(s.find(&id), Some(("admin-x".into(), csrf)));
        assert_eq!(s.find("nope"), None);
        s.close(&id);
        assert_eq!(s.find(&id), None);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn every_cookie_of_the_name_is_found() {
        let h = headers(&[
            ("cookie", "a=1; sprited_console=one"),
            ("cookie", "sprited_console=two; sprite_session=x"),
        ]);
        assert_eq!(cookies(&h), ["one", "two"]);
        assert!(set_cookie("v").contains("HttpOnly; SameSite=Strict"));
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn only_the_consoles_own_page_may_use_the_cookie() {
        let get = Method::GET;
        let post = Method::POST;
        // A plain GET of the page's own (no Origin, as browsers send it).
        assert!(check_origin(&headers(&[("host", "h:1")]), &get, "c").is_ok());
        // Same origin, with the secret.
        let ok = headers(&[
            ("host", "h:1"),
            ("origin", "http://h:1"),
            ("sec-fetch-site", "same-origin"),
            ("x-csrf-token", "c"),
        ]);
        assert!(check_origin(&ok, &post, "c").is_ok());
        // A change without the secret, or with another.
        let no_csrf = headers(&[("host", "h:1"), ("origin", "http://h:1")]);
        assert!(check_origin(&no_csrf, &post, "c").is_err());
        assert!(check_origin(&ok, &post, "other").is_err());
        // Another origin (a sprite's URL), even for a GET.
        let sprite = headers(&[("host", "h:1"), ("origin", "http://web.h:1")]);
        assert!(check_origin(&sprite, &get, "c").is_err());
        let same_site = headers(&[("host", "h:1"), ("sec-fetch-site", "same-site")]);
        assert!(check_origin(&same_site, &get, "c").is_err());
        // A WebSocket needs its Origin.
        let ws = headers(&[("host", "h:1"), ("upgrade", "websocket")]);
        assert!(check_origin(&ws, &get, "c").is_err());
        let ws_ok = headers(&[
            ("host", "h:1"),
            ("upgrade", "websocket"),
            ("origin", "http://h:1"),
        ]);
        assert!(check_origin(&ws_ok, &get, "c").is_ok());
        let garbage = headers(&[("host", "h:1"), ("origin", "null")]);
        assert!(check_origin(&garbage, &get, "c").is_err());
    }
}
