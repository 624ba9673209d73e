//! Exec: WebSocket (non-TTY framing and TTY mode), HTTP POST, sessions list,
//! attach and kill. The daemon is a relay: one agent connection per client
//! connection, both directions pumped concurrently with backpressure, so
//! nothing is buffered beyond a frame. WebSocket clients also get
//! `port_opened`/`port_closed` text frames (both modes) when the session's
//! processes start or stop listening on a TCP port; HTTP exec has no place
//! for them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use sprites_api::agent::ExecRequest;
use sprites_api::duration::parse_duration;
use sprites_api::exec::{self as wire, TextMessage};
use sprites_api::sprite::{SessionList, StreamEvent};
use tokio::sync::Mutex;

use super::body::OptionalJsonBody;
use super::query::Query;
use super::ws::{stopping_frame, Stopping};
use crate::agent_conn::exec::{ExecSession, KillEvent, SessionEvent, SessionStart};
use crate::db::SpriteRecord;
use crate::error::ApiError;
use crate::time::now_rfc3339;
use crate::AppState;

/// Build the agent's exec request from the query string.
pub(super) fn exec_request(
    q: &Query,
    rec: &SpriteRecord,
    state: &AppState,
) -> Result<ExecRequest, ApiError> {
    let cmd = q.all("cmd");
    if cmd.is_empty() {
        return Err(ApiError::BadRequest(
            "exec needs the command: at least one cmd query parameter".into(),
        ));
    }
    let tty = q.bool("tty")?.unwrap_or(false);
    let mut env: Vec<String> = rec
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in q.all("env") {
        match e.split_once('=') {
            Some((k, _)) if !k.is_empty() => env.push(e),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "env value {e:?} is not of the form KEY=VALUE"
                )))
            }
        }
    }
    let linger = match q.get("max_run_after_disconnect") {
        None if tty => None,
        None => Some(state.manager.cfg.non_tty_linger),
        Some(v) => match parse_duration(v) {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => {
                return Err(ApiError::BadRequest(format!(
                    "max_run_after_disconnect={v:?} is not a duration (e.g. 10s, 0 = forever)"
                )))
            }
        },
    };
    Ok(ExecRequest {
        cmd,
        path: q.get("path").filter(|p| !p.is_empty()).map(String::from),
        env,
        dir: q.get("dir").filter(|d| !d.is_empty()).map(String::from),
        user: q.get("user").filter(|u| !u.is_empty()).map(String::from),
        tty,
        rows: q.number::<u16>("rows", 1..=10_000)?.unwrap_or(24),
        cols: q.number::<u16>("cols", 1..=10_000)?.unwrap_or(80),
        stdin: q.bool("stdin")?.unwrap_or(tty),
        max_run_after_disconnect_ms: linger.map(|d| d.as_millis() as u64),
    })
}

/// Start a command on the agent (the session has started when this returns).
pub(super) async fn start(
    state: &AppState,
    rec: &SpriteRecord,
    req: ExecRequest,
) -> Result<ExecSession, ApiError> {
    let started = std::time::Instant::now();
    let session = state.manager.exec(rec, req).await?;
    state
        .manager
        .metrics
        .exec_started(started.elapsed().as_secs_f64());
    Ok(session)
}

fn is_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("websocket"))
        .unwrap_or(false)
}

/// `GET /v1/sprites/{name}/exec`: a WebSocket exec, or without an upgrade
/// the list of sessions.
pub async fn exec_or_list(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let rec = state.manager.get(&name)?;
    if !is_upgrade(&req) {
        return list_sessions(&state, &rec).await;
    }
    let (mut parts, _) = req.into_parts();
    let super::ws::Upgrade(ws) = super::ws::Upgrade::from_request_parts(&mut parts, &state).await?;
    let q = Query::parse(raw.as_deref());
    let ereq = exec_request(&q, &rec, &state)?;
    let session = start(&state, &rec, ereq).await?;
    Ok(upgrade(&state, ws, session))
}

/// `GET /v1/sprites/{name}/exec/{id}` (WebSocket): re-attach to a session.
pub async fn attach(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    super::ws::Upgrade(ws): super::ws::Upgrade,
) -> Result<Response, ApiError> {
    let rec = state.manager.get(&name)?;
    let id = session_id(&id)?;
    let session = state.manager.attach(&rec, id).await?;
    Ok(upgrade(&state, ws, session))
}

pub(super) fn session_id(raw: &str) -> Result<u32, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no session {raw}")))
}

