//! The control WebSocket (`/v1/sprites/{name}/control`): many operations on
//! one connection, in both envelopes (`control:`-prefixed as JS and Python
//! send them, bare JSON with URL-encoded args as the Go SDK's filesystem
//! calls and pooled proxy do), against the real daemon; the Go SDK itself
//! is refused (it would hang: see api::control).

mod common;

use std::time::Duration;

use common::Daemon;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(api: &common::Api, name: &str) -> Ws {
    let mut req = api
        .ws_url(&format!("/v1/sprites/{name}/control"))
        .into_client_request()
        .expect("request");
    let h = req.headers_mut();
    h.insert(
        "authorization",
        format!("Bearer {}", api.token).parse().expect("header"),
    );
    tokio_tungstenite::connect_async(req)
        .await
        .expect("control connects")
        .0
}

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("a frame within 30 s")
        .expect("the connection is open")
        .expect("a frame")
}

async fn start(ws: &mut Ws, op: &str, args: Value) {
    let frame = format!(
        "control:{}",
        json!({"type": "op.start", "op": op, "args": args})
    );
    ws.send(Message::Text(frame.into())).await.expect("send");
}

/// What a control exec produced, read as the JS SDK reads it.
#[derive(Debug, Default)]
struct Run {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// From the `0x03` frame (non-TTY) or the `exit` text frame (TTY).
    exit_frame: Option<i64>,
    /// From `op.complete`.
    complete: Option<i64>,
    error: Option<String>,
    texts: Vec<Value>,
}

