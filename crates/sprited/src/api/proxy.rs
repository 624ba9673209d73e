//! `GET /v1/sprites/{name}/proxy` (WebSocket): a TCP connection to a port
//! inside the sprite. The client's first text frame names the target
//! (`{"host":"localhost","port":N}`; only the sprite's own loopback), the
//! server answers `{"status":"connected","target":...}`, then binary frames
//! carry the raw bytes. A failure closes with 1011 and the reason.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Path, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use sprites_api::port::{loopback_target, ProxyConnected, ProxyInit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ws::{await_close, stopping_close, Stopping};
use crate::db::SpriteRecord;
use crate::error::ApiError;
use crate::AppState;

/// How long the client has to name its target.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
const CHUNK: usize = 64 << 10;

pub async fn proxy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    super::ws::Upgrade(ws): super::ws::Upgrade,
) -> Result<Response, ApiError> {
    let rec = state.manager.get(&name)?;
    let sockets = state.sockets.clone();
    Ok(sockets.serve(ws, move |socket, stopping| {
        run(state, rec, socket, stopping)
    }))
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.chars().take(120).collect::<String>().into(),
    }))
}

async fn run(state: AppState, rec: SpriteRecord, mut ws: WebSocket, mut stopping: Stopping) {
    let init = match tokio::time::timeout(INIT_TIMEOUT, ws.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<ProxyInit>(&t),
        _ => {
            let _ = ws
                .send(close(1008, "expected {\"host\",\"port\"} first"))
                .await;
            return;
        }
    };
    let init = match init {
        Ok(i) if loopback_target(&i.host).is_some() && i.port != 0 => i,
        Ok(i) => {
            let why = format!(
                "{}:{} is not in this sprite (use localhost)",
                i.host, i.port
            );
            let _ = ws.send(close(1011, &why)).await;
            return;
        }
        Err(e) => {
            let _ = ws
                .send(close(1011, &format!("bad proxy request: {e}")))
                .await;
            return;
        }
    };
    let activity = state.manager.activity(&rec.id);
    let stream = match state.manager.dial(&rec, &init.host, init.port).await {
        Ok(s) => s,
        Err(e) => {
            let _ = ws.send(close(1011, &e.to_string())).await;
            return;
        }
    };
    let target = format!("{}:{}", init.host, init.port);
    let hello = ProxyConnected {
        status: "connected".into(),
        target,
    };
    let hello = serde_json::to_string(&hello).unwrap_or_default();
    if ws.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let _hold = activity;
    let (mut tcp_r, mut tcp_w) = tokio::io::split(stream);
    let (mut ws_tx, mut ws_rx) = ws.split();
    let upstream = async {
        while let Some(Ok(m)) = ws_rx.next().await {
            match m {
                Message::Binary(b) if tcp_w.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = tcp_w.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match tcp_r.read(&mut buf).await {
                Ok(0) => {
                    let _ = ws_tx.send(close(1000, "connection closed")).await;
                    break;
                }
                Ok(n) => {
                    let chunk = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if ws_tx.send(Message::Binary(chunk)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = ws_tx.send(close(1011, &e.to_string())).await;
                    break;
                }
            }
        }
    };
    // The sprite's side ending ends the session; the client's end only
    // half-closes, so the sprite can still answer. The daemon's stop ends
    // it, said with a 1001.
    let stopped = {
        tokio::pin!(upstream, downstream);
        let mut upstream_done = false;
        loop {
            tokio::select! {
                _ = &mut downstream => break false,
                _ = &mut upstream, if !upstream_done => upstream_done = true,
                () = stopping.wait() => break true,
            }
        }
    };
    if stopped {
        let _ = ws_tx.send(stopping_close()).await;
        await_close(&mut ws_rx).await;
    }
}