fn upgrade(state: &AppState, ws: WebSocketUpgrade, session: ExecSession) -> Response {
    let mut res = state
        .sockets
        .serve(ws.max_message_size(16 << 20), move |socket, stopping| {
            relay(socket, session, stopping)
        });
    res.headers_mut().insert(
        "x-sprite-capabilities",
        HeaderValue::from_static(wire::CAPABILITIES),
    );
    res
}

pub(super) fn session_info_text(start: SessionStart) -> Option<String> {
    serde_json::to_string(&TextMessage::SessionInfo {
        session_id: start.session_id.to_string(),
        command: start.command,
        created: start.created,
        cols: start.cols,
        rows: start.rows,
        is_owner: start.is_owner,
        tty: start.tty,
    })
    .ok()
}

fn port_text(m: TextMessage) -> String {
    serde_json::to_string(&m).unwrap_or_default()
}

/// Exit status reported for a command whose sprite stopped under it
/// (128 + SIGKILL, as a shell reports it).
pub(super) const KILLED_EXIT: i32 = 137;

fn prefixed(id: u8, data: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(id);
    v.extend_from_slice(data);
    v.into()
}

/// What an agent session event becomes for a WebSocket client (the exec
/// endpoint's and the control WebSocket's).
pub(super) enum ToClient {
    /// Send it and go on.
    Frame(Message),
    /// The command ended with `code`: send `frame`, which says so.
    Exit {
        code: i32,
        frame: Message,
        reason: &'static str,
    },
    /// The session broke without an exit status.
    Failed(String),
}

/// The exit frame: a text `exit` message in TTY mode, else `0x03 code`.
fn exit_frame_for(tty: bool, code: i32) -> Message {
    if tty {
        Message::Text(
            serde_json::to_string(&TextMessage::Exit { exit_code: code })
                .unwrap_or_default()
                .into(),
        )
    } else {
        Message::Binary(prefixed(wire::EXIT, &[wire::exit_byte(code)]))
    }
}

pub(super) fn to_client(
    event: Result<Option<SessionEvent>, crate::agent_conn::AgentError>,
    tty: bool,
) -> ToClient {
    let frame = match event {
        Ok(Some(SessionEvent::Stdout(b))) if tty => Message::Binary(b),
        Ok(Some(SessionEvent::Stdout(b))) => Message::Binary(prefixed(wire::STDOUT, &b)),
        Ok(Some(SessionEvent::Stderr(b))) if tty => Message::Binary(b),
        Ok(Some(SessionEvent::Stderr(b))) => Message::Binary(prefixed(wire::STDERR, &b)),
        Ok(Some(SessionEvent::Exit(code))) => {
            return ToClient::Exit {
                code,
                frame: exit_frame_for(tty, code),
                reason: "exited",
            }
        }
        Ok(Some(SessionEvent::Failed(message))) => return ToClient::Failed(message),
        Ok(Some(SessionEvent::PortOpened(p))) => {
            Message::Text(port_text(TextMessage::PortOpened(p)).into())
        }
        Ok(Some(SessionEvent::PortClosed(p))) => {
            Message::Text(port_text(TextMessage::PortClosed(p)).into())
        }
        // The agent went away without an exit: the sprite was stopped (a
        // restore, a destroy) and took the command with it. Report it as
        // killed.
        Ok(None) => {
            return ToClient::Exit {
                code: KILLED_EXIT,
                frame: exit_frame_for(tty, KILLED_EXIT),
                reason: "the sprite stopped",
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "agent stream failed");
            return ToClient::Failed("lost the connection to the sprite".into());
        }
    };
    ToClient::Frame(frame)
}

