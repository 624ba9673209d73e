//! Egress: every sprite reaches the outside (through the kernel datapath, a
//! veth pair per sprite, or through pasta), never the host nor another
//! sprite, and its network policy is enforced by name and by address.
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
        let (udp, dns_tcp, tcp) = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let dns = SocketAddr::new(IpAddr::V4(net(2)), 53);
            let udp = std::net::UdpSocket::bind(dns).unwrap();
            let dns_tcp = std::net::TcpListener::bind(dns).unwrap();
            let tcp = std::net::TcpListener::bind("0.0.0.0:80").unwrap();
            udp.set_nonblocking(true).unwrap();
            dns_tcp.set_nonblocking(true).unwrap();
            tcp.set_nonblocking(true).unwrap();
            (udp, dns_tcp, tcp)
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
                if let Some(r) = fake_answer(&buf[..len], allowed, denied, false) {
                    let _ = udp.send_to(&r, peer).await;
                }
            }
        });
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let l = tokio::net::TcpListener::from_std(dns_tcp).unwrap();
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while s.read_exact(&mut len).await.is_ok() {
                        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                        if s.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        let Some(r) = fake_answer(&q, allowed, denied, true) else {
                            return;
                        };
                        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&r);
                        if s.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
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

/// Addresses of `big.test`: too many for a 512-byte UDP answer.
const BIG: u8 = 40;

/// The fake internet's DNS: `allowed.test` and `denied.test` have one
/// address each; `big.test` has [`BIG`], so over UDP its answer is
/// truncated (TC, no records) and only TCP carries it; anything else is
/// NXDOMAIN.
fn fake_answer(query: &[u8], allowed: Ipv4Addr, denied: Ipv4Addr, tcp: bool) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries().first()?.clone();
    let mut r = Message::new();
    r.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_recursion_available(true);
    r.add_queries(q.queries().to_vec());
    let name = question.name().clone();
    let is_a = question.query_type() == hickory_proto::rr::RecordType::A;
    let addrs: Vec<Ipv4Addr> = match name.to_ascii().trim_end_matches('.') {
        "allowed.test" => vec![allowed],
        "denied.test" => vec![denied],
        "big.test" if !tcp => {
            r.set_truncated(true);
            Vec::new()
        }
        "big.test" => (0..BIG)
            .map(|i| Ipv4Addr::new(10, 213, 250, 100 + i))
            .collect(),
        _ => {
            r.set_response_code(ResponseCode::NXDomain);
            Vec::new()
        }
    };
    if is_a {
        for a in addrs {
            r.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A(a))));
        }
    }
    r.to_vec().ok()
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
    if out.contains("HTTP/") {
        eprintln!("from {name}, {host}:{port} answered: {out}");
    }
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

