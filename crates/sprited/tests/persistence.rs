//! A sprite's files survive exec calls, a stop and start, a daemon SIGKILL
//! and restart, and a simulated host reboot.

mod common;

use std::process::Command;

use common::{mounts_under, Daemon};
use reqwest::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_survive_restarts_and_reboots() {
    let mut d = Daemon::start();
    let api = d.client();
    api.create("keep").await;
    let o = api
        .exec_with(
            "keep",
            &[
                "sh",
                "-c",
                "echo hi > /home/sprite/f && mkdir -p /opt/x && echo deep > /opt/x/y",
            ],
            "user=root",
            &[],
        )
        .await;
    assert_eq!(o.code, Some(0), "{o:?}");
    // A background process to prove the sprite keeps running without the daemon.
    let o = api
        .exec_with(
            "keep",
            &["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"],
            "max_run_after_disconnect=0",
            &[],
        )
        .await;
    let sleeper = o.out().trim().to_string();
    assert!(!sleeper.is_empty());

    // Daemon SIGKILL and restart: the sprite ran on, the daemon finds it.
    d.kill9();
    d.spawn();
    let api = d.client();
    let s: Value = api.get_json("/v1/sprites/keep").await;
    assert_eq!(s["status"], "running");
    assert_eq!(
        api.exec("keep", &["cat", "/home/sprite/f"]).await.out(),
        "hi\n"
    );
    let o = api
        .exec(
            "keep",
            &[
                "sh",
                "-c",
                &format!("test -d /proc/{sleeper} && echo alive"),
            ],
        )
        .await;
    assert_eq!(
        o.out(),
        "alive\n",
        "the sprite's processes outlived the daemon"
    );

    // Stop and start (upgrade restarts the sprite on the current agent).
    let r = api
        .req(Method::POST, "/v1/sprites/keep/upgrade")
        .send()
        .await
        .expect("upgrade");
    assert_eq!(r.status(), 204);
    assert_eq!(api.exec("keep", &["cat", "/opt/x/y"]).await.out(), "deep\n");

    // Simulated host reboot: every sprite process and the daemon killed,
    // every mount gone, then the daemon restarted.
    d.kill9();
    d.kill_all_sandboxes();
    std::thread::sleep(std::time::Duration::from_millis(300));
    for m in mounts_under(&d.data_dir) {
        let st = Command::new("umount")
            .arg("-l")
            .arg(&m)
            .status()
            .expect("umount");
        assert!(st.success(), "umount {m}");
    }
    assert!(mounts_under(&d.data_dir).is_empty());
    d.spawn();
    let api = d.client();
    let s: Value = api.get_json("/v1/sprites/keep").await;
    assert_eq!(
        s["status"], "cold",
        "nothing runs after a reboot until used"
    );
    assert_eq!(
        api.exec("keep", &["cat", "/home/sprite/f"]).await.out(),
        "hi\n"
    );
    assert_eq!(api.exec("keep", &["cat", "/opt/x/y"]).await.out(), "deep\n");
    let s: Value = api.get_json("/v1/sprites/keep").await;
    assert_eq!(s["status"], "running");
    api.delete("keep").await;
    assert!(
        !mounts_under(&d.data_dir.join("sprites"))
            .iter()
            .any(|m| m.contains("rootfs")),
        "destroy unmounts the sprite"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_finishes_what_a_killed_daemon_left_half_done() {
    let mut d = Daemon::start();
    let api = d.client();
    let half = api.create("half").await;
    api.create("whole").await;
    let o = api
        .exec("whole", &["sh", "-c", "echo safe > /home/sprite/f"])
        .await;
    assert_eq!(o.code, Some(0));
    d.kill9();

    // "half": a create that died after its row was written, before its
    // volume existed. An orphan volume: a destroy that died after the row
    // was deleted.
    let id = half["id"].as_str().expect("id").to_string();
    d.remove_sandbox(&id);
    for m in mounts_under(&d.data_dir.join("sprites").join(&id)) {
        let st = Command::new("umount").arg(&m).status().expect("umount");
        assert!(st.success(), "umount {m}");
    }
    let pool_sprites = d.data_dir.join("pool/sprites");
    std::fs::remove_file(pool_sprites.join(&id).join("volume.img")).expect("remove volume");
    let orphan = pool_sprites.join("0b7c6c1e-0000-4000-8000-000000000000");
    std::fs::create_dir_all(&orphan).expect("orphan dir");
    std::fs::write(orphan.join("volume.img"), b"").expect("orphan volume");

    d.spawn();
    let api = d.client();
    let list = api.get_json("/v1/sprites").await;
    let names: Vec<&str> = list["sprites"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["whole"],
        "the unfinished create is gone, the rest stays"
    );
    assert!(!orphan.exists(), "the orphan volume is removed");
    assert!(!pool_sprites.join(&id).exists());
    assert_eq!(
        api.exec("whole", &["cat", "/home/sprite/f"]).await.out(),
        "safe\n"
    );
    // The name of the unfinished sprite is free again.
    api.create("half").await;
    api.delete("half").await;
    api.delete("whole").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_leaves_nothing_behind() {
    let mut d = Daemon::start();
    let api = d.client();
    let s = api.create("gone").await;
    let id = s["id"].as_str().expect("id").to_string();
    let pid = d.init_pid(&id);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    d.kill9();

    let st = Command::new(common::BIN)
        .args(["purge", "--data-dir"])
        .arg(&d.data_dir)
        .status()
        .expect("purge");
    assert!(st.success());
    assert!(!d.data_dir.exists(), "the data dir is removed");
    assert!(
        mounts_under(&d.data_dir).is_empty(),
        "nothing stays mounted"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sprite's init {pid} still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let loops = Command::new("losetup").arg("-a").output().expect("losetup");
    assert!(
        !String::from_utf8_lossy(&loops.stdout).contains(&d.data_dir.display().to_string()),
        "no loop device is left"
    );
}
