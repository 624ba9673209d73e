//! `GET /v1/sprites/{name}/control` (WebSocket): the SDKs' control mode.
//! One connection carries many operations, one after another, so a client
//! that runs many short commands pays for one handshake instead of one per
//! command. The official SDKs keep a pool of these per sprite.
//!
//! The protocol, as the SDKs speak it:
//! - The client starts an operation with a text frame
//!   `control:{"type":"op.start","op":OP,"args":{...}}`. `args` holds the
//!   query parameters of the matching plain endpoint (strings, or lists of
//!   strings for repeated ones); the Go SDK's filesystem calls send the same
//!   envelope without the `control:` prefix and `args` as one URL-encoded
//!   string. Either form is answered in kind.
//! - `exec`: then the frames of the exec WebSocket exactly (`session_info`,
//!   stdout/stderr/exit, port events; stdin, resize, signal from the
//!   client), and after the exit frame `op.complete` with `{"exitCode":N}`.
//!   `args.id` re-attaches to a session instead of starting one.
//! - `fs.read`, `fs.write`, `fs.list`, `fs.stat`, `fs.delete`, `fs.mkdir`,
//!   `fs.rename`, `fs.copy`, `fs.chmod`, `fs.chown`: one JSON answer (for a
//!   read followed by the bytes in one binary frame; a write takes its bytes
//!   in one binary frame right after `op.start`), then `op.complete`.
//!   Reads take byte ranges (`start`, `end` exclusive); every call takes
//!   `workingDir`, `asRoot` and `user`. A failure is the filesystem API's
//!   `{error, code, path}` (plain envelope, as the Go SDK reads it) or
//!   `op.error` carrying the same fields.
//! - `proxy` (the Go SDK's `{"type":"start","operation":"proxy",
//!   "params":{host,port}}`, or `op.start` with `op:"proxy"`): a TCP
//!   connection to a port in the sprite, answered `{"status":"connected",
//!   "target":...}`, then raw bytes in binary frames both ways until the
//!   client sends `{"type":"release"}` (the connection goes back to idle) or
//!   the sprite's side closes (the WebSocket closes, since a plain client has
//!   no other way to learn it).
//! - Between operations `{"type":"release"}` and other stray frames are
//!   ignored; an idle connection closes after [`IDLE_TIMEOUT`]. An idle
//!   connection does not keep the sprite awake.
//! - When the daemon stops, every connection, idle or in an exec or a
//!   proxy, closes with 1001 (never cut: see [`super::ws::Sockets`]).
//!
//! Where the SDKs disagree the server takes both: the JS SDK sends resize
//! and signal messages as binary frames (recognised by their JSON shape).
//! The Go SDK (known by its `User-Agent`) is refused with 404 and falls
//! back to the plain endpoints: see [`GO_REFUSED`].

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sprites_api::exec::{self as wire, TextMessage};
use sprites_api::fs::{
    self as fswire, ByteRange, FsCall, FsErrorBody, FsReply, MkdirParents, PathBytes,
};
use sprites_api::port::{loopback_target, ProxyConnected};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exec::{self, ToClient};
use super::fs::{self, FsApiError, FsQuery};
use super::query::Query;
use super::ws::Stopping;
use crate::agent_conn::fs::FsEvent;
use crate::error::ApiError;
use crate::AppState;

const PREFIX: &str = "control:";

/// How long a connection may sit with no operation before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The largest file `fs.read` and `fs.write` carry (one WebSocket message
/// each); larger files go through `fs/read` and `fs/write`, which stream.
const MAX_FILE: usize = 16 << 20;

/// The most entries `fs.list` gathers into its one answer.
const MAX_ENTRIES: usize = 100_000;

/// How long a write's bytes may take to follow its `op.start`.
const DATA_TIMEOUT: Duration = Duration::from_secs(60);

const PROXY_CHUNK: usize = 64 << 10;

pub async fn control(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    super::ws::Upgrade(ws): super::ws::Upgrade,
) -> Result<Response, ApiError> {
    let rec = state.manager.get(&name)?;
    if headers
        .get(header::USER_AGENT)
        .is_some_and(|ua| ua.as_bytes().starts_with(GO_SDK))
    {
        return Err(ApiError::NotFound(GO_REFUSED.into()));
    }
    let sockets = state.sockets.clone();
    Ok(sockets.serve(
        ws.max_message_size(MAX_FILE + (1 << 20)),
        move |socket, stopping| serve(state, rec.name, socket, stopping),
    ))
}

