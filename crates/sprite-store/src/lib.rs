//! Storage for sprites: a reflink-capable pool, shared base images, one
//! sparse ext4 volume per sprite, and the overlay root filesystem built from
//! the two. Knows nothing of runc, HTTP or the metadata DB.
//!
//! On-disk layout (see README.md):
//! ```text
//! <data>/pool.img                      loop-backed XFS (reflink=1) where <data> has no reflinks
//! <data>/pool/                         the pool (mount point of pool.img, or a plain dir)
//! <pool>/images/<name>/rootfs/         base image, ownership shifted by uid_shift
//! <pool>/images/<name>/manifest.json
//! <pool>/templates/ext4-compact-<bytes>.img pre-formatted empty volume, cloned per sprite
//! <pool>/sprites/<id>/volume.img       the sprite's writable ext4 (a reflink clone)
//! <pool>/sprites/<id>/agent.log        the agent's log
//! <data>/sprites/                     the run dirs, on a tmpfs of their own (see `runtime_fs`)
//! <data>/sprites/<id>/                 run dir: bundle, sockets, policy files
//! <data>/sprites/<id>/volume/          volume.img mounted (ext4)
//! <data>/sprites/<id>/rootfs/          overlay(lower = image, upper/work on the volume)
//! <pool>/sprites/<id>/checkpoints/<ck>.img   checkpoints (reflink clones of volume.img)
//! <data>/sprites/<id>/checkpoints/<ck>/ read-only views, shared into the sprite
//! <data>/sprites/<id>/ckvol/<ck>/       checkpoint images mounted read-only
//! <data>/sprites/<id>/run/              `/.sprite/run` inside (API socket)
//! ```

mod checkpoint;
mod error;
mod evict;
mod footprint;
mod freeze;
mod idmap;
mod idshift;
mod image;
mod layout;
mod loopdev;
mod mount;
pub mod mountinfo;
mod outside;
mod pool;
mod reflink;
mod replica;
mod rootfs;
pub mod runtime_fs;
mod settle;
mod store;
mod tool;
pub mod userns;
mod view;
mod volume;

pub use checkpoint::{CheckpointStats, PreparedRestore, CHECKPOINT_RESERVE_BYTES};
pub use error::StoreError;
pub use evict::{abort_lazy_connections, LocalUsage};
pub use footprint::changed_chunks;
pub use idmap::IdShift;
pub use image::{ImageKind, ImageManifest, Progress, DEFAULT_PATH};
pub use loopdev::devices_backed_under as loop_devices_under;
pub use mount::{thaw_all, unmount_all};
pub use rootfs::Discarded;
pub use settle::Settled;
pub use store::{Store, StoreOptions};
pub use volume::VolumeUsage;

/// Checks that `name` is safe to use as one path component (sprite ids, image names).
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if first_ok && rest_ok && name.len() <= 128 {
        Ok(())
    } else {
        Err(StoreError::InvalidName(name.to_string()))
    }
}

#[cfg(test)]
mod name_tests {
    use super::validate_name;

    #[test]
    fn names() {
        assert!(validate_name("abc-1_2.x").is_ok());
        for bad in [
            "", ".", "..", "../x", "a/b", "-a", ".hidden", "a b", "a,b", "a:b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_name(&"a".repeat(129)).is_err());
    }
}