/// Pump a WebSocket client and an agent session into each other until the
/// command exits (then close at once) or the client goes (the agent keeps
/// the session, detached), or the daemon stops (close with 1001: the
/// session stays in the sprite, as when the client goes).
async fn relay(socket: WebSocket, session: ExecSession, mut stopping: Stopping) {
    let ExecSession {
        start,
        events: mut r,
        input: mut w,
    } = session;
    let tty = start.tty;
    let (mut tx, mut rx) = socket.split();
    let to_client = async move {
        if let Some(text) = session_info_text(start) {
            if tx.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        let close = loop {
            let event = tokio::select! {
                ev = r.next() => ev,
                () = stopping.wait() => break stopping_frame(),
            };
            match to_client(event, tty) {
                ToClient::Frame(msg) => {
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                ToClient::Exit { frame, reason, .. } => {
                    if tx.send(frame).await.is_err() {
                        return;
                    }
                    break CloseFrame {
                        code: 1000,
                        reason: reason.into(),
                    };
                }
                ToClient::Failed(message) => {
                    break CloseFrame {
                        code: 1011,
                        reason: message.chars().take(120).collect::<String>().into(),
                    }
                }
            }
        };
        let _ = tx.send(Message::Close(Some(close))).await;
        let _ = tx.close().await;
    };
    // Ends only when the client goes. The agent may close its side first (a
    // command that exits before the client's stdin EOF arrives): then input
    // is dropped while the output side finishes sending.
    let from_client = async move {
        let mut agent_open = true;
        while let Some(Ok(msg)) = rx.next().await {
            if !agent_open {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                continue;
            }
            let sent = match msg {
                Message::Binary(b) if tty => w.stdin(&b).await,
                Message::Binary(b) => match b.first() {
                    Some(&wire::STDIN) => w.stdin(&b[1..]).await,
                    Some(&wire::STDIN_EOF) => w.eof().await,
                    _ => Ok(()),
                },
                Message::Text(t) => match serde_json::from_str::<TextMessage>(t.as_str()) {
                    Ok(TextMessage::Resize { cols, rows }) => w.resize(cols, rows).await,
                    Ok(TextMessage::Signal { signal }) => {
                        w.signal(wire::signal_name(&signal)).await
                    }
                    _ => Ok(()),
                },
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => Ok(()),
            };
            agent_open = sent.is_ok();
        }
    };
    tokio::pin!(to_client, from_client);
    tokio::select! {
        _ = &mut to_client => {
            // Close gracefully: wait for the client's Close before dropping
            // the socket. Dropping it with the client's frames unread makes
            // the kernel send a RST, and a RST makes the client's kernel
            // discard output the client has not read yet.
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut from_client).await;
        }
        _ = &mut from_client => {}
    }
}

/// How long a finished exec waits for the client's Close frame.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn list_sessions(state: &AppState, rec: &SpriteRecord) -> Result<Response, ApiError> {
    let sessions = state.manager.sessions(rec).await?;
    let count = sessions.len();
    Ok(Json(SessionList { sessions, count }).into_response())
}

