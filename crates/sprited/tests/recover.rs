//! Rebuild from the store alone (issue 15): the whole data dir is lost
//! (pool, `meta.db`, caches, admin token file), and a sprited started on
//! an empty one with `--recover` (or after `sprited recover`) brings every
//! sprite back from the object store: name, config, URL settings, labels,
//! network policy, services, checkpoints, data as of its last replicated
//! snapshot, usage; and the API tokens go on working. Against a folder and
//! against the S3 server.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Api, Daemon, BIN};
use serde_json::{json, Value};
use sprites_test_support::s3::Moto;

async fn ok_json(r: reqwest::RequestBuilder) -> Value {
    let r = r.send().await.expect("request");
    let status = r.status();
    let body = r.text().await.expect("body");
    assert!(status.is_success(), "{status}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

async fn storage(api: &Api, name: &str) -> Value {
    api.get_json(&format!("/v1/sprites/{name}")).await["storage"].clone()
}

/// Waits until `check` holds of the sprite's storage.
async fn wait_storage(api: &Api, name: &str, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = storage(api, name).await;
        if check(&st) {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: never {what}: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Total CPU seconds the usage API books for sprite `name`.
async fn cpu_seconds(api: &Api, name: &str) -> f64 {
    let u = api.get_json(&format!("/v1/sprites/{name}/usage")).await;
    u["usage"]["cpu_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("no cpu_seconds in {u}"))
}

/// Everything of the host is lost: the daemon and every sandbox killed,
/// every mount and loop device gone, the whole data dir deleted.
fn lose_the_host(d: &mut Daemon) {
    d.kill9();
    let st = Command::new(BIN)
        .args(["purge", "--data-dir"])
        .arg(&d.data_dir)
        .status()
        .expect("sprited purge");
    assert!(st.success(), "purge failed");
    assert!(!d.data_dir.exists(), "the data dir is still there");
}

/// `how`: `flag` starts the new daemon with `--recover`; `command` runs
/// `sprited recover` first, then a plain start.
async fn everything_comes_back(store: &[&str], env: &[(&str, &str)], how: &str) {
    let mut args = store.to_vec();
    args.extend(["--replicate-every", "1s", "--meter-interval", "1s"]);
    if how == "flag" {
        args.push("--recover");
    }
    let mut d = Daemon::start_with_env(&args, env);
    let api = d.client();

    // A sprite with everything a user sets.
    api.create("keeper").await;
    ok_json(
        api.req(reqwest::Method::PUT, "/v1/sprites/keeper")
            .json(&json!({"labels": ["team-a", "db"], "url_settings": {"auth": "public"}})),
    )
    .await;
    ok_json(
        api.req(reqwest::Method::POST, "/v1/sprites/keeper/policy/network")
            .json(&json!({"rules": [{"domain": "example.com", "action": "allow"}]})),
    )
    .await;
    let r = api
        .req(
            reqwest::Method::PUT,
            "/v1/sprites/keeper/services/ticker?duration=1s",
        )
        .json(
            &json!({"cmd": "sh", "args": ["-c", "while true; do date > /tmp/tick; sleep 1; done"]}),
        )
        .send()
        .await
        .expect("service");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    api.sh("keeper", "echo first > /home/sprite/state; sync")
        .await;
    let ck = api.checkpoint("keeper", Some("before the change")).await;
    api.sh("keeper", "echo second > /home/sprite/state; sync")
        .await;
    let token = ok_json(
        api.req(reqwest::Method::POST, "/v1/tokens")
            .json(&json!({"name": "ci"})),
    )
    .await["token"]
        .as_str()
        .expect("a token")
        .to_string();

    // A sprite that was evicted: it lives in the store already.
    api.create("sleeper").await;
    api.sh("sleeper", "echo asleep > /home/sprite/note; sync")
        .await;
    ok_json(api.req(reqwest::Method::POST, "/v1/sprites/sleeper/evict")).await;

    // The checkpoint reaches the store within seconds.
    wait_storage(&api, "keeper", "uploaded its checkpoint", |st| {
        st["checkpoints_in_object_store"] == 1
    })
    .await;

    // A writer appends numbered, fsynced records; each exec that returns
    // acknowledges one.
    let mut acked: Vec<(u32, Instant)> = Vec::new();
    let until = Instant::now() + Duration::from_secs(6);
    let mut n = 0u32;
    while Instant::now() < until {
        api.sh(
            "keeper",
            &format!("echo {n} >> /home/sprite/log; sync /home/sprite/log"),
        )
        .await;
        acked.push((n, Instant::now()));
        n += 1;
    }
    let usage_before = cpu_seconds(&api, "keeper").await;
    let killed = Instant::now();
    lose_the_host(&mut d);

    if how == "command" {
        let out = Command::new(BIN)
            .args(["--data-dir"])
            .arg(&d.data_dir)
            .args(["--listen", &d.addr, "--default-image", "tiny"])
            .arg("--image-cache")
            .arg(common::image_cache())
            .args(store)
            .arg("recover")
            .env("SPRITED_TOKEN", &d.token)
            .envs(env.iter().copied())
            .output()
            .expect("sprited recover");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("2 sprites brought back"), "{text}");
        assert!(text.contains("1 checkpoints"), "{text}");
        assert!(text.contains("1 API tokens"), "{text}");
    }
    d.spawn();
    let api = d.client();

    // Every sprite, with its settings.
    let list = api.get_json("/v1/sprites").await;
    let mut names: Vec<&str> = list["sprites"]
        .as_array()
        .expect("sprites")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["keeper", "sleeper"], "{list}");
    let keeper = api.get_json("/v1/sprites/keeper").await;
    assert_eq!(keeper["labels"], json!(["team-a", "db"]), "{keeper}");
    assert_eq!(keeper["url_settings"]["auth"], "public", "{keeper}");
    let policy = api.get_json("/v1/sprites/keeper/policy/network").await;
    assert_eq!(policy["rules"][0]["domain"], "example.com", "{policy}");

    // Its data as of its last snapshot: every record acknowledged more
    // than an interval and an upload before the loss, and no gap.
    let log = api.sh("keeper", "cat /home/sprite/log").await;
    let got: Vec<u32> = log.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(got, (0..got.len() as u32).collect::<Vec<_>>(), "{log}");
    let must = acked
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > Duration::from_secs(3))
        .count();
    eprintln!(
        "records: {} written, {} back, {must} required",
        acked.len(),
        got.len()
    );
    assert!(must > 0, "the writer ran too briefly");
    assert!(got.len() >= must, "{} back, {must} required", got.len());
    assert_eq!(api.sh("keeper", "cat /home/sprite/state").await, "second\n");
    assert_eq!(api.sh("sleeper", "cat /home/sprite/note").await, "asleep\n");

    // Its service is defined and runs again.
    let svc = api.get_json("/v1/sprites/keeper/services/ticker").await;
    assert_eq!(svc["name"], "ticker", "{svc}");
    api.eventually("keeper", "test -s /tmp/tick && echo ticking", "ticking\n")
        .await;

    // Usage booked before the loss is still there.
    let usage_after = cpu_seconds(&api, "keeper").await;
    assert!(
        usage_before > 0.0 && usage_after >= usage_before * 0.5,
        "usage {usage_before} before, {usage_after} after"
    );

    // The token made before the loss works.
    let r = api
        .http
        .get(format!("{}/v1/sprites", api.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list with the old token");
    assert_eq!(r.status(), 200);

    // Every checkpoint restores, and a new one of the recovered volume is
    // a clean file system.
    let cks = api.get_json("/v1/sprites/keeper/checkpoints").await;
    let comments: Vec<&str> = cks
        .as_array()
        .expect("checkpoints")
        .iter()
        .filter_map(|c| c["comment"].as_str())
        .collect();
    assert!(comments.contains(&"before the change"), "{cks}");
    let after = api.checkpoint("keeper", Some("after recovery")).await;
    let id = api.id_of("keeper").await;
    let img = d
        .pool_dir()
        .join("sprites")
        .join(&id)
        .join("checkpoints")
        .join(format!("{after}.img"));
    if let Err(e) = sprites_test_support::fsck::check_image(&img) {
        panic!("{e}");
    }
    api.restore("keeper", &ck).await;
    assert_eq!(api.sh("keeper", "cat /home/sprite/state").await, "first\n");

    // It goes on replicating from there.
    let st = storage(&api, "keeper").await;
    api.sh("keeper", "echo more >> /home/sprite/log; sync")
        .await;
    wait_storage(&api, "keeper", "replicated again", |s| {
        !s["replicated_at"].is_null() && s["replicated_at"] != st["replicated_at"]
    })
    .await;

    // A destroyed sprite is not brought back by the next recovery.
    api.delete("sleeper").await;
    d.restart();
    let api = d.client();
    let r = api
        .req(reqwest::Method::GET, "/v1/sprites/sleeper")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_host_comes_back_from_a_folder_store() {
    let store = tempfile::Builder::new()
        .prefix("sprited-store-")
        .tempdir_in("/var/tmp")
        .expect("store dir");
    let url = format!("file://{}", store.path().display());
    everything_comes_back(&["--object-store", &url], &[], "flag").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_host_comes_back_from_s3_with_sprited_recover() {
    let moto = Moto::start("sprites");
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    everything_comes_back(&["--object-store", "s3://sprites/host"], &env, "command").await;
}
