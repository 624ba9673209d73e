//! The filesystem API: `/v1/sprites/{name}/fs/...`.
//!
//! Every call is one agent connection (`Request::Fs`); the agent runs it in
//! the sprite as the caller's user (see `sprite-agent`'s `fs` module). The
//! daemon only relays: file bytes go through frame by frame with
//! backpressure both ways, so a transfer of any size holds about one frame
//! (≤ 1 MiB) per direction here, and listings are streamed as they arrive.
//! The daemon never looks at a sprite's files itself: every path is
//! resolved inside the sprite, where its root is the limit.
//!
//! Paths in query strings are raw bytes, percent-encoded; JSON bodies take
//! a string or `{"base64": ...}` (see `sprites_api::fs`). `fs/watch` is
//! a WebSocket ([`watch`]).

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use sprites_api::fs::{
    self as wire, ChangeResponse, ChmodRequest, ChownRequest, CopyRequest, FsCall, FsEntry,
    FsErrorBody, FsReply, FsRequest, MkdirParents, MkdirRequest, PathBytes, RenameRequest, RunAs,
    WriteResponse,
};

mod watch;
pub use watch::watch;

use super::query::Query;
use crate::agent_conn::fs::{FsEvent, FsSession};
use crate::agent_conn::AgentError;
use crate::error::ApiError;
use crate::AppState;

/// Upload bytes are gathered into frames of about this size before they go
/// to the agent (HTTP chunks are often small).
pub(super) const UPLOAD_FRAME: usize = 256 * 1024;

/// Extension header: the permission bits of a file read (`0644`).
pub const MODE_HEADER: &str = "x-sprite-file-mode";

/// A failed filesystem call.
#[derive(Debug)]
pub enum FsApiError {
    /// Not about a file: no such sprite, a malformed request, the agent.
    Api(ApiError),
    /// What the sprite said: `{error, code, path}`.
    Fs {
        status: StatusCode,
        body: FsErrorBody,
    },
}

impl From<ApiError> for FsApiError {
    fn from(e: ApiError) -> Self {
        FsApiError::Api(e)
    }
}

impl From<crate::error::Error> for FsApiError {
    fn from(e: crate::error::Error) -> Self {
        FsApiError::Api(e.into())
    }
}

impl From<AgentError> for FsApiError {
    fn from(e: AgentError) -> Self {
        FsApiError::Api(e.into())
    }
}

impl IntoResponse for FsApiError {
    fn into_response(self) -> Response {
        match self {
            FsApiError::Api(e) => e.into_response(),
            FsApiError::Fs { status, body } => (status, Json(body)).into_response(),
        }
    }
}

type FsResult<T = Response> = Result<T, FsApiError>;

/// The HTTP status of an errno name.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "ENOENT" => StatusCode::NOT_FOUND,
        "EACCES" | "EPERM" | "EROFS" => StatusCode::FORBIDDEN,
        "EEXIST" | "ENOTEMPTY" | "EBUSY" | "ETXTBSY" => StatusCode::CONFLICT,
        "EISDIR" | "ENOTDIR" | "EINVAL" | "ENAMETOOLONG" | "ELOOP" | "EXDEV" | "bad_request" => {
            StatusCode::BAD_REQUEST
        }
        "EFBIG" => StatusCode::PAYLOAD_TOO_LARGE,
        "ENOSPC" | "EDQUOT" => StatusCode::INSUFFICIENT_STORAGE,
        "EAGAIN" | "EMFILE" | "ENFILE" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn fs_error(code: String, message: String, path: PathBytes) -> FsApiError {
    let status = status_of(&code);
    if status.is_server_error() {
        tracing::warn!(%code, %message, "filesystem call failed");
    }
    FsApiError::Fs {
        status,
        body: FsErrorBody {
            error: message,
            code,
            path: path.lossy(),
            path_base64: path.base64_if_not_utf8(),
        },
    }
}

/// A request the daemon refuses before asking the sprite.
fn invalid(message: impl Into<String>) -> FsApiError {
    fs_error("EINVAL".into(), message.into(), PathBytes::default())
}

/// The first reply: what the call's answer starts with, or its error.
pub(super) async fn first_reply(session: &mut FsSession) -> FsResult<FsReply> {
    match session.answer().await? {
        FsReply::Error {
            code,
            message,
            path,
        } => Err(fs_error(code, message, path)),
        reply => Ok(reply),
    }
}

