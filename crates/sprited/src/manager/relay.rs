//! TCP connections into a sprite (sprite URLs, the proxy endpoint): wake
//! the sprite, then connect from a socket made in its network namespace.

use std::sync::Arc;

use sprites_api::port::loopback_target;
use tokio::net::TcpStream;

use super::Manager;
use crate::db::SpriteRecord;
use crate::error::Error;

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
    ) -> Result<TcpStream, DialError> {
        let Some(ips) = loopback_target(host) else {
            return Err(DialError::Rejected(format!(
                "{host:?} is not this sprite: only localhost, 127.0.0.1 and ::1 can be reached"
            )));
        };
        // A gVisor sprite's loopback is the Sentry's own: its ports are
        // reached at its address on the veth (see sprite_runtime::Gvisor).
        let ips = match rec.limits.isolation {
            sprite_runtime::Isolation::Container => ips,
            sprite_runtime::Isolation::Gvisor => {
                vec![std::net::IpAddr::V4(sprite_runtime::gvisor::SANDBOX_ADDR)]
            }
        };
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
                None => DialError::Rejected(format!("no address for {host:?}")),
            });
        }
        Err(DialError::Unavailable(Error::Unavailable(format!(
            "sprite {} did not come up",
            rec.name
        ))))
    }
}
