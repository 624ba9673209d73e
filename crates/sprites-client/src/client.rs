//! The HTTP client: base URL, token, and the plumbing every call shares.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::sprites::SpriteHandle;

const USER_AGENT: &str = concat!("sprites-client-rust/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one Sprites API server. Cheap to clone: clones share the
/// connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: HeaderValue,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs.
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:7070`),
    /// authenticating with `token`.
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Self, Error> {
        let base = parse_base_url(base_url)?;
        let token = token.into();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| Error::InvalidInput("the token contains invalid characters".into()))?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(Error::network)?;
        Ok(Client {
            inner: Arc::new(Inner { http, base, auth }),
        })
    }

    /// The base URL, always ending in `/`.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// A handle on one sprite: exec, sessions, and the sprite's own calls.
    pub fn sprite(&self, name: impl Into<String>) -> SpriteHandle {
        SpriteHandle::new(self.clone(), name.into())
    }

    /// An authenticated GET of any API path (`/v1/sprites?max_results=1`);
    /// answers the raw body. Paths without the `/v1` prefix get it.
    pub async fn api_get(&self, path: &str) -> Result<bytes::Bytes, Error> {
        let url = self.raw_path_url(path)?;
        let resp = self.send(self.request(Method::GET, url)).await?;
        resp.bytes().await.map_err(Error::from)
    }

    /// `{base}/v1/{segments...}`, each segment percent-encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        url
    }

    /// [`Client::url`] with the scheme swapped to `ws`/`wss`.
    pub(crate) fn ws_url(&self, segments: &[&str]) -> Url {
        to_ws_url(self.url(segments))
    }

    fn raw_path_url(&self, path: &str) -> Result<Url, Error> {
        let path = path.trim();
        let path = path.strip_prefix('/').unwrap_or(path);
        let path = if path == "v1" || path.starts_with("v1/") || path.starts_with("v1?") {
            path.to_string()
        } else {
            format!("v1/{path}")
        };
        self.inner
            .base
            .join(&path)
            .map_err(|e| Error::InvalidInput(format!("bad API path {path:?}: {e}")))
    }

    pub(crate) fn auth_header(&self) -> &HeaderValue {
        &self.inner.auth
    }

    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.inner
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.inner.auth.clone())
    }

    /// Send, and turn an error status into [`Error::Api`].
    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response, Error> {
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(Error::from_response(status.as_u16(), &body))
    }

    /// Send and parse a JSON answer.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
    ) -> Result<T, Error> {
        let resp = self.send(req).await?;
        let body = resp.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::Protocol(format!(
                "unexpected answer from the server ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })
    }
}

fn parse_base_url(raw: &str) -> Result<Url, Error> {
    let raw = raw.trim();
    let mut url =
        Url::parse(raw).map_err(|e| Error::InvalidInput(format!("bad base URL {raw:?}: {e}")))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(Error::InvalidInput(format!(
                "{raw}: https is not supported by this build (no TLS); use http"
            )))
        }
        other => {
            return Err(Error::InvalidInput(format!(
                "bad base URL {raw:?}: scheme {other:?} is not http"
            )))
        }
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(Error::InvalidInput(format!("bad base URL {raw:?}")));
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// `http://` → `ws://`, `https://` → `wss://`.
pub(crate) fn to_ws_url(mut url: Url) -> Url {
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    // Both schemes are "special", so the swap cannot fail.
    let _ = url.set_scheme(scheme);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::new(base, "tok").expect("client")
    }

    #[test]
    fn builds_escaped_api_urls() {
        let c = client("http://127.0.0.1:7070");
        assert_eq!(
            c.url(&["sprites", "demo", "exec"]).as_str(),
            "http://127.0.0.1:7070/v1/sprites/demo/exec"
        );
        assert_eq!(
            c.url(&["sprites", "a/b c"]).as_str(),
            "http://127.0.0.1:7070/v1/sprites/a%2Fb%20c"
        );
    }

    #[test]
    fn keeps_a_base_path_prefix() {
        let c = client("http://localhost:8080/api/");
        assert_eq!(
            c.url(&["sprites"]).as_str(),
            "http://localhost:8080/api/v1/sprites"
        );
        let c = client("http://localhost:8080/api");
        assert_eq!(
            c.url(&["sprites"]).as_str(),
            "http://localhost:8080/api/v1/sprites"
        );
    }

    #[test]
    fn websocket_urls_swap_the_scheme() {
        let c = client("http://127.0.0.1:7070/");
        assert_eq!(
            c.ws_url(&["sprites", "x", "exec"]).as_str(),
            "ws://127.0.0.1:7070/v1/sprites/x/exec"
        );
        let https = Url::parse("https://api.example/v1").expect("url");
        assert_eq!(to_ws_url(https).as_str(), "wss://api.example/v1");
    }

    #[test]
    fn refuses_unusable_base_urls() {
        for bad in [
            "127.0.0.1:7070",
            "ftp://x",
            "not a url",
            "https://api.example",
        ] {
            assert!(Client::new(bad, "t").is_err(), "{bad} should be refused");
        }
        assert!(Client::new("http://x", "bad\ntoken").is_err());
    }

    #[test]
    fn raw_api_paths_get_the_v1_prefix() {
        let c = client("http://h:1");
        let u = |p: &str| c.raw_path_url(p).expect("url").to_string();
        assert_eq!(
            u("/v1/sprites?max_results=1"),
            "http://h:1/v1/sprites?max_results=1"
        );
        assert_eq!(u("sprites/x"), "http://h:1/v1/sprites/x");
        assert_eq!(u("/sprites"), "http://h:1/v1/sprites");
    }

    #[test]
    fn debug_output_hides_the_token() {
        let c = Client::new("http://h:1", "secret-token").expect("client");
        assert!(!format!("{c:?}").contains("secret-token"));
    }
}
