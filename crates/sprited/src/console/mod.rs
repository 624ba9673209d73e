//! The web console: a page for a browser at `/` and its assets at
//! `/console/...`, all built into the binary (`console/` in this crate,
//! listed by `build.rs`), and the sign-in at `/console/session`. The page
//! drives the same public API as every other client; a sign-in only
//! lets the browser call it with a cookie ([`session`]).
//!
//! Every answer here carries a strict Content-Security-Policy: scripts and
//! styles from this origin only, plus `<style>` elements carrying the
//! page's nonce (the terminal library makes them at run time; the page
//! gives each the nonce its `index.html` was served with).

pub mod session;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::RngCore;

use crate::error::ApiError;
use crate::AppState;

/// `(path under console/, content type, ETag, bytes)` of every asset.
static ASSETS: &[(&str, &str, &str, &[u8])] =
    include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

const INDEX: &str = "index.html";
/// Where the page's `{{NONCE}}` placeholders are.
const NONCE_SLOT: &str = "{{NONCE}}";

/// The routes; the API's router merges them.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route(
            "/console/session",
            get(current).post(sign_in).delete(sign_out),
        )
        .route("/console/{*path}", get(asset))
}

/// The bytes the console adds to the binary.
pub fn size() -> usize {
    ASSETS.iter().map(|(_, _, _, b)| b.len()).sum()
}

fn csp(nonce: Option<&str>) -> String {
    let styles = match nonce {
        Some(n) => format!("style-src 'self' 'nonce-{n}'"),
        None => "style-src 'self'".into(),
    };
    format!(
        "default-src 'self'; script-src 'self'; {styles}; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'self'; object-src 'none'"
    )
}

/// The headers of every console answer.
fn secure(mut res: Response, nonce: Option<&str>) -> Response {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp(nonce)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    res
}

fn find(path: &str) -> Option<&'static (&'static str, &'static str, &'static str, &'static [u8])> {
    ASSETS.iter().find(|(p, ..)| *p == path)
}

/// `index.html`, its nonce fresh for each answer.
async fn index() -> Response {
    let Some((_, kind, _, bytes)) = find(INDEX) else {
        return ApiError::NotFound("the console is not built in".into()).into_response();
    };
    let mut raw = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    use base64::Engine as _;
    let nonce = base64::engine::general_purpose::STANDARD.encode(raw);
    let page = String::from_utf8_lossy(bytes).replace(NONCE_SLOT, &nonce);
    let res = (
        [
            (header::CONTENT_TYPE, *kind),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response();
    secure(res, Some(&nonce))
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, kind, etag, bytes)) = find(&path).filter(|(p, ..)| *p != INDEX) else {
        return secure(
            ApiError::NotFound("no such console file".into()).into_response(),
            None,
        );
    };
    tracing::debug!(path, "console asset");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == *etag));
    let res = if fresh {
        (StatusCode::NOT_MODIFIED, [(header::ETAG, *etag)]).into_response()
    } else {
        (
            [
                (header::CONTENT_TYPE, *kind),
                (header::ETAG, *etag),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response()
    };
    secure(res, None)
}

/// `GET /console/session`: who this browser is signed in as.
async fn current(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let res = match session::of_request(&state, &headers) {
        Some((_, scope, csrf)) => Json(session::info(&scope, csrf)).into_response(),
        None => ApiError::Unauthorized.into_response(),
    };
    secure(no_store(res), None)
}

#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /console/session` `{"token": ...}`: a session for a token the API
/// takes, in a cookie.
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    secure(no_store(sign_in_inner(&state, &headers, &body)), None)
}

fn sign_in_inner(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Response {
    // The sign-in form is the console's own: no other page may sign a
    // browser in (to its own token, say).
    if !session::from_this_origin(headers) {
        return ApiError::Forbidden("sign in from the console's own page".into()).into_response();
    }
    let Ok(SignIn { token }) = serde_json::from_slice::<SignIn>(body) else {
        return ApiError::BadRequest("the body must be {\"token\": \"...\"}".into())
            .into_response();
    };
    let token = token.trim();
    let Some(subject) = crate::urls::session::subject_of(state, token) else {
        return ApiError::Unauthorized.into_response();
    };
    let scope = if state.token.matches(token) {
        sprites_api::token::TokenScope::admin()
    } else {
        match state.tokens.scope_of(token) {
            Some(s) => s,
            None => return ApiError::Unauthorized.into_response(),
        }
    };
    let (id, csrf) = state.console.open(subject);
    tracing::info!(scope = %scope.describe(), "console sign-in");
    let mut res = Json(session::info(&scope, csrf)).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `DELETE /console/session`: signs this browser out for good.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let res = match session::of_request(&state, &headers) {
        Some((id, _, csrf)) => {
            match session::check_origin(&headers, &axum::http::Method::DELETE, &csrf) {
                Ok(()) => {
                    state.console.close(&id);
                    let mut res = StatusCode::NO_CONTENT.into_response();
                    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
                        res.headers_mut().insert(header::SET_COOKIE, v);
                    }
                    res
                }
                Err(e) => e.into_response(),
            }
        }
        None => ApiError::Unauthorized.into_response(),
    };
    secure(no_store(res), None)
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_terminal_are_built_in() {
        for want in [INDEX, "vendor/xterm/xterm.mjs", "vendor/xterm/LICENSE"] {
            assert!(find(want).is_some(), "{want} is not built in");
        }
        let (_, kind, _, page) = find(INDEX).expect("index");
        assert!(kind.starts_with("text/html"));
        assert!(String::from_utf8_lossy(page).contains(NONCE_SLOT));
        assert!(ASSETS.iter().all(|(p, ..)| !p.starts_with("test/")));
        assert!(size() > 100_000);
    }

    #[test]
    fn the_policy_allows_only_this_origin() {
        let p = csp(Some("abc"));
        assert!(p.contains("script-src 'self';"));
        assert!(p.contains("style-src 'self' 'nonce-abc'"));
        assert!(p.contains("frame-ancestors 'none'"));
        assert!(!p.contains("unsafe"));
    }
}
