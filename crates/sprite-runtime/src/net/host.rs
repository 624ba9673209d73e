//! The host's own addresses: what a sandbox must never reach, kept current
//! as interfaces and routes change ([`Blocked`], [`watch`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, RwLock, Weak};
use std::time::Duration;

use ipnet::IpNet;

use crate::error::{Result, RuntimeError};

/// Ranges no sandbox may send to, whatever the host looks like.
const ALWAYS_BLOCKED: [&str; 11] = [
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// [`ALWAYS_BLOCKED`], every address on the host's interfaces, and the
/// default gateways (pasta's "gateway" leads to them); but not the
/// addresses of sprite links inside `sprite_network`, which the caller
/// blocks whole (listing each would change the list with every sandbox).
pub fn blocked_destinations(sprite_network: ipnet::Ipv4Net) -> Result<Vec<IpNet>> {
    let mut out: Vec<IpNet> = ALWAYS_BLOCKED
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| RuntimeError::Network(format!("getifaddrs: {e}")))?;
    for ifa in addrs {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            if ifa.interface_name.starts_with(super::veth::LINK_PREFIX)
                && sprite_network.contains(&v4.ip())
            {
                continue;
            }
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        out.push(IpNet::from(ip));
    }
    out.extend(default_gateways().into_iter().map(IpNet::from));
    out.sort();
    out.dedup();
    Ok(out)
}

/// The destinations every sandbox must not reach, as the host looks now:
/// [`blocked_destinations`] plus fixed extras (the daemon's listen address),
/// with a generation that grows with every change, and the generation each
/// sandbox's ruleset was made with (by [`super::Egress`]'s attach), so that
/// whoever updates running sandboxes knows which hold an older list.
#[derive(Debug)]
pub struct Blocked {
    extra: Vec<IpNet>,
    sprite_network: ipnet::Ipv4Net,
    now: RwLock<(u64, Vec<IpNet>)>,
    made_with: Mutex<HashMap<String, u64>>,
}

impl Blocked {
    /// The host's destinations now, and `extra`, which must hold
    /// `sprite_network` (see [`blocked_destinations`]).
    pub fn from_host(extra: &[IpNet], sprite_network: ipnet::Ipv4Net) -> Result<Self> {
        let list = Self::compute(extra, sprite_network)?;
        Ok(Blocked {
            extra: extra.to_vec(),
            sprite_network,
            now: RwLock::new((1, list)),
            made_with: Mutex::new(HashMap::new()),
        })
    }

    fn compute(extra: &[IpNet], sprite_network: ipnet::Ipv4Net) -> Result<Vec<IpNet>> {
        let mut list = blocked_destinations(sprite_network)?;
        list.extend_from_slice(extra);
        list.sort();
        list.dedup();
        Ok(list)
    }

