//! The daemon's HTTP servers (the API on TCP, each sprite's
//! `/.sprite/api.sock`), on hyper directly for what `axum::serve` does not
//! give:
//! - a header-read timeout: a connection that sends no complete request
//!   head for [`Limits::header_read_timeout`] (idle between requests, or a
//!   slowloris trickle) is closed;
//! - a cap on open connections: past it the server stops accepting, and
//!   further clients wait in the kernel's backlog, holding no descriptor of
//!   the daemon's;
//! - a shutdown that waits for open requests a bounded time.
//!
//! Requests carry `ConnectInfo<SocketAddr>` where there is a peer address
//! (the URL proxy's `X-Forwarded-For`). WebSocket upgrades work as with
//! `axum::serve`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// What one server allows.
#[derive(Clone)]
pub struct Limits {
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Shared with other servers: all of them together hold at most this
    /// many (the in-sprite sockets of every sprite).
    pub shared: Option<Arc<Semaphore>>,
    pub header_read_timeout: Duration,
}

/// How long a stopping server waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serve `app` on TCP until `shutdown` resolves.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let listener = Arc::new(listener);
    let accept = move || {
        let l = listener.clone();
        async move {
            let (s, peer) = l.accept().await?;
            // Small answers (a proxied response's head, exec frames) go out
            // at once, not after the client's delayed ACK.
            if let Err(e) = s.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY");
            }
            Ok((s, Some(peer)))
        }
    };
    run(accept, app, limits, shutdown).await;
}

/// Serve `app` on a Unix socket until `stop` resolves.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let listener = Arc::new(listener);
    let accept = move || {
        let l = listener.clone();
        async move {
            let (s, _) = l.accept().await?;
            Ok((s, None))
        }
    };
    run(accept, app, limits, stop).await;
}

async fn permits(
    limits: &Limits,
    own: &Arc<Semaphore>,
) -> Option<[Option<OwnedSemaphorePermit>; 2]> {
    let mine = own.clone().acquire_owned().await.ok()?;
    let shared = match &limits.shared {
        Some(s) => Some(s.clone().acquire_owned().await.ok()?),
        None => None,
    };
    Some([Some(mine), shared])
}

async fn run<A, F, S>(
    mut accept: A,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    A: FnMut() -> F,
    F: Future<Output = std::io::Result<(S, Option<SocketAddr>)>>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let own = Arc::new(Semaphore::new(max));
    // HTTP/1 only (what every client of the API speaks): its header-read
    // timer starts as soon as a request head is awaited, the first one
    // included, so a connection that sends nothing is closed too.
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let failures = crate::net::dns::Throttle::default();
    tokio::pin!(shutdown);
    loop {
        // A free slot first: past the cap, clients wait in the backlog.
        let slot = tokio::select! {
            p = permits(&limits, &own) => match p {
                Some(p) => p,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            r = accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: the daemon's own limit, not the
                    // client's doing; wait a little rather than spin.
                    if let Some(skipped) = failures.pass() {
                        tracing::warn!(error = %e, skipped, "accepting a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                if let Some(peer) = peer {
                    req.extensions_mut().insert(ConnectInfo(peer));
                }
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
        let conn = http.serve_connection(TokioIo::new(io), svc).with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                () = stopping(&mut stop) => {
                    // Finish the request in flight, take no other.
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(accept);
    let _ = stop_tx.send(true);
    // Every connection's slot back: all have ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, own.acquire_many(all))
        .await
        .is_err()
    {
        tracing::info!("requests still open after {SHUTDOWN_GRACE:?}: closing them");
    }
}

/// Resolves once the server is stopping.
async fn stopping(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
