//! Egress: every sprite reaches the outside through pasta, never the host,
//! and its network policy is enforced by name and by address.
//!
//! "The internet" is a network namespace this test creates (a veth pair):
//! a DNS server answers `allowed.test` and `denied.test` with two addresses
//! there, and an HTTP server answers on both. Traffic goes nowhere else.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use common::Daemon;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record};
use serde_json::json;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with a DNS and an HTTP server, removed on drop.
struct FakeInternet {
    ns: String,
    host_if: String,
    /// Answers DNS (port 53) and HTTP; `allowed.test` resolves here.
    allowed: Ipv4Addr,
    /// `denied.test` resolves here; HTTP answers too.
    denied: Ipv4Addr,
    host_side: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) is needed");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl FakeInternet {
    async fn start() -> FakeInternet {
        let n = (std::process::id() % 200) as u8 + NEXT.fetch_add(1, Ordering::SeqCst) as u8;
        let ns = format!("spr-egress-{}-{n}", std::process::id());
        let host_if = format!("spreg{}h{n}", std::process::id() % 10000);
        let peer_if = format!("spreg{}p{n}", std::process::id() % 10000);
        let net = move |last: u8| Ipv4Addr::new(10, 213, n, last);
        let me = FakeInternet {
            ns: ns.clone(),
            host_if: host_if.clone(),
            allowed: net(2),
            denied: net(3),
            host_side: net(1),
        };
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", me.host_side),
            "dev",
            &host_if,
        ]);
        ip(&["link", "set", &host_if, "up"]);
        for a in [me.allowed, me.denied] {
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                &peer_if,
            ]);
        }
        ip(&["-n", &ns, "link", "set", &peer_if, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);

        // Sockets bound inside the namespace, served from this process.
        let path = format!("/run/netns/{ns}");
        let (udp, tcp) = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let udp = std::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(net(2)), 53)).unwrap();
            let tcp = std::net::TcpListener::bind("0.0.0.0:80").unwrap();
            udp.set_nonblocking(true).unwrap();
            tcp.set_nonblocking(true).unwrap();
            (udp, tcp)
        })
        .join()
        .unwrap();
        let (allowed, denied) = (me.allowed, me.denied);
        tokio::spawn(async move {
            let udp = tokio::net::UdpSocket::from_std(udp).unwrap();
            let mut buf = vec![0u8; 1500];
            loop {
                let Ok((len, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_available(true);
                r.add_queries(q.queries().to_vec());
                let name = q.queries()[0].name().clone();
                let addr = match name.to_ascii().trim_end_matches('.') {
                    "allowed.test" => Some(allowed),
                    "denied.test" => Some(denied),
                    _ => None,
                };
                match addr {
                    Some(a) if q.queries()[0].query_type() == hickory_proto::rr::RecordType::A => {
                        r.add_answer(Record::from_rdata(name, 60, RData::A(A(a))));
                    }
                    Some(_) => {}
                    None => {
                        r.set_response_code(ResponseCode::NXDomain);
                    }
                }
                let _ = udp.send_to(&r.to_vec().unwrap(), peer).await;
            }
        });
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let tcp = tokio::net::TcpListener::from_std(tcp).unwrap();
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let body = "hello from the internet\n";
                    let _ = s
                        .write_all(
                            format!(
                                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        me
    }

    fn upstream(&self) -> String {
        format!("{}:53", self.allowed)
    }
}

impl Drop for FakeInternet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Runs `script` as root in the sprite; returns stdout+stderr and whether it succeeded.
async fn try_sh(api: &common::Api, name: &str, script: &str) -> (bool, String) {
    let o = api
        .exec_with(name, &["sh", "-c", script], "user=root", &[])
        .await;
    let text = format!("{}{}", o.out(), String::from_utf8_lossy(&o.stderr));
    (o.code == Some(0), text)
}

/// Whether the sprite reaches a server at `host:port`: it sends a request
/// and looks for an answer (every server in these tests answers `HTTP/`).
async fn connects(api: &common::Api, name: &str, host: &str, port: u16) -> bool {
    let (_, out) = try_sh(
        api,
        name,
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 3 {host} {port}"),
    )
    .await;
    out.contains("HTTP/")
}

/// A host listener that answers every connection (so a reach shows).
async fn host_listener(addr: &str) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nHOST REACHED\n").await;
        }
    });
    (port, task)
}

/// An HTTP GET with busybox nc (busybox's static wget crashes here).
fn http_get(host: &str) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 3 {host} 80")
}

fn host_ipv4s() -> Vec<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter_map(|i| i.address.and_then(|a| a.as_sockaddr_in().map(|s| s.ip())))
        .filter(|a| !a.is_loopback())
        .collect()
}

