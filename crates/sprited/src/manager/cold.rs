//! The cold tier in the lifecycle: a sprite cold for `evict_after` leaves
//! local disk (its volume and checkpoints go to object storage, only its
//! metadata stays), and comes back when something needs its files.
//!
//! Order of an eviction, each step durable before the next:
//! 1. every checkpoint not yet in the store is uploaded (chunks, then its
//!    manifest) and recorded (`cold_checkpoints`);
//! 2. the volume is uploaded the same way;
//! 3. the DB records the sprite as evicted (`cold_sprites`);
//! 4. the local images are deleted.
//!
//! A crash before 3 leaves the sprite local and whole (the next eviction
//! redoes the work; chunks already sent are not sent again). A crash
//! between 3 and 4 leaves local copies that start-up deletes. Coming back
//! is the mirror: the volume is rebuilt in a dot-file, renamed into place,
//! and only then recorded local; a crash midway leaves the sprite evicted
//! and the dot-file is removed at start-up.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sprite_cold::{ColdError, LazyImage};
use sprites_api::sprite::{EvictReport, Status, StorageInfo};

use super::recover::meta_doc;
use super::slot::SpriteSlot;
use super::{blocking, Manager, Release, STOP_GRACE};
use crate::db::{ColdCopy, SpriteRecord};
use crate::error::Error;
use crate::failpoint;
use crate::time::now_rfc3339;

/// After a failed eviction, how long before the idle tracker tries again.
const EVICT_RETRY: Duration = Duration::from_secs(300);

/// A sprite's volume as the cold tier sees it, in memory: whether it lives
/// only in object storage (the DB's `cold_sprites` row is the durable
/// truth; this mirrors it for the idle tracker), and the self-filling image
/// of an evicted sprite woken since. Changed under the lifecycle lock; read
/// without it.
#[derive(Default)]
pub(crate) struct ColdVolume {
    state: Mutex<ColdState>,
}

#[derive(Default)]
struct ColdState {
    evicted: bool,
    /// When the last eviction attempt failed.
    evict_failed: Option<Instant>,
    /// The volume while it fills itself from the object store (from a
    /// wake until the sprite next stops).
    fill: Option<Arc<LazyImage>>,
    /// Why the last fill failed (reported by the wake it broke).
    fill_error: Option<ColdError>,
}

impl ColdVolume {
    fn lock(&self) -> MutexGuard<'_, ColdState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_evicted(&self) -> bool {
        self.lock().evicted
    }

    pub(super) fn set_evicted(&self, evicted: bool) {
        self.lock().evicted = evicted;
    }

    pub(super) fn is_filling(&self) -> bool {
        self.lock().fill.is_some()
    }

    /// Whether its volume is whole on local disk (a fill, if any, done):
    /// what replication needs to clone it.
    pub(super) fn is_whole_locally(&self) -> bool {
        let s = self.lock();
        match &s.fill {
            Some(f) => f.is_complete(),
            None => !s.evicted,
        }
    }

    /// The image a start mounts while the volume fills, if it does.
    pub(super) fn filling_image_path(&self) -> Option<PathBuf> {
        self.lock().fill.as_ref().map(|f| f.image_path())
    }

    pub(super) fn record_fill_error(&self, e: ColdError) {
        self.lock().fill_error = Some(e);
    }

    pub(super) fn take_fill_error(&self) -> Option<ColdError> {
        self.lock().fill_error.take()
    }

    /// Not evicted, and no eviction failed within `EVICT_RETRY`.
    fn may_evict(&self, now: Instant) -> bool {
        let s = self.lock();
        let failed_lately = s
            .evict_failed
            .is_some_and(|t| now.saturating_duration_since(t) < EVICT_RETRY);
        !s.evicted && !failed_lately
    }
}

/// Where sprite `id`'s copies made under `epoch` are: `sprites/<id>/`,
/// and below it `e<epoch>/` where hosts share the database (each holder
/// of a sprite names what it writes with its own epoch, so a host that
/// lost the sprite and writes late never replaces what the next holder
/// wrote or reads; see `db::hosts`).
pub(crate) fn sprite_prefix(id: &str, epoch: i64) -> String {
    match epoch {
        0 => format!("sprites/{id}/"),
        e => format!("sprites/{id}/e{e}/"),
    }
}

