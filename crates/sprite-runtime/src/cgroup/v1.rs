//! cgroup v1 (and hybrid) hosts. The sandbox gets the relative cgroupsPath
//! `sprited/<id>`: runc places it under its own (= the daemon's) cgroup in
//! each hierarchy, so where the daemon's memory cgroup is nested
//! (`/process_api/...`), the sandbox's is too.

use std::path::{Path, PathBuf};

use super::{
    join_cgroup, own_cgroups, read_key, read_u64, remove_dir, CgroupBackend, ProcCgroup,
    FREEZE_TIMEOUT,
};
use crate::error::{Result, RuntimeError};
use crate::sandbox::{validate_id, SandboxStats};

#[derive(Debug, Clone)]
pub struct V1 {
    /// Parent of every sandbox's cgroup, relative to the daemon's.
    pub parent: String,
    /// The hierarchies, found once: the daemon's cgroups and the cgroup
    /// mounts do not move while it runs, and reading `/proc/self/mountinfo`
    /// (hundreds of lines with hundreds of sprites) for every stats call
    /// made metering quadratic.
    found: std::sync::OnceLock<Vec<Hierarchy>>,
}

impl Default for V1 {
    fn default() -> Self {
        V1 {
            parent: "sprited".to_string(),
            found: std::sync::OnceLock::new(),
        }
    }
}

/// A mounted cgroup hierarchy and the daemon's cgroup in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hierarchy {
    /// Controllers, or `name=...` for named hierarchies; empty for the hybrid v2 tree.
    pub controllers: Vec<String>,
    /// The daemon's cgroup directory in this hierarchy.
    pub own_dir: PathBuf,
    /// Where the hierarchy is mounted (`/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
}

/// Pairs the cgroup mounts of `mountinfo` with the daemon's cgroups.
pub(crate) fn hierarchies(mountinfo: &str, own: &[ProcCgroup]) -> Vec<Hierarchy> {
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount_point), Some(fstype)) =
            (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let controllers: Vec<String> = match *fstype {
            "cgroup" => right
                .get(2)
                .map(|opts| {
                    opts.split(',')
                        .filter(|o| is_controller_option(o))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            "cgroup2" => Vec::new(),
            _ => continue,
        };
        let own_path = own.iter().find(|p| {
            if *fstype == "cgroup2" {
                p.hierarchy == 0
            } else {
                !p.controllers.is_empty() && p.controllers.iter().all(|c| controllers.contains(c))
            }
        });
        let Some(own_path) = own_path else { continue };
        // The mount may expose a subtree (root != "/"): paths are relative to it.
        let relative = own_path
            .path
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| own_path.path.clone());
        found.push(Hierarchy {
            controllers,
            own_dir: join_cgroup(Path::new(mount_point), &relative),
            mount_point: PathBuf::from(mount_point),
        });
    }
    found
}

fn is_controller_option(o: &str) -> bool {
    o.starts_with("name=")
        || matches!(
            o,
            "cpu"
                | "cpuacct"
                | "cpuset"
                | "memory"
                | "devices"
                | "freezer"
                | "blkio"
                | "pids"
                | "net_cls"
                | "net_prio"
                | "perf_event"
                | "hugetlb"
                | "rdma"
                | "misc"
        )
}

impl V1 {
    fn current_hierarchies(&self) -> Result<Vec<Hierarchy>> {
        if let Some(found) = self.found.get() {
            return Ok(found.clone());
        }
        let path = Path::new("/proc/self/mountinfo");
        let mountinfo =
            std::fs::read_to_string(path).map_err(|e| RuntimeError::io("read", path, e))?;
        let found = hierarchies(&mountinfo, &own_cgroups()?);
        if !found.is_empty() {
            let _ = self.found.set(found.clone());
        }
        Ok(found)
    }

    fn dir_for(&self, controller: &str, id: &str) -> Result<PathBuf> {
        let hierarchy = self
            .current_hierarchies()?
            .into_iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .ok_or_else(|| RuntimeError::Cgroup(format!("no {controller} hierarchy mounted")))?;
        Ok(hierarchy.own_dir.join(&self.parent).join(id))
    }
}

