//! Sandboxes started ahead (`--start-pool`): a create that asks for
//! nothing but the defaults takes one and is the sprite it names (hostname,
//! /etc/hosts, guide, limits, network); any other create makes its own; a
//! daemon killed with some made leaves nothing of them after its next
//! start, and one that stops removes its own. (Its egress and isolation
//! are held by the egress suite, whose sprites are made on them.)

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{mounts_under, Api, Daemon};

/// Inside a sprite: its cgroup's memory limit in bytes (v1 or v2).
const MEMORY_LIMIT: &str =
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max";

/// Ids of every volume in the pool (sprites and sandboxes made ahead).
fn volume_ids(d: &Daemon) -> BTreeSet<String> {
    std::fs::read_dir(d.pool_dir().join("sprites"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Ids of the sprites the API lists.
async fn sprite_ids(api: &Api) -> BTreeSet<String> {
    let list = api.get_json("/v1/sprites").await;
    list["sprites"]
        .as_array()
        .expect("sprites")
        .iter()
        .filter_map(|s| s["id"].as_str().map(String::from))
        .collect()
}

/// Ids of the sandboxes made ahead: volumes no sprite is.
async fn made_ahead(d: &Daemon, api: &Api) -> BTreeSet<String> {
    let sprites = sprite_ids(api).await;
    volume_ids(d)
        .into_iter()
        .filter(|id| !sprites.contains(id))
        .collect()
}

/// Nothing of sandbox `id` is left: its volume, its mounts, its container.
fn gone(d: &Daemon, id: &str) {
    assert!(
        !d.pool_dir().join("sprites").join(id).exists(),
        "{id}'s volume"
    );
    let dir = d.data_dir.join("sprites").join(id);
    assert!(mounts_under(&dir).is_empty(), "{:?}", mounts_under(&dir));
    assert_eq!(d.runc_state(id), "absent", "{id}'s container");
    assert!(
        !d.data_dir.join("runc").join(id).exists(),
        "{id}'s runc state"
    );
}

/// One request to a sprite's agent, straight on its socket, and its reply.
fn ask_agent(
    socket: &std::path::Path,
    req: &sprites_api::agent::Request,
) -> sprites_api::agent::Reply {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("the agent's socket");
    s.write_all(&sprites_api::agent::json_frame(req))
        .expect("send");
    let mut header = [0u8; sprites_api::agent::HEADER_LEN];
    s.read_exact(&mut header).expect("reply header");
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).expect("reply");
    serde_json::from_slice(&body).expect("a JSON reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_create_takes_a_sandbox_made_ahead() {
    let mut d = Daemon::start_with(&["--isolation", "container", "--start-pool", "2"]);
    let api = d.client();
    api.wait_made_ahead(2).await;
    let ahead = made_ahead(&d, &api).await;
    assert_eq!(ahead.len(), 2, "{ahead:?}");
    for id in &ahead {
        // Started, and nothing runs in it but the agent: no command, no
        // service (no process has it for parent).
        assert_eq!(d.runc_state(id), "running", "{id}");
        let pid = d.init_pid(id);
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the agent's tasks");
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            assert!(children.trim().is_empty(), "{id} runs {children}");
        }
    }

    // A default create is one of them, named as it asked.
    let alpha = api.create("alpha").await;
    let id = alpha["id"].as_str().expect("id").to_string();
    assert!(ahead.contains(&id), "{id} not in {ahead:?}");
    assert_eq!(
        api.metric("sprited_creates_total{start=\"ahead\"}").await,
        1.0
    );
    assert_eq!(api.status("alpha").await, "running");
    assert_eq!(d.runc_state(&id), "running");
    assert_eq!(api.sh("alpha", "hostname").await, "alpha\n");
    // /etc/hosts names it, not the placeholder the agent booted with.
    let hosts = api.sh("alpha", "cat /etc/hosts").await;
    assert!(hosts.contains("\talpha\n"), "{hosts}");
    assert!(!hosts.contains("\tsprite\n"), "{hosts}");
    // The agent takes a name only when it is the kernel's: one sent to it
    // otherwise is refused and changes nothing.
    let reply = ask_agent(
        &d.data_dir.join("sprites").join(&id).join("agent.sock"),
        &sprites_api::agent::Request::Named {
            hostname: "mallory".into(),
        },
    );
    assert!(
        matches!(
            reply,
            sprites_api::agent::Reply::Error {
                code: sprites_api::agent::AgentErrorCode::Conflict,
                ..
            }
        ),
        "{reply:?}"
    );
    assert_eq!(api.sh("alpha", "cat /etc/hosts").await, hosts);
    let guide = api.sh("alpha", "cat /.sprite/llm.txt").await;
    assert!(guide.contains("sprite named alpha"), "{guide}");
    assert!(!guide.contains("sprite named sprite"), "{guide}");
    // The default limits, in its own cgroup (v1 or v2, as the host has).
    let mem = api.sh("alpha", MEMORY_LIMIT).await;
    let sprite = api.get_json("/v1/sprites/alpha").await;
    let ram_mb = sprite["config"]["ram_mb"].as_u64().expect("ram_mb");
    assert_eq!(mem.trim(), (ram_mb << 20).to_string(), "{sprite}");
    api.sh("alpha", "echo kept > /home/sprite/f; sync").await;

    // The pool fills again, with others.
    api.wait_made_ahead(2).await;
    let again = made_ahead(&d, &api).await;
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(!again.contains(&id));

    // A create that asks for other limits, or another image, makes its own.
    let beta = api
        .create_with(serde_json::json!({"name": "beta", "config": {"ram_mb": 768}}))
        .await;
    let beta_id = beta["id"].as_str().expect("id").to_string();
    assert!(!again.contains(&beta_id));
    assert_eq!(
        api.metric("sprited_creates_total{start=\"new\"}").await,
        1.0
    );
    let mem = api.sh("beta", MEMORY_LIMIT).await;
    assert_eq!(mem.trim(), (768u64 << 20).to_string());
    assert_eq!(
        made_ahead(&d, &api).await,
        again,
        "the pool was not touched"
    );

    // A name taken: refused, and the sandbox it would have had stays made.
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites")
        .json(&serde_json::json!({"name": "alpha"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 400);
    assert_eq!(made_ahead(&d, &api).await, again);

    // Killed with sandboxes made: the next start removes them (no sprite
    // is theirs) and makes new ones; the sprites are as they were.
    d.kill9();
    d.spawn();
    let api = d.client();
    api.wait_made_ahead(2).await;
    for old in &again {
        gone(&d, old);
    }
    let fresh = made_ahead(&d, &api).await;
    assert_eq!(fresh.len(), 2, "{fresh:?}");
    assert!(fresh.is_disjoint(&again));
    assert_eq!(api.sh("alpha", "cat /home/sprite/f").await, "kept\n");
    assert_eq!(api.sh("alpha", "hostname").await, "alpha\n");

    // Destroyed, a sprite made on one leaves nothing either.
    api.delete("alpha").await;
    gone(&d, &id);

    // Stopped (SIGTERM): what it made ahead goes with it; sprites stay.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        d.wait_exit(Duration::from_secs(30)),
        "the daemon did not stop"
    );
    for id in &fresh {
        gone(&d, id);
    }
    assert_eq!(volume_ids(&d), BTreeSet::from([beta_id.clone()]));
    assert_eq!(d.runc_state(&beta_id), "running");
    d.spawn();
    let api = d.client();
    assert_eq!(api.sh("beta", "hostname").await, "beta\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_take_what_is_made_and_make_the_rest() {
    let d = Daemon::start_with(&["--isolation", "container", "--start-pool", "2"]);
    let api = d.client();
    api.wait_made_ahead(2).await;
    let names: Vec<String> = (0..5).map(|i| format!("many-{i}")).collect();
    let creates = names.iter().map(|n| api.create(n));
    let made = futures_util::future::join_all(creates).await;
    let ids: BTreeSet<&str> = made.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids.len(), 5, "each its own sandbox: {ids:?}");
    let ahead = api.metric("sprited_creates_total{start=\"ahead\"}").await;
    let new = api.metric("sprited_creates_total{start=\"new\"}").await;
    assert_eq!(ahead + new, 5.0);
    assert!(ahead >= 1.0, "{ahead} made ahead");
    for n in &names {
        assert_eq!(api.sh(n, "hostname").await, format!("{n}\n"));
    }
    for n in &names {
        api.delete(n).await;
    }
    api.wait_made_ahead(2).await;
    assert_eq!(made_ahead(&d, &api).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_waiting_for_capacity_keeps_the_volume_made_ahead_and_its_name() {
    let d = Daemon::start_with(&[
        "--isolation",
        "container",
        "--start-pool",
        "1",
        "--max-running",
        "1",
        "--idle-warm",
        "1h",
    ]);
    let api = d.client();
    api.wait_made_ahead(1).await;
    api.create("first").await;
    // Made ahead again: not counted against --max-running.
    api.wait_made_ahead(1).await;
    let ahead = made_ahead(&d, &api).await;

    // No room to run: the sprite takes the sandbox made ahead, keeps its
    // volume and waits cold.
    let second = api
        .create_with(serde_json::json!({"name": "second", "wait_for_capacity": true}))
        .await;
    assert_eq!(second["status"], "cold", "{second}");
    let id = second["id"].as_str().expect("id").to_string();
    assert!(ahead.contains(&id), "{id} not in {ahead:?}");
    assert_eq!(d.runc_state(&id), "absent");
    assert!(
        d.pool_dir().join("sprites").join(&id).exists(),
        "its volume"
    );

    // Room again: it wakes as itself, and /etc/hosts (written by the agent
    // that booted ahead) names it, not the placeholder.
    api.delete("first").await;
    assert_eq!(api.sh("second", "hostname").await, "second\n");
    let hosts = api.sh("second", "cat /etc/hosts").await;
    assert!(hosts.contains("\tsecond\n"), "{hosts}");
    assert!(!hosts.contains("\tsprite\n"), "{hosts}");
    let guide = api.sh("second", "cat /.sprite/llm.txt").await;
    assert!(guide.contains("sprite named second"), "{guide}");
}
