//! The daemon's side of the agent protocol (`sprites_api::agent`): one
//! connection per operation over the Unix socket the daemon created for the
//! sprite, and the typed sessions the rest of the daemon works with. Frames
//! and replies stay in this module.
//!
//! - [`exec`]: exec and attach sessions (output, exit, port events in;
//!   stdin, resize, signals out), the session list, kill progress.
//! - [`fs`]: one filesystem call: its replies and the file's bytes.
//! - [`services`]: service calls and the events of a service operation.
//! - [`ports`]: the sprite's listening ports as they change.
//! - [`tunnel`]: a connection to a port inside, made by the agent.
//!
//! Every session reads one frame at a time when its user asks for the
//! next event: nothing is buffered beyond a frame, so a slow client slows
//! the agent down (backpressure) rather than filling the daemon's memory.

pub mod exec;
pub mod fs;
pub mod ports;
pub mod services;
pub mod tunnel;

use std::path::Path;

use bytes::Bytes;
use serde::Serialize;
use sprites_api::agent::{self, AgentErrorCode, Reply, Request};
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
    #[error("the sprite's agent closed the connection")]
    Closed,
    /// The agent refused the request (an `error` reply).
    #[error("{message}")]
    Refused {
        code: AgentErrorCode,
        message: String,
    },
    /// The agent answered with a reply that does not belong to the request.
    #[error("{0}")]
    Unexpected(String),
}

