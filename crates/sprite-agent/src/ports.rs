//! `watch_ports`: the TCP ports listened on inside the sprite, read from
//! `/proc/net/tcp{,6}` (the agent's network namespace is the sprite's), with
//! the owning process found through `/proc/<pid>/fd`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use sprites_api::agent::Reply;
use sprites_api::port::ListeningPort;
use tokio::io::AsyncReadExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::wire;

/// How often the tables are read.
const POLL: Duration = Duration::from_millis(250);
/// `st` of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Send the port set now and whenever it changes, until the daemon hangs up.
pub async fn watch(mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf) {
    let mut last: Option<Vec<ListeningPort>> = None;
    let mut buf = [0u8; 64];
    loop {
        let now = tokio::task::spawn_blocking(listening)
            .await
            .unwrap_or_default();
        if last.as_ref() != Some(&now) {
            let reply = Reply::Ports { ports: now.clone() };
            if wire::write_json(&mut wr, &reply).await.is_err() {
                return;
            }
            last = Some(now);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            // The daemon sends nothing: a read ends only when it hangs up.
            r = rd.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
        }
    }
}

/// Every listening TCP socket, sorted, with its owner where found.
pub fn listening() -> Vec<ListeningPort> {
    let mut found: Vec<(ListeningPort, u64)> = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(path) {
            found.extend(parse_table(&text, v6));
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    let owners = socket_owners();
    let mut ports: Vec<ListeningPort> = found
        .into_iter()
        .map(|(mut p, inode)| {
            p.pid = owners.get(&inode).copied();
            p
        })
        .collect();
    ports.sort();
    ports.dedup_by(|a, b| a.port == b.port && a.address == b.address);
    ports
}

/// Parse one `/proc/net/tcp` table: the listening sockets and their inodes.
fn parse_table(text: &str, v6: bool) -> Vec<(ListeningPort, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(3) != Some(&TCP_LISTEN) {
                return None;
            }
            let (addr, port) = f.get(1)?.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let address = if v6 { parse_v6(addr)? } else { parse_v4(addr)? };
            let inode = f.get(9)?.parse().ok()?;
            Some((
                ListeningPort {
                    port,
                    address,
                    pid: None,
                },
                inode,
            ))
        })
        .collect()
}

/// `0100007F` → `127.0.0.1` (the kernel prints the u32 in host order).
fn parse_v4(hex: &str) -> Option<String> {
    let n = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(n.to_ne_bytes()).to_string())
}

/// Four host-order u32 words.
fn parse_v6(hex: &str) -> Option<String> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for i in 0..4 {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    Some(Ipv6Addr::from(bytes).to_string())
}

/// socket inode → pid, from every process's open files.
fn socket_owners() -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
            {
                owners.entry(inode).or_insert(pid);
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_rows() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0 100 0 0 10 0\n   1: 0100007F:1F91 0100007F:9999 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0 100 0 0 10 0\n";
        let rows = parse_table(v4, false);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0.port, 8080);
        assert_eq!(rows[0].0.address, "127.0.0.1");
        assert_eq!(rows[0].1, 12345);
        let v6 = "header\n   0: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n";
        let rows = parse_table(v6, true);
        assert_eq!(rows[0].0.address, "::1");
        assert_eq!(rows[0].0.port, 3000);
    }

    #[test]
    fn finds_a_real_listener_and_its_owner() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let found = listening();
        let me = found.iter().find(|p| p.port == port).expect("listed");
        assert_eq!(me.pid, Some(std::process::id()));
    }
}
