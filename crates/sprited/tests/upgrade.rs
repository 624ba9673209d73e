//! Upgrading over an existing data dir: a data dir written by the last
//! release without schema versions (`tests/fixtures/upgrade-c2f2e72`) opens
//! on this build with everything intact, restores its old checkpoints and
//! takes new ones.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Api, Daemon};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upgrade-c2f2e72")
        .join(name)
}

/// Puts the fixture's metadata and images where the data dir keeps them:
/// `meta.db` at the top, the sprites' volumes and checkpoints in the pool.
fn lay_fixture(data_dir: &Path) {
    for f in ["meta.db", "meta.db-wal", "meta.db-shm"] {
        match std::fs::remove_file(data_dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("remove {f}: {e}"),
            _ => {}
        }
    }
    std::fs::copy(fixture("meta.db"), data_dir.join("meta.db")).expect("copy meta.db");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(fixture("pool-sprites.tar.gz"))
        .arg("-C")
        .arg(data_dir.join("pool"))
        .status()
        .expect("run tar");
    assert!(status.success(), "tar: {status}");
}

fn user_version(data_dir: &Path) -> u32 {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("meta.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open meta.db");
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version")
}

/// The fixture's own numbers, to compare what the new build reports with.
fn fixture_cpu_seconds(sprite: &str) -> f64 {
    // Read from a copy: a reader of a WAL database leaves -shm and -wal
    // files beside it, which would land in the source tree.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("meta.db");
    std::fs::copy(fixture("meta.db"), &copy).expect("copy the fixture");
    let conn = rusqlite::Connection::open(&copy).expect("open the fixture");
    conn.query_row(
        "SELECT sum(cpu_seconds) FROM usage WHERE sprite_name = ?1",
        [sprite],
        |r| r.get(0),
    )
    .expect("fixture usage")
}

async fn cat(api: &Api, sprite: &str, file: &str) -> String {
    api.sh(
        sprite,
        &format!("cat /home/sprite/{file} 2>/dev/null || echo missing"),
    )
    .await
}

fn checkpoints(list: &serde_json::Value) -> Vec<(String, String)> {
    list.as_array()
        .expect("checkpoint list")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (s("id"), s("comment"))
        })
        .collect()
}

