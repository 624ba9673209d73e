//! The Sprites error body: `{"error": "<code>", "message": "..."}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `not_found`, `invalid_name`.
    pub error: String,
    /// Human-readable sentence.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: code.into(),
            message: message.into(),
        }
    }
}
