//! The Sprites error body: `{"error": "<code>", "message": "..."}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `not_found`, `invalid_name`.
    pub error: String,
    /// Human-readable sentence.
    pub message: String,
    /// Rate and capacity limits: the limit, its window, when to retry, and
    /// the count that hit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_count: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: code.into(),
            message: message.into(),
            limit: None,
            window_seconds: None,
            retry_after_seconds: None,
            current_count: None,
        }
    }
}

/// Error codes of limits.
pub const SPRITE_CREATION_RATE_LIMITED: &str = "sprite_creation_rate_limited";
pub const CONCURRENT_SPRITE_LIMIT_EXCEEDED: &str = "concurrent_sprite_limit_exceeded";
pub const SPRITE_LIMIT_EXCEEDED: &str = "sprite_limit_exceeded";
/// A sprite keeps as many checkpoints as the server allows (an extension).
pub const CHECKPOINT_LIMIT_EXCEEDED: &str = "checkpoint_limit_exceeded";
