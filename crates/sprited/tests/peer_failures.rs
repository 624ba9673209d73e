//! Issue 19: the failures users report on other sandbox services, each
//! tried here as its report tells it:
//! - resume after pause answers 404 or 500 (E2B #582, #736);
//! - changes lost after pause and resume (E2B #884);
//! - sandboxes gone after an orchestrator restart (E2B infra#2041);
//! - a sandbox stuck in error with no way back (Daytona #2490).

mod common;

use std::process::Command;
use std::time::Duration;

use common::Daemon;

/// Reads a file through the filesystem API: (status, body).
async fn fs_read(api: &common::Api, name: &str, path: &str) -> (u16, String) {
    let r = api
        .req(
            reqwest::Method::GET,
            &format!("/v1/sprites/{name}/fs/read?path={path}"),
        )
        .send()
        .await
        .expect("fs read");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Runs `cmd` through the plain HTTP exec: (status, body).
async fn http_exec(api: &common::Api, name: &str, args: &[&str]) -> (u16, String) {
    let query: Vec<String> = args
        .iter()
        .map(|a| format!("cmd={}", urlencode(a)))
        .collect();
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v1/sprites/{name}/exec?{}", query.join("&")),
        )
        .send()
        .await
        .expect("exec");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every way in wakes a paused (warm) and a stopped (cold) sprite, and
/// everything written before the pause is there after it: each write is
/// checked after every later pause, through every door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_pause_answers_and_loses_nothing() {
    let d = Daemon::start_with(&["--idle-warm", "500ms", "--idle-cold", "1s"]);
    let api = d.client();
    api.create("napper").await;
    let mut written: Vec<String> = Vec::new();
    for round in 0..3 {
        for state in ["warm", "cold"] {
            // Written (no sync: an acknowledged exec is the promise).
            let name = format!("f{round}-{state}");
            api.sh("napper", &format!("echo {name} > /home/sprite/{name}"))
                .await;
            written.push(name);
            api.wait_status("napper", state, Duration::from_secs(15))
                .await;
            // Woken by a different door each time.
            let first = &written[0];
            let (status, body) = match (round, state) {
                (0, _) => {
                    http_exec(&api, "napper", &["cat", &format!("/home/sprite/{first}")]).await
                }
                (1, _) => fs_read(&api, "napper", &format!("/home/sprite/{first}")).await,
                _ => (
                    200,
                    api.sh("napper", &format!("cat /home/sprite/{first}")).await,
                ),
            };
            assert_eq!(status, 200, "resume from {state} (round {round}): {body}");
            assert!(
                body.contains(first.as_str()),
                "{state}, round {round}: {body}"
            );
            let all = api
                .sh("napper", "cat /home/sprite/f* | sort | tr '\\n' ' '")
                .await;
            let mut want = written.clone();
            want.sort();
            assert_eq!(all.trim(), want.join(" "), "lost after {state}");
        }
    }
}

/// The daemon killed (SIGKILL, no goodbye) with sprites running, warm and
/// cold: all are there after it comes back, in the states they were in,
/// the running one's processes still running, and each answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprites_outlive_an_orchestrator_restart() {
    let mut d = Daemon::start_with(&["--idle-warm", "3s", "--idle-cold", "6s"]);
    let api = d.client();
    for n in ["keeps-running", "goes-warm", "goes-cold"] {
        api.create(n).await;
        api.sh(n, &format!("echo {n} > /home/sprite/who")).await;
    }
    api.wait_status("goes-cold", "cold", Duration::from_secs(30))
        .await;
    api.sh(
        "keeps-running",
        "(sleep 100000 >/dev/null 2>&1 & echo $! > /tmp/bg.pid); sleep 0.2",
    )
    .await;
    api.sh("goes-warm", "true").await;
    api.wait_status("goes-warm", "warm", Duration::from_secs(10))
        .await;
    api.sh("keeps-running", "true").await;
    let warm_id = api.id_of("goes-warm").await;
    let running_id = api.id_of("keeps-running").await;
    d.kill9();
    d.spawn();
    let api = d.client();
    assert_eq!(d.runc_state(&running_id), "running");
    assert_eq!(api.status("keeps-running").await, "running");
    assert_eq!(d.runc_state(&warm_id), "paused");
    assert_eq!(api.status("goes-warm").await, "warm");
    assert_eq!(api.status("goes-cold").await, "cold");
    let api = d.client();
    let listed = api.get_json("/v1/sprites").await;
    let names: Vec<&str> = listed["sprites"]
        .as_array()
        .expect("sprites")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for n in ["keeps-running", "goes-warm", "goes-cold"] {
        assert!(names.contains(&n), "{n} gone after the restart: {names:?}");
        assert_eq!(api.sh(n, "cat /home/sprite/who").await, format!("{n}\n"));
    }
    assert_eq!(
        api.sh("keeps-running", "kill -0 $(cat /tmp/bg.pid) && echo alive")
            .await,
        "alive\n"
    );
}

