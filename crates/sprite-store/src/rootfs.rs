//! A sprite's root filesystem: its volume (ext4, loop) mounted at
//! `<data>/sprites/<id>/volume`, and overlayfs at `<data>/sprites/<id>/rootfs`
//! with the shared image as lower layer and upper/work on the volume.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::unistd::{chown, Gid, Uid};

use crate::error::{IoContext, Result, StoreError};
use crate::mountinfo::{self, MountEntry};
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
        self.mount_rootfs_from(id, image, &self.layout.volume_image(id))
    }

    /// [`Store::mount_rootfs`] with the volume read from `volume_img`
    /// instead of the sprite's own `volume.img` (e.g. a file that fills
    /// itself from the cold tier as it is read).
    pub fn mount_rootfs_from(&self, id: &str, image: &str, volume_img: &Path) -> Result<PathBuf> {
        validate_name(id)?;
        validate_name(image)?;
        let volume_mnt = self.layout.volume_mount(id);
        let rootfs = self.layout.rootfs_mount(id);
        let mounts = mountinfo::read()?;
        let volume_mounted = is_mounted(&mounts, &volume_mnt, "ext4");
        let rootfs_mounted = is_mounted(&mounts, &rootfs, "overlay");
        if volume_mounted && rootfs_mounted {
            self.prepare_views(id, &mounts)?;
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

        // A volume filling itself from the cold tier is a file the daemon
        // serves (FUSE): everything that writes to it here is done by a
        // child process (see `outside`).
        let served = volume_img != self.layout.volume_image(id);
        if rootfs_mounted {
            // Overlay without its volume: it points at a detached upper; redo it.
            tracing::warn!(
                sprite = id,
                "overlay mounted without its volume; remounting"
            );
            mount::unmount_by(&rootfs, served)?;
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
            mount::mount_image_by(volume_img, &volume_mnt, "ext4", flags, data, served)?;
        }

        let (uid, gid) = self.root_ids();
        let upper = volume_mnt.join("upper");
        let work = volume_mnt.join("work");
        let lower = self.layout.image_rootfs(image);
        // The sprite's `/` is the upper dir's root, not the image's: it
        // takes the image's group and mode (who may make top-level folders).
        let top = std::fs::metadata(&lower).ctx("stat", &lower)?;
        let top_mode = top.permissions().mode() & 0o7777;
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
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
        self.prepare_views(id, &mounts)?;
        tracing::debug!(sprite = id, image, rootfs = %rootfs.display(), "rootfs mounted");
        Ok(rootfs)
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
        let mounts = mountinfo::read()?;
        Ok(is_mounted(&mounts, &self.layout.volume_mount(id), "ext4")
            && is_mounted(&mounts, &self.layout.rootfs_mount(id), "overlay"))
    }

    /// Unmounts the overlay, then the volume (its loop device clears itself).
    /// Tolerates either being unmounted already; fails with `Busy` if in use.
    pub fn unmount_rootfs(&self, id: &str) -> Result<()> {
        validate_name(id)?;
        // Checkpoint views and their images first, lazily: they are
        // read-only and the sandbox that used them is gone.
        let mounts = mountinfo::read()?;
        let views = self.layout.views_dir(id);
        let view_volumes = self.layout.view_volume_mount(id, "x");
        let view_volumes = view_volumes.parent().unwrap_or(&views);
        let lazy: Vec<PathBuf> = mountinfo::mounts_under(&mounts, &views)
            .into_iter()
            .chain(mountinfo::mounts_under(&mounts, view_volumes))
            .collect();
        for target in lazy {
            match nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => {
                    return Err(StoreError::Unmount {
                        target,
                        errno: e.into(),
                    })
                }
            }
        }
        // Both sync the volume as they go: one the daemon serves itself is
        // unmounted by a child process (see `outside`).
        let served = mountinfo::mount_at(&mounts, &self.layout.lazy_mount(id)).is_some();
        for target in [self.layout.rootfs_mount(id), self.layout.volume_mount(id)] {
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
        loopdev::ensure_not_attached(&image)
    }

    /// Host ids that are root inside the sprite.
    fn root_ids(&self) -> (Uid, Gid) {
        let shift = self.opts.uid_shift.unwrap_or(0);
        (Uid::from_raw(shift), Gid::from_raw(shift))
    }
}

fn is_mounted(mounts: &[MountEntry], path: &Path, fs_type: &str) -> bool {
    mountinfo::mount_at(mounts, path).is_some_and(|m| m.fs_type == fs_type)
}
