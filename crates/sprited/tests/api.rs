//! The control API through the real daemon: auth, names, CRUD, pagination,
//! and the Sprites error format for bad input.

mod common;

use common::Daemon;
use reqwest::Method;
use serde_json::{json, Value};

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("error body is JSON");
    assert!(body["error"].is_string(), "error code in {body}");
    assert!(body["message"].is_string(), "message in {body}");
    (status, body)
}

/// Sends `req` and answers its JSON body.
async fn json_answer(req: reqwest::RequestBuilder) -> Value {
    req.send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_end_to_end() {
    let d = Daemon::start_with(&["--region", "home-1"]);
    let api = d.client();

    // Authentication: missing and wrong tokens are 401 in the error format.
    let r = api
        .http
        .get(format!("{}/v1/sprites", api.url))
        .send()
        .await
        .expect("request");
    assert_eq!(error_of(r).await.0, 401);
    let r = api
        .http
        .get(format!("{}/v1/sprites", api.url))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(error_of(r).await.0, 401);
    let r = api
        .req(Method::GET, "/v1/sprites")
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("sprite-version"));
    // The log never carries the token.
    assert!(!d.log().contains(&d.token), "token leaked into the log");

    // Names: the rule is enforced with a 400.
    for bad in [
        "",
        "Upper",
        "a_b",
        "-lead",
        "trail-",
        "x".repeat(64).as_str(),
        "a/b",
    ] {
        let r = api
            .req(Method::POST, "/v1/sprites")
            .json(&json!({"name": bad}))
            .send()
            .await
            .expect("create");
        assert_eq!(error_of(r).await.0, 400, "name {bad:?} must be refused");
    }
    // Unknown image, bad limits, malformed and huge bodies.
    for body in [
        json!({"name": "x1", "image": "windows"}),
        json!({"name": "x1", "config": {"cpus": 0}}),
        json!({"name": "x1", "config": {"ram_mb": 1}}),
        json!({"name": "x1", "url_settings": {"auth": "nobody"}}),
        json!({"name": 5}),
    ] {
        let r = api
            .req(Method::POST, "/v1/sprites")
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(error_of(r).await.0, 400, "{body} must be refused");
    }
    let r = api
        .req(Method::POST, "/v1/sprites")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("create");
    assert_eq!(error_of(r).await.0, 400);
    let huge = format!(r#"{{"name":"big","labels":["{}"]}}"#, "a".repeat(4 << 20));
    // Its own connection: the server closes a connection whose body it
    // refused to read, and a pooled one would be reused by the next call.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/sprites", api.url))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("create");
    assert_eq!(error_of(r).await.0, 413);

    // Create, duplicate, get, update, list with prefix and pagination.
    let s = api.create("alpha").await;
    assert_eq!(s["name"], "alpha");
    assert_eq!(s["status"], "running");
    assert_eq!(s["organization"], "local");
    assert!(s["id"].as_str().map(|i| i.len() == 36).unwrap_or(false));
    assert_eq!(s["url_settings"]["auth"], "sprite");
    let r = api
        .req(Method::POST, "/v1/sprites")
        .json(&json!({"name": "alpha"}))
        .send()
        .await
        .expect("dup");
    assert_eq!(error_of(r).await.0, 400);
    for n in ["beta-1", "beta-2", "beta-3"] {
        api.create(n).await;
    }
    let got: Value = api.get_json("/v1/sprites/alpha").await;
    assert_eq!(got["id"], s["id"]);
    let upd: Value = json_answer(
        api.req(Method::PUT, "/v1/sprites/alpha")
            .json(&json!({"labels": ["x", "y"], "url_settings": {"auth": "public"}})),
    )
    .await;
    assert_eq!(upd["labels"], json!(["x", "y"]));
    assert_eq!(upd["url_settings"]["auth"], "public");
    let upd: Value = json_answer(
        api.req(Method::PUT, "/v1/sprites/alpha")
            .json(&json!({"clear_labels": true})),
    )
    .await;
    assert_eq!(upd["labels"], json!([]));
    assert_eq!(
        upd["url_settings"]["auth"], "public",
        "partial update keeps auth"
    );

    // The sprite object as the SDKs declare it (Go: `CPUs int`): whole
    // CPUs, the environment given at create, the host's one region, in
    // every answer that carries it.
    let typed: Value = json_answer(api.req(Method::POST, "/v1/sprites").json(&json!({
        "name": "typed",
        "config": {"cpus": 2.0, "ram_mb": 256, "region": "ord"},
        "environment": {"GREETING": "hi"},
    })))
    .await;
    let put: Value = json_answer(
        api.req(Method::PUT, "/v1/sprites/typed")
            .json(&json!({"labels": ["t"]})),
    )
    .await;
    let listed: Value = api.get_json("/v1/sprites?prefix=typed").await;
    for (what, s) in [
        ("create", &typed),
        ("get", &api.get_json("/v1/sprites/typed").await),
        ("put", &put),
        ("list", &listed["sprites"][0]),
    ] {
        assert_eq!(
            s["config"],
            json!({"cpus": 2, "ram_mb": 256, "storage_gb": 10, "region": "home-1", "isolation": common::isolation()}),
            "{what}: {s}"
        );
        assert!(
            s["config"]["cpus"].is_u64(),
            "{what}: cpus is an integer: {s}"
        );
        assert_eq!(s["primary_region"], "home-1", "{what}: {s}");
        assert_eq!(s["environment"], json!({"GREETING": "hi"}), "{what}: {s}");
    }
    assert_eq!(api.sh("typed", "echo $GREETING").await, "hi\n");
    api.delete("typed").await;
    let r = api
        .req(Method::POST, "/v1/sprites")
        .json(&json!({"name": "half", "config": {"cpus": 0.5}}))
        .send()
        .await
        .expect("create");
    let (status, body) = error_of(r).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("whole number of CPUs")),
        "{body}"
    );

    let page: Value = api.get_json("/v1/sprites?prefix=beta-&max_results=2").await;
    let names: Vec<&str> = page["sprites"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["beta-1", "beta-2"]);
    assert_eq!(page["has_more"], true);
    let token = page["next_continuation_token"].as_str().expect("token");
    let rest: Value = api
        .req(
            Method::GET,
            &format!("/v1/sprites?prefix=beta-&max_results=2&continuation_token={token}"),
        )
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(rest["sprites"][0]["name"], "beta-3");
    assert_eq!(rest["has_more"], false);
    // A page larger than 100 is capped at 100, as the service caps it.
    let capped = api
        .req(Method::GET, "/v1/sprites?max_results=101")
        .send()
        .await
        .expect("list");
    assert_eq!(capped.status(), 200);
    for q in ["max_results=0", "max_results=ten", "continuation_token=%21"] {
        let r = api
            .req(Method::GET, &format!("/v1/sprites?{q}"))
            .send()
            .await
            .expect("list");
        assert_eq!(error_of(r).await.0, 400, "{q}");
    }

    // Unknown sprites are 404 on every call.
    for (m, p) in [
        (Method::GET, "/v1/sprites/nope"),
        (Method::PUT, "/v1/sprites/nope"),
        (Method::DELETE, "/v1/sprites/nope"),
        (Method::GET, "/v1/sprites/nope/exec"),
        (Method::POST, "/v1/sprites/nope/exec?cmd=true"),
    ] {
        let r = api
            .req(m.clone(), p)
            .json(&json!({}))
            .send()
            .await
            .expect("call");
        let (status, body) = error_of(r).await;
        assert_eq!(status, 404, "{m} {p}");
        assert_eq!(body["message"], "no sprite named nope");
    }
    // The control endpoint without the upgrade is a 400 (it is a
    // WebSocket); exec without cmd is a 400; bad query values are 400.
    let r = api
        .req(Method::GET, "/v1/sprites/alpha/control")
        .send()
        .await
        .expect("control");
    assert_eq!(r.status(), 400);
    for q in [
        "",
        "cmd=true&tty=maybe",
        "cmd=true&rows=0",
        "cmd=true&env=NOEQUALS",
        "cmd=true&max_run_after_disconnect=soon",
    ] {
        let r = api
            .req(Method::POST, &format!("/v1/sprites/alpha/exec?{q}"))
            .send()
            .await
            .expect("exec");
        assert_eq!(error_of(r).await.0, 400, "exec ?{q}");
    }
    let r = api
        .req(Method::POST, "/v1/sprites/alpha/exec?cmd=true&tty=true")
        .send()
        .await
        .expect("exec");
    assert_eq!(error_of(r).await.0, 400, "tty over HTTP exec");

    // A client that hangs up in the middle of a create does not leave half
    // a sprite behind: the create finishes, and the sprite works.
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(5))
        .build()
        .expect("client");
    let r = impatient
        .post(format!("{}/v1/sprites", api.url))
        .bearer_auth(&api.token)
        .json(&json!({"name": "dropped"}))
        .send()
        .await;
    assert!(r.is_err(), "the client gave up before the answer");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = api
            .req(Method::GET, "/v1/sprites/dropped")
            .send()
            .await
            .expect("get");
        if r.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped create never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(api.exec("dropped", &["echo", "ok"]).await.out(), "ok\n");
    api.delete("dropped").await;

    // Delete removes the sprite and its volume.
    for n in ["alpha", "beta-1", "beta-2", "beta-3"] {
        api.delete(n).await;
    }
    let all: Value = api.get_json("/v1/sprites").await;
    assert_eq!(all["sprites"], json!([]));
}

