//! cgroups of sandboxes, behind one interface with a backend per version
//! (youki-style): `v1` for legacy and hybrid hosts, `v2` for unified ones.
//!
//! runc creates and removes the cgroups; this module decides the
//! `cgroupsPath` it is given, reads statistics, and cleans up leftovers.

mod dynmods;
mod v1;
pub use v1::Hierarchy;
mod v2;

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};
use crate::sandbox::SandboxStats;

pub use dynmods::{favor_dynmods, Dynmods};
pub use v1::V1;
pub use v2::V2;

/// Where cgroup filesystems live.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// v1 controllers (possibly with an empty v2 tree beside them: "hybrid").
    V1,
    /// Only the unified v2 hierarchy.
    V2,
}

/// Detects the host's cgroup layout: v2 when `/sys/fs/cgroup` itself is cgroup2.
pub fn version() -> Version {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// What a runtime driver needs from cgroups.
pub trait CgroupBackend: Send + Sync + Debug {
    /// The `linux.cgroupsPath` for a sandbox.
    fn cgroups_path(&self, id: &str) -> Result<PathBuf>;
    /// The sandbox's cgroup directories (one per v1 hierarchy, one on v2).
    fn dirs(&self, id: &str) -> Result<Vec<PathBuf>>;
    /// CPU time and memory in use.
    fn stats(&self, id: &str) -> Result<SandboxStats>;
    /// Removes what is left of the sandbox's cgroups; idempotent.
    fn remove(&self, id: &str) -> Result<()>;
    /// Freezes (true) or thaws (false) every task of the sandbox and waits
    /// until the kernel reports it done. `NotFound` if the cgroup is absent.
    /// runc derives "paused" from this same state, so the two agree.
    fn set_frozen(&self, id: &str, frozen: bool) -> Result<()>;
    /// Thaws with one write and no wait: true when the kernel already
    /// reports every task thawed (it does at once unless a freeze is still
    /// under way); false when it does not yet (then [`set_frozen`] waits)
    /// or the cgroup is absent (then the driver's resume finds out why).
    ///
    /// [`set_frozen`]: CgroupBackend::set_frozen
    fn thaw_now(&self, id: &str) -> Result<bool>;
    /// Whether the sandbox's tasks are frozen (or being frozen); false
    /// where its cgroup is gone.
    fn is_frozen(&self, id: &str) -> Result<bool>;
    /// On a cgroup v1 (or hybrid) host, each hierarchy: what sandboxes
    /// are started in without runc (see `crate::native`). `None` elsewhere.
    fn v1_hierarchies(&self) -> Option<Vec<Hierarchy>> {
        None
    }
}

/// How long freezing may take before we give up (tasks in uninterruptible
/// sleep delay it).
pub(crate) const FREEZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The backend for this host.
pub fn backend() -> Box<dyn CgroupBackend> {
    match version() {
        Version::V1 => Box::new(V1::default()),
        Version::V2 => Box::new(V2::default()),
    }
}

/// Prepares the daemon's own cgroup once at start-up. On v2, sandboxes are
/// created under the daemon's cgroup, which then may hold no processes (the
/// no-internal-processes rule): the daemon moves itself into a `daemon` leaf
/// and enables cpu, memory and pids for its children. On v1 nothing is needed.
pub fn prepare_host() -> Result<()> {
    match version() {
        Version::V1 => Ok(()),
        Version::V2 => v2::prepare_host(),
    }
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    pub hierarchy: u32,
    pub controllers: Vec<String>,
    pub path: PathBuf,
}

pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy = parts.next()?.parse().ok()?;
            let controllers = parts
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            let path = PathBuf::from(parts.next()?);
            Some(ProcCgroup {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

pub(crate) fn own_cgroups() -> Result<Vec<ProcCgroup>> {
    let path = Path::new("/proc/self/cgroup");
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io("read", path, e))?;
    Ok(parse_proc_cgroup(&text))
}

/// Reads a file holding one integer.
pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io("read", path, e))?;
    text.trim().parse().map_err(|_| {
        RuntimeError::Cgroup(format!(
            "{}: not a number: {:?}",
            path.display(),
            text.trim()
        ))
    })
}

/// The value of `key` in a flat-keyed file such as memory.stat or cpu.stat.
pub(crate) fn read_key(path: &Path, key: &str) -> Result<Option<u64>> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io("read", path, e))?;
    Ok(text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    }))
}

/// Every daemon on the host makes its sandboxes' cgroups under one shared
/// parent (`sprited/`), which `sprited purge` removes once it is empty. A
/// create takes this lock shared around `runc run` (which makes the
/// sandbox's cgroup under the parent), the removal takes it exclusive: an
/// empty parent is never removed between runc making it and making the
/// sandbox's below it.
pub struct ParentLock {
    _file: std::fs::File,
}

impl ParentLock {
    const PATH: &'static str = "/run/sprited-cgroup-parent.lock";

    pub fn shared() -> Result<ParentLock> {
        Self::take(libc::LOCK_SH)
    }

    pub fn exclusive() -> Result<ParentLock> {
        Self::take(libc::LOCK_EX)
    }

    fn take(how: libc::c_int) -> Result<ParentLock> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let path = Path::new(Self::PATH);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| RuntimeError::io("open", path, e))?;
        loop {
            // SAFETY: flock takes an fd that `file` keeps open and an
            // operation constant; it touches no memory of ours.
            if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
                return Ok(ParentLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(RuntimeError::io("flock", path, e));
            }
        }
    }
}

/// rmdir, treating "already gone" as success.
pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io("rmdir", dir, e)),
    }
}

/// Joins a cgroup path (absolute, "/a/b") below a directory.
pub(crate) fn join_cgroup(base: &Path, cgroup: &Path) -> PathBuf {
    base.join(cgroup.strip_prefix("/").unwrap_or(cgroup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_cgroup() {
        let text = "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n9:name=systemd:/x\n0::/user.slice/s.scope\n";
        let v = parse_proc_cgroup(text);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].controllers, vec!["memory"]);
        assert_eq!(v[0].path, PathBuf::from("/process_api/abc"));
        assert_eq!(v[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(v[3].hierarchy, 0);
        assert!(v[3].controllers.is_empty());
    }

    #[test]
    fn joins_cgroup_paths() {
        assert_eq!(
            join_cgroup(Path::new("/sys/fs/cgroup/memory"), Path::new("/a/b")),
            PathBuf::from("/sys/fs/cgroup/memory/a/b")
        );
        assert_eq!(
            join_cgroup(Path::new("/m"), Path::new("/")),
            PathBuf::from("/m")
        );
    }
}
