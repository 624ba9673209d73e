//! Services end to end: the daemon's API and `sprite-env services` inside a
//! real sprite, both relayed to the agent that supervises them; through
//! warm and cold, and across a checkpoint restore.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Daemon, Output};
use serde_json::{json, Value};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A request answered by NDJSON: (status, lines; or the error body).
async fn ndjson(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Vec<Value>) {
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
            vec![serde_json::from_str(&text).unwrap_or(Value::String(text))],
        );
    }
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    (status, lines)
}

fn types(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["type"].as_str().unwrap_or("?"))
        .collect()
}

async fn status_code(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = api.req(method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}

async fn service(api: &Api, sprite: &str, svc: &str) -> Value {
    api.get_json(&format!("/v1/sprites/{sprite}/services/{svc}"))
        .await
}

/// Poll the service until `ok` holds; panics after 30 s.
async fn wait_service(
    api: &Api,
    sprite: &str,
    svc: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = service(api, sprite, svc).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{svc} never {what}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_running(s: &Value) -> bool {
    s["state"]["status"] == "running"
}

async fn sprite_status(api: &Api, name: &str) -> String {
    api.get_json(&format!("/v1/sprites/{name}")).await["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn wait_sprite(api: &Api, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = sprite_status(api, name).await;
        if s == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {s}, never {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_through_the_api() {
    let d = Daemon::start();
    let api = d.client();
    api.create("svc").await;
    let base = "/v1/sprites/svc/services";
    use reqwest::Method as M;

    let (code, lines) = ndjson(
        &api,
        M::PUT,
        &format!("{base}/web?duration=2s"),
        Some(json!({"cmd": "sh", "args": ["-c", "echo hello; exec sleep 600"], "http_port": 8080})),
    )
    .await;
    assert_eq!(code, 200, "{lines:?}");
    assert_eq!(
        types(&lines),
        ["started", "stdout", "complete"],
        "{lines:?}"
    );
    assert_eq!(lines[1]["data"], "hello\n");
    assert_eq!(lines[0]["log_files"]["stdout"], "/.sprite/logs/web.log");
    assert!(lines[0]["timestamp"].as_i64().unwrap_or(0) > 1_600_000_000_000);

    let list = api.get_json(base).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let web = service(&api, "svc", "web").await;
    assert_eq!(web["state"]["status"], "running", "{web}");
    assert_eq!(web["http_port"], 8080);
    let pid = web["state"]["pid"].as_i64().expect("pid");
    // As the sprite user, its log readable by that user.
    assert_eq!(
        api.sh("svc", &format!("stat -c %U /proc/{pid}")).await,
        "sprite\n"
    );
    let log = api.sh("svc", "cat /.sprite/logs/web.log").await;
    assert!(log.contains("hello\n"), "{log}");

    // Conflicts and bad definitions.
    let (code, body) = ndjson(
        &api,
        M::PUT,
        &format!("{base}/other"),
        Some(json!({"cmd": "sleep", "args": ["600"], "http_port": 9090})),
    )
    .await;
    assert_eq!(code, 409, "{body:?}");
    assert_eq!(body[0]["error"], "conflict");
    let (code, _) = ndjson(
        &api,
        M::PUT,
        &format!("{base}/other"),
        Some(json!({"cmd": "sleep", "needs": ["nope"]})),
    )
    .await;
    assert_eq!(code, 400);

    // Signals: delivered, unknown name, unknown service.
    let sig = |name: &str, signal: &str| json!({"name": name, "signal": signal});
    let (code, _) = status_code(
        &api,
        M::POST,
        &format!("{base}/signal"),
        Some(sig("web", "CONT")),
    )
    .await;
    assert_eq!(code, 204);
    let (code, _) = status_code(
        &api,
        M::POST,
        &format!("{base}/signal"),
        Some(sig("web", "NOPE")),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = status_code(
        &api,
        M::POST,
        &format!("{base}/signal"),
        Some(sig("ghost", "HUP")),
    )
    .await;
    assert_eq!(code, 404);

    let (code, text) = status_code(&api, M::GET, &format!("{base}/web/logs?lines=1"), None).await;
    assert_eq!((code, text.as_str()), (200, "hello\n"));

    // Stop, and stop again.
    let (code, lines) = ndjson(&api, M::POST, &format!("{base}/web/stop?timeout=2s"), None).await;
    assert_eq!(code, 200);
    assert_eq!(
        types(&lines),
        ["stopping", "stopped", "complete"],
        "{lines:?}"
    );
    assert_eq!(lines[1]["exit_code"], 143);
    let (code, body) = ndjson(&api, M::POST, &format!("{base}/web/stop"), None).await;
    assert_eq!(code, 409, "{body:?}");
    let (code, _) = status_code(
        &api,
        M::POST,
        &format!("{base}/signal"),
        Some(sig("web", "HUP")),
    )
    .await;
    assert_eq!(code, 409);

    let (code, lines) = ndjson(&api, M::POST, &format!("{base}/web/start"), None).await;
    assert_eq!(code, 200);
    assert_eq!(types(&lines), ["started", "complete"], "{lines:?}");
    let (code, _) = status_code(&api, M::DELETE, &format!("{base}/web"), None).await;
    assert_eq!(code, 204);
    let (code, _) = status_code(&api, M::GET, &format!("{base}/web"), None).await;
    assert_eq!(code, 404);
    assert_eq!(api.get_json(base).await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprite_env_services_inside_a_sprite() {
    let d = Daemon::start();
    let api = d.client();
    api.create("inside").await;
    let run = |args: &'static [&'static str]| {
        let api = &api;
        async move {
            let argv: Vec<&str> = std::iter::once("sprite-env")
                .chain(args.iter().copied())
                .collect();
            api.exec("inside", &argv).await
        }
    };

    let out = run(&[
        "services",
        "create",
        "hello",
        "--duration",
        "2s",
        "--",
        "sh",
        "-c",
        "echo hi; exec sleep 600",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{} / {}", out.out(), stderr(&out));
    assert_eq!(out.out(), "hi\n");
    assert!(
        stderr(&out).starts_with("hello: started (pid "),
        "{}",
        stderr(&out)
    );

    let out = run(&["services", "list"]).await;
    assert_eq!(out.code, Some(0), "{}", stderr(&out));
    let rows: Vec<Vec<String>> = out
        .out()
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "STATUS", "PID", "RESTARTS", "COMMAND"]);
    assert_eq!(rows[1][..2], ["hello".to_string(), "running".to_string()]);

    // The daemon's API sees what the sprite made.
    assert!(is_running(&service(&api, "inside", "hello").await));

    let out = run(&["services", "stop", "hello", "--timeout", "2s"]).await;
    assert_eq!(out.code, Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "hello: stopping\nhello: stopped (exit code 143)\n"
    );
    let out = run(&["services", "stop", "hello"]).await;
    assert_eq!(out.code, Some(1));
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));

    let out = run(&["services", "logs", "hello", "-n", "5"]).await;
    assert_eq!(out.code, Some(0), "{}", stderr(&out));
    assert!(out.out().contains("hi\n"), "{}", out.out());

    let out = run(&["services", "restart", "hello", "--duration", "1s"]).await;
    assert_eq!(out.code, Some(0), "{}", stderr(&out));
    assert_eq!(out.out(), "hi\n");
    let out = run(&["services", "get", "hello", "--json"]).await;
    let v: Value = serde_json::from_str(&out.out()).expect("json");
    assert_eq!(v["state"]["status"], "running");

    let out = run(&["services", "signal", "hello", "CONT"]).await;
    assert_eq!(out.code, Some(0), "{}", stderr(&out));
    let out = run(&["services", "delete", "hello"]).await;
    assert_eq!(out.code, Some(0), "{}", stderr(&out));
    let out = run(&["services", "list"]).await;
    assert_eq!((out.code, out.out().as_str()), (Some(0), ""));
    assert_eq!(stderr(&out), "no services\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_run_through_warm_and_start_again_after_cold() {
    let d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "2s"]);
    let api = d.client();
    api.create("zz").await;
    use reqwest::Method as M;
    // Each start of `keep` adds a line to a file on the volume.
    let (code, lines) = ndjson(
        &api,
        M::PUT,
        "/v1/sprites/zz/services/keep",
        Some(json!({"cmd": "sh", "args": ["-c", "echo start >> /home/sprite/starts; exec sleep 600"]})),
    )
    .await;
    assert_eq!((code, types(&lines)), (200, vec!["started", "complete"]));
    let (code, _) = ndjson(
        &api,
        M::PUT,
        "/v1/sprites/zz/services/halt",
        Some(json!({"cmd": "sleep", "args": ["600"]})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, lines) = ndjson(&api, M::POST, "/v1/sprites/zz/services/halt/stop", None).await;
    assert_eq!(
        (code, types(&lines)),
        (200, vec!["stopping", "stopped", "complete"])
    );
    let pid = service(&api, "zz", "keep").await["state"]["pid"].clone();

    // Warm: frozen, not restarted.
    wait_sprite(&api, "zz", "warm").await;
    let keep = service(&api, "zz", "keep").await;
    assert_eq!(keep["state"]["pid"], pid, "{keep}");
    assert_eq!(api.sh("zz", "cat /home/sprite/starts").await, "start\n");

    // Cold: the next request boots the sprite and the agent starts the
    // service again; the stopped one stays stopped.
    wait_sprite(&api, "zz", "cold").await;
    wait_service(&api, "zz", "keep", "running again", is_running).await;
    assert_eq!(
        api.sh("zz", "cat /home/sprite/starts").await,
        "start\nstart\n"
    );
    let halt = service(&api, "zz", "halt").await;
    assert_eq!(halt["state"]["status"], "stopped", "{halt}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_roll_back_with_a_checkpoint() {
    let d = Daemon::start();
    let api = d.client();
    api.create("cp").await;
    use reqwest::Method as M;
    let put = |name: &'static str| {
        let api = &api;
        async move {
            let (code, lines) = ndjson(
                api,
                M::PUT,
                &format!("/v1/sprites/cp/services/{name}"),
                Some(json!({"cmd": "sleep", "args": ["600"]})),
            )
            .await;
            assert_eq!(code, 200, "{lines:?}");
        }
    };
    put("a").await;
    let v0 = api.checkpoint("cp", None).await;
    let (code, _) = status_code(&api, M::DELETE, "/v1/sprites/cp/services/a", None).await;
    assert_eq!(code, 204);
    put("b").await;
    api.restore("cp", &v0).await;
    wait_service(&api, "cp", "a", "running after the restore", is_running).await;
    let names: Vec<Value> = api
        .get_json("/v1/sprites/cp/services")
        .await
        .as_array()
        .map(|a| a.iter().map(|s| s["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, [json!("a")]);
}
