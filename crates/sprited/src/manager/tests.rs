//! The manager's lifecycle against `sprite_runtime::fake::FakeDriver`: the
//! store (a loop-backed XFS pool in a temp dir), the DB and the object store
//! (`file://`) are real; only the sandboxes live in memory. Needs root,
//! mkfs.xfs, mkfs.ext4 and busybox-static (`scripts/deps.sh`), and for a
//! start, `ip` and `nft`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sprite_runtime::fake::{Call, FakeDriver, Op};
use sprite_runtime::{RuntimeError, SandboxState};
use sprites_api::sprite::{CreateSpriteRequest, Status};

use super::{Manager, STOP_GRACE};
use crate::config::Config;
use crate::db::{Db, Limits, SpriteRecord};
use crate::time::now_rfc3339;

fn prerequisites_missing(tools: &[&str]) -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root".into());
    }
    for tool in tools {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            return Some(format!("needs {tool}"));
        }
    }
    None
}

fn require(tools: &[&str]) {
    if let Some(why) = prerequisites_missing(tools) {
        panic!("this test {why} (scripts/deps.sh installs the tools)");
    }
}

const STORE_TOOLS: &[&str] = &["mkfs.xfs", "mkfs.ext4", "busybox"];

/// A manager over a data dir of its own, driving a fake driver. The data
/// dir is unmounted (loop devices cleared) and removed when it drops.
struct Fixture {
    dir: Option<tempfile::TempDir>,
    driver: Arc<FakeDriver>,
    manager: Arc<Manager>,
}

impl Fixture {
    fn new() -> Self {
        require(STORE_TOOLS);
        let dir = tempfile::Builder::new()
            .prefix("sprited-manager-test-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let data = dir.path().join("data");
        let mut cfg = Config::with_defaults("127.0.0.1:0".parse().expect("addr"), data.clone());
        cfg.default_image = "tiny".into();
        cfg.default_storage_gb = 1;
        cfg.pool_size_gb = 4;
        // Nothing these tests do asks a resolver; should anything, it
        // stays on loopback.
        cfg.dns_upstream = Some("127.0.0.1:9".parse().expect("addr"));
        let store = sprite_store::Store::open(&data, crate::store_options(&cfg)).expect("store");
        let dirs = cfg.layout();
        let db = Db::open(&dirs.meta_db()).expect("db");
        let cold = sprite_cold::ColdStore::open(&sprite_cold::StoreOptions {
            url: cfg.object_store_url(),
            cache_dir: dirs.chunk_cache(),
            cache_bytes: cfg.chunk_cache_bytes,
            concurrency: 4,
            request_timeout: cfg.object_store_timeout,
        })
        .expect("object store");
        let driver = Arc::new(FakeDriver::new());
        let manager = Manager::new(
            Arc::new(db),
            Arc::new(cfg),
            Arc::new(store),
            driver.clone(),
            // Never run: the fake driver starts nothing.
            dir.path().join("sprite-agent"),
            Arc::new(cold),
        );
        Fixture {
            dir: Some(dir),
            driver,
            manager,
        }
    }

    /// A sprite as a create leaves it before its first start: its row and
    /// its volume, cold.
    fn add_cold(&self, name: &str) -> SpriteRecord {
        let now = now_rfc3339();
        let rec = SpriteRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            image: "tiny".into(),
            url_auth: "sprite".into(),
            labels: Vec::new(),
            limits: Limits {
                cpus: 1.0,
                ram_mb: 256,
                storage_gb: 1,
                isolation: Default::default(),
            },
            environment: Default::default(),
            created_at: now.clone(),
            updated_at: now,
            last_running_at: None,
            last_active_at: None,
        };
        self.manager.db.insert(&rec).expect("insert");
        self.manager
            .store
            .create_volume_sized(&rec.id, 1 << 30)
            .expect("volume");
        rec
    }

