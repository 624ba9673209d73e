//! Metering: CPU seconds, memory GB-seconds and storage, through the usage
//! API, across a daemon restart and a destroy.

mod common;

use std::time::Duration;

use common::Daemon;

/// Burn one CPU for `secs` in the sprite; the CPU time it really got (the
/// machine may be busy), as the kernel counted it for the shell's children.
async fn burn(api: &common::Api, name: &str, secs: u32) -> f64 {
    let stat = api
        .sh(
            name,
            &format!("timeout {secs} sh -c 'while :; do :; done'; cat /proc/$$/stat"),
        )
        .await;
    let after = stat.rsplit_once(')').expect("stat").1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // cutime and cstime, in clock ticks (100 per second).
    let ticks: f64 = f[13].parse::<f64>().expect("cutime") + f[14].parse::<f64>().expect("cstime");
    ticks / 100.0
}

async fn usage(api: &common::Api, name: &str) -> serde_json::Value {
    api.get_json(&format!("/v1/sprites/{name}/usage")).await
}

/// Whether `metered` CPU seconds account for `burned` ones: within 0.3 s
/// in a container; under gVisor the Sentry's own CPU is metered too (it is
/// what the host spent on the sprite), up to half as much again.
fn metered_as_burned(metered: f64, burned: f64) -> bool {
    match common::isolation().as_str() {
        "gvisor" => metered >= burned - 0.3 && metered <= burned * 1.5 + 0.3,
        _ => (metered - burned).abs() <= 0.3,
    }
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v["usage"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Long enough for two meter rounds at `--meter-interval 1s`.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_and_memory_are_metered() {
    let d = Daemon::start_with(&["--meter-interval", "1s"]);
    let api = d.client();
    api.create("meter").await;
    settle().await;

    // One CPU busy for 3 s: what it got (3 s on an idle machine), ± 0.3.
    let u0 = usage(&api, "meter").await;
    let burned = burn(&api, "meter", 3).await;
    settle().await;
    let u1 = usage(&api, "meter").await;
    let cpu = num(&u1, "cpu_seconds") - num(&u0, "cpu_seconds");
    assert!(burned > 1.0, "the burner got only {burned} s of CPU");
    assert!(
        metered_as_burned(cpu, burned),
        "{burned} s of CPU burned, metered as {cpu}"
    );

    // What the sprite holds at rest, metered over an idle window: its agent
    // in a container (~1 MB); under gVisor the Sentry's own memory too,
    // which over the window below comes to tenths of a GB-second.
    let idle = std::time::Instant::now();
    settle().await;
    settle().await;
    let u_rest = usage(&api, "meter").await;
    let resting = (num(&u_rest, "ram_gb_seconds") - num(&u1, "ram_gb_seconds"))
        / idle.elapsed().as_secs_f64();

    // 200 MB held for 10 s: 2 ± 0.3 GB-seconds beyond what it holds at rest
    // (dd holds its buffer while blocked writing to a pipe nobody reads).
    let window = std::time::Instant::now();
    api.sh(
        "meter",
        "dd if=/dev/zero bs=200000000 count=1 2>/dev/null | sleep 10; true",
    )
    .await;
    settle().await;
    let u2 = usage(&api, "meter").await;
    let ram = num(&u2, "ram_gb_seconds")
        - num(&u_rest, "ram_gb_seconds")
        - resting * window.elapsed().as_secs_f64();
    assert!(
        (1.7..=2.3).contains(&ram),
        "200 MB for 10 s metered as {ram} GB-s"
    );

    // Storage accrues; the cost is the amounts at the configured rates.
    assert!(num(&u2, "hot_storage_gb_seconds") > 0.0, "{u2}");
    let cost = u2["cost"]["cpu"].as_f64().expect("cost");
    let want = num(&u2, "cpu_seconds") / 3600.0 * 0.07;
    assert!((cost - want).abs() < 1e-9, "{u2}");
    assert_eq!(u2["currency"], "USD");

    let r = api
        .req(
            reqwest::Method::GET,
            "/v1/sprites/meter/usage?from=yesterday",
        )
        .send()
        .await
        .expect("bad from");
    assert_eq!(r.status(), 400);
    let r = api
        .req(reqwest::Method::GET, "/v1/sprites/nope/usage")
        .send()
        .await
        .expect("unknown");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_survives_a_restart_and_a_destroy() {
    let mut d = Daemon::start_with(&["--meter-interval", "1s"]);
    let api = d.client();
    api.create("keep").await;
    let burned = burn(&api, "keep", 2).await;
    settle().await;
    let before = num(&usage(&api, "keep").await, "cpu_seconds");
    assert!(
        metered_as_burned(before, burned),
        "{burned} burned, {before} metered"
    );

    // The sprite runs on while the daemon is down; its CPU counter is read
    // again after the restart and only the difference counts.
    d.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.spawn();
    let api = d.client();
    settle().await;
    let after = num(&usage(&api, "keep").await, "cpu_seconds");
    assert!(
        after - before < 0.3,
        "counted twice after a restart: {before} then {after}"
    );

    // A sprite destroyed between two samples keeps what it used.
    api.create("gone").await;
    let burned = burn(&api, "gone", 2).await;
    api.delete("gone").await;
    let all = api.get_json("/v1/usage").await;
    let day = all["days"]
        .as_array()
        .and_then(|d| d.last())
        .expect("a day");
    let gone = day["sprites"]
        .as_array()
        .expect("sprites")
        .iter()
        .find(|s| s["sprite"] == "gone")
        .unwrap_or_else(|| panic!("no usage of the destroyed sprite: {all}"));
    let cpu = gone["usage"]["cpu_seconds"].as_f64().expect("cpu");
    assert!(metered_as_burned(cpu, burned), "{burned} burned: {gone}");
    assert!(num(&all, "cpu_seconds") >= before + cpu - 0.01, "{all}");
    assert!(day["date"].as_str().expect("date").len() == 10, "{day}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_sprite_accrues_only_storage() {
    let d = Daemon::start_with(&[
        "--meter-interval",
        "1s",
        "--idle-warm",
        "1s",
        "--idle-cold",
        "1s",
    ]);
    let api = d.client();
    api.create("cold").await;
    api.sh(
        "cold",
        "dd if=/dev/zero of=/home/sprite/blob bs=1M count=20 2>/dev/null; sync",
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while api.get_json("/v1/sprites/cold").await["status"] != "cold" {
        assert!(std::time::Instant::now() < deadline, "never cold");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle().await;
    let u0 = usage(&api, "cold").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let u1 = usage(&api, "cold").await;
    assert_eq!(api.get_json("/v1/sprites/cold").await["status"], "cold");
    assert_eq!(
        num(&u1, "cpu_seconds"),
        num(&u0, "cpu_seconds"),
        "{u0} {u1}"
    );
    assert_eq!(num(&u1, "ram_gb_seconds"), num(&u0, "ram_gb_seconds"));
    let hot = num(&u1, "hot_storage_gb_seconds") - num(&u0, "hot_storage_gb_seconds");
    // At least the 20 MB blob for ~3 s.
    assert!(hot > 0.02 * 2.0, "storage of a cold sprite: {hot} GB-s");
}
