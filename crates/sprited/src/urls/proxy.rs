//! Forward one HTTP request to a port inside a sprite: hyper's client over
//! connections the agent relays, kept alive and reused between requests;
//! bodies stream both ways; an upgrade (WebSocket) becomes a relay of the
//! two upgraded streams.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Request, Response, Uri};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::target::Target;
use crate::db::SpriteRecord;
use crate::manager::relay::DialError;
use crate::manager::{Activity, Manager};

/// Idle connections kept per sprite port.
const MAX_IDLE: usize = 32;
/// How long an idle connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(60);

type Key = (String, u16);
/// An idle connection and when it became idle.
type Idle = (Instant, SendRequest<Body>);

/// Idle connections into sprites, by sprite id and port. They hold no
/// activity: an idle connection never keeps a sprite awake; a stopped
/// sprite's connections close with its agent and are dropped when found.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
}

impl Pool {
    fn take(&self, key: &Key) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some((since, s)) = list.pop() {
            if since.elapsed() < IDLE_FOR && s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, key: Key, s: SendRequest<Body>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(key).or_default();
        list.retain(|(since, s)| since.elapsed() < IDLE_FOR && !s.is_closed());
        if list.len() < MAX_IDLE {
            list.push((Instant::now(), s));
        }
    }

    /// Forget a sprite's connections (it was destroyed or stopped).
    pub fn forget(&self, sprite_id: &str) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(id, _), _| id != sprite_id);
    }
}

/// Why a request could not be forwarded.
pub enum ForwardError {
    Dial(DialError),
    /// The sprite's server broke the exchange.
    Upstream(String),
}

/// Hop-by-hop headers, which belong to one connection, not the request.
const HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

fn strip_hop_headers(h: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for n in listed {
        h.remove(n);
    }
    for n in HOP {
        h.remove(n);
    }
    h.remove("keep-alive");
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// How long a request waits for a service that is coming up to listen.
const SERVICE_START_WAIT: Duration = Duration::from_secs(10);
/// Longest pause between two tries to reach it.
const RETRY_EVERY_AT_MOST: Duration = Duration::from_millis(50);

/// A new connection to the target. When nothing listens yet but the
/// target is the port of a service on its way up (a sprite just woken from
/// cold starts its services in the background), it is tried again until the
/// service listens, stops coming up, or [`SERVICE_START_WAIT`] passes.
async fn connect(
    m: &Arc<Manager>,
    rec: &SpriteRecord,
    target: &Target,
) -> Result<SendRequest<Body>, ForwardError> {
    let deadline = Instant::now() + SERVICE_START_WAIT;
    let mut pause = Duration::from_millis(2);
    let stream = loop {
        match m.dial(rec, "localhost", target.port).await {
            Ok(s) => break s,
            Err(DialError::Refused(why)) => {
                let coming = match &target.service {
                    Some(svc) if Instant::now() < deadline => {
                        super::target::service_coming(m, rec, svc).await
                    }
                    _ => false,
                };
                if !coming {
                    return Err(ForwardError::Dial(DialError::Refused(why)));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_EVERY_AT_MOST);
            }
            Err(e) => return Err(ForwardError::Dial(e)),
        }
    };
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ForwardError::Upstream(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// Send `req` (its headers already prepared) to `target` inside the sprite;
/// `activity` is held until the response body ends or the upgraded
/// connection closes.
pub async fn forward(
    pool: &Arc<Pool>,
    m: &Arc<Manager>,
    rec: &SpriteRecord,
    target: &Target,
    mut req: Request<Body>,
    activity: Activity,
) -> Result<Response<Body>, ForwardError> {
    let upgrade = is_upgrade(req.headers());
    strip_hop_headers(req.headers_mut(), upgrade);
    // Origin form: the sprite's server sees the path exactly as sent.
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = pq
        .parse::<Uri>()
        .map_err(|e| ForwardError::Upstream(format!("request target: {e}")))?;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let key = (rec.id.clone(), target.port);

    // An upgraded connection is never reused, so it gets a fresh one.
    let pooled = if upgrade { None } else { pool.take(&key) };
    let mut sender = match pooled {
        Some(s) => {
            m.wake_for_traffic(rec)
                .await
                .map_err(|e| ForwardError::Dial(DialError::Unavailable(e)))?;
            s
        }
        None => connect(m, rec, target).await?,
    };
    let res = match sender.try_send_request(req).await {
        Ok(r) => r,
        Err(mut e) => match e.take_message() {
            // The pooled connection closed before the request went out:
            // send it on a new one.
            Some(req) => {
                sender = connect(m, rec, target).await?;
                sender
                    .send_request(req)
                    .await
                    .map_err(|e| ForwardError::Upstream(e.to_string()))?
            }
            None => return Err(ForwardError::Upstream(e.into_error().to_string())),
        },
    };

    if res.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
        let mut res = res;
        let server_upgrade = hyper::upgrade::on(&mut res);
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                let _hold = activity;
                let (Ok(c), Ok(s)) = (client_upgrade.await, server_upgrade.await) else {
                    return;
                };
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(s)).await;
            });
        }
        let (parts, _) = res.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }

    if !upgrade {
        // Back to the pool once this response's body has been read.
        let pool = pool.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                pool.put(key, sender);
            }
        });
    }
    let (mut parts, body) = res.into_parts();
    strip_hop_headers(&mut parts.headers, false);
    let body = Held {
        body,
        _activity: activity,
    };
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// The sprite's response body, passed through as it comes (its length
/// known to the client's connection when the sprite's server sent one),
/// holding the sprite's activity until it ends.
struct Held {
    body: Incoming,
    _activity: Activity,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
