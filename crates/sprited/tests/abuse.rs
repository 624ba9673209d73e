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
    let log = d.pool_dir().join("sprites").join(&id).join("agent.log");
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

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Idle and slowloris connections to the API are closed after the
/// header-read timeout.
#[tokio::test]
async fn idle_and_slow_clients_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Daemon::start_with(&["--header-read-timeout", "1s"]);
    let mut idle = tokio::net::TcpStream::connect(&d.addr)
        .await
        .expect("connect");
    let mut slow = tokio::net::TcpStream::connect(&d.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /v1/sprites HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    for (what, s) in [("idle", &mut idle), ("slow", &mut slow)] {
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the {what} connection is still open after 10 s"
        );
    }
    // A real client is served.
    let api = d.client();
    assert!(api.get_json("/v1/sprites").await["sprites"].is_array());
}

/// Connections held open to `/.sprite/api.sock` take at most the sprite's
/// share of the daemon's descriptors; the API and other sprites go on.
#[tokio::test]
async fn a_sprite_cannot_take_the_daemons_descriptors() {
    let d = Daemon::start_with(&["--header-read-timeout", "2s"]);
    let api = d.client();
    let made = api.create("greedy").await;
    api.create("bystander").await;
    let id = made["id"].as_str().expect("id");
    let sock = d
        .data_dir
        .join("sprites")
        .join(id)
        .join("run")
        .join("api.sock");
    let pid = d.pid().expect("daemon pid");
    let before = open_fds(pid);
    let mut held = Vec::new();
    for _ in 0..120 {
        match tokio::net::UnixStream::connect(&sock).await {
            Ok(s) => held.push(s),
            Err(e) => panic!("connect {}: {e}", sock.display()),
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let during = open_fds(pid);
    assert!(
        during < before + 32 + 16,
        "the daemon holds {during} descriptors with 120 connections open to one sprite's socket ({before} before)"
    );
    // The API answers, and another sprite runs commands.
    let t = std::time::Instant::now();
    assert!(api.get_json("/v1/sprites").await["sprites"].is_array());
    assert_eq!(api.sh("bystander", "echo fine").await.trim(), "fine");
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    // Idle ones are closed, and the sprite's own calls get through again.
    drop(held);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let out = api
        .exec("greedy", &["sprite-env", "checkpoints", "list"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
}

/// The daemon's soft limit on open files, and its hard one (`prlimit`).
fn nofile(pid: u32) -> (u64, u64) {
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            "--nofile",
            "--raw",
            "--noheadings",
            "--output=SOFT,HARD",
        ])
        .output()
        .expect("prlimit (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(v.len(), 2, "prlimit said {text:?}");
    (v[0], v[1])
}

fn set_nofile(pid: u32, soft: u64, hard: u64) {
    let st = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={soft}:{hard}"),
        ])
        .status()
        .expect("prlimit");
    assert!(st.success());
}

/// Issue 19, item 9: while the daemon itself cannot open a descriptor, a
/// request to a healthy sprite fails with a clear 503 and the sprite is
/// left alone: not restarted (its processes live on), not marked cold
/// while it runs, and served normally once the daemon has descriptors again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_own_fd_shortage_is_not_the_sprites_fault() {
    let d = Daemon::start();
    let api = d.client();
    api.create("bystander").await;
    let pid = api
        .sh(
            "bystander",
            "(sleep 100000 >/dev/null 2>&1 & echo $! > /tmp/bg.pid); sleep 0.2; cat /tmp/bg.pid",
        )
        .await;
    assert!(!pid.trim().is_empty());
    // One kept-alive connection to the API, made while descriptors are
    // free (its answer read whole, so that it goes back to the pool).
    let exec = || async {
        let r = api
            .req(reqwest::Method::POST, "/v1/sprites/bystander/exec?cmd=true")
            .timeout(std::time::Duration::from_secs(20))
            .send()
            .await
            .expect("the kept-alive connection answers");
        let status = r.status();
        (status, r.text().await.unwrap_or_default())
    };
    let (status, body) = exec().await;
    assert!(status.is_success(), "{body}");

    let daemon = d.pid().expect("daemon pid");
    let (soft, hard) = nofile(daemon);
    // Below what it holds open: every new descriptor fails with EMFILE.
    // Put back however the test ends.
    struct Restore(u32, u64, u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            set_nofile(self.0, self.1, self.2);
        }
    }
    let restore = Restore(daemon, soft, hard);
    set_nofile(daemon, 8, hard);
    let (status, body) = exec().await;
    drop(restore);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("file descriptors"), "{body}");

    // Nothing happened to the sprite.
    assert_eq!(api.status("bystander").await, "running");
    let alive = api
        .sh("bystander", "kill -0 $(cat /tmp/bg.pid) && echo alive")
        .await;
    assert_eq!(alive.trim(), "alive", "the sprite was restarted");
    assert!(
        !d.log().contains("restarting the sprite"),
        "the daemon blamed the sprite:\n{}",
        d.log()
    );
    api.delete("bystander").await;
}