/// GET a sprite URL without any credentials until it answers 200 (the
/// first request wakes the sprite; its web service then comes up).
async fn public_page(d: &Daemon, sprite: &str, path: &str) -> String {
    let addr: SocketAddr = d.addr.parse().expect("addr");
    let host = format!("{sprite}.sprites.localhost");
    let client = reqwest::Client::builder()
        .resolve(&host, addr)
        .build()
        .expect("client");
    let url = format!("http://{host}:{}{path}", addr.port());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client.get(&url).send().await.expect("GET sprite URL");
        let status = r.status();
        let body = r.text().await.expect("body");
        if status == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{url}: {status} {body}; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_last_unversioned_release_opens_intact() {
    // A new data dir first, for its pool (a mounted XFS image); then the
    // fixture goes in and the daemon starts again on it.
    let mut d = Daemon::start();
    d.kill9();
    lay_fixture(&d.data_dir);
    d.spawn();
    assert_eq!(user_version(&d.data_dir), sprited::db::SCHEMA_VERSION);
    let api = d.client();

    // The sprites, with their settings.
    let list = api.get_json("/v1/sprites").await;
    let sprites = list["sprites"].as_array().expect("sprites");
    let names: Vec<_> = sprites.iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, [json!("alpha"), json!("alpha-fork"), json!("beta")]);
    let alpha = api.get_json("/v1/sprites/alpha").await;
    assert_eq!(alpha["labels"], json!(["blue", "team-a"]), "{alpha}");
    assert_eq!(alpha["url_settings"]["auth"], "sprite", "{alpha}");
    assert_eq!(alpha["image"], "tiny", "{alpha}");
    assert_eq!(
        alpha["config"],
        json!({"cpus": 1, "ram_mb": 1024, "storage_gb": 1, "region": "local", "isolation": "container"})
    );
    let beta = api.get_json("/v1/sprites/beta").await;
    assert_eq!(beta["url_settings"]["auth"], "public", "{beta}");
    assert_eq!(beta["config"]["ram_mb"], 256, "{beta}");

    // Their files, the fork's from the checkpoint it was made from.
    assert_eq!(cat(&api, "alpha", "notes.txt").await, "latest");
    assert_eq!(cat(&api, "alpha", "keep.txt").await, "missing\n");
    assert_eq!(api.sh("alpha", "echo $GREETING").await, "hello\n");
    assert_eq!(cat(&api, "alpha-fork", "notes.txt").await, "first draft");
    assert_eq!(cat(&api, "alpha-fork", "keep.txt").await, "kept");
    assert_eq!(cat(&api, "beta", "index.html").await, "beta page");

    // Beta's service, serving its public URL to a client without a token.
    let services = api.get_json("/v1/sprites/beta/services").await;
    let svc_names: Vec<_> = services
        .as_array()
        .expect("services")
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(svc_names, [json!("web")], "{services}");
    assert_eq!(public_page(&d, "beta", "/index.html").await, "beta page");

    // Beta's network policy.
    assert_eq!(
        api.get_json("/v1/sprites/beta/policy/network").await,
        json!({"rules": [
            {"domain": "allowed.test", "action": "allow"},
            {"domain": "*", "action": "deny"}
        ]})
    );

    // The API token made then still lets its holder in.
    let secret = std::fs::read_to_string(fixture("token")).expect("token file");
    let with_token = Api {
        http: reqwest::Client::new(),
        url: d.url.clone(),
        token: secret.trim().to_string(),
    };
    assert_eq!(
        with_token.get_json("/v1/sprites/beta").await["name"],
        "beta"
    );
    assert_eq!(api.get_json("/v1/tokens").await["tokens"][0]["name"], "ci");
    // Made before scopes, it keeps what it could do then: everything.
    assert_eq!(
        api.get_json("/v1/tokens").await["tokens"][0]["scope"]["admin"],
        true
    );
    assert_eq!(
        with_token.get_json("/v1/tokens").await["tokens"][0]["name"],
        "ci"
    );

    // The usage metered then is still reported (from the epoch: the
    // fixture is older than the default range will be one day).
    let usage = api.get_json("/v1/sprites/alpha/usage?from=0").await;
    let cpu = usage["usage"]["cpu_seconds"].as_f64().expect("cpu_seconds");
    let then = fixture_cpu_seconds("alpha");
    assert!(then > 0.0 && cpu >= then, "{cpu} < {then}: {usage}");
    let org = api.get_json("/v1/usage?from=0").await.to_string();
    for name in ["alpha", "alpha-fork", "beta"] {
        assert!(org.contains(&format!("\"{name}\"")), "{name}: {org}");
    }

    // The checkpoints, with their comments; both restore.
    assert_eq!(
        checkpoints(&api.get_json("/v1/sprites/alpha/checkpoints").await),
        [
            ("v1".to_string(), "second draft".to_string()),
            ("v0".to_string(), "first draft".to_string())
        ]
    );
    let v1 = api.get_json("/v1/sprites/alpha/checkpoints/v1").await;
    assert_eq!(v1["is_current"], true, "{v1}");
    assert_eq!(v1["source_id"], "v0", "{v1}");
    api.restore("alpha", "v0").await;
    assert_eq!(cat(&api, "alpha", "notes.txt").await, "first draft");
    assert_eq!(cat(&api, "alpha", "keep.txt").await, "kept");
    api.restore("alpha", "v1").await;
    assert_eq!(cat(&api, "alpha", "notes.txt").await, "second draft");
    assert_eq!(cat(&api, "alpha", "keep.txt").await, "missing\n");

    // A new checkpoint takes the next number, and restores too.
    api.sh(
        "alpha",
        "echo after the upgrade > /home/sprite/notes.txt; sync",
    )
    .await;
    assert_eq!(api.checkpoint("alpha", Some("upgraded")).await, "v2");
    let v2 = api.get_json("/v1/sprites/alpha/checkpoints/v2").await;
    assert_eq!(v2["source_id"], "v1", "{v2}");
    assert_eq!(v2["comment"], "upgraded", "{v2}");
    api.sh("alpha", "echo scratch > /home/sprite/notes.txt")
        .await;
    api.restore("alpha", "v2").await;
    assert_eq!(cat(&api, "alpha", "notes.txt").await, "after the upgrade\n");
    // The fork checkpoints on its own numbering, from v0.
    assert_eq!(api.checkpoint("alpha-fork", None).await, "v0");
}

