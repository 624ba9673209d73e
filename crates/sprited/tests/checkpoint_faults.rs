//! Checkpoints and restores under faults: the daemon SIGKILLed in the middle
//! (at failpoints, deterministically), and a storage pool that is full.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Daemon;

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `e2fsck -fn` of the sprite's volume (frozen meanwhile, so the image on
/// disk is consistent while mounted) and of every checkpoint image.
fn fsck_all(d: &Daemon, id: &str) {
    let pool = d.pool_dir().join("sprites").join(id);
    let mount = d.data_dir.join("sprites").join(id).join("volume");
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .contains(mount.to_str().expect("utf8"));
    if mounted {
        run(Command::new("fsfreeze").arg("-f").arg(&mount));
    }
    let checked = Command::new("e2fsck")
        .arg("-fn")
        .arg(pool.join("volume.img"))
        .output()
        .expect("e2fsck");
    if mounted {
        run(Command::new("fsfreeze").arg("-u").arg(&mount));
    }
    assert!(
        checked.status.success(),
        "volume: {}",
        String::from_utf8_lossy(&checked.stdout)
    );
    for img in images(settled(&pool.join("checkpoints"))) {
        if let Err(e) = sprites_test_support::fsck::check_image(&img) {
            panic!("{e}");
        }
    }
}

