//! Exec and attach sessions, the session list, kill and the busy count.
//!
//! An exec or attach conversation starts with the agent's `session_info`;
//! then the agent sends the command's output, the ports its processes open
//! and close, and last its exit status, while the daemon sends stdin,
//! resizes and signals. [`ExecSession`] splits the two directions so each
//! can be pumped on its own.

use bytes::Bytes;
use sprites_api::agent::{Control, Reply};
use sprites_api::port::SessionPort;
use sprites_api::sprite::SessionInfo;

use super::{unexpected, AgentError, Conversation, Frame, Reader, Writer};

/// What the agent says about a session when it starts or is attached.
pub use sprites_api::agent::SessionStarted as SessionStart;

/// An exec or attach session: its start, what it sends, what it takes.
pub struct ExecSession {
    pub start: SessionStart,
    pub events: SessionEvents,
    pub input: SessionInput,
}

impl ExecSession {
    /// Read the agent's answer to an exec or attach request: the session's
    /// `session_info`, or why there is none.
    pub async fn begin(conv: Conversation) -> Result<ExecSession, AgentError> {
        let Conversation { mut reader, writer } = conv;
        let start = match reader.reply().await? {
            Reply::SessionInfo(start) => start,
            Reply::Error { code, message } => return Err(AgentError::Refused { code, message }),
            other => return Err(unexpected(&other, "an exec")),
        };
        Ok(ExecSession {
            start,
            events: SessionEvents { reader },
            input: SessionInput { writer },
        })
    }
}

/// What a session sends, in the agent's order: all output before the exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Output; in TTY mode all terminal output is stdout.
    Stdout(Bytes),
    Stderr(Bytes),
    /// The command's exit status: the last event.
    Exit(i32),
    /// A process of the session started listening on a TCP port (`pid` is
    /// the socket's owner).
    PortOpened(SessionPort),
    /// A port announced by `PortOpened` closed.
    PortClosed(SessionPort),
    /// The agent gave up on the session; it closes the connection next.
    Failed(String),
}

/// The agent-to-daemon half of a session. Holds the activity that keeps
/// the sprite awake.
pub struct SessionEvents {
    reader: Reader,
}

impl SessionEvents {
    /// The next event, read when asked (one frame at a time), or `None`
    /// when the agent closed the connection without an exit: the sprite
    /// stopped under the command.
    pub async fn next(&mut self) -> Result<Option<SessionEvent>, AgentError> {
        loop {
            let event = match self.reader.next().await? {
                None => return Ok(None),
                Some(Frame::Stdout(b)) => SessionEvent::Stdout(b),
                Some(Frame::Stderr(b)) => SessionEvent::Stderr(b),
                Some(Frame::Exit(code)) => SessionEvent::Exit(code),
                Some(Frame::Reply(Reply::PortOpened(p))) => SessionEvent::PortOpened(p),
                Some(Frame::Reply(Reply::PortClosed(p))) => SessionEvent::PortClosed(p),
                Some(Frame::Reply(Reply::Error { message, .. })) => SessionEvent::Failed(message),
                // Nothing else belongs here; skipped as the agent may grow.
                Some(Frame::Reply(_)) => continue,
            };
            return Ok(Some(event));
        }
    }
}

/// The daemon-to-agent half of a session. Dropping it tells the agent the
/// client left: the command goes on, detached.
pub struct SessionInput {
    writer: Writer,
}

impl SessionInput {
    pub async fn stdin(&mut self, data: &[u8]) -> Result<(), AgentError> {
        self.writer.send_stdin(data).await
    }

    /// The end of stdin.
    pub async fn eof(&mut self) -> Result<(), AgentError> {
        self.writer.send_eof().await
    }

    /// A new terminal size (TTY sessions).
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), AgentError> {
        self.writer.send_json(&Control::Resize { cols, rows }).await
    }

    /// Send `signal` (a name such as `SIGTERM`) to the command.
    pub async fn signal(&mut self, signal: String) -> Result<(), AgentError> {
        self.writer.send_json(&Control::Signal { signal }).await
    }
}

/// The sessions of the agent's answer to a `sessions` request.
pub async fn session_list(conv: Conversation) -> Result<Vec<SessionInfo>, AgentError> {
    match conv.answer().await? {
        Reply::Sessions { sessions } => Ok(sessions),
        other => Err(unexpected(&other, "a session list")),
    }
}

/// The count of the agent's answer to a `busy` request: sessions whose
/// command still runs.
pub async fn running_sessions(conv: Conversation) -> Result<u32, AgentError> {
    match conv.answer().await? {
        Reply::Busy { running_sessions } => Ok(running_sessions),
        other => Err(unexpected(&other, "a busy request")),
    }
}

/// A step of a kill, as the agent reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum KillEvent {
    /// The signal was delivered.
    Signal(String),
    /// The process exited after the signal.
    Exited(i32),
    /// The process did not exit in time and was SIGKILLed.
    Killed,
    /// The last event: the session is over.
    Complete(i32),
    /// The last event: the kill failed.
    Failed(String),
    /// A reply a kill does not send, passed on as its JSON.
    Other(serde_json::Value),
}

/// The steps of a kill: the first one read before the answer to the
/// client is chosen (a refusal is an error, not a step).
pub struct KillProgress {
    pending: Option<KillEvent>,
    reader: Reader,
    _writer: Writer,
    done: bool,
}