pub(crate) fn volume_manifest(id: &str, epoch: i64) -> String {
    format!("{}volume", sprite_prefix(id, epoch))
}

pub(crate) fn checkpoint_manifest(id: &str, checkpoint: &str, epoch: i64) -> String {
    format!("{}checkpoints/{checkpoint}", sprite_prefix(id, epoch))
}

/// Uploads to the object store that run at once. Each reads, hashes and
/// compresses its chunks with sends in flight (tens of MiB of buffers and
/// zstd state), and every sprite that changed or goes cold replicates:
/// unbounded, 60 sprites going cold together took the daemon from 45 to
/// 255 MiB resident (glibc keeps what it freed), 500 would take gigabytes,
/// and all of it competed for the cores and the disk with the requests.
/// Two keep both cores busy; the rest wait their turn.
pub(super) const UPLOADS_AT_ONCE: usize = 2;

impl Manager {
    /// Sends a sprite's volume and checkpoints to object storage and frees
    /// its local disk; a running or warm sprite is stopped first. Evicting
    /// an evicted sprite does nothing.
    pub async fn evict(&self, rec: &SpriteRecord) -> Result<EvictReport, Error> {
        let slot = self.slot(&rec.id);
        let _g = slot.lifecycle.lock().await;
        if self.status(&rec.id) != Status::Cold {
            self.halt(&rec.id, STOP_GRACE, Release::Unmount).await?;
            self.set_status(&rec.id, Status::Cold);
            slot.state().warm_since = None;
        }
        self.evict_locked(rec).await
    }

    /// The eviction proper; the caller holds the lifecycle lock and the
    /// sprite is cold.
    pub(super) async fn evict_locked(&self, rec: &SpriteRecord) -> Result<EvictReport, Error> {
        let t0 = Instant::now();
        if let Some(copy) = self.db.evicted(&rec.id)? {
            return Ok(EvictReport {
                location: "object".into(),
                chunks_sent: 0,
                bytes_sent: 0,
                stored_bytes: copy.stored_bytes,
                checkpoints_uploaded: 0,
                elapsed_ms: 0.0,
            });
        }
        let what = format!("evicting sprite {}", rec.name);
        // Cold means unmounted, but a mount left over (a daemon killed
        // between a mount and a start, a stop whose unmount failed) would
        // hold writes the image does not have yet, and keep the local
        // disk from being freed once the sprite is recorded evicted: it
        // goes before anything is read or recorded.
        self.unmount_root(&rec.id, "unmounting before the eviction")
            .await?;
        let epoch = self.db.held_epoch(&rec.id)?;
        let (mut chunks_sent, mut bytes_sent, mut uploaded) = (0, 0, 0);
        let in_store = self.db.cold_checkpoints(&rec.id)?;
        for c in self.db.checkpoints(&rec.id)? {
            if in_store.contains_key(&c.id) {
                continue;
            }
            let path = self.store.checkpoint_path(&rec.id, &c.id);
            let stats = self
                .upload(
                    &path,
                    &checkpoint_manifest(&rec.id, &c.id, epoch),
                    None,
                    None,
                )
                .await
                .map_err(Error::cold(&what))?;
            self.db.set_cold_checkpoint(
                &rec.id,
                &c.id,
                &ColdCopy {
                    at: now_rfc3339(),
                    stored_bytes: stats.manifest.stored_bytes(),
                    data_bytes: stats.manifest.data_bytes(),
                    epoch,
                },
            )?;
            chunks_sent += stats.chunks_sent;
            bytes_sent += stats.bytes_sent;
            uploaded += 1;
        }
        // Its base image too, once (shared by every sprite made from it), so
        // the sprite can come back on a host that lacks the image.
        self.keep_image(&rec.image)
            .await
            .map_err(Error::cold(&what))?;
        let halfway = |done: u64, total: u64| {
            if done == total.div_ceil(2) {
                failpoint::hit("evict-uploading");
            }
        };
        let stats = self
            .upload(
                &self.store.volume_path(&rec.id),
                &volume_manifest(&rec.id, epoch),
                None,
                Some(&halfway),
            )
            .await
            .map_err(Error::cold(&what))?;
        failpoint::hit("evict-uploaded");
        // The evicted volume is also its newest snapshot: what a recovery
        // from the store alone (and a point-in-time restore) finds newest.
        let at = super::replicate::now_ms()
            .max(self.db.last_snapshot(&rec.id)?.map_or(0, |l| l.at_ms + 1));
        self.cold
            .put_manifest(
                &super::replicate::snapshot_manifest(&rec.id, at, epoch),
                &stats.manifest,
            )
            .await
            .map_err(Error::cold(&what))?;
        self.db.add_snapshot(
            &rec.id,
            &crate::db::Snapshot {
                at_ms: at,
                stored_bytes: stats.manifest.stored_bytes(),
                data_bytes: stats.manifest.data_bytes(),
                epoch,
            },
        )?;
        // What it takes to know the sprite without this host's disk.
        self.put_meta(rec).await?;
        let copy = ColdCopy {
            at: now_rfc3339(),
            stored_bytes: stats.manifest.stored_bytes(),
            data_bytes: stats.manifest.data_bytes(),
            epoch,
        };
        self.db.set_evicted(&rec.id, &copy)?;
        self.slot(&rec.id).cold.set_evicted(true);
        failpoint::hit("evict-recorded");
        let store = self.store.clone();
        let views = self.slot(&rec.id).views.clone();
        let id = rec.id.clone();
        blocking(move || {
            let _v = views.lock().unwrap_or_else(|p| p.into_inner());
            store
                .release_local(&id)
                .map_err(Error::store("freeing local disk"))
        })
        .await?;
        chunks_sent += stats.chunks_sent;
        bytes_sent += stats.bytes_sent;
        let elapsed = t0.elapsed();
        tracing::info!(
            sprite = %rec.name,
            chunks = stats.chunks,
            chunks_sent,
            bytes_sent,
            stored_bytes = copy.stored_bytes,
            checkpoints = uploaded,
            ms = elapsed.as_secs_f64() * 1e3,
            "evicted to object storage"
        );
        self.metrics.evicted();
        Ok(EvictReport {
            location: "object".into(),
            chunks_sent,
            bytes_sent,
            stored_bytes: copy.stored_bytes,
            checkpoints_uploaded: uploaded,
            elapsed_ms: elapsed.as_secs_f64() * 1e3,
        })
    }