/// `POST /v1/sprites/{name}/exec`: body is stdin, answer is the non-TTY
/// framing as `application/octet-stream`, streamed.
pub async fn http_exec(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let rec = state.manager.get(&name)?;
    let q = Query::parse(raw.as_deref());
    if q.bool("tty")? == Some(true) {
        return Err(ApiError::BadRequest(
            "tty is not supported over HTTP exec; use the WebSocket endpoint".into(),
        ));
    }
    let mut ereq = exec_request(&q, &rec, &state)?;
    ereq.stdin = q.bool("stdin")?.unwrap_or(false);
    let with_stdin = ereq.stdin;
    let ExecSession {
        events: r,
        input: w,
        ..
    } = start(&state, &rec, ereq).await?;
    // The input lives as long as either the stdin pump or the response
    // stream: dropping it would tell the agent the client left.
    let w = Arc::new(Mutex::new(w));
    if with_stdin {
        let w = w.clone();
        tokio::spawn(async move {
            let mut data = body.into_data_stream();
            while let Some(chunk) = data.next().await {
                let Ok(chunk) = chunk else { return };
                if w.lock().await.stdin(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = w.lock().await.eof().await;
        });
    }
    // The state remembers whether output went out: the exit frame then
    // waits for it to leave first (see `EXIT_FRAME_PAUSE`).
    let stream = futures_util::stream::unfold(Some((r, w, false)), |st| async move {
        let (mut r, w, sent_output) = st?;
        loop {
            let out = match r.next().await {
                Ok(Some(SessionEvent::Stdout(b))) => prefixed(wire::STDOUT, &b),
                Ok(Some(SessionEvent::Stderr(b))) => prefixed(wire::STDERR, &b),
                Ok(Some(SessionEvent::Exit(code))) => {
                    return Some((
                        Ok::<_, std::io::Error>(
                            exit_frame(wire::exit_byte(code), sent_output).await,
                        ),
                        None,
                    ))
                }
                // No place for port events here; an agent's failure is
                // followed by its hang-up.
                Ok(Some(
                    SessionEvent::PortOpened(_)
                    | SessionEvent::PortClosed(_)
                    | SessionEvent::Failed(_),
                )) => continue,
                Ok(None) => {
                    // The sprite stopped under the command: killed.
                    return Some((
                        Ok(exit_frame(wire::exit_byte(KILLED_EXIT), sent_output).await),
                        None,
                    ));
                }
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
            };
            return Some((Ok(out), Some((r, w, true))));
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// How long the HTTP exec's exit frame waits after the last output frame.
///
/// The frames carry no length: a client splits them at HTTP chunk
/// boundaries, and the official JS SDK takes each read of `fetch`'s body as
/// one frame. `fetch` joins whatever arrived before it was read, so an exit
/// frame written right behind the output (one `writev`, one TCP segment)
/// reaches it glued to the output and the exit code is lost. Waiting makes
/// hyper flush the output on its own, and gives a client that is waiting on
/// its read the time to take it before the exit frame arrives. On loopback,
/// 1,000 `echo` calls of the SDK lost 610 exit codes without the pause, 69
/// with a mere flush, 1 or 2 with 10 to 25 ms on a loaded 2-core machine (a
/// client not scheduled for that long still reads both at once: only a
/// client that splits at chunk boundaries is safe). It costs one pause per
/// command that printed something.
const EXIT_FRAME_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// The exit frame, sent apart from the output before it (see
/// `EXIT_FRAME_PAUSE`).
async fn exit_frame(code: u8, after_output: bool) -> Bytes {
    if after_output {
        tokio::time::sleep(EXIT_FRAME_PAUSE).await;
    }
    prefixed(wire::EXIT, &[code])
}

#[derive(Debug, Default, Deserialize)]
pub struct KillBody {
    signal: Option<String>,
    timeout: Option<serde_json::Value>,
}

/// `POST /v1/sprites/{name}/exec/{id}/kill`: NDJSON progress events.
pub async fn kill(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    OptionalJsonBody(b): OptionalJsonBody<KillBody>,
) -> Result<Response, ApiError> {
    let rec = state.manager.get(&name)?;
    let id = session_id(&id)?;
    let q = Query::parse(raw.as_deref());
    let signal = wire::signal_name(
        q.get("signal")
            .map(String::from)
            .or(b.signal)
            .as_deref()
            .unwrap_or("SIGTERM"),
    );
    let timeout = match (q.duration("timeout")?, b.timeout) {
        (Some(d), _) => d,
        (None, None) => std::time::Duration::from_secs(10),
        (None, Some(serde_json::Value::Number(n))) => {
            std::time::Duration::from_secs_f64(n.as_f64().unwrap_or(10.0).clamp(0.0, 3600.0))
        }
        (None, Some(serde_json::Value::String(s))) => parse_duration(&s)
            .ok_or_else(|| ApiError::BadRequest(format!("timeout {s:?} is not a duration")))?,
        (None, Some(v)) => {
            return Err(ApiError::BadRequest(format!(
                "timeout {v} is not a duration"
            )))
        }
    };
    let progress = state
        .manager
        .kill(&rec, id, signal, timeout.as_millis() as u64)
        .await?;
    let stream = futures_util::stream::unfold(progress, |mut progress| async move {
        let line = kill_event(progress.next().await?);
        Some((Ok::<_, std::io::Error>(line), progress))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn kill_event(event: KillEvent) -> Bytes {
    let mut ev = StreamEvent {
        kind: String::new(),
        data: None,
        error: None,
        exit_code: None,
        message: None,
        time: Some(now_rfc3339()),
    };
    match event {
        KillEvent::Signal(signal) => {
            ev.kind = "signal".into();
            ev.message = Some(format!("sent {signal}"));
            ev.data = Some(serde_json::Value::String(signal));
        }
        KillEvent::Exited(exit_code) => {
            ev.kind = "exited".into();
            ev.exit_code = Some(exit_code);
        }
        KillEvent::Killed => {
            ev.kind = "killed".into();
            ev.message = Some("did not exit in time; sent SIGKILL".into());
        }
        KillEvent::Complete(exit_code) => {
            ev.kind = "complete".into();
            ev.exit_code = Some(exit_code);
        }
        KillEvent::Failed(message) => {
            ev.kind = "error".into();
            ev.error = Some(message.clone());
            ev.message = Some(message);
        }
        KillEvent::Other(reply) => {
            ev.kind = "info".into();
            ev.data = Some(reply);
        }
    }
    let mut line = serde_json::to_vec(&ev).unwrap_or_default();
    line.push(b'\n');
    line.into()
}