/// Open the call on the sprite's agent (waking the sprite).
pub(super) async fn start(
    state: &AppState,
    name: &str,
    run_as: &RunAs,
    working_dir: Option<PathBytes>,
    call: FsCall,
) -> FsResult<FsSession> {
    let rec = state.manager.get(name)?;
    let req = FsRequest {
        user: run_as.user(),
        working_dir,
        call,
    };
    Ok(state.manager.fs(&rec, req).await?)
}

/// The query string of a call.
struct FsQuery {
    raw: String,
    q: Query,
}

impl FsQuery {
    fn new(raw: Option<String>) -> Self {
        let raw = raw.unwrap_or_default();
        let q = Query::parse(Some(&raw));
        FsQuery { raw, q }
    }

    /// A path parameter as raw bytes (the last one given).
    fn path(&self, key: &str) -> Option<PathBytes> {
        wire::query_values(&self.raw, key).pop().map(PathBytes)
    }

    fn required_path(&self, key: &str) -> FsResult<PathBytes> {
        self.path(key)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid(format!("the {key} query parameter is required")))
    }

    fn working_dir(&self) -> Option<PathBytes> {
        self.path("workingDir").filter(|p| !p.is_empty())
    }

    fn flag(&self, key: &str) -> FsResult<Option<bool>> {
        Ok(self.q.bool(key)?)
    }

    fn run_as(&self) -> FsResult<RunAs> {
        Ok(RunAs {
            user: self.q.get("user").map(String::from),
            as_root: self.flag("asRoot")?,
        })
    }
}

/// `GET fs/read?path=&workingDir=`: the file's bytes, streamed.
pub async fn read(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> FsResult {
    let q = FsQuery::new(raw);
    let path = q.required_path("path")?;
    let mut session = start(
        &state,
        &name,
        &q.run_as()?,
        q.working_dir(),
        FsCall::Read { path },
    )
    .await?;
    let (size, mode) = match first_reply(&mut session).await? {
        FsReply::Opened { size, mode, .. } => (size, mode),
        other => return Err(unexpected(&other)),
    };
    // The session stays open until the stream ends: closing it would tell
    // the agent the client left.
    let stream = futures_util::stream::unfold(Some(session), |st| async move {
        let mut session = st?;
        loop {
            return match session.next().await {
                Ok(Some(FsEvent::Data(b))) => Some((Ok(b), Some(session))),
                Ok(Some(FsEvent::Reply(FsReply::Done { .. }))) => None,
                Ok(Some(FsEvent::Reply(FsReply::Error { message, .. }))) => {
                    Some((Err(std::io::Error::other(message)), None))
                }
                Ok(Some(FsEvent::Reply(_))) => continue,
                Ok(None) => Some((
                    Err(std::io::Error::other("the sprite ended the file early")),
                    None,
                )),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            };
        }
    });
    let mut res = Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(n) = size {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if let Ok(v) = HeaderValue::from_str(&wire::format_mode(mode)) {
        h.insert(MODE_HEADER, v);
    }
    Ok(res)
}

/// `PUT fs/write?path=&workingDir=&mode=&mkdirParents=`: the body becomes
/// the file, streamed.
pub async fn write(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> FsResult {
    let q = FsQuery::new(raw);
    let path = q.required_path("path")?;
    let mode = match q.q.get("mode").filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(wire::parse_mode(m).map_err(invalid)?),
    };
    let mkdir_parents = match q.flag("mkdirParents")? {
        Some(false) => MkdirParents::Last,
        _ => MkdirParents::All,
    };
    let call = FsCall::Write {
        path,
        mode,
        mkdir_parents,
    };
    let mut session = start(&state, &name, &q.run_as()?, q.working_dir(), call).await?;
    match first_reply(&mut session).await? {
        FsReply::Opened { .. } => {}
        other => return Err(unexpected(&other)),
    }
    let (mut replies, mut w) = session.split();
    // The agent's answer is read beside the upload: it may fail (a full
    // disk) while bytes are still coming.
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = done_tx.send(replies.outcome().await);
    });
    let mut data = body.into_data_stream();
    let mut frame = bytes::BytesMut::with_capacity(UPLOAD_FRAME);
    let mut early = None;
    loop {
        tokio::select! {
            biased;
            // The agent answered before the upload ended: an error.
            res = &mut done_rx => {
                early = Some(res);
                break;
            }
            chunk = data.next() => match chunk {
                Some(Ok(c)) => {
                    frame.extend_from_slice(&c);
                    if frame.len() >= UPLOAD_FRAME {
                        if w.data(&frame).await.is_err() {
                            break;
                        }
                        frame.clear();
                    }
                }
                Some(Err(e)) => {
                    // The client broke off: closing the connection makes
                    // the agent drop what it received.
                    return Err(ApiError::BadRequest(format!("the upload broke off: {e}")).into());
                }
                None => {
                    if w.data(&frame).await.is_ok() {
                        let _ = w.end().await;
                    }
                    break;
                }
            },
        }
    }
    let outcome = match early {
        Some(res) => res,
        None => (&mut done_rx).await,
    }
    .unwrap_or_else(|_| Err(AgentError::Protocol("lost the agent's answer".into())));
    drop(w);
    match outcome? {
        FsReply::Done {
            path, size, mode, ..
        } => Ok(Json(WriteResponse {
            path: path.lossy(),
            size,
            mode: wire::format_mode(mode),
            path_base64: path.base64_if_not_utf8(),
        })
        .into_response()),
        FsReply::Error {
            code,
            message,
            path,
        } => Err(fs_error(code, message, path)),
        other => Err(unexpected(&other)),
    }
}

