//! I/O on a volume this process serves itself, done in a child process.
//!
//! A volume filling itself from the object store sits on a loop device
//! attached to a file the daemon serves over FUSE. A thread of the daemon
//! that freezes or unmounts that volume waits, in the kernel and
//! unkillable, for writes only the daemon's own FUSE threads can answer.
//! Killed then, the daemon cannot finish exiting (that thread never
//! returns), so its `/dev/fuse` stays open and the connection with it:
//! the volume, and every host-wide `sync`, hang until someone aborts it,
//! and the process never ends for its supervisor to restart it.
//!
//! Done in a forked child that closes every descriptor it does not need
//! (the `/dev/fuse` ones among them) before it touches the volume, the
//! same operation leaves the daemon killable: its threads only wait for
//! the child. If the daemon dies, its connection goes with it, the
//! child's I/O fails instead of hanging, and the child still thaws what it
//! froze.
//!
//! The child runs only system calls between `fork` and `_exit` (nothing
//! that allocates or takes a lock another thread could hold).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Result, StoreError};
use crate::freeze::{FIFREEZE, FITHAW};
use crate::reflink::FICLONE;

/// Exit codes of the child beyond an errno (which is below 128).
const CLONE_FAILED: i32 = 128;
const THAW_FAILED: i32 = 255;

/// Forks; the child runs `child` (system calls only) and exits with what
/// it returns; the parent waits and answers that code.
///
/// # Safety
/// `child` must only make async-signal-safe calls: it runs in a copy of a
/// multi-threaded process whose other threads are gone.
unsafe fn in_child(child: impl FnOnce() -> i32) -> std::io::Result<i32> {
    // SAFETY: the child runs only `child` (async-signal-safe by this
    // function's contract) and `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        let code = child();
        // SAFETY: ends the child without running anything of the parent's.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid int.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(std::io::Error::other(format!(
            "the child ended by signal {}",
            libc::WTERMSIG(status)
        )))
    }
}

/// The calling thread's errno, as an exit code below 128.
fn errno_code() -> i32 {
    // SAFETY: reads this thread's errno.
    let e = unsafe { *libc::__errno_location() };
    e.clamp(1, 127)
}

/// Keeps `fds` as 0, 1, 2... (in order) and closes every other
/// descriptor. Async-signal-safe. The fds must all be above `fds.len()`.
fn keep_only(fds: &[i32]) -> bool {
    for (to, from) in fds.iter().enumerate() {
        // SAFETY: dup2 on descriptors of this (child) process.
        if unsafe { libc::dup2(*from, to as i32) } < 0 {
            return false;
        }
    }
    let first = fds.len() as libc::c_uint;
    // SAFETY: closes descriptors of this (child) process only.
    unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) == 0 }
}

/// Freezes the filesystem mounted on `dir`, reflinks `src` into `dst`,
/// and thaws it, in a child process (see the module).
pub(crate) fn freeze_clone_thaw(dir: &File, src: &File, dst: &File, path: &Path) -> Result<()> {
    let fds = [dir.as_raw_fd(), src.as_raw_fd(), dst.as_raw_fd()];
    if fds.iter().any(|fd| *fd < 3) {
        return Err(StoreError::io(
            "fork",
            path,
            std::io::Error::other("descriptors 0 to 2 are not the files to clone"),
        ));
    }
    let child = || {
        if !keep_only(&fds) {
            return errno_code();
        }
        // SAFETY: ioctls on the descriptors kept above; no memory passed.
        unsafe {
            if libc::ioctl(0, FIFREEZE, 0) < 0 {
                return errno_code();
            }
            let cloned = libc::ioctl(2, FICLONE, 1);
            let code = if cloned < 0 {
                CLONE_FAILED + errno_code().min(126)
            } else {
                0
            };
            if libc::ioctl(0, FITHAW, 0) < 0 {
                return THAW_FAILED;
            }
            code
        }
    };
    // SAFETY: `child` makes only system calls.
    let code = unsafe { in_child(child) }.map_err(|e| StoreError::io("fork", path, e))?;
    match code {
        0 => Ok(()),
        THAW_FAILED => Err(StoreError::io(
            "FITHAW",
            path,
            std::io::Error::other("the volume could not be thawed"),
        )),
        c if c > CLONE_FAILED => Err(StoreError::io(
            "FICLONE",
            path,
            std::io::Error::from_raw_os_error(c - CLONE_FAILED),
        )),
        c => Err(StoreError::io(
            "FIFREEZE",
            path,
            std::io::Error::from_raw_os_error(c),
        )),
    }
}

/// `umount2(target, 0)` in a child process (see the module): the same
/// answers as [`nix::mount::umount2`].
pub(crate) fn unmount(target: &Path) -> nix::Result<()> {
    let Ok(c) = CString::new(target.as_os_str().as_bytes()) else {
        return Err(nix::errno::Errno::EINVAL);
    };
    let ptr = c.as_ptr();
    let child = || {
        if !keep_only(&[]) {
            return errno_code();
        }
        // SAFETY: `ptr` points into `c`, which outlives the fork (the
        // child has a copy of the parent's memory).
        if unsafe { libc::umount2(ptr, 0) } < 0 {
            return errno_code();
        }
        0
    };
    // SAFETY: `child` makes only system calls.
    match unsafe { in_child(child) } {
        Ok(0) => Ok(()),
        Ok(code) => Err(nix::errno::Errno::from_raw(code)),
        Err(e) => Err(nix::errno::Errno::from_raw(
            e.raw_os_error().unwrap_or(libc::EIO),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_answers_as_umount2_would() {
        let dir = tempfile::tempdir().unwrap();
        // Not a mount point, and no such path.
        assert_eq!(unmount(dir.path()), Err(nix::errno::Errno::EINVAL));
        assert_eq!(
            unmount(&dir.path().join("missing")),
            Err(nix::errno::Errno::ENOENT)
        );
    }
}
