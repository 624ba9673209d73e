//! The `Store` handle: opening the data dir and the pool, and the paths the
//! daemon and the runtime need.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{IoContext, Result, StoreError};
use crate::layout::Layout;
use crate::pool::{self, PoolKind};
use crate::{mount, mountinfo, validate_name};

/// Default size of the sparse pool image (only what is written takes space).
pub const DEFAULT_POOL_SIZE: u64 = 256 << 30;
/// Default size of a sprite's volume (sparse).
pub const DEFAULT_VOLUME_SIZE: u64 = 10 << 30;
/// Default host uid/gid that is root inside sprites.
pub const DEFAULT_UID_SHIFT: u32 = 100_000;

/// Mode of directories the sprite's user-namespace root must traverse to
/// reach its rootfs mount: runc resolves the rootfs path from inside the
/// new user namespace, where host-root-owned 0700 directories are closed
/// (EACCES). 0711 lets it pass through without listing anything.
pub(crate) const TRAVERSE_MODE: u32 = 0o711;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Size of `<data>/pool.img` when one has to be made (sparse).
    pub pool_size_bytes: u64,
    /// Host uid/gid that is uid/gid 0 inside sprites; images are shifted by it.
    /// `None` leaves image ownership as built (no user namespace).
    pub uid_shift: Option<u32>,
    /// Size of each sprite's volume (sparse).
    pub volume_size_bytes: u64,
    /// A host-wide folder of built images (tar archives by recipe and uid
    /// shift): a store that needs an image copies it from there, and one
    /// that builds it leaves it there. `None`: every store builds its own.
    pub image_cache: Option<PathBuf>,
    /// Bytes kept free on the disk under the pool (see [`Store::free_bytes`]):
    /// new volumes, checkpoints and mounts are refused below it.
    pub min_free_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pool_size_bytes: DEFAULT_POOL_SIZE,
            uid_shift: Some(DEFAULT_UID_SHIFT),
            volume_size_bytes: DEFAULT_VOLUME_SIZE,
            image_cache: None,
            min_free_bytes: 0,
        }
    }
}

/// Storage of one host. Cheap to share (`Arc<Store>`); all methods take `&self`.
#[derive(Debug)]
pub struct Store {
    pub(crate) layout: Layout,
    pub(crate) opts: StoreOptions,
    pool_kind: PoolKind,
    /// Serialises making a volume template (done once per size).
    pub(crate) template_lock: Mutex<()>,
    /// Serialises image builds in this process.
    pub(crate) build_lock: Mutex<()>,
    /// The namespaces of idmapped mounts, one per id shift.
    pub(crate) idmaps: crate::idmap::IdMaps,
    /// Sprites whose volume this process made and has not mounted since:
    /// no loop device can hold it (see [`crate::mount::mount_fresh_image`]).
    pub(crate) fresh: Mutex<std::collections::HashSet<String>>,
    /// The run dirs are on a tmpfs (see `runtime_fs`): a sleeping sprite's
    /// run dir would hold memory.
    run_dirs_in_memory: bool,
}

impl Store {
    /// Creates `data_dir` if needed and makes sure the pool is mounted.
    pub fn open(data_dir: &Path, opts: StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(data_dir).ctx("mkdir", data_dir)?;
        let data = data_dir.canonicalize().ctx("canonicalize", data_dir)?;
        check_mountable_path(&data)?;
        set_mode(&data, TRAVERSE_MODE)?;
        let layout = Layout::new(data);
        let pool_kind = pool::ensure(&layout, opts.pool_size_bytes)?;
        for dir in [
            layout.images_dir(),
            layout.templates_dir(),
            layout.pool_sprites_dir(),
        ] {
            ensure_dir(&dir, 0o700)?;
        }
        ensure_dir(&layout.sprites_dir(), TRAVERSE_MODE)?;
        move_agent_logs(&layout)?;
        let run_dirs_in_memory =
            mountinfo::at(&layout.sprites_dir())?.is_some_and(|at| at.fs_type == "tmpfs");
        Ok(Store {
            layout,
            opts,
            pool_kind,
            template_lock: Mutex::new(()),
            build_lock: Mutex::new(()),
            idmaps: Default::default(),
            fresh: Default::default(),
            run_dirs_in_memory,
        })
    }

    /// Whether the sprite's volume is one this process made and has not
    /// mounted since; it no longer is once asked.
    pub(crate) fn take_fresh(&self, id: &str) -> bool {
        self.fresh.lock().is_ok_and(|mut f| f.remove(id))
    }

    /// The canonical data directory.
    pub fn data_dir(&self) -> &Path {
        self.layout.data()
    }

    /// The reflink-capable pool directory (`<data>/pool`).
    pub fn pool_dir(&self) -> &Path {
        self.layout.pool()
    }

