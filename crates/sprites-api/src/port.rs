//! Ports inside a sprite: the TCP proxy endpoint's handshake and the port
//! watch events (`/v1/sprites/{name}/proxy`, `/v1/sprites/{name}/ports/watch`,
//! and the exec stream's `port_opened`/`port_closed` frames).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// A TCP port something listens on inside a sprite.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListeningPort {
    pub port: u16,
    /// The address it is bound to (`0.0.0.0`, `127.0.0.1`, `::`, ...).
    pub address: String,
    /// The process that owns the socket, when it could be found.
    #[serde(default)]
    pub pid: Option<u32>,
}

/// The first text frame a proxy client sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyInit {
    #[serde(default = "default_host")]
    pub host: String,
    pub port: u16,
}

fn default_host() -> String {
    "localhost".into()
}

/// The server's answer once the TCP connection is made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyConnected {
    pub status: String,
    pub target: String,
}

/// A TCP port a process of an exec session started or stopped listening
/// on (`pid` is the socket's owner): the payload of the agent's and the
/// exec stream's `port_opened` and `port_closed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionPort {
    pub port: u16,
    pub address: String,
    pub pid: u32,
}

/// Text frames of `/ports/watch` (and the exec stream's port frames).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PortEvent {
    PortList {
        ports: Vec<ListeningPort>,
    },
    PortOpened {
        port: u16,
        address: String,
        #[serde(default)]
        pid: Option<u32>,
    },
    PortClosed {
        port: u16,
        address: String,
        #[serde(default)]
        pid: Option<u32>,
    },
}

impl PortEvent {
    pub fn opened(p: &ListeningPort) -> PortEvent {
        PortEvent::PortOpened {
            port: p.port,
            address: p.address.clone(),
            pid: p.pid,
        }
    }

    pub fn closed(p: &ListeningPort) -> PortEvent {
        PortEvent::PortClosed {
            port: p.port,
            address: p.address.clone(),
            pid: p.pid,
        }
    }
}

/// The events that turn the port set `old` into `new` (keyed by port and
/// address; a new owner of the same port is not an event).
pub fn diff(old: &[ListeningPort], new: &[ListeningPort]) -> Vec<PortEvent> {
    let same = |a: &ListeningPort, b: &ListeningPort| a.port == b.port && a.address == b.address;
    let mut out: Vec<PortEvent> = old
        .iter()
        .filter(|o| !new.iter().any(|n| same(o, n)))
        .map(PortEvent::closed)
        .collect();
    out.extend(
        new.iter()
            .filter(|n| !old.iter().any(|o| same(o, n)))
            .map(PortEvent::opened),
    );
    out
}

/// The addresses a proxy or relay target may name: only the sprite itself
/// (its loopback), never another host. `None` for anything else.
pub fn loopback_target(host: &str) -> Option<Vec<IpAddr>> {
    match host.to_ascii_lowercase().as_str() {
        "localhost" => Some(vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]),
        "127.0.0.1" => Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        "::1" | "[::1]" => Some(vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(port: u16, address: &str) -> ListeningPort {
        ListeningPort {
            port,
            address: address.into(),
            pid: None,
        }
    }

    #[test]
    fn only_loopback_targets() {
        assert!(loopback_target("localhost").is_some());
        assert!(loopback_target("LOCALHOST").is_some());
        assert!(loopback_target("::1").is_some());
        assert!(loopback_target("127.0.0.1").is_some());
        for bad in [
            "127.0.0.2",
            "10.0.0.1",
            "example.com",
            "0.0.0.0",
            "localhost.",
            "",
        ] {
            assert!(loopback_target(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn diffs_name_opened_and_closed() {
        let ev = diff(
            &[p(1, "0.0.0.0"), p(2, "::")],
            &[p(2, "::"), p(3, "127.0.0.1")],
        );
        assert_eq!(
            ev,
            vec![
                PortEvent::closed(&p(1, "0.0.0.0")),
                PortEvent::opened(&p(3, "127.0.0.1"))
            ]
        );
        let j = serde_json::to_string(&PortEvent::opened(&p(8080, "0.0.0.0"))).expect("json");
        assert_eq!(
            j,
            r#"{"type":"port_opened","port":8080,"address":"0.0.0.0","pid":null}"#
        );
    }
}
