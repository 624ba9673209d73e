//! Local copies of a sprite's images going (evicted to the cold tier) and
//! coming back (rebuilt from it). What moves the bytes lives elsewhere
//! (`sprite-cold`); this only names the files and swaps them in and out,
//! the same crash-safe way as everything else here: a dot-temporary,
//! complete, renamed into place.

use std::path::{Path, PathBuf};

use crate::checkpoint::publish;
use crate::error::{IoContext, Result, StoreError};
use crate::mountinfo;
use crate::store::{ensure_dir, Store};
use crate::validate_name;

impl Store {
    /// Where a volume is rebuilt before [`Store::install_volume`] (a
    /// dot-file: start-up removes it if a rebuild never finished).
    pub fn volume_rebuild_path(&self, id: &str) -> Result<PathBuf> {
        validate_name(id)?;
        let dir = self.layout.pool_sprite_dir(id);
        ensure_dir(&dir, 0o700)?;
        self.ensure_sprite_dir(id)?;
        Ok(dir.join(".volume.rebuild"))
    }

    /// The record of which chunks of a volume being filled from the cold
    /// tier are local (present while such a fill is unfinished).
    pub fn volume_state_path(&self, id: &str) -> PathBuf {
        self.layout.volume_state(id)
    }

    /// Where the daemon mounts the self-filling view of the volume
    /// (made if needed; host side only).
    pub fn lazy_mount_path(&self, id: &str) -> Result<PathBuf> {
        validate_name(id)?;
        self.ensure_sprite_dir(id)?;
        let dir = self.layout.lazy_mount(id);
        ensure_dir(&dir, 0o700)?;
        Ok(dir)
    }

    /// Whether something is mounted on the sprite's lazy mount point.
    pub fn lazy_mounted(&self, id: &str) -> Result<bool> {
        validate_name(id)?;
        let mnt = self.layout.lazy_mount(id);
        mountinfo::is_mount_root(&mnt)
    }

    /// Detaches whatever is mounted on the sprite's lazy mount point (a
    /// self-filling volume whose server is gone). Answers whether there was.
    pub fn detach_lazy_mount(&self, id: &str) -> Result<bool> {
        validate_name(id)?;
        let mnt = self.layout.lazy_mount(id);
        let mut detached = false;
        while mountinfo::mount_at(&mountinfo::read()?, &mnt).is_some() {
            nix::mount::umount2(
                &mnt,
                nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::MNT_FORCE,
            )
            .map_err(|e| StoreError::Unmount {
                target: mnt.clone(),
                errno: e.into(),
            })?;
            detached = true;
        }
        Ok(detached)
    }

    /// Aborts the FUSE connection of every self-filling volume left mounted
    /// under this data dir, answering how many there were. Call it at
    /// start-up, before anything touches those volumes: their server was
    /// the daemon before this one. A daemon killed while one of its own
    /// threads waited for I/O on such a volume cannot finish exiting (that
    /// thread waits for an answer only the dead server could give), so its
    /// `/dev/fuse` stays open and the connection with it: I/O on the volume
    /// and every host-wide `sync` would wait for ever. Aborted, they fail
    /// instead, the old process ends, and the sprite's volume is recovered
    /// as after any crash.
    pub fn abort_orphaned_lazy(&self) -> Result<usize> {
        abort_lazy_connections(self.layout.data())
    }

    /// Moves a rebuilt volume into place (replacing any), durably named.
    /// Refuses (`Busy`) while the volume it replaces is mounted in its
    /// place: that mount would go on taking the sprite's writes into a file
    /// no longer its volume. (One detached by [`Store::discard_rootfs`] is
    /// no longer there: what it still writes back is thrown away.)
    pub fn install_volume(&self, id: &str, rebuilt: &std::path::Path) -> Result<()> {
        validate_name(id)?;
        let mnt = self.layout.volume_mount(id);
        if mountinfo::is_mount_root(&mnt)? {
            return Err(StoreError::Busy(mnt));
        }
        publish(rebuilt, &self.layout.volume_image(id), true)
    }

    /// Where checkpoint `checkpoint` is rebuilt before
    /// [`Store::install_checkpoint`].
    pub fn checkpoint_rebuild_path(&self, id: &str, checkpoint: &str) -> Result<PathBuf> {
        validate_name(id)?;
        validate_name(checkpoint)?;
        let dir = self.layout.checkpoints_dir(id);
        ensure_dir(&self.layout.pool_sprite_dir(id), 0o700)?;
        ensure_dir(&dir, 0o700)?;
        Ok(dir.join(format!(".{checkpoint}.rebuild")))
    }

    pub fn install_checkpoint(
        &self,
        id: &str,
        checkpoint: &str,
        rebuilt: &std::path::Path,
    ) -> Result<()> {
        validate_name(id)?;
        validate_name(checkpoint)?;
        publish(rebuilt, &self.layout.checkpoint_image(id, checkpoint), true)
    }