/// Issue 19, item 1: a sprite keeps at most `--max-checkpoints`
/// checkpoints (checkpoints hold on to everything rewritten since).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_per_sprite_are_capped() {
    let d = Daemon::start_with(&["--max-checkpoints", "3"]);
    let api = d.client();
    api.create("hoarder").await;
    let have = api.get_json("/v1/sprites/hoarder/checkpoints").await;
    let have = have.as_array().map_or(0, |a| a.len());
    let mut made = Vec::new();
    for _ in have..3 {
        made.push(api.checkpoint("hoarder", None).await);
    }
    let (status, lines) = api
        .post_ndjson("/v1/sprites/hoarder/checkpoint", None)
        .await;
    assert_eq!(status, 429, "{lines:?}");
    assert_eq!(lines[0]["error"], "checkpoint_limit_exceeded", "{lines:?}");
    assert!(
        lines[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("delete some")),
        "{lines:?}"
    );
    // Deleting one (not the current one, the last made) makes room for one.
    let gone = made.first().expect("one made").clone();
    let r = api
        .req(
            reqwest::Method::DELETE,
            &format!("/v1/sprites/hoarder/checkpoints/{gone}"),
        )
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success(), "{}", r.status());
    api.checkpoint("hoarder", None).await;
    api.delete("hoarder").await;
}

/// Bytes the disk under `path` has free.
fn disk_free(path: &std::path::Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    st.blocks_available() as u64 * st.fragment_size() as u64
}

/// Issue 19, item 1: the free space that counts is the host disk's under
/// the (sparse, far larger) pool image: below `--min-free-gb` creates and
/// checkpoints are refused with 507 and a message that says why, while a
/// running sprite goes on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_under_the_pool_keeps_its_reserve() {
    let mut d = Daemon::start();
    let api = d.client();
    api.create("tenant").await;
    // A reserve just above what the host disk has free now (the pool
    // itself, a sparse image, has far more).
    let free_gb = disk_free(&d.data_dir) >> 30;
    let reserve = (free_gb + 1).to_string();
    d.extra_args.extend(["--min-free-gb".to_string(), reserve]);
    d.restart();
    let api = d.client();
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites")
        .json(&serde_json::json!({ "name": "newcomer" }))
        .send()
        .await
        .expect("create");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("reserve"), "{body}");
    let (status, lines) = api.post_ndjson("/v1/sprites/tenant/checkpoint", None).await;
    assert_eq!(status, 507, "{lines:?}");
    // The running sprite is untouched and writes as before.
    assert_eq!(
        api.sh("tenant", "echo fine > /home/sprite/f && cat /home/sprite/f")
            .await,
        "fine\n"
    );
    api.delete("tenant").await;
}

