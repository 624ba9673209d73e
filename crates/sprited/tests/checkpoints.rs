//! Checkpoints, restore and fork through the real API against a real daemon.

mod common;

use std::time::Duration;

use common::{collect, Daemon};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_restore_delete_and_fork() {
    let d = Daemon::start();
    let api = d.client();
    api.create("ck").await;
    api.sh(
        "ck",
        "echo one > /home/sprite/f; echo keep > /home/sprite/g; sync",
    )
    .await;

    // Create: NDJSON info lines, then complete; every line has a time.
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites/ck/checkpoint")
        .json(&serde_json::json!({"comment": "clean install"}))
        .send()
        .await
        .expect("checkpoint");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().expect("ct"),
        "application/x-ndjson"
    );
    let text = r.text().await.expect("body");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    assert!(lines.iter().all(|l| l["time"].is_string()), "{text}");
    assert!(lines[..lines.len() - 1].iter().all(|l| l["type"] == "info"));
    assert_eq!(lines.last().expect("last")["type"], "complete");
    assert!(lines.last().expect("last")["data"]
        .as_str()
        .expect("data")
        .contains("v0"));

    let list = api.get_json("/v1/sprites/ck/checkpoints").await;
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], "v0");
    assert_eq!(list[0]["comment"], "clean install");
    assert_eq!(list[0]["is_current"], true);
    assert!(list[0].get("source_id").is_none());
    let created = list[0]["create_time"].as_str().expect("create_time");
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 create_time");

    // Break things, checkpoint again (an empty body is fine).
    api.sh("ck", "echo two > /home/sprite/f; rm /home/sprite/g; sync")
        .await;
    assert_eq!(api.checkpoint("ck", None).await, "v1");
    let v1 = api.get_json("/v1/sprites/ck/checkpoints/v1").await;
    assert_eq!(v1["source_id"], "v0");
    assert!(v1.get("comment").is_none());
    let ids: Vec<_> = api
        .get_json("/v1/sprites/ck/checkpoints")
        .await
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids, ["v1", "v0"], "newest first");
    api.sh("ck", "echo three > /home/sprite/f").await;

    // The checkpoints are visible read-only inside.
    api.eventually("ck", "cat /.sprite/checkpoints/v0/home/sprite/f", "one\n")
        .await;
    api.eventually("ck", "cat /.sprite/checkpoints/v1/home/sprite/f", "two\n")
        .await;
    let w = api
        .exec(
            "ck",
            &["sh", "-c", "echo x > /.sprite/checkpoints/v0/home/sprite/f"],
        )
        .await;
    assert_ne!(w.code, Some(0), "a checkpoint view was writable");
    let w = api
        .exec_with(
            "ck",
            &["sh", "-c", "umount /.sprite/checkpoints/v0"],
            "user=root",
            &[],
        )
        .await;
    assert_ne!(w.code, Some(0), "the sprite unmounted a checkpoint view");

    // A session running during the restore sees its command end.
    let mut ws = api
        .ws("/v1/sprites/ck/exec?cmd=sleep&cmd=1000&stdin=false")
        .await
        .expect("ws");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = api.restore("ck", "v0").await;
    assert!(lines.iter().any(|l| l["type"] == "info"), "{lines:?}");
    let ended = tokio::time::timeout(Duration::from_secs(10), collect(&mut ws))
        .await
        .expect("the session did not end with the restore");
    assert!(matches!(ended.code, Some(137 | 143)), "{ended:?}");
    // The checkpoint views come through the restore as they were: there
    // for its first exec, not hidden and shown again after it.
    assert_eq!(
        api.sh(
            "ck",
            "cat /.sprite/checkpoints/v0/home/sprite/f /.sprite/checkpoints/v1/home/sprite/f"
        )
        .await,
        "one\ntwo\n"
    );
    assert_eq!(
        api.sh("ck", "cat /home/sprite/f /home/sprite/g").await,
        "one\nkeep\n"
    );
    assert_eq!(api.get_json("/v1/sprites/ck").await["status"], "running");
    assert_eq!(
        api.get_json("/v1/sprites/ck/checkpoints/v0").await["is_current"],
        true
    );

    // Unknown or malformed ids, another sprite's ids: 404.
    for bad in ["v77", "x", "v01"] {
        let (status, _) = api
            .post_ndjson(&format!("/v1/sprites/ck/checkpoints/{bad}/restore"), None)
            .await;
        assert_eq!(status, 404, "restore {bad}");
        let r = api
            .req(
                reqwest::Method::GET,
                &format!("/v1/sprites/ck/checkpoints/{bad}"),
            )
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 404);
        let body: serde_json::Value = r.json().await.expect("error json");
        assert_eq!(body["error"], "not_found");
    }
    let (status, _) = api.post_ndjson("/v1/sprites/nope/checkpoint", None).await;
    assert_eq!(status, 404);
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites/ck/checkpoint")
        .body("{not json")
        .send()
        .await
        .expect("bad body");
    assert_eq!(r.status(), 400);
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites/ck/checkpoint")
        .json(&serde_json::json!({"comment": "x".repeat(5000)}))
        .send()
        .await
        .expect("long comment");
    assert_eq!(r.status(), 400);

    // Delete: the current one is refused, others go and their ids never
    // come back.
    let id = api.id_of("ck").await;
    let image = |ck: &str| {
        d.pool_dir()
            .join("sprites")
            .join(&id)
            .join("checkpoints")
            .join(format!("{ck}.img"))
    };
    assert!(image("v1").exists());
    // Each checkpoint's journal is replayed once, in the background, so
    // that its restores and forks mount a clean filesystem (the ext4
    // superblock's needs_recovery bit goes).
    for ck in ["v0", "v1"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while needs_recovery(&image(ck)) {
            assert!(
                std::time::Instant::now() < deadline,
                "checkpoint {ck}'s journal was never replayed ahead of time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let r = api
        .req(reqwest::Method::DELETE, "/v1/sprites/ck/checkpoints/v0")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 409);
    let r = api
        .req(reqwest::Method::DELETE, "/v1/sprites/ck/checkpoints/v1")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    assert!(!image("v1").exists(), "deleting did not free the image");
    let r = api
        .req(reqwest::Method::DELETE, "/v1/sprites/ck/checkpoints/v1")
        .send()
        .await
        .expect("delete again");
    assert_eq!(r.status(), 404);
    api.eventually("ck", "ls /.sprite/checkpoints", "v0\n")
        .await;
    assert_eq!(api.checkpoint("ck", Some("after delete")).await, "v2");

    // Fork from a checkpoint of another sprite.
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites")
        .json(&serde_json::json!({"name": "fork", "source": {"sprite": "ck", "checkpoint": "v0"}}))
        .send()
        .await
        .expect("fork");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    assert_eq!(
        api.sh("fork", "cat /home/sprite/f /home/sprite/g").await,
        "one\nkeep\n"
    );
    api.sh("fork", "echo forked > /home/sprite/f").await;
    assert_eq!(api.sh("ck", "cat /home/sprite/f").await, "one\n");
    assert_eq!(
        api.get_json("/v1/sprites/fork/checkpoints").await,
        serde_json::json!([])
    );
    // A sprite sees only its own checkpoints, inside as through its socket,
    // and cannot touch the socket's directory.
    assert_eq!(api.sh("fork", "ls -A /.sprite/checkpoints").await, "");
    assert_eq!(
        api.sh("fork", "sprite-env checkpoints list --json")
            .await
            .trim(),
        "[]"
    );
    for script in [
        "rm -f /.sprite/run/api.sock",
        "touch /.sprite/run/x",
        "ln -s / /.sprite/run/y",
    ] {
        let o = api
            .exec_with("fork", &["sh", "-c", script], "user=root", &[])
            .await;
        assert_ne!(o.code, Some(0), "{script} worked as root inside the sprite");
    }
    // Ids are per sprite: v2 of ck is not the fork's.
    let (status, _) = api
        .post_ndjson("/v1/sprites/fork/checkpoints/v2/restore", None)
        .await;
    assert_eq!(status, 404);
    for (src, ck) in [("ck", "v1"), ("nope", "v0"), ("ck", "bad")] {
        let r = api
            .req(reqwest::Method::POST, "/v1/sprites")
            .json(
                &serde_json::json!({"name": "fork2", "source": {"sprite": src, "checkpoint": ck}}),
            )
            .send()
            .await
            .expect("fork");
        assert_eq!(r.status(), 404, "fork from {src}:{ck}");
    }
    assert_eq!(
        api.req(reqwest::Method::GET, "/v1/sprites/fork2")
            .send()
            .await
            .expect("get")
            .status(),
        404,
        "a failed fork left a sprite behind"
    );

    // The list's filters, as the SDKs send them: `history=vN` is vN's
    // branch (what it descends from, what descends from it), automatic
    // checkpoints only with `includeAuto=true`. Now v0 ← v2 ← v3, and a
    // restore to v0 then v0 ← v4.
    assert_eq!(api.checkpoint("ck", None).await, "v3");
    api.restore("ck", "v0").await;
    assert_eq!(api.checkpoint("ck", None).await, "v4");
    let listed = |query: &'static str| {
        let api = &api;
        async move {
            let r = api
                .req(
                    reqwest::Method::GET,
                    &format!("/v1/sprites/ck/checkpoints{query}"),
                )
                .send()
                .await
                .expect("list");
            let status = r.status().as_u16();
            let json = r.headers()["content-type"] == "application/json";
            let body: serde_json::Value = r.json().await.expect("a JSON answer");
            let ids: Vec<String> = body
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c["id"].as_str())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            (status, json, ids, body)
        }
    };
    for (query, want) in [
        ("", vec!["v4", "v3", "v2", "v0"]),
        ("?includeAuto=true", vec!["v4", "v3", "v2", "v0"]),
        ("?history=v2", vec!["v3", "v2", "v0"]),
        ("?history=v4&includeAuto=true", vec!["v4", "v0"]),
        ("?history=v0", vec!["v4", "v3", "v2", "v0"]),
    ] {
        let (status, json, ids, body) = listed(query).await;
        assert_eq!((status, json), (200, true), "{query}: {body}");
        assert_eq!(ids, want, "{query}: {body}");
    }
    for (query, status) in [
        ("?history=v1", 404),
        ("?history=v77", 404),
        ("?includeAuto=maybe", 400),
    ] {
        let (got, json, _, body) = listed(query).await;
        assert_eq!((got, json), (status, true), "{query}: {body}");
        assert!(body["message"].is_string(), "{query}: {body}");
    }

    // Destroying a sprite frees all of its checkpoints; its forks live on.
    api.delete("ck").await;
    assert!(!image("v0").exists());
    assert!(!d.pool_dir().join("sprites").join(&id).exists());
    assert_eq!(api.sh("fork", "cat /home/sprite/f").await, "forked\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_five_are_visible_and_restores_serialise() {
    let d = Daemon::start();
    let api = d.client();
    api.create("many").await;
    for i in 0..7 {
        api.sh(
            "many",
            &format!("echo {i} > /home/sprite/n; echo {i} > /home/sprite/m"),
        )
        .await;
        assert_eq!(api.checkpoint("many", None).await, format!("v{i}"));
    }
    api.eventually(
        "many",
        "ls /.sprite/checkpoints | tr '\\n' ' '",
        "v2 v3 v4 v5 v6 ",
    )
    .await;
    api.eventually("many", "cat /.sprite/checkpoints/v2/home/sprite/n", "2\n")
        .await;

    // Two restores at once: both complete, one after the other, and the
    // filesystem is wholly one checkpoint or the other.
    let (a, b) = tokio::join!(api.restore("many", "v1"), api.restore("many", "v5"));
    assert_eq!(a.last().expect("a")["type"], "complete");
    assert_eq!(b.last().expect("b")["type"], "complete");
    let both = api.sh("many", "cat /home/sprite/n /home/sprite/m").await;
    assert!(
        both == "1\n1\n" || both == "5\n5\n",
        "mixed state: {both:?}"
    );

    // The views come back after the restart of a restore.
    api.eventually(
        "many",
        "ls /.sprite/checkpoints | tr '\\n' ' '",
        "v2 v3 v4 v5 v6 ",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_session_ends_on_restore() {
    let d = Daemon::start();
    let api = d.client();
    api.create("tty").await;
    api.sh("tty", "echo before > /home/sprite/f").await;
    assert_eq!(api.checkpoint("tty", None).await, "v0");
    api.sh("tty", "echo after > /home/sprite/f").await;

    // A TTY session gets an exit message when the restore stops the sprite.
    let mut ws = api
        .ws("/v1/sprites/tty/exec?cmd=sh&tty=true&stdin=true")
        .await
        .expect("ws");
    ws.send(Message::Binary(b"echo hi\n".to_vec().into()))
        .await
        .expect("type");
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.restore("tty", "v0").await;
    let ended = tokio::time::timeout(Duration::from_secs(10), collect(&mut ws))
        .await
        .expect("the TTY session did not end");
    assert!(
        ended
            .texts
            .iter()
            .any(|t| t.contains("\"exit\"") && t.contains("137")),
        "{ended:?}"
    );
    assert_eq!(api.sh("tty", "cat /home/sprite/f").await, "before\n");
}

/// Whether the ext4 image's superblock asks for a journal replay
/// (`EXT4_FEATURE_INCOMPAT_RECOVER` in `s_feature_incompat`).
fn needs_recovery(image: &std::path::Path) -> bool {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(image).expect("open the checkpoint image");
    let mut sb = [0u8; 0x64];
    file.read_exact_at(&mut sb, 1024)
        .expect("read its superblock");
    assert_eq!(u16::from_le_bytes([sb[0x38], sb[0x39]]), 0xEF53, "not ext4");
    u32::from_le_bytes([sb[0x60], sb[0x61], sb[0x62], sb[0x63]]) & 0x4 != 0
}