    /// `(generation, list)` as they are now.
    pub fn current(&self) -> (u64, Vec<IpNet>) {
        self.now.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The sprites' own network, whose links' addresses the list leaves out.
    pub fn sprite_network(&self) -> ipnet::Ipv4Net {
        self.sprite_network
    }

    /// Looks at the host again; the new generation if the list changed.
    pub fn refresh(&self) -> Result<Option<u64>> {
        let list = Self::compute(&self.extra, self.sprite_network)?;
        let mut now = self.now.write().unwrap_or_else(|p| p.into_inner());
        if now.1 == list {
            return Ok(None);
        }
        now.0 += 1;
        now.1 = list;
        Ok(Some(now.0))
    }

    /// Records that sandbox `id`'s ruleset holds generation `generation`.
    pub fn made(&self, id: &str, generation: u64) {
        self.lock_made().insert(id.to_string(), generation);
    }

    /// Forgets a sandbox that is gone.
    pub fn forget(&self, id: &str) {
        self.lock_made().remove(id);
    }

    /// Whether sandbox `id` was made (by this process) with the current list.
    pub fn is_current(&self, id: &str) -> bool {
        let generation = self.current().0;
        self.lock_made().get(id) == Some(&generation)
    }

    fn lock_made(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.made_with.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Address and route changes the kernel announces (rtnetlink groups):
/// IPv4 and IPv6 interface addresses and routes (a new default gateway).
const GROUPS: u32 = (libc::RTMGRP_IPV4_IFADDR
    | libc::RTMGRP_IPV6_IFADDR
    | libc::RTMGRP_IPV4_ROUTE
    | libc::RTMGRP_IPV6_ROUTE) as u32;

/// Calls `changed` (from a thread of its own) soon after the kernel
/// announces an address or route change that can change
/// [`blocked_destinations`] (not a sprite link's own address in
/// `sprite_network`, nor a route other than a default one: see
/// [`matters`]), at most once per `settle` (announcements come in bursts),
/// and at least every `every` whatever it announced (a missed
/// announcement, when its buffer overflowed, is caught up). Stops when
/// `alive` can no longer be upgraded.
pub fn watch<T: Send + Sync + 'static>(
    alive: Weak<T>,
    sprite_network: ipnet::Ipv4Net,
    settle: Duration,
    every: Duration,
    changed: impl Fn() + Send + 'static,
) -> Result<()> {
    use nix::sys::socket::{
        bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    use std::os::fd::AsFd;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| RuntimeError::Network(format!("netlink socket: {e}")))?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, GROUPS),
    )
    .map_err(|e| RuntimeError::Network(format!("netlink bind: {e}")))?;
    let poll_ms = |d: Duration| {
        nix::poll::PollTimeout::try_from(d.as_millis().min(60_000) as i32)
            .unwrap_or(nix::poll::PollTimeout::MAX)
    };
    std::thread::Builder::new()
        .name("host-addresses".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut last = std::time::Instant::now();
            // Wakes at least once a second, to notice `alive` gone.
            let tick = Duration::from_secs(1).min(every);
            loop {
                if alive.upgrade().is_none() {
                    return;
                }
                let mut fds = [nix::poll::PollFd::new(
                    fd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let announced = match nix::poll::poll(&mut fds, poll_ms(tick)) {
                    Ok(0) => false,
                    Ok(_) => {
                        // Drains the burst; an overflow (ENOBUFS: some were
                        // lost) is a change too.
                        std::thread::sleep(settle);
                        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
                        let mut seen = false;
                        loop {
                            match recv(raw, &mut buf, MsgFlags::MSG_DONTWAIT) {
                                Ok(0) | Err(nix::errno::Errno::EAGAIN) => break,
                                Ok(n) => {
                                    seen |= buf.get(..n).is_none_or(|m| matters(m, sprite_network))
                                }
                                Err(nix::errno::Errno::EINTR) => {}
                                Err(_) => {
                                    seen = true;
                                    break;
                                }
                            }
                        }
                        seen
                    }
                    Err(nix::errno::Errno::EINTR) => false,
                    Err(e) => {
                        tracing::warn!(error = %e, "watching the host's addresses stopped");
                        return;
                    }
                };
                if announced || last.elapsed() >= every {
                    last = std::time::Instant::now();
                    changed();
                }
            }
        })
        .map_err(|e| RuntimeError::Network(format!("starting the address watcher: {e}")))?;
    Ok(())
}

/// Whether a datagram of rtnetlink announcements holds one that can change
/// [`blocked_destinations`]. Every sandbox the kernel datapath starts adds
/// an address to its host-side link and a route to it; each made the
/// watcher list every interface and address on the host again
/// (`getifaddrs`), which grows with the sprites running. What is left out:
/// an IPv4 address on a sprite link inside `sprite_network` (the list
/// leaves those out too), and a route that is not a default one (the list
/// takes only default gateways from the routes). Anything else, or
/// anything it cannot read, counts.
pub(crate) fn matters(datagram: &[u8], sprite_network: ipnet::Ipv4Net) -> bool {
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::RouteNetlinkMessage as M;
    let mut at = 0;
    while at < datagram.len() {
        let Ok(msg) = NetlinkMessage::<M>::deserialize(&datagram[at..]) else {
            return true;
        };
        let len = msg.header.length as usize;
        if len == 0 {
            return true;
        }
        at += len.next_multiple_of(4);
        let counts = match &msg.payload {
            NetlinkPayload::InnerMessage(M::NewAddress(a) | M::DelAddress(a)) => {
                !sprite_link_address(a, sprite_network)
            }
            NetlinkPayload::InnerMessage(M::NewRoute(r) | M::DelRoute(r)) => {
                r.header.destination_prefix_length == 0
            }
            _ => true,
        };
        if counts {
            return true;
        }
    }
    false
}

/// Whether an address announcement is of an IPv4 address inside
/// `sprite_network` on a sprite link.
fn sprite_link_address(
    a: &netlink_packet_route::address::AddressMessage,
    sprite_network: ipnet::Ipv4Net,
) -> bool {
    use netlink_packet_route::address::AddressAttribute;
    let mut label = None;
    let mut local = None;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Label(l) => label = Some(l.as_str()),
            AddressAttribute::Local(IpAddr::V4(ip)) => local = Some(*ip),
            _ => {}
        }
    }
    label.is_some_and(|l| l.starts_with(super::veth::LINK_PREFIX))
        && local.is_some_and(|ip| sprite_network.contains(&ip))
}

