//! The reflink-capable pool that holds images, templates and volumes.
//!
//! Where `<data>` itself supports FICLONE the pool is the plain directory
//! `<data>/pool`. Otherwise (ext4) a sparse `<data>/pool.img` is formatted
//! once as XFS with reflink=1 and loop-mounted at `<data>/pool`, the way
//! LXD and Incus make their default pools. Opening is idempotent: an existing
//! mount is reused, and after a reboot the image is mounted again.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use nix::mount::MsFlags;

use crate::error::{IoContext, Result};
use crate::layout::Layout;

use crate::{mount, mountinfo, reflink, tool};

/// How the pool is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    /// `<data>` has reflinks; the pool is a plain directory.
    Native,
    /// `<data>/pool.img` (XFS) loop-mounted at `<data>/pool`.
    LoopXfs,
}

/// Makes sure the pool exists and is mounted.
pub(crate) fn ensure(layout: &Layout, size_bytes: u64) -> Result<PoolKind> {
    let pool = layout.pool();
    let image = layout.pool_image();
    if !pool.exists() {
        std::fs::create_dir(pool).ctx("mkdir", pool)?;
    }
    let mounts = mountinfo::read()?;
    let kind = if let Some(m) = mountinfo::mount_at(&mounts, pool) {
        tracing::debug!(pool = %pool.display(), "pool already mounted");
        if !m.super_options.split(',').any(|o| o == "discard") {
            // Mounted by an older sprited: deleted data now reaches the disk.
            let remounted = nix::mount::mount(
                None::<&str>,
                pool,
                None::<&str>,
                nix::mount::MsFlags::MS_REMOUNT,
                mount::GIVE_BACK,
            );
            if let Err(e) = remounted {
                tracing::warn!(pool = %pool.display(), error = %e, "the pool cannot be remounted with discard: space deleted in it stays taken on the disk below until it is mounted again");
            }
        }
        PoolKind::LoopXfs
    } else if image.exists() {
        mount::mount_image(&image, pool, "xfs", MsFlags::empty(), mount::GIVE_BACK)?;
        tracing::info!(pool = %pool.display(), "pool mounted");
        PoolKind::LoopXfs
    } else if reflink::supported_in(layout.data()).ctx("probe FICLONE in", layout.data())? {
        tracing::info!(pool = %pool.display(), "data dir has reflinks; pool is a plain directory");
        PoolKind::Native
    } else {
        create_image(&image, size_bytes)?;
        mount::mount_image(&image, pool, "xfs", MsFlags::empty(), mount::GIVE_BACK)?;
        tracing::info!(pool = %pool.display(), size_bytes, "created XFS pool");
        PoolKind::LoopXfs
    };
    // Only the host (root) ever looks inside the pool.
    std::fs::set_permissions(pool, std::fs::Permissions::from_mode(0o700)).ctx("chmod", pool)?;
    Ok(kind)
}

/// Formats a sparse XFS image, under a temporary name so a crash never
/// leaves a half-made pool.img behind.
fn create_image(image: &Path, size_bytes: u64) -> Result<()> {
    let tmp = image.with_extension("img.new");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .ctx("create", &tmp)?;
    file.set_len(size_bytes).ctx("truncate", &tmp)?;
    drop(file);
    let formatted = tool::run(
        Command::new("mkfs.xfs")
            .args(["-q", "-f", "-m", "reflink=1", "-L", "sprited"])
            .arg(&tmp),
    );
    if let Err(e) = formatted {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, image).ctx("rename", image)?;
    Ok(())
}

/// Unmounts the pool if we loop-mounted it.
pub(crate) fn unmount(layout: &Layout, kind: PoolKind) -> Result<()> {
    if kind == PoolKind::LoopXfs {
        mount::unmount(layout.pool())?;
    }
    Ok(())
}