/// Read one operation to its `op.complete` or `op.error`.
async fn run_to_end(ws: &mut Ws, tty: bool) -> Run {
    let mut run = Run::default();
    loop {
        match next(ws).await {
            Message::Text(t) => {
                if let Some(body) = t.strip_prefix("control:") {
                    let v: Value = serde_json::from_str(body).expect("control JSON");
                    match v["type"].as_str() {
                        Some("op.complete") => {
                            run.complete = v["args"]["exitCode"].as_i64();
                            return run;
                        }
                        Some("op.error") => {
                            run.error = v["args"]["error"].as_str().map(String::from);
                            return run;
                        }
                        other => panic!("unexpected control message {other:?}: {v}"),
                    }
                }
                let v: Value = serde_json::from_str(&t).expect("text frames are JSON");
                if v["type"] == "exit" {
                    run.exit_frame = v["exit_code"].as_i64();
                }
                run.texts.push(v);
            }
            Message::Binary(b) if tty => run.stdout.extend_from_slice(&b),
            Message::Binary(b) => match b.first() {
                Some(1) => run.stdout.extend_from_slice(&b[1..]),
                Some(2) => run.stderr.extend_from_slice(&b[1..]),
                Some(3) => run.exit_frame = b.get(1).map(|c| i64::from(*c)),
                other => panic!("unexpected stream {other:?}"),
            },
            Message::Close(c) => panic!("closed mid-operation: {c:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn many_execs_share_one_connection() {
    let d = Daemon::start();
    let api = d.client();
    api.create("cc1").await;
    let mut ws = connect(&api, "cc1").await;

    // Twenty commands in turn on one connection, each with its own exit.
    for i in 0..20 {
        start(
            &mut ws,
            "exec",
            json!({"cmd": ["sh", "-c", format!("echo out{i}; echo err{i} >&2; exit {}", i % 4)], "stdin": "false"}),
        )
        .await;
        let run = run_to_end(&mut ws, false).await;
        assert_eq!(run.stdout, format!("out{i}\n").as_bytes(), "{run:?}");
        assert_eq!(run.stderr, format!("err{i}\n").as_bytes(), "{run:?}");
        assert_eq!(run.exit_frame, Some(i % 4), "{run:?}");
        assert_eq!(run.complete, Some(i % 4), "{run:?}");
        assert!(
            run.texts.iter().any(|t| t["type"] == "session_info"),
            "{run:?}"
        );
    }

    // Stdin as JS and Python frame it (stream byte 0, EOF 4); env and dir.
    start(
        &mut ws,
        "exec",
        json!({"cmd": ["sh", "-c", "cat; echo \"$GREETING\"; pwd"], "env": ["GREETING=hi there"], "dir": "/tmp", "stdin": true}),
    )
    .await;
    ws.send(Message::Binary(b"\x00piped\n".to_vec().into()))
        .await
        .expect("stdin");
    ws.send(Message::Binary(vec![4u8].into()))
        .await
        .expect("eof");
    let run = run_to_end(&mut ws, false).await;
    assert_eq!(run.stdout, b"piped\nhi there\n/tmp\n", "{run:?}");
    assert_eq!(run.complete, Some(0));

    // TTY, with the resize sent as the JS SDK sends it (binary JSON).
    start(
        &mut ws,
        "exec",
        json!({"cmd": ["sh", "-c", "sleep 0.5; stty size"], "tty": "true", "rows": "24", "cols": "80", "stdin": "true"}),
    )
    .await;
    ws.send(Message::Binary(
        br#"{"type":"resize","cols":101,"rows":33}"#.to_vec().into(),
    ))
    .await
    .expect("resize");
    let run = run_to_end(&mut ws, true).await;
    let shown = String::from_utf8_lossy(&run.stdout);
    assert!(shown.contains("33 101"), "TTY output {shown:?}");
    assert_eq!((run.exit_frame, run.complete), (Some(0), Some(0)));

    // A signal ends a command; the connection goes on.
    start(&mut ws, "exec", json!({"cmd": ["sleep", "30"]})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(Message::Text(
        json!({"type": "signal", "signal": "TERM"})
            .to_string()
            .into(),
    ))
    .await
    .expect("signal");
    let run = run_to_end(&mut ws, false).await;
    assert_eq!(run.complete, Some(143), "{run:?}");

    // What cannot run is an `op.error`, and the connection stays usable.
    start(&mut ws, "exec", json!({})).await;
    let run = run_to_end(&mut ws, false).await;
    assert!(run.error.is_some_and(|e| e.contains("cmd")), "no command");
    start(&mut ws, "nope", json!({})).await;
    let run = run_to_end(&mut ws, false).await;
    assert!(
        run.error.is_some_and(|e| e.contains("unknown operation")),
        "unknown op"
    );
    // Leftovers between operations are ignored: a release, a late EOF.
    ws.send(Message::Text(r#"{"type":"release"}"#.into()))
        .await
        .expect("release");
    ws.send(Message::Binary(vec![4u8].into()))
        .await
        .expect("eof");
    start(&mut ws, "exec", json!({"cmd": ["echo", "still here"]})).await;
    let run = run_to_end(&mut ws, false).await;
    assert_eq!(run.stdout, b"still here\n");

    // Re-attach to a running session through `args.id`.
    let mut plain = api
        .ws("/v1/sprites/cc1/exec?cmd=sh&cmd=-c&cmd=sleep+1;echo+late")
        .await
        .expect("exec ws");
    let info = loop {
        if let Message::Text(t) = next(&mut plain).await {
            break serde_json::from_str::<Value>(&t).expect("json");
        }
    };
    let id = info["session_id"].as_str().expect("id").to_string();
    start(&mut ws, "exec", json!({"id": id})).await;
    let run = run_to_end(&mut ws, false).await;
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("late"),
        "{run:?}"
    );
    assert_eq!(run.complete, Some(0));
    drop(plain);

    ws.send(Message::Close(None)).await.expect("close");
}

#[tokio::test]
async fn bare_envelopes_filesystem_and_proxy() {
    let d = Daemon::start();
    let api = d.client();
    api.create("cc2").await;
    let mut ws = connect(&api, "cc2").await;

    // Exec with `path`, as the Go SDK's envelope carries it.
    start(
        &mut ws,
        "exec",
        json!({"cmd": ["sh", "-c", "wc -c"], "path": "sh", "stdin": "true"}),
    )
    .await;
    ws.send(Message::Binary(b"\x00\x00\x01abc".to_vec().into()))
        .await
        .expect("stdin");
    ws.send(Message::Binary(vec![4u8].into()))
        .await
        .expect("eof");
    let run = run_to_end(&mut ws, false).await;
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "5");
    ws.send(Message::Text(r#"{"type":"release"}"#.into()))
        .await
        .expect("release");

    // Filesystem calls: bare JSON, args URL-encoded, answers bare JSON.
    async fn fs(
        ws: &mut Ws,
        op: &str,
        args: &str,
        data: Option<&[u8]>,
    ) -> (Value, Option<Vec<u8>>) {
        let start = json!({"type": "op.start", "op": op, "args": args});
        ws.send(Message::Text(start.to_string().into()))
            .await
            .expect("send");
        if let Some(d) = data {
            ws.send(Message::Binary(d.to_vec().into()))
                .await
                .expect("data");
        }
        let answer = match next(ws).await {
            Message::Text(t) => serde_json::from_str::<Value>(&t).expect("JSON answer"),
            other => panic!("{op}: {other:?}"),
        };
        if answer.get("error").is_some() {
            // A failure is the answer alone, as the Go SDK reads it.
            return (answer, None);
        }
        let bytes = if op == "fs.read" {
            match next(ws).await {
                Message::Binary(b) => Some(b.to_vec()),
                other => panic!("read bytes: {other:?}"),
            }
        } else {
            None
        };
        match next(ws).await {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("complete");
                assert_eq!(v["type"], "op.complete", "{op}: {v}");
            }
            other => panic!("{op}: {other:?}"),
        }
        (answer, bytes)
    }

    let (w, _) = fs(
        &mut ws,
        "fs.write",
        "path=notes%2Fa+b.txt&workingDir=%2Fhome%2Fsprite&mode=0640",
        Some(b"0123456789"),
    )
    .await;
    assert_eq!(
        (&w["path"], &w["size"], &w["mode"]),
        (
            &json!("/home/sprite/notes/a b.txt"),
            &json!(10),
            &json!("0640")
        ),
        "{w}"
    );
    let (r, bytes) = fs(
        &mut ws,
        "fs.read",
        "path=%2Fhome%2Fsprite%2Fnotes%2Fa+b.txt",
        None,
    )
    .await;
    assert_eq!(bytes.as_deref(), Some(&b"0123456789"[..]), "{r}");
    assert_eq!(r["size"], 10);
    let (r, bytes) = fs(
        &mut ws,
        "fs.read",
        "path=notes%2Fa+b.txt&start=3&end=7",
        None,
    )
    .await;
    assert_eq!(bytes.as_deref(), Some(&b"3456"[..]), "range: {r}");
    let (l, _) = fs(&mut ws, "fs.list", "path=notes", None).await;
    assert_eq!(l["count"], 1, "{l}");
    assert_eq!(l["entries"][0]["name"], "a b.txt", "{l}");
    let (s, _) = fs(&mut ws, "fs.stat", "path=notes%2Fa+b.txt", None).await;
    assert_eq!(
        (&s["size"], &s["mode"]),
        (&json!(10), &json!("0640")),
        "{s}"
    );
    let (c, _) = fs(&mut ws, "fs.chmod", "path=notes%2Fa+b.txt&mode=0600", None).await;
    assert_eq!(c["affected"][0]["mode"], "0600", "{c}");
    // chown needs root: refused as the sprite user, done with asRoot.
    let (e, _) = fs(
        &mut ws,
        "fs.chown",
        "path=notes%2Fa+b.txt&uid=0&gid=0",
        None,
    )
    .await;
    assert_eq!(e["code"], "EPERM", "{e}");
    let (c, _) = fs(
        &mut ws,
        "fs.chown",
        "path=notes%2Fa+b.txt&workingDir=%2Fhome%2Fsprite&uid=0&gid=0&asRoot=true",
        None,
    )
    .await;
    assert_eq!(c["affected"][0]["uid"], 0, "{c}");
    let owner = api
        .sh("cc2", "stat -c %u:%g '/home/sprite/notes/a b.txt'")
        .await;
    assert_eq!(owner.trim(), "0:0");
    let (c, _) = fs(
        &mut ws,
        "fs.copy",
        "source=%2Fhome%2Fsprite%2Fnotes&dest=%2Ftmp%2Fcopied&recursive=true&preserveAttrs=true&asRoot=true",
        None,
    )
    .await;
    assert_eq!(c["copied"][0]["dest"], "/tmp/copied", "{c}");
    let kept = api.sh("cc2", "stat -c %a:%u '/tmp/copied/a b.txt'").await;
    assert_eq!(kept.trim(), "600:0", "attributes preserved");
    let (m, _) = fs(
        &mut ws,
        "fs.rename",
        "source=%2Ftmp%2Fcopied&dest=%2Ftmp%2Fmoved",
        None,
    )
    .await;
    assert_eq!(
        (&m["source"], &m["dest"]),
        (&json!("/tmp/copied"), &json!("/tmp/moved"))
    );
    let (m, _) = fs(
        &mut ws,
        "fs.mkdir",
        "path=%2Ftmp%2Fx%2Fy&parents=true",
        None,
    )
    .await;
    assert_eq!(m["path"], "/tmp/x/y", "{m}");
    let (del, _) = fs(
        &mut ws,
        "fs.delete",
        "path=%2Ftmp%2Fmoved&recursive=true&asRoot=true",
        None,
    )
    .await;
    assert_eq!(del["count"], 2, "{del}");
    let (e, _) = fs(&mut ws, "fs.read", "path=%2Fno%2Fsuch", None).await;
    assert_eq!(
        (&e["code"], &e["path"]),
        (&json!("ENOENT"), &json!("/no/such")),
        "{e}"
    );
    // The connection is in step after an error.
    let (r, bytes) = fs(
        &mut ws,
        "fs.read",
        "path=%2Fhome%2Fsprite%2Fnotes%2Fa+b.txt&asRoot=true",
        None,
    )
    .await;
    assert_eq!(bytes.as_deref(), Some(&b"0123456789"[..]), "{r}");

    // The pooled proxy: a TCP echo server in the sprite, reached twice on
    // the same connection (released in between), then the sprite's side
    // closing ends the connection.
    api.sh(
        "cc2",
        "setsid busybox nc -ll -p 7071 -e /bin/cat >/dev/null 2>&1 </dev/null & sleep 0.3",
    )
    .await;
    for round in 0..2 {
        let hello = json!({"type": "start", "operation": "proxy", "params": {"host": "localhost", "port": 7071, "keep_alive": true}});
        ws.send(Message::Text(hello.to_string().into()))
            .await
            .expect("proxy start");
        let answer = match next(&mut ws).await {
            Message::Text(t) => serde_json::from_str::<Value>(&t).expect("json"),
            other => panic!("{other:?}"),
        };
        assert_eq!(answer["status"], "connected", "{answer}");
        let text = format!("ping {round}\n");
        ws.send(Message::Binary(text.clone().into_bytes().into()))
            .await
            .expect("bytes");
        let mut echoed = Vec::new();
        while echoed.len() < text.len() {
            match next(&mut ws).await {
                Message::Binary(b) => echoed.extend_from_slice(&b),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(echoed, text.as_bytes());
        ws.send(Message::Text(r#"{"type":"release"}"#.into()))
            .await
            .expect("release");
    }
    // The same through the prefixed envelope: released, it ends with
    // `op.complete`.
    start(
        &mut ws,
        "proxy",
        json!({"host": "localhost", "port": "7071"}),
    )
    .await;
    match next(&mut ws).await {
        Message::Text(t) => assert!(t.contains("\"connected\""), "{t}"),
        other => panic!("{other:?}"),
    }
    ws.send(Message::Binary(b"pre\n".to_vec().into()))
        .await
        .expect("bytes");
    match next(&mut ws).await {
        Message::Binary(b) => assert_eq!(b.as_ref(), b"pre\n"),
        other => panic!("{other:?}"),
    }
    ws.send(Message::Text(r#"control:{"type":"release"}"#.into()))
        .await
        .expect("release");
    let run = run_to_end(&mut ws, false).await;
    assert!(run.error.is_none() && run.stdout.is_empty(), "{run:?}");
    let refused =
        json!({"type": "start", "operation": "proxy", "params": {"host": "10.0.0.1", "port": 80}});
    ws.send(Message::Text(refused.to_string().into()))
        .await
        .expect("send");
    match next(&mut ws).await {
        Message::Text(t) => {
            let v: Value = serde_json::from_str(&t).expect("json");
            assert_eq!(v["status"], "error", "{v}");
        }
        other => panic!("{other:?}"),
    }

    // Re-attaching to a session that is not there: `op.error`, and the
    // connection goes on.
    start(&mut ws, "exec", json!({"cmd": ["true"], "id": "999999"})).await;
    let run = run_to_end(&mut ws, false).await;
    assert!(run.error.is_some(), "{run:?}");
    start(&mut ws, "exec", json!({"cmd": ["echo", "on"]})).await;
    assert_eq!(run_to_end(&mut ws, false).await.stdout, b"on\n");
}

#[tokio::test]
async fn the_endpoint_is_authenticated_and_per_sprite() {
    let d = Daemon::start();
    let api = d.client();
    api.create("cc3").await;
    let no_token = reqwest::Client::new()
        .get(format!("{}/v1/sprites/cc3/control", api.url))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("request");
    assert_eq!(no_token.status(), 401);
    // The Go SDK is sent to the plain endpoints (see api::control).
    let mut req = api
        .ws_url("/v1/sprites/cc3/control")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", api.token).parse().expect("header"),
    );
    req.headers_mut()
        .insert("user-agent", "sprites-go-sdk/1.0".parse().expect("header"));
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 404);
            let body = String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("sprites-go"), "{body}");
        }
        other => panic!("expected a 404 for sprites-go, got {other:?}"),
    }
    let unknown = api.ws("/v1/sprites/nobody/control").await;
    match unknown {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected a 404, got {other:?}"),
    }

    // A sprite destroyed under an open connection: its operations fail
    // cleanly.
    let mut ws = connect(&api, "cc3").await;
    api.delete("cc3").await;
    start(&mut ws, "exec", json!({"cmd": ["true"]})).await;
    let run = run_to_end(&mut ws, false).await;
    assert!(run.error.is_some(), "{run:?}");
}

/// A pool's idle connection does not keep its sprite awake, and the next
/// operation on it wakes the sprite.
#[tokio::test]
async fn an_idle_connection_lets_the_sprite_sleep() {
    let d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "2s"]);
    let api = d.client();
    api.create("cc4").await;
    let mut ws = connect(&api, "cc4").await;
    start(&mut ws, "exec", json!({"cmd": ["echo", "a"]})).await;
    assert_eq!(run_to_end(&mut ws, false).await.stdout, b"a\n");
    api.wait_status("cc4", "cold", Duration::from_secs(30))
        .await;
    start(&mut ws, "exec", json!({"cmd": ["echo", "b"]})).await;
    let run = run_to_end(&mut ws, false).await;
    assert_eq!(
        (run.stdout.as_slice(), run.complete),
        (&b"b\n"[..], Some(0))
    );
    assert_eq!(api.status("cc4").await, "running");
}
