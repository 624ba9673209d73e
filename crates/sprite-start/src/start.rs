//! Carrying out a [`Plan`]: three processes, as runc's bootstrap has.
//!
//! - **The starter** (this process, host root): makes the state
//!   directory, the exec fifo and the sandbox's cgroups, then forks:
//! - **the joiner**, which the starter puts in the cgroups before letting it
//!   go on (so everything below starts in them): it joins the user and
//!   network namespaces, becomes root there, unshares mount, UTS, IPC,
//!   cgroup and pid namespaces, forks init and exits;
//! - **init**, pid 1 of the new pid namespace: mounts the root's
//!   filesystems, `pivot_root`s, hides and locks paths, sets the host
//!   name, rlimits and capabilities, tells the starter it is ready, then
//!   waits in its open of the exec fifo for the daemon's read (the
//!   daemon's `commence`), and execs the sandbox's program.
//!
//! The starter writes `state.json` and the pid file once init is ready,
//! and exits; a failure anywhere kills what was started, removes what was
//! made and exits non-zero with what failed on stderr.
//!
//! Each process here is single-threaded: forking is safe, and nothing
//! needs to be async-signal-safe.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

use crate::plan::{Mount, MountKind, Plan};

/// The state file's name in the state directory (runc's name: the
/// daemon reads both the same way).
pub const STATE_FILE: &str = "state.json";
const FIFO: &str = "exec.fifo";
/// How long a cgroup may stay busy with a killed init's tasks.
const RMDIR_WAIT: Duration = Duration::from_millis(500);

/// What `state.json` holds: the fields of runc's that the daemon reads,
/// and a mark that this crate made it (runc's CLI cannot act on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    pub init_process_pid: i64,
    /// Field 22 of `/proc/<pid>/stat`: with the pid, names the process.
    pub init_process_start: u64,
    pub cgroup_paths: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub sprite_start: bool,
}

type Result<T> = std::result::Result<T, String>;

fn os_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// `-1` from a system call as the error it set.
fn check(ret: libc::c_long, what: impl std::fmt::Display) -> Result<libc::c_long> {
    if ret < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}

fn cstr(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| format!("{} holds a NUL byte", s.to_string_lossy()))
}

/// Runs the plan in `args` (its path): `sprite-agent __sprite-start
/// <bundle>/start.json`. Returns the process's exit code.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    let Some(path) = args.first() else {
        let _ = writeln!(std::io::stderr(), "usage: sprite-agent {} PLAN", crate::ARG);
        return 2;
    };
    let plan = std::fs::read(path)
        .map_err(|e| format!("reading {}: {e}", Path::new(path).display()))
        .and_then(|b| serde_json::from_slice::<Plan>(&b).map_err(|e| format!("the plan: {e}")));
    let result =
        plan.and_then(|plan| start(&plan).map_err(|e| format!("sandbox {}: {e}", plan.id)));
    match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "sprite-start: {e}");
            1
        }
    }
}

fn start(plan: &Plan) -> Result<()> {
    // Taken first, so that no error path leaves it open.
    let gate = plan.gate_fd.map(take_gate).transpose()?;
    std::fs::DirBuilder::new()
        .mode(0o711)
        .recursive(true)
        .create(&plan.state_dir)
        .map_err(os_err(format!("mkdir {}", plan.state_dir.display())))?;
    let fifo = plan.state_dir.join(FIFO);
    // The daemon starts a sandbox only when it has no state file: a fifo
    // here is what a start cut short left (see `end_leftovers`).
    match std::fs::remove_file(&fifo) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("removing {}: {e}", fifo.display()))
        }
        _ => {}
    }
    let fifo_c = cstr(fifo.as_os_str())?;
    check(
        // SAFETY: a NUL-terminated path; mkfifo reads only it.
        unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o622) }.into(),
        format!("mkfifo {}", fifo.display()),
    )?;
    // mkfifo's mode is masked by the umask: init (an unmapped uid to the
    // fifo's owner) opens it for writing as "other".
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622))
        .map_err(os_err(format!("chmod {}", fifo.display())))?;
    let mut made = Made {
        plan,
        cgroups: Vec::new(),
        init: None,
    };
    match start_made(plan, &fifo, gate, &mut made) {
        Ok(()) => Ok(()),
        Err(e) => {
            made.undo();
            Err(e)
        }
    }
}

/// What a failed start removes again.
struct Made<'a> {
    plan: &'a Plan,
    cgroups: Vec<PathBuf>,
    init: Option<libc::pid_t>,
}

