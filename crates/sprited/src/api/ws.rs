//! The WebSocket upgrade of the streaming endpoints, refused in the Sprites
//! error format (axum's own rejection is `text/plain`).

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

pub struct Upgrade(pub WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(Upgrade)
            .map_err(|e| {
                ApiError::BadRequest(format!("this endpoint is a WebSocket: {}", e.body_text()))
            })
    }
}
