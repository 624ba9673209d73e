//! A sprite's files survive exec calls, a stop and start, a daemon SIGKILL
//! and restart, and a simulated host reboot.

mod common;

use std::process::Command;

use common::Daemon;
use reqwest::Method;
use serde_json::Value;

fn runc(d: &Daemon, args: &[&str]) -> String {
    let out = Command::new("runc")
        .arg("--root")
        .arg(d.data_dir.join("runc"))
        .args(args)
        .output()
        .expect("runc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every mount under the data dir, deepest first.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(String::from))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

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
    for id in runc(&d, &["list", "-q"]).split_whitespace() {
        runc(&d, &["kill", "--all", id, "KILL"]);
    }
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
