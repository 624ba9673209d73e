//! The per-sprite DNS resolver: a UDP socket and a TCP listener bound at
//! [`RESOLVER`] inside the sprite's network namespace (the daemon binds them
//! from a thread that entered the namespace; sockets stay where they were
//! made), served by the daemon. Allowed names are forwarded to the upstream
//! resolver; denied ones get NXDOMAIN, over either transport. The addresses
//! answered feed the sprite's nft sets.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::RData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::policy;
use super::Attached;

/// Where a sprite's `/etc/resolv.conf` points.
pub const RESOLVER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 53);
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// TCP connections one sprite may hold open to its resolver (each is a
/// socket of the daemon's).
const MAX_TCP_CLIENTS: usize = 32;
/// A TCP client quiet for this long is disconnected (RFC 7766 suggests
/// seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Largest DNS message over UDP (with EDNS) or TCP.
const MAX_MESSAGE: usize = 65535;
/// UDP queries of one sprite being answered at once (each holds a task and
/// an upstream socket of the daemon's). Beyond it a query is dropped, as a
/// busy resolver drops them: the client asks again.
const MAX_UDP_INFLIGHT: usize = 64;
/// At most one warning of a kind per sprite in this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How a query reached the resolver.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The resolver's sockets in a sprite's namespace.
pub struct Sockets {
    pub udp: UdpSocket,
    pub tcp: std::net::TcpListener,
}

/// Binds port 53 (UDP and TCP) at `at` ([`RESOLVER`] for a container) in
/// the network namespace `netns` (a path that opens it).
pub fn bind_in_netns(netns: &std::path::Path, at: IpAddr) -> std::io::Result<Sockets> {
    let ns = std::fs::File::open(netns)?;
    std::thread::spawn(move || {
        // Only this short-lived thread enters the namespace.
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let udp = UdpSocket::bind((at, 53))?;
        udp.set_nonblocking(true)?;
        let tcp = std::net::TcpListener::bind((at, 53))?;
        tcp.set_nonblocking(true)?;
        Ok(Sockets { udp, tcp })
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// Serves queries on both sockets until aborted.
pub async fn serve(sockets: Sockets, sprite: Arc<Attached>, upstream: SocketAddr) {
    tokio::join!(
        serve_udp(sockets.udp, sprite.clone(), upstream),
        serve_tcp(sockets.tcp, sprite, upstream)
    );
}

/// Warnings that a sprite can cause at will, logged at most once per
/// [`WARN_EVERY`] with the count of those left out (a flood of queries
/// must not become a flood of log lines).
#[derive(Default)]
pub struct Throttle {
    /// (when the last line was written, lines left out since)
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Throttle {
    /// Whether to write this one, and how many were left out before it.
    pub fn pass(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        match st.0 {
            Some(last) if now.duration_since(last) < WARN_EVERY => {
                st.1 += 1;
                None
            }
            _ => {
                let skipped = st.1;
                *st = (Some(now), 0);
                Some(skipped)
            }
        }
    }
}

async fn serve_udp(sock: UdpSocket, sprite: Arc<Attached>, upstream: SocketAddr) {
    let sock = match tokio::net::UdpSocket::from_std(sock) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!(error = %e, "resolver socket");
            return;
        }
    };
    let inflight = Arc::new(tokio::sync::Semaphore::new(MAX_UDP_INFLIGHT));
    let dropped = Throttle::default();
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "resolver receive");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = inflight.clone().try_acquire_owned() else {
            if let Some(skipped) = dropped.pass() {
                tracing::warn!(sprite = %sprite.id, skipped, "resolver busy: dropping queries");
            }
            continue;
        };
        let query = buf[..n].to_vec();
        let sock = sock.clone();
        let sprite = sprite.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(reply) = answer(&sprite, &query, upstream, Transport::Udp).await {
                let _ = sock.send_to(&reply, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: std::net::TcpListener, sprite: Arc<Attached>, upstream: SocketAddr) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "resolver listener");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CLIENTS));
    loop {
        // A client beyond the limit waits in the backlog for a slot.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "resolver accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let sprite = sprite.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_tcp_client(stream, &sprite, upstream).await;
        });
    }
}

