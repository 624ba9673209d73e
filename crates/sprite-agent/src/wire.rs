//! Frames on a connection (see `sprites_api::agent` for the format).

use std::io;

use serde::Serialize;
use sprites_api::agent::{self, AgentErrorCode, Reply, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// Why no frame could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed or ended inside a frame.
    Broken,
    /// The peer sent something that is not a frame (e.g. an oversize length).
    Malformed(String),
}

/// Read the next frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    let first = r
        .read(&mut header[..1])
        .await
        .map_err(|_| ReadError::Broken)?;
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut header[1..])
        .await
        .map_err(|_| ReadError::Broken)?;
    let (kind, len) = agent::parse_header(header).map_err(ReadError::Malformed)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)
        .await
        .map_err(|_| ReadError::Broken)?;
    Ok(Some(Frame { kind, payload }))
}

/// Write one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    payload: &[u8],
) -> io::Result<()> {
    w.write_all(&agent::frame(kind, payload)).await
}

/// Write one JSON frame.
pub async fn write_json<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> io::Result<()> {
    w.write_all(&agent::json_frame(value)).await
}

/// Write an `EXIT` frame.
pub async fn write_exit<W: AsyncWrite + Unpin>(w: &mut W, code: i32) -> io::Result<()> {
    w.write_all(&agent::exit_frame(code)).await
}

/// The error reply for a request the agent could not make sense of.
pub fn bad_request(message: impl Into<String>) -> Reply {
    Reply::Error {
        code: AgentErrorCode::BadRequest,
        message: message.into(),
    }
}

/// The error reply for an id the agent does not know.
pub fn not_found(message: impl Into<String>) -> Reply {
    Reply::Error {
        code: AgentErrorCode::NotFound,
        message: message.into(),
    }
}

/// The error reply for a session that existed and has ended.
pub fn gone(message: impl Into<String>) -> Reply {
    Reply::Error {
        code: AgentErrorCode::Gone,
        message: message.into(),
    }
}

/// The error reply for a failure of the agent itself.
pub fn internal(message: impl Into<String>) -> Reply {
    Reply::Error {
        code: AgentErrorCode::Internal,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_clean_eof() {
        let mut bytes = agent::frame(agent::STDIN, b"abc");
        bytes.extend(agent::frame(agent::STDIN_EOF, b""));
        let mut r = &bytes[..];
        let f = read_frame(&mut r).await.expect("ok").expect("frame");
        assert_eq!(
            f,
            Frame {
                kind: agent::STDIN,
                payload: b"abc".to_vec()
            }
        );
        let f = read_frame(&mut r).await.expect("ok").expect("frame");
        assert_eq!(f.kind, agent::STDIN_EOF);
        assert!(read_frame(&mut r).await.expect("ok").is_none());
    }

    #[tokio::test]
    async fn truncated_and_oversize_frames_fail() {
        let bytes = agent::frame(agent::STDIN, b"abcdef");
        let mut r = &bytes[..8];
        assert!(matches!(read_frame(&mut r).await, Err(ReadError::Broken)));
        let mut huge = vec![agent::JSON];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut r = &huge[..];
        assert!(matches!(
            read_frame(&mut r).await,
            Err(ReadError::Malformed(_))
        ));
    }
}
