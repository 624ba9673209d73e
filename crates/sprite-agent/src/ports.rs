//! The TCP ports listened on inside the sprite, read from
//! `/proc/net/tcp{,6}` (the agent's network namespace is the sprite's), with
//! the owning process found through `/proc/<pid>/fd`: one poller shared by
//! everyone watching (`watch_ports` conversations, exec clients, which get
//! the ports their session's processes open), running while anyone is.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sprites_api::agent::Reply;
use sprites_api::port::{ListeningPort, SessionPort};
use tokio::io::AsyncReadExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

use crate::wire;

/// How often the tables are read.
const POLL: Duration = Duration::from_millis(250);
/// `st` of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

type Ports = Option<Arc<Vec<ListeningPort>>>;

/// The listening ports, as last read (`None` until the first read after
/// the poller started).
#[derive(Clone)]
pub struct PortTable {
    inner: Arc<Inner>,
}

struct Inner {
    tx: watch::Sender<Ports>,
    polling: AtomicBool,
}

impl Default for PortTable {
    fn default() -> Self {
        PortTable {
            inner: Arc::new(Inner {
                tx: watch::Sender::new(None),
                polling: AtomicBool::new(false),
            }),
        }
    }
}

impl PortTable {
    /// The port set from now on: the current one (or the first read),
    /// then every change; see [`next`].
    pub fn subscribe(&self) -> watch::Receiver<Ports> {
        let mut rx = self.inner.tx.subscribe();
        // What is there already counts as news to a new watcher.
        rx.mark_changed();
        if !self.inner.polling.swap(true, Ordering::SeqCst) {
            tokio::spawn(poll(self.inner.clone()));
        }
        rx
    }
}

async fn poll(inner: Arc<Inner>) {
    loop {
        let now = tokio::task::spawn_blocking(listening)
            .await
            .unwrap_or_default();
        inner.tx.send_if_modified(|cur| {
            if cur.as_deref() == Some(&now) {
                return false;
            }
            *cur = Some(Arc::new(now));
            true
        });
        tokio::time::sleep(POLL).await;
        if inner.tx.receiver_count() == 0 {
            // Nobody watches: stop, forgetting the set (a later watcher
            // starts from a fresh read). One who subscribed meanwhile and
            // saw the poller running is served on.
            inner.tx.send_replace(None);
            inner.polling.store(false, Ordering::SeqCst);
            if inner.tx.receiver_count() == 0 || inner.polling.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    }
}

/// The next port set `rx` has not seen. `None` when the poller is gone.
pub async fn next(rx: &mut watch::Receiver<Ports>) -> Option<Arc<Vec<ListeningPort>>> {
    loop {
        rx.changed().await.ok()?;
        if let Some(ports) = rx.borrow_and_update().clone() {
            return Some(ports);
        }
    }
}

/// Send the port set now and whenever it changes, until the daemon hangs up.
pub async fn watch(mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf, table: &PortTable) {
    let mut rx = table.subscribe();
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            ports = next(&mut rx) => {
                let Some(ports) = ports else { return };
                let reply = Reply::Ports { ports: ports.to_vec() };
                if wire::write_json(&mut wr, &reply).await.is_err() {
                    return;
                }
            }
            // The daemon sends nothing: a read ends only when it hangs up.
            r = rd.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
        }
    }
}

/// The port events of one session from one port set to the next: ports
/// its processes (`leader`, what runs in its session or below it) started
/// listening on, and those of them that closed. `reported` is what was
/// announced so far, and is brought up to date.
pub fn session_events(
    leader: u32,
    reported: &mut Vec<ListeningPort>,
    now: &[ListeningPort],
) -> Vec<Reply> {
    let same = |a: &ListeningPort, b: &ListeningPort| a.port == b.port && a.address == b.address;
    let mut events = Vec::new();
    reported.retain(|r| {
        let open = now.iter().any(|n| same(n, r));
        if !open {
            events.push(Reply::PortClosed(SessionPort {
                port: r.port,
                address: r.address.clone(),
                pid: r.pid.unwrap_or(0),
            }));
        }
        open
    });
    for p in now {
        let Some(pid) = p.pid else { continue };
        if reported.iter().any(|r| same(r, p)) || !in_session(pid, leader) {
            continue;
        }
        events.push(Reply::PortOpened(SessionPort {
            port: p.port,
            address: p.address.clone(),
            pid,
        }));
        reported.push(p.clone());
    }
    events
}

