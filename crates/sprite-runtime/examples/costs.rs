//! Measures what a sprite's storage and sandbox operations cost here:
//! `cargo run --release -p sprite-runtime --example costs -- [runs]` (root).
//! Prints p50/p95/max per operation, with mkfs.ext4 of the same volume size
//! as the baseline for create_volume. Cleans up after itself.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sprite_runtime::{Driver, Runc, SandboxSpec};
use sprite_store::{ImageKind, Store, StoreOptions};

struct Cleanup(Option<tempfile::TempDir>, Vec<String>, Option<Runc>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(runc) = &self.2 {
            for id in &self.1 {
                let _ = runc.delete(id);
            }
        }
        if let Some(dir) = self.0.take() {
            let _ = sprite_store::unmount_all(dir.path());
            std::thread::sleep(Duration::from_millis(200));
            let still = sprite_store::mountinfo::read()
                .map(|m| !sprite_store::mountinfo::mounts_under(&m, dir.path()).is_empty())
                .unwrap_or(true);
            if still {
                std::mem::forget(dir);
            }
        }
    }
}

fn stats(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<28} {:>9.2} {:>9.2} {:>9.2}",
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
}

fn time<T>(samples: &mut Vec<Duration>, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    samples.push(t.elapsed());
    r
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::Builder::new()
        .prefix("sprite-costs-")
        .tempdir_in("/var/tmp")?;
    let mut cleanup = Cleanup(Some(dir), Vec::new(), None);
    let base = cleanup
        .0
        .as_ref()
        .map(|d| d.path().to_path_buf())
        .ok_or("no dir")?;
    let opts = StoreOptions::default();
    let volume_size = opts.volume_size_bytes;
    let store = Store::open(&base.join("data"), opts)?;
    store.build_image(ImageKind::Tiny, &mut |_| {})?;
    let runc_bin = PathBuf::from("/usr/sbin/runc");
    cleanup.2 = Some(Runc::new(store.data_dir().join("runc"), runc_bin.clone()));
    let runc = Runc::new(store.data_dir().join("runc"), runc_bin);
    // Make the template outside the measured runs.
    store.create_volume("warmup")?;
    store.destroy_volume("warmup")?;

    let names = [
        "mkfs.ext4 (baseline)",
        "create_volume",
        "mount_rootfs",
        "runc start",
        "first runc exec true",
        "pause",
        "resume",
        "stop (SIGKILL, delete)",
        "unmount_rootfs",
        "destroy_volume",
    ];
    let mut samples: Vec<Vec<Duration>> = names.iter().map(|_| Vec::new()).collect();
    for i in 0..runs {
        let img = base.join(format!("mkfs-{i}.img"));
        std::fs::File::create(&img)?.set_len(volume_size)?;
        time(&mut samples[0], || {
            std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F", "-b", "4096", "-m", "0"])
                .arg(&img)
                .status()
        })?;
        std::fs::remove_file(&img)?;

        let id = format!("c{}-{i}", std::process::id());
        cleanup.1.push(id.clone());
        time(&mut samples[1], || store.create_volume(&id))?;
        let rootfs = time(&mut samples[2], || store.mount_rootfs(&id, "tiny"))?;
        let sprite_dir = store.sprite_dir(&id);
        let mut spec = SandboxSpec::new(
            &id,
            rootfs,
            sprite_dir.join("bundle"),
            sprite_dir.join("init.log"),
            "/usr/bin/busybox",
        );
        spec.init_args = ["/bin/sh", "-c", "exec sleep 1000"]
            .map(String::from)
            .to_vec();
        let listener = UnixListener::bind(sprite_dir.join("agent.sock"))?;
        time(&mut samples[3], || {
            runc.start(&spec, OwnedFd::from(listener))
        })?;
        let out = time(&mut samples[4], || runc.exec(&id, &["true"]))?;
        if !out.status.success() {
            return Err(format!("exec failed: {:?}", out).into());
        }
        time(&mut samples[5], || runc.pause(&id))?;
        time(&mut samples[6], || runc.resume(&id))?;
        time(&mut samples[7], || runc.stop(&id, Duration::ZERO))?;
        time(&mut samples[8], || store.unmount_rootfs(&id))?;
        time(&mut samples[9], || store.destroy_volume(&id))?;
    }
    println!("{runs} runs, volume {} GiB, times in ms", volume_size >> 30);
    println!("{:<28} {:>9} {:>9} {:>9}", "operation", "p50", "p95", "max");
    for (name, s) in names.iter().zip(samples.iter_mut()) {
        stats(name, s);
    }
    store.shutdown()?;
    Ok(())
}