/// The host's IPv4 addresses that stay its own while a test runs: not the
/// fake internets' host sides (10.213/16; other tests make and remove
/// theirs, and an address gone is no longer the host's: a sprite that
/// connects to it then goes out, as to any address) nor sprite links
/// (10.239/16, checked on their own).
fn host_ipv4s() -> Vec<Ipv4Addr> {
    let fleeting = |a: &Ipv4Addr| {
        let o = a.octets();
        o[0] == 10 && (o[1] == 213 || o[1] == 239)
    };
    nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter_map(|i| i.address.and_then(|a| a.as_sockaddr_in().map(|s| s.ip())))
        .filter(|a| !a.is_loopback() && !fleeting(a))
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

/// The sprite's own IPv4 address on `eth0` (the kernel datapath's side of
/// its pair), if it has one.
async fn eth0_address(api: &common::Api, name: &str) -> Option<Ipv4Addr> {
    let (_, out) = try_sh(api, name, "ip -4 -o addr show dev eth0 2>/dev/null").await;
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
}

/// The host's side of the pair whose sprite side is `sprite_side`, in the
/// default sprite network: `spv<i>` for the `i`-th /31.
fn host_link(sprite_side: Ipv4Addr) -> String {
    let base = u32::from(Ipv4Addr::new(10, 239, 0, 0));
    format!("spv{}", (u32::from(sprite_side) - base) / 2)
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprites_reach_out_but_never_the_host_or_each_other() {
    reach_out_but_never_the_host_or_each_other("kernel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pasta_sprites_reach_out_but_never_the_host_or_each_other() {
    reach_out_but_never_the_host_or_each_other("pasta").await;
}

async fn reach_out_but_never_the_host_or_each_other(datapath: &str) {
    let net = FakeInternet::start().await;
    // Both sprites on sandboxes made ahead (where the isolation makes
    // them): everything below holds for them as for any. (Through pasta
    // each made ahead has its pasta already, which the counts below would
    // see.)
    let ahead = if common::isolation() == "container" && datapath == "kernel" {
        2
    } else {
        0
    };
    let d = Daemon::start_with(&[
        "--dns-upstream",
        &net.upstream(),
        "--egress",
        datapath,
        "--start-pool",
        &ahead.to_string(),
    ]);
    let api = d.client();
    let (a, b) = (format!("eg-{datapath}-a"), format!("eg-{datapath}-b"));
    let (a, b) = (a.as_str(), b.as_str());
    api.wait_made_ahead(ahead).await;
    api.create(a).await;
    api.create(b).await;
    assert_eq!(
        api.metric("sprited_creates_total{start=\"ahead\"}").await,
        ahead as f64
    );

    // Outbound works (NAT): the test namespace answers.
    let (_, out) = try_sh(&api, a, &http_get(&net.allowed.to_string())).await;
    assert!(out.contains("hello from the internet"), "{out}");
    // Its own loopback is up (on the kernel datapath the namespace is made
    // ahead and joined, and runc leaves a joined one's loopback down), and
    // sysfs shows its namespace's links: lo and eth0 only.
    // (gVisor's netstack is the Sentry's own.)
    if datapath == "kernel" && common::isolation() == "container" {
        let (_, flags) = try_sh(&api, a, "cat /sys/class/net/lo/flags").await;
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
        assert_eq!(flags & 1, 1, "lo is down: flags {flags:#x}");
        let (_, links) = try_sh(&api, a, "ls /sys/class/net").await;
        assert_eq!(
            links.split_whitespace().collect::<Vec<_>>(),
            ["eth0", "lo"],
            "{links}"
        );
    }

    // Host services: loopback, every interface address, the daemon's API.
    let (lo_port, host_lo) = host_listener("127.0.0.1:0").await;
    let (any_port, host_any) = host_listener("0.0.0.0:0").await;
    let api_port: u16 = d.addr.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        !connects(&api, a, "127.0.0.1", lo_port).await,
        "host loopback reached"
    );
    assert!(
        !connects(&api, a, "127.0.0.1", api_port).await,
        "daemon API reached"
    );
    for h in host_ipv4s() {
        let h = h.to_string();
        assert!(
            !connects(&api, a, &h, any_port).await,
            "host address {h} reached"
        );
        assert!(
            !connects(&api, a, &h, api_port).await,
            "API via {h} reached"
        );
    }
    assert!(!connects(&api, a, &net.host_side.to_string(), any_port).await);
    assert!(!connects(&api, a, "169.254.169.254", 80).await);
    // The sprite's root cannot lift the rules (no CAP_NET_ADMIN).
    let (ok, _) = try_sh(&api, a, "nft flush ruleset 2>&1 || ip link set lo down").await;
    assert!(!ok);

    // Another sprite: its listener is reachable from neither address.
    let (ok, out) = try_sh(
        &api,
        b,
        "(while true; do echo 'HTTP/1.0 200 FROM-B' | nc -l -p 7000 >/dev/null; done >/dev/null 2>&1 &) ; sleep 0.3",
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        connects(&api, b, "127.0.0.1", 7000).await,
        "{b}'s own listener"
    );
    assert!(!connects(&api, a, "127.0.0.1", 7000).await);
    for h in host_ipv4s() {
        assert!(
            !connects(&api, a, &h.to_string(), 7000).await,
            "{h}:7000 reached"
        );
    }

    // DNS works inside through the sprite's resolver.
    let (ok, out) = try_sh(&api, a, "cat /etc/resolv.conf; nslookup allowed.test").await;
    assert!(ok && out.contains(&net.allowed.to_string()), "{out}");

    let mut links = Vec::new();
    // The pair's inside is the sandbox's namespace: a container's own, or
    // under gVisor the namespace the Sentry runs in, which its programs
    // do not see (the checks above hold there alike).
    if datapath == "kernel" && common::isolation() != "container" {
        assert!(pasta_pids(&d).is_empty(), "pasta on the kernel datapath");
    } else if datapath == "kernel" {
        // Each sprite has its pair; neither reaches the other's address
        // nor the host's side of either pair.
        let (ea, eb) = (
            eth0_address(&api, a).await.expect("eth0 in a"),
            eth0_address(&api, b).await.expect("eth0 in b"),
        );
        assert_ne!(ea, eb);
        for (addr, sprite) in [(ea, a), (eb, b)] {
            let link = host_link(addr);
            assert!(link_exists(&link), "{link} for {sprite}");
            links.push(link);
        }
        // The host's side of a pair has no address at all (a start changes
        // no address of the host's): the sprite's default route leads to a
        // gateway that is only a neighbour entry.
        for link in &links {
            let on_link: Vec<String> = nix::ifaddrs::getifaddrs()
                .unwrap()
                .filter(|i| &i.interface_name == link)
                .filter_map(|i| {
                    i.address.and_then(|a| {
                        a.as_sockaddr_in()
                            .map(|s| s.ip().to_string())
                            .or_else(|| a.as_sockaddr_in6().map(|s| s.ip().to_string()))
                    })
                })
                .collect();
            assert!(on_link.is_empty(), "{link} has addresses {on_link:?}");
        }
        let (_, route) = try_sh(&api, a, "ip -4 route show default").await;
        assert!(
            route.contains("default via 169.254.1.1 dev eth0") && route.contains("onlink"),
            "{route}"
        );
        let (_, neigh) = try_sh(&api, a, "ip -4 neigh show 169.254.1.1").await;
        assert!(
            neigh.contains("lladdr ee:ee:ee:ee:ee:ee")
                && neigh.to_ascii_lowercase().contains("permanent"),
            "{neigh}"
        );
        assert!(
            !connects(&api, a, &eb.to_string(), 7000).await,
            "b reached from a"
        );
        // Neither the gateway nor what was the host's side of a pair before
        // (the /31's even address) leads anywhere.
        let gw_b = Ipv4Addr::from(u32::from(eb) - 1).to_string();
        let gw_a = Ipv4Addr::from(u32::from(ea) - 1).to_string();
        for gw in [gw_a, gw_b, "169.254.1.1".to_string()] {
            assert!(
                !connects(&api, a, &gw, any_port).await,
                "host via {gw} reached"
            );
            assert!(
                !connects(&api, a, &gw, api_port).await,
                "API via {gw} reached"
            );
        }
        // No IPv6 on the pair: nothing faces the host there.
        let (_, v6) = try_sh(&api, a, "ip -6 addr show dev eth0").await;
        assert!(!v6.contains("inet6"), "{v6}");
        assert!(pasta_pids(&d).is_empty(), "pasta on the kernel datapath");

        // The host's own table holds without the sprite's: with a's table
        // removed (from the host), a still reaches the internet and still
        // not the host, b, or the host's side of a pair.
        let secs = 100_000 + std::process::id() % 100_000;
        let marker = format!("sleep\0{secs}\0");
        let (ok, out) = try_sh(
            &api,
            a,
            &format!("(sleep {secs} >/dev/null 2>&1 &); sleep 0.2"),
        )
        .await;
        assert!(ok, "{out}");
        let pid = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| c == marker.as_bytes())
                    .unwrap_or(false)
            })
            .expect("the marked process in a");
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["nft", "delete", "table", "inet", "sprite"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (_, out) = try_sh(&api, a, &http_get(&net.allowed.to_string())).await;
        assert!(out.contains("hello from the internet"), "{out}");
        for h in host_ipv4s() {
            assert!(
                !connects(&api, a, &h.to_string(), any_port).await,
                "host {h} without the sprite's table"
            );
        }
        let gw_a = Ipv4Addr::from(u32::from(ea) - 1).to_string();
        for gw in [gw_a, "169.254.1.1".to_string()] {
            assert!(
                !connects(&api, a, &gw, any_port).await,
                "{gw} without the sprite's table"
            );
            assert!(
                !connects(&api, a, &gw, api_port).await,
                "API via {gw} without the sprite's table"
            );
        }
        assert!(
            !connects(&api, a, &eb.to_string(), 7000).await,
            "b without a's table"
        );
        // Nor can it send as another sprite (its root cannot add an
        // address; host root does, in a's namespace, and sends from b's
        // address through a's pair: the host drops it).
        let spoof = format!(
            "import socket\n\
             s = socket.socket(); s.settimeout(3); s.bind(('{eb}', 0))\n\
             try:\n    s.connect(('{}', 80)); print('CONNECTED')\n\
             except OSError as e:\n    print('refused', e)\n",
            net.allowed
        );
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["sh", "-c"])
            .arg(format!(
                "ip addr add {eb}/32 dev eth0 && python3 -c \"$0\"; ip addr del {eb}/32 dev eth0"
            ))
            .arg(&spoof)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("refused"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        assert_eq!(pasta_pids(&d).len(), 2);
    }

    // A destroyed sprite leaves no pasta and no link behind.
    api.delete(a).await;
    api.delete(b).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pasta_pids(&d).is_empty() || links.iter().any(|l| link_exists(l)) {
        assert!(
            std::time::Instant::now() < deadline,
            "pasta left: {:?}, links left: {:?}",
            pasta_pids(&d),
            links.iter().filter(|l| link_exists(l)).collect::<Vec<_>>()
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
    let ahead = if common::isolation() == "container" {
        1
    } else {
        0
    };
    let mut d = Daemon::start_with(&[
        "--dns-upstream",
        &net.upstream(),
        "--idle-warm",
        "2s",
        "--idle-cold",
        "3s",
        "--start-pool",
        &ahead.to_string(),
    ]);
    let api = d.client();
    // On a sandbox made ahead where the isolation makes them.
    api.wait_made_ahead(ahead).await;
    api.create("pol").await;
    assert_eq!(
        api.metric("sprited_creates_total{start=\"ahead\"}").await,
        ahead as f64
    );
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

/// DNS queries over one TCP connection to the sprite's resolver, made in
/// the sprite's network namespace (so its nft rules apply); the answers.
fn tcp_queries(pid: u32, names: &[&str]) -> Vec<Message> {
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};
    use std::io::{Read, Write};
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    // Where the sprite's resolver listens in its namespace: its loopback,
    // or under gVisor (whose loopback is the Sentry's) the veth's gateway.
    let resolver = match common::isolation().as_str() {
        "gvisor" => "10.200.0.1:53",
        _ => "127.0.0.53:53",
    };
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut s = std::net::TcpStream::connect(resolver).expect("resolver over TCP");
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut answers = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let mut m = Message::new();
            m.set_id(i as u16 + 1)
                .set_recursion_desired(true)
                .add_query(Query::query(Name::from_ascii(n).unwrap(), RecordType::A));
            let q = m.to_vec().unwrap();
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            s.write_all(&framed).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut r).unwrap();
            let r = Message::from_vec(&r).unwrap();
            assert_eq!(r.id(), i as u16 + 1);
            answers.push(r);
        }
        answers
    })
    .join()
    .unwrap()
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            Some(RData::A(a)) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_answers_over_tcp_with_the_same_policy() {
    let net = FakeInternet::start().await;
    let d = Daemon::start_with(&["--dns-upstream", &net.upstream()]);
    let api = d.client();
    api.create("tcpdns").await;
    set_policy(
        &api,
        "tcpdns",
        json!({"rules": [
            {"domain": "allowed.test", "action": "allow"},
            {"domain": "big.test", "action": "allow"},
            {"domain": "*", "action": "deny"}
        ]}),
    )
    .await;
    let pid = d.init_pid(&api.id_of("tcpdns").await);
    let answers = tcp_queries(pid, &["allowed.test", "denied.test", "big.test"]);
    // Allowed: the upstream's answer.
    assert_eq!(a_records(&answers[0]), vec![net.allowed]);
    // Denied: NXDOMAIN, as over UDP.
    assert_eq!(answers[1].response_code(), ResponseCode::NXDomain);
    assert!(a_records(&answers[1]).is_empty());
    // Too big for UDP upstream: asked again over TCP, whole.
    assert!(!answers[2].truncated());
    assert_eq!(a_records(&answers[2]).len(), usize::from(BIG));
    // Over UDP, the sprite's own tools resolve as before.
    let (ok, out) = try_sh(&api, "tcpdns", "nslookup allowed.test").await;
    assert!(ok && out.contains(&net.allowed.to_string()), "{out}");
    api.delete("tcpdns").await;
}

