//! The host's cgroup2 superblock set to `favordynmods`.
//!
//! Every sandbox start moves a process into its cgroups (runc writes
//! `cgroup.procs`). By default the kernel guards such moves with a global
//! percpu rwsem whose writer waits for an RCU grace period: 7 ms per move
//! on an idle 2-core host here, ~20 ms with the daemon busy, taken on the
//! start's critical path and serialised across concurrent starts. With
//! `favordynmods` set on the cgroup2 superblock the kernel takes a cheaper
//! lock instead (0.2 ms a move here), at a small cost to every fork and
//! exit on the host. The option is the kernel's (since 6.0) and applies to
//! the v1 hierarchies of a hybrid host too: the lock is one for all. On
//! kernels of 6.18 and later, once set it stays in force until reboot.
//!
//! Only the superblock is reconfigured (`fspick` + `fsconfig`), with the
//! options it had: the mount's own flags (nosuid, nodev, noexec) and other
//! super options (nsdelegate, memory_recursiveprot) are kept.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// The option.
const FAVOR: &str = "favordynmods";

const FSPICK_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_RECONFIGURE: libc::c_uint = 7;

/// What [`favor_dynmods`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dynmods {
    /// The cgroup2 mount at this path already had the option.
    Already(PathBuf),
    /// Set now on the cgroup2 mount at this path.
    Set(PathBuf),
    /// No cgroup2 is mounted (a v1-only host): moves keep their cost.
    NoCgroup2,
}

/// What to reconfigure: the first cgroup2 mount of `mountinfo`, and its
/// super options other than `rw`/`ro` (`None`: none mounted). The options
/// include [`FAVOR`] when it is already set.
pub(crate) fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, Vec<String>)> {
    let entry = sprite_store::mountinfo::parse(mountinfo)
        .into_iter()
        .find(|e| e.fs_type == "cgroup2")?;
    let opts = entry
        .super_options
        .split(',')
        .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
        .map(str::to_string)
        .collect();
    Some((entry.mount_point, opts))
}

/// Sets `favordynmods` on the host's cgroup2 superblock where it is not
/// set yet (see the module).
pub fn favor_dynmods() -> Result<Dynmods> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io("read", path, e))?;
    let Some((mount_point, opts)) = cgroup2_mount(&text) else {
        return Ok(Dynmods::NoCgroup2);
    };
    if opts.iter().any(|o| o == FAVOR) {
        return Ok(Dynmods::Already(mount_point));
    }
    reconfigure(&mount_point, &opts)?;
    Ok(Dynmods::Set(mount_point))
}

/// `bytes` as a C string for `op` on `what` (EINVAL if it holds a NUL).
fn cstring(op: &'static str, bytes: &[u8], what: &Path) -> Result<CString> {
    CString::new(bytes)
        .map_err(|_| RuntimeError::io(op, what, std::io::Error::from_raw_os_error(libc::EINVAL)))
}

/// Reconfigures the superblock at `mount_point` with `opts` and [`FAVOR`].
fn reconfigure(mount_point: &Path, opts: &[String]) -> Result<()> {
    let fail =
        |op: &'static str| RuntimeError::io(op, mount_point, std::io::Error::last_os_error());
    let c_path = cstring("fspick", mount_point.as_os_str().as_bytes(), mount_point)?;
    // SAFETY: fspick reads the NUL-terminated path, which lives across the
    // call; it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_fspick,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            FSPICK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(fail("fspick"));
    }
    // SAFETY: a fresh fd from fspick, owned by nothing else.
    let fs = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    for opt in opts.iter().map(String::as_str).chain([FAVOR]) {
        let c = |part: &str| cstring("fsconfig", part.as_bytes(), mount_point);
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (c(k)?, Some(c(v)?)),
            None => (c(opt)?, None),
        };
        let (cmd, value_ptr) = match &value {
            Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
            None => (FSCONFIG_SET_FLAG, std::ptr::null()),
        };
        // SAFETY: fsconfig reads the NUL-terminated key and value (or no
        // value), which live across the call; the fd is open.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                key.as_ptr(),
                value_ptr,
                0 as libc::c_int,
            )
        };
        if r != 0 {
            return Err(fail("fsconfig"));
        }
    }
    // SAFETY: no pointers; the fd is open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_RECONFIGURE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_int,
        )
    };
    if r != 0 {
        return Err(fail("fsconfig(reconfigure)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
30 23 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn finds_the_cgroup2_mount_and_its_super_options() {
        let (mp, opts) = cgroup2_mount(HYBRID).expect("cgroup2");
        assert_eq!(mp, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(opts, ["nsdelegate", "memory_recursiveprot"]);
    }

    #[test]
    fn sees_the_option_already_set() {
        let text = "41 31 0:38 / /sys/fs/cgroup ro,relatime - cgroup2 cgroup2 ro,favordynmods\n";
        let (mp, opts) = cgroup2_mount(text).expect("cgroup2");
        assert_eq!(mp, Path::new("/sys/fs/cgroup"));
        assert_eq!(opts, [FAVOR]);
    }

    #[test]
    fn none_on_a_v1_only_host() {
        let text = "32 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
        assert_eq!(cgroup2_mount(text), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        let text = "41 31 0:38 / /mnt/a\\040b rw - cgroup2 cgroup2 rw\n";
        let (mp, opts) = cgroup2_mount(text).expect("cgroup2");
        assert_eq!(mp, Path::new("/mnt/a b"));
        assert!(opts.is_empty());
    }
}
