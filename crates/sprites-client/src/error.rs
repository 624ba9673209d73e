//! The one error type of the SDK.

use sprites_api::error::ErrorBody;

/// Longest slice of a non-JSON error body kept in [`Error::Api`].
const MAX_BODY_TEXT: usize = 512;

/// Everything a call of the SDK can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error status. `code` and `message` come from
    /// the `{"error": code, "message": ...}` body when there is one; otherwise
    /// `code` is derived from the status and `message` is the body's text.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached, or the connection broke.
    #[error("network error: {0}")]
    Network(String),
    /// The server broke the protocol, e.g. closed an exec stream before the
    /// exit status, or sent a body that does not parse.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A long operation (checkpoint create or restore) failed after the
    /// server had answered 200: its event stream ended with an `error` line,
    /// whose message this is.
    #[error("{0}")]
    Operation(String),
    /// A base URL, token or argument the caller gave cannot be used.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl Error {
    /// Build the error for a failed HTTP answer from its status and body.
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            let message = if parsed.message.is_empty() {
                parsed.error.clone()
            } else {
                parsed.message
            };
            return Error::Api {
                status,
                code: parsed.error,
                message,
            };
        }
        // Servers and proxies in between may answer `{"error": "..."}` alone.
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
            if let Some(serde_json::Value::String(code)) = map.get("error") {
                return Error::Api {
                    status,
                    code: code.clone(),
                    message: code.clone(),
                };
            }
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            format!("HTTP {status} {}", reason_phrase(status))
        } else {
            truncate(text, MAX_BODY_TEXT)
        };
        Error::Api {
            status,
            code: status_code_name(status),
            message,
        }
    }

    /// The HTTP status of an [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The machine-readable code of an [`Error::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the server answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub(crate) fn network(err: impl std::error::Error) -> Self {
        Error::Network(error_chain(&err))
    }
}

impl From<reqwest::Error> for Error {
    fn from(err: reqwest::Error) -> Self {
        if err.is_decode() {
            Error::Protocol(error_chain(&err))
        } else {
            Error::network(err)
        }
    }
}

/// `a: b: c` for an error and its sources, since reqwest's own message
/// leaves out the cause ("error sending request" without "connection refused").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

/// `not_found` for 404: the code a body-less answer gets.
fn status_code_name(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => reason
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect(),
        None => format!("http_{status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sprites_error_body() {
        let err = Error::from_response(
            404,
            br#"{"error":"not_found","message":"no sprite named x"}"#,
        );
        match &err {
            Error::Api {
                status,
                code,
                message,
            } => {
                assert_eq!(*status, 404);
                assert_eq!(code, "not_found");
                assert_eq!(message, "no sprite named x");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.to_string(), "no sprite named x");
        assert!(err.is_not_found());
    }

    #[test]
    fn keeps_rate_limit_extras_out_of_the_way() {
        let err = Error::from_response(
            429,
            br#"{"error":"sprite_creation_rate_limited","message":"slow down","limit":5,"retry_after_seconds":3}"#,
        );
        assert_eq!(err.code(), Some("sprite_creation_rate_limited"));
        assert_eq!(err.to_string(), "slow down");
    }

    #[test]
    fn falls_back_to_the_body_text() {
        let err = Error::from_response(502, b"  bad gateway from proxy\n");
        assert_eq!(err.code(), Some("bad_gateway"));
        assert_eq!(err.to_string(), "bad gateway from proxy");
    }

    #[test]
    fn an_error_without_message_uses_its_code() {
        let err = Error::from_response(401, br#"{"error":"unauthorized"}"#);
        assert_eq!(err.code(), Some("unauthorized"));
        assert_eq!(err.to_string(), "unauthorized");
    }

    #[test]
    fn an_empty_body_names_the_status() {
        let err = Error::from_response(404, b"");
        assert_eq!(err.code(), Some("not_found"));
        assert_eq!(err.to_string(), "HTTP 404 Not Found");
        let odd = Error::from_response(599, b"");
        assert_eq!(odd.code(), Some("http_599"));
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let body = "é".repeat(600);
        let err = Error::from_response(500, body.as_bytes());
        let text = err.to_string();
        assert!(text.len() <= MAX_BODY_TEXT + "…".len());
        assert!(text.ends_with('…'));
    }
}
