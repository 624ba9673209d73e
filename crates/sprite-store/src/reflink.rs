//! Reflink copies (`FICLONE`): a new file sharing all extents with the
//! source, in time independent of its size.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `_IOW(0x94, 9, int)` from `<linux/fs.h>`.
pub(crate) const FICLONE: libc::c_ulong = 0x4004_9409;

/// Makes `dst` share every extent of `src`.
pub(crate) fn clone_file(src: &File, dst: &File) -> std::io::Result<()> {
    // SAFETY: FICLONE takes the source fd by value and reads no memory of
    // ours; both fds are open for the duration of the call.
    let ret = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE, src.as_raw_fd()) };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Creates the new file `path` (0600, read-write, close-on-exec) that a
/// clone goes into; one already there is an error.
pub(crate) fn new_file(path: &Path) -> crate::error::Result<File> {
    use crate::error::IoContext;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .ctx("create", path)
}

/// A new file `dst` (0600) sharing every extent of the file `src`; removed
/// again if the clone fails.
pub(crate) fn clone_path(src: &Path, dst: &Path) -> crate::error::Result<()> {
    use crate::error::IoContext;
    let from = File::open(src).ctx("open", src)?;
    let to = new_file(dst)?;
    clone_file(&from, &to).map_err(|e| {
        drop(to);
        let _ = std::fs::remove_file(dst);
        crate::error::StoreError::io("FICLONE", dst, e)
    })
}

/// Whether files in `dir` can be reflinked (false on ext4, true on XFS
/// with reflink=1 and btrfs).
pub(crate) fn supported_in(dir: &Path) -> std::io::Result<bool> {
    let src_path = dir.join(format!(".reflink-probe-{}", std::process::id()));
    let dst_path = dir.join(format!(".reflink-probe-{}.clone", std::process::id()));
    let result = (|| {
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)
        };
        let src = open(&src_path)?;
        std::io::Write::write_all(&mut &src, &[0u8; 4096])?;
        src.sync_all()?;
        let dst = open(&dst_path)?;
        Ok(clone_file(&src, &dst).is_ok())
    })();
    let _ = std::fs::remove_file(&src_path);
    let _ = std::fs::remove_file(&dst_path);
    result
}
