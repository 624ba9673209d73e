//! TCP connections to ports inside a sprite (its URL, the proxy endpoint),
//! made by the daemon itself from sockets created in the sprite's network
//! namespace. A socket belongs to the namespace it was created in, whichever
//! thread later connects or uses it, so one thread of the daemon (and only
//! it) enters sprites' namespaces, to create sockets; their connects, reads
//! and writes then run on the runtime like any other socket's. No process of
//! the sprite is in the data path, and none of the sprite's CPU is spent on
//! its traffic.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

/// Sockets made per trip to the namespace thread; the rest wait for the
/// next connections (a server that closes every connection needs one per
/// request).
const BATCH: usize = 16;
/// How long a connect may take (a listener whose backlog is full never
/// answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to the namespace thread.
struct Job {
    ns: Arc<OwnedFd>,
    v6: bool,
    count: usize,
    reply: tokio::sync::oneshot::Sender<io::Result<Vec<TcpSocket>>>,
}

/// The thread that creates sockets inside sprites' network namespaces,
/// started on first use; it ends when the maker is dropped.
#[derive(Default)]
pub struct SocketMaker {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl SocketMaker {
    fn sender(&self) -> io::Result<mpsc::Sender<Job>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = jobs.as_ref() {
            return Ok(s.clone());
        }
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("netns-sockets".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let made = make(&job);
                    let _ = job.reply.send(made);
                }
            })?;
        *jobs = Some(tx.clone());
        Ok(tx)
    }

    async fn make(&self, ns: &Arc<OwnedFd>, v6: bool, count: usize) -> io::Result<Vec<TcpSocket>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            ns: ns.clone(),
            v6,
            count,
            reply,
        };
        self.sender()?
            .send(job)
            .map_err(|_| io::Error::other("the namespace thread is gone"))?;
        answer
            .await
            .map_err(|_| io::Error::other("the namespace thread dropped a request"))?
    }
}

/// On the namespace thread: enter the namespace, create the sockets. The
/// thread stays in whichever namespace it entered last; it never makes a
/// socket without entering the right one first.
fn make(job: &Job) -> io::Result<Vec<TcpSocket>> {
    nix::sched::setns(&*job.ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    (0..job.count)
        .map(|_| {
            if job.v6 {
                TcpSocket::new_v6()
            } else {
                TcpSocket::new_v4()
            }
        })
        .collect()
}

/// A running sprite's network namespace, held open while it runs.
pub struct Namespace {
    ns: Arc<OwnedFd>,
    maker: Arc<SocketMaker>,
    /// IPv4 sockets made ahead, not yet connected.
    spare: Mutex<Vec<TcpSocket>>,
}

impl Namespace {
    /// The namespace that `path` opens (as the sprite's driver reports it).
    pub fn open(path: &std::path::Path, maker: Arc<SocketMaker>) -> io::Result<Namespace> {
        let f = std::fs::File::open(path)?;
        Ok(Namespace {
            ns: Arc::new(OwnedFd::from(f)),
            maker,
            spare: Mutex::new(Vec::new()),
        })
    }

    async fn socket(&self, v6: bool) -> io::Result<TcpSocket> {
        if v6 {
            let mut one = self.maker.make(&self.ns, true, 1).await?;
            return one.pop().ok_or_else(|| io::Error::other("no socket made"));
        }
        if let Some(s) = self.lock_spare().pop() {
            return Ok(s);
        }
        let mut made = self.maker.make(&self.ns, false, BATCH).await?;
        let first = made
            .pop()
            .ok_or_else(|| io::Error::other("no socket made"))?;
        let mut spare = self.lock_spare();
        if spare.len() < BATCH {
            spare.extend(made);
        }
        Ok(first)
    }

    fn lock_spare(&self) -> std::sync::MutexGuard<'_, Vec<TcpSocket>> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to `ip:port` as seen from inside the sprite.
    pub async fn connect(&self, ip: IpAddr, port: u16) -> io::Result<TcpStream> {
        let sock = self.socket(ip.is_ipv6()).await?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(SocketAddr::new(ip, port)))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("port {port} did not accept the connection in time"),
                )
            })??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sockets made through the thread live in the namespace they were
    /// made for: here a namespace of this test's own, where a listener on
    /// loopback is reachable and the host's is not.
    #[tokio::test]
    async fn sockets_belong_to_the_namespace_they_were_made_in() {
        // A private network namespace, entered by a thread of its own that
        // binds a listener there and then waits to be told to end.
        let (tx, rx) = std::sync::mpsc::channel::<(u32, u16)>();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            // A fresh namespace's loopback is down.
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status();
            assert!(up.is_ok_and(|s| s.success()), "ip link set lo up");
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = l.local_addr().expect("addr").port();
            let tid = nix::unistd::gettid().as_raw() as u32;
            tx.send((tid, port)).expect("send");
            let _ = stop_rx.recv();
            drop(l);
        });
        let (tid, port) = rx.recv().expect("namespace thread");
        // The thread's namespace, by its task id.
        let path = std::path::PathBuf::from(format!("/proc/{tid}/ns/net"));
        let ns = Namespace::open(&path, Arc::default()).expect("ns");
        let inside = ns.connect("127.0.0.1".parse().expect("ip"), port).await;
        assert!(inside.is_ok(), "{inside:?}");
        // The host's loopback listener is not there.
        let host = std::net::TcpListener::bind("127.0.0.1:0").expect("host bind");
        let host_port = host.local_addr().expect("addr").port();
        let err = ns
            .connect("127.0.0.1".parse().expect("ip"), host_port)
            .await
            .expect_err("the host's listener is not in the namespace");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        stop_tx.send(()).expect("stop");
        t.join().expect("join");
    }
}