/// A new interface on the host (a veth pair, both ends here: the kernel
/// has no dummy driver), deleted on drop.
struct NewLink(String);

impl NewLink {
    fn add(name: &str, addrs: &[&str]) -> NewLink {
        let peer = format!("{name}p");
        ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
        let link = NewLink(name.to_string());
        for a in addrs {
            link.addr("add", a);
        }
        ip(&["link", "set", name, "up"]);
        ip(&["link", "set", &peer, "up"]);
        link
    }

    fn addr(&self, op: &str, cidr: &str) {
        ip(&["addr", op, cidr, "dev", &self.0]);
    }
}

impl Drop for NewLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// The sprite's blocked IPv4 set as nft lists it.
fn blocked4(pid: u32) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["nft", "list", "set", "inet", "sprite", "blocked4"])
        .output()
        .expect("nsenter and nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the sprite's blocked set does (or does not) hold `addr`.
async fn wait_blocked(pid: u32, addr: &str, held: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let set = blocked4(pid);
        if set.contains(addr) == held {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} {} the blocked set after 10 s:\n{set}",
            if held { "never entered" } else { "never left" }
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// An address the host gains after the daemon started (a new bridge, a
/// VPN, a DHCP lease) is blocked in sprites already running, in sprites
/// adopted by a daemon restarted after it appeared, and in sprites started
/// later; once the host drops it, it is no longer the host's to protect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_the_host_gains_later_are_blocked_too() {
    let mut d = Daemon::start();
    let api = d.client();
    api.create("late-a").await;
    let pid = d.init_pid(&api.id_of("late-a").await);
    let (port, host_any) = host_listener("0.0.0.0:0").await;

    let name = format!("spd{}", std::process::id() % 1_000_000);
    let link = NewLink::add(&name, &["198.51.100.77/32"]);
    wait_blocked(pid, "198.51.100.77", true).await;
    assert!(
        !connects(&api, "late-a", "198.51.100.77", port).await,
        "a host service reached on an address added after start"
    );

    // Added while no daemon ran: the restarted daemon adopts the sprite
    // and brings its list up to date.
    d.kill9();
    link.addr("add", "198.51.100.99/32");
    d.spawn();
    wait_blocked(pid, "198.51.100.99", true).await;
    assert!(!connects(&api, "late-a", "198.51.100.99", port).await);

    // Dropped by the host: unblocked (it may be someone else's now).
    link.addr("del", "198.51.100.77/32");
    wait_blocked(pid, "198.51.100.77", false).await;
    assert!(blocked4(pid).contains("198.51.100.99"));

    // A sprite started now starts with the current list.
    api.create("late-b").await;
    let pid_b = d.init_pid(&api.id_of("late-b").await);
    let set = blocked4(pid_b);
    assert!(
        set.contains("198.51.100.99") && !set.contains("198.51.100.77"),
        "{set}"
    );
    assert!(!connects(&api, "late-b", "198.51.100.99", port).await);

    drop(link);
    api.delete("late-a").await;
    api.delete("late-b").await;
    host_any.abort();
}
