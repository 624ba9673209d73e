//! Browser logins to a sprite URL: a cookie holding a signed session, never
//! the token itself. `v1.<expiry>.<subject>.<mac>`: the subject is `admin`
//! or the API token's id (so revoking the token ends its sessions), the MAC
//! a keyed BLAKE3 over the sprite's name, expiry and subject with a secret
//! kept in `<data>/url-session.key` (mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;

use crate::AppState;

pub const COOKIE: &str = "sprite_session";
/// How long a login lasts.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
const ADMIN: &str = "admin";

/// The signing secret; never printed.
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Load the key file `path` (see
    /// [`crate::layout::DataDir::url_session_key`]), or make one.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Secret> {
        if let Ok(b) = std::fs::read(path) {
            if let Ok(k) = <[u8; 32]>::try_from(b.as_slice()) {
                return Ok(Secret(k));
            }
        }
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        let tmp = crate::layout::temp_beside(path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&k)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(Secret(k))
    }

    #[cfg(test)]
    pub fn fixed(k: [u8; 32]) -> Secret {
        Secret(k)
    }

    fn mac(&self, sprite: &str, expiry: u64, subject: &str) -> blake3::Hash {
        blake3::keyed_hash(
            &self.0,
            format!("v1|{sprite}|{expiry}|{subject}").as_bytes(),
        )
    }

    /// A session value for `subject` on `sprite`, valid until `expiry`
    /// (seconds since the epoch).
    pub fn issue(&self, sprite: &str, subject: &str, expiry: u64) -> String {
        format!(
            "v1.{expiry}.{subject}.{}",
            self.mac(sprite, expiry, subject).to_hex()
        )
    }

    /// The subject of a well-signed, unexpired session for `sprite`.
    pub fn verify<'a>(&self, sprite: &str, value: &'a str, now: u64) -> Option<&'a str> {
        let mut parts = value.split('.');
        let (Some("v1"), Some(exp), Some(subject), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expiry: u64 = exp.parse().ok()?;
        let given = blake3::Hash::from_hex(mac).ok()?;
        // blake3::Hash compares in constant time.
        (expiry > now && given == self.mac(sprite, expiry, subject)).then_some(subject)
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Who a token is, for a session: the admin token (`admin-` and a
/// fingerprint of it, so that a session ends when the admin token is
/// changed) or the API token's id.
pub fn subject_of(state: &AppState, token: &str) -> Option<String> {
    if state.token.matches(token) {
        return Some(admin_subject(state.token.expose()));
    }
    state.tokens.id_of(token)
}

/// `admin-` and 16 hex digits of a keyed hash of the admin token (the
/// token cannot be recovered from a cookie).
fn admin_subject(token: &str) -> String {
    let h = blake3::derive_key("sprited url session admin v1", token.as_bytes());
    let hex: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{ADMIN}-{hex}")
}

/// Whether a session's subject may still act: an admin session while the
/// admin token is the one it was made with, a token's while it lives.
pub fn subject_live(state: &AppState, subject: &str) -> bool {
    if subject.starts_with(ADMIN) {
        return subject == admin_subject(state.token.expose());
    }
    state.tokens.is_live_id(subject)
}

/// Every value of the session cookie among a request's `Cookie` headers.
pub fn find_cookies(headers: &axum::http::HeaderMap) -> Vec<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .collect()
}

/// Remove a sprite's `Set-Cookie` of the session cookie's name (for any
/// domain or path): set for a parent domain it would reach other sprites'
/// URLs and shadow their sessions.
pub fn strip_set_cookie(headers: &mut axum::http::HeaderMap) {
    use axum::http::header::SET_COOKIE;
    let ours = |v: &axum::http::HeaderValue| {
        let text = String::from_utf8_lossy(v.as_bytes());
        text.split_once('=')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case(COOKIE))
    };
    if !headers.get_all(SET_COOKIE).iter().any(ours) {
        return;
    }
    let kept: Vec<_> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| !ours(v))
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for v in kept {
        headers.append(SET_COOKIE, v);
    }
}

/// Remove the session cookie from the `Cookie` headers (the sprite's server
/// never sees it); other cookies pass.
pub fn strip_cookie(headers: &mut axum::http::HeaderMap) {
    strip_cookie_named(headers, COOKIE);
}

/// Remove cookie `name` from the `Cookie` headers; other cookies pass.
pub fn strip_cookie_named(headers: &mut axum::http::HeaderMap, name: &str) {
    use axum::http::header::COOKIE as H;
    let kept: Vec<String> = headers
        .get_all(H)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|kv| {
            !kv.is_empty() && kv.split_once('=').map(|(k, _)| k) != Some(name) && *kv != name
        })
        .map(String::from)
        .collect();
    headers.remove(H);
    if !kept.is_empty() {
        if let Ok(v) = axum::http::HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(H, v);
        }
    }
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// `Set-Cookie` that ends the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn sessions_are_bound_to_sprite_expiry_and_key() {
        let s = Secret::fixed([7; 32]);
        let v = s.issue("web", "admin", 1000);
        assert_eq!(s.verify("web", &v, 999), Some("admin"));
        assert_eq!(s.verify("web", &v, 1000), None, "expired");
        assert_eq!(s.verify("other", &v, 10), None, "another sprite");
        assert_eq!(
            Secret::fixed([8; 32]).verify("web", &v, 10),
            None,
            "another key"
        );
        let forged = v.replace("admin", "tok");
        assert_eq!(s.verify("web", &forged, 10), None);
        let later = v.replacen("1000", "9999", 1);
        assert_eq!(s.verify("web", &later, 10), None);
        assert_eq!(s.verify("web", "garbage", 10), None);
    }

    #[test]
    fn the_session_cookie_is_found_and_stripped() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            HeaderValue::from_static("a=1; sprite_session=xyz"),
        );
        h.append("cookie", HeaderValue::from_static("b=2"));
        h.append("cookie", HeaderValue::from_static("sprite_session=tossed"));
        assert_eq!(find_cookies(&h), ["xyz", "tossed"]);
        strip_cookie(&mut h);
        assert_eq!(
            h.get("cookie").and_then(|v| v.to_str().ok()),
            Some("a=1; b=2")
        );
        assert!(find_cookies(&h).is_empty());
        let mut only = HeaderMap::new();
        only.insert("cookie", HeaderValue::from_static("sprite_session=xyz"));
        strip_cookie(&mut only);
        assert!(only.get("cookie").is_none());
    }

    #[test]
    fn a_sprite_cannot_set_the_session_cookie() {
        let mut h = HeaderMap::new();
        h.append("set-cookie", HeaderValue::from_static("app=1; Path=/"));
        h.append(
            "set-cookie",
            HeaderValue::from_static("Sprite_Session=x; Domain=example.test; Path=/"),
        );
        h.append("set-cookie", HeaderValue::from_static(" sprite_session =y"));
        strip_set_cookie(&mut h);
        let left: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(left, [HeaderValue::from_static("app=1; Path=/")]);
    }

    #[test]
    fn admin_sessions_name_the_admin_token_without_showing_it() {
        let a = admin_subject("first-admin-token");
        assert!(a.starts_with("admin-") && a.len() == 22, "{a}");
        assert!(!a.contains("first"));
        assert_ne!(a, admin_subject("second-admin-token"));
        assert_eq!(a, admin_subject("first-admin-token"));
    }
}
