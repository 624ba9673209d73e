//! The nftables ruleset in a sandbox's network namespace.
//!
//! ```text
//! table inet sprite
//!   output (hook): lo → accept; @blocked4/@blocked6 → reject; @deny4/@deny6 → drop;
//!                  then the `egress_policy` chain
//!   egress_policy: empty (open egress) or "@allow4/@allow6 → accept, else drop"
//! ```
//! `allow*` and `deny*` are filled by the daemon's DNS resolver with the
//! addresses it answered for allowed names and found for denied ones.

use std::net::IpAddr;

use ipnet::IpNet;

/// The table's name in every sandbox namespace.
pub const TABLE: &str = "sprite";

/// The blocked ranges of one family, as nft set elements.
fn by_family(blocked: &[IpNet]) -> (Vec<String>, Vec<String>) {
    let v4: Vec<String> = blocked
        .iter()
        .filter(|n| matches!(n, IpNet::V4(_)))
        .map(|n| n.to_string())
        .collect();
    let v6: Vec<String> = blocked
        .iter()
        .filter(|n| matches!(n, IpNet::V6(_)))
        .map(|n| n.to_string())
        .collect();
    (v4, v6)
}

/// Creates the whole table, in a namespace that has none: it fails if the
/// table exists (rather than add a second copy of its rules). Replacing a
/// table (`delete table` in the same transaction) costs 20–30 ms on these
/// kernels, where creating one in a new namespace costs ~4 ms: every start
/// pays it, so only the creation is on that path.
pub fn base_script(blocked: &[IpNet]) -> String {
    let (v4, v6) = by_family(blocked);
    let elements = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!("elements = {{ {} }}", v.join(", "))
        }
    };
    format!(
        "create table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \x20 set blocked4 {{ type ipv4_addr; flags interval; auto-merge; {} }}\n\
         \x20 set blocked6 {{ type ipv6_addr; flags interval; auto-merge; {} }}\n\
         \x20 set allow4 {{ type ipv4_addr; }}\n\
         \x20 set allow6 {{ type ipv6_addr; }}\n\
         \x20 set deny4 {{ type ipv4_addr; }}\n\
         \x20 set deny6 {{ type ipv6_addr; }}\n\
         \x20 chain egress_policy {{ }}\n\
         \x20 chain output {{\n\
         \x20   type filter hook output priority 0; policy accept;\n\
         \x20   oif \"lo\" accept\n\
         \x20   ip daddr @blocked4 reject with icmp admin-prohibited\n\
         \x20   ip6 daddr @blocked6 reject with icmpv6 admin-prohibited\n\
         \x20   ip daddr @deny4 reject with icmp admin-prohibited\n\
         \x20   ip6 daddr @deny6 reject with icmpv6 admin-prohibited\n\
         \x20   jump egress_policy\n\
         \x20 }}\n\
         }}\n",
        elements(&v4),
        elements(&v6),
    )
}

/// What a namespace whose sandbox sends from a network stack of its own
/// (gVisor's, on a veth whose peer is `gateway_if`) adds to the table: its
/// packets are forwarded, so a `forward` chain holds them to the same
/// blocked sets and policy as a container's output, and they leave
/// masqueraded as pasta's address. The daemon's own connections to the
/// sandbox (its URL, the proxy) leave through `gateway_if` and pass.
pub fn forward_script(gateway_if: &str, sandbox: std::net::Ipv4Addr) -> String {
    format!(
        "table inet {TABLE} {{\n\
         \x20 chain forward {{\n\
         \x20   type filter hook forward priority 0; policy drop;\n\
         \x20   iif \"{gateway_if}\" oif \"{gateway_if}\" drop\n\
         \x20   oif \"{gateway_if}\" ct state established,related accept\n\
         \x20   iif != \"{gateway_if}\" drop\n\
         \x20   ip saddr != {sandbox} drop\n\
         \x20   ip daddr @blocked4 reject with icmp admin-prohibited\n\
         \x20   ip daddr @deny4 reject with icmp admin-prohibited\n\
         \x20   jump egress_policy\n\
         \x20   accept\n\
         \x20 }}\n\
         \x20 chain postrouting {{\n\
         \x20   type nat hook postrouting priority 100; policy accept;\n\
         \x20   oif != \"{gateway_if}\" ip saddr {sandbox} masquerade\n\
         \x20 }}\n\
         }}\n\
         insert rule inet {TABLE} output oif \"{gateway_if}\" accept\n"
    )
}

