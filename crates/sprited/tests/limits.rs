//! Tokens, limits and metrics.

mod common;

use std::time::Duration;

use common::Daemon;

async fn create_raw(api: &common::Api, body: serde_json::Value) -> reqwest::Response {
    api.req(reqwest::Method::POST, "/v1/sprites")
        .json(&body)
        .send()
        .await
        .expect("create")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_hashed_and_revoked_at_once() {
    let d = Daemon::start();
    let api = d.client();
    let r = api
        .req(reqwest::Method::POST, "/v1/tokens")
        .json(&serde_json::json!({"name": "ci"}))
        .send()
        .await
        .expect("create token");
    assert_eq!(r.status(), 201);
    let made: serde_json::Value = r.json().await.expect("json");
    let secret = made["token"].as_str().expect("token").to_string();
    let id = made["id"].as_str().expect("id").to_string();
    assert!(secret.starts_with("spr_"), "{made}");

    let listed = api.get_json("/v1/tokens").await;
    assert_eq!(listed["tokens"][0]["name"], "ci");
    assert!(
        !listed.to_string().contains(&secret),
        "the list shows the secret"
    );

    let with = |t: &str| {
        api.http
            .get(format!("{}/v1/sprites", d.url))
            .bearer_auth(t.to_string())
            .send()
    };
    assert_eq!(with(&secret).await.expect("get").status(), 200);
    assert_eq!(with("spr_0000").await.expect("get").status(), 401);

    let r = api
        .req(reqwest::Method::DELETE, &format!("/v1/tokens/{id}"))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 204);
    assert_eq!(
        with(&secret).await.expect("get").status(),
        401,
        "revoked token still works"
    );
    let r = api
        .req(reqwest::Method::DELETE, &format!("/v1/tokens/{id}"))
        .send()
        .await
        .expect("revoke again");
    assert_eq!(r.status(), 404);

    // Stored hashed, never logged.
    let db = std::fs::read(d.data_dir.join("meta.db")).expect("db");
    let wal = std::fs::read(d.data_dir.join("meta.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in the database"
        );
    }
    assert!(!d.log().contains(&secret), "the secret is in the log");
    assert!(!d.log().contains(&secret[4..]), "the secret is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprite_count_and_create_rate_limits() {
    let d = Daemon::start_with(&["--max-sprites", "3", "--create-rate", "2"]);
    let api = d.client();
    api.create("r1").await;
    api.create("r2").await;
    let r = create_raw(&api, serde_json::json!({"name": "r3"})).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    assert_eq!(r.headers()["x-ratelimit-limit"], "2");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "sprite_creation_rate_limited", "{body}");
    assert_eq!(body["limit"], 2);
    assert_eq!(body["window_seconds"], 60);
    assert_eq!(body["current_count"], 2);
    assert!(body["retry_after_seconds"].as_u64().is_some(), "{body}");
    assert_eq!(
        api.req(reqwest::Method::GET, "/v1/sprites/r3")
            .send()
            .await
            .expect("get")
            .status(),
        404,
        "a refused create made a sprite"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprite_count_limit() {
    let d = Daemon::start_with(&["--max-sprites", "2"]);
    let api = d.client();
    api.create("c1").await;
    api.create("c2").await;
    let r = create_raw(&api, serde_json::json!({"name": "c3"})).await;
    assert_eq!(r.status(), 429);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "sprite_limit_exceeded", "{body}");
    assert_eq!(body["current_count"], 2);
    api.delete("c1").await;
    api.create("c3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_limit_keeps_the_extra_sprite_cold() {
    let d = Daemon::start_with(&[
        "--max-running",
        "1",
        "--idle-warm",
        "1s",
        "--idle-cold",
        "1s",
    ]);
    let api = d.client();
    api.create("first").await;
    let r = create_raw(&api, serde_json::json!({"name": "second"})).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "concurrent_sprite_limit_exceeded", "{body}");

    // Asked to wait for capacity, it is made and waits cold.
    let r = create_raw(
        &api,
        serde_json::json!({"name": "second", "wait_for_capacity": true}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let made: serde_json::Value = r.json().await.expect("json");
    assert_eq!(made["status"], "cold", "{made}");
    let refused = api.ws("/v1/sprites/second/exec?cmd=true").await;
    let err = refused.expect_err("a wake over the limit");
    assert!(err.to_string().contains("429"), "{err}");

    // Once the first has gone cold there is room.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while api.get_json("/v1/sprites/first").await["status"] != "cold" {
        assert!(
            std::time::Instant::now() < deadline,
            "first never went cold"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.sh("second", "echo room").await, "room\n");
}

/// Starts under a running limit go side by side, and still never past it:
/// of five creates sent at once with room for three, three run and two are
/// refused, whichever order they come in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_never_pass_the_running_limit() {
    let d = Daemon::start_with(&["--max-running", "3", "--idle-warm", "1h"]);
    let api = d.client();
    let sent = (0..5).map(|i| {
        let api = &api;
        async move { create_raw(api, serde_json::json!({"name": format!("at-once-{i}")})).await }
    });
    let answers = futures_util::future::join_all(sent).await;
    let mut made = 0;
    for r in answers {
        match r.status().as_u16() {
            201 => made += 1,
            429 => {
                let body: serde_json::Value = r.json().await.expect("json");
                assert_eq!(body["error"], "concurrent_sprite_limit_exceeded", "{body}");
                assert_eq!(body["limit"], 3, "{body}");
            }
            other => panic!("create answered {other}: {:?}", r.text().await),
        }
    }
    assert_eq!(made, 3, "three places, three sprites");
    let list = api.get_json("/v1/sprites").await;
    let running = list["sprites"]
        .as_array()
        .expect("sprites")
        .iter()
        .filter(|s| s["status"] == "running")
        .count();
    assert_eq!(running, 3, "{list}");
    // A place given back (a destroy) is a place again.
    let first = list["sprites"][0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    api.delete(&first).await;
    let r = create_raw(&api, serde_json::json!({"name": "after"})).await;
    assert_eq!(r.status(), 201);
    let r = create_raw(&api, serde_json::json!({"name": "one-too-many"})).await;
    assert_eq!(r.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_volume_gives_enospc_inside_and_harms_nothing_else() {
    let d = Daemon::start();
    let api = d.client();
    let r = create_raw(
        &api,
        serde_json::json!({"name": "small", "config": {"storage_gb": 1}}),
    )
    .await;
    assert_eq!(r.status(), 201);
    api.create("neighbour").await;
    let out = api
        .exec(
            "small",
            &[
                "sh",
                "-c",
                "dd if=/dev/zero of=/home/sprite/big bs=1M count=1300",
            ],
        )
        .await;
    assert_ne!(out.code, Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left"),
        "{out:?}"
    );
    // The neighbour and the daemon are fine; the sprite works again once
    // it frees space.
    assert_eq!(
        api.sh("neighbour", "echo ok > /home/sprite/f; cat /home/sprite/f")
            .await,
        "ok\n"
    );
    assert_eq!(
        api.sh(
            "small",
            "rm /home/sprite/big; echo fine > /home/sprite/f; cat /home/sprite/f"
        )
        .await,
        "fine\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics() {
    let d = Daemon::start_with(&["--meter-interval", "1s"]);
    let api = d.client();
    api.create("m").await;
    api.sh("m", "true").await;
    api.checkpoint("m", None).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = api
        .http
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401, "metrics without a token");
    let r = api
        .req(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    for want in [
        "sprited_sprites{status=\"running\"} 1",
        "sprited_execs_total",
        "sprited_exec_start_seconds_bucket",
        "sprited_checkpoint_seconds_count 1",
        "sprited_sprite_cpu_seconds{sprite=\"m\"}",
        "sprited_sprite_memory_bytes{sprite=\"m\"}",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}