/// `dir` once no checkpoint in it is being settled (its journal replayed
/// in the background into a dot-file clone, see `sprite_store::settle`):
/// what is left then is what a crash would leave.
fn settled(dir: &Path) -> &Path {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let busy = names(dir).into_iter().find(|n| n.ends_with(".settle"));
        match busy {
            None => return dir,
            Some(n) if std::time::Instant::now() > deadline => {
                panic!("{n} still there after 20 s: a settle that never ends")
            }
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn images(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|e| e.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn names(dir: &Path) -> Vec<String> {
    images(dir)
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect()
}

/// Restart the daemon with these failpoints armed (none: `&[]`).
fn restart_with(d: &mut Daemon, failpoints: &[&str]) {
    d.kill9();
    d.env.retain(|(k, _)| k != "SPRITED_FAILPOINTS");
    if !failpoints.is_empty() {
        d.env
            .push(("SPRITED_FAILPOINTS".into(), failpoints.join(",")));
    }
    d.spawn();
}

async fn with_deadline<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung (a filesystem left frozen?)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_killed_in_the_middle_of_a_checkpoint() {
    let mut d = Daemon::start_with_env(&[], &[("SPRITED_FAILPOINTS", "checkpoint-cloning")]);
    let api = d.client();
    api.create("ck").await;
    api.sh("ck", "echo before > /home/sprite/f; sync").await;
    let id = api.id_of("ck").await;
    let ckdir = d.pool_dir().join("sprites").join(&id).join("checkpoints");

    // Killed right before the clone (the volume synced, not frozen).
    common::post_in_background(&d, &api, "/v1/sprites/ck/checkpoint");
    restart_with(&mut d, &["checkpoint-saved"]);
    let api = d.client();
    // Not frozen any more: writes go through; the checkpoint is absent.
    let out = with_deadline(
        "a write after restart",
        api.sh(
            "ck",
            "echo after > /home/sprite/f; sync; cat /home/sprite/f",
        ),
    )
    .await;
    assert_eq!(out, "after\n");
    assert_eq!(
        api.get_json("/v1/sprites/ck/checkpoints").await,
        serde_json::json!([])
    );
    assert!(names(settled(&ckdir)).is_empty(), "{:?}", names(&ckdir));
    fsck_all(&d, &id);

    // Killed after the image was saved, before it was recorded: after the
    // restart it is absent too, and its image is gone.
    common::post_in_background(&d, &api, "/v1/sprites/ck/checkpoint");
    restart_with(&mut d, &[]);
    let api = d.client();
    assert_eq!(
        api.get_json("/v1/sprites/ck/checkpoints").await,
        serde_json::json!([])
    );
    assert!(names(settled(&ckdir)).is_empty(), "{:?}", names(&ckdir));
    fsck_all(&d, &id);

    // And checkpoints work as ever; the lost ones left no gap.
    let v = api.checkpoint("ck", Some("after the crashes")).await;
    assert_eq!(v, "v0");
    assert_eq!(names(settled(&ckdir)), ["v0.img"]);
    fsck_all(&d, &id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_killed_in_the_middle_of_a_restore() {
    let mut d = Daemon::start_with_env(&[], &[("SPRITED_FAILPOINTS", "restore-stopped")]);
    let api = d.client();
    api.create("rs").await;
    api.sh(
        "rs",
        "echo old > /home/sprite/a; echo old > /home/sprite/b; sync",
    )
    .await;
    assert_eq!(api.checkpoint("rs", None).await, "v0");
    api.sh(
        "rs",
        "echo new > /home/sprite/a; echo new > /home/sprite/b; sync",
    )
    .await;
    let id = api.id_of("rs").await;

    // Killed after the sprite stopped, before the swap: the old state.
    common::post_in_background(&d, &api, "/v1/sprites/rs/checkpoints/v0/restore");
    restart_with(&mut d, &["restore-swapped"]);
    let api = d.client();
    let state = with_deadline(
        "exec after restart",
        api.sh("rs", "cat /home/sprite/a /home/sprite/b"),
    )
    .await;
    assert_eq!(state, "new\nnew\n");
    fsck_all(&d, &id);
    let leftovers: Vec<_> = names(&d.pool_dir().join("sprites").join(&id))
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Killed after the swap, before the sprite started: the restored state.
    common::post_in_background(&d, &api, "/v1/sprites/rs/checkpoints/v0/restore");
    restart_with(&mut d, &[]);
    let api = d.client();
    let state = with_deadline(
        "exec after restart",
        api.sh("rs", "cat /home/sprite/a /home/sprite/b"),
    )
    .await;
    assert_eq!(state, "old\nold\n");
    fsck_all(&d, &id);
    // A normal restore still works afterwards.
    api.sh("rs", "echo third > /home/sprite/a").await;
    api.restore("rs", "v0").await;
    assert_eq!(api.sh("rs", "cat /home/sprite/a").await, "old\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_fails_the_checkpoint_and_harms_nothing() {
    let d = Daemon::start_with(&["--pool-size-gb", "2"]);
    let api = d.client();
    api.create("full").await;
    api.sh("full", "echo precious > /home/sprite/f; sync").await;
    let id = api.id_of("full").await;

    // Fill the pool to the brim.
    let filler = d.pool_dir().join("filler");
    let st = nix::sys::statvfs::statvfs(&d.pool_dir()).expect("statvfs");
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    run(Command::new("fallocate")
        .args(["-l", &(free - (16 << 20)).to_string()])
        .arg(&filler));

    // Refused before anything is streamed: 507, saying why.
    let (status, lines) = api.post_ndjson("/v1/sprites/full/checkpoint", None).await;
    assert_eq!(status, 507, "{lines:?}");
    assert!(
        lines[0]["message"]
            .as_str()
            .expect("message")
            .contains("too little free space"),
        "{lines:?}"
    );
    assert_eq!(
        api.get_json("/v1/sprites/full/checkpoints").await,
        serde_json::json!([])
    );
    // The sprite runs on, its data intact.
    assert_eq!(api.get_json("/v1/sprites/full").await["status"], "running");
    assert_eq!(api.sh("full", "cat /home/sprite/f").await, "precious\n");
    fsck_all(&d, &id);

    // Space back: the checkpoint works, and is v0 (the failed one took no id).
    std::fs::remove_file(&filler).expect("remove filler");
    assert_eq!(api.checkpoint("full", None).await, "v0");
    fsck_all(&d, &id);
}
