//! End-to-end storage tests. They need root, mkfs.xfs, mkfs.ext4 and
//! busybox-static, and fail saying what is missing where those are absent
//! (`scripts/deps.sh` installs them).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sprite_store::{mountinfo, ImageKind, Progress, Settled, Store, StoreError, StoreOptions};

const GIB: u64 = 1 << 30;
const SHIFT: u32 = 100_000;

fn prerequisites_missing() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root".into());
    }
    for tool in ["mkfs.xfs", "mkfs.ext4"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Some(format!("needs {tool}"));
        }
    }
    if !Path::new("/usr/bin/busybox").exists() && !Path::new("/bin/busybox").exists() {
        return Some("needs busybox-static".into());
    }
    None
}

macro_rules! require_env {
    () => {
        if let Some(why) = prerequisites_missing() {
            panic!("this test {why} (scripts/deps.sh installs the tools)");
        }
    };
}

/// A data dir on the host's root filesystem that is unmounted (and its loop
/// devices cleared) and removed when the test ends, pass or fail.
struct Fixture {
    dir: Option<tempfile::TempDir>,
    data: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sprite-store-test-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let data = dir.path().join("data");
        Fixture {
            dir: Some(dir),
            data,
        }
    }

    fn options() -> StoreOptions {
        StoreOptions {
            pool_size_bytes: 4 * GIB,
            uid_shift: Some(SHIFT),
            volume_size_bytes: GIB,
            image_cache: None,
            min_free_bytes: 0,
        }
    }

    fn open(&self) -> Store {
        Store::open(&self.data, Self::options()).expect("open store")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if let Err(e) = sprite_store::unmount_all(dir.path()) {
            eprintln!("cleanup: {e}");
        }
        wait_loops_cleared(dir.path());
        let still_mounted = mountinfo::read()
            .map(|m| !mountinfo::mounts_under(&m, dir.path()).is_empty())
            .unwrap_or(true);
        if still_mounted {
            // Never delete through a mount; leave the directory behind instead.
            eprintln!("cleanup: mounts remain under {}", dir.path().display());
            std::mem::forget(dir);
        }
    }
}

/// Autoclear runs once the last reference drops; give it a moment.
fn wait_loops_cleared(dir: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if sprite_store::loop_devices_under(dir).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mountinfo::mounts_under(&mountinfo::read().expect("mountinfo"), dir)
}

/// What a reboot does to our mounts: gone, with no orderly unmount.
fn simulate_reboot(dir: &Path) {
    for target in mounts_under(dir) {
        nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).expect("lazy unmount");
    }
    assert!(
        wait_loops_cleared(dir),
        "loop devices survived the 'reboot'"
    );
}

