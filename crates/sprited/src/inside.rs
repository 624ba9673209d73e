//! The API a sprite sees at `/.sprite/api.sock`: its own checkpoints
//! (`sprite-env checkpoints ...`), with no token. The socket is bound in
//! `<data>/sprites/<id>/run`, bound read-only into that sprite alone, so
//! reaching it is the proof of who calls. The daemon serves it (rather
//! than the agent) because the work it asks for (checkpoint, restore) is
//! the daemon's, and a restore must complete after it has ended the caller.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use sprites_api::checkpoint::Checkpoint;

use crate::api::checkpoints as ck;
use crate::error::ApiError;
use crate::manager::Manager;

#[derive(Clone)]
struct Inside {
    manager: Arc<Manager>,
    /// The sprite this socket belongs to.
    name: Arc<str>,
}

fn router(state: Inside) -> Router {
    Router::new()
        .route("/v1/checkpoint", post(create))
        .route("/v1/checkpoints", get(list).post(create))
        .route("/v1/checkpoints/{id}", get(get_one).delete(delete))
        .route("/v1/checkpoints/{id}/restore", post(restore))
        .fallback(crate::api::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(64 << 10))
        .layer(axum::middleware::map_response(crate::api::version_header))
        .with_state(state)
}

/// Serves the in-sprite API on `listener` (non-blocking) until aborted.
pub fn serve(
    manager: Arc<Manager>,
    name: String,
    listener: std::os::unix::net::UnixListener,
) -> std::io::Result<tokio::task::AbortHandle> {
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let app = router(Inside {
        manager,
        name: name.into(),
    });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "in-sprite API server ended");
        }
    });
    Ok(task.abort_handle())
}

async fn create(State(s): State<Inside>, body: Bytes) -> Result<Response, ApiError> {
    ck::create_for(s.manager, &s.name, &body)
}

async fn list(State(s): State<Inside>) -> Result<Json<Vec<Checkpoint>>, ApiError> {
    ck::list_for(&s.manager, &s.name)
}

async fn get_one(
    State(s): State<Inside>,
    Path(id): Path<String>,
) -> Result<Json<Checkpoint>, ApiError> {
    ck::get_for(&s.manager, &s.name, &id)
}

async fn restore(State(s): State<Inside>, Path(id): Path<String>) -> Result<Response, ApiError> {
    ck::restore_for(s.manager, &s.name, &id)
}

async fn delete(State(s): State<Inside>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    ck::delete_for(s.manager, &s.name, &id).await
}
