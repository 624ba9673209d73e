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
use std::os::fd::{AsRawFd, FromRawFd};
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

/// One system call on a path, prepared (its strings made) before the fork.
pub(crate) enum Call {
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// `mkdir`; an existing directory is fine.
    Mkdir {
        path: CString,
        mode: libc::mode_t,
    },
    Chmod {
        path: CString,
        mode: libc::mode_t,
    },
    Chown {
        path: CString,
        uid: libc::uid_t,
        gid: libc::gid_t,
    },
    Umount {
        target: CString,
    },
    /// `open`, which in the child gives the lowest free descriptor: the
    /// one after those handed to [`run_with`].
    Open {
        path: CString,
        flags: libc::c_int,
    },
    /// An ioctl on the `fd`-th descriptor handed to [`run_with`] (1 for
    /// the first); `arg` points into memory the caller keeps alive.
    Ioctl {
        fd: libc::c_int,
        request: libc::c_ulong,
        arg: *const libc::c_void,
    },
}

/// A path as a C string (a path with a NUL in it is EINVAL, as the kernel
/// would answer).
pub(crate) fn c_path(p: &Path) -> std::result::Result<CString, nix::errno::Errno> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| nix::errno::Errno::EINVAL)
}

impl Call {
    /// Makes the call (async-signal-safe): 0 or -1 with errno set.
    fn make(&self) -> libc::c_int {
        // SAFETY: every pointer is into a CString owned by `self`, alive
        // for the call; the kernel copies what it reads.
        unsafe {
            match self {
                Call::Mount {
                    source,
                    target,
                    fstype,
                    flags,
                    data,
                } => libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    *flags,
                    data.as_ref()
                        .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
                ),
                Call::Mkdir { path, mode } => {
                    let r = libc::mkdir(path.as_ptr(), *mode);
                    if r < 0 && *libc::__errno_location() == libc::EEXIST {
                        0
                    } else {
                        r
                    }
                }
                Call::Chmod { path, mode } => libc::chmod(path.as_ptr(), *mode),
                Call::Chown { path, uid, gid } => libc::chown(path.as_ptr(), *uid, *gid),
                Call::Umount { target } => libc::umount2(target.as_ptr(), 0),
                Call::Ioctl { fd, request, arg } => libc::ioctl(*fd, *request, *arg),
                Call::Open { path, flags } => libc::open(path.as_ptr(), *flags).min(0),
            }
        }
    }
}

/// Makes `calls` in order in one child process (see the module), stopping
/// at the first that fails: which one, and its errno.
pub(crate) fn run(calls: &[Call]) -> std::result::Result<(), (usize, nix::errno::Errno)> {
    run_with(&[], calls)
}

/// [`run`], the child keeping `fds` as descriptors 1, 2 (for
/// [`Call::Ioctl`]). Each must be 3 or above.
pub(crate) fn run_with(
    fds: &[libc::c_int],
    calls: &[Call],
) -> std::result::Result<(), (usize, nix::errno::Errno)> {
    if fds.len() > 2 || fds.iter().any(|fd| *fd < 3) {
        return Err((0, nix::errno::Errno::EBADF));
    }
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err((0, nix::errno::Errno::last()));
    }
    // SAFETY: both are descriptors this process just made and owns.
    let (rd, wr) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(pipe[0]),
            std::os::fd::OwnedFd::from_raw_fd(pipe[1]),
        )
    };
    let mut keep = [wr.as_raw_fd(), -1, -1];
    keep[1..=fds.len()].copy_from_slice(fds);
    let keep = &keep[..=fds.len()];
    let child = || {
        if keep[0] < 3 || !keep_only(keep) {
            return 1;
        }
        for (i, call) in calls.iter().enumerate() {
            if call.make() < 0 {
                let failed = [i as i32, errno_code()];
                // SAFETY: writes 8 bytes from `failed` to the pipe (fd 0
                // after `keep_only`).
                unsafe { libc::write(0, failed.as_ptr().cast(), 8) };
                return 1;
            }
        }
        0
    };
    // SAFETY: `child` makes only system calls.
    let code = unsafe { in_child(child) };
    drop(wr);
    match code {
        Ok(0) => Ok(()),
        Ok(_) => {
            let mut failed = [0i32; 2];
            let mut f = File::from(rd);
            use std::io::Read;
            let mut buf = [0u8; 8];
            match f.read_exact(&mut buf) {
                Ok(()) => {
                    failed[0] = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    failed[1] = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    Err((
                        usize::try_from(failed[0]).unwrap_or(0),
                        nix::errno::Errno::from_raw(failed[1]),
                    ))
                }
                Err(_) => Err((0, nix::errno::Errno::EIO)),
            }
        }
        Err(e) => Err((
            0,
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )),
    }
}

/// `umount2(target, 0)` in a child process (see the module): the same
/// answers as [`nix::mount::umount2`].
pub(crate) fn unmount(target: &Path) -> nix::Result<()> {
    run(&[Call::Umount {
        target: c_path(target)?,
    }])
    .map_err(|(_, e)| e)
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

    #[test]
    fn calls_run_in_order_and_the_first_failure_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let calls = [
            Call::Mkdir {
                path: c_path(&a).unwrap(),
                mode: 0o700,
            },
            // Again: an existing directory is fine.
            Call::Mkdir {
                path: c_path(&a).unwrap(),
                mode: 0o700,
            },
            Call::Chmod {
                path: c_path(&a).unwrap(),
                mode: 0o751,
            },
            Call::Chown {
                path: c_path(&dir.path().join("missing")).unwrap(),
                uid: 0,
                gid: 0,
            },
            Call::Chmod {
                path: c_path(&a).unwrap(),
                mode: 0o700,
            },
        ];
        assert_eq!(run(&calls), Err((3, nix::errno::Errno::ENOENT)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o751, "the calls before the failure ran, none after");
    }
}
