//! Starting sandboxes below the daemon's CPU priority.
//!
//! `runc create` and the `runc init` it leaves behind take ~20 ms of CPU per
//! start. On a small host that is busy making sprites they fill every core,
//! and the daemon's API threads wait their turn behind them: a listing took
//! 60-130 ms at p99 while 500 sprites were made on 2 cores, 30 ms with runc
//! ten steps nicer, at the same rate of starts. So runc is spawned from a
//! thread lowered for the spawn ([`Lowered`]), and its init, which
//! inherited that, is put back ([`set_process`]) before it runs anything of
//! the sprite's: a sprite runs at the daemon's priority, as before.

use std::io;

/// How many steps of niceness a sandbox's start-up runs below the thread
/// that starts it.
pub const START_NICE_STEPS: i32 = 10;
/// `CAP_SYS_NICE`: taking a thread's niceness back down needs it.
const CAP_SYS_NICE: u32 = 23;

/// The calling thread, lowered: what it spawns meanwhile starts at the
/// lower priority. Put back when dropped.
#[derive(Debug)]
pub struct Lowered {
    tid: libc::id_t,
    was: i32,
}

impl Lowered {
    /// Lowers the calling thread by `steps` (niceness up to 19 at most).
    /// `None`, with nothing changed, where this process could not put it
    /// back (no `CAP_SYS_NICE`) or the kernel refused.
    pub fn by(steps: i32) -> Option<Lowered> {
        static MAY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if !*MAY.get_or_init(|| crate::spec::has_effective_cap(CAP_SYS_NICE)) {
            return None;
        }
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        let was = nice_of(tid).ok()?;
        set(tid, (was + steps).min(19)).ok()?;
        Some(Lowered { tid, was })
    }

    /// The niceness the thread had, and has again once this is dropped.
    pub fn was(&self) -> i32 {
        self.was
    }
}

impl Drop for Lowered {
    fn drop(&mut self) {
        if let Err(e) = set(self.tid, self.was) {
            tracing::warn!(error = %e, nice = self.was, "putting a thread's priority back");
        }
    }
}

/// Sets every thread of process `pid` to niceness `nice`. Threads that end
/// meanwhile are skipped; a process that is gone is an error.
pub fn set_process(pid: u32, nice: i32) -> io::Result<()> {
    // The main thread first: a Go process (runc init) execs from it.
    set(pid as libc::id_t, nice)?;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Some(tid) = task?
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::id_t>().ok())
        else {
            continue;
        };
        match set(tid, nice) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            other => other?,
        }
    }
    Ok(())
}

/// The niceness of thread `tid`.
pub fn nice_of(tid: libc::id_t) -> io::Result<i32> {
    // getpriority may return -1 as a niceness: only errno tells an error.
    nix::errno::Errno::clear();
    // SAFETY: getpriority only reads its scalar arguments.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    match nix::errno::Errno::last_raw() {
        0 => Ok(nice),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

fn set(tid: libc::id_t, nice: i32) -> io::Result<()> {
    // SAFETY: setpriority only reads its scalar arguments; on Linux it
    // sets the one thread `tid`.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_tid() -> libc::id_t {
        // SAFETY: gettid has no arguments and cannot fail.
        unsafe { libc::gettid() as libc::id_t }
    }

    /// A child spawned while the thread is lowered starts lowered; the
    /// thread is back once the guard drops, and the child can be put back
    /// too, every thread of it.
    #[test]
    fn a_spawn_runs_lowered_and_is_put_back() {
        if !crate::spec::has_effective_cap(CAP_SYS_NICE) {
            panic!("this test needs CAP_SYS_NICE (run it as root)");
        }
        // On a thread of its own: the test harness's threads stay as they are.
        std::thread::spawn(|| {
            let before = nice_of(own_tid()).expect("nice");
            let lowered = Lowered::by(START_NICE_STEPS).expect("lowered");
            assert_eq!(lowered.was(), before);
            assert_eq!(
                nice_of(own_tid()).expect("nice"),
                (before + START_NICE_STEPS).min(19)
            );
            let mut child = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("spawn sleep");
            drop(lowered);
            assert_eq!(nice_of(own_tid()).expect("nice"), before);
            let pid = child.id();
            assert_eq!(
                nice_of(pid as libc::id_t).expect("child's nice"),
                (before + START_NICE_STEPS).min(19)
            );
            set_process(pid, before).expect("put back");
            assert_eq!(nice_of(pid as libc::id_t).expect("child's nice"), before);
            child.kill().expect("kill");
            child.wait().expect("wait");
            let gone = set_process(pid, before).expect_err("a process that is gone");
            assert_eq!(gone.raw_os_error(), Some(libc::ESRCH), "{gone}");
        })
        .join()
        .expect("the test's thread");
    }
}
