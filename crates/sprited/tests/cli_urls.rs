//! `sprite url`, `sprite url update --auth` and `sprite proxy` against the
//! real daemon.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::cli::cli_bin;
use common::Daemon;
use sprites_test_support::free_port;
use sprites_test_support::ready::connect_when_listening;

/// Kills the `sprite proxy` process (by its pid) when the test ends.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sprite_url_and_sprite_proxy() {
    let d = Daemon::start();
    let api = d.client();
    api.create("cp").await;
    let home = tempfile::tempdir().expect("home");
    let cli = |args: &[&str]| {
        Command::new(cli_bin())
            .args(args)
            .env("HOME", home.path())
            .env_remove("SPRITE_TOKEN")
            .env_remove("SPRITES_API_URL")
            .stdin(Stdio::null())
            .output()
            .expect("run sprite")
    };
    assert!(cli(&["login", &d.url, "--token", &d.token])
        .status
        .success());

    let o = cli(&["url", "-s", "cp"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("http://cp.sprites.localhost:") && out.contains("Auth: sprite"),
        "{out}"
    );
    let o = cli(&["url", "update", "--auth", "public", "-s", "cp"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Auth: public"));
    assert_eq!(
        api.get_json("/v1/sprites/cp").await["url_settings"]["auth"],
        "public"
    );
    let o = cli(&["url", "update", "--auth", "everyone", "-s", "cp"]);
    assert!(!o.status.success());

    // An echo server inside on 7000; `sprite proxy LOCAL:7000` forwards to it.
    api.sh(
        "cp",
        "setsid nc -ll -p 7000 -e /bin/cat >/dev/null 2>&1 </dev/null & sleep 0.2",
    )
    .await;
    let local = free_port();
    let mapping = format!("{local}:7000");
    let child = Command::new(cli_bin())
        .args(["proxy", &mapping, "-s", "cp"])
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sprite proxy");
    let _proxy = Proc(child);
    // An echo: a self-connection would pass for the proxy, so it must not count.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], local));
    let mut conn = connect_when_listening(addr, Duration::from_secs(20)).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for msg in [&b"one\n"[..], b"two two\n"] {
        conn.write_all(msg).await.expect("write");
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(got, msg);
    }
    // A second connection at the same time gets its own.
    let mut other = tokio::net::TcpStream::connect(("127.0.0.1", local))
        .await
        .expect("connect");
    other.write_all(b"three\n").await.expect("write");
    let mut got = vec![0u8; 6];
    tokio::time::timeout(Duration::from_secs(10), other.read_exact(&mut got))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(got, b"three\n");
    api.delete("cp").await;
}