/// Whether `e` is a conversation cut by the agent's side going away (its
/// listener or connection closed under us) rather than an answer.
pub fn cut_short(e: &AgentError) -> bool {
    match e {
        AgentError::Closed => true,
        AgentError::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// A reply that has no place in the conversation at hand (`what`).
fn unexpected(reply: &Reply, what: &str) -> AgentError {
    AgentError::Unexpected(format!("the agent answered {reply:?} to {what}"))
}

/// A frame from the agent.
#[derive(Debug)]
enum Frame {
    Stdout(Bytes),
    Stderr(Bytes),
    Exit(i32),
    Reply(Reply),
}

/// One conversation with the agent, its request sent: what the typed
/// sessions are made of.
pub struct Conversation {
    reader: Reader,
    writer: Writer,
}

struct Reader {
    r: BufReader<OwnedReadHalf>,
    /// Kept alive as long as the conversation (e.g. the activity that keeps
    /// the sprite awake).
    _hold: Option<Box<dyn Send + Sync>>,
}

struct Writer {
    w: OwnedWriteHalf,
}

/// Connect and send the request that opens the conversation.
pub async fn open(socket: &Path, req: &Request) -> Result<Conversation, AgentError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(AgentError::Connect)?;
    Conversation::start(stream, req).await
}

/// Tells the agent of a sandbox made ahead that it is now sprite
/// `hostname`'s (its host name set): `/etc/hosts` follows.
pub async fn named(socket: &Path, hostname: &str) -> Result<(), AgentError> {
    let req = Request::Named {
        hostname: hostname.to_string(),
    };
    match open(socket, &req).await?.answer().await? {
        Reply::Done => Ok(()),
        other => Err(unexpected(&other, "a name")),
    }
}

impl Conversation {
    /// Send `req` on a connected stream.
    async fn start(stream: UnixStream, req: &Request) -> Result<Conversation, AgentError> {
        let (r, w) = stream.into_split();
        let mut writer = Writer { w };
        writer.send_json(req).await?;
        Ok(Conversation {
            reader: Reader {
                r: BufReader::with_capacity(64 * 1024, r),
                _hold: None,
            },
            writer,
        })
    }

    /// Keep `token` alive as long as what reads the agent's answers (the
    /// session's event half when it is split).
    pub fn hold(&mut self, token: impl Send + Sync + 'static) {
        self.reader._hold = Some(Box::new(token));
    }

    /// The one reply of a request-reply exchange; an `error` reply is the
    /// agent's refusal.
    async fn answer(mut self) -> Result<Reply, AgentError> {
        match self.reader.reply().await? {
            Reply::Error { code, message } => Err(AgentError::Refused { code, message }),
            other => Ok(other),
        }
    }
}

impl Writer {
    async fn send_json<T: Serialize>(&mut self, v: &T) -> Result<(), AgentError> {
        self.w.write_all(&agent::json_frame(v)).await?;
        Ok(())
    }

    async fn send_stdin(&mut self, data: &[u8]) -> Result<(), AgentError> {
        for chunk in data.chunks(agent::MAX_FRAME) {
            let header = frame_header(agent::STDIN, chunk.len());
            self.w.write_all(&header).await?;
            self.w.write_all(chunk).await?;
        }
        Ok(())
    }

    async fn send_eof(&mut self) -> Result<(), AgentError> {
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

impl Reader {
    /// The next frame undecoded, `(kind, payload)`, or `None` when the
    /// agent closed the connection. For conversations whose JSON frames are
    /// not [`Reply`]s (the filesystem calls).
    async fn next_raw(&mut self) -> Result<Option<(u8, Vec<u8>)>, AgentError> {
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
    async fn next(&mut self) -> Result<Option<Frame>, AgentError> {
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
    async fn reply(&mut self) -> Result<Reply, AgentError> {
        match self.next().await? {
            Some(Frame::Reply(r)) => Ok(r),
            Some(other) => Err(AgentError::Protocol(format!(
                "expected a reply, got {other:?}"
            ))),
            None => Err(AgentError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn agent_codes_map_to_statuses() {
        let refused = |code| AgentError::Refused {
            code,
            message: "m".into(),
        };
        for (e, status) in [
            (refused(AgentErrorCode::NotFound), StatusCode::NOT_FOUND),
            (refused(AgentErrorCode::Gone), StatusCode::GONE),
            (refused(AgentErrorCode::BadRequest), StatusCode::BAD_REQUEST),
            (refused(AgentErrorCode::Conflict), StatusCode::CONFLICT),
            (
                refused(AgentErrorCode::Internal),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                AgentError::Unexpected("u".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (AgentError::Closed, StatusCode::SERVICE_UNAVAILABLE),
            (
                AgentError::Protocol("p".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ] {
            assert_eq!(crate::api::error::ApiError::from(e).status(), status);
        }
    }

    /// A conversation with a fake agent on the other end of a socket pair:
    /// what the daemon sent first (the request) is read off already.
    pub(super) async fn fake(req: &Request) -> (Conversation, UnixStream) {
        let (ours, mut agent) = UnixStream::pair().expect("socket pair");
        let conv = Conversation::start(ours, req).await.expect("request sent");
        let (kind, body) = read_frame(&mut agent).await.expect("the request");
        assert_eq!(kind, agent::JSON);
        let sent: Request = serde_json::from_slice(&body).expect("a request");
        assert_eq!(&sent, req);
        (conv, agent)
    }

    /// One frame as the agent reads it.
    pub(super) async fn read_frame(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
        let mut h = [0u8; agent::HEADER_LEN];
        s.read_exact(&mut h).await.ok()?;
        let (kind, len) = agent::parse_header(h).ok()?;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.ok()?;
        Some((kind, body))
    }

    #[tokio::test]
    async fn answers_are_typed_and_refusals_are_errors() {
        let (conv, mut agent) = fake(&Request::Sessions).await;
        let refusal = Reply::Error {
            code: AgentErrorCode::Conflict,
            message: "busy".into(),
        };
        agent
            .write_all(&agent::json_frame(&refusal))
            .await
            .expect("write");
        match exec::session_list(conv).await {
            Err(AgentError::Refused {
                code: AgentErrorCode::Conflict,
                message,
            }) => assert_eq!(message, "busy"),
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }

        let (conv, mut agent) = fake(&Request::Sessions).await;
        agent
            .write_all(&agent::json_frame(&Reply::Sessions { sessions: vec![] }))
            .await
            .expect("write");
        assert!(exec::session_list(conv).await.expect("a list").is_empty());

        let (conv, agent) = fake(&Request::Busy).await;
        drop(agent);
        assert!(matches!(
            exec::running_sessions(conv).await,
            Err(AgentError::Closed)
        ));
    }
}
