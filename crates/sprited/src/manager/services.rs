//! Services are the agent's: the daemon wakes the sprite and relays.

use std::sync::Arc;

use sprites_api::agent::{Reply, Request, ServiceOp};
use sprites_api::service::ServiceEvent;

use super::Manager;
use crate::agent_conn::{AgentReader, AgentWriter, Frame};
use crate::db::SpriteRecord;
use crate::error::Error;

/// An agent error code as the API's error.
pub fn agent_error(code: &str, message: String) -> Error {
    Error::Agent {
        code: code.to_string(),
        message,
    }
}

/// A service operation's events as the agent sends them: the first one
/// already read (errors before it became HTTP errors), the rest to follow.
pub struct EventStream {
    pub first: ServiceEvent,
    reader: AgentReader,
    _writer: AgentWriter,
    done: bool,
}

impl EventStream {
    fn is_last(e: &ServiceEvent) -> bool {
        e.kind == "complete" || e.kind == "error"
    }

    /// The next event, `None` after the last one.
    pub async fn next(&mut self) -> Option<ServiceEvent> {
        if self.done {
            return None;
        }
        loop {
            match self.reader.next().await {
                Ok(Some(Frame::Reply(Reply::ServiceEvent { event }))) => {
                    self.done = Self::is_last(&event);
                    return Some(*event);
                }
                Ok(Some(Frame::Reply(Reply::Error { message, .. }))) => {
                    self.done = true;
                    return Some(error_event(message));
                }
                Ok(Some(_)) => continue,
                Ok(None) => {
                    self.done = true;
                    return Some(error_event(
                        "the sprite stopped before the operation finished".into(),
                    ));
                }
                Err(e) => {
                    self.done = true;
                    return Some(error_event(format!("lost the sprite's agent: {e}")));
                }
            }
        }
    }
}

fn error_event(message: String) -> ServiceEvent {
    ServiceEvent {
        kind: "error".into(),
        data: Some(message),
        exit_code: None,
        timestamp: time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
        log_files: None,
    }
}

impl Manager {
    /// A request-reply service call (list, get, logs, signal, delete).
    pub async fn service_call(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        op: ServiceOp,
    ) -> Result<Reply, Error> {
        match self.ask(rec, &Request::Service(op)).await? {
            Reply::Error { code, message } => Err(agent_error(&code, message)),
            other => Ok(other),
        }
    }

    /// A service operation that answers with events (put, start, stop,
    /// restart). An error the agent reports at once is returned as such.
    pub async fn service_events(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        op: ServiceOp,
    ) -> Result<EventStream, Error> {
        let (mut reader, writer) = self.open(rec, &Request::Service(op)).await?;
        loop {
            match reader.next().await {
                Ok(Some(Frame::Reply(Reply::ServiceEvent { event }))) => {
                    let done = EventStream::is_last(&event);
                    return Ok(EventStream {
                        first: *event,
                        reader,
                        _writer: writer,
                        done,
                    });
                }
                Ok(Some(Frame::Reply(Reply::Error { code, message }))) => {
                    return Err(agent_error(&code, message))
                }
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return Err(Error::Unavailable(
                        "the sprite's agent closed the connection".into(),
                    ))
                }
                Err(e) => return Err(Error::Unavailable(e.to_string())),
            }
        }
    }
}
