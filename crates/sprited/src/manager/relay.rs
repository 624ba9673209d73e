//! TCP connections into a sprite, relayed by its agent (sprite URLs, the
//! proxy endpoint): wake the sprite, then ask the agent to connect.

use std::sync::Arc;

use sprites_api::agent::Reply;
use tokio::net::UnixStream;

use super::{Manager, Status};
use crate::agent_conn::{self, AgentError};
use crate::db::SpriteRecord;
use crate::error::ApiError;

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Nothing listens on that port inside.
    #[error("{0}")]
    Refused(String),
    /// The agent would not connect there (not a loopback target).
    #[error("{0}")]
    Rejected(String),
    /// The sprite could not be woken or its agent reached.
    #[error("{0}")]
    Unavailable(#[from] ApiError),
}

impl Manager {
    /// Running, and its activity recorded: what a URL request needs before
    /// it uses a pooled connection.
    pub async fn wake_for_traffic(self: &Arc<Self>, rec: &SpriteRecord) -> Result<(), ApiError> {
        self.ensure_running(rec).await?;
        self.touch(rec);
        Ok(())
    }

    /// A TCP connection to `host:port` inside the sprite, woken first. The
    /// caller holds an [`super::Activity`] for as long as it uses it.
    pub async fn dial(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        host: &str,
        port: u16,
    ) -> Result<UnixStream, DialError> {
        for attempt in 0..2 {
            self.wake_for_traffic(rec).await?;
            match agent_conn::connect_tcp(&self.socket_path(&rec.id), host, port).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(Reply::Error { code, message })) => {
                    return Err(if code == "connection_refused" {
                        DialError::Refused(message)
                    } else if code == "bad_request" {
                        DialError::Rejected(message)
                    } else {
                        DialError::Unavailable(ApiError::Unavailable(message))
                    })
                }
                Ok(Err(other)) => {
                    return Err(DialError::Unavailable(ApiError::internal(format!(
                        "unexpected agent reply to connect: {other:?}"
                    ))))
                }
                Err(AgentError::Connect(e)) if attempt == 0 => {
                    tracing::warn!(sprite = %rec.name, error = %e, "agent unreachable; restarting the sprite");
                    self.set_status(&rec.id, Status::Cold);
                }
                Err(e) => return Err(DialError::Unavailable(ApiError::Unavailable(e.to_string()))),
            }
        }
        Err(DialError::Unavailable(ApiError::Unavailable(format!(
            "sprite {} did not come up",
            rec.name
        ))))
    }
}
