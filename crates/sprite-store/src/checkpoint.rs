//! Checkpoints: reflink clones of a sprite's volume image.
//!
//! ```text
//! <pool>/sprites/<id>/checkpoints/<ck>.img    complete checkpoints
//! <pool>/sprites/<id>/checkpoints/.<ck>.tmp   a clone being made (removed by recover)
//! <pool>/sprites/<id>/.volume.restore         a restore being made (removed by recover)
//! ```
//!
//! A checkpoint of a mounted volume is a crash-consistent copy: `syncfs`
//! of the volume (what was written so far reaches the image, the journal
//! commits), then one FICLONE of the image, which XFS makes atomic against
//! the loop device's writes. The clone is what a power cut at that instant
//! would leave: a consistent ext4 whose journal may still hold the last
//! transactions, replayed wherever it is mounted (read-write by a restore
//! or a fork; a view mounts a clone of its own, see `view`), or once in
//! the background, so that none of those has to (see `settle`). No freeze:
//! FIFREEZE took 25-45 ms on an idle filesystem here (RCU grace periods of
//! the superblock's percpu locks), during which every writer waited. The
//! sprite's writes go on meanwhile; those that land after the clone are
//! not in it. A volume this process serves over FUSE is still frozen by a
//! child process (see `outside`): its flush is ours to serve. The cost is
//! a sync of what is dirty and one FICLONE, independent of the volume's
//! size.
//!
//! Every file appears under its final name by a rename, so a crash leaves
//! either the complete file or a temporary one: a new checkpoint's clone
//! is renamed, then fsynced (see `publish_new`: one flush, not two); what
//! replaces a file is fsynced before its rename.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{renameat2, RenameFlags};

use crate::error::{IoContext, Result, StoreError};
use crate::freeze::thaw;
use crate::outside;
use crate::store::{ensure_dir, Store};
use crate::{mountinfo, reflink, validate_name};

/// Free space the pool must keep for a checkpoint to be taken: the clone
/// itself needs only metadata, but the sprite's next writes after it are
/// copied on write, and a pool that runs dry fails those inside the sprite.
pub const CHECKPOINT_RESERVE_BYTES: u64 = 64 << 20;

/// What taking a checkpoint cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStats {
    /// How long the sprite's filesystem was frozen (zero but for a volume
    /// served over FUSE).
    pub frozen_for: Duration,
    /// The `syncfs` of the mounted volume before the clone.
    pub synced_for: Duration,
    /// The whole operation, fsyncs included.
    pub total: Duration,
}

