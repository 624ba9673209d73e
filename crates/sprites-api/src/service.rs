//! Services: long-running processes the agent supervises inside a sprite.
//! `GET|PUT|DELETE /v1/sprites/{name}/services[/{svc}]`, `.../start`,
//! `.../stop`, `.../logs`, `POST .../services/signal`; the same paths under
//! `/v1/services` on the in-sprite socket.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Body of `PUT .../services/{svc}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceSpec {
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// A service and where it is in its life.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ServiceState>,
}

/// `state.status`: `stopped`, `starting`, `running`, `stopping`, `failed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceState {
    pub name: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub restart_count: u32,
    /// RFC 3339; set while a crashed service waits to be restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_at: Option<String>,
}

/// One line of the NDJSON streams of create/start/stop: `started`,
/// `stdout`, `stderr`, `exit`, `error`, `stopping`, `stopped`, `complete`;
/// and of `GET .../logs` (see [`log_events`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_files: Option<BTreeMap<String, String>>,
}

/// The answer of `GET .../services/{svc}/logs` as NDJSON messages: one
/// `stdout` per line of the log, its `data` the line with its newline (so
/// the `data` joined are the log's text), then `complete` with the log's
/// files. The log keeps stdout and stderr in one file without telling them
/// apart, and without times: every line is `stdout` and carries `timestamp`,
/// the time of the answer.
pub fn log_events(
    text: &str,
    log_files: Option<BTreeMap<String, String>>,
    timestamp: i64,
) -> Vec<ServiceEvent> {
    let line = |data: &str| ServiceEvent {
        kind: "stdout".into(),
        data: Some(data.to_string()),
        exit_code: None,
        timestamp,
        log_files: None,
    };
    let mut events: Vec<ServiceEvent> = text.split_inclusive('\n').map(line).collect();
    events.push(ServiceEvent {
        kind: "complete".into(),
        data: None,
        exit_code: None,
        timestamp,
        log_files,
    });
    events
}

/// The log's text back from the messages of `GET .../logs`: the `data` of
/// its `stdout` and `stderr` messages, in order.
pub fn log_text<'a>(events: impl IntoIterator<Item = &'a ServiceEvent>) -> String {
    events
        .into_iter()
        .filter(|e| e.kind == "stdout" || e.kind == "stderr")
        .filter_map(|e| e.data.as_deref())
        .collect()
}

/// Body of `POST .../services/signal`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignalRequest {
    pub name: String,
    pub signal: String,
}

/// Service names: 1-63 of `[A-Za-z0-9_.-]`, starting with a letter or digit
/// (they name log files).
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(format!(
            "invalid service name {name:?}: use 1-63 of [A-Za-z0-9_.-], starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("web-1.main_x").is_ok());
        for bad in ["", "-a", ".a", "a/b", "a b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn spec_defaults() {
        let s: ServiceSpec = serde_json::from_str(r#"{"cmd":"sleep"}"#).expect("parse");
        assert!(s.args.is_empty() && s.needs.is_empty() && s.http_port.is_none());
    }

    #[test]
    fn log_messages_give_back_the_text() {
        for text in ["", "a\n", "a\nb\n", "a\npartial"] {
            let events = log_events(text, None, 7);
            let last = events.last().expect("complete");
            assert_eq!(last.kind, "complete");
            assert_eq!(events.len(), text.split_inclusive('\n').count() + 1);
            assert!(events.iter().all(|e| e.timestamp == 7));
            assert_eq!(log_text(&events), text);
        }
    }
}