#[test]
fn pool_images_volumes_and_rootfs() {
    require_env!();
    let fx = Fixture::new();
    let store = fx.open();
    let data = store.data_dir().to_path_buf();

    // The root filesystem here is ext4: the pool must be a loop-mounted XFS.
    if store.pool_is_loop() {
        let mounts = mountinfo::read().expect("mountinfo");
        let pool = mountinfo::mount_at(&mounts, store.pool_dir()).expect("pool mounted");
        assert_eq!(pool.fs_type, "xfs");
        assert!(pool.source.starts_with("/dev/loop"));
    }
    assert_eq!(
        std::fs::metadata(&data).expect("stat").mode() & 0o777,
        0o711
    );
    // Opening again reuses the mounted pool.
    drop(store);
    let store = fx.open();
    assert_eq!(
        mounts_under(&data).len(),
        usize::from(store.pool_is_loop()),
        "pool mounted twice"
    );

    // Tiny image: progress, layout, ownership shifted.
    let mut steps: Vec<Progress> = Vec::new();
    let manifest = store
        .build_image(ImageKind::Tiny, &mut |p| steps.push(p))
        .expect("build tiny");
    assert!(store.image_ready("tiny"));
    assert!(!store.image_ready("standard"));
    assert_eq!(manifest.uid_shift, Some(SHIFT));
    assert!(
        steps.windows(2).all(|w| w[0].fraction <= w[1].fraction),
        "{steps:?}"
    );
    assert_eq!(steps.last().map(|p| p.fraction), Some(1.0));
    let rootfs = store.image_rootfs("tiny");
    let stat = |p: &str| std::fs::symlink_metadata(rootfs.join(p)).expect(p);
    assert_eq!(
        (stat("bin/busybox").uid(), stat("bin/busybox").gid()),
        (SHIFT, SHIFT)
    );
    assert_eq!(stat("bin/busybox").mode() & 0o777, 0o755);
    assert_eq!(stat("bin/sh").uid(), SHIFT, "symlinks are shifted too");
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).expect("link"),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        (stat("home/sprite").uid(), stat("home/sprite").gid()),
        (SHIFT + 1000, SHIFT + 1000)
    );
    assert_eq!(stat("home/sprite").mode() & 0o7777, 0o755);
    assert_eq!(stat("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(stat("root").mode() & 0o7777, 0o700);
    for dir in ["proc", "sys", "dev", ".sprite", "mnt"] {
        assert!(stat(dir).is_dir(), "{dir}");
    }
    assert!(stat(".sprite/bin/sprite-agent").is_file());
    // The mount point of the daemon's guide for models.
    assert!(stat(".sprite/llm.txt").is_file());
    assert_eq!(stat("etc/resolv.conf").len(), 0);
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("root:x:0:0:"));
    assert!(passwd.contains("sprite:x:1000:1000:sprite:/home/sprite:/bin/sh"));
    assert!(std::fs::read_to_string(rootfs.join("etc/group"))
        .expect("group")
        .contains("sprite:x:1000:"));
    // Idempotent: a second build returns the existing image.
    let again = store
        .build_image(ImageKind::Tiny, &mut |_| {})
        .expect("rebuild");
    assert_eq!(again, manifest);

    // Volumes: clones of the template, sparse, refusing to clobber. A
    // template of the older layout is removed once its successor is made.
    let legacy = store.pool_dir().join(format!("templates/ext4-{GIB}.img"));
    std::fs::create_dir_all(legacy.parent().expect("templates dir")).expect("mkdir");
    std::fs::write(&legacy, b"old layout").expect("legacy template");
    store.create_volume("a").expect("create a");
    assert!(!legacy.exists(), "the older layout's template is left");
    store.create_volume("b").expect("create b");
    assert!(matches!(
        store.create_volume("a"),
        Err(StoreError::VolumeExists(_))
    ));
    assert!(matches!(
        store.create_volume("../x"),
        Err(StoreError::InvalidName(_))
    ));
    let usage = store.volume_usage("a").expect("usage");
    assert_eq!(usage.apparent_bytes, GIB);
    assert!(
        usage.allocated_bytes < 64 << 20,
        "clone allocated {} bytes",
        usage.allocated_bytes
    );
    assert_shares_extents(&store.volume_path("a"));
    assert_no_lazy_init(&store.volume_path("a"));
    // Its extents do not grow with its size (the groups' metadata side by
    // side, two backup superblocks): a clone, which costs per extent,
    // costs as much for 100 GiB as for 1 (the older layout had 69 runs of
    // data at 100 GiB, 10 at 1).
    store
        .create_volume_sized("huge", 100 * GIB)
        .expect("create huge");
    let (small, huge) = (
        data_extents(&store.volume_path("a")),
        data_extents(&store.volume_path("huge")),
    );
    assert!(
        huge <= small + 2,
        "a 100 GiB volume has {huge} extents of data, a 1 GiB one {small}"
    );
    assert_no_lazy_init(&store.volume_path("huge"));
    store.destroy_volume("huge").expect("destroy huge");

    // Mount both; what one writes the other does not see.
    let root_a = store.mount_rootfs("a", "tiny").expect("mount a");
    let root_b = store.mount_rootfs("b", "tiny").expect("mount b");
    assert_eq!(root_a, store.sprite_dir("a").join("rootfs"));
    assert!(root_a.join("bin/busybox").exists());
    std::fs::write(root_a.join("home/sprite/hello"), b"persist me").expect("write");
    assert!(!root_b.join("home/sprite/hello").exists());
    assert!(
        !rootfs.join("home/sprite/hello").exists(),
        "write reached the image"
    );
    let upper = store.sprite_dir("a").join("volume/upper");
    assert_eq!(std::fs::metadata(&upper).expect("upper").uid(), SHIFT);
    assert_eq!(
        std::fs::metadata(store.sprite_dir("a"))
            .expect("stat")
            .mode()
            & 0o777,
        0o711
    );
    assert_eq!(
        std::fs::metadata(store.sprite_dir("a").join("volume"))
            .expect("stat")
            .uid(),
        SHIFT
    );

    // Mounting again is a no-op.
    assert_eq!(store.mount_rootfs("a", "tiny").expect("remount"), root_a);
    let overlays = mountinfo::read()
        .expect("mountinfo")
        .into_iter()
        .filter(|m| m.mount_point == root_a)
        .count();
    assert_eq!(overlays, 1);

    // Unmount (twice: tolerated), remount, data is still there.
    store.unmount_rootfs("a").expect("unmount");
    assert!(!store.is_rootfs_mounted("a").expect("check"));
    store.unmount_rootfs("a").expect("unmount again");
    store.mount_rootfs("a", "tiny").expect("mount again");
    assert_eq!(
        std::fs::read(root_a.join("home/sprite/hello")).expect("read"),
        b"persist me"
    );

    // Half-mounted (volume without overlay) is repaired.
    nix::mount::umount2(&root_b, nix::mount::MntFlags::empty()).expect("umount overlay");
    store.mount_rootfs("b", "tiny").expect("repair b");
    assert!(store.is_rootfs_mounted("b").expect("check"));

    // "Reboot": every mount and loop device vanishes; opening the store and
    // mounting again brings everything back.
    drop(store);
    simulate_reboot(&data);
    assert!(mounts_under(&data).is_empty());
    let store = fx.open();
    assert!(store.image_ready("tiny"));
    let root_a = store.mount_rootfs("a", "tiny").expect("mount after reboot");
    assert_eq!(
        std::fs::read(root_a.join("home/sprite/hello")).expect("read"),
        b"persist me"
    );

    // Destroy removes the volume and the sprite dir, mounted or not.
    store.mount_rootfs("b", "tiny").expect("mount b");
    store.destroy_volume("b").expect("destroy b");
    assert!(!store.volume_exists("b"));
    assert!(!store.sprite_dir("b").exists());
    store.destroy_volume("b").expect("destroy is idempotent");
    assert!(matches!(
        store.mount_rootfs("b", "tiny"),
        Err(StoreError::VolumeMissing(_))
    ));

    // Shutdown unmounts everything and the loop devices go away.
    store.shutdown().expect("shutdown");
    assert!(mounts_under(&data).is_empty(), "{:?}", mounts_under(&data));
    assert!(
        wait_loops_cleared(&data),
        "{:?}",
        sprite_store::loop_devices_under(&data)
    );
    let proc_mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    assert!(!proc_mounts.contains(data.to_str().expect("utf8")));
}

