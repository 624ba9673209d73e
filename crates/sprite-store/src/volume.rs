//! Sprite volumes: `<pool>/sprites/<id>/volume.img`, a reflink clone of a
//! pre-formatted sparse ext4 template, so making one costs a FICLONE
//! whatever the volume's size (no mkfs per sprite).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{renameat2, RenameFlags};

use crate::error::{IoContext, Result, StoreError};
use crate::store::{ensure_dir, Store};
use crate::{mountinfo, reflink, tool, validate_name};

/// Smallest volume made (ext4 with a journal needs some room).
pub const MIN_VOLUME_BYTES: u64 = 64 << 20;

/// Space a volume takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeUsage {
    /// The volume's size as the sprite sees it.
    pub apparent_bytes: u64,
    /// Blocks allocated to volume.img (extents shared with the template or
    /// checkpoints are counted in full).
    pub allocated_bytes: u64,
}

impl Store {
    /// `<pool>/sprites/<id>/volume.img` (pure path).
    pub fn volume_path(&self, id: &str) -> PathBuf {
        self.layout.volume_image(id)
    }

    /// Ids of every sprite that has a volume directory in the pool
    /// (complete or not), for reconciling with the daemon's records.
    pub fn volume_ids(&self) -> Result<Vec<String>> {
        let dir = self.layout.pool_sprites_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("read_dir", &dir, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("read_dir", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if validate_name(&name).is_ok() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    pub fn volume_exists(&self, id: &str) -> bool {
        validate_name(id).is_ok() && self.layout.volume_image(id).exists()
    }

    /// Creates the sprite's volume as a clone of the template. Fails with
    /// `VolumeExists` rather than replace a volume.
    pub fn create_volume(&self, id: &str) -> Result<()> {
        self.create_volume_sized(id, self.opts.volume_size_bytes)
    }

    /// [`Store::create_volume`] with a size of its own (one template per size).
    pub fn create_volume_sized(&self, id: &str, bytes: u64) -> Result<()> {
        validate_name(id)?;
        if bytes < MIN_VOLUME_BYTES {
            return Err(StoreError::Unsupported(format!(
                "a volume needs at least {MIN_VOLUME_BYTES} bytes"
            )));
        }
        self.ensure_room(0)?;
        let template = self.ensure_template(bytes)?;
        let dir = self.layout.pool_sprite_dir(id);
        ensure_dir(&dir, 0o700)?;
        self.ensure_sprite_dir(id)?;
        let target = self.layout.volume_image(id);
        if target.exists() {
            return Err(StoreError::VolumeExists(id.to_string()));
        }
        let tmp = dir.join(format!(".volume.img.{}", std::process::id()));
        reflink::clone_path(&template, &tmp)?;
        match renameat2(None, &tmp, None, &target, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => {
                if let Ok(mut fresh) = self.fresh.lock() {
                    fresh.insert(id.to_string());
                }
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                if e == nix::errno::Errno::EEXIST {
                    Err(StoreError::VolumeExists(id.to_string()))
                } else {
                    Err(StoreError::io("rename", &target, e.into()))
                }
            }
        }
    }

    /// Unmounts the sprite's rootfs and volume, then removes the volume and
    /// everything of the sprite's (`<pool>/sprites/<id>`, `<data>/sprites/<id>`).
    /// Idempotent. Refuses (`Busy`) while anything under the sprite dir is
    /// still mounted, so nothing is ever deleted through a mount.
    pub fn destroy_volume(&self, id: &str) -> Result<()> {
        validate_name(id)?;
        self.take_fresh(id);
        self.unmount_rootfs(id)?;
        let sprite_dir = self.layout.sprite_dir(id);
        if let Some(m) = mountinfo::mounts_under(&mountinfo::read()?, &sprite_dir).first() {
            return Err(StoreError::Busy(m.clone()));
        }
        // The pool's directory last: while it is there, `volume_ids` names
        // the sprite, so a destroy cut short is finished at the next start.
        for dir in [sprite_dir, self.layout.pool_sprite_dir(id)] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &dir, e)),
            }
        }
        Ok(())
    }

    /// Apparent and allocated size of the sprite's volume (for metering).
    pub fn volume_usage(&self, id: &str) -> Result<VolumeUsage> {
        validate_name(id)?;
        let path = self.layout.volume_image(id);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::VolumeMissing(id.to_string()))
            }
            Err(e) => return Err(StoreError::io("stat", &path, e)),
        };
        Ok(VolumeUsage {
            apparent_bytes: meta.len(),
            allocated_bytes: meta.blocks() * 512,
        })
    }

    /// `<pool>/templates/ext4-compact-<bytes>.img`, made once: a sparse file
    /// formatted as ext4 with root owned by the shifted root.
    fn ensure_template(&self, bytes: u64) -> Result<PathBuf> {
        let path = self.layout.template(bytes);
        if path.exists() {
            return Ok(path);
        }
        let _guard = self
            .template_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if path.exists() {
            return Ok(path);
        }
        let tmp = path.with_extension(format!("img.{}.new", std::process::id()));
        let made = make_template(&tmp, bytes, self.opts.uid_shift.unwrap_or(0));
        if let Err(e) = made {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).ctx("rename", &path)?;
        tracing::info!(template = %path.display(), bytes, "volume template created");
        // The older layout's template of this size: volumes cloned from it
        // have their own references to its blocks.
        let _ = std::fs::remove_file(self.layout.legacy_template(bytes));
        Ok(path)
    }
}

fn make_template(tmp: &Path, bytes: u64, owner: u32) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .ctx("create", tmp)?;
    file.set_len(bytes).ctx("truncate", tmp)?;
    drop(file);
    // The file is sparse and reads as zeros, so the inode tables and journal
    // need no zeroing: `assume_storage_prezeroed` marks them initialised, which
    // keeps mkfs from writing them and the kernel's lazy-init thread from
    // writing (and un-sharing) them in every clone after mount. e2fsprogs
    // older than 1.47 lacks it: zero them once in the template instead.
    // Its metadata in a few extents whatever its size: the bitmaps and
    // inode tables of up to 4096 groups (512 GiB) side by side (`-G`, 16
    // by default), two backup superblocks rather than one per sparse group
    // (`sparse_super2`). A 100 GiB volume then has ~20 extents after its
    // first writes, as a 1 GiB one, instead of ~80 spread over the file;
    // a clone (every checkpoint, restore, fork, replication look) costs
    // per extent: 0.34 ms for 100 GiB before, 0.07 ms now. (Packing the
    // journal at the front too, `packed_meta_blocks`, made a wake from the
    // object store 200-355 ms slower.) Volumes are never resized, which
    // sparse_super2 would not allow online.
    let base = format!("root_owner={owner}:{owner}");
    let attempts = [
        format!("{base},assume_storage_prezeroed=1"),
        format!("{base},lazy_itable_init=0,lazy_journal_init=0"),
    ];
    let mut last = None;
    for extended in attempts {
        let result = tool::run(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-b", "4096", "-m", "0", "-L", "sprite"])
                .args(["-O", "sparse_super2", "-G", "4096", "-E"])
                .arg(&extended)
                .arg(tmp),
        );
        match result {
            Ok(_) => {
                File::open(tmp)
                    .and_then(|f| f.sync_all())
                    .ctx("fsync", tmp)?;
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| StoreError::Unsupported("mkfs.ext4 was not run".into())))
}
