//! Reaching ports inside a sprite: the TCP proxy WebSocket, the port watch,
//! and the sprite URL's auth setting.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sprites_api::port::{PortEvent, ProxyConnected, ProxyInit};
use sprites_api::sprite::{Sprite, UpdateSpriteRequest, UrlSettings};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::child::{connect, Ws};
use crate::error::Error;
use crate::sprites::SpriteHandle;

/// How long the server may take to make the connection (it may wake the sprite).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
const CHUNK: usize = 64 << 10;

/// A TCP connection into a sprite, carried by the proxy WebSocket.
pub struct ProxyStream {
    ws: Ws,
    target: String,
}

/// `GET /v1/sprites/{name}/ports/watch`: `port_list` first, then
/// `port_opened` / `port_closed`.
pub struct PortWatch {
    ws: Ws,
}

fn closed_reason(m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Error {
    match m {
        Some(Ok(Message::Close(Some(f)))) => Error::Api {
            status: 502,
            code: "proxy_failed".into(),
            message: f.reason.to_string(),
        },
        Some(Err(e)) => Error::network(e),
        _ => Error::Protocol("the proxy closed before connecting".into()),
    }
}

impl SpriteHandle {
    /// Set `url_settings.auth`: `sprite`, `public` or `private`.
    pub async fn set_url_auth(&self, auth: &str) -> Result<Sprite, Error> {
        self.update(&UpdateSpriteRequest {
            url_settings: Some(UrlSettings {
                auth: Some(auth.to_string()),
            }),
            ..Default::default()
        })
        .await
    }

    /// Open a TCP connection to `host:port` inside the sprite (`host` is
    /// `localhost`, `127.0.0.1` or `::1`).
    pub async fn proxy(&self, host: &str, port: u16) -> Result<ProxyStream, Error> {
        let url = self.client.ws_url(&["sprites", &self.name, "proxy"]);
        let mut ws = connect(&self.client, url).await?;
        let init = ProxyInit {
            host: host.to_string(),
            port,
        };
        let init = serde_json::to_string(&init).map_err(|e| Error::Protocol(e.to_string()))?;
        ws.send(Message::Text(init.into()))
            .await
            .map_err(Error::network)?;
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, ws.next())
            .await
            .map_err(|_| Error::Network("the proxy did not connect in time".into()))?;
        match answer {
            Some(Ok(Message::Text(t))) => {
                let c: ProxyConnected = serde_json::from_str(&t)
                    .map_err(|e| Error::Protocol(format!("bad proxy answer: {e}")))?;
                Ok(ProxyStream {
                    ws,
                    target: c.target,
                })
            }
            other => Err(closed_reason(other)),
        }
    }

    pub async fn watch_ports(&self) -> Result<PortWatch, Error> {
        let url = self
            .client
            .ws_url(&["sprites", &self.name, "ports", "watch"]);
        Ok(PortWatch {
            ws: connect(&self.client, url).await?,
        })
    }
}

impl ProxyStream {
    /// What the server connected to (`host:port`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Carry bytes between `io` and the sprite's port until either side ends.
    pub async fn relay<S: AsyncRead + AsyncWrite + Unpin>(self, io: S) -> Result<(), Error> {
        let (mut rd, mut wr) = tokio::io::split(io);
        let (mut tx, mut rx) = self.ws.split();
        let up = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let b = bytes::Bytes::copy_from_slice(&buf[..n]);
                        if tx.send(Message::Binary(b)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(Message::Close(None)).await;
        };
        let down = async {
            while let Some(Ok(m)) = rx.next().await {
                match m {
                    Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = wr.shutdown().await;
        };
        tokio::pin!(up, down);
        // The sprite's side ending ends the relay; the local side ending
        // still lets the sprite's answer through.
        tokio::select! {
            _ = &mut down => {}
            _ = &mut up => down.await,
        }
        Ok(())
    }
}

impl PortWatch {
    /// The next event, or `None` when the watch ends.
    pub async fn next(&mut self) -> Option<Result<PortEvent, Error>> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(t)) => {
                    return Some(
                        serde_json::from_str(&t)
                            .map_err(|e| Error::Protocol(format!("bad port event: {e}"))),
                    )
                }
                Ok(Message::Close(_)) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(Error::network(e))),
            }
        }
    }
}
