//! The container driver: writes the bundle's config.json and makes each
//! container with `runc create` or, where the driver is told to and the
//! spec allows, with the sandbox's own agent binary carrying out the same
//! spec (see [`crate::native`]); either way the driver itself lets it run
//! (what `runc start` does: see [`Runc::commence`]), so nothing ties its
//! lifetime to the daemon: init's stdio are /dev/null and the log file,
//! its parent becomes the host's init (or subreaper) when the starter
//! exits.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::cgroup::{self, CgroupBackend};
use crate::driver::{Driver, EgressHook};
use crate::error::{Result, RuntimeError};
use crate::gate::Gate;
use crate::sandbox::{
    validate_id, IdMap, SandboxSpec, SandboxState, SandboxStats, AGENT_FD, GATE_FD, SECCOMP_FD,
};
use crate::userns::{Slots, UserNs, OWNER_BASE, RANGE_BASE, RANGE_SIZE};
use crate::{bundle, spec};

/// How long to wait for init to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long a stopped sandbox's cgroup may stay busy with the tasks that
/// died with its init before `runc delete` is left to remove it.
const CGROUP_RMDIR_WAIT: Duration = Duration::from_millis(500);
/// How long a prepared sandbox's init may take to exec once let run.
const COMMENCE_WAIT: Duration = Duration::from_secs(10);
/// How much of runc's output an error carries.
const ERROR_TAIL: usize = 4000;

/// Runs sandboxes with the runc CLI.
#[derive(Debug)]
pub struct Runc {
    state_root: PathBuf,
    runc_bin: PathBuf,
    cgroups: Box<dyn CgroupBackend>,
    nofile: u64,
    egress: Option<Arc<dyn EgressHook>>,
    /// Each running sandbox's slot: its user namespace's owner and, with
    /// `own_ranges`, its host ids (see [`crate::userns`]).
    slots: Slots,
    /// Whether each sandbox runs as a host id range of its own (the
    /// daemon turns it on where its store can show files under them).
    own_ranges: bool,
    /// Set once making a namespace of our own failed (a kernel that lets
    /// no unprivileged uid make one): runc makes them, owned by root.
    shared_owner: std::sync::atomic::AtomicBool,
    /// Whether sandboxes are started by the sandbox's own agent binary
    /// (see [`crate::native`]) where their spec allows, instead of by
    /// `runc create`.
    native: bool,
}

/// What `runc state` would say of a sandbox (the fields we use).
#[derive(Debug, PartialEq, Eq)]
struct RuncState {
    status: &'static str,
    pid: i64,
}

/// runc's own record of a sandbox (`<root>/<id>/state.json`, written
/// whole by rename): the fields its status is made from.
#[derive(Debug, Deserialize)]
struct StateFile {
    init_process_pid: i64,
    /// Init's start time in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`): a pid reused by another process has another.
    init_process_start: u64,
    /// The cgroup directories runc made for it, by controller.
    #[serde(default)]
    cgroup_paths: std::collections::BTreeMap<String, PathBuf>,
    /// Started without runc (see [`crate::native`]): runc's CLI cannot
    /// act on it.
    #[serde(default)]
    sprite_start: bool,
}

/// The state letter and start time of `/proc/<pid>/stat`'s text.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // The command name (field 2) may hold spaces and ')': the fields
    // after it start past the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // State is field 3; start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Process `pid`'s state letter and start time (`None`: no such process).
pub(crate) fn proc_stat(pid: impl std::fmt::Display) -> Option<(char, u64)> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .as_deref()
        .and_then(parse_stat)
}

/// Whether the process `pid` is the one that started at `start` and has
/// not exited (a zombie or a dead task has).
fn init_alive(pid: i64, start: u64) -> bool {
    pid > 0
        && proc_stat(pid)
            .is_some_and(|(state, started)| started == start && !matches!(state, 'Z' | 'X' | 'x'))
}

impl Runc {
    /// `state_root` is runc's `--root` (e.g. `<data>/runc`), kept across
    /// daemon restarts; `runc_bin` the runc executable.
    pub fn new(state_root: PathBuf, runc_bin: PathBuf) -> Self {
        Runc {
            state_root,
            runc_bin,
            cgroups: cgroup::backend(),
            nofile: spec::granted_nofile(),
            egress: None,
            slots: Slots::default(),
            own_ranges: false,
            shared_owner: std::sync::atomic::AtomicBool::new(false),
            native: false,
        }
    }

