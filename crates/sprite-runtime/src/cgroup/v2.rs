//! cgroup v2 (unified) hosts. Sandboxes live at `<own>/sprites/<id>`, where
//! `<own>` is the daemon's cgroup before [`prepare_host`] moved the daemon
//! into the `<own>/daemon` leaf. The path is absolute: a relative one would
//! nest under the daemon's own cgroup, which holds processes.

use std::path::{Path, PathBuf};

use super::{
    join_cgroup, own_cgroups, read_key, read_u64, remove_dir, CgroupBackend, CGROUP_ROOT,
    FREEZE_TIMEOUT,
};
use crate::error::{Result, RuntimeError};
use crate::sandbox::{validate_id, SandboxStats};

const DAEMON_LEAF: &str = "daemon";
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

#[derive(Debug, Clone)]
pub struct V2 {
    /// Parent of every sandbox's cgroup, inside the daemon's.
    pub parent: String,
}

impl Default for V2 {
    fn default() -> Self {
        V2 {
            parent: "sprites".to_string(),
        }
    }
}

/// The daemon's cgroup as a v2 path ("/a/b"), without the `daemon` leaf;
/// found once (it does not move while the daemon runs).
fn base_cgroup() -> Result<PathBuf> {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(b) = BASE.get() {
        return Ok(b.clone());
    }
    let own = own_cgroups()?
        .into_iter()
        .find(|c| c.hierarchy == 0)
        .ok_or_else(|| RuntimeError::Cgroup("no v2 entry in /proc/self/cgroup".into()))?;
    Ok(BASE.get_or_init(|| base_of(&own.path)).clone())
}

fn base_of(own: &Path) -> PathBuf {
    if own.file_name().is_some_and(|n| n == DAEMON_LEAF) {
        own.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"))
    } else {
        own.to_path_buf()
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| RuntimeError::io("write", path, e))
}

pub(super) fn prepare_host() -> Result<()> {
    let own = own_cgroups()?
        .into_iter()
        .find(|c| c.hierarchy == 0)
        .ok_or_else(|| RuntimeError::Cgroup("no v2 entry in /proc/self/cgroup".into()))?;
    let base = join_cgroup(Path::new(CGROUP_ROOT), &base_of(&own.path));
    let leaf = base.join(DAEMON_LEAF);
    // The root cgroup is exempt from the rule (and its kernel threads cannot move).
    let at_root = base_of(&own.path) == Path::new("/");
    if !at_root && own.path.file_name().is_none_or(|n| n != DAEMON_LEAF) {
        std::fs::create_dir_all(&leaf).map_err(|e| RuntimeError::io("mkdir", &leaf, e))?;
        // Everything in our cgroup moves with us: the parent must end up empty.
        let procs = base.join("cgroup.procs");
        let pids =
            std::fs::read_to_string(&procs).map_err(|e| RuntimeError::io("read", &procs, e))?;
        for pid in pids.lines().filter(|l| !l.trim().is_empty()) {
            match std::fs::write(leaf.join("cgroup.procs"), pid) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(RuntimeError::io("move pid into", &leaf, e)),
            }
        }
    }
    let available = std::fs::read_to_string(base.join("cgroup.controllers"))
        .map_err(|e| RuntimeError::io("read", base.join("cgroup.controllers"), e))?;
    let sprites = base.join(V2::default().parent);
    std::fs::create_dir_all(&sprites).map_err(|e| RuntimeError::io("mkdir", &sprites, e))?;
    for controller in CONTROLLERS {
        if !available.split_whitespace().any(|c| c == controller) {
            return Err(RuntimeError::Cgroup(format!(
                "controller {controller} is not delegated to {}",
                base.display()
            )));
        }
        write(
            &base.join("cgroup.subtree_control"),
            &format!("+{controller}"),
        )?;
        write(
            &sprites.join("cgroup.subtree_control"),
            &format!("+{controller}"),
        )?;
    }
    Ok(())
}

impl V2 {
    fn dir(&self, id: &str) -> Result<PathBuf> {
        Ok(join_cgroup(Path::new(CGROUP_ROOT), &self.cgroups_path(id)?))
    }
}

impl CgroupBackend for V2 {
    fn cgroups_path(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(base_cgroup()?.join(&self.parent).join(id))
    }

    fn dirs(&self, id: &str) -> Result<Vec<PathBuf>> {
        Ok(vec![self.dir(id)?])
    }

    fn stats(&self, id: &str) -> Result<SandboxStats> {
        let dir = self.dir(id)?;
        if !dir.exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let usage = read_u64(&dir.join("memory.current"))?;
        let inactive = read_key(&dir.join("memory.stat"), "inactive_file")?.unwrap_or(0);
        let cpu_us = read_key(&dir.join("cpu.stat"), "usage_usec")?.unwrap_or(0);
        Ok(SandboxStats {
            cpu_usage_ns: cpu_us.saturating_mul(1000),
            memory_bytes: usage.saturating_sub(inactive),
        })
    }

    fn remove(&self, id: &str) -> Result<()> {
        remove_dir(&self.dir(id)?)
    }

    fn is_frozen(&self, id: &str) -> Result<bool> {
        let freeze = self.dir(id)?.join("cgroup.freeze");
        match std::fs::read_to_string(&freeze) {
            Ok(s) => Ok(s.trim() == "1"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(RuntimeError::io("read", &freeze, e)),
        }
    }

    fn thaw_now(&self, id: &str) -> Result<bool> {
        let dir = self.dir(id)?;
        let freeze = dir.join("cgroup.freeze");
        if !freeze.exists() {
            return Ok(false);
        }
        write(&freeze, "0")?;
        Ok(read_key(&dir.join("cgroup.events"), "frozen")? == Some(0))
    }

    fn set_frozen(&self, id: &str, frozen: bool) -> Result<()> {
        let dir = self.dir(id)?;
        let freeze = dir.join("cgroup.freeze");
        if !freeze.exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        write(&freeze, if frozen { "1" } else { "0" })?;
        let want = if frozen { 1 } else { 0 };
        let deadline = std::time::Instant::now() + FREEZE_TIMEOUT;
        while read_key(&dir.join("cgroup.events"), "frozen")? != Some(want) {
            if std::time::Instant::now() >= deadline {
                if frozen {
                    let _ = write(&freeze, "0");
                }
                return Err(RuntimeError::Cgroup(format!(
                    "{} did not freeze",
                    dir.display()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_skips_the_daemon_leaf() {
        assert_eq!(
            base_of(Path::new("/system.slice/sprited.service/daemon")),
            PathBuf::from("/system.slice/sprited.service")
        );
        assert_eq!(
            base_of(Path::new("/system.slice/sprited.service")),
            PathBuf::from("/system.slice/sprited.service")
        );
        assert_eq!(base_of(Path::new("/daemon")), PathBuf::from("/"));
        assert_eq!(base_of(Path::new("/")), PathBuf::from("/"));
    }
}
