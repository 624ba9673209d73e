//! `--database postgres://...`: the daemon keeps its metadata in a real
//! PostgreSQL server (Debian's package, a cluster of the test's own on a
//! loopback port), survives its own restart with everything there, answers
//! 503 while the server is down and works again when it is back.

mod common;

use common::Daemon;
use reqwest::Method;
use serde_json::json;
use sprites_test_support::postgres::Postgres;
use std::time::{Duration, Instant};

/// Waits until sprite `name` answers through `api` (503 while its last
/// host is not known gone).
async fn serves(api: &common::Api, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = match api
            .req(Method::GET, &format!("/v1/sprites/{name}"))
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => return,
            Ok(r) => r.status().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{name}: {status} after its host died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sprite `name`, asked through `api`, lists checkpoint `id` with `comment`.
async fn has_checkpoint(api: &common::Api, name: &str, id: &str, comment: &str) {
    let cks = api
        .get_json(&format!("/v1/sprites/{name}/checkpoints"))
        .await;
    assert!(
        cks.as_array()
            .expect("checkpoints")
            .iter()
            .any(|c| c["id"] == id && c["comment"] == comment),
        "{cks}"
    );
}

/// A password the server does not ask for (trust authentication) but the
/// URL carries: it must never reach the daemon's log.
const PASSWORD: &str = "pw-never-logged-4711";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_on_postgres_keeps_its_sprites_there() {
    let mut pg = Postgres::start();
    pg.create_database("meta");
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/meta", pg.port);
    // From the environment, as a password is best given.
    let mut d = Daemon::start_with_env(&[], &[("SPRITED_DATABASE", &url)]);
    let api = d.client();

    api.create_with(json!({"name": "pg1", "labels": ["blue"]}))
        .await;
    api.sh("pg1", "echo before > /home/sprite/f; sync").await;
    let v0 = api.checkpoint("pg1", Some("on postgres")).await;
    api.sh("pg1", "echo after > /home/sprite/f; sync").await;

    // The rows are in PostgreSQL, and there is no SQLite file.
    assert_eq!(
        pg.psql_in("meta", "SELECT name, labels FROM sprites"),
        "pg1|[\"blue\"]\n"
    );
    assert_eq!(
        pg.psql_in("meta", "SELECT comment FROM checkpoints ORDER BY seq"),
        "on postgres\n"
    );
    assert!(
        !common::exists(&d.data_dir.join("meta.db")),
        "a meta.db was made"
    );

    // A restart of the daemon (killed) finds everything in the database.
    d.restart();
    let list = api.get_json("/v1/sprites?prefix=pg").await;
    let names: Vec<&str> = list["sprites"]
        .as_array()
        .expect("sprites")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["pg1"], "{list}");
    let by_label = api.get_json("/v1/sprites?labels=blue").await;
    assert_eq!(
        by_label["sprites"].as_array().map(Vec::len),
        Some(1),
        "{by_label}"
    );
    assert_eq!(api.sh("pg1", "cat /home/sprite/f").await, "after\n");
    has_checkpoint(&api, "pg1", &v0, "on postgres").await;
    api.restore("pg1", &v0).await;
    assert_eq!(api.sh("pg1", "cat /home/sprite/f").await, "before\n");

    // The server goes away: requests that need it fail with a clear 503
    // in the API's error format; the daemon stays up.
    pg.stop();
    let r = api
        .req(Method::GET, "/v1/sprites")
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.expect("an error body");
    let msg = body["message"].as_str().unwrap_or_default().to_string();
    assert!(
        msg.contains("metadata database cannot be reached"),
        "{body}"
    );
    let r = api
        .req(Method::POST, "/v1/sprites")
        .json(&json!({"name": "pg2"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 503, "a create with the database down");

    // Back: everything works again, nothing half-made.
    pg.restart();
    assert_eq!(api.sh("pg1", "cat /home/sprite/f").await, "before\n");
    let list = api.get_json("/v1/sprites").await;
    let names: Vec<&str> = list["sprites"]
        .as_array()
        .expect("sprites")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["pg1"], "{list}");
    api.create("pg2").await;
    assert_eq!(api.sh("pg2", "echo ok").await, "ok\n");
    api.delete("pg2").await;
    api.delete("pg1").await;
    assert_eq!(pg.psql_in("meta", "SELECT count(*) FROM sprites"), "0\n");

    assert!(
        !d.log().contains(PASSWORD),
        "the database password is in the daemon's log"
    );
    assert!(
        d.log().contains("postgres://postgres:***@127.0.0.1"),
        "the log names the database"
    );
}

/// The sprite's newest replicated snapshot (unix ms), through `api`.
async fn newest_snapshot(api: &common::Api, name: &str) -> u64 {
    let list = api.get_json(&format!("/v1/sprites/{name}/snapshots")).await;
    list.as_array()
        .and_then(|l| l.first())
        .and_then(|s| s["id"].as_str())
        .and_then(|i| i.parse().ok())
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Polls `probe` every 100 ms until it is true; panics after `within`.
async fn until<F, Fut>(what: &str, within: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !probe().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The holder of sprite `id` and its epoch, as PostgreSQL has it.
fn lease_of(pg: &Postgres, id: &str) -> String {
    pg.psql_in(
        "meta",
        &format!("SELECT host_id, epoch FROM sprite_leases WHERE sprite_id = '{id}'"),
    )
}

/// Waits until host `host`'s membership has run out (by the database's
/// clock).
async fn until_gone(pg: &Postgres, host: &str) {
    until(
        &format!("host {host}'s heartbeat ran out"),
        Duration::from_secs(60),
        || async {
            pg.psql_in(
                "meta",
                &format!(
                    "SELECT expires_ms < CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
                     FROM hosts WHERE id = '{host}'"
                ),
            ) == "t\n"
        },
    )
    .await;
}

/// Three hosts on one database and one bucket, every one serving. A
/// sprite made on `a` is reached through `b` (forwarded: HTTP, an exec's
/// WebSocket); a create through `b` is placed on `b`, which holds fewer.
/// `a`'s host dies (daemon and sandboxes killed, data dir gone): the next
/// request through `b` claims the sprite and brings it back from its last
/// replication, its uploaded checkpoint intact. Then `b` is frozen
/// (SIGSTOP) past its heartbeat: `c` claims the sprite; thawed, `b` finds
/// its membership gone, stops its sandboxes and exits without writing to
/// the database again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprites_move_from_a_dead_host_and_a_frozen_one_is_fenced() {
    let pg = Postgres::start();
    pg.create_database("meta");
    let url = pg.url("meta");
    let moto = sprites_test_support::s3::Moto::start("sprites");
    let mut env: Vec<(&str, String)> = moto.env();
    env.push(("SPRITED_DATABASE", url.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let flags = |host: &'static str| -> Vec<&'static str> {
        vec![
            "--host-id",
            host,
            "--host-timeout",
            "3s",
            "--object-store",
            "s3://sprites/shared",
            "--replicate-every",
            "1s",
        ]
    };

    let mut a = Daemon::start_with_env(&flags("a"), &env);
    let api_a = a.client();
    api_a.create("fo").await;
    let id = api_a.id_of("fo").await;
    assert_eq!(api_a.get_json("/v1/sprites/fo").await["host"], "a");
    assert_eq!(lease_of(&pg, &id), "a|1\n");
    api_a.sh("fo", "echo v1 > /home/sprite/f; sync").await;
    let v1 = api_a.checkpoint("fo", Some("v1")).await;
    api_a.sh("fo", "echo v2 > /home/sprite/f; sync").await;
    let written = now_ms();
    // A snapshot newer than `written` was cloned after the write. One cloned
    // between the sync and that reading of the clock would be the last (an
    // unchanged volume is not sent again) and the wait would run out: the
    // volume changes again after it.
    api_a.sh("fo", "touch /home/sprite/nudge; sync").await;
    until(
        "a snapshot after the write",
        Duration::from_secs(60),
        || async { newest_snapshot(&api_a, "fo").await > written },
    )
    .await;
    until(
        "the checkpoint uploaded",
        Duration::from_secs(60),
        || async { pg.psql_in("meta", "SELECT count(*) FROM cold_checkpoints") == "1\n" },
    )
    .await;

    // b serves too: what a holds is forwarded to a (HTTP, an exec's
    // WebSocket); a create goes to b, which holds fewer sprites, and a
    // reaches it through b.
    let b = Daemon::start_with_env(&flags("b"), &env);
    let api_b = b.client();
    assert_eq!(
        api_b.sh("fo", "cat /home/sprite/f").await,
        "v2\n",
        "through b"
    );
    assert_eq!(api_b.get_json("/v1/sprites/fo").await["host"], "a");
    let mut ws = api_b
        .ws("/v1/sprites/fo/exec?cmd=cat&cmd=/home/sprite/f")
        .await
        .expect("an exec WebSocket through b");
    let out = common::collect(&mut ws).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v2\n", "{out:?}");
    api_b.create("made-via-b").await;
    assert_eq!(api_a.get_json("/v1/sprites/made-via-b").await["host"], "b");
    assert_eq!(
        api_a.sh("made-via-b", "echo here").await,
        "here\n",
        "through a"
    );
    let list = api_b.get_json("/v1/sprites").await;
    let hosts: Vec<(String, String)> = list["sprites"]
        .as_array()
        .expect("sprites")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["host"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [("fo".into(), "a".into()), ("made-via-b".into(), "b".into())],
        "{list}"
    );
    api_a.delete("made-via-b").await;
    // A fork through b is made where its source's checkpoint is: on a.
    let r = api_b
        .req(Method::POST, "/v1/sprites")
        .json(&json!({"name": "fo-fork", "source": {"sprite": "fo", "checkpoint": v1}}))
        .send()
        .await
        .expect("fork");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    assert_eq!(api_b.get_json("/v1/sprites/fo-fork").await["host"], "a");
    assert_eq!(api_b.sh("fo-fork", "cat /home/sprite/f").await, "v1\n");
    api_b.delete("fo-fork").await;
    let r = api_b
        .req(Method::GET, "/v1/sprites/fo")
        .header("sprited-forwarded-by", "elsewhere")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503, "b forwarded a forwarded request");

    // a's host dies: daemon and sandboxes killed, its data dir removed.
    // Its sprite's next request, through b, brings it to b.
    a.kill9();
    a.kill_all_sandboxes();
    drop(a);
    until_gone(&pg, "a").await;
    // Four requests at once: one claim, the others wait for it.
    futures_util::future::join_all((0..4).map(|_| serves(&api_b, "fo"))).await;
    assert_eq!(lease_of(&pg, &id), "b|2\n");
    assert_eq!(
        b.log().matches("this host holds the sprite now").count(),
        1,
        "claimed more than once"
    );
    assert_eq!(api_b.get_json("/v1/sprites/fo").await["host"], "b");
    let metrics = api_b
        .req(Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("sprited_host_epoch{host=\"b\"} 1\n")
            && metrics.contains("sprited_host_sprites{host=\"b\"} 1\n"),
        "{metrics}"
    );
    assert_eq!(
        api_b.sh("fo", "cat /home/sprite/f").await,
        "v2\n",
        "as of its last replication"
    );
    has_checkpoint(&api_b, "fo", &v1, "v1").await;
    api_b.restore("fo", &v1).await;
    assert_eq!(api_b.sh("fo", "cat /home/sprite/f").await, "v1\n");
    let restored = now_ms();
    until(
        "a snapshot after the restore",
        Duration::from_secs(60),
        || async { newest_snapshot(&api_b, "fo").await > restored },
    )
    .await;

    // b frozen past its heartbeat: the next request, through c, claims
    // the sprite for c.
    let mut b = b;
    let c = Daemon::start_with_env(&flags("c"), &env);
    let api_c = c.client();
    // A writer in b's copy goes on while b's daemon is frozen: thawed, b
    // finds the volume changed, which it would replicate if it could.
    api_b
        .sh(
            "fo",
            "(while :; do date > /home/sprite/tick; sync; sleep 0.2; done) >/dev/null 2>&1 &",
        )
        .await;
    b.signal(nix::sys::signal::Signal::SIGSTOP);
    until_gone(&pg, "b").await;
    assert_eq!(
        api_c.sh("fo", "cat /home/sprite/f").await,
        "v1\n",
        "restored, then replicated"
    );
    assert_eq!(lease_of(&pg, &id), "c|3\n");
    // What b wrote last (its host row): unchanged once b is thawed.
    let seen_b = pg.psql_in(
        "meta",
        "SELECT seen_ms, expires_ms FROM hosts WHERE id = 'b'",
    );
    // What b may have written to the store: its copies of the sprite are
    // named by its epoch (2), c's by its own (3).
    let b_prefix = format!("shared/manifests/sprites/{id}/e2/");
    let b_before = moto.keys_under("sprites", &b_prefix);
    let mark = b.log_mark();
    b.signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(
        b.exit_code(Duration::from_secs(30)),
        Some(75),
        "b did not stop"
    );
    // Nor in the store: nothing of b's epoch appeared after its thaw.
    assert_eq!(
        moto.keys_under("sprites", &b_prefix),
        b_before,
        "b wrote to the store after its membership ran out"
    );
    b.wait_log_since(
        mark,
        "this host's membership ran out",
        Duration::from_secs(1),
    );
    assert_eq!(
        pg.psql_in(
            "meta",
            "SELECT seen_ms, expires_ms FROM hosts WHERE id = 'b'"
        ),
        seen_b
    );
    assert_eq!(lease_of(&pg, &id), "c|3\n");
    // b's copy of the sprite was stopped; c's answers, with its data, and
    // replicates under its own epoch.
    assert_ne!(b.runc_state(&id), "running", "b left its sandbox running");
    assert_eq!(api_c.sh("fo", "cat /home/sprite/f").await, "v1\n");
    api_c.sh("fo", "echo v3 > /home/sprite/g; sync").await;
    let written = now_ms();
    api_c.sh("fo", "touch /home/sprite/nudge; sync").await;
    until("a snapshot on c", Duration::from_secs(60), || async {
        newest_snapshot(&api_c, "fo").await > written
    })
    .await;
    let at = newest_snapshot(&api_c, "fo").await;
    assert!(
        moto.keys_under(
            "sprites",
            &format!("shared/manifests/sprites/{id}/e3/snapshots/")
        )
        .contains(&format!(
            "shared/manifests/sprites/{id}/e3/snapshots/{at}.json"
        )),
        "c's snapshot is not named by its epoch"
    );
    assert!(
        !moto.keys_under("sprites", &b_prefix).is_empty(),
        "b's snapshots are not named by its epoch"
    );
    api_c.delete("fo").await;
    assert_eq!(lease_of(&pg, &id), "");
}

/// `sprited drain` on a host: every sprite it holds is stopped and moved
/// to the object store (written last, checkpoints too), its sessions end,
/// the host gives each up, leaves and stops with status 0, and the next
/// request for each, through a cordoned host, wakes it on the host with
/// room, nothing lost. A host with a database of its own refuses to drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_host_hands_every_sprite_over_with_nothing_lost() {
    let pg = Postgres::start();
    pg.create_database("meta");
    let objects = tempfile::Builder::new()
        .prefix("sprited-objects-")
        .tempdir_in("/var/tmp")
        .expect("objects dir");
    let store = format!("file://{}", objects.path().display());
    let env = [("SPRITED_DATABASE", pg.url("meta"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let flags = |host: &'static str| -> Vec<String> {
        [
            "--host-id",
            host,
            "--host-timeout",
            "3s",
            "--object-store",
            &store,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let fa = flags("a");
    let fb = flags("b");
    let mut a = Daemon::start_with_env(&fa.iter().map(String::as_str).collect::<Vec<_>>(), &env);
    let api_a = a.client();
    for n in ["d1", "d2"] {
        api_a.create(n).await;
    }
    // b takes no sprite (cordoned): what a hands over goes, through b, to
    // c, the host with room.
    let mut fb = fb;
    fb.push("--cordon".into());
    let b = Daemon::start_with_env(&fb.iter().map(String::as_str).collect::<Vec<_>>(), &env);
    let fc = flags("c");
    let _c = Daemon::start_with_env(&fc.iter().map(String::as_str).collect::<Vec<_>>(), &env);
    let api_b = b.client();
    let v0 = api_a.checkpoint("d1", Some("before")).await;
    // Written just before the drain: no replication has seen these.
    api_a.sh("d1", "echo last > /home/sprite/f; sync").await;
    api_a.sh("d2", "echo last2 > /home/sprite/f; sync").await;
    let mut session = api_a
        .ws("/v1/sprites/d1/exec?cmd=sleep&cmd=1000")
        .await
        .expect("a session");

    let out = std::process::Command::new(common::BIN)
        .args(["--listen", &a.addr, "drain"])
        .env("SPRITED_TOKEN", &a.token)
        .output()
        .expect("sprited drain");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("handing over d1") && said.contains("handing over d2"),
        "{said}"
    );
    assert!(said.contains("2 sprites handed over"), "{said}");
    let ended = tokio::time::timeout(Duration::from_secs(10), common::collect(&mut session)).await;
    assert!(ended.is_ok(), "the session on the drained host did not end");
    assert_eq!(
        a.exit_code(Duration::from_secs(30)),
        Some(0),
        "the drained host did not stop"
    );
    // Given up, and a left: at once, not when its heartbeat runs out.
    assert_eq!(
        pg.psql_in(
            "meta",
            "SELECT count(*) FROM sprite_leases WHERE host_id IS NULL"
        ),
        "2\n"
    );
    until_gone(&pg, "a").await;

    assert_eq!(api_b.sh("d1", "cat /home/sprite/f").await, "last\n");
    assert_eq!(api_b.sh("d2", "cat /home/sprite/f").await, "last2\n");
    assert_eq!(
        pg.psql_in(
            "meta",
            "SELECT host_id, epoch FROM sprite_leases ORDER BY sprite_id"
        ),
        "c|2\nc|2\n"
    );
    assert_eq!(api_b.get_json("/v1/sprites/d1").await["host"], "c");
    api_b.restore("d1", &v0).await;
    assert!(
        api_b
            .exec("d1", &["test", "-e", "/home/sprite/f"])
            .await
            .code
            != Some(0)
    );
    for n in ["d1", "d2"] {
        api_b.delete(n).await;
    }

    // A daemon of its own database has nobody to hand its sprites to.
    let alone = Daemon::start();
    let r = alone
        .client()
        .req(Method::POST, "/v1/host/drain")
        .send()
        .await
        .expect("drain");
    assert_eq!(r.status(), 409);
}

/// PostgreSQL restarted while clients create sprites and run commands in
/// them: every answer is a success or a 503 saying the database is away
/// (never a 500), and afterwards every sprite asked for either exists and
/// works or does not exist at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_fails_cleanly_and_leaves_nothing_half_done() {
    let mut pg = Postgres::start();
    pg.create_database("meta");
    let d = Daemon::start_with_env(&[], &[("SPRITED_DATABASE", &pg.url("meta"))]);
    let api = std::sync::Arc::new(d.client());
    let stop_at = Instant::now() + Duration::from_secs(8);
    let mut clients = Vec::new();
    for c in 0..4 {
        let api = api.clone();
        clients.push(tokio::spawn(async move {
            let mut names = Vec::new();
            let mut answers = Vec::new();
            let mut i = 0;
            while Instant::now() < stop_at {
                let name = format!("ld-{c}-{i}");
                i += 1;
                names.push(name.clone());
                let r = api
                    .req(Method::POST, "/v1/sprites")
                    .json(&json!({"name": name}))
                    .send()
                    .await
                    .expect("create");
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                answers.push((format!("create {name}"), status, body));
                if status == 201 {
                    let r = api
                        .req(Method::POST, &format!("/v1/sprites/{name}/exec?cmd=true"))
                        .send()
                        .await
                        .expect("exec");
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap_or_default();
                    answers.push((format!("exec {name}"), status, body));
                }
            }
            (names, answers)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.restart();
    let mut names = Vec::new();
    let mut unavailable = 0;
    for c in clients {
        let (n, answers) = c.await.expect("client");
        names.extend(n);
        for (what, status, body) in answers {
            match status {
                200 | 201 => {}
                503 => {
                    assert!(body.contains("metadata database"), "{what}: 503 {body}");
                    unavailable += 1;
                }
                other => panic!("{what}: {other} {body}"),
            }
        }
    }
    assert!(unavailable > 0, "no request met the database down");
    // Nothing half-made: each sprite asked for is whole or absent.
    for name in &names {
        let r = api
            .req(Method::GET, &format!("/v1/sprites/{name}"))
            .send()
            .await
            .expect("get");
        match r.status().as_u16() {
            404 => {}
            200 => {
                let v: serde_json::Value = r.json().await.expect("json");
                assert_ne!(v["status"], "error", "{name}: {v}");
                assert_eq!(api.sh(name, "echo ok").await, "ok\n", "{name}");
                api.delete(name).await;
            }
            other => panic!("{name}: {other} after the restart"),
        }
    }
    let list = api.get_json("/v1/sprites").await;
    assert_eq!(list["sprites"].as_array().map(Vec::len), Some(0), "{list}");
}

/// A watch on a host sharing its database also looks at every sprite twice
/// a second (other hosts' changes are not announced to it). A sprite being
/// created has its row before its start: such a look used to tell it cold,
/// then running. Each new sprite's first line is its running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_shared_database_tells_a_new_sprite_running_first() {
    let pg = Postgres::start();
    pg.create_database("meta");
    let d = Daemon::start_with_env(&[], &[("SPRITED_DATABASE", &pg.url("meta"))]);
    let api = d.client();
    let mut resp = api
        .req(Method::GET, "/v1/sprites?prefix=wnew-")
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("watch");
    assert_eq!(resp.status(), 200);
    // Every state line read so far, as (name, status).
    let mut buf = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for i in 0..12 {
        let name = format!("wnew-{i}");
        api.create(&name).await;
        while !seen.iter().any(|(n, s)| *n == name && s == "running") {
            let chunk = tokio::time::timeout(Duration::from_secs(30), resp.chunk())
                .await
                .expect("a line within 30 s")
                .expect("reading the stream")
                .expect("the stream goes on");
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let v: serde_json::Value = serde_json::from_slice(&line).expect("a JSON line");
                if let (Some(n), Some(s)) = (v["name"].as_str(), v["status"].as_str()) {
                    seen.push((n.to_string(), s.to_string()));
                }
            }
        }
        let first = seen
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.as_str());
        assert_eq!(first, Some("running"), "{name}: {seen:?}");
    }
}
