//! Scale to zero: a running sprite with nothing to do is paused (warm:
//! every process frozen by the cgroup freezer, memory kept, no CPU) after
//! `idle_warm`, and stopped (cold: no process, no memory, volume unmounted)
//! after `idle_cold` more. Any request wakes it again.
//!
//! What keeps a sprite awake: activities in flight (exec and console
//! connections, in-sprite API calls, proxied connections; see
//! [`super::Activity`]), sessions whose command still runs inside (asked of
//! the agent just before pausing), and unexpired tasks.
//!
//! Races with requests: a request counts its activity *before* it looks at
//! the status; the tracker marks the sprite warm *before* it looks at the
//! activity count (both sequentially consistent). So either the tracker sees
//! the request and backs off, or the request sees `warm` and wakes the
//! sprite through the lifecycle lock, after the pause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sprites_api::agent::Request;
use sprites_api::sprite::Status;

use super::slot::SpriteSlot;
use super::{blocking, lock, Manager, Release, STOP_GRACE};
use crate::agent_conn::{self, AgentError};
use crate::error::Error;

/// How long the agent gets to answer "are you busy?" (the idle tracker's
/// question, and the probe of whether an agent is there at all) before it
/// is taken for slow rather than gone.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

impl Manager {
    /// Runs the idle tracker for as long as the manager lives.
    pub fn spawn_idle_tracker(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let shortest = self.cfg.idle_warm.min(self.cfg.idle_cold);
        let tick = (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(m) = me.upgrade() else { break };
                m.idle_pass();
            }
        });
    }

    /// One look at every sprite; the slow parts run in tasks of their own.
    fn idle_pass(self: &Arc<Self>) {
        let now = Instant::now();
        let mut entries: Vec<(String, Arc<SpriteSlot>)> = lock(&self.slots)
            .iter()
            .map(|(id, l)| (id.clone(), l.clone()))
            .collect();
        // Hosts sharing the database: only what this host holds (another
        // host's sprite may have a slot here, shown in a list).
        if self.db.me().is_some() {
            let held = self.db.mine_ids().unwrap_or_default();
            entries.retain(|(id, _)| held.contains(id));
        }
        for (id, slot) in entries {
            let status = slot.state().status;
            match status {
                Status::Running => {
                    let idle_for = now.saturating_duration_since(slot.state().last_activity);
                    if slot.active() == 0
                        && idle_for >= self.cfg.idle_warm
                        && !self.has_tasks(&slot)
                    {
                        let m = self.clone();
                        tokio::spawn(async move { m.pause_idle(&id, &slot).await });
                    }
                }
                Status::Warm => {
                    let since = slot.state().warm_since;
                    if since.is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.idle_cold)
                    {
                        let m = self.clone();
                        tokio::spawn(async move { m.stop_idle(&id, &slot).await });
                    }
                }
                Status::Cold => {
                    if self.due_for_eviction(&slot, now) {
                        let m = self.clone();
                        tokio::spawn(async move { m.evict_idle(&id, &slot).await });
                    }
                }
                Status::Error => {}
            }
        }
    }

    /// Running → warm, unless something turned up meanwhile.
    async fn pause_idle(&self, id: &str, slot: &Arc<SpriteSlot>) {
        let Ok(_g) = slot.lifecycle.try_lock() else {
            return;
        };
        if slot.state().status != Status::Running {
            return;
        }
        match self.running_sessions(id).await {
            Ok(0) => {}
            Ok(_) => {
                // A session's command still runs (detached or not): awake.
                slot.state().last_activity = Instant::now();
                return;
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "cannot ask the agent whether it is busy; not pausing");
                slot.state().last_activity = Instant::now();
                return;
            }
        }
        slot.state().status = Status::Warm;
        if slot.active() > 0 || self.has_tasks(slot) {
            slot.state().status = Status::Running;
            return;
        }
        let driver = self.driver.clone();
        let sid = id.to_string();
        match blocking(move || {
            crate::failpoint::hit("idle-pausing");
            driver
                .pause(&sid)
                .map_err(Error::runtime("pausing the sandbox"))
        })
        .await
        {
            Ok(()) => {
                slot.state().warm_since = Some(Instant::now());
                // Announced once paused: the tentative `warm` above is
                // not news unless it holds.
                self.announce(id);
                tracing::info!(id, "idle: sprite is warm (paused)");
                self.metrics.hibernated("warm");
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "pausing an idle sprite failed");
                slot.state().status = Status::Running;
                slot.state().last_activity = Instant::now();
            }
        }
    }

    /// Warm → cold: processes stopped, memory freed, volume unmounted.
    async fn stop_idle(&self, id: &str, slot: &Arc<SpriteSlot>) {
        let Ok(_g) = slot.lifecycle.try_lock() else {
            return;
        };
        if slot.state().status != Status::Warm || slot.active() > 0 {
            // Someone is waking it (and waits for this lock).
            return;
        }
        match self.halt(id, STOP_GRACE, Release::Unmount).await {
            Ok(()) => {
                tracing::info!(id, "idle: sprite is cold (stopped)");
                self.metrics.hibernated("cold");
            }
            Err(e) => tracing::warn!(id, error = %e, "stopping an idle sprite failed"),
        }
        slot.state().warm_since = None;
        slot.state().status = Status::Cold;
        self.announce(id);
    }

    /// Sessions whose command still runs inside, as the agent counts them.
    async fn running_sessions(&self, id: &str) -> Result<u32, String> {
        self.ask_busy(id)
            .await
            .ok_or_else(|| "the agent did not answer in time".to_string())?
            .map_err(|e| e.to_string())
    }

    /// Asks the sprite's agent how many sessions still run; `None` when it
    /// did not answer within [`BUSY_TIMEOUT`].
    pub(super) async fn ask_busy(&self, id: &str) -> Option<Result<u32, AgentError>> {
        let ask = async {
            let conv = agent_conn::open(&self.socket_path(id), &Request::Busy).await?;
            agent_conn::exec::running_sessions(conv).await
        };
        tokio::time::timeout(BUSY_TIMEOUT, ask).await.ok()
    }
}
