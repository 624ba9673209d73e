//! The one place that calls `waitpid`.
//!
//! As PID 1 (or a child subreaper on the host) the agent inherits every
//! orphan, so a single task driven by `SIGCHLD` reaps with
//! `waitpid(-1, WNOHANG)` until nothing is left and routes each status to
//! the session that owns the pid. Nothing else may wait for children: not
//! `tokio::process`, not `std::process::Child::wait`.
//!
//! Spawning happens under the same lock as reaping. That closes two races:
//! a child that exits before its pid is registered, and std's
//! `Command::spawn`, which itself waits for a child whose `exec` failed and
//! would panic if the reaper took that status first.
//!
//! Statuses of pids nobody registered (orphans) are kept for a while as
//! "early" statuses, so a registration that comes after the reaping still
//! gets its status. When a spawn returns a pid that has such an entry, the
//! entry is stale (the pid was reused: nothing can be reaped during the
//! spawn) and is dropped.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, Mutex};

use crate::log::log;

/// How long the status of an unclaimed pid is kept.
const EARLY_TTL: Duration = Duration::from_secs(60);
/// At most this many unclaimed statuses are kept (orphans are never claimed).
const EARLY_MAX: usize = 4096;
/// Reap even without a signal this often, as a safety net.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Receives a child's exit code: its status, or 128 + signal.
pub type ExitReceiver = oneshot::Receiver<i32>;

#[derive(Default)]
struct Table {
    waiting: HashMap<i32, oneshot::Sender<i32>>,
    early: HashMap<i32, (i32, Instant)>,
}

impl Table {
    fn register(&mut self, pid: i32) -> ExitReceiver {
        let (tx, rx) = oneshot::channel();
        match self.early.remove(&pid) {
            Some((code, _)) => {
                let _ = tx.send(code);
            }
            None => {
                self.waiting.insert(pid, tx);
            }
        }
        rx
    }

    fn route(&mut self, pid: i32, code: i32) {
        match self.waiting.remove(&pid) {
            Some(tx) => {
                let _ = tx.send(code);
            }
            None => {
                let now = Instant::now();
                self.early
                    .retain(|_, (_, at)| now.duration_since(*at) < EARLY_TTL);
                if self.early.len() >= EARLY_MAX {
                    if let Some(oldest) = self
                        .early
                        .iter()
                        .min_by_key(|(_, (_, at))| *at)
                        .map(|(p, _)| *p)
                    {
                        self.early.remove(&oldest);
                    }
                }
                self.early.insert(pid, (code, now));
            }
        }
    }

    /// Reap every child that has exited.
    fn reap_all(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) => {
                    if let Some((pid, code)) = exit_code(status) {
                        self.route(pid, code);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => break,
                Err(e) => {
                    log!("waitpid: {e}");
                    break;
                }
            }
        }
    }
}

/// The pid and exit code of a terminal wait status (exit or signal death).
pub fn exit_code(status: WaitStatus) -> Option<(i32, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

/// Handle on the reaper: spawns children and hands out their exit codes.
#[derive(Clone)]
pub struct Reaper {
    table: Arc<Mutex<Table>>,
}

impl Reaper {
    /// Install the `SIGCHLD` handler and start the reaping task. Must be
    /// called inside the runtime, before any child is spawned.
    pub fn start() -> io::Result<Reaper> {
        let mut sigchld = signal(SignalKind::child())?;
        let table = Arc::new(Mutex::new(Table::default()));
        let reaper = Reaper {
            table: table.clone(),
        };
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            loop {
                table.lock().await.reap_all();
                tokio::select! {
                    _ = sigchld.recv() => {}
                    _ = sweep.tick() => {}
                }
            }
        });
        Ok(reaper)
    }

    /// Spawn `cmd` and register its pid, with reaping held off meanwhile.
    ///
    /// Blocks (on the lock and on the child's `exec`): call it from
    /// `spawn_blocking`. The returned [`Child`] must never be waited on.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, ExitReceiver)> {
        let mut table = self.table.blocking_lock();
        spawn_locked(&mut table, cmd)
    }

    /// [`Reaper::spawn`] on the runtime's own thread: the fork, and the
    /// wait for the child's `exec`, happen here (a fraction of a
    /// millisecond in which this runtime runs nothing else) instead of on
    /// a blocking thread. On an idle machine each hand-off between threads
    /// wakes a halted CPU, and an exec's latency is mostly such wake-ups.
    pub async fn spawn_now(&self, cmd: &mut Command) -> io::Result<(Child, ExitReceiver)> {
        let mut table = self.table.lock().await;
        spawn_locked(&mut table, cmd)
    }
}

fn spawn_locked(table: &mut Table, cmd: &mut Command) -> io::Result<(Child, ExitReceiver)> {
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
    // Reaping is held off: an early status for this pid belongs to an
    // earlier process that had the same pid.
    table.early.remove(&pid);
    let rx = table.register(pid);
    Ok((child, rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let p = Pid::from_raw(42);
        assert_eq!(exit_code(WaitStatus::Exited(p, 3)), Some((42, 3)));
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some((42, 137))
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn early_statuses_are_kept_for_late_registration() {
        let mut t = Table::default();
        t.route(7, 5);
        let mut rx = t.register(7);
        assert_eq!(rx.try_recv(), Ok(5));
        let mut rx = t.register(8);
        assert!(rx.try_recv().is_err());
        t.route(8, 0);
        assert_eq!(rx.try_recv(), Ok(0));
        assert!(t.early.is_empty());
    }

    #[test]
    fn unclaimed_statuses_are_bounded() {
        let mut t = Table::default();
        for pid in 0..(EARLY_MAX as i32 + 10) {
            t.route(pid, 0);
        }
        assert!(t.early.len() <= EARLY_MAX);
    }
}
