//! Services through the real API: supervised by the agent, started at boot,
//! frozen (not restarted) through warm, started again after cold; stop is
//! sticky; a crash loop harms nothing; `sprite-env services` inside a
//! sprite; definitions roll back with a checkpoint.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Daemon, Output};
use serde_json::{json, Value};

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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
            // Each count replaces the file whole: `> /tmp/n` alone
            // truncates first, and a read in between finds it empty.
            "args": ["-c", "echo started; i=0; while true; i=$((i+1)); do echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.1; done"],
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
    api.wait_status("svc", "warm", Duration::from_secs(15))
        .await;
    let counter = service(&api, "svc", "counter").await;
    assert_eq!(
        counter["state"]["pid"].as_i64(),
        Some(pid),
        "restarted by warm"
    );
    assert_eq!(counter["state"]["restart_count"], 0);

    // After cold, the next boot starts them again.
    api.wait_status("svc", "warm", Duration::from_secs(15))
        .await;
    api.wait_status("svc", "cold", Duration::from_secs(15))
        .await;
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
    api.wait_status("svc", "warm", Duration::from_secs(15))
        .await;
    api.wait_status("svc", "cold", Duration::from_secs(15))
        .await;
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
    let text = logs.text().await.expect("text");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["data"].as_str().is_some_and(|d| d.contains("started"))),
        "{text}"
    );
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

    // Logs: NDJSON, the messages of the create stream (what the SDKs
    // parse): one `stdout` per line, then `complete` with the log's files.
    let r = api
        .req(M::GET, &format!("{base}/web/logs?lines=1"))
        .send()
        .await
        .expect("logs");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.expect("body");
    assert!(text.ends_with('\n'), "{text:?}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    assert_eq!(types(&lines), ["stdout", "complete"], "{text}");
    assert_eq!(lines[0]["data"], "hello\n");
    for l in &lines {
        assert!(l["timestamp"].as_i64().is_some_and(|t| t > 0), "{l}");
        assert!(l.get("exit_code").is_none(), "{l}");
    }
    assert!(lines[0].get("log_files").is_none(), "{text}");
    assert_eq!(lines[1]["log_files"]["stdout"], "/.sprite/logs/web.log");
    assert_eq!(lines[1]["log_files"]["stderr"], "/.sprite/logs/web.log");
    let (_, lines) = ndjson(&api, M::GET, &format!("{base}/web/logs?lines=3"), None).await;
    // At most 3 lines of the log (the supervisor's notes, then `hello`).
    let (last, log) = lines.split_last().expect("complete");
    assert_eq!(last["type"], "complete", "{lines:?}");
    assert!((1..=3).contains(&log.len()), "{lines:?}");
    assert!(log.iter().all(|l| l["type"] == "stdout"), "{lines:?}");
    assert_eq!(log[log.len() - 1]["data"], "hello\n");
    let (code, _) = status_code(&api, M::GET, &format!("{base}/web/logs?lines=0"), None).await;
    assert_eq!(code, 400);

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
