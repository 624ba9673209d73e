//! Continuous replication: every sprite whose volume changed is shipped to
//! the object store as a crash-consistent snapshot at most
//! `--replicate-every` after the change, so a lost disk loses at most that
//! much. A snapshot is a clone of the volume as it is on disk at that
//! instant (no freeze, no stop: see `sprite_store::replica`), sent in the
//! eviction's chunk format as manifest `sprites/<id>/snapshots/<unix ms>`.
//! Only chunks whose disk blocks differ from the last snapshot's kept
//! clone are read and sent; a sprite whose volume did not change costs one
//! FIEMAP per look while it runs, and nothing once it is paused or stopped
//! and found unchanged.
//!
//! A snapshot is recorded (table `snapshots`) after its manifest is
//! durable; a crash before leaves an unrecorded manifest the next snapshot
//! does not depend on. Snapshots older than `--snapshot-retention` go,
//! the newest never. A store that cannot be reached makes replication lag
//! (visible in the sprite's `storage` and in `/metrics`), never local work.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sprite_cold::CHUNK_SIZE;
use sprites_api::sprite::Status;

use sprites_api::checkpoint::Snapshot as ApiSnapshot;

use super::checkpoints::Progress;
use super::{blocking, Manager};
use crate::db::{Snapshot, SpriteRecord};
use crate::error::Error;
use crate::failpoint;

