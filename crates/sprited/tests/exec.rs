//! Exec through the real daemon and agent: framing, ordering, stdin
//! streaming, TTY, signals, sessions, HTTP exec and dropped clients.

mod common;

use std::time::{Duration, Instant};

use common::{collect, Daemon};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::Value;
use sprites_test_support::rss_kib;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_end_to_end() {
    let d = Daemon::start();
    let api = d.client();
    api.create("ex").await;

    // stdout, stderr, exit code, and the session_info first.
    let o = api
        .exec("ex", &["sh", "-c", "echo out; echo err >&2; exit 3"])
        .await;
    assert_eq!(o.out(), "out\n", "{o:?}");
    assert_eq!(o.stderr, b"err\n");
    assert_eq!(o.code, Some(3));
    let info: Value = serde_json::from_str(o.texts.first().expect("session_info")).expect("json");
    assert_eq!(info["type"], "session_info");
    assert_eq!(info["tty"], false);
    // A string, as the Go SDK decodes it.
    assert!(info["session_id"].is_string(), "{info}");

    // The last output of a command that exits at once is never lost.
    for i in 0..200 {
        let o = api.exec("ex", &["echo", "x"]).await;
        assert_eq!((o.out().as_str(), o.code), ("x\n", Some(0)), "run {i}");
    }

    // Env, dir, default user and home; a missing program is 127.
    let o = api
        .exec_with(
            "ex",
            &["sh", "-c", "echo $A:$(pwd):$(id -u):$HOME"],
            "env=A%3Db&dir=%2Ftmp",
            &[],
        )
        .await;
    assert_eq!(o.out(), "b:/tmp:1000:/home/sprite\n");
    let o = api.exec("ex", &["pwd"]).await;
    assert_eq!(o.out(), "/home/sprite\n");
    let o = api.exec("ex", &["no-such-program"]).await;
    assert_eq!(o.code, Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
    let o = api.exec("ex", &["sh", "-c", "kill -9 $$"]).await;
    assert_eq!(o.code, Some(137));

    // 100 MB of stdin streams through without the daemon holding it.
    let pid = d.pid().expect("daemon pid");
    let before = rss_kib(pid);
    let chunk = vec![b'z'; 1 << 20];
    let mut ws = api
        .ws("/v1/sprites/ex/exec?cmd=wc&cmd=-c&stdin=true")
        .await
        .expect("ws");
    let mut peak = before;
    for _ in 0..100 {
        let mut f = vec![0u8];
        f.extend_from_slice(&chunk);
        ws.send(Message::Binary(f.into())).await.expect("stdin");
        peak = peak.max(rss_kib(pid));
    }
    ws.send(Message::Binary(vec![4u8].into()))
        .await
        .expect("eof");
    let o = collect(&mut ws).await;
    assert_eq!(o.out().trim(), (100u64 << 20).to_string());
    assert_eq!(o.code, Some(0));
    assert!(
        peak < before + 48 * 1024,
        "daemon RSS grew from {before} KiB to {peak} KiB while streaming 100 MiB"
    );

    // HTTP POST exec: body is stdin, answer uses the same framing.
    let r = api
        .req(
            Method::POST,
            "/v1/sprites/ex/exec?cmd=tr&cmd=a-z&cmd=A-Z&stdin=true",
        )
        .body("hello http\n")
        .send()
        .await
        .expect("http exec");
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.expect("body");
    assert_eq!(&body[..], b"\x01HELLO HTTP\n\x03\x00");

    // TTY mode: raw bytes, resize, exit as a JSON text frame.
    let mut ws = api
        .ws("/v1/sprites/ex/exec?cmd=sh&tty=true&rows=30&cols=100")
        .await
        .expect("tty ws");
    ws.send(Message::Binary(b"stty size; tty\n".to_vec().into()))
        .await
        .expect("input");
    let mut screen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !screen.contains("/dev/pts/") && Instant::now() < deadline {
        if let Some(Ok(Message::Binary(b))) = ws.next().await {
            screen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    assert!(screen.contains("30 100"), "stty size in {screen:?}");
    ws.send(Message::Text(
        r#"{"type":"resize","cols":120,"rows":40}"#.into(),
    ))
    .await
    .expect("resize");
    ws.send(Message::Binary(b"stty size; exit 5\n".to_vec().into()))
        .await
        .expect("input");
    let mut exit = None;
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Binary(b) => screen.push_str(&String::from_utf8_lossy(&b)),
            Message::Text(t) if t.contains("\"exit\"") => {
                exit = Some(serde_json::from_str::<Value>(&t).expect("json"));
                break;
            }
            _ => {}
        }
    }
    assert!(screen.contains("40 120"), "resized size in {screen:?}");
    assert_eq!(exit.expect("exit frame")["exit_code"], 5);

    // Signals reach the process.
    let mut ws = api
        .ws("/v1/sprites/ex/exec?cmd=sleep&cmd=100")
        .await
        .expect("ws");
    ws.send(Message::Text(r#"{"type":"signal","signal":"TERM"}"#.into()))
        .await
        .expect("signal");
    let o = collect(&mut ws).await;
    assert_eq!(o.code, Some(128 + 15));

    // A TTY session outlives its client, is listed, re-attached with its
    // scrollback, and killed.
    let mut ws = api
        .ws("/v1/sprites/ex/exec?cmd=sh&tty=true")
        .await
        .expect("tty ws");
    let first = ws.next().await.expect("frame").expect("ok");
    let info: Value = match first {
        Message::Text(t) => serde_json::from_str(&t).expect("json"),
        other => panic!("expected session_info, got {other:?}"),
    };
    let id = info["session_id"]
        .as_str()
        .expect("session id is a string")
        .to_string();
    ws.send(Message::Binary(b"echo marker-$((6*7))\n".to_vec().into()))
        .await
        .expect("input");
    let mut seen = String::new();
    while !seen.contains("marker-42") {
        if let Some(Ok(Message::Binary(b))) = ws.next().await {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    drop(ws);
    let sessions: Value = api.get_json("/v1/sprites/ex/exec").await;
    let listed = sessions["sessions"]
        .as_array()
        .expect("array")
        .iter()
        .any(|s| s["id"].as_str() == Some(id.as_str()) && s["tty"] == true);
    assert!(listed, "session {id} in {sessions}");
    let mut ws = api
        .ws(&format!("/v1/sprites/ex/exec/{id}"))
        .await
        .expect("attach");
    let mut replay = String::new();
    while !replay.contains("marker-42") {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => replay.push_str(&String::from_utf8_lossy(&b)),
            Some(Ok(_)) => {}
            other => panic!("attach ended early: {other:?}"),
        }
    }
    drop(ws);
    let r = api
        .req(
            Method::POST,
            &format!("/v1/sprites/ex/exec/{id}/kill?signal=KILL&timeout=5s"),
        )
        .send()
        .await
        .expect("kill");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("ndjson");
    let kinds: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line")["type"].to_string())
        .collect();
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("\"complete\""),
        "{text}"
    );
    let r = api
        .req(Method::POST, &format!("/v1/sprites/ex/exec/{id}/kill"))
        .send()
        .await
        .expect("kill again");
    assert_eq!(r.status(), 410, "a session that ended is gone");
    for never in ["999999999", "abc"] {
        let r = api
            .req(Method::POST, &format!("/v1/sprites/ex/exec/{never}/kill"))
            .send()
            .await
            .expect("kill unknown id");
        assert_eq!(r.status(), 404, "session {never} never existed");
        let body: Value = r.json().await.expect("the Sprites error format");
        assert_eq!(body["error"], "not_found", "{body}");
    }

    // A client that disconnects mid-exec: the daemon lives on, the command
    // is ended after max_run_after_disconnect, and the sprite still works.
    let mut ws = api
        .ws("/v1/sprites/ex/exec?cmd=sh&cmd=-c&cmd=echo%20started%3B%20sleep%20300&max_run_after_disconnect=1s")
        .await
        .expect("ws");
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Binary(b) = m {
            if b.ends_with(b"started\n") {
                break;
            }
        }
    }
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = api.exec("ex", &["ps", "-o", "args"]).await;
        if !o.out().contains("sleep 300") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned command was not ended: {}",
            o.out()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = api.exec("ex", &["echo", "still"]).await;
    assert_eq!(o.out(), "still\n");

    api.delete("ex").await;
}

/// The next text frame of an exec stream; stdout that comes on the way is
/// added to `stdout`.
async fn next_text<S>(ws: &mut S, what: &str, stdout: &mut Vec<u8>) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).expect("json"),
            Ok(Some(Ok(Message::Binary(b)))) => {
                if let Some(data) = b.strip_prefix(&[1u8]) {
                    stdout.extend_from_slice(data);
                }
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("waiting for {what}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_announces_the_ports_its_session_listens_on() {
    let d = Daemon::start();
    let api = d.client();
    api.create("po").await;
    // A listener of another session (detached with setsid) is not this
    // exec's business.
    api.sh(
        "po",
        "setsid busybox nc -ll -p 9999 -e /bin/cat >/dev/null 2>&1 </dev/null & sleep 0.3",
    )
    .await;

    let mut ws = api
        .ws("/v1/sprites/po/exec?cmd=sh&cmd=-c&cmd=busybox%20nc%20-l%20-p%208123%20%3E%2Fdev%2Fnull%3B%20echo%20done%3B%20sleep%201")
        .await
        .expect("ws");
    let mut skipped = Vec::new();
    let info = next_text(&mut ws, "session_info", &mut skipped).await;
    assert_eq!(info["type"], "session_info", "{info}");
    let opened = next_text(&mut ws, "port_opened", &mut skipped).await;
    assert_eq!(opened["type"], "port_opened", "{opened}");
    assert_eq!(opened["port"], 8123, "{opened}");
    // busybox nc listens on every address, IPv6 included.
    assert!(
        opened["address"] == "::" || opened["address"] == "0.0.0.0",
        "{opened}"
    );
    let pid = opened["pid"].as_u64().expect("pid");
    assert!(pid > 1, "{opened}");

    // The listener goes: port_closed, with the pid it was opened by, then
    // the command's output and exit.
    api.sh("po", &format!("kill {pid}")).await;
    let closed = next_text(&mut ws, "port_closed", &mut skipped).await;
    assert_eq!(closed["type"], "port_closed", "{closed}");
    assert_eq!(closed["port"], 8123, "{closed}");
    assert_eq!(closed["pid"], pid, "{closed}");
    let rest = collect(&mut ws).await;
    // Output that came before port_closed, then the rest.
    let mut out = skipped.clone();
    out.extend_from_slice(&rest.stdout);
    assert_eq!(String::from_utf8_lossy(&out), "done\n", "{rest:?}");
    assert_eq!(rest.code, Some(0));
    assert!(
        !rest.texts.iter().any(|t| t.contains("9999")),
        "{:?}",
        rest.texts
    );

    // TTY mode too (the command's own listener, as a text frame).
    let mut ws = api
        .ws("/v1/sprites/po/exec?cmd=busybox&cmd=nc&cmd=-l&cmd=-p&cmd=8124&tty=true")
        .await
        .expect("tty ws");
    let _info = next_text(&mut ws, "session_info", &mut skipped).await;
    let opened = next_text(&mut ws, "port_opened", &mut skipped).await;
    assert_eq!(
        (&opened["type"], &opened["port"]),
        (&Value::from("port_opened"), &Value::from(8124)),
        "{opened}"
    );
    drop(ws);
    api.delete("po").await;
}
