//! The control socket: take the daemon's inherited listener or bind one, and
//! serve each accepted connection on its own task.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::stat::{fstat, SFlag};
use tokio::net::UnixListener;

use crate::cli::ListenOn;
use crate::connection;
use crate::log::log;
use crate::ports::PortTable;
use crate::services::Services;
use crate::session::registry::Sessions;

/// Get the listening socket. Must run inside the runtime.
pub fn open(on: &ListenOn) -> io::Result<UnixListener> {
    match on {
        ListenOn::Inherited(fd) => inherited(*fd),
        ListenOn::Path(path) => bind(path),
    }
}

fn inherited(fd: RawFd) -> io::Result<UnixListener> {
    let st = fstat(fd).map_err(|e| io::Error::other(format!("fd {fd}: {e}")))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::other(format!("fd {fd} is not a socket")));
    }
    // SAFETY: the daemon hands this fd to the agent (runc --preserve-fds) for
    // it alone; fstat above proved it open, and nothing else in the agent
    // knows the number, so taking ownership creates no second owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Commands the agent starts must not inherit the control socket.
    fcntl(owned.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    if !is_listening(&owned)? {
        return Err(io::Error::other(format!(
            "fd {fd} is not a listening socket"
        )));
    }
    let std_listener = std::os::unix::net::UnixListener::from(owned);
    std_listener.set_nonblocking(true)?;
    UnixListener::from_std(std_listener)
}

/// Whether the socket is in the listening state (`SO_ACCEPTCONN`).
fn is_listening(fd: &OwnedFd) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, a live
    // local of exactly that size, and updates `len`; the fd is open.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value != 0)
}

fn bind(path: &Path) -> io::Result<UnixListener> {
    // A socket left behind by an earlier run would make bind fail.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", path.display())))
}

/// Accept connections forever.
pub async fn serve(
    listener: UnixListener,
    sessions: Arc<Sessions>,
    services: Arc<Services>,
    ports: PortTable,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection::serve(
                    stream,
                    sessions.clone(),
                    services.clone(),
                    ports.clone(),
                ));
            }
            Err(e) => {
                // Out of fds or memory: back off instead of spinning.
                log!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
