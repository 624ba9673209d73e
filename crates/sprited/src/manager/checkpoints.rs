//! Checkpoints, restore and fork, under each sprite's lifecycle lock.
//!
//! Crash safety comes from the order of steps: a checkpoint is allocated a
//! number, written as a complete image (store: freeze, clone, thaw, fsync,
//! rename) and only then recorded, so after a crash it is either listed and
//! whole or absent (an image without a record is removed at start-up). A
//! restore swaps the whole volume image in one rename while the sprite is
//! stopped, so the volume is the old one or the restored one, never a mix.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sprite_store::{Settled, StoreError};
use sprites_api::checkpoint::{Checkpoint, ForkSource};

use super::{blocking, Manager, Release};
use crate::db::{CheckpointRecord, SpriteRecord};
use crate::error::Error;
use crate::failpoint;
use crate::time::now_rfc3339;
use sprites_api::sprite::Status;

/// How many checkpoints are shown inside the sprite (the newest).
pub const VISIBLE_CHECKPOINTS: usize = 5;

/// Progress messages of a long operation, for the NDJSON stream.
pub type Progress = tokio::sync::mpsc::UnboundedSender<String>;

fn say(progress: &Progress, msg: impl Into<String>) {
    let _ = progress.send(msg.into());
}

/// Which checkpoints a list shows (`?history=vN&includeAuto=true`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointFilter {
    /// Only `vN`'s branch: `vN`, the checkpoints it descends from and those
    /// descended from it (through `source_id`, as far as they are kept).
    pub history: Option<String>,
    /// Automatic checkpoints too; they are hidden otherwise.
    pub include_auto: bool,
}

impl CheckpointFilter {
    /// The checkpoints of `all` (in their order) that the filter lets
    /// through. Each checkpoint's `history` is its lineage ([`with_history`]),
    /// which is what the branch of `?history=` is read from.
    pub fn apply(&self, all: Vec<Checkpoint>) -> Vec<Checkpoint> {
        let branch = self.history.as_deref().map(|h| {
            let above: HashSet<&str> = all
                .iter()
                .find(|c| c.id == h)
                .map(|c| c.history.iter().map(String::as_str).collect())
                .unwrap_or_default();
            (h, above)
        });
        let keep: Vec<bool> = all
            .iter()
            .map(|c| {
                let auto_ok = self.include_auto || c.is_auto != Some(true);
                let branch_ok = branch.as_ref().is_none_or(|(h, above)| {
                    c.id == *h || above.contains(c.id.as_str()) || c.history.iter().any(|a| a == h)
                });
                auto_ok && branch_ok
            })
            .collect();
        all.into_iter()
            .zip(keep)
            .filter_map(|(c, k)| k.then_some(c))
            .collect()
    }
}

/// `all` with each checkpoint's `history` filled in: the ids it descends
/// from through `source_id`, nearest first.
fn with_history(mut all: Vec<Checkpoint>) -> Vec<Checkpoint> {
    let source: HashMap<String, String> = all
        .iter()
        .filter_map(|c| Some((c.id.clone(), c.source_id.clone()?)))
        .collect();
    for c in &mut all {
        c.history = lineage(&source, &c.id);
    }
    all
}

fn no_checkpoint(rec: &SpriteRecord, id: &str) -> Error {
    Error::NotFound(format!("sprite {} has no checkpoint {id}", rec.name))
}

/// What a fork starts from.
pub(crate) enum ForkFrom {
    Checkpoint(String),
    /// A replicated snapshot, by its time (unix ms).
    Snapshot(u64),
}

impl Manager {
    /// The wire form of a recorded checkpoint.
    pub fn checkpoint_json(&self, c: &CheckpointRecord, current: Option<&str>) -> Checkpoint {
        Checkpoint {
            id: c.id.clone(),
            create_time: c.create_time.clone(),
            source_id: c.source_id.clone(),
            history: Vec::new(),
            comment: c.comment.clone(),
            is_auto: Some(c.is_auto),
            is_current: Some(current == Some(c.id.as_str())),
        }
    }

