//! Checkpoint endpoints, shared by the API (`/v1/sprites/{name}/...`) and
//! the in-sprite socket (`/v1/checkpoints...`, see [`super::in_sprite`]).
//!
//! Create and restore answer `application/x-ndjson`: `info` lines as the
//! work proceeds, then `complete` or `error`. The work runs in a task of its
//! own, so it completes even when the caller goes away (a restore called
//! from inside the sprite ends its caller).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sprites_api::checkpoint::{Checkpoint, CreateCheckpointRequest, Snapshot};
use sprites_api::sprite::StreamEvent;

use super::body::OptionalJsonBody;
use super::Sprite;
use crate::error::ApiError;
use crate::manager::checkpoints::{CheckpointFilter, Progress};
use crate::manager::Manager;
use crate::time::now_rfc3339;

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

/// The comment a checkpoint is asked for, if it is not too long.
fn checked_comment(req: CreateCheckpointRequest) -> Result<Option<String>, ApiError> {
    if req
        .comment
        .as_ref()
        .is_some_and(|c| c.len() > sprites_api::checkpoint::MAX_COMMENT_BYTES)
    {
        return Err(ApiError::BadRequest(format!(
            "comment is longer than {} bytes",
            sprites_api::checkpoint::MAX_COMMENT_BYTES
        )));
    }
    Ok(req.comment)
}

/// Runs `work` in its own task; the response streams its progress lines as
/// they come, then `complete` with the returned message, or `error`.
pub(super) fn stream_op<F, Fut>(work: F) -> Response
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

/// The `{id}` segment of a checkpoint's path.
#[derive(serde::Deserialize)]
pub struct CheckpointId {
    id: String,
}

pub async fn create(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    OptionalJsonBody(req): OptionalJsonBody<CreateCheckpointRequest>,
) -> Result<Response, ApiError> {
    let comment = checked_comment(req)?;
    // Refused with a status of its own before any progress is streamed
    // (checked again, under the sprite's lock, as it is made).
    m.checkpoint_admissible(&rec)?;
    Ok(stream_op(move |progress| async move {
        let c = m.create_checkpoint(&rec, comment, &progress).await?;
        Ok(format!("Checkpoint {} created", c.id))
    }))
}

pub async fn restore(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    Path(CheckpointId { id }): Path<CheckpointId>,
) -> Result<Response, ApiError> {
    // Unknown ids are a plain 404, before any streaming.
    let id = m.checkpoint(&rec, &id)?.id;
    Ok(stream_op(move |progress| async move {
        m.restore_checkpoint(&rec, &id, &progress).await?;
        Ok(format!("Restored to checkpoint {id}"))
    }))
}

/// Extension: the sprite's replicated snapshots, newest first.
pub async fn list_snapshots(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
) -> Result<Json<Vec<Snapshot>>, ApiError> {
    Ok(Json(m.list_snapshots(&rec)?))
}

/// Extension: rolls the sprite back to a replicated snapshot (streamed
/// like a checkpoint restore).
pub async fn restore_snapshot(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    Path(CheckpointId { id }): Path<CheckpointId>,
) -> Result<Response, ApiError> {
    let at = m.snapshot(&rec, &id)?;
    Ok(stream_op(move |progress| async move {
        m.restore_snapshot(&rec, at, &progress).await?;
        Ok(format!(
            "Restored to the snapshot of {}",
            crate::time::rfc3339_of_ms(at)
        ))
    }))
}

/// `?history=vN` (vN's branch) and `?includeAuto=true`, as the SDKs send them.
pub async fn list(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<Checkpoint>>, ApiError> {
    let q = super::query::Query::parse(raw.as_deref());
    let filter = CheckpointFilter {
        history: q.get("history").filter(|h| !h.is_empty()).map(String::from),
        include_auto: q.bool("includeAuto")?.unwrap_or(false),
    };
    Ok(Json(m.list_checkpoints(&rec, &filter)?))
}

pub async fn get(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    Path(CheckpointId { id }): Path<CheckpointId>,
) -> Result<Json<Checkpoint>, ApiError> {
    Ok(Json(m.checkpoint(&rec, &id)?))
}

pub async fn delete(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    Path(CheckpointId { id }): Path<CheckpointId>,
) -> Result<StatusCode, ApiError> {
    m.checkpoint(&rec, &id)?;
    super::run_to_completion(async move { m.delete_checkpoint(&rec, &id).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}