/// Whether `pid` is `leader`, runs in its session, or descends from it.
pub fn in_session(pid: u32, leader: u32) -> bool {
    let mut p = pid;
    // Bounded: a process tree deeper than this is not worth following.
    for _ in 0..128 {
        if p == leader {
            return true;
        }
        let Some((ppid, sid)) = parent_and_session(p) else {
            return false;
        };
        if sid == leader {
            return true;
        }
        if ppid <= 1 {
            return false;
        }
        p = ppid;
    }
    false
}

/// `ppid` and `session` from `/proc/<pid>/stat` (the fields after the
/// command name, which may itself hold spaces and parentheses).
fn parent_and_session(pid: u32) -> Option<(u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut f = rest.split_whitespace();
    let _state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    let _pgrp = f.next()?;
    let sid = f.next()?.parse().ok()?;
    Some((ppid, sid))
}

/// Every listening TCP socket, sorted, with its owner where found.
pub fn listening() -> Vec<ListeningPort> {
    let found = match diag::listening() {
        Ok(found) => found,
        // No sock_diag here (gVisor's netstack, a kernel without it):
        // the tables, which cost a walk of every connection on the host.
        Err(_) => from_tables(),
    };
    if found.is_empty() {
        return Vec::new();
    }
    let wanted: HashSet<u64> = found.iter().map(|(_, inode)| *inode).collect();
    let owners = socket_owners(&wanted);
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

/// The listening sockets as the kernel's sock_diag netlink interface
/// tells them. Asked for listening sockets only, the kernel walks its
/// table of listeners and not the connections: `/proc/net/tcp` walks every
/// bucket of the host-wide connection table on each read (~3 ms a table on
/// a 24 GiB host), and every exec session reads the tables.
mod diag {
    use std::io;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use sprites_api::port::ListeningPort;

    const NETLINK_SOCK_DIAG: libc::c_int = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const TCP_LISTEN: u32 = 10;
    const HEADER: usize = 16;
    /// `struct inet_diag_msg`.
    const MSG: usize = 72;

    pub fn listening() -> io::Result<Vec<(ListeningPort, u64)>> {
        // SAFETY: socket(2) with constant arguments; the result is checked
        // and owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just opened, owned by nobody else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut found = Vec::new();
        for (family, seq) in [(libc::AF_INET, 1u32), (libc::AF_INET6, 2)] {
            send(&sock, request(family as u8, seq))?;
            receive(&sock, seq, &mut found)?;
        }
        Ok(found)
    }

    /// A dump request for `family`'s listening TCP sockets: `nlmsghdr`
    /// and `struct inet_diag_req_v2` (its socket id all zero: any).
    fn request(family: u8, seq: u32) -> Vec<u8> {
        let len = HEADER + 56;
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
        m.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        m.resize(len, 0);
        m
    }

    fn send(sock: &OwnedFd, msg: Vec<u8>) -> io::Result<()> {
        // SAFETY: a zeroed sockaddr_nl addressed to the kernel (pid 0).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `to` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads the dump for request `seq` to its end.
    fn receive(sock: &OwnedFd, seq: u32, found: &mut Vec<(ListeningPort, u64)>) -> io::Result<()> {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: reads into `buf`, valid for its length.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if parse(&buf[..n as usize], seq, found)? {
                return Ok(());
            }
        }
    }

    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }

    /// The messages of one datagram, added to `found`; true at the end of
    /// the dump.
    pub(super) fn parse(
        mut b: &[u8],
        seq: u32,
        found: &mut Vec<(ListeningPort, u64)>,
    ) -> io::Result<bool> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "a malformed sock_diag reply");
        while b.len() >= HEADER {
            let len = u32_at(b, 0).ok_or_else(bad)? as usize;
            let kind = u16_at(b, 4).ok_or_else(bad)?;
            if len < HEADER || len > b.len() {
                return Err(bad());
            }
            let body = &b[HEADER..len];
            if u32_at(b, 8) == Some(seq) {
                match kind {
                    NLMSG_DONE => return Ok(true),
                    NLMSG_ERROR => {
                        let errno = u32_at(body, 0).ok_or_else(bad)? as i32;
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    SOCK_DIAG_BY_FAMILY if body.len() >= MSG => found.push(socket(body)),
                    _ => {}
                }
            }
            // Messages are 4-byte aligned.
            b = b.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
        }
        Ok(false)
    }

    /// One `struct inet_diag_msg`: family, state, port (big-endian),
    /// source address (network order), inode.
    fn socket(m: &[u8]) -> (ListeningPort, u64) {
        let port = u16::from_be_bytes([m[4], m[5]]);
        let address = if m[0] == libc::AF_INET6 as u8 {
            let mut a = [0u8; 16];
            a.copy_from_slice(&m[8..24]);
            Ipv6Addr::from(a).to_string()
        } else {
            Ipv4Addr::new(m[8], m[9], m[10], m[11]).to_string()
        };
        let inode = u64::from(u32::from_ne_bytes([m[68], m[69], m[70], m[71]]));
        (
            ListeningPort {
                port,
                address,
                pid: None,
            },
            inode,
        )
    }
}

