//! The API a sprite sees at `/.sprite/api.sock`: its own checkpoints,
//! services and tasks (`sprite-env ...`), with no token. The socket is bound in
//! `<data>/sprites/<id>/run`, bound read-only into that sprite alone, so
//! reaching it is the proof of who calls. The daemon serves it (rather
//! than the agent) because the work it asks for (checkpoint, restore) is
//! the daemon's, and a restore must complete after it has ended the caller.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use sprites_api::checkpoint::Checkpoint;
use sprites_api::service::Service;
use sprites_api::task::{Task, TaskList};

use crate::api::checkpoints as ck;
use crate::api::services as svc;
use crate::api::tasks;
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
        .route("/v1/services", get(services))
        .route(
            "/v1/services/signal",
            post(service_signal)
                .get(signal_named_get)
                .put(signal_named_put)
                .delete(signal_named_delete),
        )
        .route(
            "/v1/services/{svc}",
            get(service_get).put(service_put).delete(service_delete),
        )
        .route("/v1/services/{svc}/start", post(service_start))
        .route("/v1/services/{svc}/stop", post(service_stop))
        .route("/v1/services/{svc}/restart", post(service_restart))
        .route("/v1/services/{svc}/logs", get(service_logs))
        .route("/v1/tasks", get(task_list).post(task_create))
        .route("/v1/tasks/{task}", put(task_update).delete(task_delete))
        .fallback(crate::api::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), busy))
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

/// Every in-sprite call keeps the sprite awake while it runs (its answer
/// streamed to the end included).
async fn busy(State(s): State<Inside>, req: Request, next: Next) -> Response {
    let activity = s
        .manager
        .get(&s.name)
        .ok()
        .map(|rec| s.manager.activity(&rec.id));
    let res = next.run(req).await;
    let Some(activity) = activity else { return res };
    let (parts, body) = res.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _keep = &activity;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

async fn services(State(s): State<Inside>) -> Result<Json<Vec<Service>>, ApiError> {
    svc::list_for(s.manager, &s.name).await
}

async fn service_get(
    State(s): State<Inside>,
    Path(name): Path<String>,
) -> Result<Json<Service>, ApiError> {
    svc::get_for(s.manager, &s.name, &name).await
}

/// `/v1/services/signal` is a fixed path; a service may still be named
/// `signal`: the other methods on that path act on it.
async fn signal_named_get(State(s): State<Inside>) -> Result<Json<Service>, ApiError> {
    svc::get_for(s.manager, &s.name, "signal").await
}

async fn signal_named_put(
    State(s): State<Inside>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    svc::put_for(s.manager, &s.name, "signal", raw.as_deref(), &body).await
}

async fn signal_named_delete(State(s): State<Inside>) -> Result<StatusCode, ApiError> {
    svc::delete_for(s.manager, &s.name, "signal").await
}

async fn service_put(
    State(s): State<Inside>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    svc::put_for(s.manager, &s.name, &name, raw.as_deref(), &body).await
}

async fn service_delete(
    State(s): State<Inside>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    svc::delete_for(s.manager, &s.name, &name).await
}

async fn service_start(
    State(s): State<Inside>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    svc::start_for(s.manager, &s.name, &name, raw.as_deref()).await
}

async fn service_stop(
    State(s): State<Inside>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    svc::stop_for(s.manager, &s.name, &name, raw.as_deref()).await
}

async fn service_restart(
    State(s): State<Inside>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    svc::restart_for(s.manager, &s.name, &name, raw.as_deref()).await
}

async fn service_signal(State(s): State<Inside>, body: Bytes) -> Result<StatusCode, ApiError> {
    svc::signal_for(s.manager, &s.name, &body).await
}

async fn service_logs(
    State(s): State<Inside>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    svc::logs_for(s.manager, &s.name, &name, raw.as_deref()).await
}

async fn task_list(State(s): State<Inside>) -> Result<Json<TaskList>, ApiError> {
    tasks::list_for(&s.manager, &s.name)
}

async fn task_create(
    State(s): State<Inside>,
    body: Bytes,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    tasks::create_for(&s.manager, &s.name, &body)
}

async fn task_update(
    State(s): State<Inside>,
    Path(task): Path<String>,
    body: Bytes,
) -> Result<Json<Task>, ApiError> {
    tasks::update_for(&s.manager, &s.name, &task, &body)
}

async fn task_delete(
    State(s): State<Inside>,
    Path(task): Path<String>,
) -> Result<StatusCode, ApiError> {
    tasks::delete_for(&s.manager, &s.name, &task)
}