/// Replaces the blocked sets (in one transaction: no moment without them).
pub fn blocked_script(blocked: &[IpNet]) -> String {
    let (v4, v6) = by_family(blocked);
    let mut s = format!("flush set inet {TABLE} blocked4\nflush set inet {TABLE} blocked6\n");
    for (family, v) in [("4", v4), ("6", v6)] {
        if !v.is_empty() {
            s.push_str(&format!(
                "add element inet {TABLE} blocked{family} {{ {} }}\n",
                v.join(", ")
            ));
        }
    }
    s
}

/// Replaces the policy: `restrictive` drops everything not in the allow
/// sets; the sets are emptied (the resolver fills them again).
pub fn policy_script(restrictive: bool, deny: &[IpAddr]) -> String {
    let mut s = format!(
        "flush chain inet {TABLE} egress_policy\n\
         flush set inet {TABLE} allow4\n\
         flush set inet {TABLE} allow6\n\
         flush set inet {TABLE} deny4\n\
         flush set inet {TABLE} deny6\n"
    );
    if restrictive {
        s.push_str(&format!(
            "add rule inet {TABLE} egress_policy ip daddr @allow4 accept\n\
             add rule inet {TABLE} egress_policy ip6 daddr @allow6 accept\n\
             add rule inet {TABLE} egress_policy reject with icmpx admin-prohibited\n"
        ));
    }
    s.push_str(&add_script("deny", deny));
    s
}

/// Adds addresses to the `allow` or `deny` sets (`which` is one of those).
pub fn add_script(which: &str, ips: &[IpAddr]) -> String {
    let v4: Vec<String> = ips
        .iter()
        .filter(|i| i.is_ipv4())
        .map(|i| i.to_string())
        .collect();
    let v6: Vec<String> = ips
        .iter()
        .filter(|i| i.is_ipv6())
        .map(|i| i.to_string())
        .collect();
    let mut s = String::new();
    if !v4.is_empty() {
        s.push_str(&format!(
            "add element inet {TABLE} {which}4 {{ {} }}\n",
            v4.join(", ")
        ));
    }
    if !v6.is_empty() {
        s.push_str(&format!(
            "add element inet {TABLE} {which}6 {{ {} }}\n",
            v6.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_script_lists_blocked_ranges_by_family() {
        let s = base_script(&["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        assert!(s.contains("set blocked4 { type ipv4_addr; flags interval; auto-merge; elements = { 127.0.0.0/8 } }"));
        assert!(s.contains("elements = { ::1/128 }"));
        assert!(s.contains("oif \"lo\" accept"));
        assert!(s.starts_with("create table inet sprite\n") && !s.contains("delete table"));
    }

    #[test]
    fn blocked_sets_are_replaced_whole() {
        let s = blocked_script(&[
            "10.1.2.3/32".parse().unwrap(),
            "fd00::1/128".parse().unwrap(),
        ]);
        assert!(s.starts_with("flush set inet sprite blocked4\nflush set inet sprite blocked6\n"));
        assert!(s.contains("add element inet sprite blocked4 { 10.1.2.3/32 }"));
        assert!(s.contains("add element inet sprite blocked6 { fd00::1/128 }"));
    }

    #[test]
    fn a_forwarding_namespace_holds_forwarded_packets_to_the_same_sets() {
        let s = forward_script("g1", "10.200.0.2".parse().unwrap());
        assert!(s.contains("hook forward priority 0; policy drop;"));
        assert!(s.contains("ip daddr @blocked4 reject"));
        assert!(s.contains("ip daddr @deny4 reject"));
        assert!(s.contains("jump egress_policy"));
        assert!(s.contains("ip saddr 10.200.0.2 masquerade"));
        assert!(s.contains("insert rule inet sprite output oif \"g1\" accept"));
    }

    #[test]
    fn restrictive_policy_ends_in_reject() {
        let s = policy_script(true, &["192.0.2.9".parse().unwrap()]);
        assert!(s.contains("egress_policy reject"));
        assert!(s.contains("add element inet sprite deny4 { 192.0.2.9 }"));
        assert!(!policy_script(false, &[]).contains("reject"));
    }
}
