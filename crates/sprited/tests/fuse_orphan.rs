//! A daemon that dies while the FUSE connection of a self-filling volume
//! stays open (issue 19, found by the soak): a daemon killed while one of
//! its own threads waits for I/O on that volume cannot finish exiting, so
//! its `/dev/fuse` stays open, unserved, and every write to the volume, and
//! every host-wide `sync`, waits for ever. Here the test process keeps the
//! connection open the same way (a duplicate of the daemon's `/dev/fuse`,
//! taken before the kill) while a process in the sprite writes to the
//! volume. The next daemon must abort that connection before anything
//! else, recover the sprite, and lose nothing acknowledged.
//!
//! And the cause itself: a checkpoint's freeze of such a volume, whose
//! flush the server never answers, must not keep the killed daemon from
//! exiting (it runs in a child process that the dead connection fails).
//!
//! In a binary of its own: while the connection hangs, a `sync` anywhere
//! on the host (another test's sprite) would hang with it.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::{Api, Daemon};

/// 8 MiB of random data and its checksum.
const WRITE_BLOB: &str =
    "head -c 8388608 /dev/urandom > /home/sprite/blob; sync; md5sum /home/sprite/blob";
const SUM_BLOB: &str = "md5sum /home/sprite/blob";

/// A duplicate of the `/dev/fuse` file the daemon `pid` serves its lazy
/// volume with. While the test holds it, the connection outlives the
/// daemon; dropping it closes the last reference, which aborts the
/// connection (so a failing test does not leave the host hanging).
fn steal_fuse_fd(pid: u32) -> OwnedFd {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the daemon's fds");
    let target = fds
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l == std::path::Path::new("/dev/fuse"))
        })
        .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .expect("the daemon has /dev/fuse open while a volume fills");
    let pid = i32::try_from(pid).expect("pid");
    // SAFETY: plain syscalls on integers; the answers are checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    let pidfd = i32::try_from(pidfd).expect("fd");
    // SAFETY: `pidfd` is a descriptor this process just opened and owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // SAFETY: as above; the new descriptor is ours to own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    assert!(fd >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
    let fd = i32::try_from(fd).expect("fd");
    // SAFETY: `pidfd_getfd` gave this process a new descriptor it owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Whether the FUSE connection behind `fd` was aborted: reading a
/// non-blocking `/dev/fuse` answers ENODEV once it was; while it lives, a
/// request waiting to be served (taken, and never answered: as stuck as
/// before) or EAGAIN.
fn aborted(fd: &OwnedFd) -> bool {
    let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).expect("F_GETFL");
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).expect("F_SETFL");
    // A FUSE read needs room for the largest request (a write of
    // `max_write` bytes and its headers).
    let mut buf = vec![0u8; 4 << 20];
    match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
        Err(nix::errno::Errno::ENODEV) => true,
        Err(nix::errno::Errno::EAGAIN) | Ok(_) => false,
        other => panic!("unexpected read of /dev/fuse: {other:?}"),
    }
}

/// The two tests hold connections open on purpose: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A new sprite `name` holding 8 MiB of random data, evicted to the
/// object store: the blob's checksum.
async fn evicted_with_blob(api: &Api, name: &str) -> String {
    api.create(name).await;
    let sum = api.sh(name, WRITE_BLOB).await;
    let r = api
        .req(reqwest::Method::POST, &format!("/v1/sprites/{name}/evict"))
        .send()
        .await
        .expect("evict");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    sum
}

async fn location(api: &Api, name: &str) -> serde_json::Value {
    api.get_json(&format!("/v1/sprites/{name}")).await["storage"]["location"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_volume_whose_server_died_with_its_connection_open_is_recovered() {
    let _serial = SERIAL.lock().await;
    let mut d = Daemon::start();
    let api = d.client();
    let sum = evicted_with_blob(&api, "orphan").await;

    // Woken: the volume now fills itself through the daemon's FUSE server.
    // A process in it appends a line every 20 ms to a `sync`-mounted file:
    // each append waits for the server.
    api.sh(
        "orphan",
        "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i >> /home/sprite/tick; sleep 0.02; done' \
         >/dev/null 2>&1 </dev/null & sleep 0.3",
    )
    .await;
    assert_eq!(location(&api, "orphan").await, "filling");
    let held = steal_fuse_fd(d.pid().expect("daemon pid"));
    d.kill9();
    // The writer is now stuck in the dead server's connection.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!aborted(&held), "the connection lives on, unserved");

    let mark = d.log_mark();
    d.spawn();
    assert!(
        d.log()[mark..].contains("aborted the FUSE connection of a volume the last daemon served"),
        "{}",
        d.log()
    );
    assert!(aborted(&held), "the new daemon aborted the old connection");
    let api = d.client();
    assert_eq!(location(&api, "orphan").await, "object");

    // The next wake resumes the fill: the data is whole, every append the
    // writer got back is there in order, and the volume takes writes.
    assert_eq!(api.sh("orphan", SUM_BLOB).await, sum);
    let ticks = api.sh("orphan", "cat /home/sprite/tick").await;
    let ticks: Vec<u64> = ticks
        .lines()
        .map(|l| l.parse().expect("a whole line"))
        .collect();
    assert!(!ticks.is_empty(), "the writer wrote before the kill");
    assert!(
        ticks.iter().zip(1..).all(|(t, i)| *t == i),
        "appends in order, none torn: {ticks:?}"
    );
    assert_eq!(
        api.sh(
            "orphan",
            "echo after > /home/sprite/after; sync; cat /home/sprite/after"
        )
        .await,
        "after\n"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_while_freezing_a_volume_it_serves_exits() {
    let _serial = SERIAL.lock().await;
    let mut d = Daemon::start_with_env(&[], &[("SPRITED_FAILPOINTS", "checkpoint-lazy-stall")]);
    let api = d.client();
    let sum = evicted_with_blob(&api, "freezer").await;
    api.sh("freezer", "echo woken > /home/sprite/w").await;
    assert_eq!(location(&api, "freezer").await, "filling");

    // The checkpoint freezes the volume; its flush reaches the daemon's
    // FUSE server, which never answers.
    let mark = d.log_mark();
    let req = api
        .req(reqwest::Method::POST, "/v1/sprites/freezer/checkpoint")
        .json(&serde_json::json!({}));
    tokio::spawn(async move {
        let _ = req.send().await;
    });
    d.wait_log_since(mark, "failpoint reached", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(200));

    // Killed now, the daemon must end: no thread of its own waits on the
    // flush.
    let pid = d.pid().expect("daemon pid");
    let exited = d.kill9_within(Duration::from_secs(10));
    if !exited {
        // The wedge: unblock the host before failing.
        let _ = sprite_store::abort_lazy_connections(&d.data_dir);
        let _ = d.kill9_within(Duration::from_secs(30));
        panic!("daemon {pid} could not exit after SIGKILL: a thread of its own waited on its FUSE server");
    }
    d.env.clear();
    d.spawn();
    let api = d.client();
    assert_eq!(api.sh("freezer", SUM_BLOB).await, sum);
    assert_eq!(api.sh("freezer", "cat /home/sprite/w").await, "woken\n");
    // Not left frozen: it takes writes, and a checkpoint works.
    api.sh("freezer", "echo again > /home/sprite/w2; sync")
        .await;
    let ck = api.checkpoint("freezer", None).await;
    assert!(ck.starts_with('v'), "{ck}");
}
