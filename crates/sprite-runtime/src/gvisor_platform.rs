//! Which platform the Sentry runs on, chosen once per boot of the host.
//!
//! runsc (Debian's 2022 package) has two: `ptrace`, which works wherever
//! runsc does, and `kvm`, much faster at system calls and page faults where
//! the host gives it a working `/dev/kvm` (bare metal, or a VM with nested
//! virtualisation). A `/dev/kvm` can be there and not work for it: on a
//! host whose KVM is itself paravirtualised (PVM), a KVM sandbox never
//! starts. So `auto` does not guess from the device: it runs a sandbox
//! (`runsc do /bin/true`) on `kvm` and takes `kvm` only if that finishes
//! within [`PROBE_TIMEOUT`]. The answer holds until the host reboots or
//! runsc changes, and is kept in [`CACHE`] so that only the first daemon
//! of a boot pays for the probe (a few seconds where KVM hangs; every
//! daemon of the host waits on the same lock meanwhile).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long the KVM sandbox of the probe may take (it takes well under a
/// second where KVM works).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);
/// Where the probe's answer is kept for the boot.
pub const CACHE: &str = "/run/sprited/gvisor-platform.json";

/// A platform of runsc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Ptrace,
    Kvm,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ptrace => "ptrace",
            Platform::Kvm => "kvm",
        }
    }
}

/// What the daemon was told to use (`--gvisor-platform`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Probe (once per boot) and take `kvm` where it works.
    Auto,
    Fixed(Platform),
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Choice, String> {
        match s {
            "auto" => Ok(Choice::Auto),
            "ptrace" => Ok(Choice::Fixed(Platform::Ptrace)),
            "kvm" => Ok(Choice::Fixed(Platform::Kvm)),
            other => Err(format!("{other:?}: use auto, ptrace or kvm")),
        }
    }
}

/// The platform in use and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chosen {
    pub platform: Platform,
    pub why: String,
}

/// The probe's answer as kept, with what it holds for.
#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    boot_id: String,
    runsc: String,
    chosen: Chosen,
}

/// The platform for `choice`: a fixed one as it is; `auto` from the answer
/// kept for this boot and this runsc (`runsc_version`), else probed (and
/// kept, where [`CACHE`] can be written).
pub fn choose(runsc_bin: &Path, runsc_version: &str, choice: Choice) -> Chosen {
    match choice {
        Choice::Fixed(platform) => Chosen {
            platform,
            why: "set by --gvisor-platform".into(),
        },
        Choice::Auto => choose_auto(runsc_bin, runsc_version, Path::new(CACHE)),
    }
}

fn choose_auto(runsc_bin: &Path, runsc_version: &str, cache: &Path) -> Chosen {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let probe = || probed(probe_kvm(runsc_bin, PROBE_TIMEOUT));
    let Some(mut file) = open_locked(cache) else {
        return probe();
    };
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    if let Some(chosen) = still_holds(&text, &boot_id, runsc_version) {
        return chosen;
    }
    let chosen = probe();
    let kept = Kept {
        boot_id,
        runsc: runsc_version.to_string(),
        chosen: chosen.clone(),
    };
    if let Ok(json) = serde_json::to_vec(&kept) {
        let _ = file.set_len(0).and_then(|()| {
            use std::io::Seek;
            file.seek(std::io::SeekFrom::Start(0))?;
            file.write_all(&json)
        });
    }
    chosen
}

/// The cache file, created if need be, locked exclusively until the
/// returned guard is dropped; `None` where it cannot be.
fn open_locked(cache: &Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir).ok()?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(cache)
        .ok()?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()
}

/// The kept answer in `text`, if it was made on this boot for this runsc.
fn still_holds(text: &str, boot_id: &str, runsc_version: &str) -> Option<Chosen> {
    let kept: Kept = serde_json::from_str(text).ok()?;
    (!boot_id.is_empty() && kept.boot_id == boot_id && kept.runsc == runsc_version)
        .then_some(kept.chosen)
}

fn probed(result: Result<(), String>) -> Chosen {
    match result {
        Ok(()) => Chosen {
            platform: Platform::Kvm,
            why: "auto: a KVM sandbox ran here".into(),
        },
        Err(why) => Chosen {
            platform: Platform::Ptrace,
            why: format!("auto: {why}"),
        },
    }
}

/// Whether runsc's KVM platform runs a sandbox on this host: `runsc do
/// /bin/true` on it, given `timeout` (killed after that). Leaves nothing
/// behind (no cgroups: `--ignore-cgroups`; its state in a directory of its
/// own, removed after).
pub fn probe_kvm(runsc_bin: &Path, timeout: Duration) -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("/dev/kvm cannot be used ({e})"));
    }
    let root = probe_root();
    let result = run_probe(runsc_bin, &root, timeout);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn probe_root() -> PathBuf {
    std::env::temp_dir().join(format!("sprited-kvm-probe-{}", std::process::id()))
}

fn run_probe(runsc_bin: &Path, root: &Path, timeout: Duration) -> Result<(), String> {
    let mut stderr_file = tempfile_in_root(root)?;
    let mut child = Command::new(runsc_bin)
        .arg("--root")
        .arg(root)
        .args([
            "--network=none",
            "--ignore-cgroups",
            "--platform=kvm",
            "do",
            "--quiet",
            "/bin/true",
        ])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file.try_clone().map_err(|e| e.to_string())?)
        // Its own process group, all of which goes if it hangs.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("runsc cannot be run: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut text = String::new();
                use std::io::Seek;
                let _ = stderr_file.seek(std::io::SeekFrom::Start(0));
                let _ = stderr_file.read_to_string(&mut text);
                let last = text.lines().last().unwrap_or("").trim().to_string();
                return Err(format!("a KVM sandbox failed ({status}): {last}"));
            }
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "a KVM sandbox did not finish within {}s (a /dev/kvm that does not run runsc's guest, e.g. a paravirtualised one)",
                    timeout.as_secs()
                ));
            }
        }
    }
}

fn tempfile_in_root(root: &Path) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let path = root.join("stderr");
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse::<Choice>(), Ok(Choice::Auto));
        assert_eq!("kvm".parse::<Choice>(), Ok(Choice::Fixed(Platform::Kvm)));
        assert!("systrap".parse::<Choice>().is_err());
    }

    #[test]
    fn a_kept_answer_holds_for_its_boot_and_runsc_only() {
        let kept = Kept {
            boot_id: "b1".into(),
            runsc: "runsc 1".into(),
            chosen: Chosen {
                platform: Platform::Kvm,
                why: "auto: a KVM sandbox ran here".into(),
            },
        };
        let text = serde_json::to_string(&kept).expect("json");
        assert_eq!(
            still_holds(&text, "b1", "runsc 1").map(|c| c.platform),
            Some(Platform::Kvm)
        );
        assert_eq!(still_holds(&text, "b2", "runsc 1"), None, "rebooted");
        assert_eq!(still_holds(&text, "b1", "runsc 2"), None, "upgraded");
        assert_eq!(still_holds(&text, "", "runsc 1"), None, "no boot id");
        assert_eq!(still_holds("", "b1", "runsc 1"), None, "empty file");
        assert_eq!(still_holds("{", "b1", "runsc 1"), None, "torn file");
    }
}
