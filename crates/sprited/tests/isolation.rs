//! Inside a sprite: its own processes, host name, network and files only;
//! privileged operations fail; resource limits hold and the daemon lives on.

mod common;

use common::Daemon;
use serde_json::json;
use std::time::Duration;

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
    // Loopback and eth0, its side of the egress pair (see tests/egress.rs).
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

/// Kernel counts are each sprite's own: a sprite opening inotify instances
/// until the kernel refuses gets the host's per-user budget for itself
/// (its user namespace is owned by a uid of its own), and the host's root
/// and another sprite can still open theirs meanwhile. With namespaces
/// owned by host root (as runc makes them) the flood takes what host root
/// has left, and the host's `inotify_init` fails with EMFILE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sprites_inotify_flood_leaves_the_host_and_other_sprites_theirs() {
    let d = Daemon::start();
    let api = d.client();
    for name in ["flood", "calm"] {
        api.create_with(json!({"name": name, "image": "standard"}))
            .await;
    }
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .expect("fs.inotify.max_user_instances")
        .trim()
        .parse()
        .expect("a number");

    // Two sprites, two owners, neither of them host root.
    let owner = |id: &str, d: &Daemon| {
        let ns = format!("/proc/{}/ns/user", d.init_pid(id));
        sprite_runtime::userns::owner_of(std::path::Path::new(&ns))
            .unwrap_or_else(|| panic!("NS_GET_OWNER_UID: {}", std::io::Error::last_os_error()))
    };
    let (flood_id, calm_id) = (api.id_of("flood").await, api.id_of("calm").await);
    let (a, b) = (owner(&flood_id, &d), owner(&calm_id, &d));
    assert!(a != 0 && b != 0 && a != b, "owners {a} and {b}");

    // The flood: as many instances as the kernel gives, held open.
    const FLOOD: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
while len(fds) < 100000:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    fds.append(fd)
open("/tmp/flood.out", "w").write("%d %d\n" % (len(fds), ctypes.get_errno()))
time.sleep(120)
"#;
    api.exec_with(
        "flood",
        &[
            "sh",
            "-c",
            &format!("setsid python3 -c '{FLOOD}' </dev/null >/dev/null 2>&1 &"),
        ],
        "",
        &[],
    )
    .await;
    api.eventually("flood", "cat /tmp/flood.out 2>/dev/null | wc -w", "2\n")
        .await;
    let out = api.sh("flood", "cat /tmp/flood.out").await;
    let mut words = out.split_whitespace();
    let got: usize = words.next().and_then(|n| n.parse().ok()).expect("count");
    let errno: i32 = words.next().and_then(|n| n.parse().ok()).expect("errno");
    assert_eq!(errno, libc::EMFILE, "{out}");
    // Its own budget, whole but for what the sprite had open already.
    assert!(got <= limit && got + 16 >= limit, "{got} of {limit}");

    // Host root still has its own.
    // SAFETY: inotify_init1 takes flags only and returns a new fd or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(fd >= 0, "host: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just opened here and is closed once.
    unsafe { libc::close(fd) };
    // And so does the other sprite.
    let calm = api
        .exec_with(
            "calm",
            &[
                "python3",
                "-c",
                "import ctypes; l = ctypes.CDLL(None); print(l.inotify_init1(0) >= 0)",
            ],
            "",
            &[],
        )
        .await;
    assert_eq!(
        calm.out(),
        "True\n",
        "{}",
        String::from_utf8_lossy(&calm.stderr)
    );

    // A daemon restarted while they run gives a new sprite an owner of
    // its own too, not one of theirs.
    let mut d = d;
    d.restart();
    let api = d.client();
    api.create("third").await;
    let c = owner(&api.id_of("third").await, &d);
    assert!(c != 0 && c != a && c != b, "owners {a}, {b} and {c}");
}

/// Root inside cannot starve the agent through memory the OOM killer
/// cannot free: `/sys/fs/cgroup` is read-only, `/dev` and `/dev/shm` have
/// sizes that leave the agent room (`/dev/shm` half the sprite's memory),
/// and a memory hog beside a full `/dev/shm` is killed, not PID 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_tmpfs_mounts_and_a_hog_leave_the_agent_alive() {
    let d = Daemon::start();
    let api = d.client();
    api.create_with(json!({"name": "fill", "config": {"ram_mb": 256}}))
        .await;
    let root = "user=root";
    let sh = |script: &'static str| ["sh", "-c", script];
    let agent_started = api.exec("fill", &sh(AGENT_START_TIME)).await.out();

    let o = api
        .exec_with(
            "fill",
            &sh("echo x > /sys/fs/cgroup/fill && echo wrote || echo refused"),
            root,
            &[],
        )
        .await;
    assert_eq!(
        o.out(),
        "refused\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for (path, mib) in [("/dev/shm/fill", 128), ("/dev/fill", 4)] {
        let script = format!(
            "dd if=/dev/zero of={path} bs=1M count=1000 2>/dev/null; \
             echo $(( $(stat -c %s {path}) / 1048576 ))"
        );
        let o = api
            .exec_with("fill", &["sh", "-c", &script], root, &[])
            .await;
        assert_eq!(o.out(), format!("{mib}\n"), "{path}");
    }
    // /dev/shm is full (128 MiB of 256): a hog wanting more than the rest
    // is what the OOM killer takes.
    let o = api
        .exec_with(
            "fill",
            &sh("sh -c 'x=$(head -c 400000000 /dev/zero | tr \"\\0\" a); echo ${#x}'; echo rc=$?"),
            root,
            &[],
        )
        .await;
    assert!(
        o.out().ends_with("rc=137\n"),
        "the hog was not killed: {}",
        o.out()
    );
    assert_eq!(
        api.exec("fill", &sh(AGENT_START_TIME)).await.out(),
        agent_started,
        "the agent was restarted"
    );
    // Commands start above the agent's OOM score.
    let o = api
        .exec(
            "fill",
            &sh("echo $(cat /proc/1/oom_score_adj) $(cat /proc/self/oom_score_adj)"),
        )
        .await;
    let out = o.out();
    let adj: Vec<i32> = out
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(adj.len(), 2, "{out}");
    assert!(adj[1] > adj[0], "agent {} vs command {}", adj[0], adj[1]);
}