    /// Whether the pool is a loop-mounted XFS image (false: native reflinks).
    pub fn pool_is_loop(&self) -> bool {
        self.pool_kind == PoolKind::LoopXfs
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Bytes that can still be written to the pool: what the pool's
    /// filesystem has free, and, for a loop-mounted image, what the disk
    /// holding the image has (the image is sparse: it can promise far more
    /// than the disk under it holds); `(pool, disk under it)`.
    pub fn free_bytes(&self) -> Result<(u64, u64)> {
        let avail = |p: &Path| {
            nix::sys::statvfs::statvfs(p)
                .map(|st| st.blocks_available() * st.fragment_size())
                .map_err(|e| StoreError::io("statvfs", p, e.into()))
        };
        let pool = avail(self.layout.pool())?;
        if self.pool_kind == PoolKind::LoopXfs {
            Ok((pool, avail(self.layout.data())?))
        } else {
            Ok((pool, pool))
        }
    }

    /// Fails with `NoSpace` unless the pool has `needed` bytes free and the
    /// disk under it `needed` more than its reserve
    /// ([`StoreOptions::min_free_bytes`]).
    pub fn ensure_room(&self, needed: u64) -> Result<()> {
        let (pool, disk) = self.free_bytes()?;
        let reserve = self.opts.min_free_bytes.saturating_add(needed);
        if pool < needed {
            return Err(StoreError::NoSpace {
                free_bytes: pool,
                needed_bytes: needed,
            });
        }
        if disk < reserve {
            return Err(StoreError::NoSpace {
                free_bytes: disk,
                needed_bytes: reserve,
            });
        }
        Ok(())
    }

    /// `<data>/sprites/<id>`: the sprite's run dir (bundle, sockets, logs) and
    /// the parent of its mount points. Pure path; see [`Store::ensure_sprite_dir`].
    pub fn sprite_dir(&self, id: &str) -> PathBuf {
        self.layout.sprite_dir(id)
    }

    /// The file the sprite's agent logs to (its stderr): beside its volume.
    pub fn agent_log(&self, id: &str) -> PathBuf {
        self.layout.agent_log(id)
    }

    /// Creates `<data>/sprites/<id>` (root-owned, 0711: traversable by the
    /// sprite's mapped root, not listable) and returns it.
    pub fn ensure_sprite_dir(&self, id: &str) -> Result<PathBuf> {
        validate_name(id)?;
        let dir = self.layout.sprite_dir(id);
        ensure_dir(&dir, TRAVERSE_MODE)?;
        Ok(dir)
    }

    /// Removes the run dir of a sprite gone cold, where the run dirs are in
    /// memory and nothing is mounted under it: a sleeping sprite then holds
    /// none (~40 KiB of files otherwise), and its next start makes the dir
    /// again. On a disk it stays, and a start rewrites only what changed.
    /// Whether it went.
    pub fn remove_run_dir(&self, id: &str) -> Result<bool> {
        validate_name(id)?;
        if !self.run_dirs_in_memory {
            return Ok(false);
        }
        let dir = self.layout.sprite_dir(id);
        if !mountinfo::mounts_under(&mountinfo::read()?, &dir).is_empty() {
            return Ok(false);
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("remove", &dir, e)),
        }
    }

    /// Unmounts every sprite rootfs and volume, then the pool. Fails with
    /// `Busy` (leaving the rest mounted) if something is still in use.
    pub fn shutdown(&self) -> Result<()> {
        let sprites = self.layout.sprites_dir();
        for target in mountinfo::mounts_under(&mountinfo::read()?, &sprites) {
            mount::unmount(&target)?;
        }
        // A volume's loop device lets go of its image (in the pool) a moment
        // after the volume is unmounted, longer when the unmount discards
        // freed blocks: the pool is busy until then.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match pool::unmount(&self.layout, self.pool_kind) {
                Err(StoreError::Busy(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }
}

/// overlayfs splits its options on ',' and ':'; refuse paths it would misread.
fn check_mountable_path(path: &Path) -> Result<()> {
    let s = path.as_os_str().as_encoded_bytes();
    if s.iter()
        .any(|&b| b == b',' || b == b':' || b == b'\\' || b.is_ascii_control())
    {
        return Err(StoreError::UnsupportedPath(path.to_path_buf()));
    }
    Ok(())
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).ctx("chmod", path)
}

/// Creates `dir` (not its parents) if missing and sets its mode.
pub(crate) fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io("mkdir", dir, e)),
    }
    set_mode(dir, mode)
}

/// Moves the agents' logs from where earlier releases kept them (the run
/// dirs) to beside each sprite's volume, with the log moved aside at the
/// last start (`.1`). Only for a sprite with nothing mounted under its run
/// dir: an agent that runs writes on to the file it was given. A log
/// already there wins; a move cut short is finished (a half copy has a
/// temporary name, which `recover` removes).
fn move_agent_logs(layout: &Layout) -> Result<()> {
    let sprites = layout.sprites_dir();
    let entries = match std::fs::read_dir(&sprites) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("list", &sprites, e)),
    };
    let mut mounts = None;
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let old = layout.old_agent_log(&id);
        let pool_dir = layout.pool_sprite_dir(&id);
        if !old.exists() || !pool_dir.is_dir() {
            continue;
        }
        if mounts.is_none() {
            mounts = Some(mountinfo::read()?);
        }
        let sprite_dir = layout.sprite_dir(&id);
        if !mountinfo::mounts_under(mounts.as_deref().unwrap_or_default(), &sprite_dir).is_empty() {
            continue;
        }
        for suffix in ["", ".1"] {
            let with = |p: PathBuf| {
                let mut s = p.into_os_string();
                s.push(suffix);
                PathBuf::from(s)
            };
            let (from, to) = (with(old.clone()), with(layout.agent_log(&id)));
            if !from.exists() {
                continue;
            }
            if !to.exists() {
                let tmp = pool_dir.join(format!(".agent.log{suffix}.tmp"));
                std::fs::copy(&from, &tmp).ctx("copy", &from)?;
                std::fs::rename(&tmp, &to).ctx("rename", &to)?;
            }
            std::fs::remove_file(&from).ctx("remove", &from)?;
        }
    }
    Ok(())
}