pub(crate) fn snapshot_manifest(id: &str, at_ms: u64, epoch: i64) -> String {
    format!("{}snapshots/{at_ms}", super::cold::sprite_prefix(id, epoch))
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the replicator knows of one sprite, in memory.
#[derive(Debug, Default)]
pub(crate) struct Replication {
    /// A replication of it is under way.
    busy: bool,
    /// It was found unchanged while in this status (warm or cold: nothing
    /// can write to it until its status changes).
    settled_in: Option<Status>,
    /// Since when it has changes not yet replicated, as last looked at.
    behind_since: Option<Instant>,
    /// Why the last replication failed.
    error: Option<String>,
    /// Hash of its metadata as last written to the store (see
    /// [`super::recover`]).
    pub(super) meta_written: Option<blake3::Hash>,
}

impl Manager {
    /// Runs replication for as long as the manager lives (unless
    /// `--replicate-every 0`).
    pub fn spawn_replication(self: &Arc<Self>) {
        let every = self.cfg.replicate_every;
        if every.is_zero() {
            return;
        }
        let tick = (every / 3).clamp(Duration::from_millis(200), Duration::from_secs(10));
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(m) = me.upgrade() else { break };
                m.replication_pass(tick);
            }
        });
    }

    /// One look at every sprite; replications run in tasks of their own.
    fn replication_pass(self: &Arc<Self>, tick: Duration) {
        let Ok(records) = self.db.mine() else { return };
        let mut lag = 0.0f64;
        for rec in records {
            let Some(slot) = self.existing_slot(&rec.id) else {
                continue;
            };
            let status = slot.status();
            {
                let mut r = slot.replication();
                if let Some(since) = r.behind_since {
                    lag = lag.max(since.elapsed().as_secs_f64());
                }
                if r.busy || r.settled_in == Some(status) {
                    continue;
                }
                r.settled_in = None;
                r.busy = true;
            }
            let m = self.clone();
            tokio::spawn(async move {
                let result = m.replicate(&rec, tick).await;
                tracing::trace!(sprite = %rec.name, ?status, ?result, "replication look");
                if matches!(result, Ok(Outcome::Sent { .. })) {
                    // Its metadata with it (usage as of now).
                    if let Err(e) = m.put_meta(&rec).await {
                        tracing::debug!(sprite = %rec.name, error = %e, "the sprite's metadata goes to the store at the next sweep");
                    }
                }
                let slot = m.existing_slot(&rec.id);
                let Some(slot) = slot else { return };
                let mut r = slot.replication();
                r.busy = false;
                match result {
                    Ok(Outcome::Unchanged) => {
                        r.behind_since = None;
                        r.error = None;
                        if matches!(status, Status::Warm | Status::Cold) {
                            r.settled_in = Some(status);
                        }
                    }
                    Ok(Outcome::Sent { changed_at }) => {
                        // Writes made after the clone are the next one's.
                        r.behind_since = r.behind_since.filter(|s| *s > changed_at);
                        r.error = None;
                    }
                    // Behind since `replicate` saw the change.
                    Ok(Outcome::NotDue) | Ok(Outcome::Skipped) => {}
                    Err(e) => {
                        if r.error.is_none() {
                            tracing::warn!(sprite = %rec.name, error = %e, "replication failed; retrying, local work goes on");
                        }
                        r.behind_since.get_or_insert_with(Instant::now);
                        r.error = Some(e.to_string());
                        m.metrics.replicated(false, 0);
                    }
                }
            });
        }
        self.metrics.replication_lag(lag);
    }

    /// Looks at one sprite and replicates it if it changed and is due.
    async fn replicate(&self, rec: &SpriteRecord, tick: Duration) -> Result<Outcome, Error> {
        let slot = self.slot(&rec.id);
        let last = self.db.last_snapshot(&rec.id)?;
        let epoch = self.db.held_epoch(&rec.id)?;
        // The look and the clone under the lifecycle lock: no restore,
        // eviction or destroy swaps or removes the volume meanwhile.
        let guard = slot.lifecycle.lock().await;
        if !slot.cold.is_whole_locally() || !self.store.volume_exists(&rec.id) {
            return Ok(Outcome::Skipped);
        }
        let store = self.store.clone();
        let id = rec.id.clone();
        let base = last.map(|l| l.at_ms);
        let changes = blocking(move || {
            base.map(|at| store.volume_changes(&id, at, CHUNK_SIZE))
                .transpose()
                .map_err(Error::store("reading the volume's extents"))
        })
        .await?
        .flatten();
        if changes.as_ref().is_some_and(|c| c.is_empty()) {
            return Ok(Outcome::Unchanged);
        }
        // Behind from the moment a change is seen: the lag counts while
        // it waits to be due, to be cloned and to be sent.
        slot.replication()
            .behind_since
            .get_or_insert_with(Instant::now);
        // Changed: shipped once the last snapshot is old enough that the
        // next look would be past `--replicate-every`.
        let due = last.is_none_or(|l| {
            let age = Duration::from_millis(now_ms().saturating_sub(l.at_ms));
            age + tick >= self.cfg.replicate_every
        });
        if !due {
            return Ok(Outcome::NotDue);
        }
        let changed_at = Instant::now();
        let at = now_ms().max(last.map_or(0, |l| l.at_ms + 1));
        let store = self.store.clone();
        let id = rec.id.clone();
        let clone = blocking(move || {
            store
                .clone_for_replica(&id)
                .map_err(Error::store("cloning the volume"))
        })
        .await?;
        drop(guard);

        let what = format!("replicating sprite {}", rec.name);
        let store = self.store.clone();
        let (id, c) = (rec.id.clone(), clone.clone());
        let changed = blocking(move || {
            base.map(|at| store.clone_changes(&id, at, &c, CHUNK_SIZE))
                .transpose()
                .map_err(Error::store("reading the clone's extents"))
        })
        .await?
        .flatten();
        let base_manifest = match (last, &changed) {
            (Some(l), Some(_)) => Some(
                self.cold
                    .get_manifest(&snapshot_manifest(&rec.id, l.at_ms, l.epoch))
                    .await
                    .map_err(Error::cold(&what))?,
            ),
            _ => None,
        };
        let since = base_manifest.as_ref().zip(changed.as_deref());
        let points = |done: u64, total: u64| {
            if done == total.div_ceil(2) {
                failpoint::hit("replicate-uploading");
            }
            if done == total {
                // Every chunk sent, the manifest not yet.
                failpoint::hit("replicate-chunks-sent");
            }
        };
        let stats = self
            .upload(
                &clone,
                &snapshot_manifest(&rec.id, at, epoch),
                since,
                Some(&points),
            )
            .await
            .map_err(Error::cold(&what))?;
        failpoint::hit("replicate-uploaded");

        // Recorded under the lock: a sprite destroyed meanwhile is not,
        // and one evicted meanwhile keeps no clone on local disk.
        let _g = slot.lifecycle.lock().await;
        if self.db.get_by_id(&rec.id)?.is_none() {
            let _ = std::fs::remove_file(&clone);
            let _ = self
                .cold
                .delete_manifest(&snapshot_manifest(&rec.id, at, epoch))
                .await;
            return Ok(Outcome::Skipped);
        }
        let snap = Snapshot {
            at_ms: at,
            stored_bytes: stats.manifest.stored_bytes(),
            data_bytes: stats.manifest.data_bytes(),
            epoch,
        };
        self.db.add_snapshot(&rec.id, &snap)?;
        failpoint::hit("replicate-recorded");
        let store = self.store.clone();
        let id = rec.id.clone();
        let local = slot.cold.is_whole_locally();
        blocking(move || {
            if local {
                store
                    .keep_replica(&id, &clone, at)
                    .map_err(Error::store("keeping the replica"))?;
            } else {
                let _ = std::fs::remove_file(&clone);
            }
            store
                .drop_replicas_except(&id, local.then_some(at))
                .map_err(Error::store("removing old replicas"))
        })
        .await?;
        self.expire_snapshots(rec).await;
        self.metrics.replicated(true, stats.bytes_sent);
        tracing::debug!(
            sprite = %rec.name,
            chunks_read = changed.as_ref().map_or(stats.chunks, |c| c.len() as u64),
            chunks_sent = stats.chunks_sent,
            bytes_sent = stats.bytes_sent,
            ms = stats.elapsed.as_secs_f64() * 1e3,
            "volume replicated"
        );
        Ok(Outcome::Sent { changed_at })
    }

    /// Removes snapshots older than the retention, the newest always kept.
    async fn expire_snapshots(&self, rec: &SpriteRecord) {
        let Ok(snaps) = self.db.snapshots(&rec.id) else {
            return;
        };
        let keep_after = now_ms().saturating_sub(self.cfg.snapshot_retention.as_millis() as u64);
        for s in snaps.iter().skip(1).filter(|s| s.at_ms < keep_after) {
            // The record first: a snapshot listed is one that can be used.
            if self.db.delete_snapshot(&rec.id, s.at_ms).is_err() {
                return;
            }
            if let Err(e) = self
                .cold
                .delete_manifest(&snapshot_manifest(&rec.id, s.at_ms, s.epoch))
                .await
            {
                tracing::debug!(sprite = %rec.name, error = %e, "an expired snapshot's manifest stays until the next sweep");
            }
        }
    }

    /// What `storage` says of replication beside the newest snapshot (in
    /// the database): how far behind the volume is, why it last failed.
    pub(super) fn replication_state(&self, id: &str) -> (f64, Option<String>) {
        match self.existing_slot(id) {
            Some(slot) => {
                let r = slot.replication();
                (
                    r.behind_since.map_or(0.0, |s| s.elapsed().as_secs_f64()),
                    r.error.clone(),
                )
            }
            None => (0.0, None),
        }
    }

    /// Start-up: a sprite whose volume is gone from local disk (a lost or
    /// replaced disk) but that has a replicated snapshot comes back from
    /// it, as if evicted then: its newest snapshot becomes its volume in
    /// the store and the next request wakes it from there. False when
    /// there is no snapshot to come back from.
    pub(super) async fn recover_from_snapshot(&self, rec: &SpriteRecord) -> Result<bool, Error> {
        let Some(snap) = self.db.last_snapshot(&rec.id)? else {
            return Ok(false);
        };
        let what = format!(
            "bringing sprite {} back from its replicated snapshot",
            rec.name
        );
        let m = self
            .cold
            .get_manifest(&snapshot_manifest(&rec.id, snap.at_ms, snap.epoch))
            .await
            .map_err(Error::cold(&what))?;
        let epoch = self.db.held_epoch(&rec.id)?;
        self.cold
            .put_manifest(&super::cold::volume_manifest(&rec.id, epoch), &m)
            .await
            .map_err(Error::cold(&what))?;
        self.db.set_evicted(
            &rec.id,
            &crate::db::ColdCopy {
                at: crate::time::now_rfc3339(),
                stored_bytes: snap.stored_bytes,
                data_bytes: snap.data_bytes,
                epoch,
            },
        )?;
        tracing::warn!(sprite = %rec.name, snapshot_ms = snap.at_ms, "the sprite's volume is gone from local disk; it comes back from its last replicated snapshot");
        Ok(true)
    }
}