/// Every endpoint that takes a JSON body answers a body that does not parse
/// (or does not match the request's type) with 400 in the Sprites error
/// format, never axum's own 422 `text/plain`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_endpoint_refuses_a_bad_body_with_a_400() {
    let d = Daemon::start();
    let api = d.client();
    api.create("bodies").await;
    let s = "/v1/sprites/bodies";
    let cases = [
        (Method::POST, "/v1/sprites".to_string(), r#"{"name": 7}"#),
        (Method::PUT, s.to_string(), "not json"),
        (
            Method::POST,
            format!("{s}/policy/network"),
            r#"{"rules":[{"domain":"x.com","action":"maybe"}]}"#,
        ),
        (
            Method::POST,
            format!("{s}/policy/resources"),
            r#"{"memory":{"limit_mb":"lots"}}"#,
        ),
        (Method::POST, format!("{s}/checkpoint"), "{"),
        (Method::POST, format!("{s}/exec/1/kill"), "[1]"),
        (Method::PUT, format!("{s}/services/web"), r#"{"cmd": 1}"#),
        (Method::POST, format!("{s}/services/signal"), "nope"),
        (Method::POST, format!("{s}/tasks"), "{]"),
        (Method::PUT, format!("{s}/tasks/t"), "x"),
        (Method::POST, format!("{s}/fs/rename"), "{"),
        (Method::POST, "/v1/tokens".to_string(), r#"{"name": []}"#),
    ];
    for (method, path, body) in cases {
        let r = api
            .req(method.clone(), &path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let json = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        assert!(json, "{method} {path}: not a JSON answer");
        let (status, err) = error_of(r).await;
        assert_eq!(status, 400, "{method} {path}: {err}");
        assert_eq!(err["error"], "bad_request", "{method} {path}: {err}");
    }
}