/// The Go SDK's `User-Agent` prefix.
const GO_SDK: &[u8] = b"sprites-go-sdk";

/// Why the Go SDK is sent to the plain endpoints: its pool keeps a reader
/// goroutine on every control connection while its pooled port forward
/// and its `Fs*Control` calls read the same connection themselves, so
/// their answers are taken from under them and they hang; and its exec
/// closes the connection after each command, so control mode would save
/// it nothing. On a refusal it uses the plain endpoints, which serve it
/// fully.
const GO_REFUSED: &str = "the control WebSocket is not served to sprites-go: its pooled \
     connections are read by two goroutines at once (port forwards and Fs*Control calls \
     hang), so it uses the plain endpoints";

/// How an operation was asked for, and so how it is answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Envelope {
    /// `control:{...}` (JS, Python, Go's exec).
    Prefixed,
    /// Bare JSON (Go's filesystem calls and pooled proxy).
    Plain,
}

/// The client went away: the connection is over.
struct Gone;

type Flow = Result<(), Gone>;

struct Conn {
    ws: WebSocket,
    stopping: Stopping,
}

impl Conn {
    async fn send(&mut self, m: Message) -> Flow {
        self.ws.send(m).await.map_err(|_| Gone)
    }

    async fn send_json(&mut self, v: &impl serde::Serialize) -> Flow {
        let text = serde_json::to_string(v).unwrap_or_default();
        self.send(Message::Text(text.into())).await
    }

    /// An envelope message: `op.complete`, `op.error`.
    async fn control(&mut self, env: Envelope, kind: &str, args: Value) -> Flow {
        let body = json!({ "type": kind, "args": args }).to_string();
        let text = match env {
            Envelope::Prefixed => format!("{PREFIX}{body}"),
            Envelope::Plain => body,
        };
        self.send(Message::Text(text.into())).await
    }

    /// The daemon is stopping: say so (1001), and end.
    async fn going_away(&mut self) -> Flow {
        let _ = self.send(super::ws::stopping_close()).await;
        Err(Gone)
    }

    async fn close(&mut self, code: u16, reason: &str) -> Flow {
        let frame = CloseFrame {
            code,
            reason: reason.chars().take(120).collect::<String>().into(),
        };
        let _ = self.send(Message::Close(Some(frame))).await;
        Err(Gone)
    }
}

async fn serve(state: AppState, name: String, ws: WebSocket, stopping: Stopping) {
    let mut conn = Conn { ws, stopping };
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout(IDLE_TIMEOUT, conn.ws.recv()) => m,
            () = conn.stopping.wait() => {
                let _ = conn.going_away().await;
                break;
            }
        };
        let msg = match msg {
            Err(_) => {
                let _ = conn.close(1000, "idle").await;
                break;
            }
            Ok(Some(Ok(m))) => m,
            Ok(_) => return,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            // Binary frames between operations are leftovers of one that
            // ended (a stdin EOF after the command exited).
            _ => continue,
        };
        let Some((env, start)) = parse_start(text.as_str()) else {
            continue;
        };
        let flow = match start {
            Start::Op { op, args } => run_op(&state, &name, &mut conn, env, &op, &args).await,
            Start::Bad(why) => conn.control(env, "op.error", json!({ "error": why })).await,
        };
        if flow.is_err() {
            break;
        }
    }
    // Answer the client's Close (or finish ours, and read up to theirs): a
    // client that gets no Close back reports an abnormal closure, which
    // the JS SDK throws as an uncaught error.
    let _ = tokio::time::timeout(Duration::from_secs(2), SinkExt::close(&mut conn.ws)).await;
    super::ws::await_close(&mut conn.ws).await;
}

enum Start {
    Op { op: String, args: Value },
    Bad(String),
}

/// An operation's start, or `None` for a frame to ignore (`release`,
/// `keepalive`, stray frames of an operation that ended).
fn parse_start(text: &str) -> Option<(Envelope, Start)> {
    let (env, body) = match text.strip_prefix(PREFIX) {
        Some(body) => (Envelope::Prefixed, body),
        None => (Envelope::Plain, text),
    };
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) if env == Envelope::Prefixed => {
            return Some((env, Start::Bad(format!("not a JSON control message: {e}"))))
        }
        Err(_) => return None,
    };
    let start = match v["type"].as_str() {
        Some("op.start") => match v["op"].as_str() {
            Some(op) => Start::Op {
                op: op.to_string(),
                args: v["args"].clone(),
            },
            None => Start::Bad("op.start needs \"op\"".into()),
        },
        // The Go SDK's pooled proxy.
        Some("start") => Start::Op {
            op: v["operation"].as_str().unwrap_or_default().to_string(),
            args: v["params"].clone(),
        },
        _ => return None,
    };
    Some((env, start))
}