impl Made<'_> {
    fn undo(&self) {
        if let Some(pid) = self.init {
            // SAFETY: kill reads no memory; pid is init, which the joiner
            // made for us and which no one has reaped (it is not our child
            // and its parent, the joiner, has exited: the reaper waits for
            // it to die before the pid is free).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + RMDIR_WAIT;
        for dir in self.cgroups.iter().rev() {
            loop {
                match std::fs::remove_dir(dir) {
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    _ => break,
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.plan.state_dir);
    }
}

/// The inherited gate descriptor, owned here and closed on exec (init
/// never sees it: the joiner closes it before init is forked).
fn take_gate(fd: RawFd) -> Result<File> {
    check(
        // SAFETY: F_SETFD takes an integer and reads no memory; it fails
        // (EBADF) where `fd` is not open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }.into(),
        format!("the gate descriptor {fd}"),
    )?;
    // SAFETY: the daemon placed the gate at `fd` for this process (open,
    // as the call above showed), and nothing else here owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Waits for the daemon's byte on `gate`: its root is mounted.
fn pass_gate(mut gate: File) -> Result<()> {
    let mut byte = [0u8; 1];
    loop {
        match gate.read(&mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err("the daemon could not mount the sandbox's root".into()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("waiting for the sandbox's root: {e}")),
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

fn open_ns(path: &Path) -> Result<File> {
    File::open(path).map_err(os_err(format!("opening namespace {}", path.display())))
}

fn start_made(plan: &Plan, fifo: &Path, gate: Option<File>, made: &mut Made<'_>) -> Result<()> {
    // Init opens this (as /proc/self/fd/N) once its root is in place.
    let fifo_path = open_path(fifo)?;
    for cgroup in &plan.cgroups {
        make_cgroup(&cgroup.dir, &mut made.cgroups)?;
        end_leftovers(&cgroup.dir)?;
        for (file, value) in &cgroup.settings {
            let path = cgroup.dir.join(file);
            std::fs::write(&path, value)
                .map_err(os_err(format!("writing {value:?} to {}", path.display())))?;
        }
    }
    // Bind sources reach init through this (see `send_sources`).
    let (sources_here, sources_init) = socketpair()?;
    let user_ns = open_ns(&plan.user_ns)?;
    let net_ns = plan.net_ns.as_deref().map(open_ns).transpose()?;
    let (go_r, go_w) = pipe()?;
    let (report_r, report_w) = pipe()?;

    // SAFETY: this process has one thread; the child runs only this
    // crate's code and ends with _exit.
    let joiner = unsafe { libc::fork() };
    if joiner < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if joiner == 0 {
        drop(gate);
        drop(go_w);
        drop(report_r);
        drop(sources_here);
        let code = joiner_main(
            plan,
            &sources_init,
            File::from(go_r),
            File::from(report_w),
            &user_ns,
            net_ns.as_ref(),
            &fifo_path,
        );
        // SAFETY: ends this child without running the parent's exit hooks.
        unsafe { libc::_exit(code) };
    }
    drop(go_r);
    drop(report_w);
    drop(sources_init);
    drop(user_ns);
    drop(net_ns);
    let outcome = (|| -> Result<String> {
        for cgroup in &plan.cgroups {
            let procs = cgroup.dir.join("cgroup.procs");
            std::fs::write(&procs, joiner.to_string())
                .map_err(os_err(format!("joining {}", procs.display())))?;
        }
        // Everything above ran while the daemon mounted the root; from
        // here on it is needed. A failure drops `go_w` with this closure:
        // the joiner ends (reaped below) and the cgroups can go.
        if let Some(gate) = gate {
            pass_gate(gate)?;
        }
        File::from(go_w)
            .write_all(b"g")
            .map_err(os_err("letting the joiner go on"))?;
        let mut report = std::io::BufReader::new(File::from(report_r));
        let mut said = String::new();
        report
            .read_line(&mut said)
            .map_err(os_err("reading init's report"))?;
        if let Some(pid) = said.trim_end().strip_prefix("pid ") {
            let pid = pid.parse().map_err(|_| format!("init's pid {pid:?}"))?;
            made.init = Some(pid);
            send_sources(plan, pid, &sources_here)?;
        }
        report
            .read_to_string(&mut said)
            .map_err(os_err("reading init's report"))?;
        Ok(said)
    })();
    drop(sources_here);
    let mut status = 0;
    // SAFETY: waits for our own child, writing its status into our int.
    unsafe { libc::waitpid(joiner, &mut status, 0) };
    let said = outcome?;
    let mut ready = false;
    let mut error = None;
    for line in said.lines() {
        if line == "ready" {
            ready = true;
        } else if let Some(e) = line.strip_prefix("error ") {
            error = Some(e.to_string());
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    let Some(pid) = made.init.filter(|_| ready) else {
        return Err(format!(
            "init ended before it was ready (joiner status {status:#x})"
        ));
    };
    let start = proc_start(pid).ok_or_else(|| format!("init {pid} is gone"))?;
    let state = StateFile {
        init_process_pid: pid.into(),
        init_process_start: start,
        cgroup_paths: plan
            .cgroups
            .iter()
            .map(|c| (c.controllers.clone(), c.dir.clone()))
            .collect(),
        sprite_start: true,
    };
    let text = serde_json::to_vec(&state).map_err(|e| format!("state: {e}"))?;
    write_replacing(&plan.state_dir.join(STATE_FILE), &text)?;
    write_replacing(&plan.pid_file, pid.to_string().as_bytes())?;
    Ok(())
}

fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))
}

/// The most bind mounts a plan may have (all their sources go in one
/// message; the kernel takes at most 253 descriptors in one).
const MAX_BINDS: usize = 200;

fn bind_sources(plan: &Plan) -> Vec<&Path> {
    plan.mounts
        .iter()
        .filter_map(|m| match &m.kind {
            MountKind::Bind { source, .. } => Some(source.as_path()),
            _ => None,
        })
        .collect()
}

/// Opens each bind source in init's mount namespace and sends them to it.
///
/// Init cannot open them itself: it is root of the sandbox's user
/// namespace, an unmapped uid to the host's files, and may not walk to
/// them (a bundle directory is 0700). A descriptor opened here, in the
/// host's mount namespace, cannot be bound there (the kernel binds only
/// mounts of the caller's namespace). So, as runc does, the starter joins
/// init's mount namespace (a copy of the host's: the same paths), opens
/// them there as host root, and goes back.
fn send_sources(plan: &Plan, init: libc::pid_t, sock: &OwnedFd) -> Result<()> {
    let sources = bind_sources(plan);
    if sources.len() > MAX_BINDS {
        return Err(format!(
            "{} bind mounts, more than {MAX_BINDS}",
            sources.len()
        ));
    }
    let own = File::open("/proc/self/ns/mnt").map_err(os_err("opening our mount namespace"))?;
    let theirs = File::open(format!("/proc/{init}/ns/mnt"))
        .map_err(os_err("opening init's mount namespace"))?;
    setns(&theirs, libc::CLONE_NEWNS, "init's mount")?;
    let opened = sources
        .iter()
        .map(|s| open_path(s))
        .collect::<Result<Vec<_>>>();
    setns(&own, libc::CLONE_NEWNS, "our own mount")?;
    let opened = opened?;
    // One byte per source: whether it is a directory.
    let mut kinds = vec![b's'];
    for fd in &opened {
        let mode = nix::sys::stat::fstat(fd.as_raw_fd())
            .map_err(|e| format!("fstat a bind source: {e}"))?
            .st_mode;
        kinds.push(u8::from(mode & libc::S_IFMT == libc::S_IFDIR));
    }
    let raw: Vec<RawFd> = opened.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(&kinds)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
    .map_err(|e| format!("sending the bind sources: {e}"))
}

/// What [`send_sources`] sent: each bind source and whether it is a
/// directory, in the plan's order.
fn receive_sources(plan: &Plan, sock: &OwnedFd) -> Result<Vec<(OwnedFd, bool)>> {
    let want = bind_sources(plan).len();
    let mut kinds = vec![0u8; want + 1];
    let mut control = nix::cmsg_space!([RawFd; MAX_BINDS]);
    let mut iov = [std::io::IoSliceMut::new(&mut kinds)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receiving the bind sources: {e}"))?;
    if msg.bytes == 0 {
        return Err("the starter sent no bind sources".into());
    }
    let received = msg.bytes;
    let mut fds = Vec::new();
    for cmsg in msg
        .cmsgs()
        .map_err(|e| format!("receiving the bind sources: {e}"))?
    {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel just installed these descriptors in this
            // process for us; nothing else owns them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if fds.len() != want || received != want + 1 {
        return Err(format!("{} bind sources came, {want} expected", fds.len()));
    }
    Ok(fds
        .into_iter()
        .zip(kinds[1..].iter())
        .map(|(fd, k)| (fd, *k == 1))
        .collect())
}

/// Writes `path` whole or not at all (a reader never sees half of it).
fn write_replacing(path: &Path, text: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).map_err(os_err(format!("writing {}", path.display())))?;
    std::fs::rename(&tmp, path).map_err(os_err(format!("renaming to {}", path.display())))
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks).
fn proc_start(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Makes `dir` and the missing directories above it; a new cpuset
/// directory gets its parent's cpus and memory nodes (it starts empty,
/// and a task cannot join it so).
fn make_cgroup(dir: &Path, made: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        if let Some(parent) = dir.parent() {
            make_cgroup(parent, made)?;
        }
        match std::fs::create_dir(dir) {
            Ok(()) => made.push(dir.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("mkdir {}: {e}", dir.display())),
        }
    }
    fill_cpuset(dir)
}

/// A v1 cpuset cgroup with no CPUs or memory nodes of its own takes no
/// task (joining it fails with ENOSPC): each empty one gets its parent's,
/// the parent's first. Whether the directory is new or not: another start
/// may have made the shared parent a moment ago and not filled it yet.
/// Nothing for a hierarchy without these files.
fn fill_cpuset(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let path = dir.join(file);
        let Ok(now) = std::fs::read_to_string(&path) else {
            continue;
        };
        if !now.trim().is_empty() {
            continue;
        }
        let Some(parent) = dir.parent() else {
            continue;
        };
        fill_cpuset(parent)?;
        let from = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
        std::fs::write(&path, from.trim())
            .map_err(os_err(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// How long a leftover's tasks may take to die.
const LEFTOVER_WAIT: Duration = Duration::from_secs(2);

/// Kills what is left in a cgroup of the sandbox's from a start that was
/// cut short (its starter killed with the daemon, after init was made
/// but before the state file that tells of it): the daemon starts a
/// sandbox only when it has none, so any task there is such a leftover,
/// and a new init must not share its limits with it.
fn end_leftovers(dir: &Path) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    let deadline = Instant::now() + LEFTOVER_WAIT;
    loop {
        let pids: Vec<libc::pid_t> = std::fs::read_to_string(&procs)
            .map_err(os_err(format!("reading {}", procs.display())))?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} keeps tasks {pids:?} of an earlier start",
                dir.display()
            ));
        }
        // A frozen task dies only once thawed.
        let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
        let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
        for pid in pids {
            // SAFETY: kill reads no memory; each pid is a task of this
            // sandbox's own cgroup, read just now.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An `O_PATH` descriptor of `path` (on the host).
fn open_path(path: &Path) -> Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    let fd = check(
        // SAFETY: a NUL-terminated path; returns a new descriptor or -1.
        unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) }.into(),
        format!("open {}", path.display()),
    )?;
    // SAFETY: just opened, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn setns(ns: &File, kind: libc::c_int, what: &str) -> Result<()> {
    check(
        // SAFETY: setns reads no memory of ours.
        unsafe { libc::setns(ns.as_raw_fd(), kind) }.into(),
        format!("joining the {what} namespace"),
    )
    .map(drop)
}

/// The joiner, forked by the starter: returns its exit code. Init,
/// forked by it, returns only if it failed.
fn joiner_main(
    plan: &Plan,
    sources: &OwnedFd,
    go: File,
    mut report: File,
    user_ns: &File,
    net_ns: Option<&File>,
    fifo: &OwnedFd,
) -> i32 {
    let init = match enter(go, user_ns, net_ns) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = writeln!(report, "error {e}");
            return 1;
        }
    };
    if init == 0 {
        let mut report = Some(report);
        let e = match be_init(plan, sources, &mut report, fifo) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        if let Some(mut report) = report {
            let _ = writeln!(report, "error {e}");
        }
        // Past "ready", the report is closed: the log has it.
        let _ = writeln!(std::io::stderr(), "sprite-start: sandbox {}: {e}", plan.id);
        return 1;
    }
    match writeln!(report, "pid {init}") {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// In the cgroups once the starter says so, into the namespaces, then
/// init forked: its pid here, 0 in init.
fn enter(mut go: File, user_ns: &File, net_ns: Option<&File>) -> Result<libc::pid_t> {
    let mut byte = [0u8; 1];
    if go
        .read(&mut byte)
        .map_err(os_err("waiting for the starter"))?
        != 1
    {
        return Err("the starter went away".into());
    }
    setns(user_ns, libc::CLONE_NEWUSER, "user")?;
    // Root of the user namespace, with no supplementary groups.
    // SAFETY: these read no memory of ours (setgroups: none, size 0).
    unsafe {
        check(libc::setgroups(0, std::ptr::null()).into(), "setgroups")?;
        check(libc::setresgid(0, 0, 0).into(), "setresgid")?;
        check(libc::setresuid(0, 0, 0).into(), "setresuid")?;
    }
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_NEWPID;
    match net_ns {
        Some(ns) => setns(ns, libc::CLONE_NEWNET, "network")?,
        None => flags |= libc::CLONE_NEWNET,
    }
    // SAFETY: unshare reads no memory of ours.
    check(unsafe { libc::unshare(flags) }.into(), "unshare")?;
    // SAFETY: one thread; the child runs this crate's code and execs or
    // ends with _exit.
    let init = unsafe { libc::fork() };
    if init < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    Ok(init)
}

enum Never {}

fn be_init(
    plan: &Plan,
    sources: &OwnedFd,
    report: &mut Option<File>,
    fifo: &OwnedFd,
) -> Result<Never> {
    let mut sources = receive_sources(plan, sources)?.into_iter();
    // Nothing mounted here reaches the host, nor does the host's mounts
    // after this, but for binds asked to follow them.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_SLAVE,
        None,
    )?;
    mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    let root = open_path(&plan.rootfs)?;
    for m in &plan.mounts {
        let source = match m.kind {
            MountKind::Bind { .. } => Some(sources.next().ok_or("a bind source missing")?),
            _ => None,
        };
        mount_one(&root, m, source.as_ref())
            .map_err(|e| format!("mounting {}: {e}", m.destination.display()))?;
    }
    for dev in &plan.devices {
        let target = resolve(&root, dev, Want::File)?;
        mount(Some(dev), &fd_path(&target), None, libc::MS_BIND, None)
            .map_err(|e| format!("binding {}: {e}", dev.display()))?;
    }
    for (target, link) in &plan.symlinks {
        symlink_in(&root, target, link)?;
    }
    pivot(&root)?;
    drop(root);
    for path in &plan.readonly {
        make_readonly(path)?;
    }
    for path in &plan.masked {
        mask(path)?;
    }
    let host = cstr(OsStr::new(&plan.hostname))?;
    check(
        // SAFETY: sethostname reads `len` bytes of the name we own.
        unsafe { libc::sethostname(host.as_ptr(), plan.hostname.len()) }.into(),
        "sethostname",
    )?;
    for r in &plan.rlimits {
        let limit = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        check(
            // SAFETY: setrlimit reads the struct we own.
            unsafe { libc::setrlimit(r.resource as _, &limit) }.into(),
            format!("setrlimit {}", r.resource),
        )?;
    }
    std::env::set_current_dir(&plan.cwd)
        .map_err(os_err(format!("chdir {}", plan.cwd.display())))?;
    set_caps(plan)?;
    if plan.no_new_privs {
        check(
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into(),
            "no_new_privs",
        )?;
    }
    let program = cstr(OsStr::new(plan.args.first().ok_or("no program to run")?))?;
    let args = plan
        .args
        .iter()
        .map(|a| cstr(OsStr::new(a)))
        .collect::<Result<Vec<_>>>()?;
    let env = plan
        .env
        .iter()
        .map(|a| cstr(OsStr::new(a)))
        .collect::<Result<Vec<_>>>()?;
    let argv = pointers(&args);
    let envp = pointers(&env);
    // The starter reads to the end: it must see ours close.
    let mut ready = report.take().ok_or("reported twice")?;
    writeln!(ready, "ready").map_err(os_err("reporting ready"))?;
    drop(ready);
    // Blocks until the daemon opens the other end (its commence).
    let at = cstr(OsStr::new(&format!("/proc/self/fd/{}", fifo.as_raw_fd())))?;
    let w = check(
        // SAFETY: a NUL-terminated path; returns a new descriptor or -1.
        unsafe { libc::open(at.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) }.into(),
        "opening the exec fifo",
    )? as RawFd;
    check(
        // SAFETY: writes one byte from a static buffer.
        unsafe { libc::write(w, b"0".as_ptr().cast(), 1) } as libc::c_long,
        "writing the exec fifo",
    )?;
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into
    // `args` and `env`, which live across the call; execve returns only
    // on failure.
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(format!(
        "exec {}: {}",
        plan.args[0],
        std::io::Error::last_os_error()
    ))
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let source_c = source.map(|s| cstr(s.as_os_str())).transpose()?;
    let target_c = cstr(target.as_os_str())?;
    let fstype_c = fstype.map(|s| cstr(OsStr::new(s))).transpose()?;
    let data_c = data
        .filter(|d| !d.is_empty())
        .map(|s| cstr(OsStr::new(s)))
        .transpose()?;
    // SAFETY: every pointer is NULL or a NUL-terminated string we own.
    let ret = unsafe {
        libc::mount(
            source_c.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            fstype_c.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data_c
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    check(ret.into(), format!("mount {}", target.display())).map(drop)
}

/// Mounts `m` inside `root`; a bind from `source` (its source opened on
/// the host, and whether it is a directory).
fn mount_one(root: &OwnedFd, m: &Mount, source: Option<&(OwnedFd, bool)>) -> Result<()> {
    let flags = m.flags as libc::c_ulong;
    match &m.kind {
        MountKind::Fs { fstype, source } => {
            let target = resolve(root, &m.destination, Want::Dir)?;
            mount(
                Some(Path::new(source)),
                &fd_path(&target),
                Some(fstype),
                flags,
                Some(&m.data),
            )?;
        }
        MountKind::Bind { recursive, .. } => {
            let (fd, dir) = source.ok_or("no source opened")?;
            let want = if *dir { Want::Dir } else { Want::File };
            let target = resolve(root, &m.destination, want)?;
            let mut bind = libc::MS_BIND;
            if *recursive {
                bind |= libc::MS_REC;
            }
            mount(Some(&fd_path(fd)), &fd_path(&target), None, bind, None)?;
            if flags != 0 {
                // The new mount, not what the descriptor was opened on.
                let target = resolve(root, &m.destination, want)?;
                remount_bind(&fd_path(&target), flags)?;
            }
        }
        MountKind::CgroupTree { hierarchies } => {
            let target = resolve(root, &m.destination, Want::Dir)?;
            mount(
                Some(Path::new("tmpfs")),
                &fd_path(&target),
                Some("tmpfs"),
                flags & !libc::MS_RDONLY,
                Some("mode=755"),
            )?;
            for h in hierarchies {
                let dir = m.destination.join(&h.name);
                let at = resolve(root, &dir, Want::Dir)?;
                mount(
                    Some(Path::new("cgroup")),
                    &fd_path(&at),
                    Some("cgroup"),
                    flags | libc::MS_RDONLY,
                    Some(&h.options),
                )
                .map_err(|e| format!("cgroup {}: {e}", h.options))?;
            }
        }
    }
    if m.slave {
        let target = resolve(root, &m.destination, Want::Any)?;
        mount(
            None,
            &fd_path(&target),
            None,
            libc::MS_SLAVE | libc::MS_REC,
            None,
        )?;
    }
    Ok(())
}

/// Sets `flags` on the bind mount at `target`, keeping what the kernel
/// locked on the mount it came from (in a user namespace a remount that
/// drops `nosuid`, `nodev`, ... of a mount made outside it is refused).
fn remount_bind(target: &Path, flags: libc::c_ulong) -> Result<()> {
    let c = cstr(target.as_os_str())?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    check(
        // SAFETY: statvfs writes into the struct we own.
        unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) }.into(),
        format!("statvfs {}", target.display()),
    )?;
    // SAFETY: statvfs succeeded and filled it.
    let st = unsafe { st.assume_init() };
    let mut locked: libc::c_ulong = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            locked |= ms_flag;
        }
    }
    mount(
        None,
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | flags | locked,
        None,
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Dir,
    File,
    Any,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// How many symlinks a path made inside a root may pass through.
const MAX_LINKS: u32 = 40;

/// `O_PATH` descriptor of `path` resolved inside `root` (symlinks and
/// `..` cannot leave it), made if missing: directories above, and the
/// last as `want` says. A dangling symlink on the way is made as what
/// it points to, inside the root (as runc's securejoin does).
fn resolve(root: &OwnedFd, path: &Path, want: Want) -> Result<OwnedFd> {
    resolve_at(root, &lexical(Path::new(""), path), want, 0)
}

/// `path` taken from `base` without touching the filesystem: `..`
/// stops at the root, an absolute path starts from it.
fn lexical(base: &Path, path: &Path) -> PathBuf {
    let mut out: Vec<&OsStr> = base
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out.clear(),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out.iter().collect()
}

fn resolve_at(root: &OwnedFd, rel: &Path, want: Want, links: u32) -> Result<OwnedFd> {
    if links > MAX_LINKS {
        return Err(format!("too many symlinks at /{}", rel.display()));
    }
    if rel.as_os_str().is_empty() {
        return openat2(root, Path::new("."), libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|e| format!("open the root: {e}"));
    }
    match openat2(root, rel, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(format!("open /{}: {e}", rel.display())),
    }
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let parent = resolve_at(root, parent_rel, Want::Dir, links)?;
    // Opened as a directory to make things in it.
    let dir = openat2(&parent, Path::new("."), libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| format!("open /{}: {e}", parent_rel.display()))?;
    let name = cstr(rel.file_name().unwrap_or_default())?;
    // SAFETY: a NUL-terminated name relative to a directory we hold.
    let ret = unsafe {
        if want == Want::File {
            let fd = libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                libc::close(fd);
            }
            fd
        } else {
            libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755)
        }
    };
    if ret < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("make /{}: {e}", rel.display()));
        }
    }
    match openat2(root, rel, libc::O_PATH) {
        Ok(fd) => Ok(fd),
        // There, but a symlink to nothing yet: make what it points to.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            let mut buf = vec![0u8; libc::PATH_MAX as usize];
            // SAFETY: readlinkat writes at most buf.len() bytes into buf.
            let n = unsafe {
                libc::readlinkat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            let n = usize::try_from(n).map_err(|_| {
                format!(
                    "make /{}: {}",
                    rel.display(),
                    std::io::Error::last_os_error()
                )
            })?;
            let target = Path::new(OsStr::from_bytes(&buf[..n]));
            resolve_at(root, &lexical(parent_rel, target), want, links + 1)
        }
        Err(e) => Err(format!("open /{}: {e}", rel.display())),
    }
}