    /// The driver's calls for sprite `id` (all of them name one sandbox).
    fn calls_for(&self, id: &str) -> Vec<Call> {
        self.driver
            .calls()
            .into_iter()
            .filter(|c| match c {
                Call::Start(spec) => spec.id == id,
                Call::Stop { id: i, .. } => i == id,
                Call::State(i)
                | Call::InitPid(i)
                | Call::Netns(i)
                | Call::Pause(i)
                | Call::Resume(i)
                | Call::Delete(i)
                | Call::Stats(i) => i == id,
            })
            .collect()
    }

    fn rootfs_mounted(&self, id: &str) -> bool {
        let rootfs = self.manager.store.rootfs_path(id);
        sprite_store::mountinfo::read()
            .map(|m| sprite_store::mountinfo::mounts_under(&m, &rootfs).contains(&rootfs))
            .expect("mountinfo")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            sprites_test_support::pool::remove_pool_dir(dir);
        }
    }
}

/// A network namespace of the test's own, standing in for a sandbox's: `lo`
/// up and the egress table a driver's egress hook lays (without pasta: it
/// has no way out). Held by a thread until dropped.
struct TestNetns {
    path: PathBuf,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestNetns {
    fn new() -> Self {
        require(&["ip", "nft"]);
        let (tx, rx) = std::sync::mpsc::channel::<i32>();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status();
            assert!(up.is_ok_and(|s| s.success()), "ip link set lo up");
            tx.send(nix::unistd::gettid().as_raw()).expect("send");
            let _ = stopped.recv();
        });
        let tid = rx.recv().expect("namespace thread");
        let path = PathBuf::from(format!("/proc/{tid}/ns/net"));
        // Rules go only into a namespace this test made, never the host's.
        let inode =
            |p: &Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        assert_ne!(
            inode(&path).expect("test netns"),
            inode(Path::new("/proc/self/ns/net")).expect("own netns")
        );
        sprite_runtime::net::run_nft(
            Path::new("nft"),
            &path,
            &sprite_runtime::net::nft::base_script(&[]),
        )
        .expect("egress table");
        TestNetns {
            path,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_starts_a_sandbox_with_the_spec_its_image_asks_for() {
    let f = Fixture::new();
    let netns = TestNetns::new();
    f.driver.set_netns(Some(netns.path.clone()));

    let rec = f
        .manager
        .create(CreateSpriteRequest {
            name: "one".into(),
            ..Default::default()
        })
        .await
        .expect("create");

    assert_eq!(f.manager.status(&rec.id), Status::Running);
    let calls = f.calls_for(&rec.id);
    let starts: Vec<_> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Start(spec) => Some(spec),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 1, "{calls:?}");
    let spec = starts[0];
    assert_eq!(spec.hostname, "one");
    assert!(spec.no_new_privileges, "tiny has no setuid tools");
    assert_eq!(spec.rootfs, f.manager.store.rootfs_path(&rec.id));
    assert!(f.rootfs_mounted(&rec.id), "the volume is mounted for it");
    assert!(spec
        .binds
        .iter()
        .any(|b| b.destination == super::INSIDE_RUN_DIR && b.read_only));
    // The guide for models, written for this sprite, bound read-only.
    let guide = spec
        .binds
        .iter()
        .find(|b| b.destination == crate::llm::PATH_IN_SPRITE)
        .expect("llm.txt is bound");
    assert!(guide.read_only);
    let text = std::fs::read_to_string(&guide.source).expect("the guide is written");
    assert!(text.contains("sprite named one"), "{text}");
    // The network policy goes where the driver says the namespace is.
    assert!(calls.contains(&Call::Netns(rec.id.clone())), "{calls:?}");
    assert!(f.manager.net.namespace(&rec.id).is_some());

    // What the driver is asked for is in the spec: `standard`, whose sudo
    // needs setuid, runs without no_new_privs.
    let standard = SpriteRecord {
        image: "standard".into(),
        ..rec.clone()
    };
    assert!(!f.manager.spec_for(&standard).no_new_privileges);
    assert!(f.manager.spec_for(&rec).no_new_privileges);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_takes_each_sprites_status_from_its_sandbox() {
    let f = Fixture::new();
    let running = f.add_cold("running");
    let paused = f.add_cold("paused");
    let stopped = f.add_cold("stopped");
    let missing = f.add_cold("missing");
    f.driver
        .set_state(&running.id, SandboxState::Running { pid: 1 << 23 });
    f.driver.set_state(&paused.id, SandboxState::Paused);
    f.driver.set_state(&stopped.id, SandboxState::Stopped);

    f.manager.reconcile().await.expect("reconcile");

    assert_eq!(f.manager.status(&running.id), Status::Running);
    assert_eq!(f.manager.status(&paused.id), Status::Warm);
    assert_eq!(f.manager.status(&stopped.id), Status::Cold);
    assert_eq!(f.manager.status(&missing.id), Status::Cold);
    // The policy is enforced in the namespace the driver reports, for the
    // sandboxes that exist (this fake has none to give: a warning only).
    for rec in [&running, &paused] {
        assert!(f.calls_for(&rec.id).contains(&Call::Netns(rec.id.clone())));
    }
    for rec in [&stopped, &missing] {
        assert!(!f.calls_for(&rec.id).contains(&Call::Netns(rec.id.clone())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_sprite_wakes_by_resuming_its_sandbox() {
    let f = Fixture::new();
    let rec = f.add_cold("warm");
    f.driver.set_state(&rec.id, SandboxState::Paused);
    f.manager.reconcile().await.expect("reconcile");
    assert_eq!(f.manager.status(&rec.id), Status::Warm);
    f.driver.clear_calls();

    f.manager.ensure_running(&rec).await.expect("wake");

    assert_eq!(f.manager.status(&rec.id), Status::Running);
    assert_eq!(f.calls_for(&rec.id), [Call::Resume(rec.id.clone())]);
    assert!(matches!(
        f.driver.state_of(&rec.id),
        SandboxState::Running { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_leaves_the_sprite_in_error_with_its_sandbox_gone() {
    let f = Fixture::new();
    let rec = f.add_cold("broken");
    f.driver.fail_next(
        Op::Start,
        RuntimeError::Runc {
            command: "runc run".into(),
            status: "exit status: 1".into(),
            output: "injected: no such init".into(),
        },
    );

    let woke = f.manager.ensure_running(&rec).await;

    assert!(woke.is_err(), "the start fails");
    assert_eq!(f.manager.status(&rec.id), Status::Error);
    let why = f.manager.error_of(&rec.id).expect("a reason");
    assert!(why.contains("injected: no such init"), "{why}");
    // Whatever half-started is taken down at once; the volume stays.
    let calls = f.calls_for(&rec.id);
    let start = calls
        .iter()
        .position(|c| c.op() == Op::Start)
        .expect("a start");
    assert!(
        calls[start..].contains(&Call::Stop {
            id: rec.id.clone(),
            grace: Duration::ZERO
        }),
        "{calls:?}"
    );
    assert_eq!(f.driver.state_of(&rec.id), SandboxState::Missing);
    assert!(!f.rootfs_mounted(&rec.id));
    assert!(f.manager.store.volume_exists(&rec.id));
    assert!(f.manager.get("broken").is_ok(), "the sprite stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_gives_the_sandbox_its_grace_and_leaves_the_sprite_cold() {
    let f = Fixture::new();
    let rec = f.add_cold("stopping");
    f.driver
        .set_state(&rec.id, SandboxState::Running { pid: 1 << 23 });
    f.manager.reconcile().await.expect("reconcile");
    assert_eq!(f.manager.status(&rec.id), Status::Running);
    f.driver.clear_calls();

    f.manager.stop(&rec).await.expect("stop");

    assert_eq!(f.manager.status(&rec.id), Status::Cold);
    let stops = f.driver.calls_of(Op::Stop);
    assert_eq!(
        stops,
        [Call::Stop {
            id: rec.id.clone(),
            grace: STOP_GRACE
        }]
    );
    assert_eq!(f.driver.state_of(&rec.id), SandboxState::Missing);
    // Its last usage was read from the driver before the sandbox went.
    let calls = f.calls_for(&rec.id);
    let stats = calls.iter().position(|c| c.op() == Op::Stats);
    let stop = calls.iter().position(|c| c.op() == Op::Stop);
    assert!(stats.is_some() && stats < stop, "{calls:?}");
}
