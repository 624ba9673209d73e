//! The privileges policy through a real daemon and runc: a dropped
//! capability is gone for root inside, a granted one is held, a granted
//! device is there and opens, each only from the next start; bad input is
//! a 400 in the Sprites error format; the policy outlives a daemon restart.

mod common;

use common::{Api, Daemon};
use serde_json::{json, Value};

async fn post_policy(api: &Api, name: &str, body: Value) -> (u16, Value) {
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v1/sprites/{name}/policy/privileges"),
        )
        .json(&body)
        .send()
        .await
        .expect("post policy");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn restart(api: &Api, name: &str) {
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v1/sprites/{name}/restart"),
        )
        .send()
        .await
        .expect("restart");
    assert_eq!(r.status(), 200, "restart {name}");
}

/// Creates `name` from the `standard` image (no_new_privs off: sudo).
async fn create_standard(api: &Api, name: &str) {
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites")
        .json(&json!({"name": name, "image": "standard"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

/// `sh -c script` as root inside (an exec's default user is not root).
async fn as_root(api: &Api, name: &str, script: &str) -> common::Output {
    api.exec_with(name, &["sh", "-c", script], "user=root", &[])
        .await
}

/// Whether capability `bit` is in the effective set of root's shell inside.
async fn has_cap(api: &Api, name: &str, bit: u32) -> bool {
    let script = format!(
        "eff=$(grep CapEff /proc/self/status | tr -d ' \\t' | cut -d: -f2); echo $(( (0x$eff >> {bit}) & 1 ))"
    );
    let out = as_root(api, name, &script).await;
    assert_eq!(
        out.code,
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.out().trim() == "1"
}

/// Root giving a file away: needs CAP_CHOWN.
const CHOWN: &str = "rm -f /tmp/owned; touch /tmp/owned && chown 1000:1000 /tmp/owned";
const CAP_CHOWN: u32 = 0;
const CAP_NET_RAW: u32 = 13;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_dropped_and_granted_at_the_next_start() {
    let mut d = Daemon::start();
    let api = d.client();
    api.create("priv1").await;

    // The default set: chown works, no raw sockets.
    assert_eq!(as_root(&api, "priv1", CHOWN).await.code, Some(0));
    assert!(has_cap(&api, "priv1", CAP_CHOWN).await);
    assert!(!has_cap(&api, "priv1", CAP_NET_RAW).await);
    let empty = api.get_json("/v1/sprites/priv1/policy/privileges").await;
    assert_eq!(
        empty,
        json!({"capabilities": {"add": [], "drop": []}, "devices": []})
    );

    let (status, _) = post_policy(
        &api,
        "priv1",
        json!({"capabilities": {"add": ["net_raw"], "drop": ["CAP_CHOWN"]}}),
    )
    .await;
    assert_eq!(status, 204);
    // Stored as sent, in canonical names; the running sprite is unchanged.
    let got = api.get_json("/v1/sprites/priv1/policy/privileges").await;
    assert_eq!(got["capabilities"]["add"], json!(["CAP_NET_RAW"]));
    assert_eq!(got["capabilities"]["drop"], json!(["CAP_CHOWN"]));
    assert!(has_cap(&api, "priv1", CAP_CHOWN).await);

    restart(&api, "priv1").await;
    let denied = as_root(&api, "priv1", CHOWN).await;
    assert_ne!(denied.code, Some(0), "chown worked without CAP_CHOWN");
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("not permitted"),
        "{:?}",
        String::from_utf8_lossy(&denied.stderr)
    );
    assert!(!has_cap(&api, "priv1", CAP_CHOWN).await);
    assert!(has_cap(&api, "priv1", CAP_NET_RAW).await);
    // Shown inside, like the network policy.
    let shown = api.sh("priv1", "cat /.sprite/policy/privileges.json").await;
    let shown: Value = serde_json::from_str(&shown).expect("privileges.json");
    assert_eq!(shown["capabilities"]["drop"], json!(["CAP_CHOWN"]));

    // Bad input: a 400 in the Sprites error format, nothing stored.
    for bad in [
        json!({"capabilities": {"add": ["CAP_SYS_ADMIN"]}}),
        json!({"capabilities": {"add": ["CAP_NET_ADMIN"]}}),
        json!({"capabilities": {"drop": ["CAP_NOTHING"]}}),
        json!({"devices": ["/dev/sda"]}),
        json!({"devices": ["/dev/mem"]}),
        json!({"profile": "root"}),
        json!({"noNewPrivileges": "yes"}),
        json!({"capabilities": ["CAP_CHOWN"]}),
    ] {
        let (status, body) = post_policy(&api, "priv1", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty())
                && body["message"].as_str().is_some(),
            "{bad}: {body}"
        );
    }
    assert_eq!(
        api.get_json("/v1/sprites/priv1/policy/privileges").await,
        got
    );

    // The policy is the daemon's to keep: a restart of it loses nothing,
    // and the sprite's next start still gets it.
    d.restart();
    let api = d.client();
    assert_eq!(
        api.get_json("/v1/sprites/priv1/policy/privileges").await,
        got
    );
    restart(&api, "priv1").await;
    assert!(!has_cap(&api, "priv1", CAP_CHOWN).await);

    // Deleted: back to the default set at the next start.
    let r = api
        .req(
            reqwest::Method::DELETE,
            "/v1/sprites/priv1/policy/privileges",
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    restart(&api, "priv1").await;
    assert_eq!(as_root(&api, "priv1", CHOWN).await.code, Some(0));
    assert!(!has_cap(&api, "priv1", CAP_NET_RAW).await);
    api.delete("priv1").await;
}

const CAP_NET_BIND_SERVICE: u32 = 10;

/// The NoNewPrivs flag of a root shell in the sprite.
async fn nnp(api: &Api) -> Option<String> {
    let out = as_root(api, "priv3", "grep NoNewPrivs /proc/self/status").await;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(String::from)
}

/// The JS SDK's shape: `{profile, devices, noNewPrivileges}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_profiles_and_no_new_privileges() {
    let d = Daemon::start();
    let api = d.client();
    api.create("priv3").await;
    assert_eq!(
        nnp(&api).await.as_deref(),
        Some("1"),
        "the tiny image's default"
    );
    assert!(has_cap(&api, "priv3", CAP_NET_BIND_SERVICE).await);

    // minimal: files and users, not the network.
    let (status, body) = post_policy(
        &api,
        "priv3",
        json!({"profile": "minimal", "noNewPrivileges": false, "devices": []}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let got = api.get_json("/v1/sprites/priv3/policy/privileges").await;
    assert_eq!(
        (&got["profile"], &got["noNewPrivileges"]),
        (&json!("minimal"), &json!(false)),
        "{got}"
    );
    restart(&api, "priv3").await;
    assert!(!has_cap(&api, "priv3", CAP_NET_BIND_SERVICE).await);
    assert!(has_cap(&api, "priv3", CAP_CHOWN).await);
    assert_eq!(as_root(&api, "priv3", CHOWN).await.code, Some(0));
    assert_eq!(nnp(&api).await.as_deref(), Some("0"));

    // privileged: the default set and every grantable one; "" is the default.
    let (status, _) = post_policy(&api, "priv3", json!({"profile": "privileged"})).await;
    assert_eq!(status, 204);
    restart(&api, "priv3").await;
    assert!(has_cap(&api, "priv3", CAP_NET_RAW).await);
    assert!(has_cap(&api, "priv3", CAP_NET_BIND_SERVICE).await);
    assert_eq!(nnp(&api).await.as_deref(), Some("1"));
    let (status, _) = post_policy(&api, "priv3", json!({"profile": ""})).await;
    assert_eq!(status, 204);
    let got = api.get_json("/v1/sprites/priv3/policy/privileges").await;
    assert!(got.get("profile").is_none(), "{got}");
    restart(&api, "priv3").await;
    assert!(!has_cap(&api, "priv3", CAP_NET_RAW).await);
    api.delete("priv3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_device_is_there_and_opens() {
    let present: Vec<&str> = ["/dev/net/tun", "/dev/fuse"]
        .into_iter()
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    if present.is_empty() {
        eprintln!("skipped: this host has neither /dev/net/tun nor /dev/fuse");
        return;
    }
    let d = Daemon::start();
    let api = d.client();
    api.create("priv2").await;
    let open = |dev: &str| format!("exec 3<>{dev} && echo opened");
    for dev in &present {
        let out = api.exec("priv2", &["sh", "-c", &open(dev)]).await;
        assert_ne!(out.code, Some(0), "{dev} opened without a grant");
    }
    let (status, body) = post_policy(&api, "priv2", json!({"devices": present})).await;
    assert_eq!(status, 204, "{body}");
    restart(&api, "priv2").await;
    for dev in &present {
        let out = api.exec("priv2", &["sh", "-c", &open(dev)]).await;
        assert_eq!(
            (out.code, out.out().trim()),
            (Some(0), "opened"),
            "{dev}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The grant is that device and nothing else of the host's.
    let listing = api.sh("priv2", "ls /dev").await;
    for absent in ["vda", "mem", "kmsg", "kvm"] {
        assert!(
            !listing.split_whitespace().any(|e| e == absent),
            "/dev/{absent} inside: {listing}"
        );
    }
    api.delete("priv2").await;
}

/// Issue 17: seccomp is an allowlist. A call it does not list answers
/// ENOSYS (`kcmp`), io_uring answers EPERM until the sprite's privileges
/// policy asks for it (`io_uring: true`, from the next start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_allows_a_list_and_io_uring_only_when_asked() {
    let d = Daemon::start();
    let api = d.client();
    create_standard(&api, "ring").await;
    const PROBE: &str = r#"
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def name(r):
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
params = ctypes.create_string_buffer(120)
print("io_uring", name(libc.syscall(ctypes.c_long(425), ctypes.c_long(4), params)))
print("kcmp", name(libc.syscall(ctypes.c_long(312), 0, 0, 0, 0, 0)))
print("getpid", name(libc.syscall(ctypes.c_long(39))))
"#;
    async fn probe(api: &Api, script: &str) -> String {
        let out = api
            .exec_with("ring", &["python3", "-c", script], "", &[])
            .await;
        assert_eq!(
            out.code,
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.out()
    }
    assert_eq!(
        probe(&api, PROBE).await,
        "io_uring EPERM\nkcmp ENOSYS\ngetpid ok\n"
    );

    let (status, body) = post_policy(&api, "ring", json!({"io_uring": true})).await;
    assert_eq!(status, 204, "{body}");
    let shown = api.get_json("/v1/sprites/ring/policy/privileges").await;
    assert_eq!(shown["io_uring"], true, "{shown}");
    restart(&api, "ring").await;
    assert_eq!(
        probe(&api, PROBE).await,
        "io_uring ok\nkcmp ENOSYS\ngetpid ok\n"
    );

    // `false` is the default: stored as nothing.
    let (status, body) = post_policy(&api, "ring", json!({"io_uring": false})).await;
    assert_eq!(status, 204, "{body}");
    let shown = api.get_json("/v1/sprites/ring/policy/privileges").await;
    assert!(shown.get("io_uring").is_none(), "{shown}");
    restart(&api, "ring").await;
    assert_eq!(
        probe(&api, PROBE).await,
        "io_uring EPERM\nkcmp ENOSYS\ngetpid ok\n"
    );
}

/// `field: value` lines of `/proc/<pid>/status` inside, for the fields
/// that say how a process is confined.
async fn confinement(
    api: &Api,
    name: &str,
    pid: &str,
) -> std::collections::BTreeMap<String, String> {
    let out = as_root(
        api,
        name,
        &format!("grep -E '^(CapBnd|CapEff|CapPrm|CapInh|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/{pid}/status"),
    )
    .await;
    assert_eq!(
        out.code,
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.out()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The agent loads the filter the daemon compiled (one filter, the one
/// runc loaded before) and keeps only the capabilities the sprite was
/// given, in itself and in everything it starts, also where it started
/// with `CAP_SYS_ADMIN` and `CAP_SETPCAP` to do so (no_new_privs off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_loads_the_filter_and_keeps_only_what_the_sprite_was_given() {
    let d = Daemon::start();
    let api = d.client();
    api.create("conf1").await;
    create_standard(&api, "conf2").await;
    // The default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
    // SETPCAP NET_BIND_SERVICE SYS_CHROOT AUDIT_WRITE SETFCAP.
    const DEFAULT: &str = "00000000a00405fb";
    // minimal: CHOWN DAC_OVERRIDE FOWNER KILL SETGID SETUID.
    const MINIMAL: &str = "00000000000000eb";
    confined_as(&api, "conf1", DEFAULT, "1").await;
    confined_as(&api, "conf2", DEFAULT, "0").await;
    // minimal with no_new_privs off: CAP_SETPCAP and CAP_SYS_ADMIN were
    // given for the load only.
    let (status, body) = post_policy(
        &api,
        "conf2",
        json!({"profile": "minimal", "noNewPrivileges": false}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    restart(&api, "conf2").await;
    confined_as(&api, "conf2", MINIMAL, "0").await;
    api.delete("conf1").await;
    api.delete("conf2").await;
}

/// Pid 1 (the agent) and a root shell of `name` are under one seccomp
/// filter with `nnp` and exactly the capabilities `caps`, and the filter
/// holds.
async fn confined_as(api: &Api, name: &str, caps: &str, nnp: &str) {
    for pid in ["1", "self"] {
        let got = confinement(api, name, pid).await;
        let field = |k: &str| got.get(k).cloned().unwrap_or_default();
        assert_eq!(field("Seccomp"), "2", "{name} {pid}: {got:?}");
        assert_eq!(field("Seccomp_filters"), "1", "{name} {pid}: {got:?}");
        assert_eq!(field("NoNewPrivs"), nnp, "{name} {pid}: {got:?}");
        assert_eq!(field("CapBnd"), caps, "{name} {pid}: {got:?}");
        assert_eq!(field("CapInh"), "0000000000000000", "{name} {pid}");
        assert_eq!(field("CapAmb"), "0000000000000000", "{name} {pid}");
        if pid == "1" {
            assert_eq!(field("CapEff"), caps, "{name}: {got:?}");
            assert_eq!(field("CapPrm"), caps, "{name}: {got:?}");
        }
    }
    // Nothing the agent starts hears of the filter or its descriptor.
    let env = as_root(api, name, "env; ls -l /proc/1/fd").await.out();
    assert!(
        !env.contains("SPRITE_SECCOMP_FD")
            && !env.contains("SPRITE_CAPS")
            && !env.contains("memfd:"),
        "{env}"
    );
    let denied = as_root(
        api,
        name,
        "mount -t tmpfs x /mnt || echo refused; unshare -U true || echo refused",
    )
    .await;
    assert_eq!(
        denied.out().matches("refused").count(),
        2,
        "{}",
        denied.out()
    );
}
