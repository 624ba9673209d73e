//! Issue 19: what a process inside a sprite can make the daemon's host
//! keep. Each test fails without its fix.

mod common;

use common::Daemon;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// Root inside sends SIGHUP to PID 1 in a loop, and a client sends a huge
/// signal name: the sprite's `agent.log` on the host stays small.
#[tokio::test]
async fn the_agent_log_stays_bounded() {
    let d = Daemon::start();
    let api = d.client();
    let made = api.create("noisy").await;
    let id = made["id"].as_str().expect("id").to_string();
    let log = d.data_dir.join("sprites").join(&id).join("agent.log");
    let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let out = api
        .exec_with(
            "noisy",
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 3000 ]; do kill -HUP 1; i=$((i+1)); done",
            ],
            "user=root",
            &[],
        )
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    // A 100 KB signal name over the exec WebSocket.
    let mut ws = api
        .ws("/v1/sprites/noisy/exec?cmd=sleep&cmd=2")
        .await
        .expect("exec ws");
    let name = "X".repeat(100_000);
    let frame = serde_json::json!({"type": "signal", "signal": name}).to_string();
    ws.send(Message::Text(frame.into())).await.expect("signal");
    let done = common::collect(&mut ws).await;
    assert_eq!(done.code, Some(0), "the bad signal was ignored: {done:?}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let grown = after.saturating_sub(before);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        grown < 8 * 1024,
        "agent.log grew {grown} bytes for 3000 SIGHUPs and a long signal name:\n{}",
        &text[text.len().saturating_sub(2000)..]
    );
    assert!(text.contains("ignoring SIGHUP"), "{text}");
    assert!(
        !text.contains(&"X".repeat(1000)),
        "a long signal name was logged whole"
    );
}
