//! Freezing a mounted filesystem (FIFREEZE) and thawing it (FITHAW).
//!
//! A frozen filesystem blocks its writers, unkillable, until it is thawed.
//! Only a volume served over FUSE is still frozen for a checkpoint, by a
//! child process (see `outside`); [`thaw`] repairs what a killed process
//! left frozen (at start-up, before an unmount).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{IoContext, Result, StoreError};

/// `_IOWR('X', 119, int)` and `_IOWR('X', 120, int)` from `<linux/fs.h>`.
pub(crate) const FIFREEZE: libc::c_ulong = 0xC004_5877;
pub(crate) const FITHAW: libc::c_ulong = 0xC004_5878;

/// FITHAW; `Ok(false)` when the filesystem was not frozen.
fn thaw_fd(dir: &File) -> std::io::Result<bool> {
    // SAFETY: FITHAW takes no argument memory; the fd is open.
    let ret = unsafe { libc::ioctl(dir.as_raw_fd(), FITHAW, 0) };
    if ret == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Thaws the filesystem mounted at `path` if it is frozen.
pub(crate) fn thaw(path: &Path) -> Result<bool> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .ctx("open", path)?;
    thaw_fd(&dir).map_err(|e| StoreError::io("FITHAW", path, e))
}