    /// The sprite's checkpoints that `filter` lets through; a history of a
    /// checkpoint that does not exist is a 404.
    pub fn list_checkpoints(
        &self,
        rec: &SpriteRecord,
        filter: &CheckpointFilter,
    ) -> Result<Vec<Checkpoint>, Error> {
        let all = self.all_checkpoints(rec)?;
        if let Some(id) = &filter.history {
            if !all.iter().any(|c| c.id == *id) {
                return Err(no_checkpoint(rec, id));
            }
        }
        Ok(filter.apply(all))
    }

    /// Every checkpoint of the sprite, each with its history.
    fn all_checkpoints(&self, rec: &SpriteRecord) -> Result<Vec<Checkpoint>, Error> {
        let current = self.db.current_checkpoint(&rec.id)?;
        let all = self
            .db
            .checkpoints(&rec.id)?
            .iter()
            .map(|c| self.checkpoint_json(c, current.as_deref()))
            .collect();
        Ok(with_history(all))
    }

    /// The checkpoint `id` of the sprite, 404 if there is none (or the id
    /// is not one at all).
    pub fn checkpoint(&self, rec: &SpriteRecord, id: &str) -> Result<Checkpoint, Error> {
        if sprites_api::checkpoint::parse_id(id).is_none() {
            return Err(no_checkpoint(rec, id));
        }
        self.all_checkpoints(rec)?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| no_checkpoint(rec, id))
    }

    /// Takes a checkpoint of the sprite's filesystem, running or not; its
    /// processes keep running.
    pub async fn create_checkpoint(
        &self,
        rec: &SpriteRecord,
        comment: Option<String>,
        progress: &Progress,
    ) -> Result<CheckpointRecord, Error> {
        if comment
            .as_ref()
            .is_some_and(|c| c.len() > sprites_api::checkpoint::MAX_COMMENT_BYTES)
        {
            return Err(Error::Invalid(format!(
                "comment is longer than {} bytes",
                sprites_api::checkpoint::MAX_COMMENT_BYTES
            )));
        }
        let t0 = std::time::Instant::now();
        let slot = self.slot(&rec.id);
        let _g = slot.lifecycle.lock().await;
        let locked = t0.elapsed();
        self.admit_checkpoint(rec)?;
        // A warm sprite's tasks are frozen by the cgroup freezer, possibly
        // inside a write: freezing its filesystem could then wait for ever.
        // Thaw it first (it goes warm again when idle). A cold one has no
        // mounted filesystem: its image is cloned as it is.
        if self.status(&rec.id) == Status::Warm {
            self.wake_locked(rec).await?;
        }
        // A volume still filling itself from the object store is waited
        // for, and a cold evicted one brought back whole, to be cloned.
        if slot.cold.is_filling() {
            say(
                progress,
                "Waiting for the volume to arrive from object storage...",
            );
            self.wait_filled(rec).await?;
        } else {
            self.rehydrate_locked(rec).await?;
        }
        // The number is taken for good only when the checkpoint is recorded
        // (one transaction, after the image is complete): a checkpoint that
        // failed or was cut short by a crash leaves no gap and no trace.
        let ready = t0.elapsed();
        let seq = self.db.next_checkpoint_seq(&rec.id)?;
        let id = format!("v{seq}");
        let source_id = self.db.current_checkpoint(&rec.id)?;
        let numbered = t0.elapsed();
        say(progress, format!("Creating checkpoint {id}..."));
        let store = self.store.clone();
        let (sprite, ck) = (rec.id.clone(), id.clone());
        if slot.cold.is_filling() && failpoint::armed_at("checkpoint-lazy-stall") {
            // Crash tests: the freeze's flush is never answered.
            sprite_cold::lazy::stall_syncs();
        }
        let stats = match blocking(move || {
            store
                .create_checkpoint_with(&sprite, &ck, &|| failpoint::hit("checkpoint-cloning"))
                .map_err(Error::store("checkpoint failed"))
        })
        .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(sprite = %rec.name, checkpoint = %id, error = %e, "checkpoint failed");
                return Err(e);
            }
        };
        let saved_at = t0.elapsed();
        failpoint::hit("checkpoint-saved");
        let record = CheckpointRecord {
            id: id.clone(),
            seq,
            create_time: now_rfc3339(),
            source_id,
            comment: comment.filter(|c| !c.is_empty()),
            is_auto: false,
        };
        self.db.insert_checkpoint(&rec.id, &record)?;
        let recorded = t0.elapsed();
        self.poke_uploads();
        let saved = if stats.frozen_for.is_zero() {
            format!(
                "Filesystem saved (synced in {:.1} ms, {:.1} ms in all)",
                ms(stats.synced_for),
                ms(stats.total)
            )
        } else {
            format!(
                "Filesystem saved (frozen for {:.1} ms, {:.1} ms in all)",
                ms(stats.frozen_for),
                ms(stats.total)
            )
        };
        say(progress, saved);
        tracing::info!(sprite = %rec.name, checkpoint = %id, synced_ms = ms(stats.synced_for), frozen_ms = ms(stats.frozen_for), total_ms = ms(stats.total), "checkpoint created");
        self.metrics.checkpointed(stats.total.as_secs_f64());
        self.refresh_views(rec);
        tracing::debug!(
            sprite = %rec.name,
            checkpoint = %id,
            locked_ms = ms(locked),
            ready_ms = ms(ready),
            numbered_ms = ms(numbered),
            saved_ms = ms(saved_at),
            recorded_ms = ms(recorded),
            done_ms = ms(t0.elapsed()),
            "checkpoint timings"
        );
        Ok(record)
    }

    /// Rolls the sprite's filesystem back to checkpoint `id`: its processes
    /// are stopped (sessions end), the volume is swapped for a clone of the
    /// checkpoint, and the sprite starts again.
    pub async fn restore_checkpoint(
        &self,
        rec: &SpriteRecord,
        id: &str,
        progress: &Progress,
    ) -> Result<(), Error> {
        let slot = self.slot(&rec.id);
        let _g = slot.lifecycle.lock().await;
        if self.db.checkpoint(&rec.id, id)?.is_none() {
            return Err(no_checkpoint(rec, id));
        }
        if !self.store.checkpoint_exists(&rec.id, id) {
            say(progress, format!("Fetching {id} from object storage..."));
            self.checkpoint_local(rec, id).await?;
        }
        say(progress, "Stopping sprite...");
        let t0 = std::time::Instant::now();
        // The checkpoint's clone is made (and made durable) while the
        // sandbox stops: only putting it in the volume's place waits for
        // the unmount. Both are waited for, whatever either answers: a
        // clone left being made would outlive this restore's lock.
        let store = self.store.clone();
        let (sprite, ck) = (rec.id.clone(), id.to_string());
        let prepare = blocking(move || {
            store
                .prepare_restore(&sprite, &ck)
                .map_err(Error::store("restore failed"))
        });
        // The old volume is let go of once the sprite runs again (below).
        let halt = self.halt_keeping(&rec.id, Duration::ZERO, Release::Discard);
        let (halted, prepared) = tokio::join!(halt, prepare);
        let discarded = halted?;
        let stopped = t0.elapsed();
        self.set_status(&rec.id, Status::Cold);
        failpoint::hit("restore-stopped");
        say(progress, format!("Restoring filesystem from {id}..."));
        let swapped = match prepared {
            Ok(clone) => {
                blocking(move || clone.finish().map_err(Error::store("restore failed"))).await
            }
            Err(e) => Err(e),
        };
        let swapped_at = t0.elapsed();
        if swapped.is_ok() {
            failpoint::hit("restore-swapped");
            self.db.set_current_checkpoint(&rec.id, Some(id))?;
            // The volume is the checkpoint's clone now, local whatever it was.
            self.mark_local(rec)?;
        }
        say(progress, "Starting sprite...");
        // Start again whether or not the swap worked: a failed restore must
        // not leave the sprite down.
        // Swapped, the old volume is another file now, let go of once the
        // sprite runs again; not, it is this file: let go of now, and the
        // mount waits for its last writes (`ensure_not_attached`).
        let discarded = discarded.filter(|_| swapped.is_ok());
        let started = self.start_locked(rec).await;
        drop(discarded);
        swapped?;
        started?;
        tracing::info!(
            sprite = %rec.name,
            checkpoint = %id,
            stop_ms = ms(stopped),
            swap_ms = ms(swapped_at - stopped),
            start_ms = ms(t0.elapsed() - swapped_at),
            "checkpoint restored"
        );
        Ok(())
    }

    /// Deletes a checkpoint and frees its space. The one the sprite stands
    /// on (last created or restored) is refused with 409.
    pub async fn delete_checkpoint(&self, rec: &SpriteRecord, id: &str) -> Result<(), Error> {
        let slot = self.slot(&rec.id);
        let _g = slot.lifecycle.lock().await;
        if self.db.checkpoint(&rec.id, id)?.is_none() {
            return Err(no_checkpoint(rec, id));
        }
        if self.db.current_checkpoint(&rec.id)?.as_deref() == Some(id) {
            return Err(Error::Conflict(format!(
                "checkpoint {id} is the one sprite {} currently stands on (its last created or restored); it cannot be deleted",
                rec.name
            )));
        }
        // Where its copy in the store is (if it has one).
        let epoch = self
            .db
            .cold_checkpoints(&rec.id)?
            .get(id)
            .map_or(0, |c| c.epoch);
        // Record first, file second: a crash between leaves an orphan file,
        // which start-up removes.
        self.db.delete_checkpoint(&rec.id, id)?;
        let store = self.store.clone();
        let views = slot.views.clone();
        let (sprite, ck) = (rec.id.clone(), id.to_string());
        blocking(move || {
            let _v = views.lock().unwrap_or_else(|p| p.into_inner());
            match store.delete_checkpoint(&sprite, &ck) {
                Ok(()) | Err(StoreError::CheckpointMissing { .. }) => Ok(()),
                Err(e) => Err(Error::store("deleting the checkpoint")(e)),
            }
        })
        .await?;
        if let Err(e) = self
            .cold
            .delete_manifest(&super::cold::checkpoint_manifest(&rec.id, id, epoch))
            .await
        {
            tracing::warn!(sprite = %rec.name, checkpoint = %id, error = %e, "cannot remove the checkpoint's copy from the object store");
        }
        tracing::info!(sprite = %rec.name, checkpoint = %id, "checkpoint deleted");
        self.refresh_views(rec);
        Ok(())
    }

    /// Checks a fork's source: the sprite and its checkpoint exist.
    pub(super) fn fork_source(
        &self,
        src: &ForkSource,
        image: Option<&str>,
    ) -> Result<(SpriteRecord, ForkFrom), Error> {
        let source = self.get(&src.sprite)?;
        let from = match (&src.snapshot, src.checkpoint.as_str()) {
            (Some(_), c) if !c.is_empty() => {
                return Err(Error::Invalid(
                    "source names a checkpoint and a snapshot: name one".into(),
                ))
            }
            (Some(snap), _) => ForkFrom::Snapshot(self.snapshot(&source, snap)?),
            (None, c) => ForkFrom::Checkpoint(self.checkpoint(&source, c)?.id),
        };
        if let Some(image) = image.filter(|i| *i != source.image) {
            return Err(Error::Invalid(format!(
                "a fork runs on its source's image ({}), not {image}",
                source.image
            )));
        }
        Ok((source, from))
    }

    /// Makes `new_id`'s volume a clone of the source's checkpoint, holding
    /// the source's lifecycle lock so the checkpoint cannot vanish midway;
    /// or a copy of one of its replicated snapshots, fetched from the store.
    pub(super) async fn fork_volume(
        &self,
        source: &SpriteRecord,
        from: &ForkFrom,
        new_id: &str,
    ) -> Result<(), Error> {
        let checkpoint = match from {
            ForkFrom::Checkpoint(c) => c,
            ForkFrom::Snapshot(at) => return self.fork_snapshot(source, *at, new_id).await,
        };
        let slot = self.slot(&source.id);
        let _g = slot.lifecycle.lock().await;
        if self.db.checkpoint(&source.id, checkpoint)?.is_none() {
            return Err(no_checkpoint(source, checkpoint));
        }
        self.checkpoint_local(source, checkpoint).await?;
        let store = self.store.clone();
        let (src, ck, dst) = (
            source.id.clone(),
            checkpoint.to_string(),
            new_id.to_string(),
        );
        blocking(move || {
            store
                .fork_volume(&src, &ck, &dst)
                .map_err(Error::store("fork failed"))
        })
        .await
    }

    /// Settles the newest checkpoints (`Store::settle_checkpoint`) and
    /// shows them inside the running sprite, in the background (a few ms
    /// of mounts that no request waits for).
    pub(super) fn refresh_views(&self, rec: &SpriteRecord) {
        let (db, store) = (self.db.clone(), self.store.clone());
        let views = self.slot(&rec.id).views.clone();
        let (id, image, name) = (rec.id.clone(), rec.image.clone(), rec.name.clone());
        // All of it off the request's path, the list read under the views'
        // lock: of two refreshes, the later one shows the later list.
        tokio::task::spawn_blocking(move || {
            let _v = views.lock().unwrap_or_else(|p| p.into_inner());
            let names: Vec<String> = match db.checkpoints(&id) {
                // Checkpoints only in object storage are not shown until fetched.
                Ok(list) => list
                    .into_iter()
                    .filter(|c| store.checkpoint_exists(&id, &c.id))
                    .take(VISIBLE_CHECKPOINTS)
                    .map(|c| c.id)
                    .collect(),
                Err(e) => {
                    tracing::warn!(sprite = %name, error = %e, "listing checkpoints");
                    return;
                }
            };
            // Their journals replayed first (once each: a settled one is
            // one read of its superblock), so that neither a view's mount
            // nor a restore's or fork's replays them again.
            for ck in &names {
                let t0 = std::time::Instant::now();
                match store.settle_checkpoint(&id, ck) {
                    Ok(Settled::Replayed) => {
                        tracing::debug!(sprite = %name, checkpoint = %ck, ms = ms(t0.elapsed()), "checkpoint settled: its journal replayed");
                    }
                    Ok(Settled::Clean | Settled::Gone) => {}
                    Err(e) => {
                        tracing::warn!(sprite = %name, checkpoint = %ck, error = %e, "cannot replay a checkpoint's journal ahead of time; whatever mounts it replays it");
                    }
                }
            }
            if let Err(e) = store.show_checkpoints(&id, &image, &names) {
                tracing::warn!(sprite = %name, error = %e, "showing checkpoints inside the sprite");
            }
        });
    }

    /// Start-up: the records and the images must agree. An image without a
    /// record is a checkpoint that was never completed (or a delete that
    /// was): removed. A record without an image cannot be restored: dropped.
    pub(super) async fn reconcile_checkpoints(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let store = self.store.clone();
        let id = rec.id.clone();
        let files = blocking(move || {
            store
                .checkpoint_names(&id)
                .map_err(Error::store("listing checkpoints"))
        })
        .await?;
        let rows = self.db.checkpoints(&rec.id)?;
        for f in files.iter().filter(|f| !rows.iter().any(|r| &r.id == *f)) {
            tracing::warn!(sprite = %rec.name, checkpoint = %f, "removing an unrecorded checkpoint image");
            let store = self.store.clone();
            let (id, ck) = (rec.id.clone(), f.clone());
            blocking(move || {
                store
                    .delete_checkpoint(&id, &ck)
                    .map_err(Error::store("removing an unrecorded checkpoint image"))
            })
            .await?;
        }
        let in_store = self.db.cold_checkpoints(&rec.id)?;
        for r in rows
            .iter()
            .filter(|r| !files.contains(&r.id) && !in_store.contains_key(&r.id))
        {
            tracing::warn!(sprite = %rec.name, checkpoint = %r.id, "forgetting a checkpoint whose image is gone");
            self.db.delete_checkpoint(&rec.id, &r.id)?;
        }
        Ok(())
    }

    /// Start-up, for a sprite found running: serve its API socket again and
    /// show its checkpoints.
    pub(super) async fn resume_inside(&self, rec: &SpriteRecord) {
        let store = self.store.clone();
        let id = rec.id.clone();
        let bound = blocking(move || {
            let dir = store
                .inside_run_dir(&id)
                .map_err(Error::store("preparing /.sprite/run"))?;
            super::bind_inside_socket(&dir.join(super::INSIDE_SOCKET))
        })
        .await;
        match bound {
            Ok(l) => self.hand_over_socket(rec, l),
            Err(e) => {
                tracing::warn!(sprite = %rec.name, error = %e, "cannot serve the in-sprite API")
            }
        }
        self.refresh_views(rec);
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The ids `id` descends from through `source` (id -> the checkpoint it was
/// taken on), nearest first. A loop cannot happen (a source is always
/// older) but would end at the repeat.
fn lineage(source: &HashMap<String, String>, id: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut at = id;
    while let Some(up) = source.get(at) {
        if up == id || out.contains(up) {
            break;
        }
        out.push(up.clone());
        at = up;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(id: &str, source: Option<&str>, auto: bool) -> Checkpoint {
        Checkpoint {
            id: id.into(),
            create_time: "2026-01-05T10:30:00Z".into(),
            source_id: source.map(String::from),
            history: Vec::new(),
            comment: None,
            is_auto: Some(auto),
            is_current: Some(false),
        }
    }

    /// v0 ← v1 ← v2; a restore to v0, then v0 ← v3 ← v4 (automatic); v5
    /// was taken on v9, since deleted. Newest first, as the list answers.
    fn tree() -> Vec<Checkpoint> {
        vec![
            cp("v5", Some("v9"), false),
            cp("v4", Some("v3"), true),
            cp("v3", Some("v0"), false),
            cp("v2", Some("v1"), false),
            cp("v1", Some("v0"), false),
            cp("v0", None, false),
        ]
    }

    fn ids(filter: CheckpointFilter) -> Vec<String> {
        filter
            .apply(with_history(tree()))
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    fn history(id: &str, include_auto: bool) -> CheckpointFilter {
        CheckpointFilter {
            history: Some(id.into()),
            include_auto,
        }
    }

    #[test]
    fn automatic_checkpoints_are_hidden_unless_asked_for() {
        assert_eq!(
            ids(CheckpointFilter::default()),
            ["v5", "v3", "v2", "v1", "v0"]
        );
        let all = CheckpointFilter {
            history: None,
            include_auto: true,
        };
        assert_eq!(ids(all), ["v5", "v4", "v3", "v2", "v1", "v0"]);
    }

    #[test]
    fn history_is_the_branch_through_a_checkpoint() {
        assert_eq!(ids(history("v1", false)), ["v2", "v1", "v0"]);
        assert_eq!(ids(history("v3", false)), ["v3", "v0"]);
        assert_eq!(ids(history("v3", true)), ["v4", "v3", "v0"]);
        assert_eq!(ids(history("v0", false)), ["v3", "v2", "v1", "v0"]);
        assert_eq!(ids(history("v5", false)), ["v5"]);
    }
}
