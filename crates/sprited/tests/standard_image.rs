//! The `standard` image (Debian bookworm, built with mmdebstrap on first
//! use): the tools users expect, the `sprite` user with passwordless sudo.

mod common;

use common::Daemon;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_image_has_the_tools_and_sudo() {
    let d = Daemon::start();
    let api = d.client();
    let r = api
        .req(Method::POST, "/v1/sprites")
        .json(&json!({"name": "std", "image": "standard"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());

    let o = api.exec("std", &["id"]).await;
    assert!(
        o.out().starts_with("uid=1000(sprite) gid=1000(sprite)"),
        "{o:?}"
    );
    let o = api.exec("std", &["sudo", "-n", "id", "-u"]).await;
    assert_eq!(o.out(), "0\n", "passwordless sudo: {o:?}");
    assert!(o.stderr.is_empty(), "sudo resolves the host name: {o:?}");
    let o = api
        .exec(
            "std",
            &[
                "bash",
                "-c",
                "python3 -c 'print(6*7)' && git --version >/dev/null && curl --version >/dev/null \
                 && ps -e >/dev/null && python3 -m venv /tmp/v && /tmp/v/bin/pip --version >/dev/null \
                 && echo $HOME && stat -c %U /home/sprite",
            ],
        )
        .await;
    assert_eq!(o.out(), "42\n/home/sprite\nsprite\n", "{o:?}");
    // sprite-env is on the PATH of login shells too, and checkpoints work
    // on this image (setuid tools, no no_new_privs).
    let o = api
        .exec(
            "std",
            &[
                "bash",
                "-lc",
                "sprite-env checkpoints create --comment std >/dev/null && sprite-env checkpoints list --json",
            ],
        )
        .await;
    assert_eq!(o.code, Some(0), "{o:?}");
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json list");
    assert_eq!(list[0]["comment"], "std", "{list}");
    api.delete("std").await;
}
