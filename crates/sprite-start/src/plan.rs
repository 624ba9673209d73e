//! What a start does, written down by the daemon (as JSON, in the
//! bundle) and carried out by [`crate::main`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The plan's file name in a sandbox's bundle directory.
pub const PLAN_FILE: &str = "start.json";

/// One sandbox's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The sandbox's id (for messages).
    pub id: String,
    /// Its root directory on the host (mounted by the daemon).
    pub rootfs: PathBuf,
    pub hostname: String,
    /// The user namespace it joins (made by the daemon, ids mapped).
    pub user_ns: PathBuf,
    /// The network namespace it joins, owned by that user namespace;
    /// `None`: a new one (with only `lo`).
    pub net_ns: Option<PathBuf>,
    /// Its cgroup in each hierarchy, made and set here, init put in all.
    pub cgroups: Vec<CgroupDir>,
    /// In order, each onto a path resolved inside the root.
    pub mounts: Vec<Mount>,
    /// Host device nodes bound at the same path inside (`/dev/null`, ...).
    pub devices: Vec<PathBuf>,
    /// `(target, link)`: symlinks made inside (`/dev/fd` -> `/proc/self/fd`).
    pub symlinks: Vec<(PathBuf, PathBuf)>,
    /// Paths hidden after `pivot_root`: a directory under an empty
    /// read-only tmpfs, a file under `/dev/null`.
    pub masked: Vec<PathBuf>,
    /// Paths made read-only after `pivot_root`.
    pub readonly: Vec<PathBuf>,
    pub caps: Caps,
    pub no_new_privs: bool,
    pub rlimits: Vec<Rlimit>,
    /// Init's program (an absolute path inside) and arguments.
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    /// Where the exec fifo and `state.json` go (made here).
    pub state_dir: PathBuf,
    /// Where init's host pid is written once it waits.
    pub pid_file: PathBuf,
    /// A descriptor (inherited) to read one byte from before anything
    /// enters the sandbox's namespaces: the daemon writes it once the root
    /// is mounted, so that what comes before (this process's start, the
    /// cgroups) runs while it mounts. End of file: it could not, and the
    /// start fails. `None`: the root is mounted already.
    #[serde(default)]
    pub gate_fd: Option<i32>,
}

/// A sandbox's cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// The hierarchy's controllers as `state.json` names them (`memory`,
    /// `name=systemd`, empty for a hybrid host's v2 tree).
    pub controllers: String,
    pub dir: PathBuf,
    /// `(file, value)`, written in order once the directory is made.
    pub settings: Vec<(String, String)>,
}

/// A mount inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside; missing directories (or the file, for a
    /// file bound) are made, symlinks resolved inside the root.
    pub destination: PathBuf,
    pub kind: MountKind,
    /// `MS_*` flags (`MS_RDONLY`, `MS_NOSUID`, ...), without the
    /// propagation and bind ones.
    pub flags: u64,
    /// Filesystem options (`mode=755,size=4096k`).
    pub data: String,
    /// Receives the host's mounts below the source after it is made.
    pub slave: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A new filesystem: `proc`, `tmpfs`, `devpts`, `mqueue`, `sysfs`.
    Fs { fstype: String, source: String },
    /// A host path bound; `flags` applied by a remount.
    Bind { source: PathBuf, recursive: bool },
    /// A tmpfs holding each cgroup v1 hierarchy (as the sandbox's cgroup
    /// namespace shows it), each read-only.
    CgroupTree { hierarchies: Vec<CgroupFs> },
}

/// One cgroup v1 hierarchy under [`MountKind::CgroupTree`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupFs {
    /// The directory under the tree (`memory`, `systemd`).
    pub name: String,
    /// Mount options naming it (`memory`, `none,name=systemd`).
    pub options: String,
}

/// Capability sets as bit masks (bit n: capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*`.
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}
