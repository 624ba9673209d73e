//! The daemon ↔ `sprite-agent` protocol.
//!
//! The agent listens on a Unix socket (`agent.sock` in the sprite's run
//! directory). The daemon opens one connection per operation, so there is no
//! multiplexing: the first frame on a connection is a [`Request`] (kind
//! [`JSON`]); what follows depends on the request.
//!
//! A frame is `kind: u8`, `len: u32` big-endian, then `len` bytes.
//!
//! - `exec`: the agent answers `session_info`, then `STDOUT`/`STDERR` frames
//!   (in TTY mode all terminal output is `STDOUT`), and last an `EXIT` frame
//!   with the status as `i32` big-endian; every byte of output is sent before
//!   `EXIT`. The daemon sends `STDIN`, `STDIN_EOF` and JSON [`Control`] frames.
//!   A dropped connection detaches: the command keeps running (TTY sessions
//!   forever unless `max_run_after_disconnect_ms` says otherwise, others for
//!   that long) and can be re-attached.
//! - `attach`: like `exec` for an existing session: `session_info`, the
//!   scrollback (TTY sessions), then live output and `EXIT`.
//! - `sessions`: one `sessions` reply, then the agent closes.
//! - `kill`: `signal`, then `exited` or `killed`, then `complete`; or one
//!   `error`.
//! - `ping`: one `pong`.
//! - `fs`: one filesystem call, answered with [`crate::fs::FsReply`] JSON
//!   frames; file bytes travel as `STDOUT` frames (read) or `STDIN` frames
//!   ended by `STDIN_EOF` (write). See [`crate::fs::FsCall`] for each call;
//!   `watch` goes on (`watching`, then `changed`/`overflow`) until the
//!   daemon hangs up.
//! - `service`: a [`ServiceOp`]. `list` → `services`; `get` → `service`;
//!   `logs` → `logs`; `signal`, `delete` → `done`; `put`, `start`, `stop`,
//!   `restart` → `service_event` frames (the NDJSON lines of the API) ending
//!   with a `complete` or `error` event.
//! - `busy`: one `busy` reply: whether anything keeps the sprite awake
//!   (sessions whose command still runs).
//! - `watch_ports`: a `ports` reply with the listening TCP ports, then
//!   another each time the set changes, until the daemon hangs up.
//! - During `exec` and `attach`, `port_opened` and `port_closed` replies
//!   come between the output frames when a process of the session starts
//!   or stops listening on a TCP port (polled every 250 ms).
//!
//! Errors the agent can name come as an [`Reply::Error`] frame (its code an
//! [`AgentErrorCode`]), then close.

use serde::{Deserialize, Serialize};

use crate::service::{Service, ServiceEvent, ServiceSpec};
use crate::sprite::SessionInfo;

pub const STDIN: u8 = 0x00;
pub const STDOUT: u8 = 0x01;
pub const STDERR: u8 = 0x02;
pub const EXIT: u8 = 0x03;
pub const STDIN_EOF: u8 = 0x04;
pub const JSON: u8 = 0x10;

/// Largest payload either side sends in one frame.
pub const MAX_FRAME: usize = 1 << 20;
/// Size of a frame header.
pub const HEADER_LEN: usize = 5;

/// Socket file name inside the sprite's run directory.
pub const SOCKET_NAME: &str = "agent.sock";

/// Variable of the agent's own environment through which the daemon gives
/// the environment every command in the sprite starts with: a JSON list of
/// `KEY=VALUE` (the image's PATH, the host's `--sprite-env`, CA variables).
/// A command's own variables (the sprite's, the request's) come on top.
pub const EXEC_ENV_VAR: &str = "SPRITE_EXEC_ENV";