/// `args` as the query string of the matching plain endpoint.
fn args_query(args: &Value) -> Result<String, String> {
    fn scalar(v: &Value) -> Result<Option<String>, String> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            Value::Number(n) => Ok(Some(n.to_string())),
            other => Err(format!("{other} is not a string, number or boolean")),
        }
    }
    let map = match args {
        Value::Null => return Ok(String::new()),
        // Already a query string (the Go SDK's filesystem calls).
        Value::String(s) => return Ok(s.clone()),
        Value::Object(map) => map,
        other => return Err(format!("args must be an object, not {other}")),
    };
    let mut pairs = Vec::new();
    for (key, value) in map {
        let values = match value {
            Value::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>, _>>(),
            v => scalar(v).map(|s| vec![s]),
        }
        .map_err(|e| format!("args.{key}: {e}"))?;
        for v in values.into_iter().flatten() {
            pairs.push(format!(
                "{}={}",
                fswire::percent_encode(key.as_bytes()),
                fswire::percent_encode(v.as_bytes())
            ));
        }
    }
    Ok(pairs.join("&"))
}

async fn run_op(
    state: &AppState,
    name: &str,
    conn: &mut Conn,
    env: Envelope,
    op: &str,
    args: &Value,
) -> Flow {
    let raw = match args_query(args) {
        Ok(raw) => raw,
        Err(e) => return conn.control(env, "op.error", json!({ "error": e })).await,
    };
    let kind = match op {
        "exec" | "proxy" => op,
        op if op.starts_with("fs.") => "fs",
        _ => "unknown",
    };
    state.manager.metrics.control_op(kind);
    match op {
        "exec" => exec_op(state, name, conn, env, &raw).await,
        "proxy" => proxy_op(state, name, conn, env, &raw).await,
        op if op.starts_with("fs.") => match fs_op(state, name, conn, op, &raw).await {
            Ok(Some(answer)) => {
                conn.send_json(&answer).await?;
                conn.control(env, "op.complete", json!({})).await
            }
            // A read: its answer and bytes are out.
            Ok(None) => conn.control(env, "op.complete", json!({})).await,
            Err(OpFailed::Gone) => Err(Gone),
            Err(OpFailed::Fs(e)) => {
                let body = fs_error_body(e);
                match env {
                    // What the Go SDK reads: the error in place of the answer.
                    Envelope::Plain => conn.send_json(&body).await,
                    Envelope::Prefixed => {
                        let args = serde_json::to_value(&body).unwrap_or_default();
                        conn.control(env, "op.error", args).await
                    }
                }
            }
        },
        other => {
            let why = format!("unknown operation {other:?}");
            conn.control(env, "op.error", json!({ "error": why })).await
        }
    }
}

// ---- exec ----

