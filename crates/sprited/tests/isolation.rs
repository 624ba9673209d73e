//! Inside a sprite: its own processes, host name, network and files only;
//! privileged operations fail; resource limits hold and the daemon lives on.

mod common;

use common::Daemon;
use serde_json::json;

/// Start time of the sprite's PID 1, in clock ticks since boot.
const AGENT_START_TIME: &str = "cut -d' ' -f22 /proc/1/stat";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprites_are_isolated_and_limited() {
    let d = Daemon::start_with(&["--pids-limit", "128"]);
    let api = d.client();
    api.create("iso-a").await;
    api.create("iso-b").await;
    let root = "user=root";
    let sh = |script: &'static str| ["sh", "-c", script];

    // Own pid namespace: the agent is PID 1 and only the sprite's processes show.
    let o = api
        .exec_with("iso-a", &sh("ps -o pid,args"), root, &[])
        .await;
    let out = o.out();
    let lines: Vec<&str> = out.lines().skip(1).map(str::trim).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("1 ") && l.contains("sprite-agent")),
        "{lines:?}"
    );
    assert!(lines.len() <= 4, "only the sprite's processes: {lines:?}");
    // Host name = sprite name; own network namespace.
    assert_eq!(api.exec("iso-a", &["hostname"]).await.out(), "iso-a\n");
    let o = api
        .exec(
            "iso-a",
            &sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"),
        )
        .await;
    // Loopback and pasta's tap (egress; see tests/egress.rs).
    let ifaces: Vec<String> = o.out().lines().map(String::from).collect();
    assert_eq!(ifaces.len(), 2, "{ifaces:?}");
    assert_eq!(ifaces[0], "lo");
    // Root inside is an unprivileged user outside (user namespace).
    let o = api
        .exec_with("iso-a", &sh("cat /proc/self/uid_map"), root, &[])
        .await;
    let out = o.out();
    let map: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(map.first().copied(), Some("0"));
    assert_ne!(
        map.get(1).copied(),
        Some("0"),
        "uid 0 inside must not be host root: {map:?}"
    );

    // The host's files, the daemon's data dir and token are out of reach.
    let data = d.data_dir.display().to_string();
    let probe = format!(
        "test -e {data} && echo data-visible; cat {data}/admin.token 2>/dev/null && echo token-read; \
         ls /dev | grep -q loop && echo loop-visible; test -e /work && echo work-visible; echo done"
    );
    let o = api
        .exec_with("iso-a", &["sh", "-c", &probe], root, &[])
        .await;
    assert_eq!(o.out(), "done\n");
    assert!(!o.out().contains(&d.token));

    // Other sprites' files are out of reach.
    let o = api
        .exec(
            "iso-a",
            &sh("echo secret-a > /home/sprite/a.txt && echo ok"),
        )
        .await;
    assert_eq!(o.out(), "ok\n");
    let o = api
        .exec_with(
            "iso-b",
            &sh("find / -xdev -name a.txt 2>/dev/null; echo end"),
            root,
            &[],
        )
        .await;
    assert_eq!(o.out(), "end\n");

    // Privileged operations fail, even as root inside.
    for script in [
        "mount -t tmpfs none /mnt",
        "mount -t proc proc /mnt",
        "echo junk > /tmp/m.ko && insmod /tmp/m.ko",
        "echo 1 > /proc/sys/kernel/sysrq",
        "mknod /tmp/sda b 8 0",
        "echo x > /.sprite/bin/sprite-agent",
        "ping -c 1 -W 1 127.0.0.1",
    ] {
        let o = api
            .exec_with("iso-a", &["sh", "-c", script], root, &[])
            .await;
        assert_ne!(o.code, Some(0), "{script:?} must fail; got {o:?}");
    }
    let o = api
        .exec_with("iso-a", &sh("reboot -f; sleep 1; echo alive"), root, &[])
        .await;
    assert!(o.out().contains("alive"), "reboot must fail: {o:?}");
    assert_eq!(
        api.exec("iso-a", &["cat", "/home/sprite/a.txt"])
            .await
            .out(),
        "secret-a\n"
    );

    // A fork bomb hits the pids limit; the host and the daemon stay
    // responsive. Only shell builtins run after it: no fork is left.
    let o = api
        .exec_with(
            "iso-b",
            &sh("sh -c 'while :; do sleep 60 & done' 2>/dev/null; \
                 for f in /sys/fs/cgroup/pids/pids.current /sys/fs/cgroup/pids.current; do \
                 [ -r $f ] && read n < $f && echo $n; done"),
            "",
            &[],
        )
        .await;
    let count: usize = o.out().trim().parse().unwrap_or(usize::MAX);
    assert!(
        (100..=128).contains(&count),
        "pids limit of 128 must hold: {o:?}"
    );
    let r = api
        .req(reqwest::Method::GET, "/v1/sprites/iso-a")
        .send()
        .await
        .expect("daemon answers");
    assert_eq!(r.status(), 200);
    api.delete("iso-b").await;

    // A memory hog is OOM-killed inside its cgroup; the daemon and the
    // sprite live on.
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites")
        .json(&json!({"name": "hog", "config": {"ram_mb": 64, "cpus": 2}}))
        .send()
        .await
        .expect("create hog");
    assert_eq!(r.status(), 201);
    let limits = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
                  cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max";
    let o = api.exec("hog", &["sh", "-c", limits]).await;
    assert_eq!(
        o.out(),
        format!("{}\n200000\n", 64 << 20),
        "ram_mb and cpus 2 are the limits"
    );
    let agent_started = api.exec("hog", &sh(AGENT_START_TIME)).await.out();
    let o = api
        .exec(
            "hog",
            &sh("head -c 300000000 /dev/zero | sort > /dev/null && echo finished"),
        )
        .await;
    assert!(!o.out().contains("finished") && o.code != Some(0), "{o:?}");
    assert_eq!(api.exec("hog", &["echo", "alive"]).await.out(), "alive\n");
    let after = api.exec("hog", &sh(AGENT_START_TIME)).await.out();
    assert_eq!(
        agent_started, after,
        "the agent (PID 1) was not the OOM victim"
    );
    api.delete("hog").await;
    api.delete("iso-a").await;
}