impl CgroupBackend for V1 {
    fn v1_hierarchies(&self) -> Option<Vec<Hierarchy>> {
        self.current_hierarchies().ok()
    }

    fn cgroups_path(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(PathBuf::from(&self.parent).join(id))
    }

    fn dirs(&self, id: &str) -> Result<Vec<PathBuf>> {
        validate_id(id)?;
        Ok(self
            .current_hierarchies()?
            .into_iter()
            .map(|h| h.own_dir.join(&self.parent).join(id))
            .collect())
    }

    fn stats(&self, id: &str) -> Result<SandboxStats> {
        validate_id(id)?;
        let memory = self.dir_for("memory", id)?;
        let cpuacct = self.dir_for("cpuacct", id)?;
        if !memory.exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let usage = read_u64(&memory.join("memory.usage_in_bytes"))?;
        let inactive = read_key(&memory.join("memory.stat"), "total_inactive_file")?.unwrap_or(0);
        Ok(SandboxStats {
            cpu_usage_ns: read_u64(&cpuacct.join("cpuacct.usage"))?,
            memory_bytes: usage.saturating_sub(inactive),
        })
    }

    fn remove(&self, id: &str) -> Result<()> {
        for dir in self.dirs(id)? {
            remove_dir(&dir)?;
        }
        Ok(())
    }

    fn is_frozen(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        let state = self.dir_for("freezer", id)?.join("freezer.state");
        match std::fs::read_to_string(&state) {
            Ok(s) => Ok(s.trim() != "THAWED"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(RuntimeError::io("read", &state, e)),
        }
    }

    fn thaw_now(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        let state = self.dir_for("freezer", id)?.join("freezer.state");
        match std::fs::write(&state, "THAWED") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(RuntimeError::io("write", &state, e)),
        }
        let now =
            std::fs::read_to_string(&state).map_err(|e| RuntimeError::io("read", &state, e))?;
        Ok(now.trim() == "THAWED")
    }

    fn set_frozen(&self, id: &str, frozen: bool) -> Result<()> {
        validate_id(id)?;
        let state = self.dir_for("freezer", id)?.join("freezer.state");
        if !state.exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let want = if frozen { "FROZEN" } else { "THAWED" };
        let deadline = std::time::Instant::now() + FREEZE_TIMEOUT;
        loop {
            // Rewriting FROZEN while FREEZING retries tasks that were busy.
            std::fs::write(&state, want).map_err(|e| RuntimeError::io("write", &state, e))?;
            let now =
                std::fs::read_to_string(&state).map_err(|e| RuntimeError::io("read", &state, e))?;
            if now.trim() == want {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                if frozen {
                    let _ = std::fs::write(&state, "THAWED");
                }
                return Err(RuntimeError::Cgroup(format!(
                    "{} stuck in {} instead of {want}",
                    state.display(),
                    now.trim()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::parse_proc_cgroup;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:39 /nested /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
";
    const PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/nested/x
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn finds_each_hierarchy_and_the_daemons_place_in_it() {
        let h = hierarchies(MOUNTINFO, &parse_proc_cgroup(PROC_CGROUP));
        let dir = |c: &str| {
            h.iter()
                .find(|h| h.controllers.iter().any(|x| x == c))
                .map(|h| h.own_dir.clone())
                .expect(c)
        };
        assert_eq!(
            dir("memory"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(dir("pids"), PathBuf::from("/sys/fs/cgroup/pids"));
        assert_eq!(dir("name=systemd"), PathBuf::from("/sys/fs/cgroup/systemd"));
        assert_eq!(dir("blkio"), PathBuf::from("/sys/fs/cgroup/blkio/x"));
        assert!(h
            .iter()
            .any(|h| h.controllers.is_empty() && h.own_dir == Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(h.len(), 7);
    }
}
