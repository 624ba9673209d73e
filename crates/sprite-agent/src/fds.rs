//! File descriptors the agent inherited from whatever started it.
//!
//! runc, a test harness or a build tool may hand down descriptors without
//! close-on-exec (a jobserver pipe, `/dev/null` copies, the control socket).
//! None of them is for the commands the agent runs, so every inherited fd
//! above stderr is marked close-on-exec at start.

use std::os::fd::RawFd;

/// Highest fd probed when `/proc` cannot be read.
const PROBE_LIMIT: RawFd = 1024;

/// Mark every open fd above 2 close-on-exec. Call before anything else
/// opens files; fds opened later (std, tokio) are close-on-exec already.
pub fn close_inherited_on_exec() {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .filter(|&fd| fd > 2)
            .collect(),
        Err(_) => (3..PROBE_LIMIT).collect(),
    };
    for fd in fds {
        // Closed fds (like the one that listed the directory) fail with
        // EBADF, which is fine.
        if let Ok(flags) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD) {
            let flags =
                nix::fcntl::FdFlag::from_bits_truncate(flags) | nix::fcntl::FdFlag::FD_CLOEXEC;
            let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags));
        }
    }
}