#[test]
fn busy_rootfs_is_not_unmounted_or_destroyed() {
    require_env!();
    let fx = Fixture::new();
    let store = fx.open();
    store
        .build_image(ImageKind::Tiny, &mut |_| {})
        .expect("build");
    store.create_volume("busy").expect("create");
    let root = store.mount_rootfs("busy", "tiny").expect("mount");
    let open_file = std::fs::File::create(root.join("tmp/held")).expect("hold");
    assert!(matches!(
        store.unmount_rootfs("busy"),
        Err(StoreError::Busy(_))
    ));
    assert!(matches!(
        store.destroy_volume("busy"),
        Err(StoreError::Busy(_))
    ));
    assert!(store.volume_exists("busy"));
    drop(open_file);
    store.destroy_volume("busy").expect("destroy");
    assert!(!store.volume_exists("busy"));
}

#[test]
fn missing_image_and_volume() {
    require_env!();
    let fx = Fixture::new();
    let store = fx.open();
    store.create_volume("v").expect("create");
    assert!(matches!(
        store.mount_rootfs("v", "tiny"),
        Err(StoreError::ImageMissing(_))
    ));
    store
        .build_image(ImageKind::Tiny, &mut |_| {})
        .expect("build");
    assert!(matches!(
        store.mount_rootfs("nope", "tiny"),
        Err(StoreError::VolumeMissing(_))
    ));
    // A store with another uid shift does not take this image as ready.
    drop(store);
    let other = Store::open(
        &fx.data,
        StoreOptions {
            uid_shift: Some(200_000),
            ..Fixture::options()
        },
    )
    .expect("open");
    assert!(!other.image_ready("tiny"));
    assert!(matches!(
        other.build_image(ImageKind::Tiny, &mut |_| {}),
        Err(StoreError::ImageShiftMismatch { .. })
    ));
}

/// How many runs of data (between holes) the file has.
fn data_extents(path: &Path) -> usize {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).expect("open");
    let size = file.metadata().expect("stat").len() as i64;
    let (mut at, mut runs) = (0i64, 0);
    while at < size {
        let Ok(start) = lseek(file.as_raw_fd(), at, Whence::SeekData) else {
            break;
        };
        let end = lseek(file.as_raw_fd(), start, Whence::SeekHole).expect("SEEK_HOLE");
        runs += 1;
        at = end;
    }
    runs
}

/// The clone shares its extents with the template (XFS reports them shared).
fn assert_shares_extents(path: &Path) {
    let Ok(out) = std::process::Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
    else {
        eprintln!("filefrag missing: sharing not checked");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("shared"),
        "no shared extents in {}:\n{text}",
        path.display()
    );
}

