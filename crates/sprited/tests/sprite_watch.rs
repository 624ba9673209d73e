//! `GET /v1/sprites` with `Accept: application/x-ndjson` (the SDKs'
//! `watchSprites`): the sprites as they are, then their changes, filtered
//! by prefix; the stream ends when the daemon stops.

mod common;

use std::time::Duration;

use common::{Api, Daemon};
use serde_json::Value;

/// An open watch stream, read a line at a time.
struct Lines {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    async fn open(api: &Api, query: &str) -> Lines {
        let resp = api
            .req(reqwest::Method::GET, &format!("/v1/sprites{query}"))
            .header("accept", "application/x-ndjson")
            .send()
            .await
            .expect("watch");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "application/x-ndjson",
            "the stream's type"
        );
        Lines {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next line, parsed; `None` at the end of the stream.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON line"));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.resp.chunk())
                .await
                .expect("a line within 30 s")
                .expect("reading the stream")?;
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next line that is not a heartbeat.
    async fn next_state(&mut self) -> Value {
        loop {
            let line = self.next().await.expect("the stream goes on");
            if line["type"] != "heartbeat" {
                return line;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_sprite_changes_by_prefix() {
    let d = Daemon::start_with(&["--max-running", "5"]);
    let api = d.client();
    api.create("w-a").await;

    let mut w = Lines::open(&api, "?prefix=w-").await;
    // First the sprites as they are.
    let first = w.next_state().await;
    assert_eq!(first["name"], "w-a", "{first}");
    assert_eq!(first["status"], "running", "{first}");
    assert!(first.get("type").is_none(), "{first}");
    assert!(first["running_version"].is_string(), "{first}");
    assert!(first["last_running_at"].is_string(), "{first}");
    assert!(first["timestamp"]
        .as_str()
        .expect("timestamp")
        .ends_with('Z'));
    let org = &first["org"];
    assert_eq!(org["name"], "local", "{first}");
    assert_eq!(org["running"], 1, "{first}");
    assert_eq!(org["warm"], 0, "{first}");
    assert_eq!(org["cold"], 0, "{first}");
    assert_eq!(org["running_limit"], 5, "{first}");
    assert!(org["running"].is_u64(), "counts are integers: {first}");

    // A sprite outside the prefix is not shown; one inside is, as it runs.
    api.create("other").await;
    api.create("w-b").await;
    let line = w.next_state().await;
    assert_eq!(line["name"], "w-b", "{line}");
    assert_eq!(line["status"], "running", "{line}");
    assert_eq!(line["org"]["running"], 3, "{line}");

    // Stopped (and started again): each status once, in order.
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites/w-a/upgrade")
        .send()
        .await
        .expect("upgrade");
    assert_eq!(r.status(), 204);
    let line = w.next_state().await;
    assert_eq!(
        (&line["name"], &line["status"]),
        (&"w-a".into(), &"cold".into()),
        "{line}"
    );
    assert!(line.get("running_version").is_none(), "{line}");
    let line = w.next_state().await;
    assert_eq!(
        (&line["name"], &line["status"]),
        (&"w-a".into(), &"running".into()),
        "{line}"
    );

    // Gone.
    api.delete("other").await;
    api.delete("w-b").await;
    let line = w.next_state().await;
    assert_eq!(
        (&line["name"], &line["status"]),
        (&"w-b".into(), &"destroyed".into()),
        "{line}"
    );
    assert_eq!(line["org"]["running"], 1, "{line}");

    // max_results bounds the first lines; without the Accept header the
    // list is the plain JSON list.
    api.create("w-c").await;
    let mut w2 = Lines::open(&api, "?prefix=w-&max_results=1").await;
    assert_eq!(w2.next_state().await["name"], "w-a");
    drop(w2);
    let list = api.get_json("/v1/sprites?prefix=w-").await;
    assert_eq!(list["sprites"].as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(list["has_more"], false);

    // The daemon stops at once, ending the stream, while it is open.
    let pid = d.pid().expect("daemon pid") as i32;
    // SAFETY: a signal to the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let started = std::time::Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.resp.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None) | Err(_)) => break,
            Err(_) => panic!("the stream did not end when the daemon stopped"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_tells_idle_pauses_and_stops() {
    let d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "1s"]);
    let api = d.client();
    api.create("idle").await;
    let mut w = Lines::open(&api, "").await;
    let first = w.next_state().await;
    assert_eq!(
        (&first["name"], &first["status"]),
        (&"idle".into(), &"running".into()),
        "{first}"
    );
    let line = w.next_state().await;
    assert_eq!(line["status"], "warm", "{line}");
    assert_eq!(
        (&line["org"]["running"], &line["org"]["warm"]),
        (&0.into(), &1.into()),
        "{line}"
    );
    let line = w.next_state().await;
    assert_eq!(line["status"], "cold", "{line}");
    assert_eq!(line["org"]["cold"], 1, "{line}");
    // Woken by a request: running again.
    api.sh("idle", "true").await;
    let line = w.next_state().await;
    assert_eq!(line["status"], "running", "{line}");
}