/// The host id range sprite `id` runs as: the first line of its init's
/// uid map (`0 base size`), as the host reads it.
fn host_range(d: &Daemon, id: &str) -> (u32, u32) {
    let pid = d.init_pid(id);
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
    let n: Vec<u32> = map
        .split_whitespace()
        .take(3)
        .map(|w| w.parse().expect("a number"))
        .collect();
    assert_eq!(n[0], 0, "{map}");
    (n[1], n[2])
}

/// Owner (uid, gid) of a host path.
fn host_owner(path: &std::path::Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid())
}

/// No two sprites share a host id: each runs as a range of its own, and
/// its files (the shared image, its volume, its checkpoints' views) are
/// shown to it under that range and stored in the one shared range, so
/// that a fork, a restore and a restart keep every owner as the sprite
/// sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sprite_runs_as_host_ids_of_its_own() {
    const SHARED: u32 = 100_000;
    let mut d = Daemon::start();
    let api = d.client();
    api.create("ids-a").await;
    api.create("ids-b").await;
    let (a_id, b_id) = (api.id_of("ids-a").await, api.id_of("ids-b").await);
    let ((a, size_a), (b, size_b)) = (host_range(&d, &a_id), host_range(&d, &b_id));
    assert_eq!((size_a, size_b), (65536, 65536));
    assert!(a.abs_diff(b) >= 65536, "ranges {a} and {b} overlap");
    for base in [a, b] {
        assert!(
            base.abs_diff(SHARED) >= 65536 && base >= 65536,
            "{base}: the shared range, or host users'"
        );
    }
    // Root inside is the range's first id on the host.
    let pid = d.init_pid(&a_id);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line");
    assert!(
        uids.split_whitespace().all(|u| u == a.to_string()),
        "{uids}"
    );

    // What each makes, as its user and as its root, is owned on the host
    // by its own range where it is mounted, and stored in the shared one.
    let uid: u32 = api.sh("ids-a", "id -u").await.trim().parse().expect("uid");
    let gid: u32 = api.sh("ids-a", "id -g").await.trim().parse().expect("gid");
    for name in ["ids-a", "ids-b"] {
        api.sh(name, "echo mine > /home/sprite/f; sync").await;
        api.exec_with(
            name,
            &["sh", "-c", "echo root > /root/r; sync"],
            "user=root",
            &[],
        )
        .await;
    }
    for (id, base) in [(&a_id, a), (&b_id, b)] {
        let sprite = d.data_dir.join("sprites").join(id);
        let root = sprite.join("rootfs");
        assert_eq!(
            host_owner(&root.join("home/sprite/f")),
            (base + uid, base + gid)
        );
        assert_eq!(host_owner(&root.join("root/r")), (base, base));
        // The shared image too, through the sprite's own clone of it.
        assert_eq!(host_owner(&root.join("bin")).0, base);
        let stored = sprite.join("volume/upper");
        assert_eq!(
            host_owner(&stored.join("home/sprite/f")),
            (SHARED + uid, SHARED + gid)
        );
        assert_eq!(host_owner(&stored.join("root/r")), (SHARED, SHARED));
    }
    // Inside, owners are what the sprite made them.
    let want = format!("{uid}:{gid}\n0:0\n0:0\n");
    let owners = "stat -c %u:%g /home/sprite/f /root /bin/sh";
    assert_eq!(api.sh("ids-a", owners).await, want);

    // A checkpoint's view shows the same owners; a restore (a new start)
    // and a fork of it (another sprite, another range) see them too.
    let ck = api.checkpoint("ids-a", None).await;
    let view = format!("stat -c %u:%g /.sprite/checkpoints/{ck}/home/sprite/f; cat /.sprite/checkpoints/{ck}/home/sprite/f");
    // (Views are mounted in the background, soon after the checkpoint.)
    api.eventually("ids-a", &view, &format!("{uid}:{gid}\nmine\n"))
        .await;
    api.sh("ids-a", "echo later > /home/sprite/f").await;
    api.restore("ids-a", &ck).await;
    assert_eq!(api.sh("ids-a", owners).await, want);
    assert_eq!(api.sh("ids-a", "cat /home/sprite/f").await, "mine\n");
    api.create_with(json!({"name": "ids-c", "source": {"sprite": "ids-a", "checkpoint": ck}}))
        .await;
    let c = host_range(&d, &api.id_of("ids-c").await).0;
    assert!(c != a && c != b, "{c} is taken");
    assert_eq!(api.sh("ids-c", owners).await, want);
    // The sprite's user owns its home: it can write there.
    assert_eq!(
        api.sh("ids-c", "echo more >> /home/sprite/f && cat /home/sprite/f")
            .await,
        "mine\nmore\n"
    );

    // A restarted daemon hands a new sprite a range no running one has.
    let a_now = host_range(&d, &a_id).0;
    d.restart();
    let api = d.client();
    api.create("ids-d").await;
    let dd = host_range(&d, &api.id_of("ids-d").await).0;
    assert!(dd != a_now && dd != b && dd != c, "{dd} is taken");
    assert_eq!(api.sh("ids-a", owners).await, want);
}