/// The listening sockets in `/proc/net/tcp{,6}`, with their inodes.
fn from_tables() -> Vec<(ListeningPort, u64)> {
    let mut found = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(path) {
            found.extend(parse_table(&text, v6));
        }
    }
    found
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

/// socket inode → pid for the `wanted` sockets, from the processes' open
/// files. The agent is root without CAP_SYS_PTRACE, so other users'
/// processes are read by a thread that takes on their filesystem identity.
fn socket_owners(wanted: &HashSet<u64>) -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    let mut others: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        match socket_inodes(pid) {
            Some(inodes) => {
                for inode in inodes.into_iter().filter(|i| wanted.contains(i)) {
                    owners.entry(inode).or_insert(pid);
                }
            }
            None => {
                if let Some(ids) = single_identity(pid) {
                    others.entry(ids).or_default().push(pid);
                }
            }
        }
    }
    for ((uid, gid), pids) in others {
        if wanted.iter().all(|i| owners.contains_key(i)) {
            break;
        }
        for (inode, pid) in owners_as(uid, gid, pids, wanted.clone()) {
            owners.entry(inode).or_insert(pid);
        }
    }
    owners
}

/// The socket inodes among a process's open files; `None` when they
/// cannot be read (the directory lists, but its links are refused).
fn socket_inodes(pid: u32) -> Option<Vec<u64>> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut inodes = Vec::new();
    for fd in fds.flatten() {
        let target = match std::fs::read_link(fd.path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
            // Closed meanwhile.
            Err(_) => continue,
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
        {
            inodes.push(inode);
        }
    }
    Some(inodes)
}

/// `(uid, gid)` of a process whose real, effective and saved ids are one
/// user and one group (the kernel lets that user read its files).
fn single_identity(pid: u32) -> Option<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ids = |key: &str| -> Option<Vec<u32>> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .split_whitespace()
            .take(3)
            .map(|v| v.parse().ok())
            .collect()
    };
    let (u, g) = (ids("Uid:")?, ids("Gid:")?);
    let one = |v: &[u32]| v.len() == 3 && v.iter().all(|x| *x == v[0]);
    (one(&u) && one(&g) && u[0] != 0).then(|| (u[0], g[0]))
}

