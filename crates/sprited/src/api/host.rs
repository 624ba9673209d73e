//! `POST /v1/host/drain` (extension, admin): hands every sprite this host
//! holds to the other hosts sharing its database, for an upgrade or a
//! machine's retirement. The host is cordoned (it takes no sprite from
//! now on); each sprite it holds is stopped (its sessions end, its
//! WebSockets closed) and evicted: its volume, checkpoints and base image
//! go to the object store, recorded in the database; then the host gives
//! it up, and the next request for it, on any host, is served by the host
//! with the most room, which wakes it from the store, nothing lost. Then
//! this host leaves and stops. While it drains, requests for the sprites
//! it still holds are answered 503 (the client's retry finds the next
//! holder); the others are forwarded as ever. A sprite that cannot be
//! evicted (the store is down) ends the drain with an error, and the host
//! serves on (still cordoned).

use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::checkpoints::stream_op;
use crate::error::ApiError;
use crate::AppState;

/// The drain's path, let through while draining.
pub const DRAIN_PATH: &str = "/v1/host/drain";

pub async fn drain(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(cluster) = state.cluster.clone() else {
        return Err(ApiError::Conflict(
            "a drain hands this host's sprites to another host sharing its database \
             (--database postgres://); this host has its own"
                .into(),
        ));
    };
    if state.draining.swap(true, Ordering::SeqCst) {
        return Err(ApiError::Conflict("this host is draining already".into()));
    }
    let m = state.manager.clone();
    let stop = state.stop.clone();
    let draining = state.draining.clone();
    cluster.leaving(&state.manager).await;
    Ok(stream_op(move |progress| async move {
        let records = m.db.mine()?;
        let n = records.len();
        for rec in records {
            let _ = progress.send(format!("handing over {}", rec.name));
            if let Err(e) = m.evict(&rec).await {
                // Not handed over: this host keeps serving, nothing dropped.
                draining.store(false, Ordering::SeqCst);
                return Err(ApiError::from(e));
            }
            m.db.give_up(&rec.id)?;
        }
        // The answer's last line goes out, then the daemon stops (and
        // leaves).
        stop.notify_one();
        Ok(format!(
            "{n} sprites handed over; this host stops, and the others serve them"
        ))
    }))
}

/// While the host drains, only the drain itself is served.
pub async fn refuse_while_draining(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if state.draining.load(Ordering::SeqCst) && req.uri().path() != DRAIN_PATH {
        let mut res = ApiError::Unavailable(
            "this host is handing its sprites to another host (draining); try again in a moment"
                .into(),
        )
        .into_response();
        res.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return res;
    }
    next.run(req).await
}
