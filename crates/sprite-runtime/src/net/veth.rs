//! The kernel datapath for egress: a veth pair per sandbox, routed, with no
//! process of ours in the path.
//!
//! ```text
//!   sandbox netns                              host
//!   eth0 10.239.0.1/32  ──veth──  spv0 (no address)  ── forward ── masquerade ── uplink
//!   default via 169.254.1.1 onlink             route 10.239.0.1/32 dev spv0
//!   169.254.1.1 is ee:ee:ee:ee:ee:ee (permanent)
//! ```
//! Each sandbox gets one address of the sprite network (`--egress-network`,
//! [`DEFAULT_NETWORK`]): the `i`-th sandbox link, `spv<i>` on the host,
//! carries the odd address of the network's `i`-th /31 (one address in two
//! goes unused: daemons before this layout gave the even one to the host's
//! side, and a host upgraded with sandboxes running keeps their links, so
//! `i` maps to the same address in both). The link's name is its lease: a
//! link is made with the first free name (the kernel refuses a name that
//! exists, so daemons sharing a host never hand out one address twice), and
//! the pair goes away with the sandbox's namespace, so nothing is left to
//! free when a sandbox ends, however it ends.
//!
//! **The host's side has no address** (neither IPv4 nor IPv6): a /32 route
//! leads to the sandbox, and the sandbox reaches the host through a gateway
//! that exists only as a permanent neighbour entry, [`GATEWAY`] at
//! [`HOST_MAC`] (the host side's hardware address), so nothing ever asks
//! for it. A start therefore changes the host's links and routes, never its
//! addresses: programs that take a new address for a network change (a
//! browser fails its requests in flight on one) see none, the host's own
//! address list (which every sandbox is kept from) stays still, and there
//! is no host address on the link for a sandbox to try. This is the layout
//! Calico gives its pods.
//!
//! The host needs IPv4 forwarding and one nftables table, [`host_script`],
//! the same for every daemon with the same network: it drops what comes
//! from a sprite link to the host itself (whatever address it is sent to),
//! to another sprite link, to the sprite network or a link-local address
//! (nothing of those is out there), or with a source address that is not
//! its own (reverse-path check), forwards the rest out masqueraded, and
//! lets back only replies. Forwarding was off before the first daemon
//! turned it on? Then the table forwards nothing else either, so the host
//! routes nothing it did not route before. The sandbox's own table (see
//! [`super::nft`]) stays where policy is enforced: it is installed before
//! the pair exists.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use ipnet::Ipv4Net;

use super::rtnl::Rtnl;
use crate::error::{Result, RuntimeError};

/// The host side of every sandbox's pair is called `spv<i>`.
pub const LINK_PREFIX: &str = "spv";
/// The sandbox side of its pair.
pub const SANDBOX_IF: &str = "eth0";
/// The sandbox's gateway: an address no one has, that the sandbox finds
/// at [`HOST_MAC`] (a link-local address, which no packet is sent to).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The hardware address of the host's side of every pair (a locally
/// administered one; each pair is a link of its own, so all can share it).
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The sprite network unless told otherwise.
pub const DEFAULT_NETWORK: &str = "10.239.0.0/16";
/// [`DEFAULT_NETWORK`].
pub fn default_network() -> Ipv4Net {
    DEFAULT_NETWORK.parse().unwrap_or_default()
}

/// Where the host's forwarding setting from before the first daemon is kept
/// (until the next boot).
const FORWARDING_BEFORE: &str = "/run/sprited/ip_forward.before";

/// Hands out the sprite network's addresses, one veth pair per sandbox.
#[derive(Debug)]
pub struct Kernel {
    network: Ipv4Net,
    /// Where the search for a free pair starts (the last one taken + 1).
    next: AtomicU32,
}