/// The wanted sockets among `pids`' files, read as `uid:gid`: by a thread
/// of its own that sets its filesystem ids (which only that thread has)
/// and ends after the reading.
fn owners_as(uid: u32, gid: u32, pids: Vec<u32>, wanted: HashSet<u64>) -> Vec<(u64, u32)> {
    let reader = std::thread::spawn(move || {
        // SAFETY: setfsgid and setfsuid change the filesystem ids of the
        // calling thread only (the kernel keeps credentials per thread and
        // libc passes these two straight through); this thread does
        // nothing but the reading below and then ends, so no other work
        // runs with them. Failure leaves root's ids: the reads then fail
        // as before, and nothing is found.
        unsafe {
            libc::setfsgid(gid);
            libc::setfsuid(uid);
        }
        let mut found = Vec::new();
        for pid in pids {
            for inode in socket_inodes(pid).unwrap_or_default() {
                if wanted.contains(&inode) {
                    found.push((inode, pid));
                }
            }
        }
        found
    });
    reader.join().unwrap_or_default()
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

    /// sock_diag and the tables agree on this host's listening sockets:
    /// the same ports, addresses and owners (a listener of ours among
    /// them, on each family).
    #[test]
    fn sock_diag_and_the_tables_agree() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind v4");
        let v6 = std::net::TcpListener::bind("[::1]:0").expect("bind v6");
        let tables = || {
            let mut found = from_tables();
            found.sort_by_key(|(_, inode)| *inode);
            found
        };
        let mut diag = diag::listening().expect("sock_diag");
        diag.sort_by_key(|(_, inode)| *inode);
        // Another program may open or close a port between the two reads:
        // read again until they agree.
        let mut from_tables = tables();
        for _ in 0..5 {
            if diag == from_tables {
                break;
            }
            diag = diag::listening().expect("sock_diag");
            diag.sort_by_key(|(_, inode)| *inode);
            from_tables = tables();
        }
        assert_eq!(diag, from_tables);
        for l in [&v4, &v6] {
            let addr = l.local_addr().expect("addr");
            assert!(
                diag.iter()
                    .any(|(p, _)| p.port == addr.port() && p.address == addr.ip().to_string()),
                "{addr} in {diag:?}"
            );
        }
        let ports = listening();
        assert!(ports
            .iter()
            .any(|p| p.port == v4.local_addr().expect("addr").port()
                && p.pid == Some(std::process::id())));
    }

    /// A reply cut short or lying about its length is an error, not a
    /// panic; an error message is the kernel's errno; done ends the dump.
    #[test]
    fn sock_diag_replies_are_read_with_care() {
        let header = |len: u32, kind: u16, seq: u32| {
            let mut h = Vec::new();
            h.extend_from_slice(&len.to_ne_bytes());
            h.extend_from_slice(&kind.to_ne_bytes());
            h.extend_from_slice(&0u16.to_ne_bytes());
            h.extend_from_slice(&seq.to_ne_bytes());
            h.extend_from_slice(&0u32.to_ne_bytes());
            h
        };
        let mut found = Vec::new();
        assert!(diag::parse(&header(10, 20, 1), 1, &mut found).is_err());
        assert!(diag::parse(&header(400, 20, 1), 1, &mut found).is_err());
        let mut err = header(20, 2, 1);
        err.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        let e = diag::parse(&err, 1, &mut found).expect_err("errno");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(diag::parse(&header(16, 3, 1), 1, &mut found).expect("done"));
        // Another request's messages are skipped.
        assert!(!diag::parse(&header(16, 3, 7), 1, &mut found).expect("skipped"));
        assert!(found.is_empty());
    }

    /// Watchers get the set once and then only changes, and a watcher
    /// waiting for a change does not keep the agent busy.
    #[tokio::test]
    async fn the_table_tells_each_watcher_each_set_once() {
        let table = PortTable::default();
        let mut a = table.subscribe();
        let first = tokio::time::timeout(Duration::from_secs(5), next(&mut a))
            .await
            .expect("first set in time")
            .expect("a set");
        // A second watcher gets the current set at once.
        let mut b = table.subscribe();
        let got = tokio::time::timeout(Duration::from_secs(5), next(&mut b))
            .await
            .expect("in time")
            .expect("a set");
        assert_eq!(got, first);
        // A new listener is a change both see.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let mut last = first;
        for (i, rx) in [&mut a, &mut b].into_iter().enumerate() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let set = tokio::time::timeout_at(deadline, next(rx))
                    .await
                    .expect("the new port in time")
                    .expect("a set");
                if set.iter().any(|p| p.port == port) {
                    if i == 0 {
                        last = set;
                    }
                    break;
                }
            }
        }
        // What comes next is a change, never the same set again (other
        // programs on this host may open ports meanwhile).
        if let Ok(Some(set)) = tokio::time::timeout(Duration::from_millis(600), next(&mut a)).await
        {
            assert_ne!(set, last, "an unchanged set was sent again");
        }
        drop(l);
    }

    #[test]
    fn a_sessions_processes_are_those_below_it_or_in_it() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let kid = child.id();
        assert!(in_session(kid, me), "a child is below its parent");
        assert!(in_session(me, me));
        assert!(!in_session(me, kid), "a parent is not below its child");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn session_events_announce_the_sessions_ports_and_their_closing() {
        let me = std::process::id();
        let mine = ListeningPort {
            port: 8123,
            address: "0.0.0.0".into(),
            pid: Some(me),
        };
        // PID 1's process (not below this test) and an unknown owner.
        let other = ListeningPort {
            port: 22,
            address: "0.0.0.0".into(),
            pid: Some(1),
        };
        let unknown = ListeningPort {
            port: 53,
            address: "127.0.0.1".into(),
            pid: None,
        };
        let mut reported = Vec::new();
        let ev = session_events(me, &mut reported, &[other.clone(), mine.clone(), unknown]);
        assert_eq!(
            ev,
            vec![Reply::PortOpened(SessionPort {
                port: 8123,
                address: "0.0.0.0".into(),
                pid: me
            })]
        );
        // Nothing new: nothing said.
        assert!(session_events(me, &mut reported, &[mine.clone(), other.clone()]).is_empty());
        let ev = session_events(me, &mut reported, &[other]);
        assert_eq!(
            ev,
            vec![Reply::PortClosed(SessionPort {
                port: 8123,
                address: "0.0.0.0".into(),
                pid: me
            })]
        );
        assert!(reported.is_empty());
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
