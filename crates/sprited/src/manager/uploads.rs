//! Checkpoints made durable: each is copied to the object store (the same
//! chunks and manifests an eviction writes) in the background soon after
//! it is made, so losing this host's disk does not lose it; a restore or
//! fork whose local image is gone fetches it from there.
//!
//! One uploader per daemon goes through every checkpoint the store lacks,
//! oldest sprite first, whenever a checkpoint is made and at least every
//! [`ROUND_EVERY`]. An unreachable store only delays it: the round stops,
//! says so once, and is tried again with a growing pause; local work never
//! waits for it. A checkpoint deleted (or its sprite destroyed) while its
//! upload ran has the copy removed again, under the sprite's lifecycle lock.

use std::sync::Arc;
use std::time::Duration;

use sprite_cold::ColdError;
use sprite_store::Settled;

use super::cold::checkpoint_manifest;
use super::Manager;
use crate::db::{ColdCopy, SpriteRecord};
use crate::error::Error;
use crate::time::now_rfc3339;

/// The uploader looks for checkpoints to send at least this often.
const ROUND_EVERY: Duration = Duration::from_secs(60);
/// First pause after a failed round; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);

impl Manager {
    /// Runs the checkpoint uploader for as long as the manager lives (when
    /// `--upload-checkpoints` is on).
    pub fn spawn_checkpoint_uploads(self: &Arc<Self>) {
        if !self.cfg.upload_checkpoints {
            return;
        }
        let me = Arc::downgrade(self);
        let poke = self.uploads.clone();
        tokio::spawn(async move {
            let mut pause = RETRY_MIN;
            let mut failing = false;
            loop {
                let Some(m) = me.upgrade() else { break };
                let round = m.upload_round().await;
                drop(m);
                match round {
                    Ok(()) => {
                        if failing {
                            tracing::info!("checkpoint uploads caught up");
                        }
                        failing = false;
                        pause = RETRY_MIN;
                        tokio::select! {
                            _ = poke.notified() => {}
                            _ = tokio::time::sleep(ROUND_EVERY) => {}
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot copy checkpoints to the object store; retrying in the background, local work goes on");
                        }
                        failing = true;
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(RETRY_MAX);
                    }
                }
            }
        });
    }

    /// Asks the uploader to look for new checkpoints now.
    pub(super) fn poke_uploads(&self) {
        self.uploads.notify_one();
    }

    /// Sends every checkpoint the store lacks; stops at the first failure
    /// (the store is most likely down: the next round resumes).
    async fn upload_round(&self) -> Result<(), Error> {
        let mut pending = Vec::new();
        for rec in self.db.mine()? {
            let in_store = self.db.cold_checkpoints(&rec.id)?;
            for c in self.db.checkpoints(&rec.id)? {
                if !in_store.contains_key(&c.id) {
                    pending.push((rec.clone(), c.id));
                }
            }
        }
        self.metrics.checkpoints_not_uploaded(pending.len());
        let mut left = pending.len();
        for (rec, ck) in pending {
            let sent = self.upload_checkpoint(&rec, &ck).await;
            self.metrics
                .checkpoint_uploaded(sent.is_ok(), *sent.as_ref().unwrap_or(&0));
            sent?;
            left -= 1;
            self.metrics.checkpoints_not_uploaded(left);
        }
        Ok(())
    }

