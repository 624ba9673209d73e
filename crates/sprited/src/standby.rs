//! A standby host answers every request by forwarding it to the host that
//! serves the shared database (`--database postgres://`, see [`serving`]):
//! clients may be pointed at any host. The request goes as it came (method,
//! path, headers, the `Host` a sprite URL is routed by, a streamed body) to
//! the serving host's `--advertise` address, which authenticates it as its
//! own; the response streams back, and an upgrade (an exec or proxy
//! WebSocket) becomes a relay of the two connections.
//!
//! A forwarded request carries `sprited-forwarded-by`; a standby never
//! forwards one again (two hosts that each think the other serves would
//! otherwise pass a request back and forth). While no host serves (or this
//! one is taking over), the answer is 503 in the API's error format.
//!
//! [`serving`]: crate::serving

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request, Response, Uri};
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::TokioIo;

use crate::api::error::ApiError;
use crate::db::Db;

/// The header a forwarded request carries: the forwarding host's id.
pub const FORWARDED_BY: &str = "sprited-forwarded-by";

/// How long connecting to the serving host may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the serving host may take to start answering (a response's
/// head; its body and an upgraded connection may last as long as they do).
/// A host frozen with the connection open would otherwise hold the request
/// forever.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the serving host, once looked up, is taken as known.
const SERVING_FOR: Duration = Duration::from_secs(1);

pub struct Standby {
    db: Arc<Db>,
    /// This host's id.
    me: String,
    /// The serving host (id, address) as last looked up, and when.
    serving: std::sync::Mutex<Option<(std::time::Instant, String, String)>>,
}

impl Standby {
    /// The serving host: looked up at most every [`SERVING_FOR`].
    async fn serving(&self) -> Result<Option<(String, String)>, String> {
        if let Ok(cached) = self.serving.lock() {
            if let Some((at, host, advertise)) = cached.as_ref() {
                if at.elapsed() < SERVING_FOR {
                    return Ok(Some((host.clone(), advertise.clone())));
                }
            }
        }
        let db = self.db.clone();
        let found = match tokio::task::spawn_blocking(move || db.serving_host()).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        };
        if let Ok(mut cached) = self.serving.lock() {
            *cached = found
                .clone()
                .map(|(h, a)| (std::time::Instant::now(), h, a));
        }
        Ok(found)
    }

    /// Forgets the serving host (it could not be reached: look again).
    fn forget(&self) {
        if let Ok(mut cached) = self.serving.lock() {
            *cached = None;
        }
    }
}

/// The standby's whole API: every request is forwarded.
pub fn router(db: Arc<Db>, me: String) -> Router {
    Router::new()
        .fallback(forward)
        .with_state(Arc::new(Standby {
            db,
            me,
            serving: std::sync::Mutex::new(None),
        }))
}

fn unavailable(why: impl Into<String>) -> Response<Body> {
    let mut res = ApiError::Unavailable(why.into()).into_response();
    res.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    res
}

async fn forward(State(s): State<Arc<Standby>>, req: Request<Body>) -> Response<Body> {
    if req.headers().contains_key(FORWARDED_BY) {
        return unavailable(
            "a forwarded request reached a host that does not serve the database; try again",
        );
    }
    let serving = match s.serving().await {
        Ok(v) => v,
        Err(e) => return unavailable(format!("the serving host cannot be looked up: {e}")),
    };
    match serving {
        Some((host, advertise)) if host != s.me => match to(&advertise, &s.me, req).await {
            Ok(res) => res,
            Err(why) => {
                s.forget();
                unavailable(format!(
                    "the host serving this database ({host} at {advertise}) cannot be reached: {why}; try again"
                ))
            }
        },
        Some(_) => unavailable("this host is taking over the database; try again in a moment"),
        None => unavailable("no host serves this database right now; try again"),
    }
}

/// Sends `req` to the host at `advertise` (`http://host:port`).
async fn to(advertise: &str, me: &str, mut req: Request<Body>) -> Result<Response<Body>, String> {
    let base: Uri = advertise
        .parse()
        .map_err(|e| format!("its address {advertise:?}: {e}"))?;
    let authority = base
        .authority()
        .ok_or_else(|| format!("its address {advertise:?} names no host"))?
        .to_string();
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&authority))
        .await
        .map_err(|_| format!("no connection in {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });

    let upgrade = crate::urls::proxy::is_upgrade(req.headers());
    crate::urls::proxy::strip_hop_headers(req.headers_mut(), upgrade);
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = pq.parse::<Uri>().map_err(|e| e.to_string())?;
    if let Ok(v) = HeaderValue::from_str(me) {
        req.headers_mut().insert(FORWARDED_BY, v);
    }
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let mut res = tokio::time::timeout(ANSWER_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| format!("no answer in {ANSWER_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    if let (Some(client), axum::http::StatusCode::SWITCHING_PROTOCOLS) =
        (client_upgrade, res.status())
    {
        let server = hyper::upgrade::on(&mut res);
        tokio::spawn(async move {
            let (Ok(c), Ok(s)) = (client.await, server.await) else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(s)).await;
        });
        let (parts, _) = res.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = res.into_parts();
    crate::urls::proxy::strip_hop_headers(&mut parts.headers, false);
    Ok(Response::from_parts(parts, Body::new(body)))
}
