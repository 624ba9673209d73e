//! Scale to zero: running → warm (frozen) → cold (stopped) and back, with
//! short `--idle-warm`/`--idle-cold` so the whole cycle runs in seconds.

mod common;

use std::time::{Duration, Instant};

use common::{collect, Daemon};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

fn rootfs_mounted(d: &Daemon, id: &str) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let rootfs = d.data_dir.join("sprites").join(id).join("rootfs");
    mounts.contains(rootfs.to_str().expect("utf8"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_warm_cold_and_back() {
    let d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "2s"]);
    let api = d.client();
    api.create("zz").await;
    let id = api.id_of("zz").await;
    api.sh("zz", "echo kept > /home/sprite/f").await;
    // A process that counts while it runs.
    api.sh(
        "zz",
        "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done' \
         >/dev/null 2>&1 < /dev/null & sleep 0.2",
    )
    .await;
    assert_eq!(api.status("zz").await, "running");

    // Warm: every process frozen, memory kept.
    api.wait_status("zz", "warm", Duration::from_secs(10)).await;
    assert_eq!(d.runc_state(&id), "paused");
    assert!(rootfs_mounted(&d, &id));

    // Any exec resumes it, and the counter carries on where it was.
    let t = Instant::now();
    let first: u64 = api
        .sh("zz", "cat /tmp/count")
        .await
        .trim()
        .parse()
        .expect("count");
    let resumed_in = t.elapsed();
    assert_eq!(api.status("zz").await, "running");
    assert_eq!(d.runc_state(&id), "running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later: u64 = api
        .sh("zz", "cat /tmp/count")
        .await
        .trim()
        .parse()
        .expect("count");
    assert!(
        later > first,
        "the process did not continue: {first} then {later}"
    );
    assert!(
        resumed_in < Duration::from_secs(2),
        "resume took {resumed_in:?}"
    );

    // Cold: no process, nothing mounted; the next request boots it and
    // the files are there (the counting process is not: it was stopped).
    api.wait_status("zz", "warm", Duration::from_secs(10)).await;
    api.wait_status("zz", "cold", Duration::from_secs(10)).await;
    assert_eq!(d.runc_state(&id), "absent");
    assert!(!rootfs_mounted(&d, &id));
    assert_eq!(api.sh("zz", "cat /home/sprite/f").await, "kept\n");
    assert_eq!(api.status("zz").await, "running");
    let ps = api.sh("zz", "ps -o args | grep -c '[c]ount' || true").await;
    assert_eq!(ps.trim(), "0", "the counting process survived cold: {ps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_keeps_a_sprite_awake() {
    let d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "60s"]);
    let api = d.client();
    api.create("busy").await;

    // An open exec keeps it running for as long as it lasts.
    let long = api.exec("busy", &["sleep", "2.5"]);
    let watch = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let until = Instant::now() + Duration::from_millis(2000);
        while Instant::now() < until {
            assert_eq!(api.status("busy").await, "running", "paused under an exec");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (out, ()) = tokio::join!(long, watch);
    assert_eq!(out.code, Some(0));
    api.wait_status("busy", "warm", Duration::from_secs(5))
        .await;

    // A detached TTY session whose command still runs keeps it awake too.
    let mut ws = api
        .ws("/v1/sprites/busy/exec?cmd=sh&tty=true&stdin=true")
        .await
        .expect("console");
    ws.send(Message::Binary(b"echo attached\n".to_vec().into()))
        .await
        .expect("type");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(ws);
    let sessions = api.get_json("/v1/sprites/busy/exec").await;
    let sid = sessions["sessions"][0]["id"]
        .as_str()
        .expect("a session id")
        .to_string();
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert_eq!(
            api.status("busy").await,
            "running",
            "paused with a live session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v1/sprites/busy/exec/{sid}/kill?signal=SIGKILL"),
        )
        .send()
        .await
        .expect("kill");
    let code = r.status();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(code, 200, "kill {sid}: {body} (sessions: {sessions})");
    api.wait_status("busy", "warm", Duration::from_secs(5))
        .await;

    // A task keeps it awake until it expires (the task API does not wake it,
    // an exec does).
    api.sh("busy", "true").await;
    // The task expires 3 s after the daemon made it, so no earlier than 3 s
    // from here (the requests below take time of their own).
    let created = Instant::now();
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites/busy/tasks")
        .json(&serde_json::json!({"name": "job", "expire": 3}))
        .send()
        .await
        .expect("task");
    assert_eq!(r.status(), 201);
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites/busy/tasks")
        .json(&serde_json::json!({"name": "job", "expire": 3}))
        .send()
        .await
        .expect("task again");
    assert_eq!(r.status(), 409);
    for bad in [
        serde_json::json!(0),
        serde_json::json!("2h"),
        serde_json::json!("x"),
    ] {
        let r = api
            .req(reqwest::Method::POST, "/v1/sprites/busy/tasks")
            .json(&serde_json::json!({"name": "bad", "expire": bad}))
            .send()
            .await
            .expect("bad task");
        assert_eq!(r.status(), 400, "expire {bad}");
    }
    let list = api.get_json("/v1/sprites/busy/tasks").await;
    assert_eq!(list["tasks"][0]["name"], "job", "{list}");
    while created.elapsed() < Duration::from_millis(2500) {
        assert_eq!(api.status("busy").await, "running", "paused under a task");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.wait_status("busy", "warm", Duration::from_secs(5))
        .await;
    assert!(created.elapsed() >= Duration::from_secs(3));
    assert_eq!(
        api.get_json("/v1/sprites/busy/tasks").await["tasks"],
        serde_json::json!([])
    );
    let r = api
        .req(reqwest::Method::DELETE, "/v1/sprites/busy/tasks/job")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 404, "an expired task is gone");
}

