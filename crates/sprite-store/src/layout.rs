//! Where everything lives on disk. The only place that joins path names.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    data: PathBuf,
    pool: PathBuf,
}

impl Layout {
    pub(crate) fn new(data: PathBuf) -> Self {
        let pool = data.join("pool");
        Layout { data, pool }
    }

    pub(crate) fn data(&self) -> &Path {
        &self.data
    }
    pub(crate) fn pool(&self) -> &Path {
        &self.pool
    }
    pub(crate) fn pool_image(&self) -> PathBuf {
        self.data.join("pool.img")
    }

    pub(crate) fn images_dir(&self) -> PathBuf {
        self.pool.join("images")
    }
    pub(crate) fn image_dir(&self, name: &str) -> PathBuf {
        self.images_dir().join(name)
    }
    pub(crate) fn image_rootfs(&self, name: &str) -> PathBuf {
        self.image_dir(name).join("rootfs")
    }
    pub(crate) fn image_manifest(&self, name: &str) -> PathBuf {
        self.image_dir(name).join("manifest.json")
    }

    pub(crate) fn templates_dir(&self) -> PathBuf {
        self.pool.join("templates")
    }
    pub(crate) fn template(&self, bytes: u64) -> PathBuf {
        self.templates_dir()
            .join(format!("ext4-compact-{bytes}.img"))
    }
    /// The template of the same size as older releases made it (metadata
    /// spread over the file): no longer cloned.
    pub(crate) fn legacy_template(&self, bytes: u64) -> PathBuf {
        self.templates_dir().join(format!("ext4-{bytes}.img"))
    }

    pub(crate) fn pool_sprites_dir(&self) -> PathBuf {
        self.pool.join("sprites")
    }
    pub(crate) fn pool_sprite_dir(&self, id: &str) -> PathBuf {
        self.pool_sprites_dir().join(id)
    }
    pub(crate) fn volume_image(&self, id: &str) -> PathBuf {
        self.pool_sprite_dir(id).join("volume.img")
    }

    /// Which chunks of a volume being filled from the cold tier are local.
    pub(crate) fn volume_state(&self, id: &str) -> PathBuf {
        self.pool_sprite_dir(id).join("volume.state")
    }

    pub(crate) fn checkpoints_dir(&self, id: &str) -> PathBuf {
        self.pool_sprite_dir(id).join("checkpoints")
    }
    /// The sprite's agent's log (its stderr), on disk with its volume: the
    /// run dir is in memory, and a sprite can make its agent log up to
    /// 5 MiB, which must not stay in memory while it sleeps.
    pub(crate) fn agent_log(&self, id: &str) -> PathBuf {
        self.pool_sprite_dir(id).join("agent.log")
    }
    /// Where earlier releases kept the agent's log: in the run dir.
    pub(crate) fn old_agent_log(&self, id: &str) -> PathBuf {
        self.sprite_dir(id).join("agent.log")
    }
    /// A view's own clone of a checkpoint image, its journal replayed.
    pub(crate) fn view_image(&self, id: &str, checkpoint: &str) -> PathBuf {
        self.pool_sprite_dir(id)
            .join("views")
            .join(format!("{checkpoint}.img"))
    }
    pub(crate) fn checkpoint_image(&self, id: &str, checkpoint: &str) -> PathBuf {
        self.checkpoints_dir(id).join(format!("{checkpoint}.img"))
    }

    pub(crate) fn sprites_dir(&self) -> PathBuf {
        self.data.join("sprites")
    }
    pub(crate) fn sprite_dir(&self, id: &str) -> PathBuf {
        self.sprites_dir().join(id)
    }
    pub(crate) fn volume_mount(&self, id: &str) -> PathBuf {
        self.sprite_dir(id).join("volume")
    }
    pub(crate) fn rootfs_mount(&self, id: &str) -> PathBuf {
        self.sprite_dir(id).join("rootfs")
    }
    /// Idmapped clones of the root's layers, for a sprite that runs as a
    /// host id range of its own (see `idmap`): `image` and `volume`.
    pub(crate) fn layers_dir(&self, id: &str) -> PathBuf {
        self.sprite_dir(id).join("layers")
    }
    /// The id shift the mounted root and the checkpoint views were made
    /// with (absent: none). A restore's discard of the root keeps it, with
    /// the views.
    pub(crate) fn layers_shift(&self, id: &str) -> PathBuf {
        self.sprite_dir(id).join("layers.shift")
    }
    /// Shared mount point holding the read-only checkpoint views; bound
    /// into the sprite at `/.sprite/checkpoints` with slave propagation.
    pub(crate) fn views_dir(&self, id: &str) -> PathBuf {
        self.sprite_dir(id).join("checkpoints")
    }
    /// Checkpoint images mounted read-only (ext4), below the views.
    pub(crate) fn view_volume_mount(&self, id: &str, checkpoint: &str) -> PathBuf {
        self.sprite_dir(id).join("ckvol").join(checkpoint)
    }
    /// Where the daemon serves a volume that fills itself from the cold tier.
    pub(crate) fn lazy_mount(&self, id: &str) -> PathBuf {
        self.sprite_dir(id).join("lazy")
    }
    /// Host side of `/.sprite/run` inside the sprite (the in-sprite API socket).
    pub(crate) fn inside_run_dir(&self, id: &str) -> PathBuf {
        self.sprite_dir(id).join("run")
    }
}
