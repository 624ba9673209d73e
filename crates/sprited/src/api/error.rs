//! The edge: the one mapping from failures to HTTP status codes and the
//! Sprites error JSON (`{"error": code, "message": ...}`). The domain layer
//! returns [`crate::error::Error`]; its statuses are decided here, once, in
//! `From<Error> for ApiError`, and the source error is kept for the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sprites_api::error::ErrorBody;

use sprites_api::agent::AgentErrorCode;

use crate::agent_conn::AgentError;
use crate::error::{Error, Limit};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid token")]
    Unauthorized,
    /// A valid token whose scope does not cover the call.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InsufficientStorage(String),
    /// A limit was hit: 429 with the rate-limit fields and headers.
    #[error("{0}")]
    Limited(Box<Limit>),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::InsufficientStorage(_) => "insufficient_storage",
            ApiError::Limited(l) => l.code,
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut body = ErrorBody::new(self.code(), self.to_string());
        let mut headers = axum::http::HeaderMap::new();
        if let ApiError::Limited(l) = &self {
            body.limit = Some(l.limit);
            body.window_seconds = l.window_seconds;
            body.retry_after_seconds = l.retry_after_seconds;
            body.current_count = Some(l.current_count);
            let mut set = |k: &'static str, v: u64| {
                if let Ok(v) = axum::http::HeaderValue::from_str(&v.to_string()) {
                    headers.insert(k, v);
                }
            };
            set("x-ratelimit-limit", l.limit);
            set(
                "x-ratelimit-remaining",
                l.limit.saturating_sub(l.current_count),
            );
            if let Some(r) = l.retry_after_seconds {
                set("retry-after", r);
                set("x-ratelimit-reset", r);
            }
        }
        (status, headers, Json(body)).into_response()
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        Error::Db(e).into()
    }
}

/// What the agent refused keeps its meaning; an agent that cannot be
/// talked to is unavailable.
impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Refused { code, message } => match code {
                AgentErrorCode::NotFound => ApiError::NotFound(message),
                AgentErrorCode::Gone => ApiError::Gone(message),
                AgentErrorCode::BadRequest => ApiError::BadRequest(message),
                AgentErrorCode::Conflict => ApiError::Conflict(message),
                AgentErrorCode::Refused => ApiError::Unavailable(message),
                AgentErrorCode::Internal => ApiError::Internal(message),
            },
            AgentError::Unexpected(message) => ApiError::Internal(message),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

/// The one place a domain failure gets its status. Server-side failures
/// are logged here with their whole source chain; the client gets the
/// message.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::NoSprite(_) | Error::NotFound(_) => ApiError::NotFound(message),
            Error::Invalid(_) => ApiError::BadRequest(message),
            Error::Conflict(_) => ApiError::Conflict(message),
            Error::TooLarge(_) => ApiError::PayloadTooLarge(message),
            Error::Limited(l) => ApiError::Limited(l),
            Error::Unavailable(_) => ApiError::Unavailable(message),
            Error::OverQuota(_) => ApiError::InsufficientStorage(message),
            Error::Agent(e) => e.into(),
            Error::Store {
                context,
                source: source @ sprite_store::StoreError::NoSpace { .. },
            } => ApiError::InsufficientStorage(format!(
                "{context}: {source}; delete checkpoints or sprites to free space"
            )),
            Error::Store {
                source: sprite_store::StoreError::CheckpointMissing { checkpoint, .. },
                ..
            } => ApiError::NotFound(format!("no checkpoint {checkpoint}")),
            Error::Cold { context, source } if source.is_unavailable() => {
                log_source(&source);
                ApiError::Unavailable(format!(
                    "{context}: the object store cannot be reached ({source}); nothing was lost, try again later"
                ))
            }
            Error::Db(crate::db::DbError::Unavailable(why)) => ApiError::Unavailable(format!(
                "the metadata database cannot be reached ({why}); try again when it is back"
            )),
            Error::Db(e @ crate::db::DbError::Fenced { .. }) => {
                ApiError::Unavailable(e.to_string())
            }
            e @ (Error::Store { .. }
            | Error::Runtime { .. }
            | Error::Cold { .. }
            | Error::Db(_)
            | Error::Io { .. }
            | Error::Worker(_)
            | Error::Internal(_)) => {
                log_source(&e);
                ApiError::Internal(message)
            }
        }
    }
}

/// The causes below a failure's message, for the daemon's log only.
fn log_source(e: &(dyn std::error::Error + 'static)) {
    let mut chain = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        chain.push(s.to_string());
        cur = s.source();
    }
    if !chain.is_empty() {
        tracing::debug!(error = %e, causes = ?chain, "failure causes");
    }
}
