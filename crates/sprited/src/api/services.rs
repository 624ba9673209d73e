//! Service endpoints, shared by the API (`/v1/sprites/{name}/services...`)
//! and the in-sprite socket (`/v1/services...`). The agent supervises the
//! services; these wake the sprite and relay.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sprites_api::agent::ServiceOp;
use sprites_api::service::{validate_name, Service, ServiceSpec, SignalRequest};

use super::query::Query;
use crate::agent_conn::services::ServiceEvents;
use crate::error::ApiError;
use crate::manager::Manager;
use crate::AppState;

/// Longest a create/start may stream the service's output.
const MAX_STREAM: Duration = Duration::from_secs(300);
/// Default time a stopping service gets between SIGTERM and SIGKILL.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default and largest `lines` of the logs endpoint.
const DEFAULT_LOG_LINES: usize = 100;
const MAX_LOG_LINES: usize = 10_000;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn checked(name: &str) -> Result<String, ApiError> {
    validate_name(name).map_err(ApiError::BadRequest)?;
    Ok(name.to_string())
}

fn stream_ms(q: &Query) -> Result<u64, ApiError> {
    let d = q.duration("duration")?.unwrap_or(Duration::ZERO);
    Ok(ms(d.min(MAX_STREAM)))
}

fn timeout_ms(q: &Query) -> Result<u64, ApiError> {
    Ok(ms(q.duration("timeout")?.unwrap_or(DEFAULT_STOP_TIMEOUT)))
}

/// The events of a service operation as NDJSON.
fn ndjson(events: ServiceEvents) -> Response {
    let stream = futures_util::stream::unfold((Some(events), true), |(ev, first)| async move {
        let mut ev = ev?;
        let next = if first {
            Some(ev.first.clone())
        } else {
            ev.next().await
        };
        let event = next?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(line)),
            (Some(ev), false),
        ))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

pub async fn list_for(m: Arc<Manager>, name: &str) -> Result<Json<Vec<Service>>, ApiError> {
    let rec = m.get(name)?;
    Ok(Json(m.services(&rec).await?))
}

pub async fn get_for(m: Arc<Manager>, name: &str, svc: &str) -> Result<Json<Service>, ApiError> {
    let rec = m.get(name)?;
    let svc = checked(svc)?;
    Ok(Json(m.service(&rec, svc).await?))
}

pub async fn put_for(
    m: Arc<Manager>,
    name: &str,
    svc: &str,
    raw: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let rec = m.get(name)?;
    let svc = checked(svc)?;
    let spec: ServiceSpec = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid service definition: {e}")))?;
    if spec.cmd.trim().is_empty() {
        return Err(ApiError::BadRequest("cmd must not be empty".into()));
    }
    let q = Query::parse(raw);
    let op = ServiceOp::Put {
        name: svc,
        spec,
        stream_ms: stream_ms(&q)?,
    };
    Ok(ndjson(m.service_events(&rec, op).await?))
}

/// A service operation answered with events, built from the query.
async fn events_for(
    m: Arc<Manager>,
    name: &str,
    raw: Option<&str>,
    op: impl FnOnce(&Query) -> Result<ServiceOp, ApiError>,
) -> Result<Response, ApiError> {
    let rec = m.get(name)?;
    let op = op(&Query::parse(raw))?;
    Ok(ndjson(m.service_events(&rec, op).await?))
}

pub async fn start_for(
    m: Arc<Manager>,
    name: &str,
    svc: &str,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    events_for(m, name, raw, |q| {
        Ok(ServiceOp::Start {
            name: checked(svc)?,
            stream_ms: stream_ms(q)?,
        })
    })
    .await
}

pub async fn stop_for(
    m: Arc<Manager>,
    name: &str,
    svc: &str,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    events_for(m, name, raw, |q| {
        Ok(ServiceOp::Stop {
            name: checked(svc)?,
            timeout_ms: timeout_ms(q)?,
        })
    })
    .await
}

pub async fn restart_for(
    m: Arc<Manager>,
    name: &str,
    svc: &str,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    events_for(m, name, raw, |q| {
        Ok(ServiceOp::Restart {
            name: checked(svc)?,
            timeout_ms: timeout_ms(q)?,
            stream_ms: stream_ms(q)?,
        })
    })
    .await
}

pub async fn delete_for(m: Arc<Manager>, name: &str, svc: &str) -> Result<StatusCode, ApiError> {
    let rec = m.get(name)?;
    let op = ServiceOp::Delete {
        name: checked(svc)?,
    };
    m.service_call(&rec, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn signal_for(m: Arc<Manager>, name: &str, body: &[u8]) -> Result<StatusCode, ApiError> {
    let rec = m.get(name)?;
    let req: SignalRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?;
    let op = ServiceOp::Signal {
        name: checked(&req.name)?,
        signal: req.signal,
    };
    m.service_call(&rec, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn logs_for(
    m: Arc<Manager>,
    name: &str,
    svc: &str,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    let rec = m.get(name)?;
    let q = Query::parse(raw);
    let lines = q
        .number::<usize>("lines", 1..=MAX_LOG_LINES)?
        .unwrap_or(DEFAULT_LOG_LINES);
    let text = m.service_logs(&rec, checked(svc)?, lines).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

pub async fn list(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Service>>, ApiError> {
    list_for(s.manager, &name).await
}

pub async fn get(
    State(s): State<AppState>,
    Path((name, svc)): Path<(String, String)>,
) -> Result<Json<Service>, ApiError> {
    get_for(s.manager, &name, &svc).await
}

pub async fn put(
    State(s): State<AppState>,
    Path((name, svc)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    put_for(s.manager, &name, &svc, raw.as_deref(), &body).await
}

pub async fn delete(
    State(s): State<AppState>,
    Path((name, svc)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_for(s.manager, &name, &svc).await
}

pub async fn start(
    State(s): State<AppState>,
    Path((name, svc)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    start_for(s.manager, &name, &svc, raw.as_deref()).await
}

pub async fn stop(
    State(s): State<AppState>,
    Path((name, svc)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    stop_for(s.manager, &name, &svc, raw.as_deref()).await
}

pub async fn restart(
    State(s): State<AppState>,
    Path((name, svc)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    restart_for(s.manager, &name, &svc, raw.as_deref()).await
}

pub async fn signal(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    signal_for(s.manager, &name, &body).await
}

pub async fn logs(
    State(s): State<AppState>,
    Path((name, svc)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    logs_for(s.manager, &name, &svc, raw.as_deref()).await
}

/// `/services/signal` is a fixed path; a service may still be named
/// `signal`: the other methods on that path act on it.
pub async fn signal_named_get(
    s: State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Service>, ApiError> {
    get_for(s.0.manager, &name, "signal").await
}

pub async fn signal_named_put(
    s: State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    put_for(s.0.manager, &name, "signal", raw.as_deref(), &body).await
}

pub async fn signal_named_delete(
    s: State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_for(s.0.manager, &name, "signal").await
}
