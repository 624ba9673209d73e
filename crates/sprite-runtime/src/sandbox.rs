//! What a sandbox is made of, and the states it can be in.

use std::path::PathBuf;

use oci_spec::runtime::Capability;

use crate::error::{Result, RuntimeError};

/// Path of the agent inside every sprite (bind-mounted read-only).
pub const AGENT_PATH_IN_SPRITE: &str = "/.sprite/bin/sprite-agent";
/// The agent binary again, under the name of the in-sprite CLI.
pub const SPRITE_ENV_PATH_IN_SPRITE: &str = "/.sprite/bin/sprite-env";
/// The fd on which init finds its listening socket (also in `SPRITE_AGENT_FD`).
pub const AGENT_FD: i32 = 3;
/// The fd on which an init that loads the seccomp filter itself finds it
/// (compiled BPF, a sealed memfd), named in [`SECCOMP_FD_ENV`].
pub const SECCOMP_FD: i32 = 4;
/// The fd on which a native start's starter finds its gate (see
/// [`crate::gate`]); never init's.
pub(crate) const GATE_FD: i32 = 5;
/// Init's environment: where the compiled seccomp filter is.
pub const SECCOMP_FD_ENV: &str = "SPRITE_SECCOMP_FD";
/// Init's environment: the capabilities it keeps once the filter is
/// loaded (`CAP_CHOWN,CAP_KILL,...`); every other is dropped from all its
/// sets, the bounding set too.
pub const CAPS_ENV: &str = "SPRITE_CAPS";

/// Everything needed to start one sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxSpec {
    pub id: String,
    pub hostname: String,
    /// The mounted root filesystem (read-write).
    pub rootfs: PathBuf,
    /// Where `config.json` is written.
    pub bundle_dir: PathBuf,
    /// Init's stdout and stderr (and runc's errors) are appended here.
    pub log_path: PathBuf,
    /// Host path of the static agent, bind-mounted read-only at
    /// [`AGENT_PATH_IN_SPRITE`].
    pub agent_bin: PathBuf,
    /// Init's argv; by default the agent.
    pub init_args: Vec<String>,
    /// Extra `KEY=value` environment for init (`PATH` is added if absent,
    /// `SPRITE_AGENT_FD=3` always).
    pub env: Vec<String>,
    pub limits: Limits,
    /// User namespace mapping; `None` runs without a user namespace.
    pub id_map: Option<IdMap>,
    /// Host directories bound into the sandbox.
    pub binds: Vec<Bind>,
    /// no_new_privs on init, inherited by every process of the sandbox: it
    /// disables setuid binaries (sudo). Turn it off only where sudo must
    /// work; the user namespace, the capability bounding set and seccomp
    /// still bound what root inside can do.
    pub no_new_privileges: bool,
    /// Init's capabilities (bounding, effective and permitted sets), which
    /// bound those of every process of the sandbox; by default
    /// [`crate::spec::CAPABILITIES`].
    pub capabilities: Vec<Capability>,
    /// Host devices made available inside (none by default).
    pub devices: Vec<Device>,
    /// Whether seccomp lets the io_uring calls through (off by default).
    pub io_uring: bool,
    /// Init is the agent, which loads the seccomp filter the driver
    /// compiled once ([`crate::seccomp::compiled`]) before anything else
    /// and drops what it needed for that, instead of `runc init` compiling
    /// it at every start. Off by default (another init would run
    /// unfiltered); drivers without a host seccomp filter ignore it.
    pub init_loads_seccomp: bool,
    /// How thick the sandbox's walls are (which driver runs it).
    pub isolation: Isolation,
}

/// How a sandbox is isolated from the host.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Namespaces, cgroups, seccomp and capabilities around processes that
    /// run on the host's kernel (runc).
    #[default]
    Container,
    /// gVisor: the sandbox's processes talk to a kernel in user space (the
    /// Sentry, itself confined by seccomp), never to the host's (runsc).
    Gvisor,
}

impl Isolation {
    /// The name the API and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Container => "container",
            Isolation::Gvisor => "gvisor",
        }
    }

    pub fn is_container(&self) -> bool {
        *self == Isolation::Container
    }

    /// From the name the API and the CLI use.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "container" => Some(Isolation::Container),
            "gvisor" => Some(Isolation::Gvisor),
            _ => None,
        }
    }
}

/// A character device of the host made available inside a sandbox: a node
/// of its own, owned by the sandbox's root, bound at `path` and allowed by
/// the device cgroup. (The host's node is not bound: its owner is unmapped
/// in the sandbox's user namespace, so root inside could not open it.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Absolute path inside, under `/dev`.
    pub path: String,
    pub major: u64,
    pub minor: u64,
    /// Permission bits of the node.
    pub mode: u32,
}

/// A host directory bound into a sandbox (never executable or setuid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub destination: String,
    pub read_only: bool,
    /// Mounts made under `source` on the host later appear inside too
    /// (recursive bind with slave propagation; `source` should be a shared
    /// mount). Nothing propagates back out.
    pub follow_host_mounts: bool,
}

impl SandboxSpec {
    /// A spec with the defaults: hostname = id, init = the agent, default
    /// limits, ids 0..65536 mapped from host 100000, no_new_privs on.
    pub fn new(
        id: impl Into<String>,
        rootfs: impl Into<PathBuf>,
        bundle_dir: impl Into<PathBuf>,
        log_path: impl Into<PathBuf>,
        agent_bin: impl Into<PathBuf>,
    ) -> Self {
        let id = id.into();
        SandboxSpec {
            hostname: id.clone(),
            id,
            rootfs: rootfs.into(),
            bundle_dir: bundle_dir.into(),
            log_path: log_path.into(),
            agent_bin: agent_bin.into(),
            init_args: vec![AGENT_PATH_IN_SPRITE.to_string()],
            env: Vec::new(),
            limits: Limits::default(),
            id_map: Some(IdMap::default()),
            binds: Vec::new(),
            no_new_privileges: true,
            capabilities: crate::spec::CAPABILITIES.to_vec(),
            devices: Vec::new(),
            io_uring: false,
            init_loads_seccomp: false,
            isolation: Isolation::Container,
        }
    }
}

/// cgroup limits. Zero means unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// CPU bandwidth in cores (quota = cpus × 100 ms per 100 ms period).
    pub cpus: f64,
    /// Memory limit; swap is not allowed on top of it.
    pub memory_bytes: u64,
    /// Maximum number of tasks (processes and threads).
    pub pids: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpus: 1.0,
            memory_bytes: 1 << 30,
            pids: 4096,
        }
    }
}

/// Container ids 0..size map to host ids host_base..host_base+size (uid and gid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub host_base: u32,
    pub size: u32,
}

impl Default for IdMap {
    fn default() -> Self {
        IdMap {
            host_base: 100_000,
            size: 65_536,
        }
    }
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// Init runs with this host pid.
    Running { pid: u32 },
    /// Frozen.
    Paused,
    /// Known to the runtime but not running (init exited, or the host rebooted).
    Stopped,
    /// Unknown to the runtime.
    Missing,
}

/// Resource use of a sandbox's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SandboxStats {
    /// CPU time used by all its processes since start.
    pub cpu_usage_ns: u64,
    /// Memory in use, without reclaimable inactive page cache.
    pub memory_bytes: u64,
}

/// Checks that `id` is safe as a container id, a path component and a cgroup name.
pub fn validate_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if first_ok && rest_ok && id.len() <= 128 {
        Ok(())
    } else {
        Err(RuntimeError::InvalidId(id.to_string()))
    }
}
