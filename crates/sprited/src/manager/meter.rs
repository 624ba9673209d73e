//! Metering: every `meter_interval` each sprite's CPU time (from its cgroup's
//! counter), memory (sampled, integrated over time) and hot storage (the
//! allocated bytes of its volume and checkpoints, integrated) are booked
//! into per-minute rows, with cold storage (what its images take in the
//! object store). A cold sprite accrues only storage.
//!
//! Each round of samples and the point the meter stands at are written in
//! one transaction, and each sample covers the time since the previous one:
//! a restart of the daemon continues from the last committed sample and
//! counts nothing twice. A sprite that stops (cold, restore, destroy) gets a
//! last sample first, so nothing it used between samples is lost.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sprites_api::sprite::Status;

use super::{blocking, lock, Manager};
use sprite_runtime::SandboxStats;

use crate::db::{Usage, UsageSample};
use crate::error::Error;

/// The longest gap one sample books (a daemon down for a day books at most
/// this much memory and storage time for it).
const MAX_GAP: Duration = Duration::from_secs(3600);

const GB: f64 = 1e9;

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Manager {
    /// Samples every sprite every `meter_interval` for as long as the
    /// manager lives.
    pub fn spawn_meter(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let interval = self.cfg.meter_interval;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(m) = me.upgrade() else { break };
                if let Err(e) = m.meter_all().await {
                    tracing::warn!(error = %e, "metering failed");
                }
            }
        });
    }

    async fn meter_all(self: &Arc<Self>) -> Result<(), Error> {
        let me = self.clone();
        blocking(move || {
            let records = me.db.mine()?;
            let _g = lock(&me.meter_lock);
            let samples: Vec<UsageSample> = records
                .iter()
                .filter_map(|r| me.sample(&r.id, &r.name).ok())
                .collect();
            me.db.record_usage(&samples)?;
            Ok(())
        })
        .await
    }

    /// A last sample of one sprite, before it stops or goes.
    pub(super) async fn meter_one(&self, id: &str) {
        self.meter_one_begun(id).await.finish().await;
    }

    /// [`Manager::meter_one`] in two halves: the sandbox's counters are
    /// read when this returns, so it may be stopped from then on; what is
    /// left (the database, the sizes on disk: most of the ~1 ms) goes on
    /// meanwhile, and is done when [`Metering::finish`] returns.
    pub(super) async fn meter_one_begun(&self, id: &str) -> Metering {
        let Some(me) = self.arc() else {
            return Metering(None);
        };
        let running = matches!(self.status(id), Status::Running | Status::Warm);
        let driver = self.driver.clone();
        let sid = id.to_string();
        let stats = match running {
            true => tokio::task::spawn_blocking(move || driver.stats(&sid).ok())
                .await
                .ok()
                .flatten(),
            false => None,
        };
        let id = id.to_string();
        Metering(Some(tokio::task::spawn_blocking(move || {
            let Some(rec) = me.db.get_by_id(&id)? else {
                return Ok(());
            };
            let _g = lock(&me.meter_lock);
            let sample = me.sample_of(&rec.id, &rec.name, stats)?;
            me.db.record_usage(&[sample])?;
            Ok(())
        })))
    }

    /// What the sprite used since its last sample. The caller holds the
    /// meter lock until the sample is recorded.
    fn sample(&self, id: &str, name: &str) -> Result<UsageSample, Error> {
        let running = matches!(self.status(id), Status::Running | Status::Warm);
        let stats = if running {
            self.driver.stats(id).ok()
        } else {
            None
        };
        self.sample_of(id, name, stats)
    }

    /// [`Manager::sample`] with the sandbox's counters as read already
    /// (`None`: not running).
    fn sample_of(
        &self,
        id: &str,
        name: &str,
        stats: Option<SandboxStats>,
    ) -> Result<UsageSample, Error> {
        let now = SystemTime::now();
        let now_ms = unix_ms(now);
        let prev = self.db.meter_state(id)?;
        let elapsed = prev
            .map(|p| Duration::from_millis(now_ms.saturating_sub(p.sampled_unix_ms).max(0) as u64))
            .unwrap_or_default()
            .min(MAX_GAP)
            .as_secs_f64();
        let cpu_ns = stats.map(|s| s.cpu_usage_ns).unwrap_or(0);
        let cpu_delta_ns = match (prev, stats) {
            // The counter went back: the sandbox started anew since.
            (Some(p), Some(s)) if p.running && s.cpu_usage_ns >= p.cpu_ns => {
                s.cpu_usage_ns - p.cpu_ns
            }
            (_, Some(s)) => s.cpu_usage_ns,
            (_, None) => 0,
        };
        let ram = stats.map(|s| s.memory_bytes as f64).unwrap_or(0.0);
        match stats {
            Some(s) => self
                .metrics
                .sampled(name, s.cpu_usage_ns as f64 / 1e9, s.memory_bytes),
            None => self.metrics.forget(name),
        }
        let hot = self.hot_bytes(id) as f64;
        let cold = self.cold_bytes(id) as f64;
        Ok(UsageSample {
            sprite_id: id.to_string(),
            sprite_name: name.to_string(),
            minute: now_ms / 60_000,
            usage: Usage {
                cpu_seconds: cpu_delta_ns as f64 / 1e9,
                ram_gb_seconds: ram / GB * elapsed,
                hot_storage_gb_seconds: hot / GB * elapsed,
                cold_storage_gb_hours: cold / GB * elapsed / 3600.0,
            },
            sampled_unix_ms: now_ms,
            cpu_ns,
            running: stats.is_some(),
        })
    }

    /// Bytes the sprite's images take in the object store: an evicted
    /// volume and every checkpoint with a copy there.
    fn cold_bytes(&self, id: &str) -> u64 {
        let volume = self
            .db
            .evicted(id)
            .ok()
            .flatten()
            .map_or(0, |c| c.stored_bytes);
        let checkpoints: u64 = self
            .db
            .cold_checkpoints(id)
            .map(|m| m.values().map(|c| c.stored_bytes).sum())
            .unwrap_or(0);
        volume + checkpoints
    }

    /// Allocated bytes of the sprite's volume and checkpoints.
    fn hot_bytes(&self, id: &str) -> u64 {
        let volume = self
            .store
            .volume_usage(id)
            .map(|u| u.allocated_bytes)
            .unwrap_or(0);
        volume + self.store.checkpoints_allocated_bytes(id).unwrap_or(0)
    }
}

/// The rest of a last sample under way (see [`Manager::meter_one_begun`]).
pub(super) struct Metering(Option<tokio::task::JoinHandle<Result<(), Error>>>);

impl Metering {
    /// Waits for the sample to be recorded (a failure is logged: a stop
    /// never fails for its metering).
    pub(super) async fn finish(self) {
        let Some(task) = self.0 else { return };
        let done = match task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Internal(format!("metering task: {e}"))),
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "metering a stopping sprite");
        }
    }
}