async fn exec_op(state: &AppState, name: &str, conn: &mut Conn, env: Envelope, raw: &str) -> Flow {
    let q = Query::parse(Some(raw));
    let started = async {
        let rec = state.manager.get(name)?;
        match q.get("id").filter(|id| !id.is_empty()) {
            Some(id) => {
                let id = exec::session_id(id)?;
                Ok::<_, ApiError>(state.manager.attach(&rec, id).await?)
            }
            None => {
                let req = exec::exec_request(&q, &rec, state)?;
                exec::start(state, &rec, req).await
            }
        }
    }
    .await;
    let session = match started {
        Ok(s) => s,
        Err(e) => return exec_failed(conn, env, &e.to_string()).await,
    };
    let crate::agent_conn::exec::ExecSession {
        start,
        events: mut r,
        input: mut w,
    } = session;
    let tty = start.tty;
    if let Some(text) = exec::session_info_text(start) {
        conn.send(Message::Text(text.into())).await?;
    }
    let ended: Option<Result<Result<i32, String>, Gone>> = {
        let stopping = &mut conn.stopping;
        let (mut tx, mut rx) = (&mut conn.ws).split();
        // Output until the command ends; input beside it until then. The
        // client starts its next operation only after `op.complete`, so
        // nothing of it is read here.
        let to_client = async {
            loop {
                match exec::to_client(r.next().await, tty) {
                    ToClient::Frame(m) => tx.send(m).await.map_err(|_| Gone)?,
                    ToClient::Exit { code, frame, .. } => {
                        tx.send(frame).await.map_err(|_| Gone)?;
                        return Ok(Ok(code));
                    }
                    ToClient::Failed(message) => return Ok(Err(message)),
                }
            }
        };
        let from_client = async {
            let mut agent_open = true;
            while let Some(Ok(msg)) = rx.next().await {
                let sent = match input(msg, tty) {
                    Input::Close => break,
                    _ if !agent_open => Ok(()),
                    Input::Stdin(b) => w.stdin(&b).await,
                    Input::Eof => w.eof().await,
                    Input::Resize(cols, rows) => w.resize(cols, rows).await,
                    Input::Signal(s) => w.signal(wire::signal_name(&s)).await,
                    Input::Nothing => Ok(()),
                };
                agent_open = sent.is_ok();
            }
        };
        tokio::select! {
            ended = to_client => Some(ended),
            // The client left: the session stays in the sprite, detached.
            _ = from_client => Some(Err(Gone)),
            () = stopping.wait() => None,
        }
    };
    let Some(ended) = ended else {
        return conn.going_away().await;
    };
    match ended? {
        Ok(code) => {
            conn.control(env, "op.complete", json!({ "exitCode": code }))
                .await
        }
        Err(message) => exec_failed(conn, env, &message).await,
    }
}

/// An exec that could not start or broke: `op.error`.
async fn exec_failed(conn: &mut Conn, env: Envelope, message: &str) -> Flow {
    conn.control(env, "op.error", json!({ "error": message }))
        .await
}

enum Input {
    Stdin(Bytes),
    Eof,
    Resize(u16, u16),
    Signal(String),
    Close,
    Nothing,
}

/// A client frame during an exec.
fn input(msg: Message, tty: bool) -> Input {
    match msg {
        Message::Text(t) => json_input(t.as_bytes()).unwrap_or(Input::Nothing),
        Message::Binary(b) => {
            // The JS SDK sends resize and signal as binary JSON.
            if b.first() == Some(&b'{') {
                if let Some(i) = json_input(&b) {
                    return i;
                }
            }
            if tty {
                return Input::Stdin(b);
            }
            match b.first() {
                Some(&wire::STDIN) => Input::Stdin(b.slice(1..)),
                Some(&wire::STDIN_EOF) => Input::Eof,
                _ => Input::Nothing,
            }
        }
        Message::Close(_) => Input::Close,
        Message::Ping(_) | Message::Pong(_) => Input::Nothing,
    }
}

fn json_input(bytes: &[u8]) -> Option<Input> {
    match serde_json::from_slice::<TextMessage>(bytes).ok()? {
        TextMessage::Resize { cols, rows } => Some(Input::Resize(cols, rows)),
        TextMessage::Signal { signal } => Some(Input::Signal(signal)),
        _ => None,
    }
}

// ---- filesystem ----

enum OpFailed {
    Fs(FsApiError),
    Gone,
}

impl<E: Into<FsApiError>> From<E> for OpFailed {
    fn from(e: E) -> Self {
        OpFailed::Fs(e.into())
    }
}

fn fs_error_body(e: FsApiError) -> FsErrorBody {
    match e {
        FsApiError::Fs { body, .. } => body,
        FsApiError::Api(e) => FsErrorBody {
            error: e.to_string(),
            code: e.code().to_string(),
            path: String::new(),
            path_base64: None,
        },
    }
}

fn reply_error(reply: FsReply) -> OpFailed {
    match reply {
        FsReply::Error {
            code,
            message,
            path,
        } => OpFailed::Fs(fs::fs_error(code, message, path)),
        other => OpFailed::Fs(fs::unexpected(&other)),
    }
}

