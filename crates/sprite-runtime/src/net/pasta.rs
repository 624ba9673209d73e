//! pasta (from passt): user-mode NAT for one network namespace.

use std::path::Path;
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
pub fn start(pasta_bin: &Path, pid: u32, pid_file: &Path) -> Result<()> {
    let _ = std::fs::remove_file(pid_file);
    let out = Command::new(pasta_bin)
        .arg("--config-net")
        .arg("--netns")
        .arg(format!("/proc/{pid}/ns/net"))
        .arg("--userns")
        .arg(format!("/proc/{pid}/ns/user"))
        .args(["--runas", "0", "--no-map-gw", "--quiet"])
        .args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
        .arg("--pid")
        .arg(pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| RuntimeError::io("spawn", pasta_bin, e))?;
    if !out.status.success() {
        return Err(RuntimeError::Network(format!(
            "pasta for pid {pid} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| !l.starts_with("Failed to send"))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(())
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

/// Whether `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Ends the pasta of `pid_file` (it would keep the namespace alive: pasta
/// does not notice its namespace's processes are gone) and removes the file.
pub fn stop(pid_file: &Path) -> Result<()> {
    if let Some(pid) = running(pid_file) {
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