/// Every block group's inode table is marked initialised, so mounting a clone
/// starts no ext4lazyinit thread writing (and un-sharing) inode tables.
fn assert_no_lazy_init(volume: &Path) {
    let Ok(out) = std::process::Command::new("dumpe2fs").arg(volume).output() else {
        eprintln!("dumpe2fs missing: lazy init not checked");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let groups = text
        .lines()
        .filter(|l| {
            l.strip_prefix("Group ")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    let zeroed = text.matches("ITABLE_ZEROED").count();
    assert!(groups > 0, "no block groups in dumpe2fs output");
    assert_eq!(zeroed, groups, "inode tables left for lazy init");
}

#[test]
fn image_cache_is_filled_once_then_copied_and_recipes_are_checked() {
    require_env!();
    let cache = tempfile::tempdir().expect("cache dir");
    let with_cache = || StoreOptions {
        image_cache: Some(cache.path().to_path_buf()),
        ..Fixture::options()
    };
    let (fx1, fx2) = (Fixture::new(), Fixture::new());
    let first = Store::open(&fx1.data, with_cache()).expect("open");
    let built = first
        .build_image(ImageKind::Tiny, &mut |_| {})
        .expect("build");
    assert_eq!(built.recipe.as_deref(), Some(ImageKind::Tiny.recipe()));
    let archive = cache
        .path()
        .join(format!("{}-shift-{SHIFT}.tar", ImageKind::Tiny.recipe()));
    assert!(archive.is_file(), "the build is kept in the cache");
    // A second store copies it: the same manifest, no build phases.
    let second = Store::open(&fx2.data, with_cache()).expect("open");
    let mut phases = Vec::new();
    let copied = second
        .build_image(ImageKind::Tiny, &mut |p| phases.push(p.phase))
        .expect("copy");
    assert_eq!(copied, built);
    assert!(
        phases.iter().all(|p| !p.contains("busybox")),
        "copied, not built: {phases:?}"
    );
    assert!(!second.image_outdated(ImageKind::Tiny));

    // The sprite's `/` is the image's: group `sprite` may add folders, the
    // sticky bit keeps what others own.
    second.create_volume("top").expect("volume");
    let root = second.mount_rootfs("top", "tiny").expect("mount");
    let top = std::fs::metadata(&root).expect("stat /");
    assert_eq!((top.uid(), top.gid()), (SHIFT, SHIFT + 1000));
    assert_eq!(top.mode() & 0o7777, 0o1775);
    second.unmount_rootfs("top").expect("unmount");

    // An image from another recipe is known as outdated, and can go.
    let rootfs = first.image_rootfs("tiny");
    let manifest = rootfs.with_file_name("manifest.json");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let old = text.replace(ImageKind::Tiny.recipe(), "tiny-0");
    std::fs::write(&manifest, old).expect("write");
    assert!(first.image_outdated(ImageKind::Tiny));
    first.remove_image("tiny").expect("remove");
    assert!(!first.image_ready("tiny") && !first.image_outdated(ImageKind::Tiny));
}

/// Building the Debian image takes ~2 min and the network to the Debian
/// mirror: run by hand with `cargo test -p sprite-store -- --ignored`.
#[test]
#[ignore]
fn standard_image_builds() {
    require_env!();
    let fx = Fixture::new();
    let store = fx.open();
    let started = Instant::now();
    let mut last = 0.0;
    let manifest = store
        .build_image(ImageKind::Standard, &mut |p| {
            assert!(p.fraction >= last, "progress went back: {p:?}");
            last = p.fraction;
            eprintln!("[{:>3.0}%] {}", p.fraction * 100.0, p.phase);
        })
        .expect("build standard");
    eprintln!("standard image: {:?} in {:?}", manifest, started.elapsed());
    let rootfs = store.image_rootfs("standard");
    for bin in [
        "usr/bin/bash",
        "usr/bin/python3",
        "usr/bin/git",
        "usr/bin/curl",
        "usr/bin/sudo",
        "usr/bin/node",
        "usr/bin/npm",
        "usr/bin/go",
        "usr/bin/cargo",
        "usr/bin/ruby",
        "usr/bin/jq",
        "opt/venv/bin/pip",
    ] {
        assert!(rootfs.join(bin).exists(), "{bin} missing");
    }
    let sudo = std::fs::metadata(rootfs.join("usr/bin/sudo")).expect("sudo");
    assert_eq!(sudo.uid(), SHIFT);
    assert_ne!(sudo.mode() & 0o4000, 0, "setuid bit lost in the shift");
    let sudoers = std::fs::metadata(rootfs.join("etc/sudoers.d/sprite")).expect("sudoers");
    assert_eq!(sudoers.mode() & 0o777, 0o440);
    let home = std::fs::metadata(rootfs.join("home/sprite")).expect("home");
    assert_eq!((home.uid(), home.gid()), (SHIFT + 1000, SHIFT + 1000));
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd"))
        .expect("passwd")
        .contains("sprite:x:1000:1000:"));
    assert!(rootfs.join(".sprite/bin/sprite-agent").is_file());
}

/// `fsck_clean` of a crash-consistent image (a checkpoint): a reflink copy
/// of it, its journal replayed as its next mount would.
fn fsck_replayed(image: &Path) {
    let copy = image.with_extension("fsck");
    let _ = std::fs::remove_file(&copy);
    let cp = std::process::Command::new("cp")
        .arg("--reflink=always")
        .arg(image)
        .arg(&copy)
        .status()
        .expect("run cp");
    assert!(cp.success(), "cp --reflink {}", image.display());
    let replay = std::process::Command::new("e2fsck")
        .args(["-E", "journal_only", "-p"])
        .arg(&copy)
        .output()
        .expect("run e2fsck");
    assert!(
        matches!(replay.status.code(), Some(0) | Some(1)),
        "journal replay of {}: {}{}",
        image.display(),
        String::from_utf8_lossy(&replay.stdout),
        String::from_utf8_lossy(&replay.stderr)
    );
    fsck_clean(&copy);
    std::fs::remove_file(&copy).expect("remove the copy");
}

/// Whether the ext4 image's superblock asks for a journal replay
/// (`needs_recovery`), as `dumpe2fs -h` lists its features.
fn needs_recovery(image: &Path) -> bool {
    let out = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(image)
        .output()
        .expect("run dumpe2fs");
    assert!(out.status.success(), "dumpe2fs -h {}", image.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let features = text
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .expect("features line");
    features.split_whitespace().any(|f| f == "needs_recovery")
}

fn fsck_clean(image: &Path) {
    let out = std::process::Command::new("e2fsck")
        .args(["-fn"])
        .arg(image)
        .output()
        .expect("run e2fsck");
    assert!(
        out.status.success(),
        "e2fsck {}: {}{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_frozen_writable(dir: &Path) -> bool {
    // A write to a frozen filesystem blocks; do it in a thread with a deadline.
    let file = dir.join(".probe");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::fs::write(&file, b"x").and_then(|()| std::fs::remove_file(&file));
        let _ = tx.send(r.is_ok());
    });
    rx.recv_timeout(Duration::from_secs(3)).unwrap_or(false)
}

#[test]
fn checkpoints_restore_fork_and_views() {
    require_env!();
    let fx = Fixture::new();
    let store = fx.open();
    store
        .build_image(ImageKind::Tiny, &mut |_| {})
        .expect("build tiny");
    store.create_volume("s").expect("volume");
    let root = store.mount_rootfs("s", "tiny").expect("mount");
    let file = root.join("home/sprite/state");
    std::fs::write(&file, b"one").expect("write");
    std::fs::write(root.join("home/sprite/gone-later"), b"x").expect("write");

    // A checkpoint of the mounted volume, while it is in use.
    let stats = store.create_checkpoint("s", "v0").expect("checkpoint v0");
    assert_eq!(
        stats.frozen_for,
        Duration::ZERO,
        "a mounted volume is not frozen"
    );
    assert!(stats.synced_for <= stats.total);
    assert!(matches!(
        store.create_checkpoint("s", "v0"),
        Err(StoreError::CheckpointExists { .. })
    ));
    std::fs::write(&file, b"two").expect("write");
    std::fs::remove_file(root.join("home/sprite/gone-later")).expect("rm");
    store.create_checkpoint("s", "v1").expect("checkpoint v1");
    std::fs::write(&file, b"three").expect("write");
    assert_eq!(store.checkpoint_names("s").expect("names"), ["v0", "v1"]);
    // What a listing shows of local disk: the volume's and both images'
    // allocated bytes, two checkpoints; a stray file in the directory is
    // not a checkpoint.
    std::fs::write(store.checkpoint_path("s", "v1").with_extension("tmp"), b"x").expect("stray");
    // Nothing left to write back, so that the allocations measured below
    // stay as they are: the volume's ext4 flushed (its data, journal and
    // metadata), then its image on the pool. A write-back between two of
    // the measurements added a block to the image once.
    {
        use std::os::fd::AsRawFd;
        let mnt = store.sprite_dir("s").join("volume");
        let dir = std::fs::File::open(&mnt).expect("open the volume mount");
        nix::unistd::syncfs(dir.as_raw_fd()).expect("syncfs");
        std::fs::File::open(store.volume_path("s"))
            .and_then(|f| f.sync_all())
            .expect("fsync the image");
    }
    let allocated = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).expect("stat").blocks() * 512
    };
    let usage = store.local_usage("s").expect("local usage");
    assert_eq!(usage.checkpoints, 2);
    assert_eq!(
        usage.bytes,
        allocated(&store.volume_path("s"))
            + allocated(&store.checkpoint_path("s", "v0"))
            + allocated(&store.checkpoint_path("s", "v1"))
    );
    assert_eq!(
        store.local_usage("nobody").expect("none"),
        Default::default()
    );
    // The quota's measure: shared blocks once, so under the sum of the
    // allocations; asked whether it reaches a limit, the answer is the
    // same whether the sum settles it or the extents have to be read.
    let held = store.footprint("s").expect("footprint");
    assert!(held > 0 && held < usage.bytes, "{held} of {}", usage.bytes);
    for (limit, reached) in [
        (usage.bytes + 1, None),
        (usage.bytes, None),
        (held + 1, None),
        (held, Some(held)),
        (1, Some(held)),
    ] {
        assert_eq!(
            store.footprint_reaching("s", limit).expect("reaching"),
            reached,
            "limit {limit}, held {held}, allocated {}",
            usage.bytes
        );
    }
    assert!(
        is_frozen_writable(&store.sprite_dir("s").join("volume")),
        "left frozen"
    );
    assert_shares_extents(&store.checkpoint_path("s", "v0"));
    // Crash-consistent images: clean once their journal is replayed (and
    // the checkpoints themselves untouched by the views made of them).
    fsck_replayed(&store.checkpoint_path("s", "v0"));
    fsck_replayed(&store.checkpoint_path("s", "v1"));

    // Settled: v1's journal replayed into it once, so its mounts need not;
    // the image is then clean as it is (no replay before the fsck), still
    // shares its blocks with the volume, and settles to nothing again.
    // v0 stays as taken, for the views and restore below to replay.
    let v1 = store.checkpoint_path("s", "v1");
    assert!(needs_recovery(&v1), "a checkpoint of a mounted volume");
    assert_eq!(
        store.settle_checkpoint("s", "v1").expect("settle v1"),
        Settled::Replayed
    );
    assert!(!needs_recovery(&v1), "settled, the journal is replayed");
    fsck_clean(&v1);
    assert_shares_extents(&v1);
    assert_eq!(
        store.settle_checkpoint("s", "v1").expect("settle v1 again"),
        Settled::Clean
    );
    assert_eq!(
        store
            .settle_checkpoint("s", "v9")
            .expect("settle a missing one"),
        Settled::Gone
    );
    assert!(
        std::fs::read_dir(v1.parent().expect("dir"))
            .expect("list")
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".settle")),
        "the settle's clone is left behind"
    );

    // Views: the whole filesystem as it was, read-only.
    store
        .show_checkpoints("s", "tiny", &["v0".into(), "v1".into()])
        .expect("show");
    let views = store.views_dir("s");
    assert_eq!(
        std::fs::read(views.join("v0/home/sprite/state")).expect("v0"),
        b"one"
    );
    assert_eq!(
        std::fs::read(views.join("v1/home/sprite/state")).expect("v1"),
        b"two"
    );
    assert!(views.join("v0/home/sprite/gone-later").exists());
    assert!(
        !views.join("v1/home/sprite/gone-later").exists(),
        "whiteout ignored"
    );
    assert!(
        views.join("v0/bin/busybox").exists(),
        "base image missing in the view"
    );
    let err = std::fs::write(views.join("v0/home/sprite/state"), b"x").expect_err("view writable");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert_eq!(store.shown_checkpoints("s").expect("shown"), ["v0", "v1"]);
    store
        .show_checkpoints("s", "tiny", &["v1".into()])
        .expect("show v1 only");
    assert_eq!(store.shown_checkpoints("s").expect("shown"), ["v1"]);
    let mounts = mountinfo::read().expect("mountinfo");
    let shared = mountinfo::mount_at(&mounts, &views).expect("views root mounted");
    let _ = shared;

    // Restore needs the volume unmounted; then the file is as in v0.
    assert!(matches!(
        store.restore_checkpoint("s", "v0"),
        Err(StoreError::Busy(_))
    ));
    store.unmount_rootfs("s").expect("unmount");
    assert!(
        mounts_under(&store.sprite_dir("s")).is_empty(),
        "{:?}",
        mounts_under(&store.sprite_dir("s"))
    );
    store.restore_checkpoint("s", "v0").expect("restore v0");
    fsck_replayed(&store.volume_path("s"));
    let root = store.mount_rootfs("s", "tiny").expect("mount");
    assert_eq!(std::fs::read(&file).expect("read"), b"one");
    assert!(root.join("home/sprite/gone-later").exists());
    assert!(matches!(
        store.restore_checkpoint("s", "v7"),
        Err(StoreError::CheckpointMissing { .. })
    ));

    // Fork: a new volume from v1.
    store.fork_volume("s", "v1", "f").expect("fork");
    assert!(matches!(
        store.fork_volume("s", "v1", "f"),
        Err(StoreError::VolumeExists(_))
    ));
    assert!(matches!(
        store.fork_volume("s", "v9", "g"),
        Err(StoreError::CheckpointMissing { .. })
    ));
    let froot = store.mount_rootfs("f", "tiny").expect("mount fork");
    assert_eq!(
        std::fs::read(froot.join("home/sprite/state")).expect("fork"),
        b"two"
    );
    assert_eq!(
        store.checkpoint_names("f").expect("names"),
        Vec::<String>::new()
    );

    // Delete frees the file; unknown ones are reported.
    store
        .show_checkpoints("s", "tiny", &["v1".into()])
        .expect("show");
    store.delete_checkpoint("s", "v1").expect("delete");
    assert!(store.shown_checkpoints("s").expect("shown").is_empty());
    assert_eq!(store.checkpoint_names("s").expect("names"), ["v0"]);
    assert!(matches!(
        store.delete_checkpoint("s", "v1"),
        Err(StoreError::CheckpointMissing { .. })
    ));

    // A killed process leaves a frozen volume and a half-made clone behind:
    // recover thaws and tidies.
    let vol = store.sprite_dir("s").join("volume");
    let status = std::process::Command::new("fsfreeze")
        .arg("-f")
        .arg(&vol)
        .status()
        .expect("fsfreeze");
    assert!(status.success());
    let leftover = store.checkpoint_path("s", "v0").with_file_name(".v5.tmp");
    std::fs::write(&leftover, b"partial").expect("leftover");
    let unsettled = store
        .checkpoint_path("s", "v0")
        .with_file_name(".v0.settle");
    std::fs::write(&unsettled, b"partial").expect("leftover settle");
    store.recover().expect("recover");
    assert!(is_frozen_writable(&vol), "still frozen after recover");
    assert!(!leftover.exists());
    assert!(!unsettled.exists());
    assert_eq!(store.checkpoint_names("s").expect("names"), ["v0"]);

    // Destroy removes the checkpoints too.
    store.destroy_volume("s").expect("destroy");
    assert!(!store.checkpoint_path("s", "v0").exists());
    store.destroy_volume("f").expect("destroy fork");
}

