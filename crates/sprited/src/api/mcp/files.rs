//! `read_file` and `write_file`: the filesystem API's read and write, run
//! in the sprite as its user, with the whole file in one JSON answer or
//! argument (so bounded: up to a cap on reads, the MCP body limit on
//! writes).

use base64::Engine;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use sprites_api::fs::{self as wire, FsCall, FsReply, MkdirParents, PathBytes, RunAs};

use super::{Failure, Outcome};
use crate::agent_conn::fs::FsEvent;
use crate::api::fs::{first_reply, start, unexpected, UPLOAD_FRAME};
use crate::error::ApiError;
use crate::AppState;

const DEFAULT_READ_BYTES: u64 = 1 << 20;
const MAX_READ_BYTES: u64 = 4 << 20;

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct ReadFile {
    /// The sprite's name.
    sprite: String,
    /// The file's path; a relative one is below the user's home.
    path: String,
    /// Most bytes answered (1-4194304, default 1048576); a longer file is
    /// cut there and `truncated` says so.
    #[serde(default)]
    max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct WriteFile {
    /// The sprite's name.
    sprite: String,
    /// The file's path; a relative one is below the user's home.
    path: String,
    /// The new contents as text. Give this or `content_base64`.
    #[serde(default)]
    content: Option<String>,
    /// The new contents as base64, for bytes that are not text.
    #[serde(default)]
    content_base64: Option<String>,
    /// Permission bits in octal, e.g. "0755" (default: 0644 for a new file,
    /// unchanged for an existing one).
    #[serde(default)]
    mode: Option<String>,
}

fn invalid(message: impl Into<String>) -> Failure {
    ApiError::BadRequest(message.into()).into()
}

pub(super) async fn read(state: &AppState, args: ReadFile) -> Outcome {
    let cap = args.max_bytes.unwrap_or(DEFAULT_READ_BYTES);
    if !(1..=MAX_READ_BYTES).contains(&cap) {
        return Err(invalid(format!(
            "max_bytes must be between 1 and {MAX_READ_BYTES}"
        )));
    }
    let call = FsCall::Read {
        path: PathBytes::from(args.path),
        range: None,
    };
    let mut session = start(state, &args.sprite, &RunAs::default(), None, call).await?;
    let (path, size, mode) = match first_reply(&mut session).await? {
        FsReply::Opened { path, size, mode } => (path, size, mode),
        other => return Err(unexpected(&other).into()),
    };
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut bytes = Vec::new();
    let mut truncated = false;
    loop {
        match session.next().await.map_err(ApiError::from)? {
            Some(FsEvent::Data(b)) => {
                let room = cap - bytes.len();
                bytes.extend_from_slice(&b[..b.len().min(room)]);
                if b.len() > room {
                    // Dropping the session tells the agent to stop.
                    truncated = true;
                    break;
                }
            }
            Some(FsEvent::Reply(FsReply::Done { .. })) => break,
            Some(FsEvent::Reply(FsReply::Error { message, code, .. })) => {
                return Err(Failure { code, message });
            }
            Some(FsEvent::Reply(_)) => {}
            None => {
                return Err(ApiError::Unavailable("the sprite ended the file early".into()).into())
            }
        }
    }
    let mut v = json!({
        "path": path.lossy(),
        "size": size,
        "mode": wire::format_mode(mode),
        "truncated": truncated,
    });
    match String::from_utf8(bytes) {
        Ok(text) => v["content"] = json!(text),
        Err(e) => {
            v["content_base64"] =
                json!(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()))
        }
    }
    Ok(v)
}

pub(super) async fn write(state: &AppState, args: WriteFile) -> Outcome {
    let bytes = match (args.content, args.content_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| invalid(format!("content_base64 is not base64: {e}")))?,
        _ => return Err(invalid("give either content or content_base64")),
    };
    let mode = match args.mode.as_deref().filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(wire::parse_mode(m).map_err(invalid)?),
    };
    let call = FsCall::Write {
        path: PathBytes::from(args.path),
        mode,
        mkdir_parents: MkdirParents::All,
    };
    let mut session = start(state, &args.sprite, &RunAs::default(), None, call).await?;
    match first_reply(&mut session).await? {
        FsReply::Opened { .. } => {}
        other => return Err(unexpected(&other).into()),
    }
    let (mut replies, mut upload) = session.split();
    // The agent's answer is read beside the upload, as the write endpoint
    // does: it may refuse before the last byte (a full disk).
    let outcome = {
        let send = async {
            for chunk in bytes.chunks(UPLOAD_FRAME) {
                upload.data(chunk).await?;
            }
            upload.end().await
        };
        let outcome = replies.outcome();
        tokio::pin!(send, outcome);
        let mut sending = true;
        loop {
            tokio::select! {
                biased;
                o = &mut outcome => break o,
                // A failed send shows in the answer (or its absence).
                _ = &mut send, if sending => sending = false,
            }
        }
    }
    .map_err(ApiError::from)?;
    match outcome {
        FsReply::Done {
            path, size, mode, ..
        } => Ok(json!({
            "path": path.lossy(),
            "size": size,
            "mode": wire::format_mode(mode),
        })),
        FsReply::Error { code, message, .. } => Err(Failure { code, message }),
        other => Err(unexpected(&other).into()),
    }
}
