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

/// A bearer token of the request: the scheme is case-insensitive (RFC
/// 9110), and every `Authorization` header counts.
fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        })
}

/// Whether an `Authorization` value carries one of this daemon's tokens,
/// in any scheme: bare, after any scheme name, or as either half of Basic
/// credentials.
fn carries_our_token(value: &str, ours: impl Fn(&str) -> bool) -> bool {
    use base64::Engine as _;
    let v = value.trim();
    let mut candidates = vec![v.to_string()];
    if let Some((scheme, rest)) = v.split_once(char::is_whitespace) {
        let rest = rest.trim();
        candidates.push(rest.to_string());
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some(d) = decoded {
                match d.split_once(':') {
                    Some((user, password)) => {
                        candidates.push(user.to_string());
                        candidates.push(password.to_string());
                    }
                    None => candidates.push(d),
                }
            }
        }
    }
    candidates.iter().any(|c| !c.is_empty() && ours(c))
}

/// Remove every `Authorization` value that carries one of our tokens; a
/// public sprite's own schemes pass.
fn strip_our_tokens(state: &AppState, h: &mut axum::http::HeaderMap) {
    let kept: Vec<HeaderValue> = h
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter(|v| {
            !v.to_str()
                .is_ok_and(|t| carries_our_token(t, |c| token_valid(state, c)))
        })
        .cloned()
        .collect();
    h.remove(header::AUTHORIZATION);
    for v in kept {
        h.append(header::AUTHORIZATION, v);
    }
}

fn token_valid(state: &AppState, t: &str) -> bool {
    state.token.matches(t) || state.tokens.check(t)
}

/// Whether `t` may open the token-protected URL of sprite `name`: a scope
/// that may exec in it (the URL reaches its processes).
fn token_reaches(state: &AppState, t: &str, name: &str) -> bool {
    state.token.matches(t)
        || state
            .tokens
            .scope_of(t)
            .is_some_and(|s| s.allows(name, sprites_api::token::Action::Exec))
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
            Some(t) => token_reaches(&state, t, &rec.name),
            // Every cookie of the name is tried: another sprite's page may
            // have set one for a parent domain (cookie tossing).
            None => session::find_cookies(req.headers()).iter().any(|c| {
                state
                    .urls
                    .secret
                    .verify(&rec.name, c, session::now_secs())
                    .is_some_and(|s| session::subject_live(&state, s))
            }),
        };
        if !allowed {
            let bad = bearer(&req).is_some();
            return pages::unauthorized(req.headers(), &rec.name, &path_and_query, bad);
        }
        req.headers_mut().remove(header::AUTHORIZATION);
    } else {
        match req.uri().path() {
            // Ours on every sprite URL: a login link followed to a public
            // sprite must not hand its token to the sprite's server.
            LOGIN_PATH | LOGOUT_PATH => {
                let q = req.uri().query().unwrap_or("").as_bytes();
                let next = form_urlencoded::parse(q)
                    .find(|(k, _)| k == "next")
                    .map(|(_, v)| v.into_owned());
                return redirect(&safe_next(next.as_deref()), None);
            }
            _ => {}
        }
        // A public sprite's own auth schemes pass; our tokens never do.
        strip_our_tokens(&state, req.headers_mut());
    }
    session::strip_cookie(req.headers_mut());
    crate::console::session::strip_cookie(req.headers_mut());
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
        Ok(mut res) => {
            // The session cookie is the daemon's alone to set.
            session::strip_set_cookie(res.headers_mut());
            res
        }
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
    // Browsers drop tabs and newlines anywhere in a URL and read `\` as
    // `/`, so `/<TAB>/evil.example/` leaves the host: no control
    // characters, spaces or backslashes anywhere.
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'\\') =>
        {
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
    let subject =
        session::subject_of(state, token).filter(|_| token_reaches(state, token, &rec.name));
    let Some(subject) = subject else {
        return pages::login(
            StatusCode::UNAUTHORIZED,
            &rec.name,
            &next,
            Some("the token is not valid for this sprite"),
        );
    };
    let expiry = session::now_secs() + session::LIFETIME.as_secs();
    let value = state.urls.secret.issue(&rec.name, &subject, expiry);
    redirect(&next, Some(session::set_cookie(&value)))
}

#[cfg(test)]
mod tests {
    use super::{carries_our_token, safe_next};

    #[test]
    fn our_tokens_are_found_in_any_scheme() {
        use base64::Engine as _;
        let ours = |t: &str| t == "tok";
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for v in [
            "Bearer tok".to_string(),
            "bearer tok".into(),
            "BEARER  tok ".into(),
            "tok".into(),
            "FlyV1 tok".into(),
            format!("Basic {}", b64("x:tok")),
            format!("basic {}", b64("tok:")),
            format!("Basic {}", b64("tok")),
        ] {
            assert!(carries_our_token(&v, ours), "{v}");
        }
        for v in [
            "Bearer other".to_string(),
            format!("Basic {}", b64("alice:secret")),
            "Basic !!notbase64".into(),
            "".into(),
        ] {
            assert!(!carries_our_token(&v, ours), "{v}");
        }
    }

    #[test]
    fn login_redirects_stay_on_the_host() {
        assert_eq!(safe_next(Some("/app?x=1")), "/app?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
        // What browsers drop or rewrite inside a URL.
        for sneaky in [
            "/\t/evil.example/",
            "/\n/evil.example/",
            "/\r\n/evil.example",
            "/ /evil.example",
            "/a\\b",
            "/\x00/evil",
            "/\x7f",
        ] {
            assert_eq!(safe_next(Some(sneaky)), "/", "{sneaky:?}");
        }
        assert_eq!(safe_next(Some("/a/b%09c")), "/a/b%09c");
    }
}

/// Issue 19's fuzzing: what a browser makes of the login's `next`, and the
/// token search, for any input.
#[cfg(test)]
mod properties {
    use super::{carries_our_token, safe_next};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn next_never_leaves_the_sprite(next in ".{0,64}", prefix in prop::sample::select(vec!["", "/", "//", "/\\", "\\", "/\t/", "http:", "https://"])) {
            let next = format!("{prefix}{next}");
            let base = url::Url::parse("https://web.sprites.localhost/").unwrap();
            let to = safe_next(Some(&next));
            // Read as a browser reads a Location header (WHATWG URL).
            let joined = base.join(&to).unwrap();
            prop_assert_eq!(joined.host_str(), Some("web.sprites.localhost"), "next {:?} became {:?}", next, to);
            prop_assert_eq!(joined.scheme(), "https");
        }

        #[test]
        fn our_token_is_found_whatever_wraps_it(scheme in "[A-Za-z][A-Za-z0-9-]{0,9}", user in "[a-z]{0,8}", token in "[A-Za-z0-9_-]{8,40}", space in "[ \t]{1,3}") {
            use base64::Engine as _;
            let ours = |t: &str| t == token;
            prop_assert!(carries_our_token(&token, ours));
            let schemed = format!("{scheme}{space}{token}");
            prop_assert!(carries_our_token(&schemed, ours));
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
            let basic = format!("Basic {basic}");
            prop_assert!(carries_our_token(&basic, ours));
        }

        #[test]
        fn any_authorization_value_is_looked_at(value in ".{0,128}") {
            let _ = carries_our_token(&value, |t| t == "tok");
        }
    }
}