/// Blocks the file at `path` takes on its disk.
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("stat").blocks() * 512
}

/// Waits until `path` takes at most `at_most` bytes on its disk. Blocks a
/// sprite deleted stay taken until the replicator's next snapshot drops
/// the clone it kept of the last one (at most `--replicate-every`, 30 s,
/// after the change): hence the minute and more.
async fn allocation_falls_to(path: &std::path::Path, at_most: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(75);
    while allocated(path) > at_most {
        assert!(
            std::time::Instant::now() < deadline,
            "{} still takes {} MiB (wanted at most {} MiB)",
            path.display(),
            allocated(path) >> 20,
            at_most >> 20
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Issue 19, item 1: data deleted in a sprite, and a destroyed sprite with
/// its checkpoints, give their space back to the host's disk (the pool
/// image is sparse; without discards it only ever grows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_data_is_given_back_to_the_host_disk() {
    let d = Daemon::start();
    let api = d.client();
    let pool = d.data_dir.join("pool.img");
    api.create("spender").await;
    let base = allocated(&pool);
    let out = api
        .sh(
            "spender",
            "head -c 300000000 /dev/urandom > /home/sprite/big && sync && echo ok",
        )
        .await;
    assert_eq!(out, "ok\n");
    let grown = allocated(&pool);
    assert!(grown > base + (250 << 20), "{base} → {grown}");
    // Deleted inside: back to about where it was.
    let out = api
        .sh("spender", "rm /home/sprite/big && sync && echo ok")
        .await;
    assert_eq!(out, "ok\n");
    allocation_falls_to(&pool, base + (50 << 20)).await;

    // Written again, checkpointed, rewritten (the checkpoint keeps the
    // first copy): the sprite and its checkpoint go with a destroy.
    api.sh(
        "spender",
        "head -c 200000000 /dev/urandom > /home/sprite/big && sync",
    )
    .await;
    api.checkpoint("spender", None).await;
    api.sh(
        "spender",
        "head -c 200000000 /dev/urandom > /home/sprite/big && sync",
    )
    .await;
    assert!(allocated(&pool) > base + (350 << 20));
    api.delete("spender").await;
    allocation_falls_to(&pool, base + (50 << 20)).await;
}

/// Issue 19, item 1: a sprite's checkpoints count against its space: its
/// volume's size and `--checkpoint-space` percent more, blocks its volume
/// and checkpoints share counted once. Over it, a checkpoint answers 507
/// before anything is streamed; deleting one makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_count_against_the_sprites_space() {
    let d = Daemon::start_with(&["--checkpoint-space", "50"]);
    let api = d.client();
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites")
        .json(&serde_json::json!({"name": "saver", "config": {"storage_gb": 1}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    // Each round rewrites the same 560 MiB: the checkpoint before keeps the
    // old blocks, so the sprite holds 560 MiB more each time.
    let rewrite = "dd if=/dev/zero of=/home/sprite/big bs=1M count=560 conv=notrunc,fsync 2>/dev/null && echo ok";
    let mut made = Vec::new();
    for round in 0..2 {
        assert_eq!(api.sh("saver", rewrite).await, "ok\n", "round {round}");
        made.push(api.checkpoint("saver", None).await);
    }
    // About 1.64 GiB held of a 1.5 GiB quota: refused.
    assert_eq!(api.sh("saver", rewrite).await, "ok\n");
    let (status, lines) = api.post_ndjson("/v1/sprites/saver/checkpoint", None).await;
    assert_eq!(status, 507, "{lines:?}");
    let message = lines[0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("delete checkpoints"), "{message}");
    // The oldest checkpoint's blocks go with it: room again.
    let r = api
        .req(
            reqwest::Method::DELETE,
            &format!("/v1/sprites/saver/checkpoints/{}", made[0]),
        )
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success(), "{}", r.status());
    api.checkpoint("saver", None).await;
    api.delete("saver").await;
}