fn no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Reflinks `src` into the new file `tmp` and publishes it as `target`,
/// which must not exist (see `publish_new`).
fn clone_into(src: &Path, tmp: &Path, target: &Path) -> Result<()> {
    let _ = std::fs::remove_file(tmp);
    let src_file = File::open(src).ctx("open", src)?;
    let result = (|| {
        let dst = reflink::new_file(tmp)?;
        reflink::clone_file(&src_file, &dst).map_err(|e| map_space(e, "FICLONE", tmp))?;
        publish_new(&dst, tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

fn map_space(e: std::io::Error, op: &'static str, path: &Path) -> StoreError {
    if no_space(&e) {
        StoreError::NoSpace {
            free_bytes: 0,
            needed_bytes: CHECKPOINT_RESERVE_BYTES,
        }
    } else {
        StoreError::io(op, path, e)
    }
}

/// Renames the new file `tmp` (open as `file`: a clone, all of it
/// metadata) to `target`, which must not exist, then makes both durable.
/// Renaming first saves a flush: the rename is logged after the clone and
/// touches the file's inode, so on XFS the file's fsync forces the log past
/// both and the directory's fsync then finds nothing left to write. On any
/// file system the two fsyncs still make the file and its name durable, and
/// a crash before them leaves the name absent or the clone whole (XFS
/// replays its log in order; btrfs commits whole transactions). On failure
/// the target is removed.
fn publish_new(file: &File, tmp: &Path, target: &Path) -> Result<()> {
    renameat2(None, tmp, None, target, RenameFlags::RENAME_NOREPLACE)
        .map_err(|e| StoreError::io("rename", target, e.into()))?;
    let synced = file
        .sync_all()
        .map_err(|e| map_space(e, "fsync", target))
        .and_then(|()| sync_parent(target));
    if synced.is_err() {
        let _ = std::fs::remove_file(target);
    }
    synced
}

/// A checkpoint's durable clone, waiting to replace the sprite's volume
/// (see [`Store::prepare_restore`]).
#[derive(Debug)]
pub struct PreparedRestore {
    tmp: PathBuf,
    target: PathBuf,
    mount: PathBuf,
}

impl PreparedRestore {
    /// Puts the clone in the volume's place, durably. Refuses (`Busy`)
    /// while the volume is mounted; the clone is then removed.
    pub fn finish(self) -> Result<()> {
        if mountinfo::is_mount_root(&self.mount)? {
            return Err(StoreError::Busy(self.mount.clone()));
        }
        publish(&self.tmp, &self.target, true)
    }
}

impl Drop for PreparedRestore {
    fn drop(&mut self) {
        // Gone already once finished (renamed into place).
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Renames `tmp` to `target` and makes the rename durable.
pub(crate) fn publish(tmp: &Path, target: &Path, replace: bool) -> Result<()> {
    if replace {
        std::fs::rename(tmp, target).ctx("rename", target)?;
    } else {
        renameat2(None, tmp, None, target, RenameFlags::RENAME_NOREPLACE)
            .map_err(|e| StoreError::io("rename", target, e.into()))?;
    }
    sync_parent(target)
}

pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    File::open(parent)
        .and_then(|d| d.sync_all())
        .ctx("fsync", parent)
}

impl Store {
    /// `<pool>/sprites/<id>/checkpoints/<checkpoint>.img` (pure path).
    pub fn checkpoint_path(&self, id: &str, checkpoint: &str) -> PathBuf {
        self.layout.checkpoint_image(id, checkpoint)
    }

    /// Names of the sprite's complete checkpoints, sorted.
    pub fn checkpoint_names(&self, id: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .checkpoint_images(id)?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// The sprite's checkpoint images on local disk, by name, unsorted:
    /// the entries of its checkpoint directory named `<valid name>.img`.
    fn checkpoint_images(&self, id: &str) -> Result<Vec<(String, std::fs::DirEntry)>> {
        validate_name(id)?;
        let dir = self.layout.checkpoints_dir(id);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("read_dir", &dir, e)),
        };
        let mut images = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("read_dir", &dir, e))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".img") {
                if validate_name(name).is_ok() {
                    images.push((name.to_string(), entry));
                }
            }
        }
        Ok(images)
    }

    pub fn checkpoint_exists(&self, id: &str, checkpoint: &str) -> bool {
        validate_name(id).is_ok()
            && validate_name(checkpoint).is_ok()
            && self.layout.checkpoint_image(id, checkpoint).exists()
    }

    /// Bytes free in the pool (for unprivileged users, as statvfs counts).
    pub fn pool_free_bytes(&self) -> Result<u64> {
        let st = nix::sys::statvfs::statvfs(self.layout.pool())
            .map_err(|e| StoreError::io("statvfs", self.layout.pool(), e.into()))?;
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// The pool's file system: its size and the bytes free in it (both as
    /// statvfs counts them for unprivileged users).
    pub fn pool_space(&self) -> Result<(u64, u64)> {
        let st = nix::sys::statvfs::statvfs(self.layout.pool())
            .map_err(|e| StoreError::io("statvfs", self.layout.pool(), e.into()))?;
        let unit = st.fragment_size() as u64;
        Ok((
            st.blocks() as u64 * unit,
            st.blocks_available() as u64 * unit,
        ))
    }

    fn sync_pool(&self) -> Result<()> {
        let pool = self.layout.pool();
        let dir = File::open(pool).ctx("open", pool)?;
        nix::unistd::syncfs(dir.as_raw_fd()).map_err(|e| StoreError::io("syncfs", pool, e.into()))
    }

    /// Takes checkpoint `checkpoint` of the sprite's volume, mounted or not.
    /// The sprite's processes keep running and writing. Fails with
    /// `NoSpace` (nothing changed) when the pool is too full, and
    /// `CheckpointExists` rather than replace one.
    pub fn create_checkpoint(&self, id: &str, checkpoint: &str) -> Result<CheckpointStats> {
        self.create_checkpoint_with(id, checkpoint, &|| {})
    }

    /// [`Store::create_checkpoint`], calling `before_clone` right before
    /// the clone (a hook for fault-injection tests).
    pub fn create_checkpoint_with(
        &self,
        id: &str,
        checkpoint: &str,
        before_clone: &dyn Fn(),
    ) -> Result<CheckpointStats> {
        validate_name(id)?;
        validate_name(checkpoint)?;
        let started = Instant::now();
        let volume = self.layout.volume_image(id);
        if !volume.exists() {
            return Err(StoreError::VolumeMissing(id.to_string()));
        }
        let target = self.layout.checkpoint_image(id, checkpoint);
        if target.exists() {
            return Err(StoreError::CheckpointExists {
                sprite: id.to_string(),
                checkpoint: checkpoint.to_string(),
            });
        }
        // Space of files removed a moment ago is freed in the background
        // (XFS inode GC and deferred frees); a sync and a short wait settle
        // it before refusing.
        let settle = Instant::now() + Duration::from_secs(1);
        while let Err(e) = self.ensure_room(CHECKPOINT_RESERVE_BYTES) {
            if !matches!(e, StoreError::NoSpace { .. }) || Instant::now() >= settle {
                return Err(e);
            }
            self.sync_pool()?;
            std::thread::sleep(Duration::from_millis(50));
        }
        let dir = self.layout.checkpoints_dir(id);
        ensure_dir(&dir, 0o700)?;
        let tmp = dir.join(format!(".{checkpoint}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let src = File::open(&volume).ctx("open", &volume)?;
        let dst = reflink::new_file(&tmp)?;
        // Asked of the two paths, not of the whole mount table (see
        // `mountinfo::at`).
        let mounted =
            mountinfo::at(&self.layout.volume_mount(id))?.is_some_and(|m| m.fs_type == "ext4");
        let served = mountinfo::is_mount_root(&self.layout.lazy_mount(id))?;
        let frozen_at = Instant::now();
        let mut synced_for = Duration::ZERO;
        let cloned = if mounted && served {
            // A volume this process serves over FUSE: frozen, cloned and
            // thawed by a child process (see `outside`).
            let mnt = self.layout.volume_mount(id);
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&mnt)
                .ctx("open", &mnt)?;
            match outside::freeze_clone_thaw(&dir, &src, &dst, &mnt) {
                Ok(()) => Ok(()),
                Err(StoreError::Io {
                    op: "FICLONE",
                    source,
                    ..
                }) => Err(source),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        } else {
            if mounted {
                let mnt = self.layout.volume_mount(id);
                let dir = File::open(&mnt).ctx("open", &mnt)?;
                nix::unistd::syncfs(dir.as_raw_fd())
                    .map_err(|e| StoreError::io("syncfs", &mnt, e.into()))?;
                synced_for = frozen_at.elapsed();
            }
            before_clone();
            reflink::clone_file(&src, &dst)
        };
        let frozen_for = if mounted && served {
            frozen_at.elapsed()
        } else {
            Duration::ZERO
        };
        let cloned_at = Instant::now();
        let result = cloned
            .map_err(|e| map_space(e, "FICLONE", &tmp))
            .and_then(|()| publish_new(&dst, &tmp, &target));
        tracing::debug!(
            sprite = id,
            checkpoint,
            synced_ms = synced_for.as_secs_f64() * 1e3,
            cloned_ms =
                (cloned_at - frozen_at).as_secs_f64() * 1e3 - synced_for.as_secs_f64() * 1e3,
            published_ms = cloned_at.elapsed().as_secs_f64() * 1e3,
            "checkpoint image written"
        );
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(CheckpointStats {
            frozen_for,
            synced_for,
            total: started.elapsed(),
        })
    }

    /// Removes a checkpoint (its view first, if shown). Its blocks are freed
    /// as far as no other image shares them.
    pub fn delete_checkpoint(&self, id: &str, checkpoint: &str) -> Result<()> {
        validate_name(id)?;
        validate_name(checkpoint)?;
        self.hide_view(id, checkpoint)?;
        let path = self.layout.checkpoint_image(id, checkpoint);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_parent(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::CheckpointMissing {
                    sprite: id.to_string(),
                    checkpoint: checkpoint.to_string(),
                })
            }
            Err(e) => Err(StoreError::io("remove", &path, e)),
        }
    }

    /// Replaces the sprite's volume with a clone of `checkpoint`, in one
    /// rename: after a crash the volume is either the old one or the
    /// restored one. The volume must not be mounted (`Busy`).
    pub fn restore_checkpoint(&self, id: &str, checkpoint: &str) -> Result<()> {
        self.prepare_restore(id, checkpoint)?.finish()
    }

    /// The first half of [`Store::restore_checkpoint`], which does not need
    /// the volume unmounted: the checkpoint cloned beside the volume and
    /// made durable. [`PreparedRestore::finish`] puts it in the volume's
    /// place; dropped unfinished, the clone is removed.
    pub fn prepare_restore(&self, id: &str, checkpoint: &str) -> Result<PreparedRestore> {
        validate_name(id)?;
        validate_name(checkpoint)?;
        let src = self.layout.checkpoint_image(id, checkpoint);
        let src_file = match File::open(&src) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::CheckpointMissing {
                    sprite: id.to_string(),
                    checkpoint: checkpoint.to_string(),
                })
            }
            Err(e) => return Err(StoreError::io("open", &src, e)),
        };
        let tmp = self.layout.pool_sprite_dir(id).join(".volume.restore");
        let _ = std::fs::remove_file(&tmp);
        let prepared = PreparedRestore {
            tmp,
            target: self.layout.volume_image(id),
            mount: self.layout.volume_mount(id),
        };
        let dst = reflink::new_file(&prepared.tmp)?;
        reflink::clone_file(&src_file, &dst).map_err(|e| map_space(e, "FICLONE", &prepared.tmp))?;
        dst.sync_all()
            .map_err(|e| map_space(e, "fsync", &prepared.tmp))?;
        Ok(prepared)
    }

    /// Creates sprite `new_id`'s volume as a clone of another sprite's
    /// checkpoint (a fork). Fails with `VolumeExists` rather than replace.
    pub fn fork_volume(&self, source_id: &str, checkpoint: &str, new_id: &str) -> Result<()> {
        validate_name(source_id)?;
        validate_name(checkpoint)?;
        validate_name(new_id)?;
        let src = self.layout.checkpoint_image(source_id, checkpoint);
        if !src.exists() {
            return Err(StoreError::CheckpointMissing {
                sprite: source_id.to_string(),
                checkpoint: checkpoint.to_string(),
            });
        }
        let dir = self.layout.pool_sprite_dir(new_id);
        ensure_dir(&dir, 0o700)?;
        self.ensure_sprite_dir(new_id)?;
        let target = self.layout.volume_image(new_id);
        let tmp = dir.join(format!(".volume.img.{}", std::process::id()));
        clone_into(&src, &tmp, &target).map_err(|e| match e {
            StoreError::Io { source, .. } if source.raw_os_error() == Some(libc::EEXIST) => {
                StoreError::VolumeExists(new_id.to_string())
            }
            other => other,
        })
    }

    /// Blocks allocated to the sprite's checkpoint images (shared extents
    /// counted in full).
    pub fn checkpoints_allocated_bytes(&self, id: &str) -> Result<u64> {
        Ok(self.checkpoint_usage(id)?.1)
    }

    /// How many checkpoint images the sprite has on local disk, and the
    /// bytes allocated to them: one pass over its checkpoint directory (a
    /// listing asks this of every sprite it shows).
    pub fn checkpoint_usage(&self, id: &str) -> Result<(u32, u64)> {
        let (mut count, mut total) = (0, 0);
        for (_, entry) in self.checkpoint_images(id)? {
            // Relative to the open directory: no walk of the path again.
            match entry.metadata() {
                Ok(m) => {
                    count += 1;
                    total += m.blocks() * 512;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("stat", entry.path(), e)),
            }
        }
        Ok((count, total))
    }

    /// Repairs what a killed process left behind: thaws every frozen sprite
    /// volume (writers inside would hang, unkillable, otherwise) and removes
    /// half-made clones. Safe to run at any start-up.
    pub fn recover(&self) -> Result<()> {
        let sprites = self.layout.sprites_dir();
        for m in mountinfo::read()? {
            if m.fs_type == "ext4" && m.mount_point.starts_with(&sprites) {
                match thaw(&m.mount_point) {
                    Ok(true) => {
                        tracing::warn!(mount = %m.mount_point.display(), "thawed a volume left frozen")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(mount = %m.mount_point.display(), error = %e, "cannot thaw")
                    }
                }
            }
        }
        for id in self.volume_ids()? {
            let dir = self.layout.pool_sprite_dir(id.as_str());
            remove_temporaries(&dir)?;
            remove_temporaries(&self.layout.checkpoints_dir(&id))?;
        }
        Ok(())
    }
}

/// Removes the dot-files (clones in progress) of `dir`.
fn remove_temporaries(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("read_dir", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("read_dir", dir, e))?;
        let name = entry.file_name();
        if name.as_encoded_bytes().first() == Some(&b'.') && entry.path().is_file() {
            tracing::warn!(file = %entry.path().display(), "removing an unfinished clone");
            std::fs::remove_file(entry.path()).ctx("remove", &entry.path())?;
        }
    }
    Ok(())
}