/// Run a filesystem operation; its JSON answer, or `None` when it sent
/// its answer itself (a read).
async fn fs_op(
    state: &AppState,
    name: &str,
    conn: &mut Conn,
    op: &str,
    raw: &str,
) -> Result<Option<Value>, OpFailed> {
    let q = FsQuery::new(Some(raw.to_string()));
    let run_as = q.run_as()?;
    let wd = q.working_dir();
    let call = match op {
        "fs.read" => return read(state, name, conn, &q).await.map(|()| None),
        "fs.write" => return write(state, name, conn, &q).await.map(Some),
        "fs.list" => FsCall::List {
            path: q.path("path").unwrap_or_default(),
            recursive: q.flag("recursive")?.unwrap_or(false),
            pattern: q.q.get("pattern").map(String::from),
        },
        "fs.stat" => FsCall::Stat {
            path: q.required_path("path")?,
        },
        "fs.delete" => FsCall::Delete {
            path: q.required_path("path")?,
            recursive: q.flag("recursive")?.unwrap_or(false),
        },
        "fs.mkdir" => FsCall::Mkdir {
            path: q.required_path("path")?,
            mode: optional_mode(&q)?,
            parents: q.flag("parents")?.unwrap_or(false),
        },
        "fs.rename" => FsCall::Rename {
            source: q.required_path("source")?,
            dest: q.required_path("dest")?,
        },
        "fs.copy" => FsCall::Copy {
            source: q.required_path("source")?,
            dest: q.required_path("dest")?,
            recursive: q.flag("recursive")?.unwrap_or(false),
            preserve_attrs: q.flag("preserveAttrs")?.unwrap_or(false),
        },
        "fs.chmod" => FsCall::Chmod {
            path: q.required_path("path")?,
            mode: optional_mode(&q)?.ok_or_else(|| fs::invalid("chmod needs mode"))?,
            recursive: q.flag("recursive")?.unwrap_or(false),
        },
        "fs.chown" => {
            let owner = |key: &str| q.q.get(key).filter(|v| !v.trim().is_empty());
            let (uid, gid) = (owner("uid"), owner("gid"));
            if uid.is_none() && gid.is_none() {
                return Err(fs::invalid("chown needs uid or gid").into());
            }
            FsCall::Chown {
                path: q.required_path("path")?,
                uid: uid.map(|s| s.trim().to_string()),
                gid: gid.map(|s| s.trim().to_string()),
                recursive: q.flag("recursive")?.unwrap_or(false),
            }
        }
        other => return Err(fs::invalid(format!("unknown filesystem operation {other:?}")).into()),
    };
    let mut session = fs::start(state, name, &run_as, wd, call.clone()).await?;
    let first = fs::first_reply(&mut session).await?;
    // Listings come in batches up to `done`.
    let mut items: Vec<Value> = Vec::new();
    let mut reply = first;
    let done = loop {
        match reply {
            FsReply::Done { .. } => break reply,
            FsReply::Entries { entries } => {
                items.extend(entries.iter().filter_map(|e| serde_json::to_value(e).ok()))
            }
            FsReply::Deleted { paths } => items.extend(paths.iter().map(|p| json!(p.lossy()))),
            other => return Err(reply_error(other)),
        }
        if items.len() > MAX_ENTRIES {
            return Err(fs::invalid(format!(
                "more than {MAX_ENTRIES} entries: use the fs/list endpoint, which streams"
            ))
            .into());
        }
        if matches!(call, FsCall::Stat { .. }) {
            // A stat's answer is its one entry.
            return items
                .pop()
                .map(Some)
                .ok_or_else(|| fs::unexpected(&FsReply::Entries { entries: vec![] }).into());
        }
        reply = match session.next().await? {
            Some(FsEvent::Reply(r)) => r,
            Some(FsEvent::Data(_)) | None => {
                return Err(fs::unexpected(&FsReply::Entries { entries: vec![] }).into())
            }
        };
    };
    let FsReply::Done {
        path, dest, count, ..
    } = done
    else {
        return Err(reply_error(done));
    };
    let path_text = path.lossy();
    let dest_text = dest.as_ref().map(PathBytes::lossy);
    Ok(Some(match call {
        FsCall::List { .. } => json!({ "path": path_text, "entries": items, "count": count }),
        FsCall::Delete { .. } => json!({ "deleted": items, "count": count }),
        FsCall::Rename { .. } => json!({ "source": path_text, "dest": dest_text, "count": count }),
        FsCall::Copy { .. } => json!({
            "source": path_text,
            "dest": dest_text,
            "copied": [{ "source": path_text, "dest": dest_text }],
            "count": count,
        }),
        FsCall::Chmod { mode, .. } => {
            let mode = fswire::format_mode(mode);
            json!({
                "path": path_text,
                "mode": mode,
                "affected": [{ "path": path_text, "mode": mode }],
                "count": count,
            })
        }
        FsCall::Chown { uid, gid, .. } => {
            // Ids as numbers where they were given as numbers (the Go SDK's
            // `FsChownEntry`), names as given.
            let id = |v: &Option<String>| match v.as_deref().map(str::parse::<u32>) {
                Some(Ok(n)) => json!(n),
                _ => json!(v),
            };
            json!({
                "path": path_text,
                "affected": [{ "path": path_text, "uid": id(&uid), "gid": id(&gid) }],
                "count": count,
            })
        }
        _ => json!({ "path": path_text, "count": count }),
    }))
}

