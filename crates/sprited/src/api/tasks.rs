//! Task endpoints, shared by the API (`/v1/sprites/{name}/tasks`) and the
//! in-sprite socket (`/v1/tasks`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sprites_api::task::{parse_expire, Task, TaskList, TaskRequest};

use super::body::JsonBody;
use super::Sprite;
use crate::error::ApiError;
use crate::manager::Manager;

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
    JsonBody(req): JsonBody<TaskRequest>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
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
    JsonBody(req): JsonBody<TaskRequest>,
) -> Result<Json<Task>, ApiError> {
    let expire = parse_expire(&req.expire).map_err(ApiError::BadRequest)?;
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
