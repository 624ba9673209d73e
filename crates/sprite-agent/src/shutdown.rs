//! Stopping: which signals stop the agent, and ending every process on the
//! way out.

use std::io;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, Signal as SignalStream, SignalKind};

use crate::log::{log, Repeats};
use crate::session::registry::Sessions;

/// How long processes get between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);
/// How long exits of killed sessions may take to reach their clients.
const AFTER_SIGKILL: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);

/// The agent's own signal handlers. Installed handlers (rather than
/// ignoring) keep dispositions default for the commands, which reset
/// handlers on exec but would inherit an ignore.
pub struct StopSignals {
    pid1: bool,
    term: SignalStream,
    int: SignalStream,
    hup: SignalStream,
}

impl StopSignals {
    pub fn install(pid1: bool) -> io::Result<StopSignals> {
        Ok(StopSignals {
            pid1,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Wait for a signal that stops the agent: SIGTERM; SIGINT too when not
    /// PID 1 (Ctrl-C on a host). SIGHUP, and SIGINT as PID 1, are ignored.
    pub async fn wait(&mut self) -> &'static str {
        // Anything in the sprite may send these in a loop.
        let (mut ints, mut hups) = (Repeats::new(), Repeats::new());
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => {
                    if !self.pid1 {
                        return "SIGINT";
                    }
                    if let Some(skipped) = ints.pass() {
                        log!("ignoring SIGINT ({skipped} more since the last line)");
                    }
                }
                _ = self.hup.recv() => {
                    if let Some(skipped) = hups.pass() {
                        log!("ignoring SIGHUP ({skipped} more since the last line)");
                    }
                }
            }
        }
    }
}

/// SIGTERM every session's process group (and, as PID 1, every process in
/// the sprite), wait up to [`GRACE`], then SIGKILL what is left.
pub async fn stop_everything(sessions: &Sessions, pid1: bool) {
    let live = sessions.live();
    for s in &live {
        let _ = s.signal(Signal::SIGTERM);
    }
    if pid1 {
        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + GRACE;
    loop {
        let sessions_done = live.iter().all(|s| !s.is_live());
        // As PID 1, kill(-1, 0) fails with ESRCH once no other process is
        // left (zombies count until the reaper has collected them).
        let others_done = !pid1 || kill(Pid::from_raw(-1), None) == Err(Errno::ESRCH);
        if (sessions_done && others_done) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    for s in live.iter().filter(|s| s.is_live()) {
        let _ = s.signal(Signal::SIGKILL);
    }
    if pid1 {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    }
    // Let attached clients see the exits of what was just killed.
    let deadline = tokio::time::Instant::now() + AFTER_SIGKILL;
    while live.iter().any(|s| !s.is_finished()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
}
