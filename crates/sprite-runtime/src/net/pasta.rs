//! pasta (from passt): user-mode NAT for one network namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Result, RuntimeError};

/// Attaches pasta to the namespaces of `pid`. It configures the tap
/// interface (the host's address, routes and MTU) and daemonizes once it is
/// set up; its pid goes to `pid_file`.
///
/// - `-t none -u none`: nothing from the host is forwarded into the sandbox;
/// - `-T none -U none`: the sandbox's loopback is not spliced to the host's
///   (pasta's default would forward every port bound on the host);
/// - `--no-map-gw`: the gateway address is not the host's loopback;
/// - `--runas 0`: as plain root pasta hangs here dropping to `nobody`.
///
/// pasta drops CAP_SYS_PTRACE before it opens the namespaces, so it could
/// open `/proc/<pid>/ns/*` only of a process it may trace without it: not
/// init before it has exec'd (`runc init` is undumpable), and never one in
/// a user namespace host root does not own (see [`crate::userns`]). So
/// the daemon, which may, binds both namespaces onto files next to the pid
/// file for pasta to open, and takes them away once pasta has joined
/// (`--no-netns-quit`: that removal is not the namespace's end).
pub fn start(pasta_bin: &Path, pid: u32, pid_file: &Path) -> Result<()> {
    // A pasta an earlier start left (a daemon killed in between) ends
    // first: dropping only its pid file would orphan it.
    end(running(pid_file).into_iter().collect(), pid_file)?;
    let ns = NsFiles::bind(pid, pid_file)?;
    run(pasta_bin, &ns.net, Some(&ns.user), pid_file)
        .map_err(|e| RuntimeError::Network(format!("pasta for pid {pid} failed {e}")))
}

/// Attaches pasta to the network namespace bound at `netns`, one the host's
/// user namespace owns (made by a driver, see [`crate::Gvisor`]).
pub fn start_in(pasta_bin: &Path, netns: &Path, pid_file: &Path) -> Result<()> {
    end(running(pid_file).into_iter().collect(), pid_file)?;
    run(pasta_bin, netns, None, pid_file)
        .map_err(|e| RuntimeError::Network(format!("pasta for {} failed {e}", netns.display())))
}

