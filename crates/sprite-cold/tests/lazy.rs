//! Lazy images against the real kernel: the FUSE file, a loop device over
//! it, ext4 on that. Run as root (mounts, loop devices, /dev/fuse).

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sprite_cold::{ColdError, ColdStore, LazyImage, LazyOptions, Manifest, StoreOptions};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// One test at a time: they measure time, and two cores are few.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loop device over a file, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Loop {
        Self::attach_with(file, false)
    }

    /// With `direct_io`, the loop device opens the file O_DIRECT.
    fn attach_with(file: &Path, direct_io: bool) -> Loop {
        let dio = format!("--direct-io={}", if direct_io { "on" } else { "off" });
        let l = Loop(sh(
            "losetup",
            &["--find", "--show", &dio, file.to_str().unwrap()],
        ));
        let got = sh("losetup", &["-n", "-O", "DIO", &l.0]);
        assert_eq!(got == "1", direct_io, "{}: DIO {got}", l.0);
        l
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = run("losetup", &["-d", &self.0]);
    }
}

/// A mounted filesystem, unmounted on drop (lazily if it will not go).
struct Mounted(PathBuf);

impl Mounted {
    fn new(dev: &str, dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        sh("mount", &[dev, dir.to_str().unwrap()]);
        Mounted(dir.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let dir = self.0.to_str().unwrap();
        if !run("umount", &[dir]).status.success() {
            let _ = run("umount", &["-l", dir]);
        }
    }
}

/// Deterministic incompressible bytes (splitmix64).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An ext4 image uploaded to a `file://` store, and what its files hold.
struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<ColdStore>,
    manifest: Manifest,
    /// (name, BLAKE3 of the contents)
    files: Vec<(String, blake3::Hash)>,
}

impl Fixture {
    /// `size` bytes of ext4 holding `count` random files of `each` bytes
    /// and a small `hello.txt`.
    fn new(rt: &tokio::runtime::Runtime, size: u64, count: usize, each: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let mut files = Vec::new();
        for n in 0..count {
            let name = format!("data{n:03}.bin");
            let bytes = random_bytes(each, n as u64 + 1);
            files.push((name.clone(), blake3::hash(&bytes)));
            std::fs::write(src.join(name), bytes).unwrap();
        }
        let hello = b"hello from a cold sprite\n";
        files.push(("hello.txt".into(), blake3::hash(hello)));
        std::fs::write(src.join("hello.txt"), hello).unwrap();

        let img = dir.path().join("source.img");
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        sh(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-b",
                "4096",
                "-d",
                src.to_str().unwrap(),
                img.to_str().unwrap(),
            ],
        );
        std::fs::remove_dir_all(&src).unwrap();
        let store = Arc::new(
            ColdStore::open(&StoreOptions {
                url: format!("file://{}", dir.path().join("store").display()),
                cache_dir: dir.path().join("cache"),
                cache_bytes: 0,
                concurrency: 8,
                request_timeout: Duration::from_secs(5),
            })
            .unwrap(),
        );
        let up = rt
            .block_on(store.upload_image(&img, "sprites/s/volume", None))
            .unwrap();
        Fixture {
            dir,
            store,
            manifest: up.manifest,
            files,
        }
    }

    /// The index of the chunk holding byte `off` of file `name`.
    fn chunk_of(&self, name: &str, off: u64) -> u64 {
        let img = self.path("source.img");
        let out = sh(
            "debugfs",
            &[
                "-R",
                &format!("bmap /{name} {}", off / 4096),
                img.to_str().unwrap(),
            ],
        );
        let block: u64 = out
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("debugfs bmap: {out:?}"));
        block * 4096 / MIB
    }

    /// The stored object of chunk `index`.
    fn chunk_file(&self, index: u64) -> (sprite_cold::Hash, PathBuf) {
        let c = self
            .manifest
            .chunks
            .iter()
            .find(|c| c.index == index)
            .unwrap_or_else(|| panic!("chunk {index} is not in the manifest"));
        let h = sprite_cold::Hash::from_hex(&c.hash).unwrap();
        let hex = h.to_hex();
        (
            h,
            self.path("store").join("chunks").join(&hex[..2]).join(hex),
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start(&self, rt: &tokio::runtime::Runtime, opts: LazyOptions) -> LazyImage {
        rt.block_on(LazyImage::start_with(
            self.store.clone(),
            self.manifest.clone(),
            self.path("backing.img"),
            self.path("backing.state"),
            self.path("fuse"),
            opts,
        ))
        .unwrap()
    }
}

fn hash_file(path: &Path) -> blake3::Hash {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return h.finalize();
        }
        h.update(&buf[..n]);
    }
}

