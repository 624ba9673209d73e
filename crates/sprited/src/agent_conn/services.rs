//! Service calls: the request-reply ones (list, get, logs, signal, delete)
//! and the operations answered with events (put, start, stop, restart).

use std::collections::BTreeMap;

use sprites_api::agent::Reply;
use sprites_api::service::{Service, ServiceEvent};

use super::{unexpected, AgentError, Conversation, Frame, Reader, Writer};

/// The services of the agent's answer to `list`.
pub async fn list(conv: Conversation) -> Result<Vec<Service>, AgentError> {
    match conv.answer().await? {
        Reply::Services { services } => Ok(services),
        other => Err(unexpected(&other, "a service list")),
    }
}

/// The service of the agent's answer to `get`.
pub async fn get(conv: Conversation) -> Result<Service, AgentError> {
    match conv.answer().await? {
        Reply::Service { service } => Ok(*service),
        other => Err(unexpected(&other, "a service get")),
    }
}

/// The text of the agent's answer to `logs`.
pub async fn logs(conv: Conversation) -> Result<ServiceLog, AgentError> {
    match conv.answer().await? {
        Reply::Logs { text, log_files } => Ok(ServiceLog { text, log_files }),
        other => Err(unexpected(&other, "a service's logs")),
    }
}

/// The end of a service's log and the files it is kept in.
pub struct ServiceLog {
    pub text: String,
    pub log_files: Option<BTreeMap<String, String>>,
}

/// The agent's answer to `signal` or `delete`: done unless it refused.
pub async fn done(conv: Conversation) -> Result<(), AgentError> {
    conv.answer().await.map(drop)
}

/// A service operation's events as the agent sends them: the first one
/// already read (a refusal before it is an error), the rest to follow.
pub struct ServiceEvents {
    pub first: ServiceEvent,
    reader: Reader,
    _writer: Writer,
    done: bool,
}

fn is_last(e: &ServiceEvent) -> bool {
    e.kind == "complete" || e.kind == "error"
}

impl ServiceEvents {
    /// Read up to the first event of the agent's answer.
    pub async fn begin(conv: Conversation) -> Result<ServiceEvents, AgentError> {
        let Conversation { mut reader, writer } = conv;
        loop {
            match reader.next().await? {
                Some(Frame::Reply(Reply::ServiceEvent { event })) => {
                    let done = is_last(&event);
                    return Ok(ServiceEvents {
                        first: *event,
                        reader,
                        _writer: writer,
                        done,
                    });
                }
                Some(Frame::Reply(Reply::Error { code, message })) => {
                    return Err(AgentError::Refused { code, message })
                }
                Some(_) => continue,
                None => return Err(AgentError::Closed),
            }
        }
    }

    /// The next event, `None` after the last one. A lost agent ends the
    /// stream with an `error` event.
    pub async fn next(&mut self) -> Option<ServiceEvent> {
        if self.done {
            return None;
        }
        loop {
            match self.reader.next().await {
                Ok(Some(Frame::Reply(Reply::ServiceEvent { event }))) => {
                    self.done = is_last(&event);
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
