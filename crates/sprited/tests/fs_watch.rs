//! `GET /v1/sprites/{name}/fs/watch` (WebSocket): subscribe, then one
//! event per change inside the sprite, seen by inotify as the caller's
//! user; the watch ends with the connection.

mod common;

use std::time::Duration;

use common::{Api, Daemon};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(api: &Api, name: &str, subscribe: Value) -> Ws {
    let mut ws = api
        .ws(&format!("/v1/sprites/{name}/fs/watch"))
        .await
        .expect("fs/watch upgrade");
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("subscribe");
    ws
}

/// The next JSON message; `None` once the server closed.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a message within 20 s");
        match m {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("JSON")),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Events until one is `event` on `path`; that one.
async fn until(ws: &mut Ws, event: &str, path: &str) -> Value {
    let mut seen = Vec::new();
    loop {
        let m = next(ws)
            .await
            .unwrap_or_else(|| panic!("closed; saw {seen:?}"));
        if m["type"] == "event" && m["event"] == event && m["path"] == path {
            return m;
        }
        seen.push(m);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_watch_reports_changes_inside_the_sprite() {
    let d = Daemon::start();
    let api = d.client();
    api.create("fw").await;
    api.sh("fw", "mkdir -p /tmp/w/sub").await;

    let mut ws = open(
        &api,
        "fw",
        json!({"type": "subscribe", "paths": ["w"], "recursive": true, "workingDir": "/tmp"}),
    )
    .await;
    let first = next(&mut ws).await.expect("subscribed");
    assert_eq!(first, json!({"type": "subscribed", "paths": ["/tmp/w"]}));

    api.sh("fw", "echo hello > /tmp/w/a.txt").await;
    let ev = until(&mut ws, "create", "/tmp/w/a.txt").await;
    assert_eq!(ev["isDir"], false, "{ev}");
    assert!(
        ev["timestamp"].as_str().expect("timestamp").ends_with('Z'),
        "{ev}"
    );
    let ev = until(&mut ws, "write", "/tmp/w/a.txt").await;
    assert_eq!(ev["size"], 6, "{ev}");

    // Below: a directory that was there, and one made now.
    api.sh("fw", "echo x > /tmp/w/sub/b").await;
    until(&mut ws, "create", "/tmp/w/sub/b").await;
    api.sh("fw", "mkdir /tmp/w/new").await;
    let ev = until(&mut ws, "create", "/tmp/w/new").await;
    assert_eq!(ev["isDir"], true, "{ev}");
    api.sh("fw", "echo y > /tmp/w/new/c").await;
    until(&mut ws, "create", "/tmp/w/new/c").await;

    api.sh("fw", "chmod 600 /tmp/w/a.txt").await;
    until(&mut ws, "chmod", "/tmp/w/a.txt").await;
    api.sh("fw", "mv /tmp/w/a.txt /tmp/w/b.txt").await;
    until(&mut ws, "rename", "/tmp/w/a.txt").await;
    until(&mut ws, "create", "/tmp/w/b.txt").await;
    api.sh("fw", "rm -r /tmp/w/new").await;
    until(&mut ws, "remove", "/tmp/w/new/c").await;
    until(&mut ws, "remove", "/tmp/w/new").await;

    // Not recursive: what happens below is not told.
    let mut flat = open(
        &api,
        "fw",
        json!({"type": "subscribe", "paths": ["/tmp/w"]}),
    )
    .await;
    assert_eq!(
        next(&mut flat).await.expect("subscribed")["type"],
        "subscribed"
    );
    api.sh("fw", "echo z > /tmp/w/sub/deep; echo z > /tmp/w/top")
        .await;
    let ev = next(&mut flat).await.expect("an event");
    assert_eq!(
        (&ev["event"], &ev["path"]),
        (&json!("create"), &json!("/tmp/w/top")),
        "{ev}"
    );

    // What cannot be watched is an error, then the close.
    let mut missing = open(&api, "fw", json!({"type": "subscribe", "paths": ["/nope"]})).await;
    let err = next(&mut missing).await.expect("an error");
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["code"], "ENOENT", "{err}");
    assert!(next(&mut missing).await.is_none(), "closed after the error");
    // The caller's permissions hold: the sprite user cannot watch root's
    // private directory.
    api.exec_with(
        "fw",
        &["sh", "-c", "mkdir -m 700 /tmp/priv"],
        "user=root",
        &[],
    )
    .await;
    let mut denied = open(
        &api,
        "fw",
        json!({"type": "subscribe", "paths": ["/tmp/priv"]}),
    )
    .await;
    let err = next(&mut denied).await.expect("an error");
    assert_eq!(err["code"], "EACCES", "{err}");
    let mut bad = open(&api, "fw", json!({"type": "watch"})).await;
    assert_eq!(next(&mut bad).await.expect("an error")["type"], "error");

    // Bounded: a recursive watch follows at most 4096 directories, and
    // says so when there are more.
    api.sh(
        "fw",
        "mkdir /tmp/many && cd /tmp/many && seq 4100 | xargs mkdir",
    )
    .await;
    let mut many = open(
        &api,
        "fw",
        json!({"type": "subscribe", "paths": ["/tmp/many"], "recursive": true}),
    )
    .await;
    assert_eq!(
        next(&mut many).await.expect("subscribed")["type"],
        "subscribed"
    );
    let note = next(&mut many).await.expect("the limit, told");
    assert_eq!(
        (&note["type"], &note["code"]),
        (&json!("error"), &json!("overflow")),
        "{note}"
    );
    assert!(
        note["message"].as_str().expect("message").contains("4096"),
        "{note}"
    );
    drop(many);

    // An unknown sprite is refused before the upgrade.
    assert!(api.ws("/v1/sprites/nope/fs/watch").await.is_err());

    // Closing the WebSockets ends the watchers inside (one each).
    let watchers = "cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^sprite-fs$'";
    api.eventually("fw", watchers, "2\n").await;
    for mut w in [ws, flat] {
        w.close(None).await.expect("close");
    }
    api.eventually("fw", watchers, "0\n").await;
}