fn optional_mode(q: &FsQuery) -> Result<Option<u32>, FsApiError> {
    match q.q.get("mode").filter(|m| !m.is_empty()) {
        None => Ok(None),
        Some(m) => fswire::parse_mode(m).map(Some).map_err(fs::invalid),
    }
}

/// `fs.read`: `{path, size, mode}`, then the bytes (of the range asked
/// for) in one binary frame.
async fn read(state: &AppState, name: &str, conn: &mut Conn, q: &FsQuery) -> Result<(), OpFailed> {
    let path = q.required_path("path")?;
    let number = |key: &str| q.q.number::<u64>(key, 0..=u64::MAX);
    let (start, end) = (number("start")?, number("end")?.filter(|e| *e > 0));
    let range = (start.unwrap_or(0) > 0 || end.is_some()).then(|| ByteRange {
        start: start.unwrap_or(0),
        end,
    });
    let mut session = fs::start(
        state,
        name,
        &q.run_as()?,
        q.working_dir(),
        FsCall::Read { path, range },
    )
    .await?;
    let (path, size, mode) = match fs::first_reply(&mut session).await? {
        FsReply::Opened { path, size, mode } => (path, size, mode),
        other => return Err(reply_error(other)),
    };
    let too_big = || {
        fs::fs_error(
            "EFBIG".into(),
            format!(
                "over {} MiB: read it with the fs/read endpoint, which streams",
                MAX_FILE >> 20
            ),
            path.clone(),
        )
    };
    if size.is_some_and(|s| s > MAX_FILE as u64) {
        return Err(OpFailed::Fs(too_big()));
    }
    let mut data = Vec::with_capacity(size.unwrap_or(0) as usize);
    loop {
        match session.next().await? {
            Some(FsEvent::Data(b)) => {
                if data.len() + b.len() > MAX_FILE {
                    return Err(OpFailed::Fs(too_big()));
                }
                data.extend_from_slice(&b);
            }
            Some(FsEvent::Reply(FsReply::Done { .. })) => break,
            Some(FsEvent::Reply(other)) => return Err(reply_error(other)),
            None => {
                return Err(OpFailed::Fs(
                    ApiError::Unavailable("the sprite ended the file early".into()).into(),
                ))
            }
        }
    }
    let answer = json!({
        "path": path.lossy(),
        "size": data.len(),
        "mode": fswire::format_mode(mode),
    });
    conn.send_json(&answer).await.map_err(|_| OpFailed::Gone)?;
    conn.send(Message::Binary(data.into()))
        .await
        .map_err(|_| OpFailed::Gone)
}

/// `fs.write`: the bytes follow `op.start` in one binary frame; answered
/// `{path, size, mode}` once the file is in place.
async fn write(
    state: &AppState,
    name: &str,
    conn: &mut Conn,
    q: &FsQuery,
) -> Result<Value, OpFailed> {
    // Take the bytes first, whatever happens next: left unread they would
    // be taken for the next operation's.
    let data = loop {
        match tokio::time::timeout(DATA_TIMEOUT, conn.ws.recv()).await {
            Ok(Some(Ok(Message::Binary(b)))) => break b,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Text(_)))) => {
                return Err(
                    fs::invalid("fs.write: expected the file's bytes in a binary frame").into(),
                )
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => {
                return Err(OpFailed::Gone)
            }
            Err(_) => return Err(fs::invalid("fs.write: the file's bytes never came").into()),
        }
    };
    let path = q.required_path("path")?;
    let mkdir_parents = match q.flag("mkdirParents")? {
        Some(false) => MkdirParents::Last,
        _ => MkdirParents::All,
    };
    let call = FsCall::Write {
        path,
        mode: optional_mode(q)?,
        mkdir_parents,
    };
    let mut session = fs::start(state, name, &q.run_as()?, q.working_dir(), call).await?;
    match fs::first_reply(&mut session).await? {
        FsReply::Opened { .. } => {}
        other => return Err(reply_error(other)),
    }
    let (mut replies, mut w) = session.split();
    let upload = async {
        for chunk in data.chunks(fs::UPLOAD_FRAME) {
            w.data(chunk).await?;
        }
        w.end().await
    };
    // The agent's answer is read beside the upload: it may refuse (a full
    // disk) before taking every byte.
    let (sent, outcome) = tokio::join!(upload, replies.outcome());
    drop(w);
    match outcome? {
        FsReply::Done {
            path, size, mode, ..
        } => Ok(json!({
            "path": path.lossy(),
            "size": size,
            "mode": fswire::format_mode(mode),
        })),
        other => {
            sent?;
            Err(reply_error(other))
        }
    }
}

