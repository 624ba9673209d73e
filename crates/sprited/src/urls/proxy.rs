//! Forward one HTTP request to a port inside a sprite: hyper's client over
//! connections into the sprite's network namespace, kept alive and reused
//! between requests; bodies stream both ways; an upgrade (WebSocket)
//! becomes a relay of the two upgraded streams.
//!
//! A kept-alive connection has no task of its own: the request using it
//! drives it (its response body polls the connection, then the body), so a
//! proxied request wakes no other task, and its reads and writes happen on
//! whichever thread serves the client's connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::manager::relay::SpriteStream;
use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Request, Response, Uri};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;

use super::target::Target;
use crate::db::SpriteRecord;
use crate::manager::relay::DialError;
use crate::manager::{Activity, Manager};

/// Idle connections kept per sprite port.
const MAX_IDLE: usize = 32;
/// How long an idle connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(60);
/// How often idle connections are looked at, so that those the sprite
/// closed (it stopped, its server restarted) are let go.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

type Key = (String, u16);

/// One HTTP/1 connection to a port inside a sprite.
struct Upstream {
    sender: SendRequest<Body>,
    /// `None` once the connection has ended (closed or failed): dropping
    /// it answers whatever was waiting on it with an error.
    conn: Option<Connection<TokioIo<SpriteStream>, Body>>,
}

/// Let a connection read, write and keep alive; `false` once it has ended.
fn drive(conn: &mut Option<Connection<TokioIo<SpriteStream>, Body>>, cx: &mut Context<'_>) -> bool {
    if let Some(c) = conn.as_mut() {
        if Pin::new(c).poll(cx).is_ready() {
            *conn = None;
        }
    }
    conn.is_some()
}

impl Upstream {
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        drive(&mut self.conn, cx)
    }

    /// Whether an idle connection can take a request now (an end the
    /// sprite's server sent meanwhile is noticed here).
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx) && self.sender.is_ready()
    }

    /// Send a request and wait for the response head, driving the
    /// connection meanwhile.
    async fn send(
        &mut self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Body>>> {
        let Upstream { sender, conn } = self;
        let mut answer = std::pin::pin!(sender.try_send_request(req));
        std::future::poll_fn(|cx| {
            drive(conn, cx);
            answer.as_mut().poll(cx)
        })
        .await
    }
}

/// Idle connections into sprites, by sprite id and port. They hold no
/// activity: an idle connection never keeps a sprite awake.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<(Instant, Upstream)>>>,
    sweeping: AtomicBool,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<(Instant, Upstream)>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, key: &Key) -> Option<Upstream> {
        let mut idle = self.lock();
        let list = idle.get_mut(key)?;
        while let Some((since, mut up)) = list.pop() {
            if since.elapsed() < IDLE_FOR && up.usable() {
                return Some(up);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, key: Key, up: Upstream) {
        if !self.sweeping.load(Ordering::Relaxed) {
            // A body may be dropped where no runtime is (at shutdown).
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            if !self.sweeping.swap(true, Ordering::Relaxed) {
                rt.spawn(sweep(Arc::downgrade(self)));
            }
        }
        let mut idle = self.lock();
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE {
            list.push((Instant::now(), up));
        }
    }

    /// Drop idle connections that ended or waited too long.
    fn sweep(&self) {
        let mut idle = self.lock();
        for list in idle.values_mut() {
            list.retain_mut(|(since, up)| since.elapsed() < IDLE_FOR && up.usable());
        }
        idle.retain(|_, list| !list.is_empty());
    }
}

async fn sweep(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        match pool.upgrade() {
            Some(p) => p.sweep(),
            None => return,
        }
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

pub(crate) fn strip_hop_headers(h: &mut HeaderMap, keep_upgrade: bool) {
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

pub(crate) fn is_upgrade(h: &HeaderMap) -> bool {
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
) -> Result<Upstream, ForwardError> {
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
    Ok(Upstream {
        sender,
        conn: Some(conn),
    })
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
    if upgrade {
        return forward_upgrade(m, rec, target, req, activity).await;
    }
    let key = (rec.id.clone(), target.port);
    let mut up = match pool.take(&key) {
        Some(up) => {
            m.wake_for_traffic(rec)
                .await
                .map_err(|e| ForwardError::Dial(DialError::Unavailable(e)))?;
            up
        }
        None => connect(m, rec, target).await?,
    };
    let res = match up.send(req).await {
        Ok(r) => r,
        Err(mut e) => match e.take_message() {
            // The kept-alive connection closed before the request went
            // out: send it on a new one.
            Some(req) => {
                up = connect(m, rec, target).await?;
                up.send(req)
                    .await
                    .map_err(|e| ForwardError::Upstream(e.into_error().to_string()))?
            }
            None => return Err(ForwardError::Upstream(e.into_error().to_string())),
        },
    };
    let (mut parts, body) = res.into_parts();
    strip_hop_headers(&mut parts.headers, false);
    let body = Held {
        body,
        upstream: Some(up),
        pool: pool.clone(),
        key,
        _activity: activity,
    };
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// A request asking for an upgrade (WebSocket) goes on a connection of its
/// own, which is never reused: run by a task with upgrades enabled, and on
/// `101` the two upgraded streams are relayed to each other.
async fn forward_upgrade(
    m: &Arc<Manager>,
    rec: &SpriteRecord,
    target: &Target,
    mut req: Request<Body>,
    activity: Activity,
) -> Result<Response<Body>, ForwardError> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let Upstream { mut sender, conn } = connect(m, rec, target).await?;
    if let Some(conn) = conn {
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
    }
    let mut res = sender
        .send_request(req)
        .await
        .map_err(|e| ForwardError::Upstream(e.to_string()))?;
    if res.status() != axum::http::StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = res.into_parts();
        strip_hop_headers(&mut parts.headers, false);
        let body = http_body_util::BodyExt::map_frame(body, move |f| {
            let _keep = &activity;
            f
        });
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    let server_upgrade = hyper::upgrade::on(&mut res);
    tokio::spawn(async move {
        let _hold = activity;
        let (Ok(c), Ok(s)) = (client_upgrade.await, server_upgrade.await) else {
            return;
        };
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(s)).await;
    });
    let (parts, _) = res.into_parts();
    Ok(Response::from_parts(parts, Body::empty()))
}

/// The sprite's response body, passed through as it comes (its length
/// known to the client's connection when the sprite's server sent one). It
/// drives the connection it comes from, returns it to the pool once the
/// body has ended, and holds the sprite's activity until then.
struct Held {
    body: Incoming,
    upstream: Option<Upstream>,
    pool: Arc<Pool>,
    key: Key,
    _activity: Activity,
}

impl Held {
    /// The response is complete: the connection may take the next request.
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(mut up) = self.upstream.take() {
            // One more turn lets the connection settle into waiting for
            // the next request.
            if up.drive(cx) {
                self.pool.put(self.key.clone(), up);
            }
        }
    }
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(up) = this.upstream.as_mut() {
            up.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.release(cx);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Held {
    /// A body the client's connection never polled (a `HEAD` answer, a
    /// `204`) still frees its connection; one dropped halfway closes it.
    fn drop(&mut self) {
        if hyper::body::Body::is_end_stream(&self.body) {
            let mut cx = Context::from_waker(Waker::noop());
            self.release(&mut cx);
        }
    }
}