/// The niceness of process `pid` (field 19 of its stat line; its name,
/// in parentheses, may hold spaces).
fn nice_of(stat: &str) -> i32 {
    let after_name = stat.rsplit_once(')').expect("a stat line").1;
    after_name
        .split_whitespace()
        .nth(16)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no niceness in {stat:?}"))
}

/// A sprite's processes run at the daemon's priority, though the runc
/// that starts them runs below it: a sprite started ahead (the pool) and
/// one woken cold alike, its agent and its commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprites_run_at_the_daemons_priority() {
    let d = Daemon::start_with(&[
        "--idle-warm",
        "1s",
        "--idle-cold",
        "2s",
        "--start-pool",
        "1",
    ]);
    let api = d.client();
    api.wait_made_ahead(1).await;
    let pid = d.pid().expect("the daemon's pid");
    let daemon = nice_of(&std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat"));
    let script = ["sh", "-c", "cat /proc/1/stat; echo; cat /proc/self/stat"];
    let nices =
        |out: String| -> Vec<i32> { out.lines().filter(|l| !l.is_empty()).map(nice_of).collect() };
    api.create("prio").await;
    let made = nices(api.exec("prio", &script).await.out());
    assert_eq!(
        made,
        vec![daemon, daemon],
        "agent, command (daemon: {daemon})"
    );
    api.wait_status("prio", "cold", Duration::from_secs(15))
        .await;
    let woken = nices(api.exec("prio", &script).await.out());
    assert_eq!(
        woken,
        vec![daemon, daemon],
        "agent, command after a cold wake"
    );
}

/// A sprite started by sprited itself (sprite-start, the default) sees
/// what one started by `runc create` sees: the same mounts with the same
/// options, the same `/dev`, capabilities, limits and cgroup view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sprite_started_without_runc_sees_what_runc_gives_it() {
    let view = "awk '{ for (i = 7; i <= NF; i++) if ($i == \"-\") break; print $5, $6, $(i+1) }' \
                /proc/self/mountinfo | sort; \
                ls -l /dev | awk 'NR > 1 { print $1, $NF }' | sort; \
                grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/1/status /proc/self/status; \
                ls /sys/fs/cgroup; \
                cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
                    /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>&1; \
                cat /proc/self/cgroup | cut -d: -f2,3 | sort; \
                hostname; ulimit -n; id; \
                touch /proc/sys/x 2>&1 | sed 's/.*: //'; cat /proc/kcore 2>&1 | wc -c";
    let mut seen = Vec::new();
    for flags in [&[][..], &["--runc-start"][..]] {
        let d = Daemon::start_with(flags);
        let api = d.client();
        api.create("same").await;
        let o = api
            .exec_with("same", &["sh", "-c", view], "user=root", &[])
            .await;
        assert_eq!(o.code, Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let id = api.id_of("same").await;
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(d.data_dir.join("runc").join(&id).join("state.json")).expect("state"),
        )
        .expect("state json");
        assert_eq!(
            state["sprite_start"].as_bool().unwrap_or(false),
            flags.is_empty(),
            "started by {}",
            if flags.is_empty() { "sprited" } else { "runc" }
        );
        seen.push(o.out());
        api.delete("same").await;
    }
    let lines: Vec<&str> = seen[0].lines().collect();
    for want in [
        "/proc rw,nosuid,nodev,noexec,relatime proc",
        "/sys ro,nosuid,nodev,noexec,relatime sysfs",
        "/sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime cgroup",
        "/proc/sys ro,nosuid,nodev,noexec,relatime proc",
        "/.sprite/bin/sprite-agent ro,nosuid,nodev,relatime ext4",
    ] {
        assert!(lines.contains(&want), "{want}: {}", seen[0]);
    }
    assert_eq!(seen[0], seen[1], "sprite-start's view, then runc's");
}