fn check_files(root: &Path, files: &[(String, blake3::Hash)]) {
    for (name, want) in files {
        assert_eq!(hash_file(&root.join(name)), *want, "{name}");
    }
}

/// Writes `bytes` to `path` and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

/// Mounts `image` alone (through a loop device), checks the files, then
/// checks the filesystem with e2fsck.
fn check_image(image: &Path, mnt: &Path, files: &[(String, blake3::Hash)]) {
    {
        let lo = Loop::attach(image);
        let m = Mounted::new(&lo.0, mnt);
        check_files(&m.0, files);
    }
    let out = run("e2fsck", &["-fn", image.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "e2fsck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_lazy_volume_reads_writes_and_becomes_whole() {
    let _serial = serial();
    let rt = rt();
    let fx = Fixture::new(&rt, 2 * GIB, 40, 5 * MIB as usize);
    let mut files = fx.files.clone();

    let lazy = fx.start(&rt, LazyOptions::default());
    {
        let lo = Loop::attach(&lazy.image_path());
        let m = Mounted::new(&lo.0, &fx.path("mnt"));
        check_files(&m.0, &fx.files);
        let new = random_bytes(3 * MIB as usize + 123, 999);
        write_synced(&m.0.join("new.bin"), &new);
        files.push(("new.bin".into(), blake3::hash(&new)));
        sh("sync", &["-f", m.0.to_str().unwrap()]);
    }
    rt.block_on(lazy.wait_complete()).unwrap();
    assert_eq!(lazy.progress().0, lazy.progress().1);
    rt.block_on(lazy.shutdown()).unwrap();
    assert!(
        !fx.path("backing.state").exists(),
        "a whole image keeps no state"
    );

    check_image(&fx.path("backing.img"), &fx.path("mnt"), &files);
}

#[test]
fn waking_a_10_gib_volume_holding_1_gib() {
    let _serial = serial();
    let rt = rt();
    let fx = Fixture::new(&rt, 10 * GIB, 16, 64 * MIB as usize);
    let hello = &fx.files[fx.files.len() - 1];
    let big = &fx.files[7];

    let started = Instant::now();
    let lazy = fx.start(&rt, LazyOptions::default());
    let served = started.elapsed();
    let lo = Loop::attach(&lazy.image_path());
    let attached = started.elapsed();
    let m = Mounted::new(&lo.0, &fx.path("mnt"));
    let mounted = started.elapsed();
    assert_eq!(
        blake3::hash(&std::fs::read(m.0.join(&hello.0)).unwrap()),
        hello.1
    );
    let first_read = started.elapsed();
    let (local, total) = lazy.progress();
    eprintln!(
        "lazy wake of a 10 GiB volume holding {} MiB: FUSE file served after {} ms, \
         loop attached after {} ms, ext4 mounted after {} ms, \
         first file read after {} ms, with {local} of {total} chunks local",
        fx.manifest.data_bytes() / MIB,
        served.as_millis(),
        attached.as_millis(),
        mounted.as_millis(),
        first_read.as_millis(),
    );
    assert!(
        local < total,
        "the first read came before the image was whole"
    );

    rt.block_on(lazy.wait_complete()).unwrap();
    let whole = started.elapsed();
    eprintln!(
        "whole and synced after {} ms ({:.0} MiB/s)",
        whole.as_millis(),
        fx.manifest.data_bytes() as f64 / MIB as f64 / whole.as_secs_f64()
    );
    // Once whole, I/O still passes through FUSE until the next restart.
    let reading = Instant::now();
    check_files(&m.0, std::slice::from_ref(big));
    eprintln!(
        "then a 64 MiB file reads through loop and FUSE at {:.0} MiB/s",
        64.0 / reading.elapsed().as_secs_f64()
    );
    drop(m);
    drop(lo);
    rt.block_on(lazy.shutdown()).unwrap();
}

#[test]
fn after_a_crash_the_rebuild_completes_offline_keeping_what_the_sprite_wrote() {
    let _serial = serial();
    let rt = rt();
    let fx = Fixture::new(&rt, 2 * GIB, 20, 5 * MIB as usize);
    let mut files = fx.files.clone();

    // No filler: only what the sprite touches is fetched before the crash.
    let lazy = fx.start(
        &rt,
        LazyOptions {
            background_fetches: Some(0),
        },
    );
    // The FUSE file also serves a loop device in direct-I/O mode.
    let lo = Loop::attach_with(&lazy.image_path(), true);
    let m = Mounted::new(&lo.0, &fx.path("mnt"));
    check_files(&m.0, &files[..2]);
    // A new file, and a change inside an old one (part of a chunk).
    let new = random_bytes(2 * MIB as usize, 4242);
    write_synced(&m.0.join("new.bin"), &new);
    files.push(("new.bin".into(), blake3::hash(&new)));
    let (name, _) = files[5].clone();
    let mut changed = random_bytes(5 * MIB as usize, 6);
    let patch = random_bytes(100_000, 77);
    changed[MIB as usize + 5000..][..patch.len()].copy_from_slice(&patch);
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(m.0.join(&name))
            .unwrap();
        f.write_all_at(&patch, MIB + 5000).unwrap();
        f.sync_all().unwrap();
    }
    files[5].1 = blake3::hash(&changed);
    let (local, total) = lazy.progress();
    assert!(
        local < total,
        "{local} of {total}: the crash must come early"
    );

    // The crash: the FUSE connection goes, nothing more is synced.
    drop(lazy);
    drop(m);
    drop(lo);
    assert!(fx.path("backing.state").exists());

    rt.block_on(LazyImage::finish_offline(
        fx.store.clone(),
        &fx.manifest,
        &fx.path("backing.img"),
        &fx.path("backing.state"),
    ))
    .unwrap();
    // Whole, and the record says so until the caller drops it.
    assert!(fx.path("backing.state").exists());
    sprite_cold::lazy::remove_state(&fx.path("backing.state")).unwrap();
    assert!(!fx.path("backing.state").exists());
    check_image(&fx.path("backing.img"), &fx.path("mnt"), &files);
}

#[test]
fn a_damaged_or_missing_chunk_is_an_io_error_never_zeros() {
    let _serial = serial();
    let rt = rt();
    let fx = Fixture::new(&rt, 256 * MIB, 4, 8 * MIB as usize);
    let (damaged, damaged_file) = fx.chunk_file(fx.chunk_of("data001.bin", 4 * MIB));
    let (_, missing_file) = fx.chunk_file(fx.chunk_of("data002.bin", 4 * MIB));
    rt.block_on(fx.store.overwrite_chunk_for_test(
        &damaged,
        zstd::bulk::compress(&[1u8; MIB as usize], 1).unwrap(),
    ))
    .unwrap();
    assert!(damaged_file.exists());
    let saved = std::fs::read(&missing_file).unwrap();
    std::fs::remove_file(&missing_file).unwrap();

    // Demand only: both files fail to read, the others read fine.
    let lazy = fx.start(
        &rt,
        LazyOptions {
            background_fetches: Some(0),
        },
    );
    {
        let lo = Loop::attach(&lazy.image_path());
        let m = Mounted::new(&lo.0, &fx.path("mnt"));
        check_files(&m.0, &[fx.files[0].clone(), fx.files[4].clone()]);
        for name in ["data001.bin", "data002.bin"] {
            let err = std::fs::read(m.0.join(name)).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EIO), "{name}: {err}");
        }
    }
    rt.block_on(lazy.shutdown()).unwrap();
    assert!(
        fx.path("backing.state").exists(),
        "incomplete: the state stays"
    );

    // Resumed with the filler, the missing chunk back: the damage remains,
    // and the rebuild says so.
    std::fs::write(&missing_file, saved).unwrap();
    let lazy = fx.start(&rt, LazyOptions::default());
    let err = rt.block_on(lazy.wait_complete()).unwrap_err();
    assert!(matches!(err, ColdError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&damaged.to_hex()), "{err}");
    let (local, total) = lazy.progress();
    assert!(local < total);
    rt.block_on(lazy.shutdown()).unwrap();
}

#[test]
fn an_unreachable_store_fails_reads_in_bounded_time() {
    let _serial = serial();
    let rt = rt();
    let fx = Fixture::new(&rt, 64 * MIB, 1, MIB as usize);
    // An S3 store on a loopback port nothing listens on.
    let closed = sprites_test_support::free_port();
    std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"));
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_ALLOW_HTTP", "true");
    let store = Arc::new(
        ColdStore::open(&StoreOptions {
            url: "s3://cold".into(),
            cache_dir: fx.path("cache2"),
            cache_bytes: 0,
            concurrency: 2,
            request_timeout: Duration::from_secs(2),
        })
        .unwrap(),
    );
    let lazy = rt
        .block_on(LazyImage::start_with(
            store,
            fx.manifest.clone(),
            fx.path("backing.img"),
            fx.path("backing.state"),
            fx.path("fuse"),
            LazyOptions {
                background_fetches: Some(0),
            },
        ))
        .unwrap();
    let started = Instant::now();
    let err = std::fs::File::open(lazy.image_path())
        .unwrap()
        .read_at(&mut [0u8; 4096], 0)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let err = rt.block_on(lazy.wait_complete()).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("s3://cold"), "{err}");
    rt.block_on(lazy.shutdown()).unwrap();
}