impl Kernel {
    /// Readies the host (forwarding on, its table in place) for sandboxes
    /// on `network`; refuses a network the host already routes elsewhere.
    pub fn prepare(network: Ipv4Net, nft_bin: &Path) -> Result<Kernel> {
        let network = network.trunc();
        if network.prefix_len() > 30 {
            return Err(RuntimeError::Network(format!(
                "the sprite network {network} holds no two /31s: use a /30 or larger"
            )));
        }
        if let Some(other) = routed_elsewhere(network) {
            return Err(RuntimeError::Network(format!(
                "the sprite network {network} overlaps {other}, which the host routes already: \
                 choose another with --egress-network"
            )));
        }
        let forwarded_before = forwarding_before()?;
        super::nft_here(
            nft_bin,
            &host_script(network, forwarded_before),
            "nft (the host's sprite table)",
        )?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1\n").map_err(|e| {
            RuntimeError::io("turn on forwarding in", "/proc/sys/net/ipv4/ip_forward", e)
        })?;
        Ok(Kernel {
            network,
            next: AtomicU32::new(0),
        })
    }

    /// The sprite network.
    pub fn network(&self) -> Ipv4Net {
        self.network
    }

    /// How many sandboxes the network holds.
    fn pairs(&self) -> u32 {
        let size = 1u64 << (32 - u32::from(self.network.prefix_len()));
        (size / 2).min(u64::from(u32::MAX)) as u32
    }

    /// The address of the sandbox on pair `i`.
    pub fn address(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network.network()) + 2 * i + 1)
    }

    /// Gives the network namespace at `netns` its way out: `ruleset` (nft)
    /// installed in it first, IPv4 forwarding on in it if `forwarding` (a
    /// namespace that routes for a sandbox of its own, gVisor's), then a
    /// pair from the host, the sandbox's address, its gateway and the routes
    /// both ways, and its loopback up if `loopback` (a namespace runc joins
    /// rather than makes comes with it down). On error, nothing made is
    /// left. Returns the host side's name.
    pub fn attach(
        &self,
        netns: &Path,
        nft_bin: &Path,
        ruleset: String,
        forwarding: bool,
        loopback: bool,
    ) -> Result<String> {
        let t0 = std::time::Instant::now();
        let ns = std::fs::File::open(netns).map_err(|e| RuntimeError::io("open", netns, e))?;
        let mut host = Rtnl::open().map_err(|e| net_err("a netlink socket", e))?;
        // Inside: the rules, and a socket of the namespace's own (a thread
        // enters it; processes it starts are born in it).
        let inside_ns = ns
            .try_clone()
            .map_err(|e| RuntimeError::io("dup", netns, e))?;
        let nft = nft_bin.to_path_buf();
        let mut inside = std::thread::spawn(move || -> Result<Rtnl> {
            nix::sched::setns(&inside_ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| net_err("entering the sandbox's namespace", e.into()))?;
            super::nft_here(&nft, &ruleset, "nft (the sandbox's table)")?;
            // The pair carries IPv4 only: an interface made in here from now
            // on has no IPv6 (nothing routes it, and a link-local address
            // would face the host).
            write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")?;
            if forwarding {
                write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
            }
            Rtnl::open().map_err(|e| net_err("a netlink socket in the sandbox", e))
        })
        .join()
        .map_err(|_| RuntimeError::Network("the namespace thread panicked".into()))??;
        let t1 = t0.elapsed();
        let (index, name) = self.add_pair(&mut host, &mut inside, &ns)?;
        let t2 = t0.elapsed();
        let made = (|| -> io::Result<()> {
            let addr = self.address(index);
            let h = host.index(&name)?;
            // No IPv6 on the host's side either (it would get a link-local
            // address as it comes up).
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1")?;
            host.up(h)?;
            host.add_link_route(h, addr, 32)?;
            if loopback {
                let lo = inside.index("lo")?;
                inside.up(lo)?;
            }
            let s = inside.index(SANDBOX_IF)?;
            inside.add_address(s, addr, 32)?;
            inside.up(s)?;
            inside.add_neighbour(s, GATEWAY, HOST_MAC)?;
            inside.add_default_route(s, GATEWAY)
        })();
        if let Err(e) = made {
            if let Ok(h) = host.index(&name) {
                let _ = host.del_link(h);
            }
            return Err(net_err(&format!("configuring {name}"), e));
        }
        tracing::debug!(link = %name, rules = ?t1, pair = ?(t2 - t1), addresses = ?(t0.elapsed() - t2), "sandbox pair made");
        Ok(name)
    }

    /// Makes the first free pair from `next` on, its peer in `ns` (whose
    /// netlink socket is `inside`).
    fn add_pair(
        &self,
        host: &mut Rtnl,
        inside: &mut Rtnl,
        ns: &std::fs::File,
    ) -> Result<(u32, String)> {
        let pairs = self.pairs();
        let start = self.next.load(Ordering::Relaxed) % pairs;
        for k in 0..pairs {
            let i = (start + k) % pairs;
            let name = format!("{LINK_PREFIX}{i}");
            match host.add_veth(&name, HOST_MAC, SANDBOX_IF, ns.as_raw_fd()) {
                Ok(()) => {
                    self.next.store(i.wrapping_add(1), Ordering::Relaxed);
                    return Ok((i, name));
                }
                // Taken (by this daemon or another, maybe going away as
                // we look): the next. Unless the name that exists is the
                // sandbox's, asked of its namespace (the host's name may be
                // gone by now, deleted by a stop).
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    if inside.index(SANDBOX_IF).is_ok() {
                        return Err(RuntimeError::Network(format!(
                            "the sandbox's namespace has an {SANDBOX_IF} already"
                        )));
                    }
                }
                Err(e) => return Err(net_err("making a veth pair", e)),
            }
        }
        Err(RuntimeError::Network(format!(
            "the sprite network {} is full ({pairs} sandboxes)",
            self.network
        )))
    }
}