// ---- proxy ----

async fn proxy_op(state: &AppState, name: &str, conn: &mut Conn, env: Envelope, raw: &str) -> Flow {
    let q = Query::parse(Some(raw));
    let host = q
        .get("host")
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    let dialed = async {
        let port = q
            .number::<u16>("port", 1..=u16::MAX)?
            .ok_or_else(|| ApiError::BadRequest("proxy needs port".into()))?;
        if loopback_target(host).is_none() {
            return Err(ApiError::BadRequest(format!(
                "{host}:{port} is not in this sprite (use localhost)"
            )));
        }
        let rec = state.manager.get(name)?;
        let activity = state.manager.activity(&rec.id);
        let stream = state
            .manager
            .dial(&rec, host, port)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok((stream, activity, port))
    }
    .await;
    let (stream, _activity, port) = match dialed {
        Ok(d) => d,
        Err(e) => {
            return match env {
                // What the Go SDK's handshake reads.
                Envelope::Plain => {
                    conn.send_json(&json!({ "status": "error", "error": e.to_string() }))
                        .await
                }
                Envelope::Prefixed => {
                    conn.control(env, "op.error", json!({ "error": e.to_string() }))
                        .await
                }
            };
        }
    };
    conn.send_json(&ProxyConnected {
        status: "connected".into(),
        target: format!("{host}:{port}"),
    })
    .await?;
    enum End {
        Released,
        SpriteClosed,
        Gone,
        Stopping,
    }
    let (mut tcp_r, mut tcp_w) = tokio::io::split(stream);
    let end = {
        let stopping = &mut conn.stopping;
        let (mut tx, mut rx) = (&mut conn.ws).split();
        let upstream = async {
            while let Some(Ok(m)) = rx.next().await {
                match m {
                    // The sprite's side is gone: the downstream half reports it.
                    Message::Binary(b) if tcp_w.write_all(&b).await.is_err() => {
                        std::future::pending::<()>().await
                    }
                    Message::Text(t) => {
                        let t = t.as_str();
                        let body = t.strip_prefix(PREFIX).unwrap_or(t);
                        if serde_json::from_str::<Value>(body)
                            .is_ok_and(|v| v["type"] == "release" || v["type"] == "op.end")
                        {
                            return End::Released;
                        }
                    }
                    Message::Close(_) => return End::Gone,
                    _ => {}
                }
            }
            End::Gone
        };
        let downstream = async {
            let mut buf = vec![0u8; PROXY_CHUNK];
            loop {
                match tcp_r.read(&mut buf).await {
                    Ok(0) | Err(_) => return End::SpriteClosed,
                    Ok(n) => {
                        let chunk = Bytes::copy_from_slice(&buf[..n]);
                        if tx.send(Message::Binary(chunk)).await.is_err() {
                            return End::Gone;
                        }
                    }
                }
            }
        };
        tokio::select! {
            e = upstream => e,
            e = downstream => e,
            () = stopping.wait() => End::Stopping,
        }
    };
    match (end, env) {
        (End::Gone, _) => Err(Gone),
        (End::Stopping, _) => conn.going_away().await,
        (End::Released, Envelope::Plain) => Ok(()),
        (End::Released, Envelope::Prefixed) => conn.control(env, "op.complete", json!({})).await,
        // A plain client learns the end only from the close.
        (End::SpriteClosed, Envelope::Plain) => conn.close(1000, "connection closed").await,
        (End::SpriteClosed, Envelope::Prefixed) => {
            conn.control(env, "op.complete", json!({})).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_recognised_in_both_envelopes() {
        let (env, start) = parse_start(
            r#"control:{"type":"op.start","op":"exec","args":{"cmd":["echo","hi"],"tty":"true"}}"#,
        )
        .expect("a start");
        assert_eq!(env, Envelope::Prefixed);
        let Start::Op { op, args } = start else {
            panic!("not an op")
        };
        assert_eq!(op, "exec");
        assert_eq!(
            args_query(&args).expect("query"),
            "cmd=echo&cmd=hi&tty=true"
        );
        let (env, start) =
            parse_start(r#"{"type":"op.start","op":"fs.read","args":"path=%2Fa+b&start=3"}"#)
                .expect("a start");
        assert_eq!(env, Envelope::Plain);
        let Start::Op { op, args } = start else {
            panic!("not an op")
        };
        assert_eq!(op, "fs.read");
        assert_eq!(args_query(&args).expect("query"), "path=%2Fa+b&start=3");
        let (_, start) = parse_start(
            r#"{"type":"start","operation":"proxy","params":{"host":"localhost","port":80,"keep_alive":true}}"#,
        )
        .expect("a proxy start");
        let Start::Op { op, args } = start else {
            panic!("not an op")
        };
        assert_eq!(op, "proxy");
        let q = Query::parse(Some(&args_query(&args).expect("query")));
        assert_eq!(
            (q.get("host"), q.get("port"), q.get("keep_alive")),
            (Some("localhost"), Some("80"), Some("true"))
        );
    }

    #[test]
    fn other_frames_are_ignored_or_refused() {
        assert!(parse_start(r#"{"type":"release"}"#).is_none());
        assert!(parse_start(r#"{"type":"resize","cols":80,"rows":24}"#).is_none());
        assert!(parse_start("hello").is_none());
        assert!(matches!(
            parse_start("control:{nope"),
            Some((Envelope::Prefixed, Start::Bad(_)))
        ));
        assert!(matches!(
            parse_start(r#"control:{"type":"op.start"}"#),
            Some((_, Start::Bad(_)))
        ));
        assert!(args_query(&json!({"cmd": [{"a": 1}]})).is_err());
        assert!(args_query(&json!([1])).is_err());
        assert_eq!(
            args_query(&json!({"env": ["A=1 2", "B=&"], "x": null})).expect("q"),
            "env=A%3D1%202&env=B%3D%26"
        );
    }

    #[test]
    fn stdin_framing() {
        let bin = |b: &[u8]| Message::Binary(Bytes::copy_from_slice(b));
        assert!(matches!(input(bin(b"\x00hi"), false), Input::Stdin(b) if b.as_ref() == b"hi"));
        assert!(matches!(input(bin(b"\x04"), false), Input::Eof));
        assert!(matches!(input(bin(b"\x07?"), false), Input::Nothing));
        assert!(matches!(input(bin(b"\x04"), true), Input::Stdin(_)));
        // The JS SDK's resize and signal, as binary frames.
        assert!(matches!(
            input(bin(br#"{"type":"resize","cols":100,"rows":40}"#), true),
            Input::Resize(100, 40)
        ));
        assert!(matches!(
            input(bin(br#"{"type":"signal","signal":"INT"}"#), false),
            Input::Signal(s) if s == "INT"
        ));
        assert!(matches!(input(bin(b"{not json"), true), Input::Stdin(_)));
        assert!(matches!(
            input(
                Message::Text(r#"{"type":"resize","cols":1,"rows":2}"#.into()),
                false
            ),
            Input::Resize(1, 2)
        ));
    }
}

/// Issue 19's fuzzing: any frame a client sends on `/control` is read or
/// ignored, never a panic.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_frame_is_read_or_ignored(text in ".{0,256}", prefixed in any::<bool>()) {
            let text = if prefixed { format!("{PREFIX}{text}") } else { text };
            let _ = parse_start(&text);
        }

        #[test]
        fn any_start_with_any_args_is_read(op in ".{0,16}", args in ".{0,128}") {
            let frame = format!(r#"{{"type":"op.start","op":{},"args":{}}}"#, serde_json::json!(op), args);
            let _ = parse_start(&frame);
            if let Ok(v) = serde_json::from_str::<Value>(&args) {
                let _ = args_query(&v);
            }
        }

        #[test]
        fn any_exec_input_is_read_or_ignored(bytes in prop::collection::vec(any::<u8>(), 0..256), tty in any::<bool>()) {
            let _ = json_input(&bytes);
            let _ = input(Message::Binary(bytes.clone().into()), tty);
            if let Ok(t) = String::from_utf8(bytes) {
                let _ = input(Message::Text(t.into()), tty);
            }
        }
    }
}
