//! `POST /v1/sprites/{name}/restart` and the resources policy
//! (`/v1/sprites/{name}/policy/resources`), as the JS SDK calls them.

mod common;

use common::Daemon;
use reqwest::Method;
use serde_json::json;

/// Inside the sprite: its cgroup's memory limit in bytes (v1 or v2), or
/// under gVisor (no host cgroup inside) the memory its kernel reports.
const MEMORY_LIMIT: &str =
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max 2>/dev/null || \
     echo $(( $(sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo) * 1024 ))";

/// A mark of the running sandbox: a random id kept in its /dev/shm (a
/// tmpfs of the sandbox's own), made on first ask; a new sandbox has a new
/// one. (The agent's start time does not do under gVisor: each sandbox's
/// clock starts at its own boot, so a new agent can start at the same tick.)
const SANDBOX_MARK: &str = "test -s /dev/shm/.sandbox-mark || od -An -N8 -tx1 /dev/urandom | tr -d ' \\n' > /dev/shm/.sandbox-mark; cat /dev/shm/.sandbox-mark";

/// Restarts sprite `name`, insisting on a 200; answers the body.
async fn restart(api: &common::Api, name: &str) -> serde_json::Value {
    let r = api
        .req(Method::POST, &format!("/v1/sprites/{name}/restart"))
        .send()
        .await
        .expect("restart");
    assert_eq!(r.status(), 200, "restart {name}");
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_stops_processes_and_keeps_files() {
    let d = Daemon::start();
    let api = d.client();
    api.create("rs").await;
    let id = api.id_of("rs").await;
    api.sh("rs", "echo kept > /home/sprite/f; sync").await;
    api.sh("rs", "setsid sleep 1000 </dev/null >/dev/null 2>&1 &")
        .await;
    // Process ids start over in a new sandbox, so look for the command;
    // `100[0]` keeps this script's own command line from matching.
    let sleeping = "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -q 'sleep 100[0]' && echo alive || echo gone";
    assert_eq!(
        api.sh("rs", sleeping).await,
        "alive\n",
        "before the restart"
    );
    let started = api.sh("rs", SANDBOX_MARK).await;
    assert_eq!(started.len(), 16, "{started:?}");

    let body = restart(&api, "rs").await;
    assert_eq!(body["sprite_name"], "rs", "{body}");
    assert_eq!(body["machine_id"], id.as_str(), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        api.get_json("/v1/sprites/rs").await["status"],
        "running",
        "running again at once"
    );

    assert_ne!(api.sh("rs", SANDBOX_MARK).await, started, "same sandbox");
    assert_eq!(
        api.sh("rs", sleeping).await,
        "gone\n",
        "the old process survived the restart"
    );
    assert_eq!(api.sh("rs", "cat /home/sprite/f").await, "kept\n");

    let r = api
        .req(Method::POST, "/v1/sprites/nope/restart")
        .send()
        .await
        .expect("restart unknown");
    assert_eq!(r.status(), 404);
    let err: serde_json::Value = r.json().await.expect("error json");
    assert!(err["error"].is_string(), "{err}");
    api.delete("rs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_policy_sets_the_memory_limit_at_the_next_start() {
    let d = Daemon::start();
    let api = d.client();
    api.create("mem").await;
    let path = "/v1/sprites/mem/policy/resources";
    let policy = api.get_json(path).await;
    assert_eq!(
        policy,
        json!({"memory": {"limit_mb": 1024, "autoscale": false}}),
        "the default RAM"
    );
    assert_eq!(
        api.sh("mem", MEMORY_LIMIT).await,
        format!("{}\n", 1024u64 << 20)
    );

    let post = |body: serde_json::Value| api.req(Method::POST, path).json(&body).send();
    let r = post(json!({"memory": {"limit_mb": 256}}))
        .await
        .expect("post");
    assert_eq!(r.status(), 204);
    assert_eq!(
        api.get_json(path).await,
        json!({"memory": {"limit_mb": 256, "autoscale": false}})
    );
    assert_eq!(
        api.get_json("/v1/sprites/mem").await["config"]["ram_mb"],
        256
    );
    // Until the next start, the sandbox keeps the limit it started with.
    assert_eq!(
        api.sh("mem", MEMORY_LIMIT).await,
        format!("{}\n", 1024u64 << 20)
    );
    restart(&api, "mem").await;
    assert_eq!(
        api.sh("mem", MEMORY_LIMIT).await,
        format!("{}\n", 256u64 << 20)
    );

    // Refused, each a 400 in the Sprites error format, the policy unchanged.
    for bad in [
        json!({"memory": {"limit_mb": 512, "autoscale": true}}),
        json!({"memory": {"limit_mb": 8}}),
        json!({"memory": {"limit_mb": "lots"}}),
        json!({"memory": {"limit_mb": 256.5}}),
    ] {
        let r = post(bad.clone()).await.expect("post");
        assert_eq!(r.status(), 400, "{bad}");
        let err: serde_json::Value = r.json().await.expect("error json");
        assert_eq!(err["error"], "bad_request", "{bad}: {err}");
    }
    let r = post(json!({"memory": {"limit_mb": 512, "autoscale": true}}))
        .await
        .expect("post");
    let err: serde_json::Value = r.json().await.expect("json");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("autoscale")),
        "{err}"
    );
    assert_eq!(api.get_json(path).await["memory"]["limit_mb"], 256);

    // DELETE: back to the daemon's default, at the next start.
    let r = api.req(Method::DELETE, path).send().await.expect("delete");
    assert_eq!(r.status(), 204);
    assert_eq!(api.get_json(path).await["memory"]["limit_mb"], 1024);
    restart(&api, "mem").await;
    assert_eq!(
        api.sh("mem", MEMORY_LIMIT).await,
        format!("{}\n", 1024u64 << 20)
    );

    let r = api
        .req(Method::GET, "/v1/sprites/nope/policy/resources")
        .send()
        .await
        .expect("get unknown");
    assert_eq!(r.status(), 404);
    api.delete("mem").await;
}