/// Live pasta processes serving this daemon's sprites (by command line).
fn pasta_pids(d: &Daemon) -> Vec<i32> {
    let needle = d.data_dir.join("runc/pasta").display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprites_reach_out_but_never_the_host_or_each_other() {
    let net = FakeInternet::start().await;
    let d = Daemon::start_with(&["--dns-upstream", &net.upstream()]);
    let api = d.client();
    api.create("eg-a").await;
    api.create("eg-b").await;

    // Outbound works (NAT through pasta): the test namespace answers.
    let (_, out) = try_sh(&api, "eg-a", &http_get(&net.allowed.to_string())).await;
    assert!(out.contains("hello from the internet"), "{out}");

    // Host services: loopback, every interface address, the daemon's API.
    let (lo_port, host_lo) = host_listener("127.0.0.1:0").await;
    let (any_port, host_any) = host_listener("0.0.0.0:0").await;
    let api_port: u16 = d.addr.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        !connects(&api, "eg-a", "127.0.0.1", lo_port).await,
        "host loopback reached"
    );
    assert!(
        !connects(&api, "eg-a", "127.0.0.1", api_port).await,
        "daemon API reached"
    );
    for a in host_ipv4s() {
        let a = a.to_string();
        assert!(
            !connects(&api, "eg-a", &a, any_port).await,
            "host address {a} reached"
        );
        assert!(
            !connects(&api, "eg-a", &a, api_port).await,
            "API via {a} reached"
        );
    }
    assert!(!connects(&api, "eg-a", &net.host_side.to_string(), any_port).await);
    assert!(!connects(&api, "eg-a", "169.254.169.254", 80).await);
    // The sprite's root cannot lift the rules (no CAP_NET_ADMIN).
    let (ok, _) = try_sh(
        &api,
        "eg-a",
        "nft flush ruleset 2>&1 || ip link set lo down",
    )
    .await;
    assert!(!ok);

    // Another sprite: its listener is reachable from neither address.
    let (ok, out) = try_sh(
        &api,
        "eg-b",
        "(while true; do echo 'HTTP/1.0 200 FROM-B' | nc -l -p 7000 >/dev/null; done >/dev/null 2>&1 &) ; sleep 0.3",
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        connects(&api, "eg-b", "127.0.0.1", 7000).await,
        "eg-b's own listener"
    );
    assert!(!connects(&api, "eg-a", "127.0.0.1", 7000).await);
    for a in host_ipv4s() {
        assert!(!connects(&api, "eg-a", &a.to_string(), 7000).await);
    }

    // DNS works inside through the sprite's resolver.
    let (ok, out) = try_sh(&api, "eg-a", "cat /etc/resolv.conf; nslookup allowed.test").await;
    assert!(ok && out.contains(&net.allowed.to_string()), "{out}");

    // A destroyed sprite leaves no pasta behind.
    assert_eq!(pasta_pids(&d).len(), 2);
    api.delete("eg-a").await;
    api.delete("eg-b").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pasta_pids(&d).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "pasta left: {:?}",
            pasta_pids(&d)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    host_lo.abort();
    host_any.abort();
}

/// allowed.test works by name; denied.test neither resolves nor answers by address.
async fn check(api: &common::Api, denied: &str) {
    let (_, out) = try_sh(api, "pol", &http_get("allowed.test")).await;
    assert!(out.contains("hello"), "allowed.test: {out}");
    let (ok, out) = try_sh(api, "pol", "nslookup denied.test").await;
    assert!(!ok || !out.contains(denied), "denied.test resolved: {out}");
    assert!(
        !connects(api, "pol", denied, 80).await,
        "denied address reached"
    );
}

async fn set_policy(api: &common::Api, name: &str, body: serde_json::Value) {
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v1/sprites/{name}/policy/network"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_policy_is_enforced_by_name_and_address() {
    let net = FakeInternet::start().await;
    let mut d = Daemon::start_with(&[
        "--dns-upstream",
        &net.upstream(),
        "--idle-warm",
        "2s",
        "--idle-cold",
        "3s",
    ]);
    let api = d.client();
    api.create("pol").await;
    let (allowed, denied) = (net.allowed.to_string(), net.denied.to_string());

    // Allow-list: only allowed.test, by name and by the address it resolved to.
    let policy = json!({"rules": [
        {"domain": "allowed.test", "action": "allow"},
        {"domain": "*", "action": "deny"}
    ]});
    set_policy(&api, "pol", policy.clone()).await;
    check(&api, &denied).await;
    let got = api.get_json("/v1/sprites/pol/policy/network").await;
    assert_eq!(got, policy);
    let (_, inside) = try_sh(&api, "pol", "cat /.sprite/policy/network.json").await;
    let inside: serde_json::Value = serde_json::from_str(&inside).unwrap();
    assert_eq!(inside, policy);
    let (ok, _) = try_sh(&api, "pol", "echo x > /.sprite/policy/network.json").await;
    assert!(!ok, "the policy file is read-only inside");

    // Survives a daemon restart (sprite still running) ...
    d.restart();
    let api = d.client();
    assert_eq!(api.get_json("/v1/sprites/pol/policy/network").await, policy);
    check(&api, &denied).await;
    // ... and a cold boot; a cold sprite holds no pasta.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while api.get_json("/v1/sprites/pol").await["status"] != "cold" {
        assert!(std::time::Instant::now() < deadline, "never went cold");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        pasta_pids(&d).is_empty(),
        "pasta of a cold sprite: {:?}",
        pasta_pids(&d)
    );
    check(&api, &denied).await;

    // Open egress with one denied name: its address is blocked too, even
    // before anything looked it up.
    set_policy(
        &api,
        "pol",
        json!({"rules": [{"domain": "denied.test", "action": "deny"}]}),
    )
    .await;
    assert!(
        !connects(&api, "pol", &denied, 80).await,
        "denied address reached"
    );
    assert!(
        connects(&api, "pol", &allowed, 80).await,
        "open egress blocked"
    );
    let (ok, out) = try_sh(&api, "pol", "nslookup denied.test").await;
    assert!(!ok || !out.contains(&denied), "{out}");

    // Malformed policies are refused.
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites/pol/policy/network")
        .json(&json!({"rules": [{"include": "everything"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    api.delete("pol").await;
}
