//! Services through the real API: supervised by the agent, started at boot,
//! frozen (not restarted) through warm, started again after cold; stop is
//! sticky; a crash loop harms nothing.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;

async fn ndjson(
    api: &common::Api,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, Vec<serde_json::Value>) {
    let mut req = api.req(method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    if status != 200 {
        return (
            status,
            vec![serde_json::from_str(&text).unwrap_or_default()],
        );
    }
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    (status, lines)
}

async fn service(api: &common::Api, sprite: &str, name: &str) -> serde_json::Value {
    api.get_json(&format!("/v1/sprites/{sprite}/services/{name}"))
        .await
}

async fn status(api: &common::Api, name: &str) -> String {
    api.get_json(&format!("/v1/sprites/{name}")).await["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn wait_status(api: &common::Api, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(api, name).await != want {
        assert!(Instant::now() < deadline, "{name} never became {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_live_through_warm_and_cold() {
    let d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "2s"]);
    let api = d.client();
    api.create("svc").await;

    // A service that counts, and one that needs it.
    let (code, events) = ndjson(
        &api,
        reqwest::Method::PUT,
        "/v1/sprites/svc/services/counter?duration=1s",
        Some(serde_json::json!({
            "cmd": "sh",
            "args": ["-c", "echo started; i=0; while true; i=$((i+1)); do echo $i > /tmp/n; sleep 0.1; done"],
        })),
    )
    .await;
    assert_eq!(code, 200, "{events:?}");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"started"), "{events:?}");
    assert_eq!(kinds.last(), Some(&"complete"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "stdout" && e["data"].as_str().unwrap_or("").contains("started")),
        "{events:?}"
    );
    assert!(events.iter().all(|e| e["timestamp"].is_i64()), "{events:?}");
    let (code, events) = ndjson(
        &api,
        reqwest::Method::PUT,
        "/v1/sprites/svc/services/after",
        Some(serde_json::json!({"cmd": "sleep", "args": ["1000"], "needs": ["counter"]})),
    )
    .await;
    assert_eq!(code, 200, "{events:?}");

    let list = api.get_json("/v1/sprites/svc/services").await;
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{list}");
    let counter = service(&api, "svc", "counter").await;
    assert_eq!(counter["state"]["status"], "running", "{counter}");
    let pid = counter["state"]["pid"].as_i64().expect("pid");

    // Services do not keep a sprite awake; through warm they are frozen,
    // not restarted: same pid after.
    wait_status(&api, "svc", "warm").await;
    let counter = service(&api, "svc", "counter").await;
    assert_eq!(
        counter["state"]["pid"].as_i64(),
        Some(pid),
        "restarted by warm"
    );
    assert_eq!(counter["state"]["restart_count"], 0);

    // After cold, the next boot starts them again.
    wait_status(&api, "svc", "warm").await;
    wait_status(&api, "svc", "cold").await;
    let counter = service(&api, "svc", "counter").await;
    assert_eq!(counter["state"]["status"], "running", "{counter}");
    let after = service(&api, "svc", "after").await;
    assert_eq!(after["state"]["status"], "running", "{after}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n: u64 = api.sh("svc", "cat /tmp/n").await.trim().parse().expect("n");
    assert!(n > 0);

    // Stop is sticky: still stopped after the next cold boot.
    let (code, events) = ndjson(
        &api,
        reqwest::Method::POST,
        "/v1/sprites/svc/services/counter/stop?timeout=2s",
        None,
    )
    .await;
    assert_eq!(code, 200, "{events:?}");
    assert!(events.iter().any(|e| e["type"] == "stopped"), "{events:?}");
    let (code, _) = ndjson(
        &api,
        reqwest::Method::POST,
        "/v1/sprites/svc/services/counter/stop",
        None,
    )
    .await;
    assert_eq!(code, 409, "stopping a stopped service");
    wait_status(&api, "svc", "warm").await;
    wait_status(&api, "svc", "cold").await;
    let counter = service(&api, "svc", "counter").await;
    assert_eq!(counter["state"]["status"], "stopped", "{counter}");
    let (code, events) = ndjson(
        &api,
        reqwest::Method::POST,
        "/v1/sprites/svc/services/counter/start",
        None,
    )
    .await;
    assert_eq!(code, 200, "{events:?}");
    assert_eq!(
        service(&api, "svc", "counter").await["state"]["status"],
        "running"
    );

    // Logs, signal, delete, and errors.
    let logs = api
        .req(
            reqwest::Method::GET,
            "/v1/sprites/svc/services/counter/logs?lines=5",
        )
        .send()
        .await
        .expect("logs");
    assert_eq!(logs.status(), 200);
    assert!(logs.text().await.expect("text").contains("started"));
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites/svc/services/signal")
        .json(&serde_json::json!({"name": "after", "signal": "SIGTERM"}))
        .send()
        .await
        .expect("signal");
    assert_eq!(r.status(), 204);
    let r = api
        .req(reqwest::Method::GET, "/v1/sprites/svc/services/nope")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let r = api
        .req(reqwest::Method::PUT, "/v1/sprites/svc/services/bad%20name")
        .json(&serde_json::json!({"cmd": "true"}))
        .send()
        .await
        .expect("bad name");
    assert_eq!(r.status(), 400);
    let r = api
        .req(reqwest::Method::DELETE, "/v1/sprites/svc/services/after")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let r = api
        .req(reqwest::Method::GET, "/v1/sprites/svc/services/after")
        .send()
        .await
        .expect("get deleted");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_harms_nothing_and_http_port_is_unique() {
    let d = Daemon::start();
    let api = d.client();
    api.create("loop").await;
    let (code, events) = ndjson(
        &api,
        reqwest::Method::PUT,
        "/v1/sprites/loop/services/crasher",
        Some(serde_json::json!({"cmd": "sh", "args": ["-c", "echo boom; exit 3"]})),
    )
    .await;
    assert_eq!(code, 200, "{events:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = service(&api, "loop", "crasher").await;
    assert!(
        s["state"]["restart_count"].as_u64().unwrap_or(0) >= 1,
        "never restarted: {s}"
    );
    // Backoff: not restarted hundreds of times in 4 s.
    assert!(
        s["state"]["restart_count"].as_u64().unwrap_or(0) < 10,
        "{s}"
    );
    // The sprite and its agent are fine.
    assert_eq!(api.sh("loop", "echo alive").await, "alive\n");

    let (code, _) = ndjson(
        &api,
        reqwest::Method::PUT,
        "/v1/sprites/loop/services/web",
        Some(serde_json::json!({"cmd": "sleep", "args": ["1000"], "http_port": 8080})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = ndjson(
        &api,
        reqwest::Method::PUT,
        "/v1/sprites/loop/services/web2",
        Some(serde_json::json!({"cmd": "sleep", "args": ["1000"], "http_port": 8081})),
    )
    .await;
    assert_eq!(code, 409, "a second http_port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_from_inside_with_sprite_env() {
    let d = Daemon::start();
    let api = d.client();
    api.create("envsvc").await;
    api.sh(
        "envsvc",
        "sprite-env services create ticker --duration 1s -- sh -c 'while true; do date; sleep 1; done' >/dev/null",
    )
    .await;
    let list = api.sh("envsvc", "sprite-env services list --json").await;
    let v: serde_json::Value = serde_json::from_str(&list).expect("json");
    assert_eq!(v[0]["name"], "ticker", "{v}");
    api.sh("envsvc", "sprite-env services stop ticker >/dev/null")
        .await;
    let s = service(&api, "envsvc", "ticker").await;
    assert_eq!(s["state"]["status"], "stopped", "{s}");
}