/// The host's table for the sprite network `network`. `forwarded_before`:
/// whether the host forwarded before the first daemon turned it on (if
/// not, nothing but sprites' traffic is forwarded). Replaced whole, in one
/// transaction, by every daemon that starts.
pub fn host_script(network: Ipv4Net, forwarded_before: bool) -> String {
    let table = host_table(network);
    let others = if forwarded_before {
        ""
    } else {
        "\x20   drop\n"
    };
    format!(
        "table inet {table}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \x20 chain prerouting {{\n\
         \x20   type filter hook prerouting priority raw; policy accept;\n\
         \x20   iifname \"{LINK_PREFIX}*\" fib saddr . iif oif missing drop\n\
         \x20   iifname \"{LINK_PREFIX}*\" ip saddr != {network} drop\n\
         \x20 }}\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority filter; policy accept;\n\
         \x20   iifname \"{LINK_PREFIX}*\" drop\n\
         \x20 }}\n\
         \x20 chain forward {{\n\
         \x20   type filter hook forward priority filter; policy accept;\n\
         \x20   iifname \"{LINK_PREFIX}*\" oifname \"{LINK_PREFIX}*\" drop\n\
         \x20   iifname \"{LINK_PREFIX}*\" ip daddr {{ {network}, 169.254.0.0/16 }} drop\n\
         \x20   iifname \"{LINK_PREFIX}*\" meta nfproto ipv4 accept\n\
         \x20   iifname \"{LINK_PREFIX}*\" drop\n\
         \x20   oifname \"{LINK_PREFIX}*\" ct state established,related accept\n\
         \x20   oifname \"{LINK_PREFIX}*\" drop\n\
         {others}\
         \x20 }}\n\
         \x20 chain postrouting {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   ip saddr {network} oifname != \"{LINK_PREFIX}*\" masquerade\n\
         \x20 }}\n\
         }}\n"
    )
}

/// The host table's name for `network` (daemons on other networks keep
/// tables of their own).
pub fn host_table(network: Ipv4Net) -> String {
    format!(
        "sprited_{}_{}",
        network.network().to_string().replace('.', "_"),
        network.prefix_len()
    )
}

/// Whether the host forwarded IPv4 before sprited turned it on: read from
/// the file the first daemon of this boot wrote, or from the kernel (and
/// written down) by that first daemon.
fn forwarding_before() -> Result<bool> {
    let file = Path::new(FORWARDING_BEFORE);
    let read = |p: &Path| std::fs::read_to_string(p).map(|s| s.trim() == "1");
    match read(file) {
        Ok(v) => return Ok(v),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(RuntimeError::io("read", file, e)),
    }
    let now = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .map_err(|e| RuntimeError::io("read", "/proc/sys/net/ipv4/ip_forward", e))?;
    let now = now.trim() == "1";
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io("mkdir", dir, e))?;
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file);
    match created {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(if now { b"1\n" } else { b"0\n" })
                .map_err(|e| RuntimeError::io("write", file, e))?;
            Ok(now)
        }
        // Another daemon starting at the same moment wrote it first.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read(file).map_err(|e| RuntimeError::io("read", file, e))
        }
        Err(e) => Err(RuntimeError::io("create", file, e)),
    }
}

