//! Checkpoints made durable: each is copied to the object store (the same
//! chunks and manifests an eviction writes) in the background soon after
//! it is made, so losing this host's disk does not lose it; a restore or
//! fork whose local image is gone fetches it from there.
//!
//! One uploader per daemon goes through every checkpoint the store lacks,
//! oldest sprite first, whenever a checkpoint is made and at least every
//! [`ROUND_EVERY`], each copy once checkpoints stopped coming for [`QUIET`]
//! (a burst is sent after it). An unreachable store only delays it: the round stops,
//! says so once, and is tried again with a growing pause; local work never
//! waits for it. A checkpoint deleted (or its sprite destroyed) while its
//! upload ran has the copy removed again, under the sprite's lifecycle lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sprite_cold::ColdError;

use super::cold::checkpoint_manifest;
use super::Manager;
use crate::db::{ColdCopy, SpriteRecord};
use crate::error::Error;
use crate::time::now_rfc3339;

/// The uploader looks for checkpoints to send at least this often.
const ROUND_EVERY: Duration = Duration::from_secs(60);
/// An upload waits until no checkpoint was made for this long ...
const QUIET: Duration = Duration::from_millis(500);
/// ... or until it has waited this long. Sending a checkpoint reads and
/// hashes its changed data and writes and syncs chunks; beside the next
/// checkpoint of a burst (an agent checkpointing every step), on the same
/// disk, it made that checkpoint's sync several times slower (1 to 4-6 ms,
/// the benchmark's slowest). A burst's checkpoints are sent after it, at
/// most this much later.
const QUIET_WAIT_MAX: Duration = Duration::from_secs(10);
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

    /// Asks the uploader to look for new checkpoints (one was made now).
    pub(super) fn poke_uploads(&self) {
        self.checkpoint_made.mark();
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
        // A round waits for quiet at most QUIET_WAIT_MAX in all, so a
        // long burst delays its copies no more than that.
        let give_up = Instant::now() + QUIET_WAIT_MAX;
        for (rec, ck) in pending {
            self.checkpoint_made.wait_for_quiet(QUIET, give_up).await;
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
        let stats = match self.upload(&path, &manifest, None, None).await {
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
        tracing::debug!(
            sprite = %rec.name,
            checkpoint = %ck,
            chunks_sent = stats.chunks_sent,
            bytes_sent = stats.bytes_sent,
            ms = stats.elapsed.as_secs_f64() * 1e3,
            "checkpoint copied to object storage"
        );
        Ok(stats.bytes_sent)
    }
}

/// When the last checkpoint was made, for the uploader to wait out a burst.
#[derive(Debug, Default)]
pub(super) struct LastMade(std::sync::Mutex<Option<Instant>>);

impl LastMade {
    /// One was made now.
    pub(super) fn mark(&self) {
        *super::lock(&self.0) = Some(Instant::now());
    }

    /// Waits until none was made for `quiet` (at once where none ever
    /// was), or until `give_up`.
    pub(super) async fn wait_for_quiet(&self, quiet: Duration, give_up: Instant) {
        loop {
            let Some(made) = *super::lock(&self.0) else {
                return;
            };
            let quiet_at = made + quiet;
            let now = Instant::now();
            if now >= quiet_at || now >= give_up {
                return;
            }
            tokio::time::sleep_until(quiet_at.min(give_up).into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_waits_out_a_burst_of_checkpoints_up_to_a_bound() {
        let quiet = Duration::from_millis(300);
        let far = Instant::now() + Duration::from_secs(60);
        let last = std::sync::Arc::new(LastMade::default());
        // None made yet, and one made long enough ago: no wait.
        let t = Instant::now();
        last.wait_for_quiet(quiet, far).await;
        last.mark();
        tokio::time::sleep(quiet).await;
        last.wait_for_quiet(quiet, far).await;
        assert!(t.elapsed() < quiet * 2, "{:?}", t.elapsed());

        // Each checkpoint of a burst pushes the quiet further.
        let t = Instant::now();
        last.mark();
        let burst = {
            let last = last.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::time::sleep(quiet / 3).await;
                    last.mark();
                }
            })
        };
        last.wait_for_quiet(quiet, far).await;
        assert!(t.elapsed() >= quiet + quiet, "{:?}", t.elapsed());
        burst.await.expect("burst");

        // A burst that does not end is waited for until give_up only.
        let t = Instant::now();
        last.mark();
        last.wait_for_quiet(quiet, t + quiet / 3).await;
        let waited = t.elapsed();
        assert!(waited >= quiet / 3 && waited < quiet, "{waited:?}");
    }
}