    /// Copies one checkpoint to the store and records it there; answers the
    /// bytes sent. Gone meanwhile (deleted, destroyed, evicted by another
    /// path), it is skipped.
    async fn upload_checkpoint(&self, rec: &SpriteRecord, ck: &str) -> Result<u64, Error> {
        let what = format!(
            "copying checkpoint {ck} of sprite {} to object storage",
            rec.name
        );
        let path = self.store.checkpoint_path(&rec.id, ck);
        if !path.exists() {
            return Ok(0);
        }
        let epoch = self.db.held_epoch(&rec.id)?;
        let manifest = checkpoint_manifest(&rec.id, ck, epoch);
        let base = self
            .upload_base(rec, ck, &path)
            .await
            .map_err(Error::cold(&what))?;
        let since = base.as_ref().map(|(m, c)| (m, c.as_slice()));
        let stats = match self.upload(&path, &manifest, since, None).await {
            Ok(s) => s,
            // Deleted under the upload, before it opened the file.
            Err(ColdError::Io { ref source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(0)
            }
            Err(e) => return Err(Error::cold(&what)(e)),
        };
        let Some(slot) = self.existing_slot(&rec.id) else {
            // Destroyed meanwhile: the start-up sweep removes what is left.
            let _ = self.cold.delete_manifest(&manifest).await;
            return Ok(stats.bytes_sent);
        };
        let _g = slot.lifecycle.lock().await;
        if self.db.checkpoint(&rec.id, ck)?.is_none() {
            // Deleted while it was sent: the copy goes too.
            self.cold
                .delete_manifest(&manifest)
                .await
                .map_err(Error::cold(&what))?;
            return Ok(stats.bytes_sent);
        }
        self.db.set_cold_checkpoint(
            &rec.id,
            ck,
            &ColdCopy {
                at: now_rfc3339(),
                stored_bytes: stats.manifest.stored_bytes(),
                data_bytes: stats.manifest.data_bytes(),
                epoch,
            },
        )?;
        tracing::info!(
            sprite = %rec.name,
            checkpoint = %ck,
            chunks_read = base.as_ref().map_or(stats.chunks, |(_, c)| c.len() as u64),
            chunks_sent = stats.chunks_sent,
            bytes_sent = stats.bytes_sent,
            ms = stats.elapsed.as_secs_f64() * 1e3,
            "checkpoint copied to object storage"
        );
        Ok(stats.bytes_sent)
    }

    /// What a checkpoint's copy can start from, as replication does from
    /// its last snapshot: the sprite's checkpoint already in the store and
    /// on local disk whose number is nearest, its manifest, and the chunks
    /// where the two images may differ (from their extents: see
    /// `sprite_store::changed_chunks`). Only those are read and hashed;
    /// the rest keep the base's references. Without it, each copy read and
    /// hashed all of the image's data (~290 ms for 100 MiB here, on both
    /// cores beside the sprites' own work) to send the few chunks a
    /// checkpoint changed. None where there is no such checkpoint, or
    /// anything of it cannot be had: the copy then reads the whole image.
    /// A store that cannot be reached is an error (the copy would fail
    /// too).
    async fn upload_base(
        &self,
        rec: &SpriteRecord,
        ck: &str,
        path: &std::path::Path,
    ) -> Result<Option<(sprite_cold::Manifest, Vec<u64>)>, ColdError> {
        let Some(base) = self.upload_base_local(rec, ck, path).await else {
            return Ok(None);
        };
        let (base_id, epoch, changed) = base;
        match self
            .cold
            .get_manifest(&checkpoint_manifest(&rec.id, &base_id, epoch))
            .await
        {
            Ok(manifest) => Ok(Some((manifest, changed))),
            Err(ColdError::NotFound { .. } | ColdError::Corrupt { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`Manager::upload_base`]'s local part: the base's name and epoch,
    /// and the chunks that may differ.
    async fn upload_base_local(
        &self,
        rec: &SpriteRecord,
        ck: &str,
        path: &std::path::Path,
    ) -> Option<(String, i64, Vec<u64>)> {
        let seq = |id: &str| id.strip_prefix('v')?.parse::<u64>().ok();
        let me = seq(ck)?;
        let in_store = self.db.cold_checkpoints(&rec.id).ok()?;
        let (base_id, copy) = in_store
            .iter()
            .filter(|(id, _)| id.as_str() != ck && self.store.checkpoint_exists(&rec.id, id))
            .filter_map(|(id, c)| Some((seq(id)?.abs_diff(me), id, c)))
            .min_by_key(|(d, _, _)| *d)
            .map(|(_, id, c)| (id.clone(), c.clone()))?;
        let (old, new) = (
            self.store.checkpoint_path(&rec.id, &base_id),
            path.to_path_buf(),
        );
        let (store, views, id, ck) = (
            self.store.clone(),
            // Not made anew for a sprite destroyed meanwhile.
            self.existing_slot(&rec.id)?.views.clone(),
            rec.id.clone(),
            ck.to_string(),
        );
        let changed = tokio::task::spawn_blocking(move || {
            // Settled first (as the views' task would, under the same
            // lock), so that no settle swaps the image between the reading
            // of its extents and the copy's reading of its data: the
            // chunks left out would then be the unsettled image's, beside
            // settled ones read. A settled image never changes again. (The
            // base may be swapped at any time: what a settle rewrites is in
            // blocks no other file has, so those chunks are listed.)
            let _v = views.lock().unwrap_or_else(|p| p.into_inner());
            match store.settle_checkpoint(&id, &ck) {
                Ok(Settled::Clean | Settled::Replayed) => {}
                Ok(Settled::Gone) | Err(_) => return None,
            }
            // A base deleted meanwhile fails to open: no base, then.
            sprite_store::changed_chunks(&old, &new, sprite_cold::CHUNK_SIZE).ok()
        })
        .await
        .ok()??;
        Some((base_id, copy.epoch, changed))
    }
}
