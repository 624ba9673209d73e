//! Read-only views of checkpoints, shown inside the sprite at
//! `/.sprite/checkpoints/<ck>/`.
//!
//! `<data>/sprites/<id>/checkpoints` is a bind mount of itself made
//! *shared*, and the runtime binds it into the sprite with slave
//! propagation: a view mounted or unmounted here later appears or vanishes
//! inside the running sprite, while nothing the sprite does propagates back.
//! A view is a clone of the checkpoint image (its own: the checkpoint's
//! stays as it was taken) mounted read-only on a writable loop device, so
//! that the kernel replays the journal the crash-consistent image may hold
//! into the clone, and an overlay of its upper layer on the base image, so
//! it shows the whole filesystem as it was. The clone goes with the view.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Result, StoreError};
use crate::mountinfo;
use crate::store::{ensure_dir, Store};
use crate::{loopdev, mount, reflink, validate_name};

impl Store {
    /// Host directory bound into the sprite at `/.sprite/checkpoints`.
    pub fn views_dir(&self, id: &str) -> std::path::PathBuf {
        self.layout.views_dir(id)
    }

    /// Makes `<data>/sprites/<id>/checkpoints` a shared mount point (before
    /// the sandbox starts, so that views propagate into it).
    pub(crate) fn prepare_views(&self, id: &str) -> Result<()> {
        let dir = self.layout.views_dir(id);
        ensure_dir(&dir, 0o755)?;
        if mountinfo::at(&dir)?.is_none() {
            mount::mount_fs(&dir, &dir, "none", MsFlags::MS_BIND, None)?;
        }
        nix::mount::mount(
            None::<&str>,
            &dir,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .map_err(|e| StoreError::Mount {
            fstype: "shared".into(),
            source_path: dir.clone(),
            target: dir.clone(),
            errno: e.into(),
        })
    }

    /// Shows exactly `checkpoints` (names) in the running sprite, hiding any
    /// other. Does nothing when the sprite is not mounted.
    pub fn show_checkpoints(&self, id: &str, image: &str, checkpoints: &[String]) -> Result<()> {
        validate_name(id)?;
        validate_name(image)?;
        let root = self.layout.views_dir(id);
        if mountinfo::at(&root)?.is_none() {
            return Ok(());
        }
        for shown in shown_views(&root)? {
            if !checkpoints.contains(&shown) {
                self.hide_view(id, &shown)?;
            }
        }
        for ck in checkpoints {
            validate_name(ck)?;
            if mountinfo::at(&root.join(ck))?.is_some() {
                continue;
            }
            if let Err(e) = self.show_view(id, image, ck) {
                let _ = self.hide_view(id, ck);
                return Err(e);
            }
        }
        Ok(())
    }

    fn show_view(&self, id: &str, image: &str, ck: &str) -> Result<()> {
        let img = self.layout.checkpoint_image(id, ck);
        if !img.exists() {
            return Err(StoreError::CheckpointMissing {
                sprite: id.to_string(),
                checkpoint: ck.to_string(),
            });
        }
        let vol = self.layout.view_volume_mount(id, ck);
        if let Some(parent) = vol.parent() {
            ensure_dir(parent, 0o700)?;
        }
        ensure_dir(&vol, 0o700)?;
        let own = self.layout.view_image(id, ck);
        if let Some(parent) = own.parent() {
            ensure_dir(parent, 0o700)?;
        }
        let _ = std::fs::remove_file(&own);
        reflink::clone_path(&img, &own)?;
        let device = loopdev::attach(&own, false)?;
        let mounted = mount::mount_fs(
            device.path(),
            &vol,
            "ext4",
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None,
        );
        drop(device);
        // The mount holds the clone open; unlinked now, it goes with the
        // mount (a lazy unmount included) and never outlives it.
        let _ = std::fs::remove_file(&own);
        mounted?;
        let view = self.layout.views_dir(id).join(ck);
        ensure_dir(&view, 0o755)?;
        // Seen with the ids the sprite's root is seen with (see `idmap`):
        // the image through the root's own clone of it.
        let (upper, lower) = match self.mounted_shift(id) {
            None => (vol.join("upper"), self.layout.image_rootfs(image)),
            Some(shift) => {
                let clone = ids_clone(&vol);
                ensure_dir(&clone, 0o700)?;
                self.idmaps.mount(&vol, &clone, shift)?;
                (
                    clone.join("upper"),
                    self.layout.layers_dir(id).join("image"),
                )
            }
        };
        let options = if upper.is_dir() {
            format!("lowerdir={}:{}", upper.display(), lower.display())
        } else {
            format!("lowerdir={}", lower.display())
        };
        mount::mount_fs(
            Path::new("overlay"),
            &view,
            "overlay",
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(&options),
        )
    }

    /// Unmounts every checkpoint view of the sprite and their images,
    /// lazily (a process may still sit in one); the shared mount point
    /// they live in stays.
    pub(crate) fn hide_all_views(&self, id: &str) -> Result<()> {
        for target in self.view_mounts(id)? {
            // Each mount stacked there, topmost first.
            loop {
                match nix::mount::umount2(&target, MntFlags::MNT_DETACH) {
                    Ok(()) => continue,
                    Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
                    Err(e) => {
                        return Err(StoreError::Unmount {
                            target,
                            errno: e.into(),
                        })
                    }
                }
            }
        }
        Ok(())
    }

    /// Where the sprite's views are mounted: each view and each view's
    /// image (one level below their two directories, see `show_view`), and
    /// the views' own mount point, `views` itself (listed whether mounted
    /// or not).
    pub(crate) fn view_mounts(&self, id: &str) -> Result<Vec<PathBuf>> {
        let views = self.layout.views_dir(id);
        let view_volumes = self.layout.view_volume_mount(id, "x");
        let view_volumes = view_volumes.parent().unwrap_or(&views);
        let mut mounts = mountinfo::children(&views)?;
        mounts.push(views.clone());
        mounts.extend(mountinfo::children(view_volumes)?);
        Ok(mounts)
    }

    /// Unmounts one checkpoint's view (lazily: a process inside the sprite
    /// may be sitting in it) and its image.
    pub(crate) fn hide_view(&self, id: &str, ck: &str) -> Result<()> {
        let view = self.layout.views_dir(id).join(ck);
        let vol = self.layout.view_volume_mount(id, ck);
        let clone = ids_clone(&vol);
        for target in [&view, &clone, &vol] {
            loop {
                match nix::mount::umount2(target.as_path(), MntFlags::MNT_DETACH) {
                    Ok(()) => continue,
                    Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
                    Err(e) => {
                        return Err(StoreError::Unmount {
                            target: target.clone(),
                            errno: e.into(),
                        })
                    }
                }
            }
        }
        for dir in [&view, &clone, &vol] {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }

    /// Names of the checkpoints shown in the sprite now.
    pub fn shown_checkpoints(&self, id: &str) -> Result<Vec<String>> {
        validate_name(id)?;
        shown_views(&self.layout.views_dir(id))
    }
}

/// Where a checkpoint image mounted at `vol` is seen with the sprite's ids.
fn ids_clone(vol: &Path) -> std::path::PathBuf {
    let mut name = vol.file_name().unwrap_or_default().to_os_string();
    name.push(".ids");
    vol.with_file_name(name)
}

/// Names of the views mounted in `root`, sorted.
fn shown_views(root: &Path) -> Result<Vec<String>> {
    Ok(mountinfo::children(root)?
        .iter()
        .filter_map(|m| m.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect())
}