impl Manager {
    /// The sprite's replicated snapshots, newest first.
    pub fn list_snapshots(&self, rec: &SpriteRecord) -> Result<Vec<ApiSnapshot>, Error> {
        Ok(self
            .db
            .snapshots(&rec.id)?
            .into_iter()
            .map(|s| ApiSnapshot {
                id: s.at_ms.to_string(),
                create_time: crate::time::rfc3339_of_ms(s.at_ms),
                data_bytes: s.data_bytes,
                stored_bytes: s.stored_bytes,
            })
            .collect())
    }

    /// Snapshot `id` of the sprite, or 404.
    pub fn snapshot(&self, rec: &SpriteRecord, id: &str) -> Result<u64, Error> {
        Ok(self.snapshot_named(rec, id)?.at_ms)
    }

    /// [`Manager::snapshot`], the whole record.
    fn snapshot_named(&self, rec: &SpriteRecord, id: &str) -> Result<Snapshot, Error> {
        let at: Option<u64> = id.parse().ok();
        let found = at.and_then(|at| {
            self.db
                .snapshots(&rec.id)
                .ok()?
                .into_iter()
                .find(|s| s.at_ms == at)
        });
        found.ok_or_else(|| Error::NotFound(format!("sprite {} has no snapshot {id}", rec.name)))
    }

