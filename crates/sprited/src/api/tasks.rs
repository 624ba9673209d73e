//! Task endpoints (in-sprite `/v1/tasks`, and `/v1/sprites/{name}/tasks`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sprites_api::task::{parse_expire, Task, TaskList, TaskRequest};

use crate::error::ApiError;
use crate::manager::Manager;
use crate::AppState;

fn body(raw: &[u8]) -> Result<TaskRequest, ApiError> {
    serde_json::from_slice(raw).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))
}

pub fn list_for(m: &Manager, name: &str) -> Result<Json<TaskList>, ApiError> {
    let rec = m.get(name)?;
    Ok(Json(TaskList {
        tasks: m.list_tasks(&rec),
    }))
}

pub fn create_for(
    m: &Manager,
    name: &str,
    raw: &[u8],
) -> Result<(StatusCode, Json<Task>), ApiError> {
    let rec = m.get(name)?;
    let req = body(raw)?;
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

pub fn update_for(m: &Manager, name: &str, task: &str, raw: &[u8]) -> Result<Json<Task>, ApiError> {
    let rec = m.get(name)?;
    let expire = parse_expire(&body(raw)?.expire).map_err(ApiError::BadRequest)?;
    Ok(Json(m.update_task(&rec, task, expire)?))
}

pub fn delete_for(m: &Manager, name: &str, task: &str) -> Result<StatusCode, ApiError> {
    let rec = m.get(name)?;
    m.delete_task(&rec, task)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TaskList>, ApiError> {
    list_for(&s.manager, &name)
}

pub async fn create(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: Bytes,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    create_for(&s.manager, &name, &raw)
}

pub async fn update(
    State(s): State<AppState>,
    Path((name, task)): Path<(String, String)>,
    raw: Bytes,
) -> Result<Json<Task>, ApiError> {
    update_for(&s.manager, &name, &task, &raw)
}

pub async fn delete(
    State(s): State<AppState>,
    Path((name, task)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_for(&s.manager, &name, &task)
}
