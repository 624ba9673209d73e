//! The development image as a new user meets it: in a `standard` sprite, as
//! the default user and without flags, top-level folders, `pip install`,
//! `npm install`, `sudo apt-get install`, Go and Rust; all of it still there
//! after the sprite goes cold and wakes, and after a checkpoint restore.
//! Packages come from the real registries (egress limited to the default
//! allow-list), through the host's CA certificates where it has extra ones.

mod common;

use std::time::Duration;

use common::{Api, Daemon};
use reqwest::Method;
use serde_json::json;

/// Everything the installs left, checked in one go: prints `all there`.
const STILL_THERE: &str = "set -e; test -f /workspace/made && test -d /srv/x && test -d /opt/x; \
     python -c 'import six'; cd /workspace && node -e \"require('is-number')\"; \
     tree --version >/dev/null; jq --version >/dev/null; semver 1.2.3 >/dev/null; echo all there";

/// `bash -c script` as the default user; panics unless it exits 0.
async fn run(api: &Api, script: &str) -> String {
    let o = api.exec("dev", &["bash", "-c", script]).await;
    assert_eq!(
        o.code,
        Some(0),
        "{script}:\n{}\n{}",
        o.out(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.out()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_image_installs_and_keeps_what_it_installed() {
    let mut args = vec!["--idle-warm", "2s", "--idle-cold", "3s"];
    let ca = common::host_ca_args();
    args.extend(ca.iter().map(String::as_str));
    let d = Daemon::start_with(&args);
    let api = d.client();
    let r = api
        .req(Method::POST, "/v1/sprites")
        .json(&json!({"name": "dev", "image": "standard"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let r = api
        .req(Method::POST, "/v1/sprites/dev/policy/network")
        .json(&json!({"rules": [{"include": "defaults"}, {"domain": "*", "action": "deny"}]}))
        .send()
        .await
        .expect("policy");
    assert_eq!(r.status(), 204);

    assert_eq!(run(&api, "id -un").await, "sprite\n");
    // Top-level folders, as tools written for the hosted service make them.
    run(
        &api,
        "mkdir -p /workspace /srv/x /opt/x && touch /workspace/made",
    )
    .await;
    // Python: the sprite's own environment, first on PATH, no PEP 668.
    let o = run(
        &api,
        "python --version; command -v python pip; stat -c %U /opt/venv; bash -lc 'command -v pip'",
    )
    .await;
    assert!(o.starts_with("Python 3."), "{o}");
    assert!(
        o.ends_with("/opt/venv/bin/python\n/opt/venv/bin/pip\nsprite\n/opt/venv/bin/pip\n"),
        "{o} (login shells too)"
    );
    run(&api, "pip install -q --no-cache-dir six").await;
    assert_eq!(
        run(
            &api,
            "python -c 'import six, sys; print(sys.prefix)'; python -m pip --version | cut -d' ' -f1"
        )
        .await,
        "/opt/venv\npip\n"
    );
    // Node.js, npm, npx.
    run(
        &api,
        "cd /workspace && npm install --no-audit --no-fund --loglevel=error is-number \
         && node -e \"require('is-number')\" && npx --version >/dev/null",
    )
    .await;
    // Global packages go where the user may write, on PATH.
    assert_eq!(
        run(
            &api,
            "npm install -g --no-audit --no-fund --loglevel=error semver >/dev/null && command -v semver"
        )
        .await,
        "/opt/npm/bin/semver\n"
    );
    // apt with the image's package lists: one package it has, one it has not.
    run(&api, "sudo apt-get install -y -q jq >/dev/null").await;
    run(
        &api,
        "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q tree >/dev/null && tree --version",
    )
    .await;
    let o = run(
        &api,
        "go version && cargo --version && rustc --version && ruby --version",
    )
    .await;
    assert!(o.starts_with("go version go1."), "{o}");
    assert!(o.contains("\ncargo 1."), "{o}");
    assert_eq!(run(&api, STILL_THERE).await, "all there\n");

    // Cold (no process, no memory), then woken by the next exec.
    api.wait_status("dev", "cold", Duration::from_secs(60))
        .await;
    assert_eq!(run(&api, STILL_THERE).await, "all there\n");

    // A checkpoint, everything undone, the checkpoint restored.
    let v = api.checkpoint("dev", Some("installed")).await;
    run(
        &api,
        "pip uninstall -y -q six && rm -rf /workspace /srv/x /opt/x \
         && sudo apt-get remove -y -q tree >/dev/null",
    )
    .await;
    let o = api.exec("dev", &["bash", "-c", STILL_THERE]).await;
    assert_ne!(o.code, Some(0), "undone: {o:?}");
    api.restore("dev", &v).await;
    assert_eq!(run(&api, STILL_THERE).await, "all there\n");
    api.delete("dev").await;
}
