//! LXC 5.0 (Debian's `lxc`) as a baseline beside bare runc, as issue 14
//! asks: containers of the same image's files on a btrfs pool (a loop
//! file, as ours is an XFS one), each made as a snapshot of one base
//! (`lxc-copy -s -B btrfs`), started (`lxc-start -d`, a `sleep` init) and
//! `true` run in it (`lxc-attach`); and a frozen one thawed
//! (`lxc-unfreeze`) with `true` run in it. Its network is `empty` (no
//! egress, no policy: less than ours does) and it runs unconfined (the
//! host has no AppArmor). Where the package is not installed the rows say
//! so instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

/// What to install for these rows.
pub const MISSING: &str =
    "LXC baseline not run: lxc-start or mkfs.btrfs not found (apt-get install lxc btrfs-progs)";

/// A btrfs pool holding one base container; removed on drop.
pub struct Lxc {
    dir: tempfile::TempDir,
    mnt: PathBuf,
    /// The container kept running for the thaw rows, once started.
    frozen: Option<String>,
    made: Vec<String>,
}

fn found(bin: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(bin).is_file())
}

fn run(bin: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {bin}"))?;
    if !out.status.success() {
        bail!(
            "{bin} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Lxc {
    /// A pool whose base container has `rootfs`'s files; `None` where LXC
    /// or btrfs is not installed.
    pub fn new(rootfs: &Path) -> anyhow::Result<Option<Lxc>> {
        if !found("lxc-start") || !found("mkfs.btrfs") {
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix("lxc-bench-")
            .tempdir_in("/var/tmp")?;
        let img = dir.path().join("pool.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt)?;
        std::fs::File::create(&img)?.set_len(2 << 30)?;
        let img_s = img.display().to_string();
        let mnt_s = mnt.display().to_string();
        run("mkfs.btrfs", &["-q", "-f", &img_s])?;
        run("mount", &["-o", "loop", &img_s, &mnt_s])?;
        let lxc = Lxc {
            dir,
            mnt,
            frozen: None,
            made: Vec::new(),
        };
        let base = lxc.mnt.join("base");
        std::fs::create_dir_all(&base)?;
        let root = base.join("rootfs");
        let root_s = root.display().to_string();
        run("btrfs", &["-q", "subvolume", "create", &root_s])?;
        run("cp", &["-a", &format!("{}/.", rootfs.display()), &root_s])?;
        std::fs::write(
            base.join("config"),
            format!(
                "lxc.uts.name = base\n\
                 lxc.rootfs.path = btrfs:{root_s}\n\
                 lxc.net.0.type = empty\n\
                 lxc.init.cmd = /bin/sleep 100000000\n\
                 lxc.apparmor.profile = unconfined\n\
                 lxc.mount.auto = proc:mixed sys:ro\n\
                 lxc.autodev = 1\n"
            ),
        )?;
        Ok(Some(lxc))
    }

    fn lxc(&self, bin: &str, name: &str, rest: &[&str]) -> anyhow::Result<()> {
        let mnt = self.mnt.display().to_string();
        let mut args = vec!["-P", mnt.as_str(), "-n", name];
        args.extend_from_slice(rest);
        run(bin, &args)
    }

    /// Clone, start, first `true`: the time it took, in ms.
    pub fn create_and_exec(&mut self, name: &str) -> anyhow::Result<f64> {
        let t = Instant::now();
        self.lxc("lxc-copy", "base", &["-N", name, "-s", "-B", "btrfs"])?;
        self.made.push(name.to_string());
        self.lxc("lxc-start", name, &["-d"])?;
        self.lxc("lxc-attach", name, &["--", "/bin/true"])?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }

    /// Stops and removes container `name`.
    pub fn remove(&mut self, name: &str) -> anyhow::Result<()> {
        self.lxc("lxc-stop", name, &["-k"])?;
        self.lxc("lxc-destroy", name, &[])?;
        self.made.retain(|n| n != name);
        Ok(())
    }

    /// Freezes the thaw rows' container (started the first time).
    pub fn freeze(&mut self) -> anyhow::Result<()> {
        let name = match &self.frozen {
            Some(n) => n.clone(),
            None => {
                let n = "thawed".to_string();
                self.create_and_exec(&n)?;
                self.frozen = Some(n.clone());
                n
            }
        };
        self.lxc("lxc-freeze", &name, &[])
    }

    /// Thaws it and runs `true` in it: the time it took, in ms.
    pub fn thaw_and_exec(&self) -> anyhow::Result<f64> {
        let name = self.frozen.clone().context("nothing frozen")?;
        let t = Instant::now();
        self.lxc("lxc-unfreeze", &name, &[])?;
        self.lxc("lxc-attach", &name, &["--", "/bin/true"])?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }
}

impl Drop for Lxc {
    fn drop(&mut self) {
        if let Some(n) = self.frozen.take() {
            let _ = self.lxc("lxc-unfreeze", &n, &[]);
        }
        for n in self.made.clone() {
            let _ = self.remove(&n);
        }
        // The loop device goes with the mount (mount -o loop sets autoclear).
        let _ = run("umount", &[&self.mnt.display().to_string()]);
        let _ = std::fs::remove_file(self.dir.path().join("pool.img"));
    }
}