/// Extra CA certificates (PEM) the daemon puts in `/.sprite/run`, for the
/// agent to add to the sprite's trust store when it boots.
pub const EXTRA_CA_FILE: &str = "/.sprite/run/ca-certificates.crt";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Exec(ExecRequest),
    Attach {
        id: u32,
    },
    Sessions,
    Kill {
        id: u32,
        signal: String,
        timeout_ms: u64,
    },
    Ping,
    Fs(crate::fs::FsRequest),
    Service(ServiceOp),
    Busy,
    WatchPorts,
    /// Connect to `ip:port` inside the sprite (a loopback address) and,
    /// once answered `done`, carry the connection's bytes: the daemon's in
    /// `STDIN` frames, its end of data as `STDIN_EOF`; the server's in
    /// `STDOUT` frames, its end as `EXIT` (0; 1 after a read error). The
    /// conversation closing ends the connection. How the daemon reaches a
    /// sprite's ports where the sprite's loopback is not the kernel's of
    /// its network namespace (gVisor's Sentry has its own).
    Connect {
        ip: std::net::IpAddr,
        port: u16,
    },
    /// The sandbox, made ahead under a placeholder host name, is now sprite
    /// `hostname`'s: the daemon has set its host name, and the agent makes
    /// `/etc/hosts` name it instead of the placeholder. Answered `done`.
    Named {
        hostname: String,
    },
}

/// What to do with the sprite's services.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ServiceOp {
    List,
    Get {
        name: String,
    },
    /// Create or replace, then start; stream its events for `stream_ms`.
    Put {
        name: String,
        spec: ServiceSpec,
        stream_ms: u64,
    },
    Start {
        name: String,
        stream_ms: u64,
    },
    /// SIGTERM, SIGKILL after `timeout_ms`. Sticky: stays stopped across
    /// restarts of the sprite until started again.
    Stop {
        name: String,
        timeout_ms: u64,
    },
    Restart {
        name: String,
        timeout_ms: u64,
        stream_ms: u64,
    },
    Signal {
        name: String,
        signal: String,
    },
    Delete {
        name: String,
    },
    /// The last `lines` lines of its output.
    Logs {
        name: String,
        lines: usize,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExecRequest {
    /// argv; `cmd[0]` is the program name.
    pub cmd: Vec<String>,
    /// Program to run; defaults to `cmd[0]` (looked up in `PATH`).
    #[serde(default)]
    pub path: Option<String>,
    /// `K=V` pairs added to (and overriding) the default environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory; defaults to the user's home.
    #[serde(default)]
    pub dir: Option<String>,
    /// User name or uid; defaults to `sprite` where it exists, else root.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default = "default_rows")]
    pub rows: u16,
    #[serde(default = "default_cols")]
    pub cols: u16,
    /// Whether the command reads stdin from the client (else /dev/null).
    #[serde(default)]
    pub stdin: bool,
    /// How long the command may outlive a dropped client; `None` = forever.
    #[serde(default)]
    pub max_run_after_disconnect_ms: Option<u64>,
}

fn default_rows() -> u16 {
    24
}
fn default_cols() -> u16 {
    80
}

/// daemon → agent JSON frames after the request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    Resize { cols: u16, rows: u16 },
    Signal { signal: String },
}

/// exec and attach: the session the connection is on, its first reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionStarted {
    pub session_id: u32,
    pub command: String,
    pub workdir: String,
    pub created: String,
    pub cols: u16,
    pub rows: u16,
    /// Whether this connection owns the session (the one that started it).
    pub is_owner: bool,
    pub tty: bool,
}

/// agent → daemon JSON frames.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    SessionInfo(SessionStarted),
    Sessions {
        sessions: Vec<SessionInfo>,
    },
    /// kill: the signal was delivered.
    Signal {
        signal: String,
    },
    /// kill: the process exited after the signal.
    Exited {
        exit_code: i32,
    },
    /// kill: the process did not exit in time and was SIGKILLed.
    Killed,
    Complete {
        exit_code: i32,
    },
    Pong {
        version: String,
    },
    Services {
        services: Vec<Service>,
    },
    Service {
        service: Box<Service>,
    },
    ServiceEvent {
        event: Box<ServiceEvent>,
    },
    Logs {
        text: String,
        /// The files the log is kept in, by stream (`stdout`, `stderr`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_files: Option<std::collections::BTreeMap<String, String>>,
    },
    Done,
    /// watch_ports: every TCP port listened on inside.
    Ports {
        ports: Vec<crate::port::ListeningPort>,
    },
    /// exec and attach: a process of the session started listening on a
    /// TCP port.
    PortOpened(crate::port::SessionPort),
    /// exec and attach: a port announced by `port_opened` closed.
    PortClosed(crate::port::SessionPort),
    Busy {
        /// Sessions whose command still runs (attached or not).
        running_sessions: u32,
    },
    Error {
        code: AgentErrorCode,
        message: String,
    },
}