/// Length-prefixed queries on one connection, answered in order, until the
/// client closes it or stays quiet for [`TCP_IDLE`].
async fn serve_tcp_client(mut stream: TcpStream, sprite: &Attached, upstream: SocketAddr) {
    loop {
        let query = match tokio::time::timeout(TCP_IDLE, read_message(&mut stream)).await {
            Ok(Ok(Some(q))) => q,
            _ => return,
        };
        let Some(reply) = answer(sprite, &query, upstream, Transport::Tcp).await else {
            return;
        };
        if write_message(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

/// One length-prefixed DNS message; `None` at a clean end of the stream.
async fn read_message(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg).await?;
    Ok(Some(msg))
}

async fn write_message(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len =
        u16::try_from(msg.len()).map_err(|_| std::io::Error::other("a DNS message over 64 KiB"))?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await
}

async fn answer(
    sprite: &Attached,
    query: &[u8],
    upstream: SocketAddr,
    transport: Transport,
) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    // One question per query (RFC 9619): the policy judges the name asked,
    // so a second question would pass unjudged.
    let [question] = msg.queries() else {
        return refuse(&msg, ResponseCode::FormErr);
    };
    let name = question.name().to_ascii();
    let pol = sprite.policy();
    if !policy::allows(&pol, &name) {
        tracing::debug!(sprite = %sprite.id, %name, "denied name");
        if !policy::restrictive(&pol) {
            // Open egress: the denied name's addresses must be blocked too.
            if let Ok(reply) = forward_as(query, upstream, transport).await {
                sprite.add("deny", &addresses(&reply)).await;
            }
        }
        return refuse(&msg, ResponseCode::NXDomain);
    }
    match forward_as(query, upstream, transport).await {
        Ok(reply) => {
            if policy::restrictive(&pol) {
                sprite.add("allow", &addresses(&reply)).await;
            }
            Some(reply)
        }
        Err(e) => {
            if let Some(skipped) = sprite.upstream_warnings.pass() {
                tracing::warn!(sprite = %sprite.id, %name, error = %e, skipped, "upstream resolver");
            }
            refuse(&msg, ResponseCode::ServFail)
        }
    }
}

/// The upstream's answer, as the client's transport can carry it: over
/// UDP as it comes (a truncated answer tells the client to ask again over
/// TCP); for a TCP client whole, asking the upstream over TCP when its UDP
/// answer was truncated.
pub async fn forward_as(
    query: &[u8],
    upstream: SocketAddr,
    transport: Transport,
) -> std::io::Result<Vec<u8>> {
    let reply = forward(query, upstream).await?;
    if transport == Transport::Tcp && truncated(&reply) {
        return forward_tcp(query, upstream).await;
    }
    Ok(reply)
}

/// Whether a DNS message has the TC (truncated) flag.
pub fn truncated(msg: &[u8]) -> bool {
    msg.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

/// Sends `query` to `upstream` over TCP and returns its answer.
pub async fn forward_tcp(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let mut s = TcpStream::connect(upstream).await?;
        write_message(&mut s, query).await?;
        read_message(&mut s)
            .await?
            .ok_or_else(|| std::io::Error::other("the upstream resolver closed the connection"))
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer from the upstream resolver over TCP",
            )
        })?
}

/// Sends `query` to `upstream` over UDP and returns its answer.
pub async fn forward(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(upstream).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, RwLock};

    fn sprite() -> Arc<Attached> {
        Arc::new(Attached {
            id: "dns-test".into(),
            netns: "/nonexistent".into(),
            nft_bin: "/bin/false".into(),
            policy: RwLock::new(Default::default()),
            resolver: Mutex::new(None),
            upstream_warnings: Throttle::default(),
            blocked_update: tokio::sync::Mutex::new(()),
        })
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    fn query(names: &[&str]) -> Vec<u8> {
        use hickory_proto::op::Query;
        use hickory_proto::rr::{Name, RecordType};
        let mut m = Message::new();
        m.set_id(7).set_recursion_desired(true);
        for n in names {
            m.add_query(Query::query(
                Name::from_ascii(n).expect("name"),
                RecordType::A,
            ));
        }
        m.to_vec().expect("encode")
    }

    /// A flood of queries an upstream never answers holds at most
    /// MAX_UDP_INFLIGHT sockets of the daemon's, not one per packet.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_holds_a_bounded_number_of_sockets() {
        // An upstream that reads and never answers.
        let upstream = std::net::UdpSocket::bind("127.0.0.1:0").expect("upstream");
        let up = upstream.local_addr().expect("addr");
        let resolver = UdpSocket::bind("127.0.0.1:0").expect("resolver");
        resolver.set_nonblocking(true).expect("nonblocking");
        let at = resolver.local_addr().expect("addr");
        let before = open_fds();
        let task = tokio::spawn(serve_udp(resolver, sprite(), up));
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("client");
        let q = query(&["flood.example."]);
        for _ in 0..2000 {
            client.send_to(&q, at).await.expect("send");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = open_fds();
        task.abort();
        drop(upstream);
        assert!(
            during < before + MAX_UDP_INFLIGHT + 16,
            "{during} fds open during the flood, {before} before"
        );
    }

    /// Two questions in one query are refused (FORMERR): the policy judges
    /// one name.
    #[tokio::test]
    async fn one_question_per_query() {
        let upstream = std::net::UdpSocket::bind("127.0.0.1:0").expect("upstream");
        let reply = answer(
            &sprite(),
            &query(&["a.example.", "b.example."]),
            upstream.local_addr().expect("addr"),
            Transport::Udp,
        )
        .await
        .expect("a reply");
        let m = Message::from_vec(&reply).expect("decode");
        assert_eq!(m.response_code(), ResponseCode::FormErr);
    }

    #[test]
    fn the_throttle_passes_one_per_period_and_counts_the_rest() {
        let t = Throttle::default();
        assert_eq!(t.pass(), Some(0));
        for _ in 0..5 {
            assert_eq!(t.pass(), None);
        }
        let mut st = t.state.lock().expect("lock");
        st.0 = Some(std::time::Instant::now() - WARN_EVERY);
        drop(st);
        assert_eq!(t.pass(), Some(5));
    }
}