    /// Starts sandboxes without runc where their spec allows (see
    /// [`crate::native`]): ~20 ms less per start. runc still starts
    /// the rest, and every sandbox either started works with every call.
    pub fn with_native_start(mut self, on: bool) -> Self {
        self.native = on;
        self
    }

    /// Gives every sandbox outbound network (e.g. [`crate::net::Egress`]:
    /// pasta behind an nftables ruleset), attached right after `runc run`,
    /// while the new network namespace has only `lo`, and detached on
    /// every delete. Without it a sandbox has only `lo`.
    pub fn with_egress(mut self, egress: Arc<dyn EgressHook>) -> Self {
        self.egress = Some(egress);
        self
    }

    /// Gives each sandbox a host id range of its own (see
    /// [`Driver::ids_for`]); the caller mounts each root with its files
    /// shown under it.
    pub fn with_own_ranges(mut self, on: bool) -> Self {
        self.own_ranges = on;
        self
    }

    /// Replaces the detected cgroup backend.
    pub fn with_cgroups(mut self, backend: Box<dyn CgroupBackend>) -> Self {
        self.cgroups = backend;
        self
    }

    /// The sandbox's cgroup directories (for inspection and tests).
    pub fn cgroup_dirs(&self, id: &str) -> Result<Vec<PathBuf>> {
        self.cgroups.dirs(id)
    }

