//! The host's own addresses: what a sandbox must never reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
/// default gateways (pasta's "gateway" leads to them).
pub fn blocked_destinations() -> Result<Vec<IpNet>> {
    let mut out: Vec<IpNet> = ALWAYS_BLOCKED
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| RuntimeError::Network(format!("getifaddrs: {e}")))?;
    for ifa in addrs {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
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
        let blocked = blocked_destinations().unwrap();
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
