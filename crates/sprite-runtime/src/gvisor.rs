//! The gVisor driver: the same bundle as [`crate::Runc`]'s, run by `runsc`.
//! The sandbox's processes then talk to the Sentry (a kernel in user space,
//! itself confined by a seccomp filter of its own) instead of the host's
//! kernel; files reach it through the Gofer.
//!
//! What differs from runc, and why:
//! - **The agent's socket.** runsc cannot hand a descriptor of ours to
//!   init, so the agent binds its socket itself, in a directory of the
//!   sandbox's own bound from the host (`--host-uds=all` makes that a host
//!   socket), and the path the daemon bound is made a symlink to it:
//!   the daemon connects as before.
//! - **The network.** The Sentry's network stack takes the interfaces of
//!   its network namespace when the sandbox is created, and sends its
//!   packets through them from user space, where the namespace's nftables
//!   output hook never sees them. So the driver makes the namespace first,
//!   with a veth pair: the Sentry takes `g0` ([`SANDBOX_ADDR`]), the
//!   namespace's kernel keeps `g1` ([`GATEWAY_ADDR`]) and forwards what
//!   arrives there to pasta, through the same ruleset as a container's
//!   output (the `forward` chain jumps to the same policy), masqueraded to
//!   pasta's address. The daemon's resolver and its connections to ports
//!   inside go to these addresses instead of loopback.
//! - **`/tmp`** would be a tmpfs of the Sentry's: it is bound to the
//!   volume's `/tmp`, which persists as under runc.

use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder};
use serde::Deserialize;

use crate::cgroup::{self, CgroupBackend};
use crate::driver::{Driver, EgressHook};
use crate::error::{Result, RuntimeError};
use crate::gvisor_platform::Platform;
use crate::runc::{describe, proc_stat, read_from, rotate_log, run_checked, tail, ProcessExit};
use crate::sandbox::{validate_id, SandboxSpec, SandboxState, SandboxStats};
use crate::{bundle, spec};

/// The sandbox's own address on `g0` (taken by the Sentry).
pub const SANDBOX_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// The namespace kernel's address on `g1`: the sandbox's gateway, and
/// where the daemon's resolver answers it.
pub const GATEWAY_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// `g0`'s hardware address, which the Sentry keeps for its interface:
/// known ahead, so the namespace's kernel never has to ask for it (an ARP
/// answer from a busy Sentry can take longer than a connect waits).
pub const SANDBOX_MAC: &str = "02:00:0a:c8:00:02";
/// The interface the namespace's kernel keeps.
pub const GATEWAY_IF: &str = "g1";
/// Where the agent binds its socket inside the sandbox.
const AGENT_DIR_IN_SANDBOX: &str = "/.sprite/agent";
const AGENT_SOCKET: &str = "agent.sock";
/// How long a start waits for the agent to bind its socket.
const AGENT_WAIT: Duration = Duration::from_secs(20);
/// Host tasks a sandbox runs beyond its sprite's (the Sentry's and the
/// Gofer's threads), added to its pids limit.
const SENTRY_TASKS: i64 = 256;
/// How long to wait for the sandbox to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Runs sandboxes with the runsc CLI.
#[derive(Debug)]
pub struct Gvisor {
    state_root: PathBuf,
    runsc_bin: PathBuf,
    platform: Platform,
    cgroups: Box<dyn CgroupBackend>,
    nofile: u64,
    egress: Option<Arc<dyn EgressHook>>,
}

/// runsc's state file (the fields we use). Read directly: `runsc state`
/// asks the Sentry, which does not answer while it is frozen.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunscState {
    status: String,
    #[serde(default)]
    sandbox: Option<SandboxField>,
    #[serde(default)]
    gofer_pid: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct SandboxField {
    #[serde(default)]
    pid: i64,
}

impl RunscState {
    fn pid(&self) -> Option<u32> {
        let pid = self.sandbox.as_ref()?.pid;
        u32::try_from(pid).ok().filter(|p| *p > 0)
    }
}

impl Gvisor {
    /// `state_root` is runsc's `--root` (e.g. `<data>/runsc`); `runsc_bin`
    /// the runsc executable. The platform is `ptrace`, which works
    /// wherever runsc does, until [`Gvisor::with_platform`] says otherwise.
    pub fn new(state_root: PathBuf, runsc_bin: PathBuf) -> Self {
        Gvisor {
            state_root,
            runsc_bin,
            platform: Platform::Ptrace,
            cgroups: cgroup::backend(),
            nofile: spec::grantable_nofile(),
            egress: None,
        }
    }