/// A restore's old root goes out of the way at once: nothing is mounted
/// under the sprite by the time `discard_rootfs` returns, the volume can be
/// swapped and mounted again straight away (the checkpoint's contents, not
/// the discarded ones), and the old filesystem's loop device lets go of the
/// replaced image by itself soon after.
#[test]
fn a_discarded_root_is_out_of_the_way_at_once() {
    require_env!();
    let fx = Fixture::new();
    let store = fx.open();
    store
        .build_image(ImageKind::Tiny, &mut |_| {})
        .expect("build tiny");
    store.create_volume("d").expect("volume");
    // Nothing mounted: nothing to do.
    drop(store.discard_rootfs("d").expect("discard unmounted"));
    let root = store.mount_rootfs("d", "tiny").expect("mount");
    let file = root.join("home/sprite/state");
    std::fs::write(&file, b"kept").expect("write");
    store.create_checkpoint("d", "v0").expect("checkpoint");
    // Unwritten data the discard must not wait for, nor let through.
    std::fs::write(&file, b"discarded").expect("write");
    std::fs::write(root.join("home/sprite/big"), vec![7u8; 32 << 20]).expect("write");
    store
        .show_checkpoints("d", "tiny", &["v0".into()])
        .expect("show");

    // The checkpoint views stay shown, the same mounts, through the
    // discard, the swap and the next mount of the root.
    let views = store.views_dir("d");
    let view_file = views.join("v0/home/sprite/state");
    assert_eq!(std::fs::read(&view_file).expect("view"), b"kept");
    let view_dev = std::fs::metadata(views.join("v0")).expect("view").dev();
    let view_mounts = {
        let sprite = store.sprite_dir("d");
        let root = [
            store.rootfs_path("d"),
            sprite.join("volume"),
            sprite.join("layers/image"),
            sprite.join("layers/volume"),
        ];
        let mut m: Vec<PathBuf> = mounts_under(&sprite)
            .into_iter()
            .filter(|m| !root.contains(m))
            .collect();
        m.sort();
        m
    };
    assert!(view_mounts.len() >= 2, "views not mounted: {view_mounts:?}");

    let old = store.discard_rootfs("d").expect("discard");
    let mut left = mounts_under(&store.sprite_dir("d"));
    left.sort();
    assert_eq!(
        left, view_mounts,
        "the discard left more than the views, or took them"
    );
    store.restore_checkpoint("d", "v0").expect("restore");
    let root = store.mount_rootfs("d", "tiny").expect("mount again");
    assert_eq!(std::fs::read(&file).expect("read"), b"kept");
    assert!(!root.join("home/sprite/big").exists());
    assert_eq!(std::fs::read(&view_file).expect("view"), b"kept");
    assert_eq!(
        std::fs::metadata(views.join("v0")).expect("view").dev(),
        view_dev,
        "the view was mounted again"
    );
    assert_eq!(store.shown_checkpoints("d").expect("shown"), ["v0"]);

    // The old filesystem lives on, detached, on the image it was on
    // (renamed over by the restore) while it is held; once let go of, it
    // is written back on a thread of its own and its device cleared. The
    // new one holds the volume.
    let pool_dir = store.volume_path("d");
    let pool_dir = pool_dir.parent().expect("pool dir");
    let replaced = || -> Vec<(PathBuf, PathBuf)> {
        sprite_store::loop_devices_under(pool_dir)
            .into_iter()
            .filter(|(_, f)| f.to_string_lossy().ends_with("volume.img (deleted)"))
            .collect()
    };
    assert_eq!(
        replaced().len(),
        1,
        "the old volume is not held: {:?}",
        replaced()
    );
    drop(old);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = sprite_store::loop_devices_under(pool_dir);
        let old = replaced();
        if old.is_empty() {
            let volume = held.iter().filter(|(_, f)| *f == store.volume_path("d"));
            assert_eq!(volume.count(), 1, "{held:?}");
            break;
        }
        assert!(Instant::now() < deadline, "still held: {old:?}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A discard whose swap never came (a restore that failed) loses
    // nothing: once let go of, the old filesystem is written back to the
    // image it is still on, and the next mount waits for that.
    std::fs::write(&file, b"written before a failed restore").expect("write");
    let old = store.discard_rootfs("d").expect("discard");
    drop(old);
    let root = store
        .mount_rootfs("d", "tiny")
        .expect("mount the same image");
    assert_eq!(
        std::fs::read(root.join("home/sprite/state")).expect("read"),
        b"written before a failed restore"
    );
    store.unmount_rootfs("d").expect("unmount");
    store.destroy_volume("d").expect("destroy");
}

/// A volume file replaced while a mount of the old one stayed (a daemon
/// killed with the root mounted, then the volume rebuilt from the cold
/// tier): the install refuses while it is mounted in place, and the next
/// mount of the root mounts the file that is the volume now, not the old
/// one whose writes nothing keeps.
#[test]
fn a_volume_replaced_under_its_mount_is_mounted_again() {
    require_env!();
    let fx = Fixture::new();
    let store = fx.open();
    store
        .build_image(ImageKind::Tiny, &mut |_| {})
        .expect("build tiny");
    store.create_volume("r").expect("volume");
    let root = store.mount_rootfs("r", "tiny").expect("mount");
    let file = root.join("home/sprite/state");
    std::fs::write(&file, b"in the copy").expect("write");
    store.unmount_rootfs("r").expect("unmount");
    let copy = store.volume_rebuild_path("r").expect("rebuild path");
    std::fs::copy(store.volume_path("r"), &copy).expect("copy the volume");

    let root = store.mount_rootfs("r", "tiny").expect("mount");
    std::fs::write(&file, b"only in the old file").expect("write");
    match store.install_volume("r", &copy) {
        Err(StoreError::Busy(_)) => {}
        other => panic!("an install under a mounted volume: {other:?}"),
    }
    assert!(copy.exists(), "the refused install took the file");
    // What an older daemon did: renamed over the mounted file.
    std::fs::rename(&copy, store.volume_path("r")).expect("rename over");

    let again = store.mount_rootfs("r", "tiny").expect("mount again");
    assert_eq!(again, root);
    assert_eq!(std::fs::read(&file).expect("read"), b"in the copy");
    let pool_dir = store.volume_path("r");
    let pool_dir = pool_dir.parent().expect("pool dir");
    let held = sprite_store::loop_devices_under(pool_dir);
    assert!(
        held.iter().all(|(_, f)| *f == store.volume_path("r")),
        "a replaced volume is still held: {held:?}"
    );
    // What is written now is in the volume file.
    std::fs::write(&file, b"kept").expect("write");
    assert!(store.is_anything_mounted("r").expect("mounted?"));
    store.unmount_rootfs("r").expect("unmount");
    assert!(!store.is_anything_mounted("r").expect("mounted?"));
    store.mount_rootfs("r", "tiny").expect("mount once more");
    assert_eq!(std::fs::read(&file).expect("read"), b"kept");
    store.unmount_rootfs("r").expect("unmount");
    store.destroy_volume("r").expect("destroy");
}

#[test]
fn checkpoint_refused_when_the_pool_is_full() {
    require_env!();
    let fx = Fixture::new();
    let store = fx.open();
    store.create_volume("s").expect("volume");
    let vol = store.volume_path("s");
    let before = std::fs::metadata(&vol).expect("stat volume").len();
    // Fill the pool to the brim.
    let filler = store.pool_dir().join("filler");
    let f = std::fs::File::create(&filler).expect("filler");
    let free = store.pool_free_bytes().expect("free");
    nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        nix::fcntl::FallocateFlags::empty(),
        0,
        (free - (8 << 20)) as i64,
    )
    .expect("fallocate");
    match store.create_checkpoint("s", "v0") {
        Err(StoreError::NoSpace { .. }) => {}
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(store.checkpoint_names("s").expect("names").is_empty());
    assert_eq!(std::fs::metadata(&vol).expect("stat").len(), before);
    fsck_clean(&vol);
    drop(f);
    std::fs::remove_file(&filler).expect("rm filler");
    store
        .create_checkpoint("s", "v0")
        .expect("checkpoint after freeing space");
}

#[test]
fn an_image_exports_the_same_bytes_twice_and_imports_whole_elsewhere() {
    require_env!();
    let fx = Fixture::new();
    let a = fx.open();
    a.build_image(ImageKind::Tiny, &mut |_| {}).expect("build");
    // Device nodes and a fifo, as a Debian rootfs has in /dev.
    let adev = a.pool_dir().join("images/tiny/rootfs/dev");
    std::fs::create_dir_all(&adev).unwrap();
    nix::sys::stat::mknod(
        &adev.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    nix::unistd::mkfifo(
        &adev.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let dir = fx.data.parent().expect("parent").to_path_buf();
    let t1 = dir.join("t1.tar");
    let t2 = dir.join("t2.tar");
    a.export_image("tiny", &t1).expect("export");
    a.export_image("tiny", &t2).expect("export again");
    assert_eq!(
        std::fs::read(&t1).unwrap(),
        std::fs::read(&t2).unwrap(),
        "deterministic"
    );

    let other = Fixture::new();
    let b = other.open();
    assert!(!b.image_ready("tiny"));
    let m = b.import_image("tiny", &t1).expect("import");
    assert!(b.image_ready("tiny"));
    assert_eq!(m, a.image_manifest("tiny").unwrap());
    // Owners, modes and links as they were.
    let rootfs = |s: &Store| s.pool_dir().join("images/tiny/rootfs");
    let null = std::fs::symlink_metadata(rootfs(&b).join("dev/null")).expect("dev/null");
    use std::os::unix::fs::FileTypeExt;
    assert!(null.file_type().is_char_device(), "a device node stays one");
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    let src_null = std::fs::symlink_metadata(adev.join("null")).unwrap();
    assert_eq!((null.mode(), null.uid()), (src_null.mode(), src_null.uid()));
    assert!(std::fs::symlink_metadata(rootfs(&b).join("dev/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    for rel in ["bin/sh", "bin/busybox", "etc/passwd", "home/sprite"] {
        let x = std::fs::symlink_metadata(rootfs(&a).join(rel)).expect("a");
        let y = std::fs::symlink_metadata(rootfs(&b).join(rel)).expect("b");
        assert_eq!(
            (
                x.uid(),
                x.gid(),
                x.mode(),
                x.len(),
                x.file_type().is_symlink()
            ),
            (
                y.uid(),
                y.gid(),
                y.mode(),
                y.len(),
                y.file_type().is_symlink()
            ),
            "{rel}"
        );
    }
    // A second import is a no-op; a damaged archive is refused cleanly.
    b.import_image("tiny", &t1).expect("again");
    std::fs::write(&t2, b"not a tar").unwrap();
    let third = Fixture::new();
    let c = third.open();
    assert!(c.import_image("tiny", &t2).is_err());
    assert!(!c.image_ready("tiny"));
}