/// `GET fs/list?path=&workingDir=&recursive=&pattern=`: `{path, entries,
/// count}`, streamed as the agent walks.
pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> FsResult {
    let q = FsQuery::new(raw);
    let call = FsCall::List {
        path: q.path("path").unwrap_or_default(),
        recursive: q.flag("recursive")?.unwrap_or(false),
        pattern: q.q.get("pattern").map(String::from),
    };
    let mut session = start(&state, &name, &q.run_as()?, q.working_dir(), call).await?;
    let first = first_reply(&mut session).await?;
    Ok(json_stream(
        session,
        first,
        "entries",
        |reply| match reply {
            FsReply::Entries { entries } => Some(entries.iter().map(to_json).collect()),
            _ => None,
        },
    ))
}

/// `GET fs/stat?path=&workingDir=` (extension): the path's own entry,
/// symlinks followed.
pub async fn stat(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> FsResult {
    let q = FsQuery::new(raw);
    let call = FsCall::Stat {
        path: q.required_path("path")?,
    };
    let mut session = start(&state, &name, &q.run_as()?, q.working_dir(), call).await?;
    match first_reply(&mut session).await? {
        FsReply::Entries { mut entries } if entries.len() == 1 => {
            let e: FsEntry = entries.remove(0);
            Ok(Json(e).into_response())
        }
        other => Err(unexpected(&other)),
    }
}

/// `DELETE fs/delete?path=&workingDir=&recursive=`: `{deleted, count}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> FsResult {
    let q = FsQuery::new(raw);
    let call = FsCall::Delete {
        path: q.required_path("path")?,
        recursive: q.flag("recursive")?.unwrap_or(false),
    };
    let mut session = start(&state, &name, &q.run_as()?, q.working_dir(), call).await?;
    let first = first_reply(&mut session).await?;
    Ok(json_stream(
        session,
        first,
        "deleted",
        |reply| match reply {
            FsReply::Deleted { paths } => Some(paths.iter().map(|p| to_json(&p.lossy())).collect()),
            _ => None,
        },
    ))
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Stream `{"<key>":[items...],"path":...,"count":N}` from the agent's
/// batches, ending at its `done`; `items` turns a batch into JSON values.
fn json_stream(
    session: FsSession,
    first: FsReply,
    key: &'static str,
    items: fn(&FsReply) -> Option<Vec<Vec<u8>>>,
) -> Response {
    struct St {
        session: FsSession,
        pending: Option<FsReply>,
        started: bool,
        any: bool,
    }
    let st = St {
        session,
        pending: Some(first),
        started: false,
        any: false,
    };
    let stream = futures_util::stream::unfold(Some(st), move |st| async move {
        let mut st = st?;
        let mut out = Vec::new();
        if !st.started {
            st.started = true;
            out.extend_from_slice(format!("{{\"{key}\":[").as_bytes());
        }
        let reply = match st.pending.take() {
            Some(p) => p,
            None => match st.session.next().await {
                Ok(Some(FsEvent::Reply(reply))) => reply,
                Ok(Some(FsEvent::Data(_))) => {
                    return Some((Err(std::io::Error::other("unexpected data")), None))
                }
                Ok(None) => {
                    return Some((
                        Err(std::io::Error::other("the sprite ended the listing early")),
                        None,
                    ))
                }
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
            },
        };
        match reply {
            FsReply::Done { path, count, .. } => {
                out.extend_from_slice(b"],\"path\":");
                out.extend_from_slice(&to_json(&path.lossy()));
                if let Some(b64) = path.base64_if_not_utf8() {
                    out.extend_from_slice(b",\"pathBase64\":");
                    out.extend_from_slice(&to_json(&b64));
                }
                out.extend_from_slice(format!(",\"count\":{count}}}").as_bytes());
                Some((Ok(Bytes::from(out)), None))
            }
            FsReply::Error { message, .. } => Some((Err(std::io::Error::other(message)), None)),
            other => {
                for item in items(&other).unwrap_or_default() {
                    if st.any {
                        out.push(b',');
                    }
                    st.any = true;
                    out.extend_from_slice(&item);
                }
                Some((Ok(Bytes::from(out)), Some(st)))
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> FsResult<T> {
    Ok(super::body::parse(body)?)
}

/// A call whose whole answer is the agent's `done`.
async fn change(
    state: &AppState,
    name: &str,
    run_as: &RunAs,
    working_dir: Option<PathBytes>,
    call: FsCall,
) -> FsResult {
    let two_paths = matches!(call, FsCall::Rename { .. } | FsCall::Copy { .. });
    let mode = match &call {
        FsCall::Chmod { mode, .. } => Some(format!("{:04o}", mode & 0o7777)),
        _ => None,
    };
    let mut session = start(state, name, run_as, working_dir, call).await?;
    match first_reply(&mut session).await? {
        FsReply::Done {
            path, dest, count, ..
        } => Ok(Json(ChangeResponse {
            source: two_paths.then(|| path.lossy()),
            path: path.lossy(),
            dest: dest.as_ref().map(PathBytes::lossy),
            mode,
            count,
        })
        .into_response()),
        other => Err(unexpected(&other)),
    }
}

fn non_empty(p: Option<PathBytes>) -> Option<PathBytes> {
    p.filter(|p| !p.is_empty())
}

/// `POST fs/rename` `{source, dest, workingDir}`.
pub async fn rename(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> FsResult {
    let b: RenameRequest = parse_body(&body)?;
    let call = FsCall::Rename {
        source: b.source,
        dest: b.dest,
    };
    change(&state, &name, &b.run_as, non_empty(b.working_dir), call).await
}

/// `POST fs/copy` `{source, dest, workingDir, recursive, preserveAttrs}`.
pub async fn copy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> FsResult {
    let b: CopyRequest = parse_body(&body)?;
    let call = FsCall::Copy {
        source: b.source,
        dest: b.dest,
        recursive: b.recursive.unwrap_or(false),
        preserve_attrs: b.preserve_attrs.unwrap_or(false),
    };
    change(&state, &name, &b.run_as, non_empty(b.working_dir), call).await
}

/// `POST fs/chmod` `{path, workingDir, mode, recursive}`.
pub async fn chmod(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> FsResult {
    let b: ChmodRequest = parse_body(&body)?;
    let call = FsCall::Chmod {
        path: b.path,
        mode: wire::mode_from_json(&b.mode).map_err(invalid)?,
        recursive: b.recursive.unwrap_or(false),
    };
    change(&state, &name, &b.run_as, non_empty(b.working_dir), call).await
}

/// `POST fs/mkdir` `{path, workingDir, mode, parents}` (extension).
pub async fn mkdir(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> FsResult {
    let b: MkdirRequest = parse_body(&body)?;
    let call = FsCall::Mkdir {
        path: b.path,
        mode: b
            .mode
            .as_ref()
            .map(wire::mode_from_json)
            .transpose()
            .map_err(invalid)?,
        parents: b.parents.unwrap_or(false),
    };
    change(&state, &name, &b.run_as, non_empty(b.working_dir), call).await
}

/// `POST fs/chown` `{path, workingDir, uid, gid, recursive}` (the JS SDK's).
pub async fn chown(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> FsResult {
    let b: ChownRequest = parse_body(&body)?;
    let owner =
        |v: Option<&serde_json::Value>| v.map(wire::owner_from_json).transpose().map_err(invalid);
    let uid = owner(b.uid.as_ref())?;
    let gid = owner(b.gid.as_ref())?;
    if uid.is_none() && gid.is_none() {
        return Err(invalid("chown needs uid or gid"));
    }
    let call = FsCall::Chown {
        path: b.path,
        uid,
        gid,
        recursive: b.recursive.unwrap_or(false),
    };
    change(&state, &name, &b.run_as, non_empty(b.working_dir), call).await
}

pub(super) fn unexpected(reply: &FsReply) -> FsApiError {
    ApiError::Internal(format!("the agent answered {reply:?} out of turn")).into()
}
