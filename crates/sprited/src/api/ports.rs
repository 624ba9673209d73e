//! `GET /v1/sprites/{name}/ports/watch` (WebSocket): `port_list` with the
//! TCP ports listened on inside, then `port_opened`/`port_closed` as they
//! change. The agent reads them from the sprite's own `/proc/net/tcp*`.

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use sprites_api::port::{diff, ListeningPort, PortEvent};

use super::ws::{await_close, stopping_close, Stopping};
use crate::agent_conn::ports::PortWatch;
use crate::error::ApiError;
use crate::AppState;

pub async fn watch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    super::ws::Upgrade(ws): super::ws::Upgrade,
) -> Result<Response, ApiError> {
    let rec = state.manager.get(&name)?;
    let watch = state.manager.watch_ports(&rec).await?;
    Ok(state
        .sockets
        .serve(ws, move |socket, stopping| run(socket, watch, stopping)))
}

/// The port events of a port watch, as a stream of batches: the first is
/// one `port_list`.
pub async fn next_events(
    watch: &mut PortWatch,
    last: &mut Option<Vec<ListeningPort>>,
) -> Option<Vec<PortEvent>> {
    let ports = watch.next().await?;
    let events = match last.as_ref() {
        None => vec![PortEvent::PortList {
            ports: ports.clone(),
        }],
        Some(old) => diff(old, &ports),
    };
    *last = Some(ports);
    Some(events)
}

async fn run(ws: WebSocket, mut watch: PortWatch, mut stopping: Stopping) {
    let (mut tx, mut rx) = ws.split();
    let mut last = None;
    let close = loop {
        tokio::select! {
            batch = next_events(&mut watch, &mut last) => {
                let Some(batch) = batch else { break Message::Close(None) };
                for ev in batch {
                    let text = serde_json::to_string(&ev).unwrap_or_default();
                    if tx.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
            }
            m = rx.next() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
            () = stopping.wait() => {
                let _ = tx.send(stopping_close()).await;
                return await_close(&mut rx).await;
            }
        }
    };
    let _ = tx.send(close).await;
}
