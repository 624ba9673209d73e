//! Task endpoints, shared by the API (`/v1/sprites/{name}/tasks`) and the
//! in-sprite socket (`/v1/tasks`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sprites_api::task::{parse_expire, Task, TaskList, TaskRequest};

use super::Sprite;
use crate::error::ApiError;
use crate::manager::Manager;

fn body(raw: &[u8]) -> Result<TaskRequest, ApiError> {
    serde_json::from_slice(raw).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))
}

/// The `{task}` segment of a task's path.
#[derive(serde::Deserialize)]
pub struct TaskName {
    task: String,
}

pub async fn list(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
) -> Result<Json<TaskList>, ApiError> {
    Ok(Json(TaskList {
        tasks: m.list_tasks(&rec),
    }))
}

pub async fn create(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    raw: Bytes,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    let req = body(&raw)?;
    let task = req
        .name
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
    let expire = parse_expire(&req.expire).map_err(ApiError::BadRequest)?;
    Ok((
        StatusCode::CREATED,
        Json(m.create_task(&rec, task, expire)?),
    ))
}

pub async fn update(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    Path(TaskName { task }): Path<TaskName>,
    raw: Bytes,
) -> Result<Json<Task>, ApiError> {
    let expire = parse_expire(&body(&raw)?.expire).map_err(ApiError::BadRequest)?;
    Ok(Json(m.update_task(&rec, &task, expire)?))
}

pub async fn delete(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    Path(TaskName { task }): Path<TaskName>,
) -> Result<StatusCode, ApiError> {
    m.delete_task(&rec, &task)?;
    Ok(StatusCode::NO_CONTENT)
}