impl KillProgress {
    /// Read the agent's first answer to a kill request.
    pub async fn begin(conv: Conversation) -> Result<KillProgress, AgentError> {
        let Conversation { mut reader, writer } = conv;
        let first = match reader.reply().await? {
            Reply::Error { code, message } => return Err(AgentError::Refused { code, message }),
            other => other,
        };
        Ok(KillProgress {
            pending: Some(kill_event(first)),
            reader,
            _writer: writer,
            done: false,
        })
    }

    /// The next step, `None` after the last one or if the agent is lost.
    pub async fn next(&mut self) -> Option<KillEvent> {
        if self.done {
            return None;
        }
        let event = match self.pending.take() {
            Some(e) => e,
            None => kill_event(self.reader.reply().await.ok()?),
        };
        self.done = matches!(event, KillEvent::Complete(_) | KillEvent::Failed(_));
        Some(event)
    }
}

fn kill_event(reply: Reply) -> KillEvent {
    match reply {
        Reply::Signal { signal } => KillEvent::Signal(signal),
        Reply::Exited { exit_code } => KillEvent::Exited(exit_code),
        Reply::Killed => KillEvent::Killed,
        Reply::Complete { exit_code } => KillEvent::Complete(exit_code),
        Reply::Error { message, .. } => KillEvent::Failed(message),
        other => KillEvent::Other(serde_json::to_value(&other).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use sprites_api::agent::{self, ExecRequest, Request};
    use tokio::io::AsyncWriteExt;

    use super::super::tests::{fake, read_frame};
    use super::*;

    fn info(tty: bool) -> Reply {
        Reply::SessionInfo(SessionStart {
            session_id: 7,
            command: "sh".into(),
            workdir: "/".into(),
            created: "2025-01-01T00:00:00Z".into(),
            cols: 80,
            rows: 24,
            is_owner: true,
            tty,
        })
    }

    #[tokio::test]
    async fn an_exec_session_is_typed_both_ways() {
        let (conv, mut agent) = fake(&Request::Exec(ExecRequest::default())).await;
        let mut out = agent::json_frame(&info(true));
        out.extend(agent::frame(agent::STDOUT, b"out"));
        let port = SessionPort {
            port: 8080,
            address: "0.0.0.0".into(),
            pid: 42,
        };
        out.extend(agent::json_frame(&Reply::PortOpened(port.clone())));
        // Not an exec reply: skipped.
        out.extend(agent::json_frame(&Reply::Pong {
            version: "x".into(),
        }));
        out.extend(agent::frame(agent::STDERR, b"err"));
        out.extend(agent::json_frame(&Reply::PortClosed(port.clone())));
        out.extend(agent::exit_frame(3));
        agent.write_all(&out).await.expect("write");

        let ExecSession {
            start,
            mut events,
            mut input,
        } = ExecSession::begin(conv).await.expect("session");
        assert_eq!((start.session_id, start.tty), (7, true));
        let mut got = Vec::new();
        while let Some(e) = events.next().await.expect("event") {
            let last = matches!(e, SessionEvent::Exit(_));
            got.push(e);
            if last {
                break;
            }
        }
        assert_eq!(
            got,
            [
                SessionEvent::Stdout(Bytes::from_static(b"out")),
                SessionEvent::PortOpened(port.clone()),
                SessionEvent::Stderr(Bytes::from_static(b"err")),
                SessionEvent::PortClosed(port),
                SessionEvent::Exit(3),
            ]
        );

        input.stdin(b"in").await.expect("stdin");
        input.resize(100, 30).await.expect("resize");
        input.signal("SIGINT".into()).await.expect("signal");
        input.eof().await.expect("eof");
        assert_eq!(
            read_frame(&mut agent).await,
            Some((agent::STDIN, b"in".to_vec()))
        );
        for want in [
            Control::Resize {
                cols: 100,
                rows: 30,
            },
            Control::Signal {
                signal: "SIGINT".into(),
            },
        ] {
            let (kind, body) = read_frame(&mut agent).await.expect("control");
            assert_eq!(kind, agent::JSON);
            let got: Control = serde_json::from_slice(&body).expect("control");
            assert_eq!(got, want);
        }
        assert_eq!(
            read_frame(&mut agent).await,
            Some((agent::STDIN_EOF, vec![]))
        );

        // The agent's hang-up without an exit: the end of the events.
        drop(agent);
        assert_eq!(events.next().await.expect("clean end"), None);
    }

    #[tokio::test]
    async fn a_kill_reports_its_steps_up_to_the_last() {
        let req = Request::Kill {
            id: 7,
            signal: "SIGTERM".into(),
            timeout_ms: 10,
        };
        let (conv, mut agent) = fake(&req).await;
        let mut out = agent::json_frame(&Reply::Signal {
            signal: "SIGTERM".into(),
        });
        out.extend(agent::json_frame(&Reply::Exited { exit_code: 143 }));
        out.extend(agent::json_frame(&Reply::Complete { exit_code: 143 }));
        out.extend(agent::json_frame(&Reply::Done));
        agent.write_all(&out).await.expect("write");
        let mut progress = KillProgress::begin(conv).await.expect("progress");
        let mut got = Vec::new();
        while let Some(e) = progress.next().await {
            got.push(e);
        }
        assert_eq!(
            got,
            [
                KillEvent::Signal("SIGTERM".into()),
                KillEvent::Exited(143),
                KillEvent::Complete(143),
            ]
        );
    }
}
