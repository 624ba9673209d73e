//! `GET /v1/sprites/{name}/fs/watch` (WebSocket; the JS SDK's
//! `filesystem().watch`): the client's first text frame is
//! `{"type":"subscribe","paths":[...],"recursive":bool,"workingDir":...}`;
//! the answer is `subscribed` once every path is watched, then an `event`
//! per change (`create`, `write`, `remove`, `rename`, `chmod`), until
//! either side closes. The watching is the agent's (inotify, inside the
//! sprite, as the caller's user: see `sprite-agent`'s `fs::watch`); this
//! relays, one message at a time, so a slow client slows the agent down
//! rather than anything queueing here.

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use sprites_api::fs::{FsCall, FsReply, FsRequest, RunAs, WatchMessage, WatchRequest};

use super::FsQuery;
use crate::agent_conn::fs::{FsEvent, FsSession};
use crate::api::ws::{stopping_close, Stopping, CLOSE_REPLY};
use crate::db::SpriteRecord;
use crate::error::ApiError;
use crate::manager::Manager;
use crate::time::now_rfc3339;
use crate::AppState;

/// How long a client may take to send its subscribe.
const SUBSCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Messages from the client's reader waiting to go out: a few at most
/// (more are dropped: they only say a message was ignored).
const NOTES: usize = 4;

type Tx = SplitSink<WebSocket, Message>;

pub async fn watch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    crate::api::ws::Upgrade(ws): crate::api::ws::Upgrade,
) -> Result<Response, ApiError> {
    // An unknown sprite or a bad `user` is refused before the upgrade.
    let rec = state.manager.get(&name)?;
    let run_as = FsQuery::new(raw).run_as().map_err(|e| match e {
        super::FsApiError::Api(e) => e,
        super::FsApiError::Fs { body, .. } => ApiError::BadRequest(body.error),
    })?;
    let m = state.manager.clone();
    Ok(state.sockets.serve(ws, move |socket, stopping| {
        run(socket, m, rec, run_as, stopping)
    }))
}

async fn run(
    ws: WebSocket,
    m: std::sync::Arc<Manager>,
    rec: SpriteRecord,
    run_as: RunAs,
    mut stopping: Stopping,
) {
    let (mut tx, mut rx) = ws.split();
    let Some(first) = subscribe(&mut rx).await else {
        return;
    };
    let (paths, recursive, working_dir) = match first {
        Ok(WatchRequest::Subscribe {
            paths,
            recursive,
            working_dir,
        }) => (paths, recursive, working_dir),
        Err(message) => return fail(&mut tx, error(message, None, None)).await,
    };
    let req = FsRequest {
        user: run_as.user(),
        working_dir: working_dir.filter(|d| !d.is_empty()),
        call: FsCall::Watch { paths, recursive },
    };
    let mut session = match m.fs(&rec, req).await {
        Ok(s) => s,
        Err(e) => return fail(&mut tx, error(e.to_string(), None, None)).await,
    };
    match session.answer().await {
        Ok(FsReply::Watching { paths }) => {
            let ok = WatchMessage::Subscribed {
                paths: paths.iter().map(|p| p.lossy()).collect(),
            };
            if send(&mut tx, &ok).await.is_err() {
                return;
            }
        }
        Ok(FsReply::Error {
            code,
            message,
            path,
        }) => {
            let path = (!path.is_empty()).then(|| path.lossy());
            return fail(&mut tx, error(message, Some(code), path)).await;
        }
        Ok(other) => {
            let message = format!("the sprite answered {other:?} out of turn");
            return fail(&mut tx, error(message, None, None)).await;
        }
        Err(e) => return fail(&mut tx, error(e.to_string(), None, None)).await,
    }
    // The client's side is read by a task of its own: a read cancelled
    // half way through an agent frame would lose the frame.
    let (notes_tx, mut notes) = tokio::sync::mpsc::channel(NOTES);
    let mut reader = tokio::spawn(read_client(rx, notes_tx));
    let stopped = relay(&mut session, &mut tx, &mut notes, &mut stopping).await;
    // Dropping the session tells the agent the watch is over.
    drop(session);
    match stopped {
        Stopped::No => {
            reader.abort();
            let _ = tx.send(Message::Close(None)).await;
        }
        // The reader ends at the client's Close.
        Stopped::Yes => {
            let _ = tx.send(stopping_close()).await;
            if tokio::time::timeout(CLOSE_REPLY, &mut reader)
                .await
                .is_err()
            {
                reader.abort();
            }
        }
    }
}

/// The subscribe message; `None` when the client left first.
async fn subscribe(rx: &mut SplitStream<WebSocket>) -> Option<Result<WatchRequest, String>> {
    let first = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Text(t))) => return Some(t),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    match first {
        Ok(Some(text)) => Some(
            serde_json::from_str(&text)
                .map_err(|e| format!("expected {{\"type\":\"subscribe\",\"paths\":[...]}}: {e}")),
        ),
        Ok(None) => None,
        Err(_) => Some(Err("no subscribe message within 60 s".into())),
    }
}

/// Whether a watch ended because the daemon is stopping.
enum Stopped {
    Yes,
    No,
}

/// Changes out until the agent or the client ends the watch, or the
/// daemon stops.
async fn relay(
    session: &mut FsSession,
    tx: &mut Tx,
    notes: &mut tokio::sync::mpsc::Receiver<WatchMessage>,
    stopping: &mut Stopping,
) -> Stopped {
    loop {
        let msg = tokio::select! {
            () = stopping.wait() => return Stopped::Yes,
            ev = session.next() => match ev {
                Ok(Some(FsEvent::Reply(FsReply::Changed { path, op, is_dir, size }))) => {
                    WatchMessage::Event {
                        path: path.lossy(),
                        event: op,
                        timestamp: now_rfc3339(),
                        size,
                        is_dir,
                    }
                }
                Ok(Some(FsEvent::Reply(FsReply::Overflow { message }))) => {
                    error(message, Some("overflow".into()), None)
                }
                Ok(Some(FsEvent::Reply(FsReply::Error { code, message, .. }))) => {
                    let _ = send(tx, &error(message, Some(code), None)).await;
                    return Stopped::No;
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return Stopped::No,
            },
            note = notes.recv() => match note {
                Some(n) => n,
                // The client closed.
                None => return Stopped::No,
            },
        };
        if send(tx, &msg).await.is_err() {
            return Stopped::No;
        }
    }
}

/// Read the client until it closes; a message after the subscribe is
/// answered with an error (one subscription per connection).
async fn read_client(
    mut rx: SplitStream<WebSocket>,
    notes: tokio::sync::mpsc::Sender<WatchMessage>,
) {
    while let Some(Ok(m)) = rx.next().await {
        match m {
            Message::Close(_) => break,
            Message::Text(_) => {
                let note = error(
                    "one subscribe per connection: open another watch for other paths".into(),
                    None,
                    None,
                );
                let _ = notes.try_send(note);
            }
            _ => {}
        }
    }
}

fn error(message: String, code: Option<String>, path: Option<String>) -> WatchMessage {
    WatchMessage::Error {
        message,
        code,
        path,
    }
}

async fn send(tx: &mut Tx, msg: &WatchMessage) -> Result<(), axum::Error> {
    let text = serde_json::to_string(msg).unwrap_or_default();
    tx.send(Message::Text(text.into())).await
}

/// Tell the client why there is no watch, and close.
async fn fail(tx: &mut Tx, msg: WatchMessage) {
    let _ = send(tx, &msg).await;
    let _ = tx.send(Message::Close(None)).await;
}
