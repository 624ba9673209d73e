//! Service endpoints, shared by the API (`/v1/sprites/{name}/services...`)
//! and the in-sprite socket (`/v1/services...`). The agent supervises the
//! services; these wake the sprite and relay.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sprites_api::agent::ServiceOp;
use sprites_api::service::{log_events, validate_name, Service, ServiceSpec, SignalRequest};

use super::body::JsonBody;
use super::query::Query;
use super::Sprite;
use crate::agent_conn::services::ServiceEvents;
use crate::error::ApiError;
use crate::manager::Manager;

/// Longest a create/start may stream the service's output.
const MAX_STREAM: Duration = Duration::from_secs(300);
/// Default time a stopping service gets between SIGTERM and SIGKILL.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default and largest `lines` of the logs endpoint, which answers them as
/// NDJSON [`ServiceEvent`](sprites_api::service::ServiceEvent)s, the
/// messages of the create stream (what the SDKs parse).
pub(super) const DEFAULT_LOG_LINES: usize = 100;
pub(super) const MAX_LOG_LINES: usize = 10_000;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn checked(name: &str) -> Result<String, ApiError> {
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

/// The service a route names: its `{svc}` segment, or `signal` on the
/// fixed `/services/signal` path, where a service may still be named
/// `signal`: the methods other than POST on that path act on it.
pub struct ServiceName(String);

impl<S: Send + Sync> FromRequestParts<S> for ServiceName {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        #[derive(serde::Deserialize)]
        struct Named {
            svc: Option<String>,
        }
        let Path(Named { svc }) = Path::<Named>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(ServiceName(svc.unwrap_or_else(|| "signal".into())))
    }
}

pub async fn list(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
) -> Result<Json<Vec<Service>>, ApiError> {
    Ok(Json(m.services(&rec).await?))
}

pub async fn get(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    ServiceName(svc): ServiceName,
) -> Result<Json<Service>, ApiError> {
    let svc = checked(&svc)?;
    Ok(Json(m.service(&rec, svc).await?))
}

pub async fn put(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    ServiceName(svc): ServiceName,
    RawQuery(raw): RawQuery,
    JsonBody(spec): JsonBody<ServiceSpec>,
) -> Result<Response, ApiError> {
    let svc = checked(&svc)?;
    if spec.cmd.trim().is_empty() {
        return Err(ApiError::BadRequest("cmd must not be empty".into()));
    }
    let q = Query::parse(raw.as_deref());
    let op = ServiceOp::Put {
        name: svc,
        spec,
        stream_ms: stream_ms(&q)?,
    };
    Ok(ndjson(m.service_events(&rec, op).await?))
}

/// A service action's target and options: the service the route names
/// (checked) and the query.
pub struct Action {
    name: String,
    q: Query,
}

impl<S: Send + Sync> FromRequestParts<S> for Action {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let ServiceName(svc) = ServiceName::from_request_parts(parts, state).await?;
        let name = checked(&svc).map_err(IntoResponse::into_response)?;
        Ok(Action {
            name,
            q: Query::parse(parts.uri.query()),
        })
    }
}

pub async fn start(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    Action { name, q }: Action,
) -> Result<Response, ApiError> {
    let stream_ms = stream_ms(&q)?;
    let op = ServiceOp::Start { name, stream_ms };
    Ok(ndjson(m.service_events(&rec, op).await?))
}

pub async fn stop(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    Action { name, q }: Action,
) -> Result<Response, ApiError> {
    let timeout_ms = timeout_ms(&q)?;
    let op = ServiceOp::Stop { name, timeout_ms };
    Ok(ndjson(m.service_events(&rec, op).await?))
}

pub async fn restart(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    Action { name, q }: Action,
) -> Result<Response, ApiError> {
    let (timeout_ms, stream_ms) = (timeout_ms(&q)?, stream_ms(&q)?);
    let op = ServiceOp::Restart {
        name,
        timeout_ms,
        stream_ms,
    };
    Ok(ndjson(m.service_events(&rec, op).await?))
}

pub async fn delete(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    ServiceName(svc): ServiceName,
) -> Result<StatusCode, ApiError> {
    let op = ServiceOp::Delete {
        name: checked(&svc)?,
    };
    m.service_call(&rec, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn signal(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    JsonBody(req): JsonBody<SignalRequest>,
) -> Result<StatusCode, ApiError> {
    let op = ServiceOp::Signal {
        name: checked(&req.name)?,
        signal: req.signal,
    };
    m.service_call(&rec, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn logs(
    State(m): State<Arc<Manager>>,
    Sprite(rec): Sprite,
    ServiceName(svc): ServiceName,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw.as_deref());
    let lines = q
        .number::<usize>("lines", 1..=MAX_LOG_LINES)?
        .unwrap_or(DEFAULT_LOG_LINES);
    let log = m.service_logs(&rec, checked(&svc)?, lines).await?;
    let mut body = Vec::new();
    for event in log_events(&log.text, log.log_files, now_ms()) {
        // A struct of strings and numbers always serializes.
        serde_json::to_writer(&mut body, &event).unwrap_or_default();
        body.push(b'\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    async fn named(super::ServiceName(svc): super::ServiceName) -> String {
        svc
    }

    /// The fixed `/services/signal` path names the service `signal`, on
    /// both routers' shapes; elsewhere the `{svc}` segment names it.
    #[tokio::test]
    async fn the_signal_path_names_the_service_signal() {
        let app = axum::Router::new()
            .route("/v1/sprites/{name}/services/signal", get(named))
            .route("/v1/sprites/{name}/services/{svc}", get(named))
            .route("/v1/services/signal", get(named))
            .route("/v1/services/{svc}", get(named));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        for (path, want) in [
            ("/v1/sprites/s/services/signal", "signal"),
            ("/v1/sprites/s/services/web", "web"),
            ("/v1/services/signal", "signal"),
            ("/v1/services/web", "web"),
        ] {
            let res = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .expect("request");
            assert_eq!(res.text().await.expect("body"), want, "{path}");
        }
        server.abort();
    }
}