/// Default gateways from /proc/net/route and /proc/net/ipv6_route.
pub fn default_gateways() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(table) = std::fs::read_to_string("/proc/net/route") {
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 2 && f[1] == "00000000" {
                if let Ok(gw) = u32::from_str_radix(f[2], 16) {
                    // The file holds the address in host (little-endian) order.
                    let ip = Ipv4Addr::from(gw.swap_bytes());
                    if !ip.is_unspecified() {
                        out.push(IpAddr::V4(ip));
                    }
                }
            }
        }
    }
    if let Ok(table) = std::fs::read_to_string("/proc/net/ipv6_route") {
        for line in table.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 4 && f[1] == "00" {
                if let Ok(gw) = u128::from_str_radix(f[4], 16) {
                    let ip = Ipv6Addr::from(gw);
                    if !ip.is_unspecified() {
                        out.push(IpAddr::V6(ip));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Announcements the kernel makes, read in a network namespace of the
    /// test's own (a thread's: it goes with the thread): a sprite link's
    /// address in the sprite network does not count, any other address
    /// does.
    #[test]
    fn a_sprite_links_address_is_not_a_change() {
        use nix::sys::socket::{
            bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
            SockType,
        };
        use std::os::fd::AsRawFd;
        let net: ipnet::Ipv4Net = "10.199.0.0/16".parse().unwrap();
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("a network namespace of the test's own (the tests run as root)");
            let fd = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                SockProtocol::NetlinkRoute,
            )
            .expect("netlink socket");
            bind(fd.as_raw_fd(), &NetlinkAddr::new(0, GROUPS)).expect("bind");
            // What was announced since the last call, one bool per datagram.
            let announced = || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                    seen.push(matters(&buf[..n], net));
                }
                seen
            };
            let mut rtnl = super::super::rtnl::Rtnl::open().expect("rtnl");
            let here = std::fs::File::open("/proc/thread-self/ns/net").expect("netns");
            let mut link = |name: &str| {
                rtnl.add_veth(
                    name,
                    [2, 0, 0, 0, 0, 1],
                    &format!("{name}p"),
                    here.as_raw_fd(),
                )
                .expect("veth");
                rtnl.index(name).expect("index")
            };
            let (sprite, other) = (link("spvtest0"), link("other0"));
            announced();
            rtnl.add_address(sprite, "10.199.0.1".parse().unwrap(), 30)
                .expect("address");
            let seen = announced();
            assert!(!seen.is_empty(), "the kernel announced nothing");
            assert!(seen.iter().all(|m| !m), "{seen:?}");
            rtnl.add_address(sprite, "192.0.2.1".parse().unwrap(), 24)
                .expect("address");
            assert!(announced().contains(&true), "outside the sprite network");
            rtnl.add_address(other, "10.199.1.1".parse().unwrap(), 24)
                .expect("address");
            assert!(announced().contains(&true), "not a sprite link");
        })
        .join()
        .expect("the namespace's thread");
    }

    /// Routes: only a default one counts; bytes it cannot read count.
    #[test]
    fn only_a_default_route_is_a_change() {
        use netlink_packet_core::NetlinkMessage;
        use netlink_packet_route::route::RouteMessage;
        use netlink_packet_route::RouteNetlinkMessage;
        let net: ipnet::Ipv4Net = "10.199.0.0/16".parse().unwrap();
        let route = |dst_len: u8| {
            let mut r = RouteMessage::default();
            r.header.destination_prefix_length = dst_len;
            let mut m = NetlinkMessage::from(RouteNetlinkMessage::NewRoute(r));
            m.finalize();
            let mut buf = vec![0u8; m.buffer_len()];
            m.serialize(&mut buf);
            buf
        };
        assert!(!matters(&route(30), net));
        assert!(matters(&route(0), net));
        let both = [route(32), route(0)].concat();
        assert!(matters(&both, net));
        assert!(!matters(&[route(32), route(24)].concat(), net));
        assert!(matters(&route(24)[..10], net), "cut short");
    }

    #[test]
    fn blocks_loopback_and_every_host_address() {
        // A sprite network no link is in: every address is listed.
        let blocked = blocked_destinations("192.0.2.0/30".parse().unwrap()).unwrap();
        let has = |ip: IpAddr| blocked.iter().any(|n| n.contains(&ip));
        assert!(has("127.0.0.1".parse().unwrap()));
        assert!(has("::1".parse().unwrap()));
        assert!(has("169.254.169.254".parse().unwrap()));
        for ifa in nix::ifaddrs::getifaddrs().unwrap() {
            if let Some(v4) = ifa.address.and_then(|a| a.as_sockaddr_in().map(|s| s.ip())) {
                assert!(has(IpAddr::V4(v4)), "{v4} not blocked");
            }
        }
        for gw in default_gateways() {
            assert!(has(gw), "gateway {gw} not blocked");
        }
    }
}