    /// Gives every sandbox outbound network through `egress` (see the
    /// module's documentation); without it a sandbox has only loopback.
    pub fn with_egress(mut self, egress: Arc<dyn EgressHook>) -> Self {
        self.egress = Some(egress);
        self
    }

    /// Runs every sandbox's Sentry on `platform` (see
    /// [`crate::gvisor_platform::choose`]).
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// The platform the Sentry runs on (`ptrace` or `kvm`).
    pub fn platform(&self) -> &'static str {
        self.platform.as_str()
    }

    /// The runsc executable.
    pub fn runsc_bin(&self) -> &Path {
        &self.runsc_bin
    }

    /// runsc's version line, or why it cannot run.
    pub fn version(&self) -> Result<String> {
        let out = Command::new(&self.runsc_bin)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RuntimeError::io("spawn", &self.runsc_bin, e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().next().unwrap_or("runsc").trim().to_string())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.runsc_bin);
        cmd.arg("--root").arg(&self.state_root);
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = self.command();
        cmd.args(args);
        run_checked(&mut cmd)
    }

    /// runsc's state file of `id`.
    fn state_file(&self, id: &str) -> PathBuf {
        self.state_root.join(format!("{id}_sandbox:{id}.state"))
    }

    /// Whether runsc has state for `id`.
    pub fn knows(&self, id: &str) -> bool {
        self.state_file(id).exists()
    }

    fn runsc_state(&self, id: &str) -> Result<Option<RunscState>> {
        validate_id(id)?;
        let file = self.state_file(id);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RuntimeError::io("read", &file, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| RuntimeError::Json {
                what: format!("runsc state {id}"),
                source,
            })
    }

    /// The file the sandbox's network namespace is bound to.
    fn netns_file(&self, id: &str) -> PathBuf {
        self.state_root.join("netns").join(id)
    }

    /// A new network namespace bound to [`Gvisor::netns_file`], with the
    /// veth pair the Sentry and the namespace's kernel share.
    fn make_netns(&self, id: &str) -> Result<PathBuf> {
        let file = self.netns_file(id);
        remove_netns(&file);
        if let Some(dir) = file.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| RuntimeError::io("mkdir", dir, e))?;
        }
        // unshare binds the namespace onto an existing file.
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| RuntimeError::io("create", &file, e))?;
        let mut net = std::ffi::OsString::from("--net=");
        net.push(&file);
        let out = Command::new("unshare")
            .arg(net)
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RuntimeError::io("spawn", "unshare", e))?;
        if !out.status.success() {
            return Err(RuntimeError::Network(format!(
                "unshare --net for sandbox {id} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let gw = GATEWAY_ADDR;
        let me = SANDBOX_ADDR;
        run_ip(
            &file,
            &format!(
                "link set lo up\n\
                 link add g0 address {SANDBOX_MAC} type veth peer name {GATEWAY_IF}\n\
                 addr add {me}/30 dev g0\n\
                 link set g0 up\n\
                 route add default via {gw} dev g0\n"
            ),
        )?;
        Ok(file)
    }

    fn spawn_run(&self, spec: &SandboxSpec, network: bool) -> Result<()> {
        rotate_log(&spec.log_path);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&spec.log_path)
            .map_err(|e| RuntimeError::io("open", &spec.log_path, e))?;
        let log_start = log
            .metadata()
            .map_err(|e| RuntimeError::io("stat", &spec.log_path, e))?
            .len();
        let log_err = log
            .try_clone()
            .map_err(|e| RuntimeError::io("dup", &spec.log_path, e))?;
        // Global flags, the same for both steps (runsc keeps some of them
        // in its state, and checks others against it).
        let flags = [
            format!("--platform={}", self.platform.as_str()),
            format!("--network={}", if network { "sandbox" } else { "none" }),
            "--host-uds=all".to_string(),
        ];
        let mut create = self.command();
        create
            .args(&flags)
            .args(["create", "--bundle"])
            .arg(&spec.bundle_dir)
            .arg("--pid-file")
            .arg(spec.bundle_dir.join(INIT_PID_FILE))
            .arg(&spec.id)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // runsc of 2022 takes a network namespace for the host's own when
        // /proc/sys/net/core/rmem_default exists in it, which it does in
        // every namespace on kernels since 6.x. So the step that sets up
        // the network (`start`) runs in a mount namespace of its own with
        // nothing at /proc/sys/net (receiving the host's mounts, sending
        // none back). The namespace it is given is made by us, never the
        // host's. (`create` cannot: the Gofer mounts a new proc, which the
        // kernel refuses where a proc mount is partly covered.)
        let mut start = match network {
            true => {
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--propagation", "slave", "sh", "-c"])
                    .arg("mount -t tmpfs -o size=4k,mode=0555 sprited-no-sysctl /proc/sys/net && exec \"$0\" \"$@\"")
                    .arg(&self.runsc_bin)
                    .arg("--root")
                    .arg(&self.state_root);
                cmd
            }
            false => self.command(),
        };
        start
            .args(&flags)
            .arg("start")
            .arg(&spec.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let parent = crate::cgroup::ParentLock::shared()?;
        let created = create
            .status()
            .map_err(|e| RuntimeError::io("spawn", &self.runsc_bin, e))?;
        drop(parent);
        if !created.success() {
            return Err(RuntimeError::Runc {
                command: describe(&create),
                status: created.to_string(),
                output: read_from(&spec.log_path, log_start),
            });
        }
        let started = start
            .output()
            .map_err(|e| RuntimeError::io("spawn", &self.runsc_bin, e))?;
        if !started.status.success() {
            return Err(RuntimeError::Runc {
                command: describe(&start),
                status: started.status.to_string(),
                output: tail(&started.stderr),
            });
        }
        Ok(())
    }

    /// Waits until the agent has bound its socket (the sandbox is usable
    /// from then on), or the sandbox is gone.
    fn wait_for_agent(&self, spec: &SandboxSpec, socket: &Path) -> Result<()> {
        let deadline = Instant::now() + AGENT_WAIT;
        loop {
            if std::fs::symlink_metadata(socket).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::Network(format!(
                    "the agent of sandbox {} did not listen within {AGENT_WAIT:?}",
                    spec.id
                )));
            }
            if !matches!(self.state(&spec.id)?, SandboxState::Running { .. }) {
                return Err(RuntimeError::NotRunning(spec.id.clone()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Gvisor {
    /// Removes the sandbox's cgroups once its last tasks are gone: the
    /// ptrace platform's stub processes can outlive the Sentry by a few
    /// milliseconds (anything still there is killed).
    fn remove_cgroups(&self, id: &str) -> Result<()> {
        let deadline = Instant::now() + KILL_WAIT;
        loop {
            match self.cgroups.remove(id) {
                Err(RuntimeError::Io { source, .. })
                    if source.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                {
                    for dir in self.cgroups.dirs(id)? {
                        let procs =
                            std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }
}

/// Where `runsc run` writes the sandbox's pid.
const INIT_PID_FILE: &str = "init.pid";

/// The host path a bound Unix socket listens on.
fn socket_path(listener: OwnedFd) -> Result<PathBuf> {
    let l = std::os::unix::net::UnixListener::from(listener);
    let addr = l
        .local_addr()
        .map_err(|e| RuntimeError::io("getsockname", "the agent's socket", e))?;
    addr.as_pathname()
        .map(Path::to_path_buf)
        .ok_or_else(|| RuntimeError::InvalidSpec("the agent's socket has no path".into()))
}

/// Runs an `ip -batch` script inside the network namespace `netns`.
fn run_ip(netns: &Path, script: &str) -> Result<()> {
    crate::net::run_script_in(netns, Path::new("ip"), &["-batch", "-"], script)
}

/// Unbinds and removes a namespace file (nothing when there is none).
fn remove_netns(file: &Path) {
    let _ = nix::mount::umount2(file, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(file);
}

/// The runc bundle turned into one for runsc: the agent binds its own
/// socket, no descriptor is inherited, `/tmp` is the volume's, the network
/// namespace is the one made for it (or none), and what the Sentry does
/// itself (seccomp, cgroup and mqueue mounts) is left out.
fn for_runsc(
    mut config: oci_spec::runtime::Spec,
    spec: &SandboxSpec,
    agent_dir: &Path,
    netns: Option<&Path>,
) -> Result<oci_spec::runtime::Spec> {
    if let Some(process) = config.process_mut() {
        let mut args = spec.init_args.clone();
        args.push("--listen".into());
        args.push(format!("{AGENT_DIR_IN_SANDBOX}/{AGENT_SOCKET}"));
        process.set_args(Some(args));
        let env = process
            .env()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !e.starts_with("SPRITE_AGENT_FD="))
            .collect();
        process.set_env(Some(env));
    }
    let mut mounts: Vec<_> = config
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !matches!(m.typ().as_deref(), Some("cgroup" | "mqueue")))
        .map(|mut m| {
            // The Gofer serves a host directory as it is: propagation
            // options mean nothing to it.
            if let Some(opts) = m.options().clone() {
                m.set_options(Some(
                    opts.into_iter()
                        .filter(|o| !matches!(o.as_str(), "rslave" | "rprivate" | "rshared"))
                        .collect(),
                ));
            }
            m
        })
        .collect();
    let bind = |dest: &str, source: &Path| {
        MountBuilder::default()
            .destination(dest)
            .typ("bind")
            .source(source)
            .options(vec![
                "rbind".to_string(),
                "nosuid".to_string(),
                "nodev".to_string(),
            ])
            .build()
    };
    mounts.push(bind("/tmp", &spec.rootfs.join("tmp"))?);
    mounts.push(bind(AGENT_DIR_IN_SANDBOX, agent_dir)?);
    config.set_mounts(Some(mounts));
    if let Some(linux) = config.linux_mut() {
        linux.set_seccomp(None);
        // The host's pids cgroup counts the Sentry's and the Gofer's own
        // threads too, beside one per thread of the sprite (ptrace).
        if let Some(res) = linux.resources_mut() {
            if let Some(pids) = res.pids() {
                let limit = pids.limit().saturating_add(SENTRY_TASKS);
                res.set_pids(Some(
                    oci_spec::runtime::LinuxPidsBuilder::default()
                        .limit(limit)
                        .build()?,
                ));
            }
        }
        let namespaces = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| {
                !matches!(
                    n.typ(),
                    LinuxNamespaceType::Network | LinuxNamespaceType::Cgroup
                )
            })
            .chain(
                netns
                    .map(|path| {
                        LinuxNamespaceBuilder::default()
                            .typ(LinuxNamespaceType::Network)
                            .path(path.to_path_buf())
                            .build()
                    })
                    .transpose()?,
            )
            .collect();
        linux.set_namespaces(Some(namespaces));
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }
    Ok(config)
}

impl Driver for Gvisor {
    fn start(&self, spec: &SandboxSpec, listener: OwnedFd) -> Result<()> {
        validate_id(&spec.id)?;
        if !spec.devices.is_empty() {
            return Err(RuntimeError::InvalidSpec(
                "host devices cannot be given to a gvisor sprite".into(),
            ));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.state_root)
            .map_err(|e| RuntimeError::io("mkdir", &self.state_root, e))?;
        match self.state(&spec.id)? {
            SandboxState::Missing => {}
            SandboxState::Stopped => {
                tracing::info!(sandbox = %spec.id, "removing stopped leftover");
                self.delete(&spec.id)?;
            }
            SandboxState::Running { .. } | SandboxState::Paused => {
                return Err(RuntimeError::AlreadyRunning(spec.id.clone()))
            }
        }
        // The daemon connects where it bound the socket: that path becomes
        // a link to the one the agent binds.
        // Beside it, where the Gofer (root in a user namespace of its own,
        // no CAP_DAC_OVERRIDE over host root's 0700 bundle) can reach.
        let socket = socket_path(listener)?;
        let agent_dir = socket
            .parent()
            .ok_or_else(|| RuntimeError::InvalidSpec("the agent's socket has no directory".into()))?
            .join("agent");
        let _ = std::fs::remove_dir_all(&agent_dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&agent_dir)
            .map_err(|e| RuntimeError::io("mkdir", &agent_dir, e))?;
        if let Some(map) = spec.id_map {
            let root = Some(nix::unistd::Uid::from_raw(map.host_base));
            let group = Some(nix::unistd::Gid::from_raw(map.host_base));
            nix::unistd::chown(&agent_dir, root, group)
                .map_err(|e| RuntimeError::io("chown", &agent_dir, e.into()))?;
        }
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::io("remove", &socket, e)),
        }
        let agent_socket = agent_dir.join(AGENT_SOCKET);
        std::os::unix::fs::symlink(&agent_socket, &socket)
            .map_err(|e| RuntimeError::io("symlink", &socket, e))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o1777)
            .create(spec.rootfs.join("tmp"))
            .map_err(|e| RuntimeError::io("mkdir", spec.rootfs.join("tmp"), e))?;

        let netns = match &self.egress {
            Some(_) => Some(self.make_netns(&spec.id)?),
            None => None,
        };
        let config = spec::build(
            spec,
            &spec::SpecOptions {
                cgroups_path: self.cgroups.cgroups_path(&spec.id)?,
                nofile: self.nofile,
                user_ns: None,
                init_loads_seccomp: false,
                net_ns: None,
            },
        )?;
        let config = for_runsc(config, spec, &agent_dir, netns.as_deref())?;
        bundle::write_config(&spec.bundle_dir, &config)?;
        let started = Instant::now();
        let up = self
            .spawn_run(spec, netns.is_some())
            .and_then(|()| {
                tracing::debug!(sandbox = %spec.id, elapsed = ?started.elapsed(), "runsc run --detach");
                match (&self.egress, &netns) {
                    (Some(egress), Some(ns)) => {
                        // The Sentry has taken g0 (and every interface
                        // up): the gateway's side comes up only now.
                        run_ip(
                            ns,
                            &format!(
                                "route flush dev g0\n\
                                 addr flush dev g0\n\
                                 addr add {GATEWAY_ADDR}/30 dev {GATEWAY_IF}\n\
                                 link set {GATEWAY_IF} up\n\
                                 neigh replace {SANDBOX_ADDR} lladdr {SANDBOX_MAC} dev {GATEWAY_IF} nud permanent\n"
                            ),
                        )?;
                        egress.attach_netns(&spec.id, ns)
                    }
                    _ => Ok(()),
                }
            })
            .and_then(|()| self.wait_for_agent(spec, &agent_socket));
        if let Err(e) = up {
            let _ = self.delete(&spec.id);
            return Err(e);
        }
        tracing::debug!(sandbox = %spec.id, elapsed = ?started.elapsed(), "gvisor sandbox up");
        Ok(())
    }

    fn state(&self, id: &str) -> Result<SandboxState> {
        let Some(state) = self.runsc_state(id)? else {
            return Ok(SandboxState::Missing);
        };
        let pid = state.pid().filter(|pid| alive(*pid));
        Ok(match (state.status.as_str(), pid) {
            ("running" | "paused", Some(pid)) => {
                if state.status == "paused" || self.cgroups.is_frozen(id)? {
                    SandboxState::Paused
                } else {
                    SandboxState::Running { pid }
                }
            }
            _ => SandboxState::Stopped,
        })
    }

    fn init_pid(&self, id: &str) -> Result<u32> {
        let Some(state) = self.runsc_state(id)? else {
            return Err(RuntimeError::NotFound(id.to_string()));
        };
        match (state.status.as_str(), state.pid()) {
            ("running" | "paused", Some(pid)) if alive(pid) => Ok(pid),
            _ => Err(RuntimeError::NotRunning(id.to_string())),
        }
    }

    fn netns(&self, id: &str) -> Result<PathBuf> {
        let file = self.netns_file(id);
        if file.exists() {
            return Ok(file);
        }
        self.init_pid(id).map(crate::net::netns_of)
    }

    fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let pid = match self.state(id)? {
            SandboxState::Missing | SandboxState::Stopped => return self.delete(id),
            SandboxState::Running { pid } => pid,
            SandboxState::Paused => {
                self.resume(id)?;
                match self.state(id)? {
                    SandboxState::Running { pid } => pid,
                    _ => return self.delete(id),
                }
            }
        };
        // The sandbox process (the Sentry) ends with the container's init.
        let started = Instant::now();
        let exit = ProcessExit::watch(pid);
        if !grace.is_zero() && self.run(&["kill", id, "TERM"]).is_ok() && exit.wait(grace) {
            let deleted = self.delete(id);
            tracing::debug!(sandbox = %id, elapsed = ?started.elapsed(), "gvisor sandbox stopped");
            return deleted;
        }
        if self.run(&["kill", id, "KILL"]).is_err() {
            exit.kill();
        }
        if !exit.wait(KILL_WAIT) {
            exit.kill();
            if !exit.wait(KILL_WAIT) {
                return Err(RuntimeError::StopTimeout {
                    id: id.to_string(),
                    waited: grace + KILL_WAIT * 2,
                });
            }
        }
        self.delete(id)
    }

    fn pause(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        match self.cgroups.set_frozen(id, true) {
            Ok(()) => Ok(()),
            Err(RuntimeError::NotFound(_)) => self.run(&["pause", id]).map(drop),
            Err(e) => Err(e),
        }
    }

    fn resume(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        match self.cgroups.set_frozen(id, false) {
            Ok(()) => Ok(()),
            Err(RuntimeError::NotFound(_)) => match self.state(id)? {
                SandboxState::Paused => self.run(&["resume", id]).map(drop),
                SandboxState::Missing => Err(RuntimeError::NotFound(id.to_string())),
                _ => Ok(()),
            },
            Err(e) => Err(e),
        }
    }

    fn resume_now(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        self.cgroups.thaw_now(id)
    }

    fn delete(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        if let Some(state) = self.runsc_state(id)? {
            let live = [state.pid(), state.gofer_pid]
                .into_iter()
                .flatten()
                .any(alive);
            if live {
                // Thaw first: a frozen Sentry cannot be told to go.
                let _ = self.cgroups.set_frozen(id, false);
                if let Err(e) = self.run(&["delete", "--force", id]) {
                    if self.knows(id) {
                        return Err(e);
                    }
                }
            } else {
                // Nothing of it runs: what `runsc delete` would do after
                // polling a second for the dead Sentry (its cgroups go
                // below), without the wait.
                for file in [
                    self.state_file(id),
                    self.state_root.join(format!("{id}_sandbox:{id}.lock")),
                ] {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(RuntimeError::io("remove", &file, e)),
                    }
                }
            }
        }
        if let Some(egress) = &self.egress {
            egress.detach(id)?;
        }
        remove_netns(&self.netns_file(id));
        self.remove_cgroups(id)
    }

    fn stats(&self, id: &str) -> Result<SandboxStats> {
        self.cgroups.stats(id)
    }
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> SandboxSpec {
        let dir = std::env::temp_dir();
        let agent = std::env::current_exe().expect("a test binary");
        SandboxSpec::new(
            "g1",
            dir.join("root"),
            dir.join("bundle"),
            dir.join("log"),
            agent,
        )
    }

    /// The bundle runsc gets: the agent told where to listen, no inherited
    /// descriptor, no seccomp profile (the Sentry is the wall), `/tmp` and
    /// the agent's directory bound, the namespace made for it joined.
    #[test]
    fn the_runc_bundle_is_turned_into_a_runsc_one() {
        let s = sandbox();
        let config = spec::build(
            &s,
            &spec::SpecOptions {
                cgroups_path: "/sprited/g1".into(),
                nofile: 1024,
                user_ns: None,
                init_loads_seccomp: false,
                net_ns: None,
            },
        )
        .expect("spec");
        let netns = Path::new("/run/x/netns/g1");
        let out = for_runsc(config, &s, Path::new("/data/g1/bundle/agent"), Some(netns))
            .expect("runsc spec");
        let v = serde_json::to_value(&out).expect("json");
        let args: Vec<&str> = v["process"]["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert_eq!(
            args,
            [
                "/.sprite/bin/sprite-agent",
                "--listen",
                "/.sprite/agent/agent.sock"
            ]
        );
        let env = v["process"]["env"].to_string();
        assert!(!env.contains("SPRITE_AGENT_FD"), "{env}");
        assert!(v["linux"]["seccomp"].is_null());
        let mounts = v["mounts"].as_array().expect("mounts");
        let dest = |d: &str| mounts.iter().find(|m| m["destination"] == d).cloned();
        assert_eq!(
            dest("/.sprite/agent").expect("agent dir")["source"],
            "/data/g1/bundle/agent"
        );
        assert_eq!(
            dest("/tmp").expect("tmp")["source"],
            s.rootfs.join("tmp").to_str().expect("utf-8")
        );
        assert!(dest("/sys/fs/cgroup").is_none() && dest("/dev/mqueue").is_none());
        let net: Vec<_> = v["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter(|n| n["type"] == "network")
            .collect();
        assert_eq!(net.len(), 1);
        assert_eq!(net[0]["path"], "/run/x/netns/g1");
        assert!(
            v["linux"]["uidMappings"].is_array(),
            "the user namespace stays"
        );
        assert_eq!(
            v["linux"]["resources"]["pids"]["limit"],
            i64::try_from(s.limits.pids).expect("small") + SENTRY_TASKS
        );
    }

    #[test]
    fn without_egress_there_is_no_network_namespace_to_join() {
        let s = sandbox();
        let config = spec::build(
            &s,
            &spec::SpecOptions {
                cgroups_path: "/sprited/g1".into(),
                nofile: 1024,
                user_ns: None,
                init_loads_seccomp: false,
                net_ns: None,
            },
        )
        .expect("spec");
        let out = for_runsc(config, &s, Path::new("/a"), None).expect("runsc spec");
        let v = serde_json::to_value(&out).expect("json");
        assert!(!v["linux"]["namespaces"].to_string().contains("network"));
    }
}