    /// Runs `args` inside the sandbox (`runc exec`) and collects its output.
    /// For tests and debugging; the daemon execs through the agent.
    pub fn exec(&self, id: &str, args: &[&str]) -> Result<Output> {
        validate_id(id)?;
        let mut cmd = self.command();
        cmd.arg("exec").arg(id).args(args);
        cmd.stdin(Stdio::null())
            .output()
            .map_err(|e| RuntimeError::io("spawn", &self.runc_bin, e))
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.runc_bin);
        cmd.arg("--root").arg(&self.state_root);
        cmd
    }

    /// Runs a runc subcommand that must succeed.
    fn run(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.command();
        cmd.args(args);
        run_checked(&mut cmd)
    }

    /// Whether runc has state for `id` (cheaper than spawning `runc state`).
    fn known(&self, id: &str) -> bool {
        self.state_root.join(id).join("state.json").exists()
    }

    fn force_delete(&self, id: &str) -> Result<()> {
        let file = match self.state_file(id) {
            Ok(file) => file,
            Err(e) => {
                tracing::debug!(sandbox = id, error = %e, "reading a sandbox's state; runc delete removes it");
                None
            }
        };
        if let Some(file) = file {
            // Init has exited: what `runc delete` does then, without
            // spawning runc (a stop's last step, on every restore and
            // eviction).
            match self.remove_stopped(id, &file) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(sandbox = id, error = %e, "removing a stopped sandbox's state; runc delete does it");
                }
            }
            if file.sprite_start {
                // What `runc delete --force` does: init killed (thawed
                // first: a frozen task does not die), then its cgroups and
                // state.
                let _ = self.cgroups.set_frozen(id, false);
                if let Ok(pid) = u32::try_from(file.init_process_pid) {
                    let exit = ProcessExit::watch(pid);
                    if init_alive(file.init_process_pid, file.init_process_start) {
                        exit.kill();
                    }
                    if !exit.wait(KILL_WAIT) {
                        return Err(RuntimeError::StopTimeout {
                            id: id.to_string(),
                            waited: KILL_WAIT,
                        });
                    }
                }
                return match self.remove_stopped(id, &file)? {
                    true => Ok(()),
                    false => Err(RuntimeError::NotRunning(id.to_string())),
                };
            }
        }
        match self.run(&["delete", "--force", id]) {
            Ok(_) => Ok(()),
            Err(_) if !self.known(id) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A user namespace of its own owner for the sandbox (see
    /// [`crate::userns`]); `None` without an id map, or where the kernel
    /// refuses (then runc makes one, as before, and says so once).
    /// With `with_net`, a network namespace it owns is made with it where
    /// the kernel allows (else none, and runc makes one).
    fn own_user_ns(&self, spec: &SandboxSpec, with_net: bool) -> Option<UserNs> {
        use std::sync::atomic::Ordering;
        let map = spec.id_map?;
        if self.shared_owner.load(Ordering::Relaxed) {
            return None;
        }
        let slot = self.slots.take(&spec.id, || self.running_slots())?;
        let owner = OWNER_BASE + slot;
        let made = if with_net {
            UserNs::create_with_net(owner, map).or_else(|e| {
                tracing::debug!(error = %e, "no network namespace made ahead; runc makes one");
                UserNs::create(owner, map)
            })
        } else {
            UserNs::create(owner, map)
        };
        match made {
            Ok(ns) => Some(ns),
            Err(e) => {
                self.shared_owner.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot make user namespaces owned by a uid of their own; sandboxes share host root's kernel counts (inotify, ...)");
                None
            }
        }
    }

    /// Every sandbox runc knows with a live init, and its slot.
    fn running_slots(&self) -> Vec<(String, u32)> {
        let Ok(dirs) = std::fs::read_dir(&self.state_root) else {
            return Vec::new();
        };
        dirs.flatten()
            .filter_map(|d| {
                let id = d.file_name().to_str()?.to_string();
                let state = std::fs::read(d.path().join("state.json")).ok()?;
                let state: serde_json::Value = serde_json::from_slice(&state).ok()?;
                let pid = u32::try_from(state["init_process_pid"].as_u64()?).ok()?;
                Some((id, crate::userns::slot_of_init(pid)?))
            })
            .collect()
    }

    /// `runc create`, lowered (see `crate::priority`): `Some(nice)` is the
    /// niceness its init is to be put back to.
    /// With `plan`, the sandbox's agent binary carries it out instead
    /// (see [`crate::native`]).
    fn spawn_create(
        &self,
        spec: &SandboxSpec,
        listener: OwnedFd,
        plan: Option<&sprite_start::Plan>,
        gate: Option<Gate>,
    ) -> Result<Option<i32>> {
        // The starter waits for the gate itself (at GATE_FD) where its
        // plan says so; anything else waits for it here, before it starts.
        let gate = match gate {
            Some(g) if plan.is_some_and(|p| p.gate_fd == Some(GATE_FD)) => Some(g.into_fd()),
            Some(g) => {
                g.wait(&spec.id)?;
                None
            }
            None => None,
        };
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
        // The compiled filter at SECCOMP_FD, for an init that loads it.
        let filter = if spec.init_loads_seccomp {
            Some(crate::seccomp::compiled(spec.io_uring)?)
        } else {
            None
        };

        let cmd = match plan {
            Some(plan) => {
                let path = spec.bundle_dir.join(sprite_start::PLAN_FILE);
                let text = serde_json::to_vec(plan).map_err(|source| RuntimeError::Json {
                    what: format!("the start plan of {}", spec.id),
                    source,
                })?;
                std::fs::write(&path, text).map_err(|e| RuntimeError::io("write", &path, e))?;
                let mut cmd = Command::new(&spec.agent_bin);
                cmd.arg(sprite_start::ARG).arg(path);
                cmd
            }
            None => {
                let mut cmd = self.command();
                // No session keyring per sandbox: every sprite's root is the
                // same host uid, and the kernel's per-uid key quota (200 by
                // default) would cap a host at 200 running sprites. The
                // keyring syscalls are denied by the seccomp filter, so
                // nothing inside can use one anyway (a native start makes
                // none).
                cmd.args(["create", "--no-new-keyring", "--bundle"])
                    .arg(&spec.bundle_dir)
                    .arg("--pid-file")
                    .arg(spec.bundle_dir.join(INIT_PID_FILE))
                    .args(["--preserve-fds", if filter.is_some() { "2" } else { "1" }])
                    .arg(&spec.id);
                cmd
            }
        };
        let null = std::fs::File::open("/dev/null")
            .map_err(|e| RuntimeError::io("open", Path::new("/dev/null"), e))?;
        let mut placed = vec![
            (null.as_fd(), 0),
            (log.as_fd(), 1),
            (log_err.as_fd(), 2),
            (listener.as_fd(), AGENT_FD),
        ];
        if let Some(f) = &filter {
            placed.push((f.as_fd(), SECCOMP_FD));
        }
        if let Some(g) = &gate {
            placed.push((g.as_fd(), GATE_FD));
        }
        // Init's RLIMIT_NOFILE, where it has a user namespace of its own,
        // is runc's: this process's own, which `spec::granted_nofile` set
        // to `self.nofile` when the driver was made.
        let args: Vec<&std::ffi::OsStr> = cmd.get_args().collect();
        let parent = crate::cgroup::ParentLock::shared()?;
        // Below the daemon's API (see `crate::priority`); init is put back
        // by the caller.
        let lowered = crate::priority::Lowered::by(crate::priority::START_NICE_STEPS);
        let status = crate::spawn::run_placed(cmd.get_program(), &args, &placed)
            .map_err(|e| RuntimeError::io("spawn", Path::new(cmd.get_program()), e));
        let restore_nice = lowered.map(|l| l.was());
        let status = status?;
        drop(parent);
        if status.success() {
            return Ok(restore_nice);
        }
        Err(RuntimeError::Runc {
            command: describe(&cmd),
            status: status.to_string(),
            output: read_from(&spec.log_path, log_start),
        })
    }
}

impl Runc {
    /// The plan that starts `spec` without runc, where the driver does so
    /// and `config` allows it (else runc starts it: the first reason is
    /// logged once).
    fn native_plan(
        &self,
        spec: &SandboxSpec,
        config: &oci_spec::runtime::Spec,
    ) -> Option<sprite_start::Plan> {
        if !self.native {
            return None;
        }
        let made = match self.cgroups.v1_hierarchies() {
            Some(hierarchies) => self
                .cgroups
                .cgroups_path(&spec.id)
                .map_err(|e| e.to_string())
                .and_then(|path| {
                    crate::native::plan(
                        &spec.id,
                        config,
                        &hierarchies,
                        &path,
                        self.state_root.join(&spec.id),
                        spec.bundle_dir.join(INIT_PID_FILE),
                    )
                }),
            None => Err("a host without cgroup v1 hierarchies".to_string()),
        };
        match made {
            Ok(plan) => Some(plan),
            Err(why) => {
                static SAID: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::info!(sandbox = %spec.id, %why, "runc starts sandboxes the native start cannot");
                }
                None
            }
        }
    }

    /// Removes a sandbox whose init has exited as `runc delete` does: its
    /// cgroup directories (the kernel may take a moment to let go of the
    /// tasks that died with init), then runc's state directory. False,
    /// with nothing done, if init is alive. `file` is its state file.
    fn remove_stopped(&self, id: &str, file: &StateFile) -> Result<bool> {
        if init_alive(file.init_process_pid, file.init_process_start) {
            return Ok(false);
        }
        let deadline = Instant::now() + CGROUP_RMDIR_WAIT;
        for cgroup in file.cgroup_paths.values() {
            loop {
                match std::fs::remove_dir(cgroup) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => return Err(RuntimeError::io("rmdir", cgroup, e)),
                }
            }
        }
        let dir = self.state_root.join(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(RuntimeError::io("remove", &dir, e)),
        }
    }

    /// Makes sandbox `spec` as [`Driver::start`] does (`runc create`,
    /// its network attached), all but the last step: its init waits,
    /// namespaces, mounts and cgroups made, to run the sandbox's process
    /// at [`Runc::commence`]. Until then nothing of the sprite's runs.
    pub fn prepare(&self, spec: &SandboxSpec, listener: OwnedFd) -> Result<()> {
        self.prepare_gated(spec, listener, None)
    }

    /// [`Driver::start`]: prepared, then let run; a sandbox that cannot be
    /// let run is removed.
    fn prepare_and_commence(
        &self,
        spec: &SandboxSpec,
        listener: OwnedFd,
        gate: Option<Gate>,
    ) -> Result<()> {
        self.prepare_gated(spec, listener, gate)?;
        if let Err(e) = self.commence(&spec.id) {
            let _ = self.delete(&spec.id);
            return Err(e);
        }
        Ok(())
    }

    /// [`Runc::prepare`] begun while `spec.rootfs` is still being mounted,
    /// where `gate` is given (see [`crate::gate`]): a native start waits
    /// for it in its starter, just before anything enters the sandbox's
    /// namespaces; a start by runc waits for it before runc runs.
    fn prepare_gated(
        &self,
        spec: &SandboxSpec,
        listener: OwnedFd,
        gate: Option<Gate>,
    ) -> Result<()> {
        validate_id(&spec.id)?;
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
        // On the kernel datapath the network namespace is made with the
        // user namespace, and attached while runc runs (another core, its
        // own processes): the start waits for the longer of the two, not
        // both.
        let early = self.egress.as_ref().filter(|e| e.attaches_prepared());
        let user_ns = self.own_user_ns(spec, early.is_some());
        let net_ns = user_ns.as_ref().and_then(UserNs::net_path);
        let config = spec::build(
            spec,
            &spec::SpecOptions {
                cgroups_path: self.cgroups.cgroups_path(&spec.id)?,
                nofile: self.nofile,
                user_ns: user_ns.as_ref().map(UserNs::path),
                init_loads_seccomp: spec.init_loads_seccomp,
                net_ns: net_ns.clone(),
            },
        )?;
        bundle::write_config(&spec.bundle_dir, &config)?;
        crate::devices::make_nodes(spec)?;
        let gated = gate.is_some();
        let mut plan = self.native_plan(spec, &config);
        if let (Some(plan), Some(_)) = (plan.as_mut(), &gate) {
            plan.gate_fd = Some(GATE_FD);
        }
        let started = Instant::now();
        let (ran, attached) = std::thread::scope(|scope| {
            let attaching = match (early, &net_ns) {
                (Some(egress), Some(path)) => Some(scope.spawn(move || {
                    // Beside a root still being mounted, below it: the
                    // mount is what the start waits for first.
                    let _lowered = gated
                        .then(|| crate::priority::Lowered::by(crate::priority::START_NICE_STEPS));
                    egress.attach_prepared(&spec.id, path)
                })),
                _ => None,
            };
            let ran = self.spawn_create(spec, listener, plan.as_ref(), gate);
            let attached = attaching.map(|a| {
                a.join().unwrap_or_else(|_| {
                    Err(RuntimeError::Network(
                        "the attaching thread panicked".into(),
                    ))
                })
            });
            (ran, attached)
        });
        // Joined by init (or never to be): ours can close.
        drop(user_ns);
        if ran.is_err() {
            self.slots.release(&spec.id);
            if let (Some(egress), Some(Ok(()))) = (early, &attached) {
                let _ = egress.detach(&spec.id);
            }
        }
        let restore_nice = ran?;
        tracing::debug!(sandbox = %spec.id, elapsed = ?started.elapsed(), native = plan.is_some(), "runc create");
        let init = protect_init(&spec.bundle_dir.join(INIT_PID_FILE));
        // Init inherited runc's lowered priority: back to the daemon's
        // before anything of the sprite's runs (it waits to be let run).
        let put_back = match (init, restore_nice) {
            (Some(pid), Some(nice)) => crate::priority::set_process(pid, nice).map_err(|e| {
                RuntimeError::io("setpriority", Path::new(&format!("/proc/{pid}")), e)
            }),
            (None, Some(_)) => Err(RuntimeError::NotRunning(spec.id.clone())),
            (_, None) => Ok(()),
        };
        if let Err(e) = put_back {
            let _ = self.delete(&spec.id);
            return Err(e);
        }
        let attached = match (attached, &self.egress) {
            (Some(done), _) => done,
            (None, Some(egress)) => match init {
                Some(pid) => egress.attach(&spec.id, pid),
                None => Err(RuntimeError::Network("no init pid to attach to".into())),
            },
            (None, None) => Ok(()),
        };
        if let Err(e) = attached {
            let _ = self.delete(&spec.id);
            return Err(e);
        }
        Ok(())
    }

    /// Lets a [`Runc::prepare`]d sandbox's init run its process, as
    /// `runc start` does but without a process of its own: init waits in
    /// its open of the exec fifo; our open lets it write one byte and exec,
    /// which closes its end (close-on-exec). Returns once it has exec'd,
    /// then removes the fifo (runc's sign that the sandbox is running).
    pub fn commence(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        let fifo = self.state_root.join(id).join("exec.fifo");
        let pid = match self.runc_state(id)? {
            Some(RuncState {
                status: "created",
                pid,
            }) => pid,
            Some(RuncState {
                status: "running" | "paused",
                ..
            }) => return Err(RuntimeError::AlreadyRunning(id.to_string())),
            Some(_) | None => return Err(RuntimeError::NotFound(id.to_string())),
        };
        // Not blocking: an init that died before its open of the other end
        // would leave a blocking open waiting for ever.
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|e| RuntimeError::io("open", &fifo, e))?;
        let deadline = Instant::now() + COMMENCE_WAIT;
        let mut got = Vec::new();
        loop {
            let mut buf = [0u8; 16];
            match file.read(&mut buf) {
                // The writer closed: init has exec'd (or died).
                Ok(0) if !got.is_empty() => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(RuntimeError::io("read", &fifo, e)),
            }
            // Nothing yet (or no writer yet): wait a little, unless init is gone.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || (got.is_empty() && !self.init_waits(id, pid)) {
                return Err(RuntimeError::NotRunning(id.to_string()));
            }
            let mut fds = [nix::poll::PollFd::new(
                file.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let slice =
                nix::poll::PollTimeout::from(u16::try_from(left.as_millis().min(50)).unwrap_or(50));
            match nix::poll::poll(&mut fds, slice) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(RuntimeError::io("poll", &fifo, e.into())),
            }
        }
        match std::fs::remove_file(&fifo) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::io("remove", &fifo, e)),
        }
        // Exec'd, or died on the way: the state says which.
        match self.state(id)? {
            SandboxState::Running { .. } | SandboxState::Paused => Ok(()),
            _ => Err(RuntimeError::NotRunning(id.to_string())),
        }
    }

    /// Whether init `pid` of sandbox `id` is still there, waiting to be
    /// let run.
    fn init_waits(&self, id: &str, pid: i64) -> bool {
        matches!(
            self.runc_state(id),
            Ok(Some(RuncState { status: "created", pid: p })) if p == pid
        )
    }

    /// runc's state file of `id` (`None` when runc does not know it).
    fn state_file(&self, id: &str) -> Result<Option<StateFile>> {
        validate_id(id)?;
        let path = self.state_root.join(id).join("state.json");
        match std::fs::read(&path) {
            Ok(text) => {
                serde_json::from_slice(&text)
                    .map(Some)
                    .map_err(|source| RuntimeError::Json {
                        what: format!("runc's state of {id}"),
                        source,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RuntimeError::io("read", &path, e)),
        }
    }

    /// What `runc state` says of `id` (`None` when runc does not know
    /// it), made as runc makes it, from its state file, `/proc` and the
    /// freezer, without spawning runc (~10 ms of a process on every start,
    /// stop and restart's look at each sandbox).
    fn runc_state(&self, id: &str) -> Result<Option<RuncState>> {
        let Some(file) = self.state_file(id)? else {
            return Ok(None);
        };
        if !init_alive(file.init_process_pid, file.init_process_start) {
            return Ok(Some(RuncState {
                status: "stopped",
                pid: 0,
            }));
        }
        // runc: frozen first; then "created" while init waits on the
        // exec fifo (runc removes it once init has exec'd), else running.
        let status = if self.cgroups.is_frozen(id)? {
            "paused"
        } else if self.state_root.join(id).join("exec.fifo").exists() {
            "created"
        } else {
            "running"
        };
        Ok(Some(RuncState {
            status,
            pid: file.init_process_pid,
        }))
    }
}

impl Driver for Runc {
    fn ids_for(&self, id: &str, shared: IdMap) -> IdMap {
        if !self.own_ranges {
            return shared;
        }
        match self.slots.take(id, || self.running_slots()) {
            Some(slot) => IdMap {
                host_base: RANGE_BASE + slot * RANGE_SIZE,
                size: RANGE_SIZE.min(shared.size),
            },
            None => shared,
        }
    }

    fn renames(&self) -> bool {
        true
    }

    fn set_hostname(&self, id: &str, hostname: &str) -> Result<()> {
        let pid = match self.runc_state(id)? {
            Some(RuncState {
                status: "created" | "running",
                pid,
            }) => pid,
            Some(_) => return Err(RuntimeError::NotRunning(id.to_string())),
            None => return Err(RuntimeError::NotFound(id.to_string())),
        };
        let host_pid = u32::try_from(pid).map_err(|_| RuntimeError::NotRunning(id.to_string()))?;
        let path = format!("/proc/{host_pid}/ns/uts");
        let ns = std::fs::File::open(&path).map_err(|e| RuntimeError::io("open", &path, e))?;
        // Still the init it was when looked at (not a pid used again since):
        // then the namespace opened is the sandbox's.
        if !matches!(
            self.runc_state(id)?,
            Some(RuncState { status: "created" | "running", pid: p }) if p == pid
        ) {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        set_hostname_in(ns, hostname)
    }

    fn start(&self, spec: &SandboxSpec, listener: OwnedFd) -> Result<()> {
        self.prepare_and_commence(spec, listener, None)
    }

    fn start_gated(&self, spec: &SandboxSpec, listener: OwnedFd, gate: Gate) -> Result<()> {
        self.prepare_and_commence(spec, listener, Some(gate))
    }

    fn state(&self, id: &str) -> Result<SandboxState> {
        let Some(state) = self.runc_state(id)? else {
            return Ok(SandboxState::Missing);
        };
        Ok(match state.status {
            "running" => match u32::try_from(state.pid) {
                Ok(pid) if pid > 0 => SandboxState::Running { pid },
                _ => SandboxState::Stopped,
            },
            "paused" => SandboxState::Paused,
            // "created" (init waiting to exec) happens only when runc died
            // mid-start; like "stopped", it is removed by the next start/stop.
            _ => SandboxState::Stopped,
        })
    }

    fn init_pid(&self, id: &str) -> Result<u32> {
        let Some(state) = self.runc_state(id)? else {
            return Err(RuntimeError::NotFound(id.to_string()));
        };
        // runc reports init's pid for a paused container too.
        match (state.status, u32::try_from(state.pid)) {
            ("running" | "paused", Ok(pid)) if pid > 0 => Ok(pid),
            _ => Err(RuntimeError::NotRunning(id.to_string())),
        }
    }

    fn netns(&self, id: &str) -> Result<PathBuf> {
        // runc puts init in the sandbox's network namespace.
        self.init_pid(id).map(crate::net::netns_of)
    }

    fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let pid = match self.state(id)? {
            SandboxState::Missing => return self.delete(id),
            SandboxState::Stopped => return self.delete(id),
            SandboxState::Running { pid } => pid,
            SandboxState::Paused => {
                // Frozen tasks do not act on signals until thawed.
                self.resume(id)?;
                match self.state(id)? {
                    SandboxState::Running { pid } => pid,
                    _ => return self.delete(id),
                }
            }
        };
        let exit = ProcessExit::watch(pid);
        if grace.is_zero() {
            // No grace: SIGKILL init straight through its pidfd (race-free,
            // and no runc process to spawn); the kernel ends the rest of
            // the pid namespace with it.
            if !exit.kill() {
                let _ = self.run(&["kill", id, "KILL"]);
            }
        } else if exit.signal(libc::SIGTERM) && exit.wait(grace) {
            return self.delete(id);
        } else if !exit.kill() {
            let _ = self.run(&["kill", id, "KILL"]);
        }
        if !exit.wait(KILL_WAIT) {
            return Err(RuntimeError::StopTimeout {
                id: id.to_string(),
                waited: grace + KILL_WAIT,
            });
        }
        self.delete(id)
    }

    fn pause(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        // The cgroup freezer directly: what `runc pause` does, without
        // spawning runc (which also reads "paused" back from the freezer).
        match self.cgroups.set_frozen(id, true) {
            Ok(()) => Ok(()),
            Err(RuntimeError::NotFound(_)) => match self.state(id)? {
                SandboxState::Missing => Err(RuntimeError::NotFound(id.to_string())),
                SandboxState::Paused => Ok(()),
                _ => self.run(&["pause", id]).map(drop),
            },
            Err(e) => Err(e),
        }
    }

    fn resume(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        match self.cgroups.set_frozen(id, false) {
            Ok(()) => Ok(()),
            Err(RuntimeError::NotFound(_)) => match self.state(id)? {
                SandboxState::Missing => Err(RuntimeError::NotFound(id.to_string())),
                SandboxState::Paused => self.run(&["resume", id]).map(drop),
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
        if self.known(id) {
            // Handles running and paused containers alike (kill, thaw, reap).
            self.force_delete(id)?;
        }
        self.slots.release(id);
        if let Some(egress) = &self.egress {
            egress.detach(id)?;
        }
        self.cgroups.remove(id)
    }

    fn stats(&self, id: &str) -> Result<SandboxStats> {
        self.cgroups.stats(id)
    }
}

/// Waits for a process (not our child) to exit, through a pidfd.
pub(crate) struct ProcessExit {
    pid: u32,
    pidfd: Option<OwnedFd>,
}

impl ProcessExit {
    pub(crate) fn watch(pid: u32) -> Self {
        let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
            return ProcessExit { pid, pidfd: None };
        };
        // SAFETY: pidfd_open(pid, flags) reads no memory of ours; it returns a
        // new file descriptor or -1.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0) };
        let pidfd = i32::try_from(ret).ok().filter(|fd| *fd >= 0).map(|fd| {
            // SAFETY: `fd` was just returned by pidfd_open and is owned by no one else.
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
        ProcessExit { pid, pidfd }
    }

    /// SIGKILL through the pidfd; false when there is no pidfd to use.
    pub(crate) fn kill(&self) -> bool {
        self.signal(libc::SIGKILL)
    }

    /// `sig` through the pidfd (as `runc kill` sends it, to init only);
    /// false when there is no pidfd to use.
    pub(crate) fn signal(&self, sig: libc::c_int) -> bool {
        let Some(fd) = &self.pidfd else { return false };
        // SAFETY: pidfd_send_signal(fd, sig, info = NULL, flags = 0) reads no
        // memory of ours; `fd` is an open pidfd.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        ret == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }

    /// True once the process has exited (or never existed), false on timeout.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let Some(fd) = &self.pidfd else {
            return self.poll_proc(timeout);
        };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Ok(n) if n > 0 => return true,
                Ok(_) if left.is_zero() => return false,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return self.poll_proc(left),
            }
        }
    }

    /// Fallback without pidfd: watch /proc (a zombie counts as exited).
    fn poll_proc(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let gone = proc_stat(self.pid).is_none_or(|(state, _)| matches!(state, 'Z' | 'X'));
            if gone {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs `cmd` (a runtime's CLI) with no stdin; its output if it
/// succeeded, else what it said as a [`RuntimeError::Runc`].
pub(crate) fn run_checked(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null());
    let output = cmd
        .output()
        .map_err(|e| RuntimeError::io("spawn", cmd.get_program(), e))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(RuntimeError::Runc {
            command: describe(cmd),
            status: output.status.to_string(),
            output: tail(&[&output.stderr[..], &output.stdout[..]].concat()),
        })
    }
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub(crate) fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(ERROR_TAIL);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// What was appended to the log since `offset` (runc's error message).
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    let read = std::fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.take(1 << 20).read_to_end(&mut buf)
    });
    match read {
        Ok(_) => tail(&buf),
        Err(e) => format!("(log {} unreadable: {e})", path.display()),
    }
}

/// Where `runc run` writes the pid of the sandbox's init.
const INIT_PID_FILE: &str = "init.pid";

/// OOM score of the agent (the sandbox's PID 1): far below its commands (the
/// agent starts them at 0), so that a memory hog, not the agent, is what the
/// OOM killer picks. Not -1000: it can still be killed as a last resort.
pub const AGENT_OOM_SCORE_ADJ: i32 = -998;

/// Lower init's OOM score from the host side: runc 1.1 would write it from
/// inside the user namespace, where lowering it is not allowed.
/// Returns init's pid.
fn protect_init(pid_file: &Path) -> Option<u32> {
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let Some(pid) = pid else {
        tracing::warn!(file = %pid_file.display(), "no init pid; OOM score left as is");
        return None;
    };
    let path = format!("/proc/{pid}/oom_score_adj");
    if let Err(e) = std::fs::write(&path, format!("{AGENT_OOM_SCORE_ADJ}\n")) {
        // Without CAP_SYS_RESOURCE (a restricted host) this fails every
        // time: say so once.
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(%path, error = %e, "cannot lower the agent's OOM score; agents stay at 0");
        }
    }
    Some(pid)
}