fn openat2(dir: &OwnedFd, path: &Path, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    /// `struct open_how` (linux/openat2.h).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 reads the path and the struct we own (its size
    // given); returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A symlink `link` -> `target` inside the root (left as it is if
/// something is there).
fn symlink_in(root: &OwnedFd, target: &Path, link: &Path) -> Result<()> {
    let parent = link.parent().unwrap_or(Path::new("/"));
    let dir = resolve(root, parent, Want::Dir)?;
    let dir = openat2(&dir, Path::new("."), libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| format!("open {}: {e}", parent.display()))?;
    let t = cstr(target.as_os_str())?;
    let name = cstr(link.file_name().unwrap_or_default())?;
    // SAFETY: NUL-terminated strings, a directory descriptor we hold.
    let ret = unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), name.as_ptr()) };
    if ret < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("symlink {}: {e}", link.display()));
        }
    }
    Ok(())
}

/// `pivot_root` into `root`, the old root unmounted.
fn pivot(root: &OwnedFd) -> Result<()> {
    let old = open_path(Path::new("/"))?;
    // O_PATH descriptors serve fchdir. After pivot_root(".", ".") the old
    // root is stacked on the new one; the kernel does not promise where
    // the working directory is then, so it is set to the old root.
    // SAFETY: fchdir reads no memory; pivot_root reads two static paths.
    unsafe {
        check(libc::fchdir(root.as_raw_fd()).into(), "chdir to the root")?;
        check(
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()),
            "pivot_root",
        )?;
        check(
            libc::fchdir(old.as_raw_fd()).into(),
            "chdir to the old root",
        )?;
    }
    // The old root is now under "."; detach it, keeping it from sending
    // its unmount anywhere first.
    mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )?;
    check(
        // SAFETY: reads a static path.
        unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) }.into(),
        "unmounting the old root",
    )?;
    std::env::set_current_dir("/").map_err(os_err("chdir /"))
}