    /// Makes sure the object store keeps base image `name` (as built
    /// here); answers its manifest's name.
    pub(super) async fn keep_image(&self, name: &str) -> Result<String, ColdError> {
        let built = self
            .store
            .image_manifest(name)
            .map_err(|e| ColdError::Other(format!("image {name}: {e}")))?;
        let manifest = format!("images/{name}-{}", built.built_at_unix);
        let _g = self.image_upload.lock().await;
        if self.cold.has_manifest(&manifest).await? {
            return Ok(manifest);
        }
        let t0 = Instant::now();
        let tar = self.cfg.layout().image_export(name);
        let store = self.store.clone();
        let (n, t) = (name.to_string(), tar.clone());
        tokio::task::spawn_blocking(move || store.export_image(&n, &t))
            .await
            .map_err(|e| ColdError::Other(format!("export task failed: {e}")))?
            .map_err(|e| ColdError::Other(format!("exporting image {name}: {e}")))?;
        let stats = self.upload(&tar, &manifest, None, None).await;
        let _ = std::fs::remove_file(&tar);
        let stats = stats?;
        tracing::info!(
            image = %name,
            chunks = stats.chunks,
            bytes_sent = stats.bytes_sent,
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "base image kept in object storage"
        );
        Ok(manifest)
    }