/// Runs pasta until it has daemonized; the error is its status and what
/// it said.
fn run(
    pasta_bin: &Path,
    netns: &Path,
    userns: Option<&Path>,
    pid_file: &Path,
) -> std::result::Result<(), String> {
    let mut cmd = Command::new(pasta_bin);
    cmd.arg("--config-net").arg("--netns").arg(netns);
    if let Some(user) = userns {
        cmd.arg("--userns").arg(user);
    }
    let out = cmd
        .args(["--no-netns-quit", "--runas", "0", "--no-map-gw", "--quiet"])
        .args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
        .arg("--pid")
        .arg(pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("to start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| !l.starts_with("Failed to send"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(())
}

/// A sandbox's network and user namespaces bound onto files, for as long
/// as this lives.
struct NsFiles {
    net: PathBuf,
    user: PathBuf,
}

impl NsFiles {
    /// The files for the pasta of `pid_file` (whether bound or not: they
    /// go when this is dropped).
    fn at(pid_file: &Path) -> NsFiles {
        let file = |kind: &str| {
            let mut p = pid_file.as_os_str().to_owned();
            p.push(format!(".{kind}ns"));
            PathBuf::from(p)
        };
        NsFiles {
            net: file("net"),
            user: file("user"),
        }
    }

    fn bind(pid: u32, pid_file: &Path) -> Result<NsFiles> {
        let files = NsFiles::at(pid_file);
        for (kind, target) in [("net", &files.net), ("user", &files.user)] {
            // One a crash left behind goes first.
            let _ = nix::mount::umount2(target.as_path(), nix::mount::MntFlags::MNT_DETACH);
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(target)
                .map_err(|e| RuntimeError::io("create", target, e))?;
            let source = PathBuf::from(format!("/proc/{pid}/ns/{kind}"));
            nix::mount::mount(
                Some(&source),
                target.as_path(),
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| RuntimeError::io("bind", target, e.into()))?;
        }
        Ok(files)
    }
}

impl Drop for NsFiles {
    fn drop(&mut self) {
        for target in [&self.net, &self.user] {
            let _ = nix::mount::umount2(target.as_path(), nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(target);
        }
    }
}

/// The pid in `pid_file` if that process is still a pasta.
pub fn running(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // passt re-executes itself as `passt.avx2` where the CPU has AVX2.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let comm = comm.trim();
    (comm.starts_with("pasta") || comm.starts_with("passt")).then_some(pid)
}

/// The pastas started with `--pid pid_file`, whatever became of the file.
fn started_for(pid_file: &Path) -> Vec<i32> {
    let want = pid_file.as_os_str().as_encoded_bytes();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = cmd.split(|b| *b == 0);
            let is_pasta = args.next().is_some_and(|a0| {
                let name = a0.rsplit(|b| *b == b'/').next().unwrap_or(a0);
                name.starts_with(b"pasta") || name.starts_with(b"passt")
            });
            is_pasta && args.skip_while(|a| *a != b"--pid").nth(1) == Some(want)
        })
        .collect()
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Ends the pasta of `pid_file` (it would keep the namespace alive: pasta
/// does not notice its namespace's processes are gone) and removes the file.
///
/// A pasta whose file names no live pasta (a daemon killed while pasta
/// started, before it wrote the file) is found by the file's path on its
/// command line.
pub fn stop(pid_file: &Path) -> Result<()> {
    // Bound namespaces a daemon killed mid-attach left behind.
    drop(NsFiles::at(pid_file));
    let pids = match running(pid_file) {
        Some(pid) => vec![pid],
        None => started_for(pid_file),
    };
    end(pids, pid_file)
}

/// Ends the pastas `pids` and removes `pid_file`.
fn end(pids: Vec<i32>, pid_file: &Path) -> Result<()> {
    for pid in pids {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        // Not our child (it daemonized): it is gone once it is a zombie.
        let alive = || alive(pid.as_raw());
        for _ in 0..200 {
            if !alive() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if alive() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    match std::fs::remove_file(pid_file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io("remove", pid_file, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    /// Stands in for `runc init` between `runc run` returning and its exec:
    /// a process exec'd in the host's user namespace, undumpable, that has
    /// moved into user and network namespaces of its own; after 300 ms it
    /// becomes dumpable (as an exec makes it). pasta must attach then.
    const NOT_YET_EXECD: &str = "
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(4, 0) == 0
assert libc.unshare(0x10000000 | 0x40000000) == 0
open('/proc/self/uid_map', 'w').write('0 0 1')
print('ready', flush=True)
time.sleep(0.3)
assert libc.prctl(4, 1) == 0
time.sleep(30)
";

    /// A pasta that never wrote its pid file (its starter was killed) is
    /// still found, by the file's path on its command line, and ended.
    #[test]
    fn stop_ends_a_pasta_whose_pid_file_was_never_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pid_file = dir.path().join("sprite.pid");
        let other_file = dir.path().join("other.pid");
        let fake = |file: &std::path::Path| {
            // A bash named pasta, waiting on its stdin (a builtin: no
            // child to leave behind).
            Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "exec -a pasta bash -c 'read -t 60 x' --pid {}",
                    file.display()
                ))
                .stdin(Stdio::piped())
                .spawn()
                .expect("bash is needed")
        };
        let mut ours = fake(&pid_file);
        let mut other = fake(&other_file);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while super::started_for(&pid_file).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the fake pasta never ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(super::started_for(&pid_file), vec![ours.id() as i32]);
        super::stop(&pid_file).expect("stop");
        let status = ours.wait().expect("wait");
        assert!(!status.success(), "ended by a signal: {status:?}");
        // Another sprite's pasta is left alone.
        assert_eq!(other.try_wait().expect("try_wait"), None);
        let _ = other.kill();
        let _ = other.wait();
    }

    /// Namespaces bound for a pasta by a daemon killed before it took them
    /// away are unmounted and removed by the sprite's next stop.
    #[test]
    fn stop_takes_away_namespaces_left_bound() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test needs root (it bind-mounts namespaces)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let pid_file = dir.path().join("sprite.pid");
        let left = super::NsFiles::bind(std::process::id(), &pid_file).expect("bind");
        let (net, user) = (left.net.clone(), left.user.clone());
        std::mem::forget(left);
        let mounted = |p: &std::path::Path| {
            std::fs::read_to_string("/proc/self/mountinfo")
                .expect("mountinfo")
                .lines()
                .any(|l| l.split(' ').nth(4) == Some(&*p.to_string_lossy()))
        };
        assert!(mounted(&net) && mounted(&user));
        super::stop(&pid_file).expect("stop");
        for p in [&net, &user] {
            assert!(!mounted(p), "{} still mounted", p.display());
            assert!(!p.exists(), "{} still there", p.display());
        }
    }

    #[test]
    fn attaches_to_an_init_that_execs_after_run_returned() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test needs root (pasta joins another process's namespaces)"
        );
        let mut child = Command::new("python3")
            .args(["-c", NOT_YET_EXECD])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            std::io::BufReader::new(out)
                .read_line(&mut line)
                .expect("read");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let pid_file = dir.path().join("pasta.pid");
        let started = if line.trim() == "ready" {
            super::start(std::path::Path::new("pasta"), child.id(), &pid_file)
        } else {
            Ok(())
        };
        let attached = super::running(&pid_file);
        let _ = super::stop(&pid_file);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(line.trim(), "ready", "the stand-in did not start");
        started.expect("pasta attaches once init is dumpable");
        assert!(attached.is_some(), "pasta runs");
    }
}
