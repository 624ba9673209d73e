//! Pseudo-terminals: opening a pair, sizing it, and async I/O on the master.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use tokio::io::unix::AsyncFd;

/// A freshly opened pair; both ends are close-on-exec.
pub struct Pair {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Open a pty pair sized `rows` x `cols`.
pub fn open(rows: u16, cols: u16) -> io::Result<Pair> {
    let ptm = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&ptm)?;
    unlockpt(&ptm)?;
    let name = ptsname_r(&ptm)?;
    // SAFETY: `into_raw_fd` hands over sole ownership of the open master fd.
    let master = unsafe { OwnedFd::from_raw_fd(ptm.into_raw_fd()) };
    // std opens with O_CLOEXEC; O_NOCTTY keeps the agent itself from
    // acquiring the terminal.
    let slave: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&name)?
        .into();
    set_size(&master, rows, cols)?;
    Ok(Pair { master, slave })
}

/// Set the window size (the kernel sends `SIGWINCH` to the foreground group).
pub fn set_size(fd: &impl AsRawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which
    // points at a live, initialised local for the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &ws as *const libc::winsize,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The master side, registered with the runtime for non-blocking I/O.
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

impl Master {
    /// Take the master fd, make it non-blocking and register it.
    pub fn new(fd: OwnedFd) -> io::Result<Master> {
        let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which owns it
        // from here on: it stays open and keeps its number until the
        // `AsyncFd` is dropped, and `as_raw_fd` always returns that number.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(Master { fd })
    }

    /// Read terminal output; `Ok(0)` once every slave fd is closed (the
    /// kernel reports that as `EIO` on the master).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_raw_fd(), buf).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EIO as i32) => return Ok(0),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Write all of `data` as terminal input, waiting while the kernel's
    /// input queue is full.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// The terminal's foreground process group, if it has one.
    pub fn foreground_group(&self) -> Option<nix::unistd::Pid> {
        nix::unistd::tcgetpgrp(self.fd.get_ref())
            .ok()
            .filter(|p| p.as_raw() > 0)
    }

    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        set_size(self.fd.get_ref(), rows, cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_sized_pair() {
        let pair = open(33, 111).expect("openpty");
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` into the live local.
        let rc = unsafe { libc::ioctl(pair.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_row, ws.ws_col), (33, 111));
        let fd_flags = fcntl(pair.master.as_raw_fd(), FcntlArg::F_GETFD).expect("getfd");
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0);
    }
}
