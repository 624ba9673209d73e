//! TCP connections into a sprite (sprite URLs, the proxy endpoint): wake
//! the sprite, then connect from a socket made in its network namespace
//! (to the Sentry's address on the veth for gVisor), or, where that is
//! refused under gVisor (whose loopback is the Sentry's own: a server on
//! 127.0.0.1 only is reachable from inside alone), have its agent connect
//! and carry the bytes.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sprites_api::agent::{AgentErrorCode, Request};
use sprites_api::port::loopback_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Manager;
use crate::agent_conn::tunnel::Tunnel;
use crate::agent_conn::AgentError;
use crate::db::SpriteRecord;
use crate::error::Error;

/// A connection to a port inside a sprite.
#[derive(Debug)]
pub enum SpriteStream {
    /// From a socket in the sprite's network namespace.
    Tcp(TcpStream),
    /// Made by the sprite's agent, carried over its socket.
    Agent(Tunnel),
}

impl AsyncRead for SpriteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SpriteStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            SpriteStream::Agent(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SpriteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SpriteStream::Tcp(s) => Pin::new(s).poll_write(cx, data),
            SpriteStream::Agent(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SpriteStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            SpriteStream::Agent(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SpriteStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            SpriteStream::Agent(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Nothing listens on that port inside.
    #[error("{0}")]
    Refused(String),
    /// Not a target inside the sprite (only its loopback is).
    #[error("{0}")]
    Rejected(String),
    /// The sprite could not be woken or its network reached.
    #[error("{0}")]
    Unavailable(#[from] Error),
}

impl Manager {
    /// Running, and its activity recorded: what a URL request needs before
    /// it uses a pooled connection.
    pub async fn wake_for_traffic(self: &Arc<Self>, rec: &SpriteRecord) -> Result<(), Error> {
        self.ensure_running(rec).await?;
        self.touch(rec);
        Ok(())
    }

    /// A TCP connection to `host:port` inside the sprite (`host` a loopback
    /// name or address), woken first. The caller holds an
    /// [`super::Activity`] for as long as it uses it.
    pub async fn dial(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        host: &str,
        port: u16,
    ) -> Result<SpriteStream, DialError> {
        let Some(ips) = loopback_target(host) else {
            return Err(DialError::Rejected(format!(
                "{host:?} is not this sprite: only localhost, 127.0.0.1 and ::1 can be reached"
            )));
        };
        match rec.limits.isolation {
            sprite_runtime::Isolation::Container => self
                .dial_in_netns(rec, ips, port)
                .await
                .map(SpriteStream::Tcp),
            // The Sentry's address on the veth first: what listens on all
            // addresses answers there, from the host's kernel, as it has
            // been measured and tested. What listens on the Sentry's
            // loopback only is reached through the agent.
            sprite_runtime::Isolation::Gvisor => {
                let sentry = vec![IpAddr::V4(sprite_runtime::gvisor::SANDBOX_ADDR)];
                match self.dial_in_netns(rec, sentry, port).await {
                    Ok(s) => Ok(SpriteStream::Tcp(s)),
                    Err(DialError::Refused(why)) => {
                        match self.dial_through_agent(rec, ips, port).await {
                            // An agent older than `connect` (a sprite
                            // started by an older daemon): the first answer.
                            Err(DialError::Rejected(_)) => Err(DialError::Refused(why)),
                            other => other,
                        }
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Through the agent: it connects inside and carries the bytes.
    async fn dial_through_agent(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        ips: Vec<IpAddr>,
        port: u16,
    ) -> Result<SpriteStream, DialError> {
        for ip in ips {
            let conv = self.open(rec, &Request::Connect { ip, port }).await?;
            match conv.into_tunnel().await {
                Ok(t) => return Ok(SpriteStream::Agent(t)),
                Err(AgentError::Refused {
                    code: AgentErrorCode::Refused,
                    ..
                }) => continue,
                Err(AgentError::Refused {
                    code: AgentErrorCode::BadRequest,
                    message,
                }) => return Err(DialError::Rejected(message)),
                Err(e) => return Err(DialError::Unavailable(e.into())),
            }
        }
        Err(DialError::Refused(format!(
            "nothing listens on port {port} in the sprite"
        )))
    }

    /// From a socket made in the sprite's network namespace.
    async fn dial_in_netns(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        ips: Vec<IpAddr>,
        port: u16,
    ) -> Result<TcpStream, DialError> {
        for attempt in 0..2 {
            self.wake_for_traffic(rec).await?;
            let ns = self.net.namespace(&rec.id).ok_or_else(|| {
                Error::Unavailable(format!("sprite {} has no network to reach", rec.name))
            })?;
            let mut last = None;
            for ip in &ips {
                match ns.connect(*ip, port).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last.as_ref().filter(|e| super::short_of(e).is_some()) {
                return Err(DialError::Unavailable(super::daemon_short(rec, e)));
            }
            let refused = last
                .as_ref()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
            // A sandbox that died under us refuses everything: noticed by
            // its agent being gone, and repaired once.
            if refused && attempt == 0 && !self.agent_answers(rec).await {
                tracing::warn!(sprite = %rec.name, "agent unreachable; restarting the sprite");
                self.take_down_unreachable(rec).await?;
                continue;
            }
            return Err(match last {
                Some(_) if refused => {
                    DialError::Refused(format!("nothing listens on port {port} in the sprite"))
                }
                Some(e) => DialError::Unavailable(Error::Unavailable(format!(
                    "connecting to port {port} in the sprite: {e}"
                ))),
                None => DialError::Rejected(format!("no address to reach port {port} at")),
            });
        }
        Err(DialError::Unavailable(Error::Unavailable(format!(
            "sprite {} did not come up",
            rec.name
        ))))
    }
}