/// The in-sprite socket: tasks created from inside keep the sprite awake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_through_the_in_sprite_socket() {
    let d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "60s"]);
    let api = d.client();
    api.create("inner").await;
    let id = api.id_of("inner").await;
    let sock = d.data_dir.join("sprites").join(&id).join("run/api.sock");
    let call = |method: &'static str, path: &'static str, body: &'static str| {
        let sock = sock.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::UnixStream::connect(&sock)
                .await
                .expect("connect");
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: sprite\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        }
    };
    let created = call("POST", "/v1/tasks", r#"{"name":"build","expire":"3s"}"#).await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let listed = call("GET", "/v1/tasks", "").await;
    assert!(listed.contains("\"build\""), "{listed}");
    let extended = call("PUT", "/v1/tasks/build", r#"{"expire":4}"#).await;
    assert!(extended.starts_with("HTTP/1.1 200"), "{extended}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3000) {
        assert_eq!(api.status("inner").await, "running", "paused under a task");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deleted = call("DELETE", "/v1/tasks/build", "").await;
    assert!(deleted.starts_with("HTTP/1.1 204"), "{deleted}");
    api.wait_status("inner", "warm", Duration::from_secs(5))
        .await;
}

/// Requests that arrive while the sprite freezes, thaws, stops or boots are
/// all served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_transitions_are_served() {
    let d = Daemon::start_with(&["--idle-warm", "300ms", "--idle-cold", "300ms"]);
    let api = d.client();
    api.create("flap").await;
    api.sh("flap", "echo ok > /home/sprite/f").await;
    let mut seen = std::collections::BTreeSet::new();
    // 12 s of requests, and on until the sprite was seen both warm and
    // cold (a busy machine, or gVisor, makes every step slower), 40 s at
    // most.
    let start = Instant::now();
    let caught =
        |seen: &std::collections::BTreeSet<String>| seen.contains("warm") && seen.contains("cold");
    let mut i: u64 = 0;
    while start.elapsed() < Duration::from_secs(12)
        || (!caught(&seen) && start.elapsed() < Duration::from_secs(40))
    {
        i += 1;
        // Waits around the thresholds, so requests land on every
        // transition, and one well past both.
        let wait = [0, 250, 290, 310, 350, 600, 620, 650, 900, 1500][(i % 10) as usize];
        tokio::time::sleep(Duration::from_millis(wait)).await;
        seen.insert(api.status("flap").await);
        let out = api.exec("flap", &["cat", "/home/sprite/f"]).await;
        assert_eq!(out.code, Some(0), "request {i}: {out:?}");
        assert_eq!(out.out(), "ok\n", "request {i}");
    }
    assert!(
        caught(&seen),
        "the test never caught the sprite warm and cold: {seen:?}"
    );
}

/// The idle tracker marks a sprite warm before it freezes it; a client
/// must not be told `warm` until the freeze is done: a daemon killed in
/// between leaves it running (CI caught `daemon_restart_keeps_warm_and_cold`
/// shown `warm` and finding it running after the restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_is_shown_only_once_paused() {
    let mut d = Daemon::start_with_env(
        &["--idle-warm", "1s", "--idle-cold", "1h"],
        &[("SPRITED_FAILPOINTS", "idle-pausing")],
    );
    let api = d.client();
    api.create("half").await;
    let id = api.id_of("half").await;
    d.wait_log("failpoint reached", Duration::from_secs(15));
    // Stopped just before the freeze: marked warm inside, running outside.
    assert_eq!(api.status("half").await, "running");
    let list = api.get_json("/v1/sprites?prefix=half").await;
    assert_eq!(list["sprites"][0]["status"], "running", "{list}");
    assert_eq!(d.runc_state(&id), "running");
    d.kill9();
    d.env.retain(|(k, _)| k != "SPRITED_FAILPOINTS");
    d.spawn();
    let api = d.client();
    assert_eq!(api.status("half").await, "running");
    assert_eq!(api.sh("half", "echo up").await, "up\n");
    // And it goes warm for real now, shown once frozen.
    api.wait_status("half", "warm", Duration::from_secs(10))
        .await;
    assert_eq!(d.runc_state(&id), "paused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_restart_keeps_warm_and_cold() {
    let mut d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "3s"]);
    let api = d.client();
    api.create("cold1").await;
    api.sh("cold1", "echo c > /home/sprite/f").await;
    api.wait_status("cold1", "cold", Duration::from_secs(15))
        .await;
    // Made once the first is cold, so that it is warm, not cold yet, when
    // the daemon goes down (3 s of warm are left for the restart).
    api.create("warm1").await;
    api.sh("warm1", "echo w > /home/sprite/f").await;
    api.wait_status("warm1", "warm", Duration::from_secs(10))
        .await;
    let warm_id = api.id_of("warm1").await;

    d.restart();
    let api = d.client();
    assert_eq!(api.status("warm1").await, "warm");
    assert_eq!(d.runc_state(&warm_id), "paused");
    assert_eq!(api.status("cold1").await, "cold");
    assert_eq!(api.sh("warm1", "cat /home/sprite/f").await, "w\n");
    assert_eq!(api.sh("cold1", "cat /home/sprite/f").await, "c\n");
    // And they go idle again as usual.
    api.wait_status("warm1", "warm", Duration::from_secs(10))
        .await;
    api.wait_status("warm1", "cold", Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sprite_that_cannot_boot_shows_an_error_and_keeps_its_data() {
    let d = Daemon::start_with(&["--idle-warm", "500ms", "--idle-cold", "500ms"]);
    let api = d.client();
    api.create("broken").await;
    api.sh("broken", "echo precious > /home/sprite/f; sync")
        .await;
    assert_eq!(api.checkpoint("broken", None).await, "v0");
    let id = api.id_of("broken").await;
    api.wait_status("broken", "cold", Duration::from_secs(10))
        .await;

    // Break the volume: its superblock zeroed.
    let volume = d.pool_dir().join("sprites").join(&id).join("volume.img");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&volume)
            .expect("open volume");
        f.write_all_at(&[0u8; 4096], 0)
            .expect("zero the superblock");
        f.sync_all().expect("sync");
    }
    let r = api.ws("/v1/sprites/broken/exec?cmd=true").await;
    let err = r.expect_err("exec on a broken sprite");
    assert!(err.to_string().contains("503"), "{err}");
    let got = api.get_json("/v1/sprites/broken").await;
    assert_eq!(got["status"], "error", "{got}");
    assert!(
        got["error"].as_str().unwrap_or("").contains("mount"),
        "{got}"
    );
    assert!(volume.exists(), "the volume is kept");

    // Its checkpoints still work: restoring v0 repairs it.
    api.restore("broken", "v0").await;
    assert_eq!(api.sh("broken", "cat /home/sprite/f").await, "precious\n");
    let got = api.get_json("/v1/sprites/broken").await;
    assert_eq!(got["status"], "running");
    assert!(got.get("error").is_none(), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_attached_through_warm_sees_its_output() {
    let d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "60s"]);
    let api = d.client();
    api.create("att").await;
    // A TTY session, detached, then its command ends: the sprite pauses.
    let mut ws = api
        .ws("/v1/sprites/att/exec?cmd=sh&tty=true&stdin=true")
        .await
        .expect("console");
    ws.send(Message::Binary(b"exit 0\n".to_vec().into()))
        .await
        .expect("type");
    let out = collect(&mut ws).await;
    assert!(out.texts.iter().any(|t| t.contains("exit")), "{out:?}");
    api.wait_status("att", "warm", Duration::from_secs(5)).await;
    // A new exec after the pause works as ever.
    assert_eq!(api.sh("att", "echo back").await, "back\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_of_warm_and_cold_sprites() {
    let d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "2s"]);
    let api = d.client();
    api.create("ck").await;
    api.sh("ck", "echo one > /home/sprite/f").await;
    api.wait_status("ck", "warm", Duration::from_secs(10)).await;
    assert_eq!(api.checkpoint("ck", Some("warm")).await, "v0");
    api.sh("ck", "echo two > /home/sprite/f").await;
    api.wait_status("ck", "warm", Duration::from_secs(10)).await;
    api.wait_status("ck", "cold", Duration::from_secs(10)).await;
    assert_eq!(api.checkpoint("ck", Some("cold")).await, "v1");
    assert_eq!(
        api.status("ck").await,
        "cold",
        "a checkpoint woke a cold sprite"
    );
    api.restore("ck", "v0").await;
    assert_eq!(api.sh("ck", "cat /home/sprite/f").await, "one\n");
    api.restore("ck", "v1").await;
    assert_eq!(api.sh("ck", "cat /home/sprite/f").await, "two\n");
}

