//! Exec sessions: list them, kill them, attach to them again.

use std::time::Duration;

use reqwest::Method;
use sprites_api::sprite::{SessionInfo, SessionList, StreamEvent};

use crate::child::{self, ExecChild};
use crate::error::Error;
use crate::sprites::SpriteHandle;

/// How long an attach waits for the server's `session_info`.
const SESSION_INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of a session kill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillOptions {
    /// Signal to send first (`SIGTERM` when `None`).
    pub signal: Option<String>,
    /// How long to wait before `SIGKILL` (the server's default when `None`).
    pub timeout: Option<Duration>,
}

impl SpriteHandle {
    /// `GET /v1/sprites/{name}/exec`: the sessions of this sprite.
    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        let url = self.client.url(&["sprites", &self.name, "exec"]);
        let list: SessionList = self
            .client
            .send_json(self.client.request(Method::GET, url))
            .await?;
        Ok(list.sessions)
    }

    /// `POST /v1/sprites/{name}/exec/{id}/kill`: the NDJSON progress events
    /// (`signal`, `exited`, `killed`, `complete`, `error`). A session that is
    /// already gone answers [`Error::Api`] with status 410.
    pub async fn kill_session(
        &self,
        session_id: &str,
        opts: &KillOptions,
    ) -> Result<Vec<StreamEvent>, Error> {
        let mut url = self
            .client
            .url(&["sprites", &self.name, "exec", session_id, "kill"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(signal) = &opts.signal {
                q.append_pair("signal", signal);
            }
            if let Some(timeout) = opts.timeout {
                q.append_pair("timeout", &format!("{}s", timeout.as_secs()));
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let resp = self
            .client
            .send(self.client.request(Method::POST, url))
            .await?;
        let body = resp.bytes().await?;
        parse_ndjson(&body)
    }

    /// Attach to a running session (`WS /v1/sprites/{name}/exec/{id}`): the
    /// server replays its scrollback, then live output. Whether it is a TTY
    /// comes from the server's `session_info`.
    pub async fn attach(&self, session_id: &str) -> Result<ExecChild, Error> {
        let url = self
            .client
            .ws_url(&["sprites", &self.name, "exec", session_id]);
        let mut ws = child::connect(&self.client, url).await?;
        let (tty, seen) = child::await_session_info(&mut ws, SESSION_INFO_TIMEOUT).await?;
        Ok(ExecChild::start(ws, tty, true, seen))
    }
}

/// Parse an NDJSON body, one [`StreamEvent`] a line; blank lines are skipped.
pub fn parse_ndjson(body: &[u8]) -> Result<Vec<StreamEvent>, Error> {
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(index, line)| {
            serde_json::from_slice(line).map_err(|e| {
                Error::Protocol(format!(
                    "line {} of the event stream is not an event ({e}): {}",
                    index + 1,
                    String::from_utf8_lossy(line).trim()
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kill_events() {
        let body = b"{\"type\":\"signal\",\"data\":\"SIGTERM\"}\n\r\n\
            {\"type\":\"exited\",\"exit_code\":143}\n\
            {\"type\":\"complete\",\"exit_code\":143,\"time\":\"2025-01-01T00:00:00Z\"}\n";
        let events = parse_ndjson(body).expect("events");
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["signal", "exited", "complete"]);
        assert_eq!(events[0].data, Some(serde_json::json!("SIGTERM")));
        assert_eq!(events[2].exit_code, Some(143));
    }

    #[test]
    fn an_error_event_keeps_its_message() {
        let events =
            parse_ndjson(br#"{"type":"error","message":"no such process"}"#).expect("events");
        assert_eq!(events[0].message.as_deref(), Some("no such process"));
    }

    #[test]
    fn empty_bodies_have_no_events() {
        assert!(parse_ndjson(b"").expect("ok").is_empty());
        assert!(parse_ndjson(b"\n\n").expect("ok").is_empty());
    }

    #[test]
    fn a_broken_line_is_a_protocol_error() {
        let err = parse_ndjson(b"{\"type\":\"signal\"}\nnope\n").expect_err("must fail");
        assert!(matches!(err, Error::Protocol(_)));
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