    /// Makes base image `name` from its copy in the object store, if there
    /// is one (the newest); false when there is none.
    pub(super) async fn fetch_image(&self, name: &str) -> Result<bool, ColdError> {
        let prefix = format!("{name}-");
        let newest = self
            .cold
            .list_manifests("images/")
            .await?
            .into_iter()
            .filter_map(|m| {
                let built: u64 = m
                    .strip_prefix("images/")?
                    .strip_prefix(&prefix)?
                    .parse()
                    .ok()?;
                Some((built, m))
            })
            .max();
        let Some((_, manifest)) = newest else {
            return Ok(false);
        };
        let t0 = Instant::now();
        let m = self.cold.get_manifest(&manifest).await?;
        let tar = self.cfg.layout().image_fetch(name);
        let fetched = self.cold.download_image(&m, &tar, None).await;
        let imported = match fetched {
            Ok(_) => {
                let store = self.store.clone();
                let (n, t) = (name.to_string(), tar.clone());
                tokio::task::spawn_blocking(move || store.import_image(&n, &t))
                    .await
                    .map_err(|e| ColdError::Other(format!("import task failed: {e}")))
                    .and_then(|r| {
                        r.map_err(|e| ColdError::Other(format!("importing image {name}: {e}")))
                    })
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&tar);
        imported?;
        tracing::info!(image = %name, ms = t0.elapsed().as_secs_f64() * 1e3, "base image brought back from object storage");
        Ok(true)
    }

    /// Brings an evicted sprite's volume back to local disk (its
    /// checkpoints stay in the store until one is needed). The caller holds
    /// the lifecycle lock. Does nothing for a local sprite.
    pub(super) async fn rehydrate_locked(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let Some(copy) = self.db.evicted(&rec.id)? else {
            return Ok(());
        };
        let t0 = Instant::now();
        let what = format!("bringing sprite {} back from object storage", rec.name);
        let m = self
            .cold
            .get_manifest(&volume_manifest(&rec.id, copy.epoch))
            .await
            .map_err(Error::cold(&what))?;
        // A fill cut short (a daemon killed while the sprite ran on its
        // self-filling volume): the local part holds what the sprite wrote
        // since it woke, newer than the store's copy. It is completed,
        // never replaced.
        let (backing, state) = (
            self.store.volume_path(&rec.id),
            self.store.volume_state_path(&rec.id),
        );
        if state.exists() && backing.exists() {
            sprite_cold::LazyImage::finish_offline(self.cold.clone(), &m, &backing, &state)
                .await
                .map_err(Error::cold(&what))?;
            // Recorded local before the fill record goes: a crash in
            // between leaves a stale record, which start-up drops.
            self.mark_local(rec)?;
            blocking(move || {
                sprite_cold::lazy::remove_state(&state)
                    .map_err(Error::cold("removing the fill record"))
            })
            .await?;
            tracing::info!(
                sprite = %rec.name,
                ms = t0.elapsed().as_secs_f64() * 1e3,
                "volume completed from its local part and object storage"
            );
            return Ok(());
        }
        let store = self.store.clone();
        let id = rec.id.clone();
        let tmp = blocking(move || {
            store
                .volume_rebuild_path(&id)
                .map_err(Error::store("preparing the volume"))
        })
        .await?;
        let halfway = |done: u64, total: u64| {
            if done == total.div_ceil(2) {
                failpoint::hit("wake-downloading");
            }
        };
        let stats = self
            .download_synced(&m, &tmp, Some(&halfway), &what)
            .await?;
        let store = self.store.clone();
        let id = rec.id.clone();
        blocking(move || {
            store
                .install_volume(&id, &tmp)
                .map_err(Error::store("installing the volume"))
        })
        .await?;
        self.mark_local(rec)?;
        tracing::info!(
            sprite = %rec.name,
            chunks = stats.chunks,
            from_cache = stats.from_cache,
            bytes = stats.bytes_written,
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "volume back from object storage"
        );
        Ok(())
    }

    /// Rebuilds manifest `m`'s image at `tmp`, synced (durable before anything
    /// records it local); a failed download leaves no file behind.
    pub(super) async fn download_synced(
        &self,
        m: &sprite_cold::Manifest,
        tmp: &std::path::Path,
        progress: Option<&(dyn Fn(u64, u64) + Send + Sync)>,
        what: &str,
    ) -> Result<sprite_cold::DownloadStats, Error> {
        let stats = match self.cold.download_image(m, tmp, progress).await {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(tmp);
                return Err(Error::cold(what)(e));
            }
        };
        let t = tmp.to_path_buf();
        blocking(move || {
            std::fs::File::open(&t)
                .and_then(|f| f.sync_data())
                .map_err(Error::io(format!("syncing {}", t.display())))
        })
        .await?;
        Ok(stats)
    }

