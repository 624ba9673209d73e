//! The agent binary is also `sprite-env`: called by that name (as through
//! the `/.sprite/bin/sprite-env` mount) or as `sprite-agent env`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::TempDir;
use sprites_api::checkpoint::Checkpoint;
use sprites_test_support::unix_http::UnixHttpServer;
use tokio::sync::mpsc;

const AGENT: &str = env!("CARGO_BIN_EXE_sprite-agent");

/// A `sprite-env` symlink to the agent binary in `dir`.
fn sprite_env_in(dir: &Path) -> PathBuf {
    let link = dir.join("sprite-env");
    std::os::unix::fs::symlink(AGENT, &link).expect("symlink");
    link
}

fn run(program: &Path, args: &[&str], socket: &Path) -> Output {
    Command::new(program)
        .args(args)
        .env("SPRITE_API_SOCK", socket)
        .env_remove("SPRITE_AGENT_FD")
        .stdin(Stdio::null())
        .output()
        .expect("run sprite-env")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The in-sprite API, just enough of it: a list, and a restore that says
/// one line and then keeps the stream open (the sprite restarts under the
/// caller).
fn serve() -> UnixHttpServer {
    UnixHttpServer::start(
        Router::new()
            .route("/v1/checkpoints", get(list))
            .route("/v1/checkpoints/{id}/restore", post(restore)),
    )
}

async fn list(headers: HeaderMap) -> Json<Vec<Checkpoint>> {
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    Json(vec![Checkpoint {
        id: "v0".into(),
        create_time: "2026-01-05T10:30:00Z".into(),
        source_id: None,
        history: Vec::new(),
        comment: Some(format!("host={}", host.unwrap_or("-"))),
        is_auto: None,
        is_current: Some(true),
    }])
}

async fn restore() -> Response {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let _ = tx
            .send(Ok(Bytes::from_static(
                b"{\"type\":\"info\",\"data\":\"stopping the sprite\"}\n",
            )))
            .await;
        // Never finish: the caller is killed first, as in a real sprite.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(tx);
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream))
        .expect("response")
}

#[test]
fn called_sprite_env_lists_checkpoints() {
    let dir = TempDir::new("env-list");
    let server = serve();
    let socket = server.socket();
    let out = run(&sprite_env_in(dir.path()), &["checkpoints", "list"], socket);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "  ID  CREATED               COMMENT\n* v0  2026-01-05T10:30:00Z  host=sprite\n"
    );
    let out = run(Path::new(AGENT), &["env", "checkpoints", "list"], socket);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("* v0"));
}

#[test]
fn restore_output_arrives_before_the_caller_is_killed() {
    let dir = TempDir::new("env-restore");
    let server = serve();
    let socket = server.socket();
    let mut child = Command::new(sprite_env_in(dir.path()))
        .args(["checkpoints", "restore", "v0"])
        .env("SPRITE_API_SOCK", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sprite-env");
    let stdout = child.stdout.take().expect("stdout");
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = line_tx.send(line);
    });
    let line = line_rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        line.expect("a progress line while the stream is open"),
        "stopping the sprite\n"
    );
}

#[test]
fn help_usage_and_no_socket() {
    let dir = TempDir::new("env-cli");
    let env = sprite_env_in(dir.path());
    let missing = dir.path().join("missing.sock");

    let out = run(&env, &["--help"], &missing);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("Usage: sprite-env"), "{help}");
    assert!(help.contains("checkpoints"), "{help}");

    let out = run(
        Path::new(AGENT),
        &["env", "checkpoints", "--help"],
        &missing,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("restore"));

    let out = run(&env, &["checkpoints", "restore", "latest"], &missing);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("checkpoint ids look like v3"));

    let out = run(&env, &["checkpoints", "list"], &missing);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "sprite-env: cannot reach {}: No such file or directory \
             (is this running inside a sprite?)\n",
            missing.display()
        )
    );

    // The agent itself still refuses to start without a socket.
    let out = run(Path::new(AGENT), &[], &missing);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("usage: sprite-agent"));
}
