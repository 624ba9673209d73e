//! The CLI's pipes: a reader of its output that goes away ends it quietly;
//! a server that hangs up mid-upload gives an error, not a silent death.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::cli::cli_bin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_ends_the_cli_quietly() {
    let d = common::Daemon::start();
    d.client().create("listed").await;
    let home = tempfile::tempdir().expect("home");
    let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let out = Command::new(cli_bin())
        .arg("list")
        .env("HOME", home.path())
        .env("SPRITES_API_URL", &d.url)
        .env("SPRITE_TOKEN", &d.token)
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .expect("run sprite");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "nothing said: {stderr}");
    assert_eq!(out.status.code(), Some(141), "{:?}", out.status);
}

/// A server that answers an upload at once and closes the connection
/// while the client still sends (as sprited does for an unknown sprite).
#[test]
fn a_server_that_hangs_up_mid_upload_gives_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(8) {
            let Ok(mut conn) = conn else { continue };
            let mut head = [0u8; 4096];
            let n = conn.read(&mut head).unwrap_or(0);
            let line = String::from_utf8_lossy(&head[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            log.lock().expect("log").push(line);
            let body = r#"{"error":"not_found","message":"no sprite named gone"}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            // Dropped: closed with the rest of the upload unread.
        }
    });
    let home = tempfile::tempdir().expect("home");
    let mut child = Command::new(cli_bin())
        .args(["cp", "-", "gone:/tmp/big"])
        .env("HOME", home.path())
        .env("SPRITES_API_URL", &url)
        .env("SPRITE_TOKEN", "t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sprite");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen = seen.lock().expect("log").clone();
    assert!(
        seen.iter().any(|l| l.starts_with("PUT ")),
        "the upload was sent: {seen:?}"
    );
    assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
    assert!(stderr.starts_with("error:"), "{stderr}");
}
