//! The one mapping from failures to HTTP status codes and the Sprites error
//! JSON (`{"error": code, "message": ...}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sprites_api::error::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid token")]
    Unauthorized,
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

    pub fn no_sprite(name: &str) -> Self {
        ApiError::NotFound(format!("no sprite named {name}"))
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// What a limit error carries.
#[derive(Debug, Clone)]
pub struct Limit {
    pub code: &'static str,
    pub message: String,
    pub limit: u64,
    pub window_seconds: Option<u64>,
    /// `None`: waiting does not help (e.g. the number of sprites).
    pub retry_after_seconds: Option<u64>,
    pub current_count: u64,
}

impl ApiError {
    pub fn limited(l: Limit) -> Self {
        ApiError::Limited(Box::new(l))
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
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

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("request body too large: {}", r.body_text()))
        } else {
            ApiError::BadRequest(format!("invalid JSON body: {}", r.body_text()))
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError::Internal(format!("metadata database: {e}"))
    }
}
