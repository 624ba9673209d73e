//! Sprite status changes, told to whoever watches (the NDJSON sprite
//! stream of `GET /v1/sprites`). Only the sprite's id travels: a watcher
//! reads the status and the record when it gets to the news, and tells
//! its client only what differs from what it told before, so a status
//! that flickers (the idle tracker's tentative `warm`) costs a look, not
//! a line. A watcher that fell behind looks at every sprite again.

use sprites_api::sprite::Status;
use std::collections::HashMap;

use super::{lock, Manager};
use crate::error::Error;

/// News a watch receiver gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpriteChange {
    /// The sprite with this id changed status, or is gone.
    Sprite(String),
    /// The daemon is stopping: watch streams end, so that the graceful
    /// shutdown does not wait on them.
    Closing,
}

/// How many changes a slow watcher may be behind before it is told it
/// lagged (and looks at every sprite again).
pub(super) const BACKLOG: usize = 256;

/// Sprites by status, as the watch stream's `org` counts them (a sprite
/// whose start failed counts as cold: nothing of it runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub running: u64,
    pub warm: u64,
    pub cold: u64,
}

impl Manager {
    /// Status changes from now on.
    pub fn watch_changes(&self) -> tokio::sync::broadcast::Receiver<SpriteChange> {
        self.changes.subscribe()
    }

    /// Tell watchers that sprite `id` changed (nobody listening is fine).
    pub(super) fn announce(&self, id: &str) {
        let _ = self.changes.send(SpriteChange::Sprite(id.to_string()));
        // Hosts sharing the database: the others show it as this one says
        // (recorded before the change is told, so a client that hears of it
        // here and asks another host is told the same).
        if self.db.me().is_some() {
            if let Some(status) = self.peek_status(id) {
                if let Err(e) = self.db.set_held_status(id, status.as_str()) {
                    tracing::debug!(id, error = %e, "recording the sprite's status");
                }
            }
        }
    }

    /// Where hosts share the database: each sprite's holder and the status
    /// it recorded (`None` on a database of this host's alone).
    pub fn held_statuses(&self) -> Option<HashMap<String, crate::db::hosts::Held>> {
        self.db.me()?;
        self.db.held().ok()
    }

    /// A sprite's status as clients are shown it, wherever it runs: this
    /// host's slot's, or, for a sprite another host holds (per `held`, from
    /// [`Manager::held_statuses`]), what that host recorded. `None`: no
    /// slot here, which for a sprite of this host is made and not started.
    pub fn status_anywhere(
        &self,
        id: &str,
        held: Option<&HashMap<String, crate::db::hosts::Held>>,
    ) -> Option<Status> {
        held.and_then(|h| h.get(id))
            .and_then(|h| self.status_elsewhere(h))
            .or_else(|| self.peek_status(id))
    }

    /// The status of a sprite another host holds, as that host recorded it
    /// (cold when it recorded none yet); `None` for one this host holds or
    /// nobody does.
    pub fn status_elsewhere(&self, held: &crate::db::hosts::Held) -> Option<Status> {
        let (Some(host), recorded) = held else {
            return None;
        };
        if self.db.me().is_some_and(|me| me.host_id == *host) {
            return None;
        }
        Some(
            recorded
                .as_deref()
                .and_then(|s| serde_json::from_value(serde_json::Value::String(s.into())).ok())
                .unwrap_or(Status::Cold),
        )
    }

    /// Tell watchers the daemon is stopping.
    pub fn announce_closing(&self) {
        let _ = self.changes.send(SpriteChange::Closing);
    }

    /// A sprite's status as clients are shown it, without making it a slot:
    /// a watcher may look at an id just destroyed, which must not come back
    /// as a cold sprite.
    pub fn peek_status(&self, id: &str) -> Option<Status> {
        lock(&self.slots).get(id).map(|slot| slot.shown_status())
    }

    /// The sprites in the DB, by status.
    pub fn status_counts(&self) -> Result<StatusCounts, Error> {
        let ids = self.db.sprite_ids()?;
        let held = self.held_statuses();
        let mut c = StatusCounts::default();
        for id in ids {
            match self
                .status_anywhere(&id, held.as_ref())
                .unwrap_or(Status::Cold)
            {
                Status::Running => c.running += 1,
                Status::Warm => c.warm += 1,
                Status::Cold | Status::Error => c.cold += 1,
            }
        }
        Ok(c)
    }
}