/// A sandbox's log past this size is moved aside (to `<log>.1`, replacing
/// the one before) when the sandbox starts: the agent stops writing at its
/// own cap, so a sprite's logs take at most about twice this on the host.
pub const LOG_ROTATE_AT: u64 = 1 << 20;

pub(crate) fn rotate_log(path: &std::path::Path) {
    let big = std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_AT);
    if big {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        if let Err(e) = std::fs::rename(path, &old) {
            tracing::warn!(path = %path.display(), error = %e, "rotating the sandbox log");
        }
    }
}

/// Sets the hostname of UTS namespace `ns` from a thread that joins it
/// and ends (a thread's namespaces are its own; the daemon's stay).
fn set_hostname_in(ns: std::fs::File, hostname: &str) -> Result<()> {
    let hostname = hostname.to_string();
    std::thread::spawn(move || -> Result<()> {
        let fail = |what: &str, e: nix::errno::Errno| RuntimeError::Io {
            op: "setns",
            path: PathBuf::from(format!("{what} of the sandbox's UTS namespace")),
            source: e.into(),
        };
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWUTS)
            .map_err(|e| fail("joining", e))?;
        nix::unistd::sethostname(&hostname).map_err(|e| fail("the hostname", e))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(RuntimeError::InvalidSpec(
            "the thread setting the hostname panicked".into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_state_and_start_time_of_a_stat_line() {
        // A command name with spaces and a ')' of its own.
        let line =
            "4242 (a b) c) S 1 4242 4242 0 -1 4194560 101 0 0 0 3 4 0 0 20 0 1 0 987654 2 3 4";
        assert_eq!(parse_stat(line), Some(('S', 987_654)));
        assert_eq!(parse_stat("4242 (x) Z 1 2"), None, "too short");
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_live_init_is_the_process_that_started_then() {
        let me = i64::from(std::process::id());
        let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
        let (_, start) = parse_stat(&stat).expect("parse our own stat");
        assert!(init_alive(me, start));
        // The same pid with another start time is another process.
        assert!(!init_alive(me, start + 1));
        assert!(!init_alive(0, start));
        assert!(!init_alive(-1, start));
        // An exited child, not yet reaped: a zombie is not alive.
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = i64::from(child.id());
        let start = loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("child stat");
            let (state, start) = parse_stat(&stat).expect("parse");
            if state == 'Z' {
                break start;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(!init_alive(pid, start));
        child.wait().expect("reap");
        assert!(!init_alive(pid, start));
    }
}