/// What is mounted at `path` (`None`: it is no mount point).
fn mounted_at(path: &Path) -> Option<String> {
    let mounts = sprite_store::mountinfo::read().expect("mountinfo");
    sprite_store::mountinfo::mount_at(&mounts, path).map(|m| m.fs_type.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_dirs_on_disk_move_onto_a_tmpfs_and_a_reboot_loses_nothing() {
    // As earlier releases left a data dir: the sprites' run dirs and runc's
    // state on its disk, a sprite made there and gone cold.
    let idle = ["--idle-warm", "1s", "--idle-cold", "2s"];
    let mut d = Daemon::start_with(&[&idle[..], &["--runtime-tmpfs", "false"]].concat());
    let (sprites, runc) = (d.data_dir.join("sprites"), d.data_dir.join("runc"));
    assert_eq!(mounted_at(&sprites), None);
    assert_eq!(mounted_at(&runc), None);
    let api = d.client();
    api.create("old").await;
    api.sh("old", "echo kept > /home/sprite/kept.txt; sync")
        .await;
    let id = api.id_of("old").await;
    api.wait_status("old", "cold", Duration::from_secs(30))
        .await;
    d.kill9();
    // Those releases kept the agent's log in the run dir, too.
    let log = d.pool_dir().join("sprites").join(&id).join("agent.log");
    let logged = std::fs::read(&log).expect("the agent's log");
    assert!(!logged.is_empty());
    let old_log = sprites.join(&id).join("agent.log");
    std::fs::copy(&log, &old_log).expect("the log where it was");
    std::fs::remove_file(&log).expect("the log where it is now");
    std::fs::write(sprites.join(&id).join("agent.log.1"), b"older\n").expect("an older log");

    // This build moves them onto a tmpfs each, with their files, and the
    // agent's logs beside the volume.
    d.extra_args = idle.iter().map(|s| s.to_string()).collect();
    d.spawn();
    assert_eq!(mounted_at(&sprites).as_deref(), Some("tmpfs"));
    assert_eq!(mounted_at(&runc).as_deref(), Some("tmpfs"));
    assert!(!d.data_dir.join("sprites.disk").exists());
    assert!(!d.data_dir.join("runc.disk").exists());
    let moved = std::fs::read(&log).expect("the agent's log, moved");
    assert!(moved.starts_with(&logged), "the agent's log lost lines");
    let older = std::fs::read(d.pool_dir().join("sprites").join(&id).join("agent.log.1"));
    assert_eq!(older.expect("the older log, moved"), b"older\n");
    assert!(!old_log.exists() && !sprites.join(&id).join("agent.log.1").exists());
    assert_eq!(cat(&api, "old", "kept.txt").await, "kept\n");

    // Cold again, its run dir is gone from memory (and its log stays).
    api.wait_status("old", "cold", Duration::from_secs(30))
        .await;
    assert!(!sprites.join(&id).exists(), "a cold sprite's run dir stays");
    assert!(log.exists());

    // A reboot forgets both tmpfs (the sprite is cold, as a reboot leaves
    // it); the next start makes them again and the sprite loses nothing.
    d.kill9();
    sprite_store::unmount_all(&sprites).expect("unmount the run dirs");
    sprite_store::unmount_all(&runc).expect("unmount runc's state");
    assert_eq!(std::fs::read_dir(&sprites).expect("list").count(), 0);
    d.spawn();
    assert_eq!(mounted_at(&sprites).as_deref(), Some("tmpfs"));
    assert_eq!(cat(&api, "old", "kept.txt").await, "kept\n");
    api.create("new").await;
    assert_eq!(api.sh("new", "echo fresh").await, "fresh\n");
}
