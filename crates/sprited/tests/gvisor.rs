//! gvisor sprites (`config.isolation: "gvisor"`) beside container ones on
//! one daemon: what differs (the kernel they see, what the host sees of
//! them, the way their network and agent are wired) and what must not
//! (persistence, checkpoints, warm and cold, URLs, the egress policy).
//! The other suites run whole at either level (`SPRITED_TEST_ISOLATION`).

mod common;

use std::time::Duration;

use common::Daemon;
use serde_json::json;

async fn create_gvisor(api: &common::Api, name: &str) -> serde_json::Value {
    api.create_with(json!({"name": name, "config": {"isolation": "gvisor"}}))
        .await
}

/// Processes of the host whose command line contains `needle`.
fn host_processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if e.file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gvisor_sprite_runs_on_a_kernel_of_its_own() {
    let d = Daemon::start_with(&["--isolation", "container", "--idle-warm", "2s"]);
    let api = d.client();
    let s = create_gvisor(&api, "gv-a").await;
    assert_eq!(s["config"]["isolation"], "gvisor", "{s}");
    let c = api.create("gv-c").await;
    assert_eq!(c["config"]["isolation"], "container", "{c}");

    // The kernel it talks to is gVisor's: its log says so, the host's
    // says nothing of the kind.
    let dmesg = api.sh("gv-a", "dmesg 2>&1 | head -3").await;
    assert!(dmesg.contains("gVisor"), "{dmesg}");
    let host_like = api.sh("gv-c", "dmesg 2>&1 | head -3").await;
    assert!(!host_like.contains("gVisor"), "{host_like}");

    // Its processes are not the host's: a marked sleep inside has no
    // process on the host (the Sentry runs it), the container's has.
    let marker = "7340033";
    let bg = |n: &str| format!("setsid sleep {n} >/dev/null 2>&1 </dev/null & sleep 0.2");
    api.sh("gv-a", &bg(marker)).await;
    api.sh("gv-c", &bg(&format!("{marker}1"))).await;
    let seen = host_processes_with(&format!("sleep {marker}"));
    assert_eq!(
        seen.iter()
            .filter(|c| c.trim_end() == format!("sleep {marker}"))
            .count(),
        0,
        "gvisor processes show on the host: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|c| c.trim_end() == format!("sleep {marker}1")),
        "the container's sleep runs on the host: {seen:?}"
    );

    // Root inside, files persist, the agent answers as root and as sprite.
    assert_eq!(api.sh("gv-a", "id -u").await, "1000\n");
    let o = api.exec_with("gv-a", &["id", "-u"], "user=root", &[]).await;
    assert_eq!(o.out(), "0\n");
    api.sh("gv-a", "echo kept > /home/sprite/f; echo tmp > /tmp/t")
        .await;

    // Warm (frozen when idle) and awake again on the next command.
    api.wait_status("gv-a", "warm", Duration::from_secs(30))
        .await;
    assert_eq!(api.sh("gv-a", "cat /home/sprite/f").await, "kept\n");

    // A daemon killed and started again finds it running, and a sprite
    // whose sandbox is gone (a reboot) starts again with its files,
    // /tmp included (the volume's, not a tmpfs of gVisor's).
    let mut d = d;
    d.restart();
    let api = d.client();
    assert_eq!(api.sh("gv-a", "cat /home/sprite/f").await, "kept\n");
    let id = api.id_of("gv-a").await;
    let pid = d.init_pid(&id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the sandbox");
    assert_eq!(
        api.sh("gv-a", "cat /home/sprite/f /tmp/t").await,
        "kept\ntmp\n"
    );

    api.delete("gv-a").await;
    api.delete("gv-c").await;
    assert!(
        !d.data_dir.join("runsc").join("netns").join(&id).exists(),
        "the network namespace file went with the sprite"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_urls_and_policy_hold_under_gvisor() {
    let d = Daemon::start_with(&["--isolation", "container"]);
    let api = d.client();
    create_gvisor(&api, "gv-b").await;
    api.sh("gv-b", "echo v1 > /home/sprite/f").await;
    let ck = api.checkpoint("gv-b", Some("v1")).await;
    api.sh("gv-b", "echo v2 > /home/sprite/f").await;
    api.restore("gv-b", &ck).await;
    assert_eq!(api.sh("gv-b", "cat /home/sprite/f").await, "v1\n");

    // A fork of a gvisor checkpoint, asked for as gvisor too.
    let fork = api
        .create_with(json!({
            "name": "gv-fork",
            "config": {"isolation": "gvisor"},
            "source": {"sprite": "gv-b", "checkpoint": ck}
        }))
        .await;
    assert_eq!(fork["config"]["isolation"], "gvisor");
    assert_eq!(api.sh("gv-fork", "cat /home/sprite/f").await, "v1\n");

    // A server inside answers on the sprite's URL, even one that listens
    // on the Sentry's loopback only (the agent connects from inside and
    // carries the bytes).
    api.sh(
        "gv-b",
        "mkdir -p /home/sprite/www && echo hello-gv > /home/sprite/www/index.html && \
         setsid busybox httpd -f -p 127.0.0.1:8080 -h /home/sprite/www >/dev/null 2>&1 </dev/null & sleep 0.5",
    )
    .await;
    let port = d.addr.rsplit(':').next().expect("port").to_string();
    let mut body = String::new();
    for _ in 0..50 {
        let r = reqwest::Client::new()
            .get(format!("{}/index.html", d.url))
            .header("host", format!("gv-b.sprites.localhost:{port}"))
            .bearer_auth(&d.token)
            .send()
            .await
            .expect("the sprite's URL");
        if r.status().is_success() {
            body = r.text().await.expect("body");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body, "hello-gv\n");

    // DNS is the daemon's resolver, at the gateway; the daemon's own port
    // is out of reach (the policy itself: tests/egress.rs at this level).
    let resolv = api.sh("gv-b", "cat /etc/resolv.conf").await;
    assert_eq!(resolv, "nameserver 10.200.0.1\n");
    let o = api
        .sh(
            "gv-b",
            &format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 3 10.200.0.1 {port} 2>&1; echo rc=$?"
            ),
        )
        .await;
    assert!(!o.contains("HTTP/"), "the daemon's port is reachable: {o}");

    api.delete("gv-fork").await;
    api.delete("gv-b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_isolation_is_refused_in_words() {
    let d = Daemon::start();
    let api = d.client();
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites")
        .json(&json!({"name": "gv-x", "config": {"isolation": "vm"}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 400);
    let body = r.text().await.expect("body");
    assert!(body.contains("config.isolation must be"), "{body}");
}

async fn gvisor_metric(api: &common::Api) -> String {
    let text = api
        .req(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find(|l| l.starts_with("sprited_gvisor_info{"))
        .unwrap_or_else(|| panic!("no sprited_gvisor_info in {text}"))
        .to_string()
}

/// The label `name` of a metric line.
fn label<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 2;
    let len = line[start..].find('"').expect("closing quote");
    &line[start..start + len]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentry_platform_is_chosen_here_and_reported() {
    // Chosen automatically: KVM only where a KVM sandbox runs on this
    // host, as the probe finds now (it answers within its timeout and
    // leaves no process or directory behind).
    let d = Daemon::start_with(&["--isolation", "gvisor"]);
    let api = d.client();
    let line = gvisor_metric(&api).await;
    let platform = label(&line, "platform").to_string();
    let chosen = label(&line, "chosen");
    assert!(chosen.starts_with("auto: "), "{line}");
    assert!(label(&line, "runsc").starts_with("runsc version"), "{line}");
    let t = std::time::Instant::now();
    let probe = sprite_runtime::gvisor_platform::probe_kvm(
        std::path::Path::new("runsc"),
        sprite_runtime::gvisor_platform::PROBE_TIMEOUT,
    );
    assert!(
        t.elapsed() < sprite_runtime::gvisor_platform::PROBE_TIMEOUT + Duration::from_secs(2),
        "the probe took {:?}",
        t.elapsed()
    );
    assert_eq!(
        platform,
        if probe.is_ok() { "kvm" } else { "ptrace" },
        "daemon: {line}; probe now: {probe:?}"
    );
    if !std::path::Path::new("/dev/kvm").exists() {
        assert!(chosen.contains("/dev/kvm"), "{line}");
    }
    assert!(
        host_processes_with("--platform=kvm do").is_empty(),
        "the probe left a sandbox"
    );
    assert!(
        !std::env::temp_dir()
            .join(format!("sprited-kvm-probe-{}", std::process::id()))
            .exists(),
        "the probe left its directory"
    );
    // The sprites run on it (runsc hands its Sentry only the flags that
    // differ from its defaults, ptrace being the default).
    api.create("gv-p").await;
    let id = api.id_of("gv-p").await;
    let root = format!(
        "runsc-sandbox --root={}",
        d.data_dir.join("runsc").display()
    );
    let sentry: Vec<String> = host_processes_with(&root)
        .into_iter()
        .filter(|c| c.contains(&id))
        .collect();
    assert_eq!(sentry.len(), 1, "{sentry:?}");
    assert_eq!(
        sentry[0].contains("--platform=kvm"),
        platform == "kvm",
        "{platform}: {sentry:?}"
    );
    api.delete("gv-p").await;

    // Set by hand: used as it is, and said so.
    let d2 = Daemon::start_with(&["--isolation", "gvisor", "--gvisor-platform", "ptrace"]);
    let line = gvisor_metric(&d2.client()).await;
    assert_eq!(label(&line, "platform"), "ptrace", "{line}");
    assert_eq!(label(&line, "chosen"), "set by --gvisor-platform", "{line}");
}
