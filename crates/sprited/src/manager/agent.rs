//! What the API asks of a sprite's agent: wake the sprite, open the
//! conversation, hand back the typed session (`agent_conn`). Each session
//! keeps the sprite awake for as long as it lives.

use std::future::Future;
use std::sync::Arc;

use sprites_api::agent::{ExecRequest, Request};
use sprites_api::fs::FsRequest;
use sprites_api::sprite::SessionInfo;

use super::Manager;
use crate::agent_conn::exec::{self, ExecSession, KillProgress};
use crate::agent_conn::fs::FsSession;
use crate::agent_conn::ports::PortWatch;
use crate::agent_conn::{cut_short, AgentError, Conversation};
use crate::db::SpriteRecord;
use crate::error::Error;

impl Manager {
    /// Open a conversation for `req` and read the agent's first answer
    /// with `first`. A conversation cut before that answer by a sandbox
    /// dying under it (connected while its init was going away) is what a
    /// refused connection is: the sprite is started again and asked once
    /// more. Nothing of the request ran: whatever the agent started died
    /// with its sandbox before it said so.
    async fn begin<T, F, Fut>(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        req: &Request,
        first: F,
    ) -> Result<T, Error>
    where
        F: Fn(Conversation) -> Fut,
        Fut: Future<Output = Result<T, AgentError>>,
    {
        let mut attempt = 0;
        loop {
            let conv = self.open(rec, req).await?;
            match first(conv).await {
                Err(e) if attempt == 0 && cut_short(&e) && !self.agent_answers(rec).await => {
                    tracing::warn!(sprite = %rec.name, error = %e, "agent went away before answering; restarting the sprite");
                    self.take_down_unreachable(rec).await?;
                    attempt += 1;
                }
                r => return Ok(r?),
            }
        }
    }

    /// Start a command.
    pub async fn exec(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        req: ExecRequest,
    ) -> Result<ExecSession, Error> {
        self.begin(rec, &Request::Exec(req), ExecSession::begin)
            .await
    }

    /// Re-attach to session `id`.
    pub async fn attach(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        id: u32,
    ) -> Result<ExecSession, Error> {
        self.begin(rec, &Request::Attach { id }, ExecSession::begin)
            .await
    }

    /// The sessions the agent keeps, running or not.
    pub async fn sessions(self: &Arc<Self>, rec: &SpriteRecord) -> Result<Vec<SessionInfo>, Error> {
        self.begin(rec, &Request::Sessions, exec::session_list)
            .await
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
        self.begin(rec, &req, KillProgress::begin).await
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