    /// Deletes the local volume and checkpoint images of a sprite whose
    /// images are now kept in object storage; its directories stay (they
    /// mark the sprite as known). Refuses (`Busy`) while anything of the
    /// sprite is mounted.
    pub fn release_local(&self, id: &str) -> Result<()> {
        validate_name(id)?;
        let sprite_dir = self.layout.sprite_dir(id);
        if let Some(m) = mountinfo::mounts_under(&mountinfo::read()?, &sprite_dir).first() {
            return Err(StoreError::Busy(m.clone()));
        }
        for name in self.checkpoint_names(id)? {
            let path = self.layout.checkpoint_image(id, &name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path, e)),
            }
        }
        self.drop_replicas_except(id, None)?;
        for file in [self.layout.volume_image(id), self.layout.volume_state(id)] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &file, e)),
            }
        }
        let dir = self.layout.pool_sprite_dir(id);
        match std::fs::File::open(&dir) {
            Ok(d) => d.sync_all().ctx("fsync", &dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("open", &dir, e)),
        }
    }

    /// What the sprite keeps on local disk: bytes allocated to its volume
    /// and checkpoint images (extents shared between them counted in
    /// full), and how many checkpoint images.
    pub fn local_usage(&self, id: &str) -> Result<LocalUsage> {
        use std::os::unix::fs::MetadataExt;
        let volume = match std::fs::metadata(self.layout.volume_image(id)) {
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        };
        let (checkpoints, bytes) = self.checkpoint_usage(id)?;
        Ok(LocalUsage {
            bytes: volume + bytes,
            checkpoints,
        })
    }
}

/// See [`Store::local_usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalUsage {
    pub bytes: u64,
    pub checkpoints: u32,
}

/// Aborts, through the fuse control filesystem, the connection of every
/// self-filling volume mounted under data dir `data` (see
/// [`Store::abort_orphaned_lazy`]); how many there were. Also for test
/// harnesses that must not leave a host hanging.
pub fn abort_lazy_connections(data: &Path) -> Result<usize> {
    let layout = crate::layout::Layout::new(data.to_path_buf());
    let sprites = layout.sprites_dir();
    let orphans: Vec<mountinfo::MountEntry> = mountinfo::read()?
        .into_iter()
        .filter(|e| {
            e.fs_type == "fuse"
                && e.source == LAZY_SOURCE
                && e.mount_point.file_name() == Some("lazy".as_ref())
                && e.mount_point.parent().and_then(Path::parent) == Some(sprites.as_path())
        })
        .collect();
    if orphans.is_empty() {
        return Ok(0);
    }
    let ctl = FuseCtl::open(data)?;
    for e in &orphans {
        let abort = ctl.dir.join(e.dev.1.to_string()).join("abort");
        match std::fs::write(&abort, "1") {
            Ok(()) => {
                tracing::warn!(mountpoint = %e.mount_point.display(), connection = e.dev.1,
                    "aborted the FUSE connection of a volume the last daemon served");
            }
            // Gone meanwhile: its server closed it.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(mountpoint = %e.mount_point.display(), error = %err,
                    "fusectl refused the abort; forcing the unmount instead");
                // MNT_FORCE makes FUSE abort the connection too.
                nix::mount::umount2(
                    &e.mount_point,
                    nix::mount::MntFlags::MNT_FORCE | nix::mount::MntFlags::MNT_DETACH,
                )
                .map_err(|errno| StoreError::Unmount {
                    target: e.mount_point.clone(),
                    errno: errno.into(),
                })?;
            }
        }
    }
    Ok(orphans.len())
}

/// The `source` the daemon mounts its self-filling volumes with
/// (`sprite-cold`'s FUSE mount).
const LAZY_SOURCE: &str = "sprite-lazy";

/// The fuse control filesystem: the system's at `/sys/fs/fuse/connections`
/// where it is mounted, or else one mounted for the moment in the data dir
/// (and unmounted when dropped), leaving the host as it was.
struct FuseCtl {
    dir: PathBuf,
    private: bool,
}

impl FuseCtl {
    const SYSTEM: &'static str = "/sys/fs/fuse/connections";

    fn open(data: &Path) -> Result<FuseCtl> {
        let system = Path::new(Self::SYSTEM);
        if mountinfo::mount_at(&mountinfo::read()?, system).is_some_and(|m| m.fs_type == "fusectl")
        {
            return Ok(FuseCtl {
                dir: system.to_path_buf(),
                private: false,
            });
        }
        let dir = data.join(".fusectl");
        ensure_dir(&dir, 0o700)?;
        use nix::mount::MsFlags;
        nix::mount::mount(
            Some("fusectl"),
            &dir,
            Some("fusectl"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| StoreError::io("mount fusectl", &dir, e.into()))?;
        Ok(FuseCtl { dir, private: true })
    }
}

impl Drop for FuseCtl {
    fn drop(&mut self) {
        if self.private {
            let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}
