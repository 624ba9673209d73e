//! Loopback ports for the servers a test starts.
//!
//! Picked below the kernel's ephemeral range, never in it (as a bind to
//! port 0 would): there, a connect to a port on which nothing listens yet
//! can come back connected to itself (a TCP self-connection, when the kernel
//! picks that very port as the source), and any outgoing connection of the
//! machine may take the port between the pick and the server's bind.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;

/// Linux's default, for a kernel that does not say.
const DEFAULT_EPHEMERAL: (u16, u16) = (32768, 60999);
/// Below this are the well-known services' ports.
const LOWEST: u16 = 10_000;
/// Candidates tried before giving up.
const TRIES: usize = 1000;

/// A loopback TCP port nothing listens on now, outside the ephemeral range.
pub fn free_port() -> u16 {
    let (eph_lo, eph_hi) = ephemeral_range();
    let below = eph_lo.saturating_sub(LOWEST);
    let above = u16::MAX - eph_hi;
    let span = u32::from(below) + u32::from(above);
    assert!(
        span > 0,
        "the ephemeral range {eph_lo}-{eph_hi} leaves no port for test servers"
    );
    // Random, so tests started together rarely try the same port.
    let random = RandomState::new();
    for attempt in 0..TRIES {
        let mut h = random.build_hasher();
        h.write_usize(attempt);
        let n = (h.finish() % u64::from(span)) as u32;
        let port = if n < u32::from(below) {
            u32::from(LOWEST) + n
        } else {
            u32::from(eph_hi) + 1 + (n - u32::from(below))
        };
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        // A listener never connected leaves nothing behind when dropped.
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port outside the ephemeral range {eph_lo}-{eph_hi}");
}

/// `net.ipv4.ip_local_port_range`: where the kernel picks source ports.
fn ephemeral_range() -> (u16, u16) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return DEFAULT_EPHEMERAL;
    };
    let mut nums = text.split_whitespace().map(str::parse::<u16>);
    match (nums.next(), nums.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => (lo, hi),
        _ => DEFAULT_EPHEMERAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_and_outside_the_ephemeral_range() {
        let (lo, hi) = ephemeral_range();
        // Ports held here are never handed out. Another process of the
        // machine (a parallel test's server) may take a port between its
        // pick and this bind: then another pick is asked for.
        let bind_one = || {
            (0..20)
                .find_map(|_| TcpListener::bind(("127.0.0.1", free_port())).ok())
                .expect("bind a free port in 20 picks")
        };
        let held: Vec<TcpListener> = (0..50).map(|_| bind_one()).collect();
        let taken: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        for _ in 0..500 {
            let p = free_port();
            assert!(p >= LOWEST && !(lo..=hi).contains(&p), "{p} in {lo}-{hi}");
            assert!(!taken.contains(&p), "{p} is held by this test");
        }
    }
}
