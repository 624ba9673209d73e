//! A sprite's root filesystem: its volume (ext4, loop) mounted at
//! `<data>/sprites/<id>/volume`, and overlayfs at `<data>/sprites/<id>/rootfs`
//! with the shared image as lower layer and upper/work on the volume.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::unistd::{chown, Gid, Uid};

use crate::error::{IoContext, Result, StoreError};
use crate::idmap::IdShift;
use crate::mountinfo;
use crate::store::{ensure_dir, Store};
use crate::{loopdev, mount, validate_name};

impl Store {
    /// `<data>/sprites/<id>/rootfs` (pure path).
    pub fn rootfs_path(&self, id: &str) -> PathBuf {
        self.layout.rootfs_mount(id)
    }

    /// Mounts the sprite's volume and its overlay root filesystem on `image`,
    /// and returns the rootfs path. Idempotent: returns at once when both are
    /// mounted, and repairs a half-mounted state.
    pub fn mount_rootfs(&self, id: &str, image: &str) -> Result<PathBuf> {
        self.mount_rootfs_from(id, image, &self.layout.volume_image(id), None)
    }

    /// [`Store::mount_rootfs`] with the volume read from `volume_img`
    /// instead of the sprite's own `volume.img` (e.g. a file that fills
    /// itself from the cold tier as it is read), and its layers seen with
    /// their ids shifted by `shift` (a sprite running as a host id range
    /// of its own: see `idmap`). A root mounted with another shift is
    /// mounted again, and its checkpoint views hidden (shown again by the
    /// next [`Store::show_checkpoints`]).
    pub fn mount_rootfs_from(
        &self,
        id: &str,
        image: &str,
        volume_img: &Path,
        shift: Option<IdShift>,
    ) -> Result<PathBuf> {
        validate_name(id)?;
        validate_name(image)?;
        let volume_mnt = self.layout.volume_mount(id);
        let rootfs = self.layout.rootfs_mount(id);
        // A volume filling itself from the cold tier is a file the daemon
        // serves (FUSE): everything that writes to it here is done by a
        // child process (see `outside`).
        let served = volume_img != self.layout.volume_image(id);
        let t0 = std::time::Instant::now();
        let mut volume_mounted = is_mounted(&volume_mnt, "ext4")?;
        if volume_mounted && !served && !loopdev::mount_is_backed_by(&volume_mnt, volume_img)? {
            // The volume file was replaced under its mount (by a rebuild
            // from the cold tier, after a daemon was killed): what is
            // mounted is the old file, which nothing keeps.
            tracing::warn!(
                sprite = id,
                "the volume mounted is not the sprite's volume file; mounting that instead"
            );
            self.unmount_rootfs(id)?;
            volume_mounted = false;
        }
        let rootfs_mounted = is_mounted(&rootfs, "overlay")?;
        let same_shift = self.mounted_shift(id) == shift;
        if volume_mounted && rootfs_mounted && same_shift {
            self.prepare_views(id)?;
            return Ok(rootfs);
        }

        if !self.image_ready(image) {
            return Err(StoreError::ImageMissing(image.to_string()));
        }
        if !volume_img.exists() {
            return Err(StoreError::VolumeMissing(id.to_string()));
        }
        self.ensure_sprite_dir(id)?;
        ensure_dir(&volume_mnt, 0o700)?;
        ensure_dir(&rootfs, 0o700)?;

        if rootfs_mounted {
            // Overlay without its volume points at a detached upper; one
            // made with another id shift shows the wrong owners: redo it.
            tracing::warn!(
                sprite = id,
                volume_mounted,
                same_shift,
                "root mounted without its volume or with other ids; remounting"
            );
            mount::unmount_by(&rootfs, served)?;
        }
        if !same_shift {
            self.hide_all_views(id)?;
        }
        if !volume_mounted {
            self.ensure_room(0)?;
            // A volume filling itself from the cold tier is a file the
            // daemon serves (FUSE): what the sprite writes must reach it
            // before the write returns, or a crash of the daemon (which
            // ends the FUSE connection) would lose what sat in the page
            // cache; and it is not a plain file whose holes can be punched.
            let (flags, data) = if served {
                (MsFlags::MS_SYNCHRONOUS, None)
            } else {
                (MsFlags::empty(), mount::GIVE_BACK)
            };
            if !served && self.take_fresh(id) {
                mount::mount_fresh_image(volume_img, &volume_mnt, "ext4", flags, data)?;
            } else {
                mount::mount_image_by(volume_img, &volume_mnt, "ext4", flags, data, served)?;
            }
        }

        let volume_at = t0.elapsed();
        // The layers as the overlay takes them: as stored, or idmapped
        // clones (made again whenever the root is).
        let layers = self.layout.layers_dir(id);
        let (lower_layer, volume_layer) = (layers.join("image"), layers.join("volume"));
        for clone in [&lower_layer, &volume_layer] {
            while mount::unmount_by(clone, served)? {}
        }
        let _ = std::fs::remove_file(self.layout.layers_shift(id));
        let (lower, volume_side) = match shift {
            None => (self.layout.image_rootfs(image), volume_mnt.clone()),
            Some(shift) => {
                ensure_dir(&layers, 0o700)?;
                ensure_dir(&lower_layer, 0o700)?;
                ensure_dir(&volume_layer, 0o700)?;
                self.idmaps
                    .mount(&self.layout.image_rootfs(image), &lower_layer, shift)?;
                self.idmaps.mount(&volume_mnt, &volume_layer, shift)?;
                (lower_layer, volume_layer)
            }
        };
        let layers_at = t0.elapsed();
        // Made and owned as stored (the ids on disk), mounted through the
        // clones.
        let (uid, gid) = self.root_ids();
        let upper = volume_mnt.join("upper");
        let work = volume_mnt.join("work");
        // The sprite's `/` is the upper dir's root, not the image's: it
        // takes the image's group and mode (who may make top-level folders).
        let image_root = self.layout.image_rootfs(image);
        let top = std::fs::metadata(&image_root).ctx("stat", &image_root)?;
        let top_mode = top.permissions().mode() & 0o7777;
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            volume_side.join("upper").display(),
            volume_side.join("work").display()
        );
        if served {
            self.overlay_by_child(
                &upper,
                &work,
                &rootfs,
                &options,
                (uid, gid, top.gid(), top_mode),
            )?;
        } else {
            for dir in [&upper, &work] {
                ensure_dir(dir, 0o755)?;
                chown(dir.as_path(), Some(uid), Some(gid)).ctx("chown", dir)?;
            }
            chown(upper.as_path(), Some(uid), Some(Gid::from_raw(top.gid())))
                .ctx("chown", &upper)?;
            std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(top_mode))
                .ctx("chmod", &upper)?;
            mount::mount_fs(
                Path::new("overlay"),
                &rootfs,
                "overlay",
                MsFlags::empty(),
                Some(&options),
            )?;
        }
        if let Some(shift) = shift {
            let record = format!("{} {} {}\n", shift.from, shift.to, shift.size);
            let path = self.layout.layers_shift(id);
            std::fs::write(&path, record).ctx("write", &path)?;
        }
        let overlay_at = t0.elapsed();
        self.prepare_views(id)?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            sprite = id,
            image,
            rootfs = %rootfs.display(),
            ?shift,
            volume_ms = ms(volume_at),
            layers_ms = ms(layers_at - volume_at),
            overlay_ms = ms(overlay_at - layers_at),
            views_ms = ms(t0.elapsed() - overlay_at),
            "rootfs mounted"
        );
        Ok(rootfs)
    }

    /// The id shift the sprite's mounted root was made with.
    pub(crate) fn mounted_shift(&self, id: &str) -> Option<IdShift> {
        let text = std::fs::read_to_string(self.layout.layers_shift(id)).ok()?;
        let mut n = text.split_whitespace().map(|w| w.parse::<u32>().ok());
        let (from, to, size) = (n.next()??, n.next()??, n.next()??);
        Some(IdShift { from, to, size })
    }

    /// The overlay's directories on a served volume and the overlay mount,
    /// as [`Store::mount_rootfs_from`] makes them on a plain one, by a child
    /// process (see `outside`). `ids`: root's uid and gid inside, and the
    /// image root's gid and mode, which the sprite's `/` takes.
    fn overlay_by_child(
        &self,
        upper: &Path,
        work: &Path,
        rootfs: &Path,
        options: &str,
        ids: (Uid, Gid, u32, u32),
    ) -> Result<()> {
        use crate::outside::{c_path, run, Call};
        let (uid, gid, top_gid, top_mode) = ids;
        let (uid, gid) = (uid.as_raw(), gid.as_raw());
        let c = |p: &Path| c_path(p).map_err(|e| StoreError::io("mkdir", p, e.into()));
        // Each call with what names it in an error.
        let mut calls: Vec<(Call, &'static str, &Path)> = Vec::new();
        for dir in [upper, work] {
            calls.push((
                Call::Mkdir {
                    path: c(dir)?,
                    mode: 0o755,
                },
                "mkdir",
                dir,
            ));
            calls.push((
                Call::Chmod {
                    path: c(dir)?,
                    mode: 0o755,
                },
                "chmod",
                dir,
            ));
            calls.push((
                Call::Chown {
                    path: c(dir)?,
                    uid,
                    gid,
                },
                "chown",
                dir,
            ));
        }
        calls.push((
            Call::Chown {
                path: c(upper)?,
                uid,
                gid: top_gid,
            },
            "chown",
            upper,
        ));
        calls.push((
            Call::Chmod {
                path: c(upper)?,
                mode: top_mode,
            },
            "chmod",
            upper,
        ));
        let data = std::ffi::CString::new(options).map_err(|_| {
            StoreError::io(
                "mount",
                rootfs,
                std::io::Error::from_raw_os_error(libc::EINVAL),
            )
        })?;
        let overlay = Call::Mount {
            source: c(Path::new("overlay"))?,
            target: c(rootfs)?,
            fstype: c(Path::new("overlay"))?,
            flags: 0,
            data: Some(data),
        };
        calls.push((overlay, "mount", rootfs));
        let (calls, names): (Vec<Call>, Vec<(&str, &Path)>) = calls
            .into_iter()
            .map(|(call, op, p)| (call, (op, p)))
            .unzip();
        run(&calls).map_err(|(i, errno)| match names.get(i) {
            Some(&(op, path)) if op != "mount" => StoreError::io(op, path, errno.into()),
            _ => StoreError::Mount {
                fstype: "overlay".into(),
                source_path: PathBuf::from("overlay"),
                target: rootfs.to_path_buf(),
                errno: errno.into(),
            },
        })
    }

    /// `<data>/sprites/<id>/run`, created if needed: bound read-only into
    /// the sprite at `/.sprite/run` for the in-sprite API socket.
    pub fn inside_run_dir(&self, id: &str) -> Result<PathBuf> {
        self.ensure_sprite_dir(id)?;
        let dir = self.layout.inside_run_dir(id);
        ensure_dir(&dir, 0o755)?;
        Ok(dir)
    }

    /// Whether both the volume and the overlay are mounted.
    pub fn is_rootfs_mounted(&self, id: &str) -> Result<bool> {
        validate_name(id)?;
        Ok(is_mounted(&self.layout.volume_mount(id), "ext4")?
            && is_mounted(&self.layout.rootfs_mount(id), "overlay")?)
    }

    /// Whether anything [`Store::unmount_rootfs`] takes down is mounted:
    /// the overlay, its layers, the volume, a checkpoint view. A few
    /// `statx` calls, no look at the loop devices.
    pub fn is_anything_mounted(&self, id: &str) -> Result<bool> {
        validate_name(id)?;
        for target in self.root_mounts(id).iter().chain(&self.view_mounts(id)?) {
            if mountinfo::is_mount_root(target)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Unmounts the overlay, then the volume (its loop device clears itself).
    /// Tolerates either being unmounted already; fails with `Busy` if in use.
    pub fn unmount_rootfs(&self, id: &str) -> Result<()> {
        validate_name(id)?;
        // Checkpoint views and their images first, lazily: they are
        // read-only and the sandbox that used them is gone.
        self.hide_all_views(id)?;
        // Both sync the volume as they go: one the daemon serves itself is
        // unmounted by a child process (see `outside`).
        let served = mountinfo::is_mount_root(&self.layout.lazy_mount(id))?;
        for target in self.root_mounts(id) {
            // Loop in case the same point was mounted more than once.
            while mount::unmount_by(&target, served)? {}
        }
        // An unmount ends this namespace's mount only. A copy of it in a
        // mount namespace being made elsewhere (by runc or pasta, between
        // their unshare and pivot_root) keeps the filesystem alive, its last
        // writes not yet in the image, until that copy goes: nothing may
        // read, clone or remove the image before its loop device let go.
        let image = if served {
            self.layout.lazy_mount(id)
        } else {
            self.layout.volume_image(id)
        };
        let _ = std::fs::remove_file(self.layout.layers_shift(id));
        loopdev::ensure_not_attached(&image)
    }

    /// Takes the sprite's root and volume out of the way of a volume that
    /// replaces them (a restore): what they hold is thrown away, so nothing
    /// waits for it to be written back. Each mount is detached from its
    /// mount point at once (`MNT_DETACH`), and held open by the returned
    /// [`Discarded`] so that the detach frees nothing; dropping that lets
    /// go of them on a thread of its own, where the kernel writes back the
    /// overlay and the volume, stops its journal and clears its loop device
    /// (~10 ms here, which a restore waited for, and whose writes slowed
    /// the next mount when they ran beside it). The sprite's checkpoint
    /// views stay shown. The replaced image is another file (the new one
    /// comes in by rename): what is written back goes to the old, unlinked
    /// one, and a new mount of the image never meets the old filesystem.
    /// An image not replaced after all (the swap failed) is waited for as
    /// after any unmount
    /// ([`loopdev::ensure_not_attached`] at its next mount). A volume the
    /// daemon serves is unmounted as [`Store::unmount_rootfs`] does.
    pub fn discard_rootfs(&self, id: &str) -> Result<Discarded> {
        validate_name(id)?;
        let mut held = Discarded {
            sprite: id.to_string(),
            mounts: Vec::new(),
        };
        if mountinfo::is_mount_root(&self.layout.lazy_mount(id))? {
            self.unmount_rootfs(id)?;
            return Ok(held);
        }
        // The checkpoint views stay: they are clones of checkpoint images,
        // mounted with the sprite's id shift, and the restored root comes
        // back with the same shift and the same checkpoints. The record of
        // that shift stays with them (the next mount of the root hides them
        // only if its shift differs, and rewrites the record). Hidden and
        // shown again, each view cost three unmounts here, then a loop
        // device, an ext4 mount and two more mounts beside the restored
        // sprite's start and first requests.
        for target in self.root_mounts(id) {
            // Loop in case the same point was mounted more than once.
            while mountinfo::is_mount_root(&target)? {
                let root = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
                    .open(&target)
                    .ctx("open", &target)?;
                nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH)
                    .map_err(|e| StoreError::io("umount", &target, e.into()))?;
                held.mounts.push(root);
            }
        }
        Ok(held)
    }

    /// The mount points of the sprite's root, in the order they come off:
    /// the overlay, the layers' clones it stands on, then the volume.
    fn root_mounts(&self, id: &str) -> [PathBuf; 4] {
        let layers = self.layout.layers_dir(id);
        [
            self.layout.rootfs_mount(id),
            layers.join("image"),
            layers.join("volume"),
            self.layout.volume_mount(id),
        ]
    }

    /// Host ids that are root inside the sprite.
    fn root_ids(&self) -> (Uid, Gid) {
        let shift = self.opts.uid_shift.unwrap_or(0);
        (Uid::from_raw(shift), Gid::from_raw(shift))
    }
}

/// Whether the topmost mount at `path` is of `fs_type`.
fn is_mounted(path: &Path, fs_type: &str) -> Result<bool> {
    Ok(mountinfo::at(path)?.is_some_and(|m| m.fs_type == fs_type))
}

/// A sprite's old root and volume, detached by [`Store::discard_rootfs`]
/// and held until this is dropped: then a thread of its own lets go of
/// them (the kernel's write-back and teardown run there).
#[derive(Debug)]
#[must_use = "dropping it releases the old volume at once"]
pub struct Discarded {
    sprite: String,
    mounts: Vec<std::fs::File>,
}

impl Drop for Discarded {
    fn drop(&mut self) {
        let mounts = std::mem::take(&mut self.mounts);
        if mounts.is_empty() {
            return;
        }
        let sprite = std::mem::take(&mut self.sprite);
        let released = std::thread::Builder::new()
            .name("release-volume".into())
            .spawn(move || {
                let t0 = std::time::Instant::now();
                drop(mounts);
                tracing::debug!(sprite, elapsed = ?t0.elapsed(), "discarded volume released");
            });
        // Without a thread of its own, this one lets go of them (the
        // closure, and the files in it, are dropped here).
        if let Err(e) = released {
            tracing::debug!(error = %e, "releasing a discarded volume on the caller's thread");
        }
    }
}