fn exists(path: &Path) -> Result<Option<bool>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m.is_dir())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("stat {}: {e}", path.display())),
    }
}

fn make_readonly(path: &Path) -> Result<()> {
    if exists(path)?.is_none() {
        return Ok(());
    }
    mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None)?;
    remount_bind(path, libc::MS_RDONLY)
}

fn mask(path: &Path) -> Result<()> {
    match exists(path)? {
        None => Ok(()),
        Some(true) => mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        ),
        Some(false) => mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            libc::MS_BIND,
            None,
        ),
    }
}

/// The capability sets of the plan: the bounding set cut down, the
/// ambient set cleared, then the rest set at once.
fn set_caps(plan: &Plan) -> Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last.min(63) {
        if plan.caps.bounding & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            check(ret.into(), format!("dropping capability {cap}"))?;
        }
    }
    check(
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        }
        .into(),
        "clearing ambient capabilities",
    )?;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let word = |set: u64, i: u32| (set >> (32 * i)) as u32;
    let data: [Data; 2] = [0, 1].map(|i| Data {
        effective: word(plan.caps.effective, i),
        permitted: word(plan.caps.permitted, i),
        inheritable: word(plan.caps.inheritable, i),
    });
    check(
        // SAFETY: capset reads the header and two data structs we own.
        unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) },
        "capset",
    )?;
    for cap in 0..=last.min(63) {
        if plan.caps.ambient & (1 << cap) != 0 {
            // SAFETY: prctl with integer arguments only.
            let ret = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            check(ret.into(), format!("raising ambient capability {cap}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_reads_as_runcs_fields() {
        let state = StateFile {
            init_process_pid: 42,
            init_process_start: 7,
            cgroup_paths: [(
                "memory".to_string(),
                PathBuf::from("/sys/fs/cgroup/memory/x"),
            )]
            .into(),
            sprite_start: true,
        };
        let text = serde_json::to_value(&state).expect("json");
        assert_eq!(text["init_process_pid"], 42);
        assert_eq!(text["init_process_start"], 7);
        assert_eq!(text["cgroup_paths"]["memory"], "/sys/fs/cgroup/memory/x");
    }

    #[test]
    fn reads_its_own_start_time() {
        let me = libc::pid_t::try_from(std::process::id()).expect("pid");
        let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
        let field22: u64 = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_ascii_whitespace().nth(19))
            .and_then(|s| s.parse().ok())
            .expect("field 22");
        assert_eq!(proc_start(me), Some(field22));
    }

    /// This process's cgroup directory in the pids hierarchy (v1), or in
    /// the v2 tree.
    fn own_cgroup() -> PathBuf {
        let groups = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        for line in groups.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
            if controllers.is_some_and(|c| c.split(',').any(|c| c == "pids")) {
                let dir = Path::new("/sys/fs/cgroup/pids")
                    .join(path.unwrap_or("/").trim_start_matches('/'));
                return dir;
            }
        }
        let path = groups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a cgroup");
        Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))
    }

    #[test]
    fn what_an_earlier_start_left_in_the_cgroup_is_killed() {
        let dir = own_cgroup().join(format!("sprite-start-test-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("a cgroup of our own (the tests run as root)");
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep");
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).expect("join");
        let ended = end_leftovers(&dir);
        let status = child.wait().expect("wait");
        let removed = std::fs::remove_dir(&dir);
        ended.expect("ended");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        removed.expect("the cgroup is empty");
        // An empty one is left as it is.
        std::fs::create_dir(&dir).expect("again");
        let again = end_leftovers(&dir);
        std::fs::remove_dir(&dir).expect("rmdir");
        again.expect("nothing to end");
    }

    /// Two levels of cpuset cgroup, the upper one made by "another start"
    /// and left empty (as it is for an instant after its mkdir): the
    /// sandbox's is filled, its parent first, and takes a task.
    #[test]
    fn a_cpuset_cgroup_under_a_parent_not_filled_yet_takes_a_task() {
        let root = Path::new("/sys/fs/cgroup/cpuset");
        assert!(
            root.join("cpuset.cpus").is_file(),
            "this test needs the cgroup v1 cpuset hierarchy at {} (what sprite-start's cgroups are made in)",
            root.display()
        );
        let parent = root.join(format!("sprite-start-test-{}", std::process::id()));
        let dir = parent.join("sandbox");
        std::fs::create_dir(&parent).expect("a cgroup of our own (the tests run as root)");
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        assert!(read(&parent.join("cpuset.cpus")).trim().is_empty());
        let mut made = Vec::new();
        let filled = make_cgroup(&dir, &mut made);
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep");
        let joined = std::fs::write(dir.join("cgroup.procs"), child.id().to_string());
        let _ = child.kill();
        let _ = child.wait();
        let (cpus, mems) = (
            read(&dir.join("cpuset.cpus")),
            read(&dir.join("cpuset.mems")),
        );
        let parent_cpus = read(&parent.join("cpuset.cpus"));
        let removed = (
            end_leftovers(&dir),
            std::fs::remove_dir(&dir),
            std::fs::remove_dir(&parent),
        );
        filled.expect("made");
        joined.expect("a task joins it");
        assert_eq!(made, std::slice::from_ref(&dir));
        assert_eq!(cpus.trim(), read(&root.join("cpuset.cpus")).trim());
        assert_eq!(mems.trim(), read(&root.join("cpuset.mems")).trim());
        assert_eq!(parent_cpus.trim(), cpus.trim());
        removed.0.expect("ended");
        removed.1.expect("rmdir");
        removed.2.expect("rmdir parent");
    }

    #[test]
    fn resolving_inside_a_root_stays_in_it_and_makes_what_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).expect("symlink");
        std::os::unix::fs::symlink("/../../x", dir.path().join("up")).expect("symlink");
        let root = open_path(dir.path()).expect("root");
        // Through a symlink to an absolute host path: made inside the root.
        resolve(&root, Path::new("/escape/a/b"), Want::Dir).expect("resolve");
        assert!(!outside.path().join("a").exists(), "made outside the root");
        let inside = dir
            .path()
            .join(outside.path().strip_prefix("/").expect("abs"))
            .join("a/b");
        assert!(inside.is_dir(), "{}", inside.display());
        // `..` past the root stops at it.
        resolve(&root, Path::new("/up/f"), Want::File).expect("resolve");
        assert!(dir.path().join("x/f").is_file());
        // A loop ends in an error, not a hang.
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).expect("symlink");
        assert!(resolve(&root, Path::new("/loop/a"), Want::Dir).is_err());
        resolve(&root, Path::new("/dev/null"), Want::File).expect("resolve");
        assert!(dir.path().join("dev/null").is_file());
    }
}
