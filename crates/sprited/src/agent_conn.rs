//! One connection to a sprite's agent: the frame protocol of
//! `sprites_api::agent`, over the Unix socket the daemon created for it.

use std::path::Path;

use bytes::Bytes;
use serde::Serialize;
use sprites_api::agent::{self, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot reach the sprite's agent: {0}")]
    Connect(std::io::Error),
    #[error("agent connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("agent protocol error: {0}")]
    Protocol(String),
}

/// A frame from the agent.
#[derive(Debug)]
pub enum Frame {
    Stdout(Bytes),
    Stderr(Bytes),
    Exit(i32),
    Reply(Reply),
}

pub struct AgentReader {
    r: BufReader<OwnedReadHalf>,
    /// Kept alive as long as the conversation (e.g. the activity that keeps
    /// the sprite awake).
    _hold: Option<Box<dyn Send + Sync>>,
}

pub struct AgentWriter {
    w: OwnedWriteHalf,
}

/// Connect and send the request that opens the conversation.
pub async fn open(socket: &Path, req: &Request) -> Result<(AgentReader, AgentWriter), AgentError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(AgentError::Connect)?;
    let (r, w) = stream.into_split();
    let mut w = AgentWriter { w };
    w.send_json(req).await?;
    Ok((
        AgentReader {
            r: BufReader::with_capacity(64 * 1024, r),
            _hold: None,
        },
        w,
    ))
}

impl AgentReader {
    /// Keep `token` alive until this reader is dropped.
    pub fn hold(&mut self, token: impl Send + Sync + 'static) {
        self._hold = Some(Box::new(token));
    }
}

impl AgentWriter {
    pub async fn send_json<T: Serialize>(&mut self, v: &T) -> Result<(), AgentError> {
        self.w.write_all(&agent::json_frame(v)).await?;
        Ok(())
    }

    pub async fn send_stdin(&mut self, data: &[u8]) -> Result<(), AgentError> {
        for chunk in data.chunks(agent::MAX_FRAME) {
            let header = frame_header(agent::STDIN, chunk.len());
            self.w.write_all(&header).await?;
            self.w.write_all(chunk).await?;
        }
        Ok(())
    }

    pub async fn send_eof(&mut self) -> Result<(), AgentError> {
        self.w
            .write_all(&agent::frame(agent::STDIN_EOF, &[]))
            .await?;
        Ok(())
    }
}

fn frame_header(kind: u8, len: usize) -> [u8; agent::HEADER_LEN] {
    let l = (len as u32).to_be_bytes();
    [kind, l[0], l[1], l[2], l[3]]
}

impl AgentReader {
    /// The next frame undecoded, `(kind, payload)`, or `None` when the
    /// agent closed the connection. For conversations whose JSON frames are
    /// not [`Reply`]s (the filesystem calls).
    pub async fn next_raw(&mut self) -> Result<Option<(u8, Vec<u8>)>, AgentError> {
        let mut h = [0u8; agent::HEADER_LEN];
        match self.r.read_exact(&mut h).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let (kind, len) = agent::parse_header(h).map_err(AgentError::Protocol)?;
        let mut payload = vec![0u8; len];
        self.r.read_exact(&mut payload).await?;
        Ok(Some((kind, payload)))
    }

    /// The next frame, or `None` when the agent closed the connection.
    pub async fn next(&mut self) -> Result<Option<Frame>, AgentError> {
        let Some((kind, payload)) = self.next_raw().await? else {
            return Ok(None);
        };
        let frame = match kind {
            agent::STDOUT => Frame::Stdout(payload.into()),
            agent::STDERR => Frame::Stderr(payload.into()),
            agent::EXIT => Frame::Exit(agent::parse_exit(&payload).map_err(AgentError::Protocol)?),
            agent::JSON => Frame::Reply(
                serde_json::from_slice(&payload)
                    .map_err(|e| AgentError::Protocol(format!("bad reply: {e}")))?,
            ),
            other => {
                return Err(AgentError::Protocol(format!(
                    "unknown frame kind {other:#x}"
                )))
            }
        };
        Ok(Some(frame))
    }

    /// The next frame, which must be a JSON reply.
    pub async fn reply(&mut self) -> Result<Reply, AgentError> {
        match self.next().await? {
            Some(Frame::Reply(r)) => Ok(r),
            Some(other) => Err(AgentError::Protocol(format!(
                "expected a reply, got {other:?}"
            ))),
            None => Err(AgentError::Protocol("agent closed the connection".into())),
        }
    }
}
