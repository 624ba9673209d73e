//! Continuous replication (issue 15): a sprite's volume reaches the object
//! store as crash-consistent snapshots while it runs, only what changed is
//! sent, an idle sprite sends nothing, a store that stops answering makes
//! replication lag and catch up, and a host whose disk is lost brings the
//! sprite back as of its last snapshot.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{metric_in, mounts_under, Api, Daemon};
use sprites_test_support::s3::Moto;

async fn storage(api: &Api, name: &str) -> serde_json::Value {
    api.get_json(&format!("/v1/sprites/{name}")).await["storage"].clone()
}

/// Waits until the sprite's `replicated_at` differs from `before`.
async fn wait_replicated(api: &Api, name: &str, before: &serde_json::Value) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = storage(api, name).await;
        if !st["replicated_at"].is_null() && st["replicated_at"] != *before {
            return st;
        }
        if Instant::now() >= deadline {
            // What the uploads and replications were doing, for the record.
            let m = api.metrics().await;
            let upload_lines: Vec<&str> = m
                .lines()
                .filter(|l| l.starts_with("sprited_upload") || l.starts_with("sprited_replicat"))
                .collect();
            panic!("{name} never replicated: {st}\n{}", upload_lines.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The host's disk is lost: the daemon and every sandbox killed, every
/// sprite's mount gone, then volumes, checkpoints, base images, templates
/// and the chunk cache deleted (the metadata stays).
fn lose_the_disk(d: &mut Daemon) {
    d.kill9();
    d.remove_sandboxes();
    for m in mounts_under(&d.data_dir.join("sprites")) {
        let st = Command::new("umount")
            .arg("-l")
            .arg(&m)
            .status()
            .expect("umount");
        assert!(st.success(), "umount {m}");
    }
    for sub in ["sprites", "images", "templates"] {
        std::fs::remove_dir_all(d.pool_dir().join(sub)).expect("remove pool contents");
    }
    let _ = std::fs::remove_dir_all(d.data_dir.join("cache"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_disk_loses_at_most_one_replication_interval() {
    let mut d = Daemon::start_with(&["--replicate-every", "2s"]);
    let api = d.client();
    api.create("rep").await;
    let first = wait_replicated(&api, "rep", &serde_json::Value::Null).await;
    assert_eq!(first["replication_lag_seconds"], 0, "{first}");
    assert!(first["replication_error"].is_null(), "{first}");

    // Only what changed is sent: 4 MiB of new data, against a volume
    // whose first snapshot sent all of its data.
    let m0 = api.metrics().await;
    api.sh(
        "rep",
        "head -c 4194304 /dev/urandom > /home/sprite/four; sync",
    )
    .await;
    let second = wait_replicated(&api, "rep", &first["replicated_at"]).await;
    let m1 = api.metrics().await;
    let sent = metric_in(&m1, "sprited_replication_bytes_total")
        - metric_in(&m0, "sprited_replication_bytes_total");
    assert!(
        (4.0 * 1048576.0..8.0 * 1048576.0).contains(&sent),
        "sent {sent} bytes for 4 MiB written"
    );

    // An idle sprite sends nothing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m2 = api.metrics().await;
    assert_eq!(
        metric_in(&m2, "sprited_replications_total{result=\"ok\"}"),
        metric_in(&m1, "sprited_replications_total{result=\"ok\"}"),
        "an unchanged volume was replicated again"
    );
    assert_eq!(
        storage(&api, "rep").await["replicated_at"],
        second["replicated_at"]
    );

    // A writer appends numbered, fsynced records; each one the exec
    // returns is acknowledged.
    let mut acked: Vec<(u32, Instant)> = Vec::new();
    let until = Instant::now() + Duration::from_secs(8);
    let mut n = 0u32;
    while Instant::now() < until {
        api.sh(
            "rep",
            &format!("echo {n} >> /home/sprite/log; sync /home/sprite/log"),
        )
        .await;
        acked.push((n, Instant::now()));
        n += 1;
    }
    let killed = Instant::now();
    lose_the_disk(&mut d);
    d.spawn();
    let api = d.client();
    d.wait_log(
        "comes back from its last replicated snapshot",
        Duration::from_secs(30),
    );

    // Back as of its last snapshot: the records are a prefix of those
    // written, holding every one acknowledged more than an interval (and
    // an upload) before the disk went.
    let log = api.sh("rep", "cat /home/sprite/log").await;
    let got: Vec<u32> = log.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(got, (0..got.len() as u32).collect::<Vec<_>>(), "{log}");
    let must = acked
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > Duration::from_secs(5))
        .count();
    eprintln!(
        "records: {} written, {} back, {must} required",
        acked.len(),
        got.len()
    );
    assert!(must > 0, "the writer ran too briefly");
    assert!(
        got.len() >= must,
        "{} records back, {must} were acknowledged more than 5 s before the loss",
        got.len()
    );
    assert_eq!(
        api.sh("rep", "wc -c < /home/sprite/four").await.trim(),
        "4194304"
    );
    // And it goes on replicating from there.
    let st = storage(&api, "rep").await;
    api.sh("rep", "echo more >> /home/sprite/log; sync").await;
    wait_replicated(&api, "rep", &st["replicated_at"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_lags_while_the_store_is_down_for_a_minute_and_catches_up() {
    let moto = Moto::start("sprites");
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::start_with_env(
        &[
            "--object-store",
            "s3://sprites/rep",
            "--object-store-timeout",
            "2s",
            "--replicate-every",
            "1s",
        ],
        &env,
    );
    let api = d.client();
    api.create("lag").await;
    let id = api.id_of("lag").await;
    let first = wait_replicated(&api, "lag", &serde_json::Value::Null).await;
    let keys = moto.keys("sprites");
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("rep/manifests/sprites/{id}/snapshots/"))),
        "{keys:?}"
    );

    moto.pause();
    // A minute without the store while the sprite writes a record every
    // second: local work never waits for it, and the lag shows.
    let paused = Instant::now();
    let mut records = 0;
    let mut behind = None;
    let mut last_write = 0;
    while paused.elapsed() < Duration::from_secs(60) {
        let t0 = Instant::now();
        // When the write began: a snapshot cloned later may have it (the
        // moment it was known synced would be too late: a snapshot cloned
        // before that reading would be the last one, the volume unchanged
        // since). That every write is in the newest snapshot is what the
        // caught-up wait below makes sure of.
        last_write = now_ms();
        api.sh(
            "lag",
            &format!("echo {records} >> /home/sprite/during; sync"),
        )
        .await;
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        records += 1;
        let st = storage(&api, "lag").await;
        if !st["replication_error"].is_null() && st["replication_lag_seconds"].as_u64() > Some(0) {
            behind = Some(st);
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let behind = behind.expect("the lag never showed while the store was down");
    assert_eq!(behind["replicated_at"], first["replicated_at"], "{behind}");
    let m = api.metrics().await;
    assert!(
        metric_in(&m, "sprited_replication_lag_seconds") > 0.0,
        "{m}"
    );
    assert!(
        m.contains("sprited_replications_total{result=\"failed\"}"),
        "{m}"
    );

    moto.resume();
    // Caught up: a snapshot cloned after the last write began (a clone
    // taken during the outage and sent after it counts), then no change
    // left unsent.
    wait_snapshot_after(&api, "lag", last_write).await;
    let caught_up = storage(&api, "lag").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut st = caught_up;
    while !(st["replication_error"].is_null() && st["replication_lag_seconds"] == 0) {
        assert!(Instant::now() < deadline, "never caught up: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        st = storage(&api, "lag").await;
    }
    // Every record written while the store was down is in the newest
    // snapshot: restored from it, they are all there.
    let newest = snapshot_ids(&api, "lag").await[0];
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v1/sprites/lag/snapshots/{newest}/restore"),
        )
        .send()
        .await
        .expect("restore");
    assert!(r.text().await.expect("stream").contains("\"complete\""));
    let back = api.sh("lag", "wc -l < /home/sprite/during").await;
    assert_eq!(back.trim(), records.to_string());
}

/// The sprite's snapshots' ids (unix ms), newest first.
async fn snapshot_ids(api: &Api, name: &str) -> Vec<u64> {
    let list = api.get_json(&format!("/v1/sprites/{name}/snapshots")).await;
    list.as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            s["id"]
                .as_str()
                .and_then(|i| i.parse().ok())
                .unwrap_or_else(|| panic!("a numeric id: {s}"))
        })
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Waits until a snapshot taken after `after` (unix ms) is listed.
async fn wait_snapshot_after(api: &Api, name: &str, after: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(&newest) = snapshot_ids(api, name).await.first() {
            if newest > after {
                return newest;
            }
        }
        assert!(Instant::now() < deadline, "no snapshot after {after}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replicated snapshots are listed, restored by time (API and `sprite
/// restore --at`), forked (API and `sprite create --from-snapshot`), and
/// expire after the retention, the newest kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_listed_restored_by_time_and_expire() {
    let d = Daemon::start_with(&["--replicate-every", "1s", "--snapshot-retention", "8s"]);
    let api = d.client();
    api.create("pit").await;
    let t1 = now_ms();
    api.sh("pit", "echo one > /home/sprite/one; sync").await;
    let with_one = wait_snapshot_after(&api, "pit", t1).await;
    let t2 = now_ms();
    api.sh("pit", "echo two > /home/sprite/two; sync").await;
    wait_snapshot_after(&api, "pit", t2).await;

    let ids = snapshot_ids(&api, "pit").await;
    assert!(ids.len() >= 2, "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let list = api.get_json("/v1/sprites/pit/snapshots").await;
    assert!(list[0]["create_time"].is_string(), "{list}");
    assert!(list[0]["data_bytes"].as_u64() > Some(0), "{list}");

    // `--at` a time between the two writes: the newest snapshot taken at
    // or before it has `one` and not `two`.
    let cli = common::cli::Cli::new(&d);
    let table = cli.ok(&["restore", "--at", "list", "-s", "pit"]);
    assert!(table.contains("TAKEN"), "{table}");
    let between = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t2) * 1_000_000)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let out = cli.ok(&["restore", "--at", &between, "-s", "pit"]);
    assert!(out.contains("Restored"), "{out}");
    let files = api.sh("pit", "ls /home/sprite").await;
    assert!(files.contains("one") && !files.contains("two"), "{files}");
    // A fork from the same time (`sprite create --from-snapshot`) starts
    // as that snapshot; one by id (the API) as the newest.
    let out = cli.ok(&[
        "create",
        "pit-then",
        "--from-snapshot",
        &format!("pit:{between}"),
        "--skip-console",
    ]);
    assert_eq!(out.trim(), "pit-then");
    let files = api.sh("pit-then", "ls /home/sprite").await;
    assert!(files.contains("one") && !files.contains("two"), "{files}");
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites")
        .json(&serde_json::json!({"name": "pit-now", "source": {"sprite": "pit", "snapshot": ids[0].to_string()}}))
        .send()
        .await
        .expect("fork");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let files = api.sh("pit-now", "ls /home/sprite").await;
    assert!(files.contains("one") && files.contains("two"), "{files}");
    for (source, want) in [
        (
            serde_json::json!({"sprite": "pit", "snapshot": "12345"}),
            404,
        ),
        (
            serde_json::json!({"sprite": "pit", "snapshot": ids[0].to_string(), "checkpoint": "v0"}),
            400,
        ),
    ] {
        let r = api
            .req(reqwest::Method::POST, "/v1/sprites")
            .json(&serde_json::json!({"name": "pit-bad", "source": source}))
            .send()
            .await
            .expect("fork");
        assert_eq!(r.status(), want, "{source}");
    }
    let err = cli.fails(
        &["create", "x", "--from-snapshot", "pit:1999-01-01T00:00:00Z"],
        1,
    );
    assert!(err.contains("no replicated snapshot"), "{err}");
    // The API restores by id the same way.
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v1/sprites/pit/snapshots/{}/restore", ids[0]),
        )
        .send()
        .await
        .expect("restore");
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("stream");
    assert!(body.contains("\"complete\""), "{body}");
    let files = api.sh("pit", "ls /home/sprite").await;
    assert!(files.contains("two"), "{files}");

    // Unknown ones are a 404 in the Sprites error format.
    let r = api
        .req(
            reqwest::Method::POST,
            "/v1/sprites/pit/snapshots/12345/restore",
        )
        .send()
        .await
        .expect("restore");
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.expect("error body");
    assert!(body["error"].is_string(), "{body}");

    // Past the retention, the older ones go; the newest stays.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let t3 = now_ms();
    api.sh("pit", "echo three > /home/sprite/three; sync").await;
    wait_snapshot_after(&api, "pit", t3).await;
    // Expired right after that snapshot is recorded (it is listed a
    // moment before the expired ones go).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ids = loop {
        let ids = snapshot_ids(&api, "pit").await;
        if !ids.contains(&with_one) || std::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !ids.contains(&with_one),
        "expired {with_one} still listed: {ids:?}"
    );
    assert!(!ids.is_empty());
}

/// The daemon killed inside a replication (halfway through its chunks;
/// every chunk sent but no manifest; its manifest sent but not recorded;
/// recorded but its clone not kept): nothing is lost or left half-made,
/// and the next round completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_killed_inside_a_replication_loses_nothing() {
    for point in [
        "replicate-uploading",
        "replicate-chunks-sent",
        "replicate-uploaded",
        "replicate-recorded",
    ] {
        let mut d = Daemon::start_with_env(
            &["--replicate-every", "1s"],
            &[("SPRITED_FAILPOINTS", point)],
        );
        let api = d.client();
        api.create("fp").await;
        let id = api.id_of("fp").await;
        api.sh("fp", "echo a > /home/sprite/a; sync").await;
        d.wait_log("failpoint reached", Duration::from_secs(30));
        if point == "replicate-uploading" {
            // A replication under way is one the volume is behind by:
            // the lag counts from when the change was seen, and the API
            // answers meanwhile.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let st = storage(&api, "fp").await;
                if st["replication_lag_seconds"].as_u64() >= Some(1) {
                    assert!(st["replication_error"].is_null(), "{st}");
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "stuck uploading, yet no lag: {st}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // The metric is the largest lag at the replicator's last look.
            while metric_in(&api.metrics().await, "sprited_replication_lag_seconds") < 1.0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the lag metric stays under 1 s while an upload is stuck"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        d.kill9();
        d.env.clear();
        d.spawn();
        let api = d.client();

        let t = now_ms();
        api.sh("fp", "echo b > /home/sprite/b; sync").await;
        wait_snapshot_after(&api, "fp", t).await;
        // Several intervals on, the newest snapshot holds `b`.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let newest = snapshot_ids(&api, "fp").await[0];
        let pool = d.pool_dir().join("sprites").join(&id);
        let clones: Vec<String> = std::fs::read_dir(&pool)
            .expect("pool dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("replica-"))
            .collect();
        let listed = snapshot_ids(&api, "fp").await;
        assert!(
            clones.len() == 1
                && listed
                    .iter()
                    .any(|s| clones[0] == format!("replica-{s}.img")),
            "{point}: kept clones {clones:?}, snapshots {listed:?}"
        );

        // The snapshot is whole: restored, the sprite has both files.
        let r = api
            .req(
                reqwest::Method::POST,
                &format!("/v1/sprites/fp/snapshots/{newest}/restore"),
            )
            .send()
            .await
            .expect("restore");
        let body = r.text().await.expect("stream");
        assert!(body.contains("\"complete\""), "{point}: {body}");
        assert_eq!(
            api.sh("fp", "cat /home/sprite/a /home/sprite/b").await,
            "a\nb\n",
            "{point}"
        );
    }
}

/// Uploads to the object store run two at a time, however many sprites
/// changed together: each holds tens of MiB of buffers and a share of the
/// cores. Unbounded, these six overlap (each sends 24 MiB that does not
/// compress); bounded, every one still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_run_two_at_a_time_and_all_get_through() {
    let d = Daemon::start_with(&["--replicate-every", "1s"]);
    let api = d.client();
    let names: Vec<String> = (0..6).map(|i| format!("up{i}")).collect();
    for n in &names {
        api.create(n).await;
    }
    for n in &names {
        wait_replicated(&api, n, &serde_json::Value::Null).await;
    }
    // Each one's next snapshot is waited for by its time in ms, later than
    // the moment its write began: `replicated_at` is in whole seconds, and
    // with `--replicate-every 1s` a second snapshot may fall in the same
    // second as the first (due 2/3 of a second after it). Not the moment
    // the write was known to be synced: a snapshot taken between the sync
    // and that reading would be the last (a volume unchanged since is not
    // sent again), and the wait for a later one would never end.
    let mut written = Vec::new();
    for n in &names {
        written.push(now_ms());
        api.sh(
            n,
            "dd if=/dev/urandom of=/home/sprite/blob bs=1M count=24 2>/dev/null; sync",
        )
        .await;
    }
    for (n, after) in names.iter().zip(&written) {
        wait_snapshot_after(&api, n, *after).await;
    }
    let m = api.metrics().await;
    let peak = metric_in(&m, "sprited_uploads_running_peak");
    assert!(
        (1.0..=2.0).contains(&peak),
        "uploads at once at most: {peak}"
    );
    let ok = metric_in(&m, "sprited_replications_total{result=\"ok\"}");
    assert!(ok >= 12.0, "replications done: {ok}");
}