/// A route of the host's (main table, not a sprite link's) that overlaps
/// `network`, if any.
fn routed_elsewhere(network: Ipv4Net) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[0].starts_with(LINK_PREFIX) {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The file holds addresses in host (little-endian) order.
        let dest = Ipv4Addr::from(dest.swap_bytes());
        let prefix = mask.swap_bytes().leading_ones() as u8;
        if prefix == 0 {
            continue; // the default route overlaps everything
        }
        let Ok(route) = Ipv4Net::new(dest, prefix) else {
            continue;
        };
        if route.contains(&network.network()) || network.contains(&route.network()) {
            return Some(format!("{route} (on {})", f[0]));
        }
    }
    None
}

fn net_err(what: &str, e: io::Error) -> RuntimeError {
    RuntimeError::Network(format!("{what}: {e}"))
}

fn write_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| RuntimeError::io("write", PathBuf::from(path), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pair_has_an_odd_address_of_the_network() {
        let k = Kernel {
            network: "10.239.0.0/16".parse().unwrap(),
            next: AtomicU32::new(0),
        };
        assert_eq!(k.pairs(), 32768);
        assert_eq!(k.address(0), Ipv4Addr::new(10, 239, 0, 1));
        assert_eq!(k.address(32767), Ipv4Addr::new(10, 239, 255, 255));
    }

    /// A new network namespace (made on a thread of its own) and a
    /// netlink socket in it.
    fn new_netns() -> (std::fs::File, Rtnl) {
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            let ns = std::fs::File::open("/proc/thread-self/ns/net").expect("the namespace");
            (ns, Rtnl::open().expect("netlink inside"))
        })
        .join()
        .expect("the namespace thread")
    }

    /// A host link name already taken (here by a veth pair of the host's
    /// own; as well by a
    /// stop deleting its pair as the name is tried) is skipped; an `eth0`
    /// already in the sandbox's namespace is refused. Needs root.
    #[test]
    fn a_taken_host_name_is_skipped_and_a_second_eth0_refused() {
        let k = Kernel {
            network: "10.239.0.0/16".parse().unwrap(),
            next: AtomicU32::new(32760),
        };
        let taken = format!("{LINK_PREFIX}32760");
        let made = format!("{LINK_PREFIX}32761");
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .expect("ip")
        };
        ip(&["link", "del", &taken]);
        assert!(ip(&[
            "link",
            "add",
            &taken,
            "type",
            "veth",
            "peer",
            "name",
            "spvpeer32760"
        ])
        .success());
        let (ns, mut inside) = new_netns();
        let mut host = Rtnl::open().expect("netlink");
        let first = k.add_pair(&mut host, &mut inside, &ns);
        let second = k.add_pair(&mut host, &mut inside, &ns);
        let cleanup = |name: &str| {
            if let Ok(i) = Rtnl::open().and_then(|mut h| h.index(name).map(|i| (h, i))) {
                let (mut h, i) = i;
                let _ = h.del_link(i);
            }
        };
        cleanup(&taken);
        cleanup(&made);
        for i in 32762..32768 {
            cleanup(&format!("{LINK_PREFIX}{i}"));
        }
        assert_eq!(first.expect("a pair"), (32761, made));
        match second {
            Err(RuntimeError::Network(m)) => assert!(m.contains("has an eth0 already"), "{m}"),
            other => panic!("a second eth0: {other:?}"),
        }
    }

    #[test]
    fn the_host_table_forwards_only_sprites_where_the_host_did_not() {
        let net: Ipv4Net = "10.239.0.0/16".parse().unwrap();
        let s = host_script(net, false);
        assert!(s.starts_with("table inet sprited_10_239_0_0_16\ndelete table"));
        assert!(s.contains("iifname \"spv*\" drop\n"));
        assert!(s.contains("fib saddr . iif oif missing drop"));
        assert!(s.contains("ip daddr { 10.239.0.0/16, 169.254.0.0/16 } drop"));
        assert!(s.contains("ip saddr 10.239.0.0/16 oifname != \"spv*\" masquerade"));
        assert!(s.contains("oifname \"spv*\" drop\n    drop\n"));
        assert!(!host_script(net, true).contains("oifname \"spv*\" drop\n    drop\n"));
    }
}