    /// Wakes an evicted sprite's volume without waiting for it: it is
    /// served through a self-filling view (FUSE) that fetches what is read
    /// first and the rest in the background, so the sprite boots at once.
    /// The caller holds the lifecycle lock and starts the sprite next.
    pub(super) async fn wake_lazily_locked(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let slot = self.slot(&rec.id);
        if !slot.cold.is_evicted() || slot.cold.is_filling() {
            return Ok(());
        }
        let what = format!("waking sprite {}", rec.name);
        let copy = self.db.evicted(&rec.id)?.ok_or_else(|| {
            Error::Internal(format!(
                "sprite {} is evicted but no copy of its volume is recorded",
                rec.name
            ))
        })?;
        let m = self
            .cold
            .get_manifest(&volume_manifest(&rec.id, copy.epoch))
            .await
            .map_err(Error::cold(&what))?;
        let store = self.store.clone();
        let id = rec.id.clone();
        let (backing, state, mnt) = blocking(move || {
            let backing = store.volume_path(&id);
            let state = store.volume_state_path(&id);
            // A whole local copy with no fill in progress is what an
            // eviction cut short left (identical to the manifest): it goes.
            if backing.exists() && !state.exists() {
                store
                    .release_local(&id)
                    .map_err(Error::store("freeing local disk"))?;
            }
            store
                .detach_lazy_mount(&id)
                .map_err(Error::store("detaching the lazy volume"))?;
            // Makes the sprite's pool directory if a lost disk took it.
            store
                .volume_rebuild_path(&id)
                .map_err(Error::store("preparing the volume"))?;
            let mnt = store
                .lazy_mount_path(&id)
                .map_err(Error::store("preparing the lazy volume"))?;
            Ok((backing, state, mnt))
        })
        .await?;
        let t0 = Instant::now();
        let image = sprite_cold::LazyImage::start(self.cold.clone(), m, backing, state, mnt)
            .await
            .map_err(Error::cold(&what))?;
        tracing::info!(sprite = %rec.name, ms = t0.elapsed().as_secs_f64() * 1e3, "volume served from object storage while it fills");
        slot.cold.lock().fill = Some(Arc::new(image));
        Ok(())
    }

    /// After the sprite stopped: a volume filling itself from the object
    /// store is completed and becomes a plain local volume (recorded local
    /// before its fill record goes, so a crash in between loses nothing);
    /// with `discard` (the sprite is being destroyed) it is just let go.
    /// Answers why the fill failed, if it did: then the sprite stays
    /// evicted with what it has locally, and the next wake resumes.
    pub(super) async fn finish_lazy(&self, id: &str, discard: bool) -> Option<ColdError> {
        let taken = self.slot(id).cold.lock().fill.take();
        let Some(image) = taken else {
            // None in memory; a mount left by a killed daemon may remain.
            let store = self.store.clone();
            let id = id.to_string();
            let _ = blocking(move || {
                store
                    .detach_lazy_mount(&id)
                    .map_err(Error::store("detaching the lazy volume"))
            })
            .await;
            return None;
        };
        // Taken under the lifecycle lock, which every other user of the
        // image holds while it uses it: this is the last reference.
        let image = match Arc::try_unwrap(image) {
            Ok(image) => image,
            Err(_) => {
                tracing::error!(id, "a self-filling volume is still in use as it stops");
                return None;
            }
        };
        if discard {
            if let Err(e) = image.shutdown().await {
                tracing::warn!(id, error = %e, "stopping a self-filling volume");
            }
            return None;
        }
        let filled = image.wait_complete().await;
        if filled.is_ok() {
            if let Some(rec) = self.db.get_by_id(id).ok().flatten() {
                if let Err(e) = self.mark_local(&rec) {
                    tracing::warn!(id, error = %e, "recording the volume local");
                }
            }
        }
        let shut = image.shutdown().await;
        match (filled, shut) {
            (Ok(()), Ok(())) => {
                tracing::info!(id, "volume complete on local disk");
                None
            }
            (Err(e), _) | (Ok(()), Err(e)) => Some(e),
        }
    }

    /// Waits until a self-filling volume is whole (a checkpoint clones it).
    pub(super) async fn wait_filled(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let fill = self.slot(&rec.id).cold.lock().fill.clone();
        if let Some(image) = fill {
            image
                .wait_complete()
                .await
                .map_err(Error::cold(format!("filling sprite {}'s volume", rec.name)))?;
        }
        Ok(())
    }

