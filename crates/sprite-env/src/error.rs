//! What can go wrong once the command line is understood (exit status 1).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket is missing or nobody listens: most likely not in a sprite.
    #[error("cannot reach {}: {reason} (is this running inside a sprite?)", path.display())]
    Unreachable { path: PathBuf, reason: String },
    /// The connection broke or the answer was not HTTP.
    #[error("talking to {}: {reason}", path.display())]
    Transport { path: PathBuf, reason: String },
    /// The API answered with an error status (before any streaming).
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The API answered something this CLI does not understand.
    #[error("unexpected answer from the API: {0}")]
    BadAnswer(String),
    /// An operation streamed its progress, then failed.
    #[error("{0}")]
    Failed(String),
    /// Our own output could not be written.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// An error answer from its status and body: the Sprites error JSON
    /// when it is one, else the body text.
    pub fn from_answer(status: u16, body: &[u8]) -> Error {
        if let Ok(e) = serde_json::from_slice::<sprites_api::error::ErrorBody>(body) {
            return Error::Api {
                status,
                code: e.error,
                message: e.message,
            };
        }
        let text = String::from_utf8_lossy(body).trim().to_string();
        Error::Api {
            status,
            code: String::new(),
            message: if text.is_empty() {
                format!("the API answered HTTP {status}")
            } else {
                text
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { status: 404, .. })
    }
}

/// An OS error's description without Rust's "(os error N)" suffix.
pub fn describe_io(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers() {
        let e = Error::from_answer(404, br#"{"error":"not_found","message":"no such thing"}"#);
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "no such thing");
        let e = Error::from_answer(502, b"  bad gateway\n");
        assert!(!e.is_not_found());
        assert_eq!(e.to_string(), "bad gateway");
        assert_eq!(
            Error::from_answer(500, b"").to_string(),
            "the API answered HTTP 500"
        );
    }

    #[test]
    fn unreachable_says_where_and_why() {
        let io = std::io::Error::from_raw_os_error(libc_enoent());
        let e = Error::Unreachable {
            path: "/.sprite/api.sock".into(),
            reason: describe_io(&io),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach /.sprite/api.sock: No such file or directory \
             (is this running inside a sprite?)"
        );
    }

    fn libc_enoent() -> i32 {
        nix::errno::Errno::ENOENT as i32
    }
}
