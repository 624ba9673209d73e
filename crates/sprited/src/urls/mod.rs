//! Sprite URLs: `http://<name>.<url-domain>:<port>/` on the API's listener,
//! routed by host to port 8080 inside the sprite (or the port of the one
//! service with `http_port`), with the sprite's URL auth in front.

pub mod host;
pub mod pages;
pub mod proxy;
pub mod records;
pub mod session;
pub mod target;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::db::SpriteRecord;
use crate::manager::relay::DialError;
use crate::AppState;
use host::Route;

/// Largest login form.
const LOGIN_BODY_LIMIT: usize = 16 << 10;
const LOGIN_PATH: &str = "/__sprite/login";
const LOGOUT_PATH: &str = "/__sprite/logout";

/// What the URL router keeps between requests.
pub struct Urls {
    pub pool: Arc<proxy::Pool>,
    secret: session::Secret,
    targets: target::Targets,
    records: records::Records,
}

impl Urls {
    /// `session_key`: the file of the key signing logins.
    pub fn open(session_key: &std::path::Path) -> anyhow::Result<Urls> {
        Ok(Urls {
            pool: Arc::new(proxy::Pool::default()),
            secret: session::Secret::load_or_create(session_key)?,
            targets: target::Targets::default(),
            records: records::Records::default(),
        })
    }
}

/// Middleware in front of the whole API: requests for a sprite host are
/// served here, everything else goes on to the API.
pub async fn dispatch(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match host::route(req.uri(), req.headers(), &state.manager.cfg.url_domain) {
        Route::Api => next.run(req).await,
        Route::Refuse(why) => pages::refused(why),
        Route::Sprite(name) => serve(state, name, req).await,
    }
}

fn host_of(req: &Request) -> String {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(String::from)
        })
        .unwrap_or_default()
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

fn token_valid(state: &AppState, t: &str) -> bool {
    state.token.matches(t) || state.tokens.check(t)
}

async fn serve(state: AppState, name: String, mut req: Request) -> Response {
    let host = host_of(&req);
    let rec = match state.urls.records.get(&state.manager, &name) {
        Ok(r) if r.url_auth != "private" => r,
        // A private sprite has no URL: the same answer as no sprite.
        _ => return pages::not_found(&host),
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    if rec.url_auth == "sprite" {
        match req.uri().path() {
            LOGIN_PATH => return login(&state, &rec, req).await,
            LOGOUT_PATH => return redirect("/", Some(session::clear_cookie())),
            _ => {}
        }
        let allowed = match bearer(&req) {
            Some(t) => token_valid(&state, t),
            None => session::find_cookie(req.headers()).is_some_and(|c| {
                state
                    .urls
                    .secret
                    .verify(&rec.name, &c, session::now_secs())
                    .is_some_and(|s| session::subject_live(&state, s))
            }),
        };
        if !allowed {
            let bad = bearer(&req).is_some();
            return pages::unauthorized(req.headers(), &rec.name, &path_and_query, bad);
        }
        req.headers_mut().remove(header::AUTHORIZATION);
    } else if bearer(&req).is_some_and(|t| token_valid(&state, t)) {
        // A public sprite's own auth schemes pass; our tokens never do.
        req.headers_mut().remove(header::AUTHORIZATION);
    }
    session::strip_cookie(req.headers_mut());
    let html_wanted = pages::wants_html(req.headers());
    forwarded_headers(&mut req, &host);

    // Counted before the wake, held to the end of the response.
    let activity = state.manager.activity(&rec.id);
    let target = state.urls.targets.find(&state.manager, &rec).await;
    match proxy::forward(
        &state.urls.pool,
        &state.manager,
        &rec,
        &target,
        req,
        activity,
    )
    .await
    {
        Ok(res) => res,
        Err(proxy::ForwardError::Dial(DialError::Refused(_))) => {
            pages::nothing_listens(html_wanted, &rec.name, target.port)
        }
        Err(proxy::ForwardError::Dial(e)) => pages::unavailable(&rec.name, &e.to_string()),
        Err(proxy::ForwardError::Upstream(e)) => pages::unavailable(&rec.name, &e),
    }
}

/// `X-Forwarded-*` from what this server saw (a client's own values are
/// replaced: this is the edge), and `Host` as the client named it.
fn forwarded_headers(req: &mut Request, host: &str) {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let h = req.headers_mut();
    h.remove("x-forwarded-for");
    if let Some(v) = peer.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Ok(v) = HeaderValue::from_str(host) {
        h.insert("x-forwarded-host", v.clone());
        h.insert(header::HOST, v);
    }
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Only a path on the same host: never `//elsewhere` or a full URL.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => {
            n.to_string()
        }
        _ => "/".into(),
    }
}

/// `GET /__sprite/login[?token=...&next=...]` or the form's POST: a valid
/// token becomes a session cookie (the token itself is never stored).
async fn login(state: &AppState, rec: &SpriteRecord, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw: Vec<u8> = match parts.method {
        Method::POST => match axum::body::to_bytes(body, LOGIN_BODY_LIMIT).await {
            Ok(b) => b.to_vec(),
            Err(_) => return pages::refused("the login form is too large"),
        },
        Method::GET | Method::HEAD => parts.uri.query().unwrap_or("").as_bytes().to_vec(),
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    let fields: HashMap<String, String> = form_urlencoded::parse(&raw).into_owned().collect();
    let next = safe_next(fields.get("next").map(String::as_str));
    let Some(token) = fields
        .get("token")
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    else {
        return pages::login(StatusCode::OK, &rec.name, &next, None);
    };
    let Some(subject) = session::subject_of(state, token) else {
        return pages::login(
            StatusCode::UNAUTHORIZED,
            &rec.name,
            &next,
            Some("the token is not valid"),
        );
    };
    let expiry = session::now_secs() + session::LIFETIME.as_secs();
    let value = state.urls.secret.issue(&rec.name, &subject, expiry);
    redirect(&next, Some(session::set_cookie(&value)))
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn login_redirects_stay_on_the_host() {
        assert_eq!(safe_next(Some("/app?x=1")), "/app?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
