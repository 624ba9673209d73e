//! What the API asks of a sprite's agent: wake the sprite, open the
//! conversation, hand back the typed session (`agent_conn`). Each session
//! keeps the sprite awake for as long as it lives.

use std::sync::Arc;

use sprites_api::agent::{ExecRequest, Request};
use sprites_api::fs::FsRequest;
use sprites_api::sprite::SessionInfo;

use super::Manager;
use crate::agent_conn::exec::{self, ExecSession, KillProgress};
use crate::agent_conn::fs::FsSession;
use crate::agent_conn::ports::PortWatch;
use crate::db::SpriteRecord;
use crate::error::Error;

impl Manager {
    /// Start a command.
    pub async fn exec(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        req: ExecRequest,
    ) -> Result<ExecSession, Error> {
        let conv = self.open(rec, &Request::Exec(req)).await?;
        Ok(ExecSession::begin(conv).await?)
    }

    /// Re-attach to session `id`.
    pub async fn attach(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        id: u32,
    ) -> Result<ExecSession, Error> {
        let conv = self.open(rec, &Request::Attach { id }).await?;
        Ok(ExecSession::begin(conv).await?)
    }

    /// The sessions the agent keeps, running or not.
    pub async fn sessions(self: &Arc<Self>, rec: &SpriteRecord) -> Result<Vec<SessionInfo>, Error> {
        let conv = self.open(rec, &Request::Sessions).await?;
        Ok(exec::session_list(conv).await?)
    }

    /// Signal session `id`, SIGKILL after `timeout_ms`. The agent tells a
    /// session that has ended (gone) from one it never had (not found).
    pub async fn kill(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        id: u32,
        signal: String,
        timeout_ms: u64,
    ) -> Result<KillProgress, Error> {
        let req = Request::Kill {
            id,
            signal,
            timeout_ms,
        };
        let conv = self.open(rec, &req).await?;
        Ok(KillProgress::begin(conv).await?)
    }

    /// Start a filesystem call.
    pub async fn fs(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        req: FsRequest,
    ) -> Result<FsSession, Error> {
        Ok(self.open(rec, &Request::Fs(req)).await?.into())
    }

    /// Watch the ports listened on inside.
    pub async fn watch_ports(self: &Arc<Self>, rec: &SpriteRecord) -> Result<PortWatch, Error> {
        Ok(self.open(rec, &Request::WatchPorts).await?.into())
    }
}