/// The pids of the sandbox starters (`sprite-agent __sprite-start`) now
/// running for sandbox `id`.
fn starters_of(id: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "__sprite-start") && args.iter().any(|a| a.contains(id)) {
            found.push(pid);
        }
    }
    found
}

/// Directories named `id` in the host's cgroup hierarchies (a sandbox's
/// cgroup sits one or two levels down: `<hierarchy>/<parent>/<id>`).
fn cgroups_named(id: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![(std::path::PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy() == id {
                found.push(e.path());
            } else if depth < 3 {
                dirs.push((e.path(), depth + 1));
            }
        }
    }
    found
}

/// A wake starts the sandbox while its root is still being mounted (the
/// starter, its cgroups made, waits at the gate the mount opens); a daemon
/// killed right then leaves no starter, cgroup or container behind, and
/// the next wake starts the sprite with its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_waits_for_its_root_and_a_daemon_killed_then_leaves_nothing() {
    let mut d = Daemon::start_with(&["--idle-warm", "300ms", "--idle-cold", "300ms"]);
    let api = d.client();
    api.create("gated").await;
    api.sh("gated", "echo kept > /home/sprite/f; sync").await;
    let id = api.id_of("gated").await;
    api.wait_status("gated", "cold", Duration::from_secs(10))
        .await;
    assert!(cgroups_named(&id).is_empty(), "{:?}", cgroups_named(&id));

    // Stopped dead just before its root is mounted.
    d.kill9();
    d.env
        .push(("SPRITED_FAILPOINTS".into(), "root-mounting".into()));
    d.spawn();
    let api = d.client();
    common::in_background(
        &d,
        api.req(reqwest::Method::POST, "/v1/sprites/gated/exec?cmd=true"),
    );
    if common::isolation() == "gvisor" {
        // A gVisor start waits for the gate before anything.
        std::thread::sleep(Duration::from_millis(300));
        assert!(starters_of(&id).is_empty());
    } else {
        // The start went ahead meanwhile: its starter runs and has made the
        // sandbox's cgroups, but nothing entered them (no init, no container)
        // and the root is not mounted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while starters_of(&id).is_empty() || cgroups_named(&id).is_empty() {
            assert!(
                Instant::now() < deadline,
                "no starter with its cgroups for {id}; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        // Still there (the starter, and the child it made to enter the
        // namespaces, which waits for it).
        assert!(
            !starters_of(&id).is_empty(),
            "the starter waits at the gate"
        );
    }
    assert!(!rootfs_mounted(&d, &id));
    assert_eq!(d.runc_state(&id), "absent");
    assert!(!d
        .data_dir
        .join("runc")
        .join(&id)
        .join("state.json")
        .exists());

    // The daemon dies: the gate closes unopened, and the starter removes
    // what it made and ends.
    d.kill9();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !starters_of(&id).is_empty() || !cgroups_named(&id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: starters {:?}, cgroups {:?}",
            starters_of(&id),
            cgroups_named(&id)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!d.data_dir.join("runc").join(&id).exists());

    // The next daemon wakes it as ever.
    d.env.retain(|(k, _)| k != "SPRITED_FAILPOINTS");
    d.spawn();
    let api = d.client();
    assert_eq!(api.sh("gated", "cat /home/sprite/f").await, "kept\n");
    assert_eq!(api.status("gated").await, "running");
}