    /// Records the sprite's volume as local again. Its manifest stays in the
    /// store, stale, until the next eviction replaces it (deleting it here
    /// could race with that eviction's new one).
    pub(super) fn mark_local(&self, rec: &SpriteRecord) -> Result<(), Error> {
        if self.db.evicted(&rec.id)?.is_none() {
            return Ok(());
        }
        self.db.set_local(&rec.id)?;
        self.slot(&rec.id).cold.set_evicted(false);
        Ok(())
    }

    /// Start-up, for any sprite: a self-filling volume's server died with
    /// the last daemon. A sprite still running on it is stopped (its volume
    /// answers nothing any more); an evicted sprite keeps its fill record
    /// and local part for the next wake to resume; a local one drops a
    /// stale record.
    pub(super) async fn reconcile_lazy(
        &self,
        rec: &SpriteRecord,
        evicted: bool,
    ) -> Result<(), Error> {
        let store = self.store.clone();
        let driver = self.driver.clone();
        let id = rec.id.clone();
        blocking(move || {
            if !store
                .lazy_mounted(&id)
                .map_err(Error::store("reading the mount table"))?
            {
                if !evicted {
                    let _ = std::fs::remove_file(store.volume_state_path(&id));
                }
                return Ok(());
            }
            tracing::warn!(sprite = %id, "the daemon died while this sprite's volume filled from object storage; stopping it");
            driver
                .stop(&id, Duration::ZERO)
                .map_err(Error::runtime("stopping the sandbox"))?;
            store
                .unmount_rootfs(&id)
                .map_err(Error::store("unmounting"))?;
            store
                .detach_lazy_mount(&id)
                .map_err(Error::store("detaching the lazy volume"))?;
            if !evicted {
                let _ = std::fs::remove_file(store.volume_state_path(&id));
            }
            Ok(())
        })
        .await
    }

    /// Makes sure checkpoint `checkpoint`'s image is on local disk, fetching
    /// it from the store if only the store has it. The caller holds the
    /// sprite's lifecycle lock.
    pub(super) async fn checkpoint_local(
        &self,
        rec: &SpriteRecord,
        checkpoint: &str,
    ) -> Result<(), Error> {
        if self.store.checkpoint_exists(&rec.id, checkpoint) {
            return Ok(());
        }
        let Some(copy) = self.db.cold_checkpoints(&rec.id)?.remove(checkpoint) else {
            return Err(Error::Internal(format!(
                "the image of checkpoint {checkpoint} is missing"
            )));
        };
        let what = format!(
            "fetching checkpoint {checkpoint} of sprite {} from object storage",
            rec.name
        );
        let m = self
            .cold
            .get_manifest(&checkpoint_manifest(&rec.id, checkpoint, copy.epoch))
            .await
            .map_err(Error::cold(&what))?;
        let store = self.store.clone();
        let (id, ck) = (rec.id.clone(), checkpoint.to_string());
        let tmp = blocking(move || {
            store
                .checkpoint_rebuild_path(&id, &ck)
                .map_err(Error::store("preparing the checkpoint"))
        })
        .await?;
        self.download_synced(&m, &tmp, None, &what).await?;
        let store = self.store.clone();
        let (id, ck) = (rec.id.clone(), checkpoint.to_string());
        blocking(move || {
            store
                .install_checkpoint(&id, &ck, &tmp)
                .map_err(Error::store("installing the checkpoint"))
        })
        .await
    }

