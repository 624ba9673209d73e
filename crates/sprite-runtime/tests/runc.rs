//! runc driver tests on a real rootfs (tiny image, overlay on a volume).
//! They need root, runc, mkfs.xfs/mkfs.ext4 and busybox-static (which
//! `.ci/run` installs), and fail saying which is missing rather than pass
//! without having run. Every test removes what it
//! made (containers, mounts, loop devices, temp dirs) even when it fails.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sprite_runtime::{
    Driver, EgressHook, IdMap, Limits, Runc, RuntimeError, SandboxSpec, SandboxState,
};
use sprite_store::{ImageKind, Store, StoreOptions};

const SHIFT: u32 = 100_000;

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

fn busybox() -> Option<PathBuf> {
    ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn prerequisites_missing() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root".into());
    }
    for tool in ["runc", "mkfs.xfs", "mkfs.ext4"] {
        if which(tool).is_none() {
            return Some(format!("needs {tool}"));
        }
    }
    if busybox().is_none() {
        return Some("needs busybox-static".into());
    }
    None
}

macro_rules! require_env {
    () => {
        if let Some(why) = prerequisites_missing() {
            panic!("cannot run: this test {why} (scripts/deps.sh installs the tools)");
        }
    };
}

/// A store with the tiny image, a runc driver, and cleanup of everything on drop.
struct Env {
    dir: Option<tempfile::TempDir>,
    store: Store,
    runc: Runc,
    started: Mutex<Vec<String>>,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sprite-runtime-test-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let store = Store::open(
            &dir.path().join("data"),
            StoreOptions {
                pool_size_bytes: 4 << 30,
                uid_shift: Some(SHIFT),
                volume_size_bytes: 1 << 30,
                image_cache: None,
                min_free_bytes: 0,
            },
        )
        .expect("open store");
        let runc = Runc::new(store.data_dir().join("runc"), which("runc").expect("runc"));
        let env = Env {
            dir: Some(dir),
            store,
            runc,
            started: Mutex::new(Vec::new()),
        };
        env.store
            .build_image(ImageKind::Tiny, &mut |_| {})
            .expect("build tiny");
        env
    }

    /// A unique id (cgroup names are host-wide), its volume and mounted rootfs.
    fn sandbox(&self, name: &str) -> SandboxSpec {
        let id = format!("t{}-{name}", std::process::id());
        self.store.create_volume(&id).expect("create volume");
        let rootfs = self.store.mount_rootfs(&id, "tiny").expect("mount rootfs");
        let dir = self.store.sprite_dir(&id);
        let mut spec = SandboxSpec::new(
            &id,
            rootfs,
            dir.join("bundle"),
            dir.join("init.log"),
            busybox().expect("busybox"),
        );
        spec.hostname = "sprite-test".into();
        spec.init_args = ["/bin/sh", "-c", "echo started; exec sleep 1000"]
            .map(String::from)
            .to_vec();
        spec.limits = Limits {
            cpus: 0.5,
            memory_bytes: 128 << 20,
            pids: 64,
        };
        spec.id_map = Some(IdMap {
            host_base: SHIFT,
            size: 65_536,
        });
        spec
    }

    fn listener(&self, spec: &SandboxSpec) -> UnixListener {
        let path = self.store.sprite_dir(&spec.id).join("agent.sock");
        let _ = std::fs::remove_file(&path);
        UnixListener::bind(&path).expect("bind")
    }

    fn start(&self, spec: &SandboxSpec) -> Result<(), RuntimeError> {
        if let Ok(mut started) = self.started.lock() {
            if !started.contains(&spec.id) {
                started.push(spec.id.clone());
            }
        }
        let listener = self.listener(spec);
        self.runc.start(spec, OwnedFd::from(listener))
    }

    fn running_pid(&self, id: &str) -> u32 {
        match self.state(id) {
            SandboxState::Running { pid } => pid,
            other => panic!("{id} is {other:?}, not running"),
        }
    }

    /// The driver's state of `id`, checked against `runc state`'s (the
    /// driver makes it from runc's files without running runc).
    fn state(&self, id: &str) -> SandboxState {
        let ours = self.runc.state(id).expect("state");
        let out = std::process::Command::new(which("runc").expect("runc"))
            .arg("--root")
            .arg(self.store.data_dir().join("runc"))
            .args(["state", id])
            .output()
            .expect("runc state");
        let theirs = if out.status.success() {
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("runc state json");
            let pid = u32::try_from(v["pid"].as_u64().expect("pid")).expect("pid");
            match v["status"].as_str().expect("status") {
                "running" => SandboxState::Running { pid },
                "paused" => SandboxState::Paused,
                _ => SandboxState::Stopped,
            }
        } else {
            SandboxState::Missing
        };
        assert_eq!(ours, theirs, "the driver's state of {id} is not runc's");
        ours
    }

    /// The cgroup directories runc recorded for `id` in its state file.
    fn runc_cgroups(&self, id: &str) -> Vec<PathBuf> {
        let path = self
            .store
            .data_dir()
            .join("runc")
            .join(id)
            .join("state.json");
        let text = std::fs::read(&path).expect("runc's state file");
        let v: serde_json::Value = serde_json::from_slice(&text).expect("state json");
        v["cgroup_paths"]
            .as_object()
            .expect("cgroup_paths")
            .values()
            .map(|p| PathBuf::from(p.as_str().expect("a path")))
            .collect()
    }

    /// `runc exec` as root in the sandbox: (success, stdout + stderr).
    fn exec(&self, id: &str, args: &[&str]) -> (bool, String) {
        let out = self.runc.exec(id, args).expect("runc exec");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.started.lock().map(|s| s.clone()).unwrap_or_default();
        for id in ids {
            if let Err(e) = self.runc.delete(&id) {
                eprintln!("cleanup: delete {id}: {e}");
            }
        }
        if let Some(dir) = self.dir.take() {
            sprites_test_support::pool::remove_pool_dir(dir);
        }
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn link(path: impl AsRef<Path>) -> String {
    std::fs::read_link(path.as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// The cgroup directory of `controller` among the sandbox's v1 dirs.
fn cgroup_dir(dirs: &[PathBuf], controller: &str) -> PathBuf {
    dirs.iter()
        .find(|d| d.starts_with(format!("/sys/fs/cgroup/{controller}")))
        .cloned()
        .unwrap_or_else(|| panic!("no {controller} dir in {dirs:?}"))
}

fn read_trim(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
        .trim()
        .to_string()
}

#[test]
fn sandbox_isolation_limits_and_lifecycle() {
    require_env!();
    let env = Env::new();
    let spec = env.sandbox("iso");
    let id = spec.id.as_str();

    let listener = env.listener(&spec);
    let our_copy = listener.try_clone().expect("clone listener");
    env.started.lock().expect("lock").push(spec.id.clone());
    env.runc
        .start(&spec, OwnedFd::from(listener))
        .expect("start");
    let pid = env.running_pid(id);
    wait_for("init's output", || {
        std::fs::read_to_string(&spec.log_path).is_ok_and(|l| l.contains("started"))
    });
    assert!(matches!(
        env.runc.start(&spec, OwnedFd::from(env.listener(&spec))),
        Err(RuntimeError::AlreadyRunning(_))
    ));

    // Namespaces: all new, including user and cgroup.
    for ns in ["pid", "net", "mnt", "uts", "ipc", "user", "cgroup"] {
        assert_ne!(
            link(format!("/proc/{pid}/ns/{ns}")),
            link(format!("/proc/self/ns/{ns}")),
            "{ns} shared"
        );
    }
    let uid_map = read_trim(format!("/proc/{pid}/uid_map"));
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    let gid_map = read_trim(format!("/proc/{pid}/gid_map"));
    assert_eq!(
        gid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );

    // Privileges: no_new_privs, seccomp filter, exactly the minimal capabilities.
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2");
    let want_caps: u64 = [0u32, 1, 3, 4, 5, 6, 7, 8, 10, 18, 29, 31]
        .iter()
        .map(|b| 1u64 << b)
        .sum();
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let caps = u64::from_str_radix(&status_field(pid, set), 16).expect("caps");
        assert_eq!(caps, want_caps, "{set}");
    }
    assert_eq!(status_field(pid, "CapAmb"), "0000000000000000");

    // Init: fd 3 is our listener, stdio are /dev/null and the log, no pipe
    // to us, not our child (it outlives the daemon).
    assert_eq!(
        link(format!("/proc/{pid}/fd/3")),
        link(format!("/proc/self/fd/{}", our_copy.as_raw_fd()))
    );
    assert_eq!(link(format!("/proc/{pid}/fd/0")), "/dev/null");
    assert_eq!(
        link(format!("/proc/{pid}/fd/1")),
        spec.log_path.to_string_lossy()
    );
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
    {
        assert!(!link(fd.path()).starts_with("pipe:"), "init holds a pipe");
    }
    assert_ne!(status_field(pid, "PPid"), std::process::id().to_string());
    // Its open-files limit, inherited from runc (its user namespace is its
    // own, so runc cannot set it from outside): what sandboxes are granted.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let nofile: Vec<&str> = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .expect("open files line")
        .split_whitespace()
        .collect();
    let granted = sprite_runtime::spec::grantable_nofile().to_string();
    assert_eq!(
        nofile[..2],
        [granted.as_str(), granted.as_str()],
        "{limits}"
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    assert!(environ
        .split(|b| *b == 0)
        .any(|e| e == b"SPRITE_AGENT_FD=3"));

    // UTS and the view from inside.
    assert_eq!(env.exec(id, &["hostname"]).1.trim(), "sprite-test");
    let (ok, ids) = env.exec(id, &["id", "-u"]);
    assert!(ok && ids.trim() == "0", "{ids}");
    let (ok, ps) = env.exec(id, &["ps", "-o", "pid,args"]);
    assert!(ok, "{ps}");
    let procs: Vec<&str> = ps.lines().skip(1).collect();
    assert!(
        procs
            .iter()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 1000")),
        "{ps}"
    );
    assert!(procs.len() <= 3, "ps sees more than the sandbox: {ps}");
    let (ok, lo) = env.exec(id, &["ls", "/sys/class/net"]);
    assert!(
        ok && lo.split_whitespace().collect::<Vec<_>>() == ["lo"],
        "{lo}"
    );

    // Denied: mounting, new namespaces, writing the agent.
    let (ok, out) = env.exec(id, &["mount", "-t", "tmpfs", "x", "/mnt"]);
    assert!(!ok, "mount succeeded: {out}");
    let (ok, out) = env.exec(id, &["unshare", "-U", "true"]);
    assert!(!ok, "unshare -U succeeded: {out}");
    let (ok, out) = env.exec(id, &["unshare", "-n", "true"]);
    assert!(!ok, "unshare -n succeeded: {out}");
    let (ok, out) = env.exec(id, &["sh", "-c", "echo x > /.sprite/bin/sprite-agent"]);
    assert!(!ok, "agent writable: {out}");
    assert!(out.contains("Read-only"), "{out}");
    // Allowed: writing the rootfs, as the shifted root on the host.
    let (ok, out) = env.exec(
        id,
        &[
            "sh",
            "-c",
            "echo hi > /home/sprite/f && chown 1000:1000 /home/sprite/f",
        ],
    );
    assert!(ok, "{out}");
    let f = std::fs::metadata(spec.rootfs.join("home/sprite/f")).expect("f");
    assert_eq!((f.uid(), f.gid()), (SHIFT + 1000, SHIFT + 1000));

    // cgroup limits, where runc put them (relative path under our cgroups).
    let dirs = env.runc.cgroup_dirs(id).expect("cgroup dirs");
    let memory = cgroup_dir(&dirs, "memory");
    let pids = cgroup_dir(&dirs, "pids");
    assert_eq!(
        read_trim(memory.join("memory.limit_in_bytes")),
        (128u64 << 20).to_string()
    );
    assert_eq!(read_trim(pids.join("pids.max")), "64");
    assert_eq!(
        read_trim(cgroup_dir(&dirs, "cpu").join("cpu.cfs_quota_us")),
        "50000"
    );
    assert!(read_trim(memory.join("cgroup.procs"))
        .lines()
        .any(|p| p == pid.to_string()));
    assert!(pids.ends_with(format!("sprited/{id}")));

    // A bounded fork bomb stops at the pids limit.
    let (_, out) = env.exec(
        id,
        &["sh", "-c", "i=0; while [ $i -lt 200 ]; do sleep 300 >/dev/null 2>&1 & i=$((i+1)); done; echo spawned"],
    );
    assert!(
        out.contains("can't fork") || out.contains("Resource temporarily unavailable"),
        "{out}"
    );
    let current: u64 = read_trim(pids.join("pids.current"))
        .parse()
        .expect("pids.current");
    assert!(current <= 64, "pids.current {current}");
    let events = read_trim(pids.join("pids.events"));
    assert!(!events.contains("max 0"), "no fork was refused: {events}");

    // Stats.
    let stats = env.runc.stats(id).expect("stats");
    assert!(
        stats.cpu_usage_ns > 0 && stats.memory_bytes > 0,
        "{stats:?}"
    );

    // Pause and resume.
    env.runc.pause(id).expect("pause");
    assert_eq!(env.state(id), SandboxState::Paused);
    assert_eq!(
        read_trim(cgroup_dir(&dirs, "freezer").join("freezer.state")),
        "FROZEN"
    );
    env.runc.resume(id).expect("resume");
    assert_eq!(env.state(id), SandboxState::Running { pid });
    // And in place, with one write (the daemon's warm fast path).
    env.runc.pause(id).expect("pause again");
    assert_eq!(env.state(id), SandboxState::Paused);
    assert!(
        env.runc.resume_now(id).expect("resume_now"),
        "not thawed at once"
    );
    assert_eq!(env.state(id), SandboxState::Running { pid });
    assert_eq!(
        read_trim(cgroup_dir(&dirs, "freezer").join("freezer.state")),
        "THAWED"
    );

    // Stop (sleep as PID 1 ignores SIGTERM: this exercises the SIGKILL path),
    // and every cgroup directory goes with it, runc's state too (removed
    // by the driver itself once init is dead).
    let made_by_runc = env.runc_cgroups(id);
    assert!(!made_by_runc.is_empty(), "runc recorded no cgroups");
    env.runc.pause(id).expect("pause before stop");
    env.runc.stop(id, Duration::from_millis(300)).expect("stop");
    assert_eq!(env.state(id), SandboxState::Missing);
    for dir in dirs.iter().chain(&made_by_runc) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(!env.store.data_dir().join("runc").join(id).exists());
    assert!(!Path::new(&format!("/sys/fs/cgroup/pids/sprited/{id}")).exists());
    env.runc
        .stop(id, Duration::from_millis(10))
        .expect("stop is idempotent");
    // Nothing to thaw in place: left to `resume`, which says it is gone.
    assert!(!env
        .runc
        .resume_now(id)
        .expect("resume_now of a stopped sandbox"));
    env.runc.delete(id).expect("delete is idempotent");

    // Start again on the same rootfs: the data is there.
    env.start(&spec).expect("restart");
    let (ok, out) = env.exec(id, &["cat", "/home/sprite/f"]);
    assert!(ok && out.trim() == "hi", "{out}");

    // init dies behind runc's back (as after a crash): the leftover is
    // replaced on the next start.
    let pid = env.running_pid(id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill init");
    wait_for("init to die", || {
        env.runc.state(id).is_ok_and(|s| s == SandboxState::Stopped)
    });
    // Settled: runc says so too.
    assert_eq!(env.state(id), SandboxState::Stopped);
    env.start(&spec).expect("start over a stopped leftover");
    env.running_pid(id);
    let made_by_runc = env.runc_cgroups(id);
    env.runc.delete(id).expect("delete running");
    assert_eq!(env.state(id), SandboxState::Missing);
    for dir in dirs.iter().chain(&made_by_runc) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn a_prepared_sandbox_runs_nothing_until_it_is_let_run_and_is_renamed_while_it_runs() {
    require_env!();
    let env = Env::new();
    let spec = env.sandbox("prep");
    let id = spec.id.as_str();
    env.started.lock().expect("lock").push(id.to_string());
    env.runc
        .prepare(&spec, OwnedFd::from(env.listener(&spec)))
        .expect("prepare");
    // Made, and waiting: runc calls it created, init is still runc's.
    assert_eq!(env.state(id), SandboxState::Stopped);
    let state_file = env
        .store
        .data_dir()
        .join("runc")
        .join(id)
        .join("state.json");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("state file")).expect("json");
    let pid = state["init_process_pid"].as_u64().expect("init pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("init's cmdline");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        args.len() >= 2 && args[0].ends_with("runc") && args[1] == "init",
        "init already runs {args:?}"
    );
    let log = || std::fs::read_to_string(&spec.log_path).unwrap_or_default();
    assert!(
        !log().contains("started"),
        "the sprite's process ran: {}",
        log()
    );

    // Named before it runs: the UTS namespace's, not the daemon's.
    let ours = nix::unistd::gethostname().expect("our hostname");
    Driver::set_hostname(&env.runc, id, "renamed").expect("set hostname");
    assert_eq!(nix::unistd::gethostname().expect("our hostname"), ours);
    env.runc.commence(id).expect("commence");
    let pid = env.running_pid(id);
    assert_eq!(
        u64::from(pid),
        state["init_process_pid"].as_u64().expect("pid")
    );
    wait_for("init's first words", || log().contains("started"));
    let (ok, out) = env.exec(id, &["hostname"]);
    assert!(ok && out.trim() == "renamed", "{out}");
    // And while it runs (a sandbox started ahead gets its sprite's name
    // when it is taken); not while it is paused.
    Driver::set_hostname(&env.runc, id, "again").expect("rename a running sandbox");
    let (ok, out) = env.exec(id, &["hostname"]);
    assert!(ok && out.trim() == "again", "{out}");
    assert_eq!(nix::unistd::gethostname().expect("our hostname"), ours);
    env.runc.pause(id).expect("pause");
    assert!(matches!(
        Driver::set_hostname(&env.runc, id, "paused"),
        Err(RuntimeError::NotRunning(_))
    ));
    env.runc.resume(id).expect("resume");
    assert!(
        !env.store
            .data_dir()
            .join("runc")
            .join(id)
            .join("exec.fifo")
            .exists(),
        "the exec fifo stays"
    );
    assert!(matches!(
        env.runc.commence(id),
        Err(RuntimeError::AlreadyRunning(_))
    ));
    env.runc.delete(id).expect("delete");
    assert_eq!(env.state(id), SandboxState::Missing);

    // A prepared init that dies before it is let run: commence says so at
    // once instead of waiting on the fifo for ever.
    env.runc
        .prepare(&spec, OwnedFd::from(env.listener(&spec)))
        .expect("prepare again");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("state file")).expect("json");
    let pid = i32::try_from(state["init_process_pid"].as_u64().expect("pid")).expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the waiting init");
    let t0 = std::time::Instant::now();
    let err = env.runc.commence(id).expect_err("commence of a dead init");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "commence waited {:?} ({err})",
        t0.elapsed()
    );
    env.runc.delete(id).expect("delete the dead one");
    assert_eq!(env.state(id), SandboxState::Missing);
}

#[test]
fn sigterm_is_enough_when_init_handles_it() {
    require_env!();
    let env = Env::new();
    let mut spec = env.sandbox("term");
    spec.init_args = [
        "/bin/sh",
        "-c",
        "trap 'exit 0' TERM; echo started; while true; do sleep 1; done",
    ]
    .map(String::from)
    .to_vec();
    env.start(&spec).expect("start");
    wait_for("init's trap", || {
        std::fs::read_to_string(&spec.log_path).is_ok_and(|l| l.contains("started"))
    });
    env.runc
        .stop(&spec.id, Duration::from_secs(30))
        .expect("stop");
    assert_eq!(
        env.runc.state(&spec.id).expect("state"),
        SandboxState::Missing
    );
}

#[test]
fn unknown_sandboxes() {
    require_env!();
    let env = Env::new();
    assert_eq!(
        env.runc.state("nope").expect("state"),
        SandboxState::Missing
    );
    env.runc
        .stop("nope", Duration::from_millis(10))
        .expect("stop");
    env.runc.delete("nope").expect("delete");
    assert!(matches!(
        env.runc.pause("nope"),
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        env.runc.state("../x"),
        Err(RuntimeError::InvalidId(_))
    ));
    // A failing start reports runc's own error.
    let mut spec = env.sandbox("bad");
    spec.init_args = vec!["/does/not/exist".into()];
    match env.start(&spec) {
        Err(RuntimeError::Runc { output, .. }) => {
            assert!(output.contains("does/not/exist"), "{output}")
        }
        other => panic!("expected a runc error, got {other:?}"),
    }
    env.runc.delete(&spec.id).expect("delete failed start");
}

#[test]
fn rootfs_held_by_a_running_sandbox_is_not_mounted_twice() {
    require_env!();
    let env = Env::new();
    let spec = env.sandbox("held");
    env.start(&spec).expect("start");
    // The host's copy of the mounts can go, but the sandbox's mount
    // namespace still holds the volume: the unmount says so (the image is
    // not quiescent: nothing may read or clone it yet), and a second loop
    // device on the same image would corrupt it, so mounting again must be
    // refused.
    assert!(matches!(
        env.store.unmount_rootfs(&spec.id),
        Err(sprite_store::StoreError::Busy(_))
    ));
    assert!(!env.store.is_rootfs_mounted(&spec.id).expect("mount table"));
    assert!(matches!(
        env.store.mount_rootfs(&spec.id, "tiny"),
        Err(sprite_store::StoreError::Busy(_))
    ));
    env.runc.stop(&spec.id, Duration::ZERO).expect("stop");
    env.store
        .mount_rootfs(&spec.id, "tiny")
        .expect("mount once the sandbox is gone");
}

/// An egress hook that records what the driver asks of it, and can refuse.
#[derive(Debug, Default)]
struct RecordingEgress {
    events: Mutex<Vec<String>>,
    refuse: Mutex<bool>,
}

impl RecordingEgress {
    fn events(&self) -> Vec<String> {
        self.events.lock().expect("events").clone()
    }
}

impl EgressHook for RecordingEgress {
    fn attach(&self, id: &str, init_pid: u32) -> Result<(), RuntimeError> {
        // Called while init runs, inside the sandbox's own namespace.
        let alive = Path::new(&format!("/proc/{init_pid}")).exists();
        let own = link(format!("/proc/{init_pid}/ns/net")) != link("/proc/self/ns/net");
        self.events
            .lock()
            .expect("events")
            .push(format!("attach {id} alive={alive} own_netns={own}"));
        if *self.refuse.lock().expect("refuse") {
            return Err(RuntimeError::Network("refused by the test".into()));
        }
        Ok(())
    }

    fn detach(&self, id: &str) -> Result<(), RuntimeError> {
        self.events
            .lock()
            .expect("events")
            .push(format!("detach {id}"));
        Ok(())
    }
}

#[test]
fn what_a_driver_tells_of_its_sandboxes_and_when_it_calls_egress() {
    require_env!();
    let mut env = Env::new();
    let egress = Arc::new(RecordingEgress::default());
    env.runc = Runc::new(
        env.store.data_dir().join("runc"),
        which("runc").expect("runc"),
    )
    .with_egress(egress.clone());

    // no_new_privs comes from the spec (off: setuid works, as sudo needs).
    let mut spec = env.sandbox("facts");
    spec.no_new_privileges = false;
    let id = spec.id.clone();
    env.start(&spec).expect("start");
    let pid = env.running_pid(&id);
    assert_eq!(status_field(pid, "NoNewPrivs"), "0");
    assert_eq!(
        egress.events(),
        [format!("attach {id} alive=true own_netns=true")]
    );

    // Init's pid and network namespace, running and paused alike.
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    assert_eq!(env.runc.init_pid(&id).expect("init pid"), pid);
    assert_eq!(env.runc.netns(&id).expect("netns"), netns);
    assert_ne!(link(&netns), link("/proc/self/ns/net"));
    env.runc.pause(&id).expect("pause");
    assert_eq!(env.runc.init_pid(&id).expect("paused init pid"), pid);
    assert_eq!(env.runc.netns(&id).expect("paused netns"), netns);
    env.runc.resume(&id).expect("resume");

    // Init dead behind runc's back: no pid to give.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill init");
    wait_for("init to die", || {
        env.runc
            .state(&id)
            .is_ok_and(|s| s == SandboxState::Stopped)
    });
    assert!(matches!(
        env.runc.init_pid(&id),
        Err(RuntimeError::NotRunning(_))
    ));

    // Every removal detaches egress.
    env.runc.stop(&id, Duration::ZERO).expect("stop");
    assert_eq!(egress.events().last(), Some(&format!("detach {id}")));
    assert!(matches!(
        env.runc.init_pid(&id),
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        env.runc.netns(&id),
        Err(RuntimeError::NotFound(_))
    ));

    // An egress that cannot attach fails the start, and nothing is left.
    *egress.refuse.lock().expect("refuse") = true;
    let spec = env.sandbox("nonet");
    match env.start(&spec) {
        Err(RuntimeError::Network(why)) => assert!(why.contains("refused"), "{why}"),
        other => panic!("expected the egress error, got {other:?}"),
    }
    assert_eq!(
        env.runc.state(&spec.id).expect("state"),
        SandboxState::Missing
    );
    assert_eq!(egress.events().last(), Some(&format!("detach {}", spec.id)));
}