/// Why the agent refused a request: the `code` of [`Reply::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentErrorCode {
    /// A session or service the agent does not know.
    NotFound,
    /// A session that existed and has ended.
    Gone,
    /// A request the agent cannot make sense of: a malformed frame, a bad
    /// signal name or service definition.
    BadRequest,
    /// A request at odds with the current state: a second `http_port`, a
    /// stop or signal of a service that is not running, a delete of a
    /// service others need.
    Conflict,
    /// connect: nothing listens on that port.
    Refused,
    /// The agent itself failed. A code this build does not know reads as
    /// this one too (a sprite still running an older or newer agent).
    #[serde(other)]
    Internal,
}

/// Encode one frame.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encode a JSON frame.
pub fn json_frame<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain enums cannot fail: no maps with non-string keys.
    let body = serde_json::to_vec(value).unwrap_or_default();
    frame(JSON, &body)
}

/// Encode an `EXIT` frame.
pub fn exit_frame(code: i32) -> Vec<u8> {
    frame(EXIT, &code.to_be_bytes())
}

/// Decode a frame header: `(kind, payload length)`.
pub fn parse_header(h: [u8; HEADER_LEN]) -> Result<(u8, usize), String> {
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if len > MAX_FRAME {
        return Err(format!(
            "frame of {len} bytes exceeds the {MAX_FRAME} limit"
        ));
    }
    Ok((h[0], len))
}

/// Decode the status carried by an `EXIT` frame.
pub fn parse_exit(payload: &[u8]) -> Result<i32, String> {
    let b: [u8; 4] = payload
        .try_into()
        .map_err(|_| format!("exit frame has {} bytes, want 4", payload.len()))?;
    Ok(i32::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = frame(STDOUT, b"hello");
        let (kind, len) = parse_header(f[..HEADER_LEN].try_into().expect("header")).expect("ok");
        assert_eq!((kind, len), (STDOUT, 5));
        assert_eq!(&f[HEADER_LEN..], b"hello");
        let e = exit_frame(-1);
        assert_eq!(parse_exit(&e[HEADER_LEN..]), Ok(-1));
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut h = [JSON, 0, 0, 0, 0];
        h[1..].copy_from_slice(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert!(parse_header(h).is_err());
    }

    #[test]
    fn requests_use_op_tags() {
        let r: Request =
            serde_json::from_str(r#"{"op":"exec","cmd":["echo","x"]}"#).expect("exec parses");
        match r {
            Request::Exec(e) => {
                assert_eq!(e.cmd, vec!["echo", "x"]);
                assert_eq!((e.rows, e.cols), (24, 80));
                assert!(!e.tty);
            }
            other => panic!("unexpected {other:?}"),
        }
        let k = serde_json::to_string(&Request::Kill {
            id: 7,
            signal: "SIGTERM".into(),
            timeout_ms: 10,
        })
        .expect("json");
        assert!(k.contains(r#""op":"kill""#));
    }

    #[test]
    fn error_codes_keep_their_wire_names() {
        for (code, name) in [
            (AgentErrorCode::NotFound, "not_found"),
            (AgentErrorCode::BadRequest, "bad_request"),
            (AgentErrorCode::Conflict, "conflict"),
            (AgentErrorCode::Internal, "internal"),
        ] {
            let reply = Reply::Error {
                code,
                message: "m".into(),
            };
            let json = serde_json::to_string(&reply).expect("json");
            assert_eq!(
                json,
                format!(r#"{{"type":"error","code":"{name}","message":"m"}}"#)
            );
            assert_eq!(serde_json::from_str::<Reply>(&json).expect("parse"), reply);
        }
        let unknown: Reply =
            serde_json::from_str(r#"{"type":"error","code":"teapot","message":"m"}"#)
                .expect("an unknown code parses");
        assert!(matches!(
            unknown,
            Reply::Error {
                code: AgentErrorCode::Internal,
                ..
            }
        ));
    }
}
