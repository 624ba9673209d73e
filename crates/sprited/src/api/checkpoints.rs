//! Checkpoint endpoints, shared by the API (`/v1/sprites/{name}/...`) and
//! the in-sprite socket (`/v1/checkpoints...`, see `crate::inside`).
//!
//! Create and restore answer `application/x-ndjson`: `info` lines as the
//! work proceeds, then `complete` or `error`. The work runs in a task of its
//! own, so it completes even when the caller goes away (a restore called
//! from inside the sprite ends its caller).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sprites_api::checkpoint::{Checkpoint, CreateCheckpointRequest};
use sprites_api::sprite::StreamEvent;

use crate::error::ApiError;
use crate::manager::checkpoints::Progress;
use crate::manager::Manager;
use crate::time::now_rfc3339;
use crate::AppState;

fn event(kind: &str, data: Option<String>, error: Option<String>) -> Bytes {
    let ev = StreamEvent {
        kind: kind.into(),
        data: data.map(serde_json::Value::String),
        error,
        exit_code: None,
        message: None,
        time: Some(now_rfc3339()),
    };
    let mut line = serde_json::to_vec(&ev).unwrap_or_default();
    line.push(b'\n');
    line.into()
}

pub fn parse_create_body(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let req: CreateCheckpointRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    Ok(req.comment)
}

pub fn create_for(m: Arc<Manager>, name: &str, body: &[u8]) -> Result<Response, ApiError> {
    let rec = m.get(name)?;
    let comment = parse_create_body(body)?;
    Ok(stream_op(move |progress| async move {
        let c = m.create_checkpoint(&rec, comment, &progress).await?;
        Ok(format!("Checkpoint {} created", c.id))
    }))
}

pub fn restore_for(m: Arc<Manager>, name: &str, id: &str) -> Result<Response, ApiError> {
    let rec = m.get(name)?;
    // Unknown ids are a plain 404, before any streaming.
    let id = m.checkpoint(&rec, id)?.id;
    Ok(stream_op(move |progress| async move {
        m.restore_checkpoint(&rec, &id, &progress).await?;
        Ok(format!("Restored to checkpoint {id}"))
    }))
}

pub fn list_for(m: &Manager, name: &str) -> Result<Json<Vec<Checkpoint>>, ApiError> {
    let rec = m.get(name)?;
    Ok(Json(m.list_checkpoints(&rec)?))
}

pub fn get_for(m: &Manager, name: &str, id: &str) -> Result<Json<Checkpoint>, ApiError> {
    let rec = m.get(name)?;
    Ok(Json(m.checkpoint(&rec, id)?))
}

pub async fn delete_for(m: Arc<Manager>, name: &str, id: &str) -> Result<StatusCode, ApiError> {
    let rec = m.get(name)?;
    m.checkpoint(&rec, id)?;
    let id = id.to_string();
    super::run_to_completion(async move { m.delete_checkpoint(&rec, &id).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs `work` in its own task; the response streams its progress lines as
/// they come, then `complete` with the returned message, or `error`.
fn stream_op<F, Fut>(work: F) -> Response
where
    F: FnOnce(Progress) -> Fut,
    Fut: std::future::Future<Output = Result<String, ApiError>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let done = tokio::spawn(work(tx));
    let stream = futures_util::stream::unfold((Some(rx), Some(done)), |(rx, done)| async move {
        if let Some(mut rx) = rx {
            if let Some(msg) = rx.recv().await {
                return Some((
                    Ok::<_, std::convert::Infallible>(event("info", Some(msg), None)),
                    (Some(rx), done),
                ));
            }
        }
        let done = done?;
        let line = match done.await {
            Ok(Ok(msg)) => event("complete", Some(msg), None),
            Ok(Err(e)) => event("error", None, Some(e.to_string())),
            Err(e) => event("error", None, Some(format!("the operation failed: {e}"))),
        };
        Some((Ok(line), (None, None)))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

pub async fn create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    create_for(state.manager, &name, &body)
}

pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Checkpoint>>, ApiError> {
    list_for(&state.manager, &name)
}

pub async fn get(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Checkpoint>, ApiError> {
    get_for(&state.manager, &name, &id)
}

pub async fn restore(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    restore_for(state.manager, &name, &id)
}

pub async fn delete(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_for(state.manager, &name, &id).await
}
