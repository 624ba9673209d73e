//! The per-sprite DNS resolver: a UDP socket bound at [`RESOLVER`] inside
//! the sprite's network namespace (the daemon binds it from a thread that
//! entered the namespace; the socket stays there), served by the daemon.
//! Allowed names are forwarded to the upstream resolver; denied ones get
//! NXDOMAIN. The addresses answered feed the sprite's nft sets.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::RData;

use super::policy;
use super::Attached;

/// Where a sprite's `/etc/resolv.conf` points.
pub const RESOLVER: &str = "127.0.0.53";
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// Binds UDP port 53 at [`RESOLVER`] in the network namespace of `pid`.
pub fn bind_in_netns(pid: u32) -> std::io::Result<UdpSocket> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::spawn(move || {
        // Only this short-lived thread enters the namespace.
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let sock = UdpSocket::bind((RESOLVER, 53))?;
        sock.set_nonblocking(true)?;
        Ok(sock)
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// Serves queries on `sock` until aborted.
pub async fn serve(sock: UdpSocket, sprite: Arc<Attached>, upstream: SocketAddr) {
    let sock = match tokio::net::UdpSocket::from_std(sock) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!(error = %e, "resolver socket");
            return;
        }
    };
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "resolver receive");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let query = buf[..n].to_vec();
        let sock = sock.clone();
        let sprite = sprite.clone();
        tokio::spawn(async move {
            if let Some(reply) = answer(&sprite, &query, upstream).await {
                let _ = sock.send_to(&reply, peer).await;
            }
        });
    }
}

async fn answer(sprite: &Attached, query: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    let name = msg.queries().first()?.name().to_ascii();
    let pol = sprite.policy();
    if !policy::allows(&pol, &name) {
        tracing::debug!(sprite = %sprite.id, %name, "denied name");
        if !policy::restrictive(&pol) {
            // Open egress: the denied name's addresses must be blocked too.
            if let Ok(reply) = forward(query, upstream).await {
                sprite.add("deny", &addresses(&reply)).await;
            }
        }
        return refuse(&msg, ResponseCode::NXDomain);
    }
    match forward(query, upstream).await {
        Ok(reply) => {
            if policy::restrictive(&pol) {
                sprite.add("allow", &addresses(&reply)).await;
            }
            Some(reply)
        }
        Err(e) => {
            tracing::warn!(sprite = %sprite.id, %name, error = %e, "upstream resolver");
            refuse(&msg, ResponseCode::ServFail)
        }
    }
}

/// Sends `query` to `upstream` and returns its answer.
pub async fn forward(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(upstream).await?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        sock.send(query).await?;
        if let Ok(n) = tokio::time::timeout(UPSTREAM_TIMEOUT, sock.recv(&mut buf)).await {
            let n = n?;
            return Ok(buf[..n].to_vec());
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer from the upstream resolver",
    ))
}

/// A/AAAA addresses in an answer.
pub fn addresses(reply: &[u8]) -> Vec<IpAddr> {
    let Ok(msg) = Message::from_vec(reply) else {
        return Vec::new();
    };
    msg.answers()
        .iter()
        .filter_map(|r| match r.data() {
            Some(RData::A(a)) => Some(IpAddr::V4(a.0)),
            Some(RData::AAAA(a)) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn refuse(query: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    let mut r = Message::new();
    r.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code);
    r.add_queries(query.queries().to_vec());
    r.to_vec().ok()
}

/// An A query for `name` (to learn a denied name's addresses).
pub fn a_query(name: &str) -> Option<Vec<u8>> {
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};
    let name = Name::from_ascii(name).ok()?;
    let mut m = Message::new();
    m.set_id(rand::random())
        .set_recursion_desired(true)
        .add_query(Query::query(name, RecordType::A));
    m.to_vec().ok()
}

/// The first `nameserver` of the host's resolv.conf.
pub fn host_upstream() -> Option<SocketAddr> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next() == Some("nameserver"))
            .then(|| f.next())
            .flatten()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
    })
}
