//! The daemon's stop as a WebSocket client sees it: every socket, idle or
//! busy, of every kind (control, exec, ports watch, fs watch, proxy), gets
//! a Close 1001 before the process exits, never a cut connection. The JS
//! SDK throws a connection lost without a Close from its idle pooled
//! control connections as an uncaught error, which ends a Node program.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Read until a text frame comes (skipping output frames).
async fn next_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame within 30 s")
        {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("the socket ended before a text frame: {other:?}"),
        }
    }
}

/// What the socket ended with: the Close frame's code, or how it ended
/// without one.
async fn ending(ws: &mut Ws) -> Result<CloseCode, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Err(_) => return Err("still open 15 s after the stop".into()),
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                // Reading on sends our answer to it, as a client would.
                let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                return Ok(f.code);
            }
            Ok(Some(Ok(Message::Close(None)))) => return Err("a Close without a code".into()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("cut: {e}")),
            Ok(None) => return Err("cut: the stream ended without a Close".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_websocket_is_closed_with_1001_when_the_daemon_stops() {
    let mut d = Daemon::start();
    let api = d.client();
    api.create("stop").await;
    api.sh(
        "stop",
        "setsid nc -ll -p 7000 -e /bin/cat >/dev/null 2>&1 </dev/null & sleep 0.2",
    )
    .await;

    let mut sockets: Vec<(String, Ws)> = Vec::new();

    // Idle control connections, as a client's pool keeps them, each after
    // one command.
    for i in 0..16 {
        let mut ws = api.ws("/v1/sprites/stop/control").await.expect("control");
        let start = json!({"type": "op.start", "op": "exec", "args": {"cmd": ["true"]}});
        ws.send(Message::Text(format!("control:{start}").into()))
            .await
            .expect("op.start");
        while !next_text(&mut ws).await.starts_with("control:") {}
        sockets.push((format!("idle control {i}"), ws));
    }
    // A control connection in the middle of an exec.
    let mut ws = api.ws("/v1/sprites/stop/control").await.expect("control");
    let start = json!({"type": "op.start", "op": "exec", "args": {"cmd": ["sleep", "100"]}});
    ws.send(Message::Text(format!("control:{start}").into()))
        .await
        .expect("op.start");
    sockets.push(("control in an exec".into(), ws));
    // A control connection carrying a proxied TCP connection.
    let mut ws = api.ws("/v1/sprites/stop/control").await.expect("control");
    let start = json!({"type": "op.start", "op": "proxy", "args": {"port": "7000"}});
    ws.send(Message::Text(format!("control:{start}").into()))
        .await
        .expect("op.start");
    assert!(next_text(&mut ws).await.contains("connected"));
    sockets.push(("control in a proxy".into(), ws));
    // A plain exec, and a TTY one.
    let ws = api
        .ws("/v1/sprites/stop/exec?cmd=sleep&cmd=100")
        .await
        .expect("exec");
    sockets.push(("exec".into(), ws));
    let mut ws = api
        .ws("/v1/sprites/stop/exec?cmd=sh&tty=true")
        .await
        .expect("tty exec");
    assert!(next_text(&mut ws).await.contains("session_info"));
    sockets.push(("tty exec".into(), ws));
    // A port watch.
    let mut ws = api.ws("/v1/sprites/stop/ports/watch").await.expect("ports");
    assert!(next_text(&mut ws).await.contains("port_list"));
    sockets.push(("ports watch".into(), ws));
    // A filesystem watch.
    let mut ws = api.ws("/v1/sprites/stop/fs/watch").await.expect("fs watch");
    let sub = json!({"type": "subscribe", "paths": ["/tmp"], "recursive": false});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .expect("subscribe");
    assert!(next_text(&mut ws).await.contains("subscribed"));
    sockets.push(("fs watch".into(), ws));
    // The proxy endpoint.
    let mut ws = api.ws("/v1/sprites/stop/proxy").await.expect("proxy");
    ws.send(Message::Text(r#"{"host":"localhost","port":7000}"#.into()))
        .await
        .expect("init");
    assert!(next_text(&mut ws).await.contains("connected"));
    sockets.push(("proxy".into(), ws));

    let pid = d.pid().expect("daemon pid") as i32;
    let log_mark = d.log_mark();
    let stopped = Instant::now();
    // SAFETY: a signal to the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let endings =
        futures_util::future::join_all(sockets.iter_mut().map(|(_, ws)| ending(ws))).await;
    let wrong: Vec<String> = sockets
        .iter()
        .zip(&endings)
        .filter(|(_, e)| !matches!(e, Ok(CloseCode::Away)))
        .map(|((what, _), e)| format!("{what}: {e:?}"))
        .collect();
    assert!(wrong.is_empty(), "not closed with 1001: {wrong:#?}");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    // Each client answers its Close (tungstenite does on reading it), and
    // the daemon then exits promptly, having waited for none in vain.
    drop(sockets);
    assert!(
        d.wait_exit(Duration::from_secs(10)),
        "the daemon did not exit"
    );
    let log = d.log();
    assert!(
        !log[log_mark.min(log.len())..].contains("WebSockets still open"),
        "{log}"
    );
    assert!(log.contains("stopping; sprites keep running"), "{log}");
    // The sprites kept running: the next daemon finds them.
    d.spawn();
    assert_eq!(api.sh("stop", "echo back").await, "back\n");
}