    /// Rolls the sprite's filesystem back to replicated snapshot `at`: the
    /// image is fetched whole first (the sprite runs on meanwhile), then
    /// its processes are stopped, the volume swapped, and it starts again.
    /// The sprite stands on no checkpoint afterwards.
    pub async fn restore_snapshot(
        &self,
        rec: &SpriteRecord,
        at: u64,
        progress: &Progress,
    ) -> Result<(), Error> {
        let slot = self.slot(&rec.id);
        let _g = slot.lifecycle.lock().await;
        let snap = self.snapshot_named(rec, &at.to_string())?;
        let when = crate::time::rfc3339_of_ms(at);
        let what = format!("restoring sprite {} to its snapshot of {when}", rec.name);
        let _ = progress.send(format!(
            "Fetching the snapshot of {when} from object storage..."
        ));
        let t0 = Instant::now();
        let m = self
            .cold
            .get_manifest(&snapshot_manifest(&rec.id, at, snap.epoch))
            .await
            .map_err(Error::cold(&what))?;
        let store = self.store.clone();
        let id = rec.id.clone();
        let tmp = blocking(move || {
            store
                .volume_rebuild_path(&id)
                .map_err(Error::store("preparing the volume"))
        })
        .await?;
        self.download_synced(&m, &tmp, None, &what).await?;
        let fetched = t0.elapsed();
        let _ = progress.send("Stopping sprite...".to_string());
        // The old volume is let go of once the sprite runs again (below).
        let discarded = self
            .halt_keeping(&rec.id, Duration::ZERO, super::Release::Discard)
            .await?;
        self.set_status(&rec.id, Status::Cold);
        let _ = progress.send(format!(
            "Restoring filesystem from the snapshot of {when}..."
        ));
        let store = self.store.clone();
        let id = rec.id.clone();
        let swapped = blocking(move || {
            store
                .install_volume(&id, &tmp)
                .map_err(Error::store("installing the volume"))?;
            // A fill left unfinished (the store down at the stop) is moot.
            sprite_cold::lazy::remove_state(&store.volume_state_path(&id))
                .map_err(Error::cold("removing the fill record"))
        })
        .await;
        if swapped.is_ok() {
            self.mark_local(rec)?;
            self.db.set_current_checkpoint(&rec.id, None)?;
        }
        let _ = progress.send("Starting sprite...".to_string());
        // As a checkpoint's restore: the old volume, if it is still this
        // file, is let go of (and waited for) before the mount.
        let discarded = discarded.filter(|_| swapped.is_ok());
        let started = self.start_locked(rec).await;
        drop(discarded);
        swapped?;
        started?;
        tracing::info!(
            sprite = %rec.name,
            snapshot_ms = at,
            fetch_ms = fetched.as_secs_f64() * 1e3,
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "snapshot restored"
        );
        Ok(())
    }
}

impl Manager {
    /// Makes `new_id`'s volume a copy of the source's replicated snapshot
    /// `at`, fetched whole from the store (the expiry of the snapshot
    /// meanwhile cannot take it: a manifest read is used whole).
    pub(super) async fn fork_snapshot(
        &self,
        source: &SpriteRecord,
        at: u64,
        new_id: &str,
    ) -> Result<(), Error> {
        let what = format!(
            "forking sprite {} from its snapshot of {}",
            source.name,
            crate::time::rfc3339_of_ms(at)
        );
        let snap = self.snapshot_named(source, &at.to_string())?;
        let m = self
            .cold
            .get_manifest(&snapshot_manifest(&source.id, at, snap.epoch))
            .await
            .map_err(Error::cold(&what))?;
        let store = self.store.clone();
        let id = new_id.to_string();
        let tmp = blocking(move || {
            store
                .volume_rebuild_path(&id)
                .map_err(Error::store("preparing the volume"))
        })
        .await?;
        self.download_synced(&m, &tmp, None, &what).await?;
        let store = self.store.clone();
        let id = new_id.to_string();
        blocking(move || {
            store
                .install_volume(&id, &tmp)
                .map_err(Error::store("installing the volume"))
        })
        .await
    }
}

/// What one look at a sprite did.
#[derive(Debug)]
enum Outcome {
    /// Nothing changed since the last snapshot.
    Unchanged,
    /// Changed, but the last snapshot is too recent.
    NotDue,
    /// A snapshot was sent, of the volume as it was at `changed_at`.
    Sent { changed_at: Instant },
    /// Not replicated now (evicted, still filling, no volume, destroyed).
    Skipped,
}
