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
/// announces an address or route change, at most once per `settle`
/// (announcements come in bursts), and at least every `every` whatever it
/// announced (a missed announcement, when its buffer overflowed, is caught
/// up). Stops when `alive` can no longer be upgraded.
pub fn watch<T: Send + Sync + 'static>(
    alive: Weak<T>,
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
                        // Drains the burst; an overflow (ENOBUFS) is a change too.
                        std::thread::sleep(settle);
                        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
                        while recv(raw, &mut buf, MsgFlags::MSG_DONTWAIT).is_ok_and(|n| n > 0) {}
                        true
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