    /// Forgets what the store keeps of a destroyed sprite (its chunks go at
    /// the next garbage collection). An unreachable store only delays this:
    /// the next sweep (start-up, the next destroy) does it for every sprite
    /// the `forgotten` table still names.
    pub(super) async fn forget_cold(&self, id: &str) {
        let result = async {
            for name in self.cold.list_manifests(&format!("sprites/{id}/")).await? {
                self.cold.delete_manifest(&name).await?;
            }
            self.cold.delete_doc(&meta_doc(id)).await
        }
        .await;
        match result {
            Ok(()) => {
                if let Err(e) = self.db.forget_done(id) {
                    tracing::warn!(id, error = %e, "recording a destroyed sprite's removal from the store");
                }
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "cannot remove a destroyed sprite's data from the object store; the next sweep will");
            }
        }
    }

    /// Deletes the manifests and metadata of sprites destroyed here, then
    /// chunks no manifest names. Runs at start-up and after destroys, in the background.
    pub fn spawn_cold_sweep(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.cold_sweep().await {
                tracing::warn!(error = %e, "object store sweep failed");
            }
        });
    }

    async fn cold_sweep(&self) -> Result<(), ColdError> {
        // Only sprites destroyed here: anything else the store keeps may be
        // a sprite to recover (or another host's), never garbage.
        let forgotten = self
            .db
            .forgotten()
            .map_err(|e| ColdError::Other(e.to_string()))?;
        for id in forgotten {
            for name in self.cold.list_manifests(&format!("sprites/{id}/")).await? {
                tracing::info!(manifest = %name, "removing the manifest of a destroyed sprite");
                self.cold.delete_manifest(&name).await?;
            }
            self.cold.delete_doc(&meta_doc(&id)).await?;
            self.db
                .forget_done(&id)
                .map_err(|e| ColdError::Other(e.to_string()))?;
        }
        // One collection at a time over every host, none while one uploads.
        let db = self.db.clone();
        let hold = tokio::task::spawn_blocking(move || db.store_collect())
            .await
            .map_err(|e| ColdError::Other(e.to_string()))?
            .map_err(|e| ColdError::Other(e.to_string()))?;
        let Some(hold) = hold else {
            tracing::info!("object store: another host uploads or collects; unused chunks stay until the next sweep");
            return Ok(());
        };
        self.store_generation
            .store(hold.generation, std::sync::atomic::Ordering::SeqCst);
        let collected = self.cold.collect_garbage().await;
        let db = self.db.clone();
        let _ = tokio::task::spawn_blocking(move || db.store_collected(&hold)).await;
        let (chunks, bytes) = collected?;
        if chunks > 0 {
            tracing::info!(chunks, bytes, "object store: unused chunks removed");
        }
        Ok(())
    }

    /// Uploads an image to the store as manifest `name` (see
    /// [`sprite_cold::ColdStore::upload_image_since`]), holding the store
    /// against another host's garbage collection meanwhile (see
    /// [`crate::db::store_lock`]): waits while one runs, and fails if the
    /// hold was lost before the manifest was written.
    pub(super) async fn upload(
        &self,
        path: &std::path::Path,
        name: &str,
        since: Option<(&sprite_cold::Manifest, &[u64])>,
        progress: Option<sprite_cold::Progress<'_>>,
    ) -> Result<sprite_cold::UploadStats, ColdError> {
        // Queued behind the uploads under way (never nested: the store's
        // upload calls nothing that uploads).
        let _slot = self
            .upload_slots
            .acquire()
            .await
            .map_err(|e| ColdError::Other(e.to_string()))?;
        let _running = self.metrics.upload_began();
        let mut waited = 0u32;
        let hold = loop {
            let db = self.db.clone();
            // A host whose membership ran out writes nothing more, here
            // either (its fence covers only the database).
            let held = tokio::task::spawn_blocking(move || {
                db.check_live()?;
                db.store_share()
            })
            .await
            .map_err(|e| ColdError::Other(e.to_string()))?
            .map_err(|e| ColdError::Other(e.to_string()))?;
            match held {
                Some(h) => break h,
                None => {
                    if waited.is_multiple_of(25) {
                        tracing::info!(manifest = name, "waiting for another host's garbage collection of the object store before uploading");
                    }
                    waited += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await
                }
            }
        };
        let before = self
            .store_generation
            .swap(hold.generation, std::sync::atomic::Ordering::SeqCst);
        if before != hold.generation {
            // A collection ran since: what this host knew of the store's
            // chunks may be gone.
            self.cold.forget_known();
        }
        let stats = self
            .cold
            .upload_image_since(path, name, since, progress)
            .await;
        let db = self.db.clone();
        let kept = tokio::task::spawn_blocking(move || db.store_unshare(&hold))
            .await
            .map_err(|e| ColdError::Other(e.to_string()))?;
        let stats = stats?;
        match kept {
            Ok(true) => Ok(stats),
            Ok(false) => Err(ColdError::Other(
                "the connection to the metadata database was lost during the upload, and with it \
                 the hold against another host's garbage collection: not relied on"
                    .into(),
            )),
            Err(e) => Err(ColdError::Other(e.to_string())),
        }
    }

    /// Start-up: an evicted sprite whose local copies survived a crash
    /// between recording and deleting them gets them deleted now.
    pub(super) async fn reconcile_cold(&self, rec: &SpriteRecord) -> Result<(), Error> {
        if self.db.evicted(&rec.id)?.is_none() {
            return Ok(());
        }
        let store = self.store.clone();
        let id = rec.id.clone();
        blocking(move || {
            // A fill in progress (record present) holds what the sprite
            // wrote since its wake: kept for the next wake to resume.
            if store.volume_state_path(&id).exists() {
                return Ok(());
            }
            store
                .release_local(&id)
                .map_err(Error::store("freeing local disk"))
        })
        .await
    }

    /// Whether the idle tracker should evict this cold sprite now.
    pub(super) fn due_for_eviction(&self, slot: &SpriteSlot, now: Instant) -> bool {
        let since = slot.state().last_activity;
        if now.saturating_duration_since(since) < self.cfg.evict_after {
            return false;
        }
        slot.cold.may_evict(now)
    }

    /// The idle tracker's eviction of a long-cold sprite.
    pub(super) async fn evict_idle(&self, id: &str, slot: &Arc<SpriteSlot>) {
        let Ok(_g) = slot.lifecycle.try_lock() else {
            return;
        };
        if self.status(id) != Status::Cold || slot.active() > 0 {
            return;
        }
        let rec = match self.db.get_by_id(id) {
            Ok(Some(r)) => r,
            _ => return,
        };
        match self.evict_locked(&rec).await {
            Ok(_) => {
                slot.cold.lock().evict_failed = None;
            }
            Err(e) => {
                tracing::warn!(sprite = %rec.name, error = %e, "eviction failed; the sprite stays on local disk");
                slot.cold.lock().evict_failed = Some(Instant::now());
            }
        }
    }

    /// Where the sprite's data lives, and how much of it.
    pub fn storage_info(&self, rec: &SpriteRecord) -> Result<StorageInfo, Error> {
        let mut cold = self.db.cold_states(&[&rec.id])?;
        Ok(self.storage_of(rec, cold.remove(&rec.id)))
    }

    /// [`Manager::storage_info`] of each of `recs`, in their order: the
    /// database is asked once for them all (a listing's page).
    pub fn storage_infos(&self, recs: &[SpriteRecord]) -> Result<Vec<StorageInfo>, Error> {
        let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        let mut cold = self.db.cold_states(&ids)?;
        Ok(recs
            .iter()
            .map(|rec| self.storage_of(rec, cold.remove(&rec.id)))
            .collect())
    }

    fn storage_of(&self, rec: &SpriteRecord, cold: Option<crate::db::ColdState>) -> StorageInfo {
        let cold = cold.unwrap_or_default();
        let local = self.store.local_usage(&rec.id).unwrap_or_default();
        let object_bytes =
            cold.evicted.as_ref().map_or(0, |c| c.stored_bytes) + cold.checkpoint_bytes;
        let filling = self.slot(&rec.id).cold.is_filling();
        let (lag, replication_error) = self.replication_state(&rec.id);
        let location = match (cold.evicted.is_some(), cold.checkpoints == 0) {
            (true, _) if filling => "filling",
            (true, _) => "object",
            (false, true) => "local",
            (false, false) => "local+object",
        };
        StorageInfo {
            location: location.into(),
            object_store: self.cold.describe().to_string(),
            local_bytes: local.bytes,
            object_bytes,
            volume_data_bytes: cold.evicted.as_ref().map(|c| c.data_bytes),
            checkpoints_local: local.checkpoints,
            checkpoints_in_object_store: u32::try_from(cold.checkpoints).unwrap_or(u32::MAX),
            evicted_at: cold.evicted.map(|c| c.at),
            replicated_at: cold.last_snapshot_ms.map(crate::time::rfc3339_of_ms),
            replication_lag_seconds: lag as u64,
            replication_error,
        }
    }
}
