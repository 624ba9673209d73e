//! Mount primitives: loop-backed filesystems, overlayfs, unmounting.

use std::io::ErrorKind;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Result, StoreError};
use crate::{loopdev, mountinfo};

/// Mounts `fstype` from `source` on `target`.
pub(crate) fn mount_fs(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    nix::mount::mount(Some(source), target, Some(fstype), flags, data).map_err(|e| {
        StoreError::Mount {
            fstype: fstype.to_string(),
            source_path: source.to_path_buf(),
            target: target.to_path_buf(),
            errno: e.into(),
        }
    })
}

/// Attaches `image` to a loop device (autoclear) and mounts it on `target`
/// with `flags` and options `data`. If the mount fails the device is freed
/// when the handle drops.
pub(crate) fn mount_image(
    image: &Path,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mount_image_by(image, target, fstype, flags, data, false)
}

/// [`mount_image`] without the scan of every loop device on the host that
/// [`mount_image_by`] does first (one read of sysfs per device: with 500
/// sprites, 500 on every start), for an image no loop device can hold: a
/// file this process made and has not attached since (a new sprite's
/// volume).
pub(crate) fn mount_fresh_image(
    image: &Path,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    let device = loopdev::attach(image, false)?;
    mount_fs(device.path(), target, fstype, flags, data)
}

/// [`mount_image`], the mount made by a child process when `served` (the
/// image is a file this process serves: see `outside`).
pub(crate) fn mount_image_by(
    image: &Path,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
    served: bool,
) -> Result<()> {
    loopdev::ensure_not_attached(image)?;
    if !served {
        return mount_fresh_image(image, target, fstype, flags, data);
    }
    let err = |device: &Path, errno: nix::errno::Errno| StoreError::Mount {
        fstype: fstype.to_string(),
        source_path: device.to_path_buf(),
        target: target.to_path_buf(),
        errno: errno.into(),
    };
    let call = |device: &Path| -> Result<crate::outside::Call> {
        let inval = |_| err(device, nix::errno::Errno::EINVAL);
        Ok(crate::outside::Call::Mount {
            source: crate::outside::c_path(device).map_err(|e| err(device, e))?,
            target: crate::outside::c_path(target).map_err(|e| err(device, e))?,
            fstype: std::ffi::CString::new(fstype).map_err(inval)?,
            flags: flags.bits(),
            data: data
                .map(std::ffi::CString::new)
                .transpose()
                .map_err(inval)?,
        })
    };
    loopdev::attach_and_mount_outside(image, call, err)
}

/// Mount options that hand freed blocks back to the file under a loop
/// device (the loop driver punches holes for discards), so that space
/// deleted inside reaches the disk below: `discard`, understood by XFS and
/// ext4.
pub(crate) const GIVE_BACK: Option<&str> = Some("discard");

/// Unmounts `target`. Returns false when nothing was mounted there.
/// A busy filesystem is an error, never silently detached.
pub(crate) fn unmount(target: &Path) -> Result<bool> {
    unmount_by(target, false)
}

/// How long an unmount that finds its filesystem busy tries again before
/// it says so: a child being spawned holds a copy of its parent's open
/// files (ours, or a test's) until its exec closes them, a moment that a
/// loaded host stretches; what is really in use stays busy past it.
const BUSY_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

/// [`unmount`], done by a child process when `served` (the filesystem
/// sits on a volume this process serves: see `outside`).
pub(crate) fn unmount_by(target: &Path, served: bool) -> Result<bool> {
    let deadline = std::time::Instant::now() + BUSY_GRACE;
    let result = loop {
        let result = if served {
            crate::outside::unmount(target)
        } else {
            nix::mount::umount2(target, MntFlags::empty())
        };
        if result != Err(nix::errno::Errno::EBUSY) || std::time::Instant::now() >= deadline {
            break result;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    match result {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(nix::errno::Errno::EBUSY) => Err(StoreError::Busy(target.to_path_buf())),
        Err(e) => Err(StoreError::Unmount {
            target: target.to_path_buf(),
            errno: e.into(),
        }),
    }
}

/// Thaws every frozen ext4 filesystem mounted at or below `dir` (a frozen
/// one hangs its writers, unkillable, and its unmount).
pub fn thaw_all(dir: &Path) -> Result<()> {
    for m in mountinfo::read()?
        .iter()
        .filter(|m| m.fs_type == "ext4" && m.mount_point.starts_with(dir))
    {
        if let Ok(true) = crate::freeze::thaw(&m.mount_point) {
            tracing::warn!(mount = %m.mount_point.display(), "thawed a frozen volume");
        }
    }
    Ok(())
}

/// Unmounts every mount at or below `dir` (overlays before the volumes under
/// them, the pool last), detaching lazily what is busy. Meant for tests and
/// emergency cleanup: loop devices clear themselves once unmounted.
pub fn unmount_all(dir: &Path) -> Result<()> {
    let dir = match dir.canonicalize() {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("canonicalize", dir, e)),
    };
    let mut first_error = None;
    thaw_all(&dir)?;
    let mounts = mountinfo::read()?;
    for target in mountinfo::mounts_under(&mounts, &dir) {
        let result = match nix::mount::umount2(&target, MntFlags::empty()) {
            Err(nix::errno::Errno::EBUSY) => nix::mount::umount2(&target, MntFlags::MNT_DETACH),
            other => other,
        };
        match result {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                first_error.get_or_insert(StoreError::Unmount {
                    target,
                    errno: e.into(),
                });
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