/// A sprite whose start fails is in error, says why, and has every way
/// back: it can be destroyed as it is, and once the cause is gone the next
/// request starts it, its files intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sprite_in_error_is_never_stuck() {
    let d = Daemon::start_with(&["--idle-warm", "300ms", "--idle-cold", "300ms"]);
    let api = d.client();
    for n in ["broken", "doomed"] {
        api.create(n).await;
        api.sh(n, "echo intact > /home/sprite/f").await;
        api.wait_status(n, "cold", Duration::from_secs(15)).await;
    }
    // Take away what every start needs: the agent binary.
    let bin = d.data_dir.join("bin");
    let agent = std::fs::read_dir(&bin)
        .expect("bin dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sprite-agent"))
        })
        .expect("the installed agent");
    let aside = bin.join("agent-aside");
    std::fs::rename(&agent, &aside).expect("move the agent aside");
    struct PutBack(std::path::PathBuf, std::path::PathBuf);
    impl Drop for PutBack {
        fn drop(&mut self) {
            let _ = std::fs::rename(&self.0, &self.1);
        }
    }
    let put_back = PutBack(aside, agent);

    for n in ["broken", "doomed"] {
        let (status, body) = http_exec(&api, n, &["true"]).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("failed to start"), "{body}");
        let info = api.get_json(&format!("/v1/sprites/{n}")).await;
        assert_eq!(info["status"], "error", "{info}");
    }
    // Destroyed as it is.
    api.delete("doomed").await;
    let r = api
        .req(reqwest::Method::GET, "/v1/sprites/doomed")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);

    // The cause gone, the next request brings it back with its files.
    drop(put_back);
    let (status, body) = http_exec(&api, "broken", &["cat", "/home/sprite/f"]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("intact"), "{body}");
    assert_eq!(api.status("broken").await, "running");
    api.delete("broken").await;
}

/// A sandbox killed under the daemon (its init gone, from outside) is
/// noticed on the next request and started again, files intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_killed_under_the_daemon_comes_back() {
    let d = Daemon::start();
    let api = d.client();
    api.create("victim").await;
    api.sh("victim", "echo intact > /home/sprite/f; sync").await;
    let id = api.id_of("victim").await;
    d.kill_sandbox(&id);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.runc_state(&id) == "running" {
        assert!(std::time::Instant::now() < deadline, "the sandbox lives on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(api.sh("victim", "cat /home/sprite/f").await, "intact\n");
    assert_eq!(api.status("victim").await, "running");
    api.delete("victim").await;
}

/// A request that reached a sandbox as it died (connected, sent, never
/// answered: the agent's listener closed under it) runs in the sprite
/// started again, rather than failing with a reset connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_caught_by_a_dying_sandbox_runs_after_the_restart() {
    let d = Daemon::start();
    let api = d.client();
    api.create("caught").await;
    api.sh("caught", "echo intact > /home/sprite/f; sync").await;
    let id = api.id_of("caught").await;
    let init = d.init_pid(&id).to_string();
    // Stopped, the agent takes no connection off its listener: the next
    // request waits in its queue until the kill closes it.
    let stop = Command::new("kill").args(["-STOP", &init]).status();
    assert!(stop.expect("kill -STOP").success());
    let pending = {
        let api = d.client();
        tokio::spawn(async move { http_exec(&api, "caught", &["cat", "/home/sprite/f"]).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pending.is_finished(),
        "the exec was answered by a stopped agent"
    );
    let kill = Command::new("kill").args(["-KILL", &init]).status();
    assert!(kill.expect("kill -KILL").success());
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the exec hangs")
        .expect("exec task");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("intact"), "{body}");
    assert_eq!(api.status("caught").await, "running");
    api.delete("caught").await;
}
