//! A driver that keeps its sandboxes in memory, for unit tests of what
//! drives a [`Driver`] (the daemon's manager). It records every call, moves
//! sandboxes between states the way [`crate::Runc`] does, and fails the
//! next call of a kind when a test asks it to. Nothing runs: its init pids
//! are above the kernel's largest pid (no process has one), and a sandbox
//! has a network namespace only if the test hands it one
//! ([`FakeDriver::set_netns`]).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::driver::Driver;
use crate::error::RuntimeError;
use crate::sandbox::{validate_id, SandboxSpec, SandboxState, SandboxStats};

/// The first fake pid: above `PID_MAX_LIMIT` (2^22), so never a real process.
const FIRST_PID: u32 = 1 << 23;

/// One call the driver received, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Start(Box<SandboxSpec>),
    State(String),
    InitPid(String),
    Netns(String),
    Stop { id: String, grace: Duration },
    Pause(String),
    Resume(String),
    Delete(String),
    Stats(String),
}

impl Call {
    pub fn op(&self) -> Op {
        match self {
            Call::Start(_) => Op::Start,
            Call::State(_) => Op::State,
            Call::InitPid(_) => Op::InitPid,
            Call::Netns(_) => Op::Netns,
            Call::Stop { .. } => Op::Stop,
            Call::Pause(_) => Op::Pause,
            Call::Resume(_) => Op::Resume,
            Call::Delete(_) => Op::Delete,
            Call::Stats(_) => Op::Stats,
        }
    }
}

/// A kind of call, to inject a failure into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Start,
    State,
    InitPid,
    Netns,
    Stop,
    Pause,
    Resume,
    Delete,
    Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, Copy)]
struct Sandbox {
    phase: Phase,
    pid: u32,
}

#[derive(Debug, Default)]
struct Inner {
    sandboxes: HashMap<String, Sandbox>,
    calls: Vec<Call>,
    failures: HashMap<Op, Vec<RuntimeError>>,
    last_pid: u32,
    netns: Option<PathBuf>,
    stats: SandboxStats,
}

impl Inner {
    fn next_pid(&mut self) -> u32 {
        self.last_pid = self.last_pid.max(FIRST_PID - 1) + 1;
        self.last_pid
    }

    /// Records `call`; the failure injected for its kind, if any.
    fn record(&mut self, call: Call) -> Result<(), RuntimeError> {
        let op = call.op();
        self.calls.push(call);
        match self.failures.get_mut(&op) {
            Some(queue) if !queue.is_empty() => Err(queue.remove(0)),
            _ => Ok(()),
        }
    }

    fn existing(&self, id: &str) -> Result<Sandbox, RuntimeError> {
        self.sandboxes
            .get(id)
            .copied()
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }

    /// Init's pid while it runs or is paused.
    fn live_pid(&self, id: &str) -> Result<u32, RuntimeError> {
        match self.existing(id)? {
            Sandbox {
                phase: Phase::Running | Phase::Paused,
                pid,
            } => Ok(pid),
            _ => Err(RuntimeError::NotRunning(id.to_string())),
        }
    }
}

/// Sandboxes in memory; see the module documentation.
#[derive(Debug, Default)]
pub struct FakeDriver {
    inner: Mutex<Inner>,
}

impl FakeDriver {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls so far of one kind.
    pub fn calls_of(&self, op: Op) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.op() == op)
            .cloned()
            .collect()
    }

    /// Forgets the calls so far.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The next call of kind `op` fails with `error` (and changes nothing).
    /// Several queue up, one per call.
    pub fn fail_next(&self, op: Op, error: RuntimeError) {
        self.lock().failures.entry(op).or_default().push(error);
    }

    /// What `state` answers for `id`, without recording a call.
    pub fn state_of(&self, id: &str) -> SandboxState {
        match self.lock().sandboxes.get(id) {
            None => SandboxState::Missing,
            Some(s) => match s.phase {
                Phase::Running => SandboxState::Running { pid: s.pid },
                Phase::Paused => SandboxState::Paused,
                Phase::Stopped => SandboxState::Stopped,
            },
        }
    }

    /// Puts sandbox `id` in `state` as if a driver had left it so (say,
    /// before a daemon restart); a paused one gets a fresh fake pid.
    pub fn set_state(&self, id: &str, state: SandboxState) {
        let mut inner = self.lock();
        let sandbox = match state {
            SandboxState::Missing => {
                inner.sandboxes.remove(id);
                return;
            }
            SandboxState::Running { pid } => Sandbox {
                phase: Phase::Running,
                pid,
            },
            SandboxState::Paused => Sandbox {
                phase: Phase::Paused,
                pid: inner.next_pid(),
            },
            SandboxState::Stopped => Sandbox {
                phase: Phase::Stopped,
                pid: 0,
            },
        };
        inner.sandboxes.insert(id.to_string(), sandbox);
    }

    /// The network namespace every running or paused sandbox reports
    /// (without one, `netns` fails). Give it only a namespace the test
    /// made: whatever drives the driver configures what it is handed.
    pub fn set_netns(&self, path: Option<PathBuf>) {
        self.lock().netns = path;
    }

    /// What `stats` reports for every running or paused sandbox.
    pub fn set_stats(&self, stats: SandboxStats) {
        self.lock().stats = stats;
    }
}

impl Driver for FakeDriver {
    fn start(&self, spec: &SandboxSpec, listener: OwnedFd) -> Result<(), RuntimeError> {
        drop(listener);
        let mut inner = self.lock();
        inner.record(Call::Start(Box::new(spec.clone())))?;
        validate_id(&spec.id)?;
        match inner.sandboxes.get(&spec.id).map(|s| s.phase) {
            Some(Phase::Running | Phase::Paused) => {
                return Err(RuntimeError::AlreadyRunning(spec.id.clone()))
            }
            // A stopped leftover is replaced, as runc's is.
            Some(Phase::Stopped) | None => {}
        }
        let pid = inner.next_pid();
        inner.sandboxes.insert(
            spec.id.clone(),
            Sandbox {
                phase: Phase::Running,
                pid,
            },
        );
        Ok(())
    }

    fn state(&self, id: &str) -> Result<SandboxState, RuntimeError> {
        self.lock().record(Call::State(id.to_string()))?;
        validate_id(id)?;
        Ok(self.state_of(id))
    }

    fn init_pid(&self, id: &str) -> Result<u32, RuntimeError> {
        let mut inner = self.lock();
        inner.record(Call::InitPid(id.to_string()))?;
        inner.live_pid(id)
    }

    fn netns(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        let mut inner = self.lock();
        inner.record(Call::Netns(id.to_string()))?;
        inner.live_pid(id)?;
        inner.netns.clone().ok_or_else(|| {
            RuntimeError::Network(format!("the fake sandbox {id:?} has no network namespace"))
        })
    }

    fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.record(Call::Stop {
            id: id.to_string(),
            grace,
        })?;
        validate_id(id)?;
        inner.sandboxes.remove(id);
        Ok(())
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.record(Call::Pause(id.to_string()))?;
        let mut sandbox = inner.existing(id)?;
        match sandbox.phase {
            Phase::Running | Phase::Paused => sandbox.phase = Phase::Paused,
            Phase::Stopped => return Err(RuntimeError::NotRunning(id.to_string())),
        }
        inner.sandboxes.insert(id.to_string(), sandbox);
        Ok(())
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.record(Call::Resume(id.to_string()))?;
        let mut sandbox = inner.existing(id)?;
        if sandbox.phase == Phase::Paused {
            sandbox.phase = Phase::Running;
        }
        inner.sandboxes.insert(id.to_string(), sandbox);
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.record(Call::Delete(id.to_string()))?;
        validate_id(id)?;
        inner.sandboxes.remove(id);
        Ok(())
    }

    fn stats(&self, id: &str) -> Result<SandboxStats, RuntimeError> {
        let mut inner = self.lock();
        inner.record(Call::Stats(id.to_string()))?;
        inner.live_pid(id)?;
        Ok(inner.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> OwnedFd {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        OwnedFd::from(a)
    }

    fn spec(id: &str) -> SandboxSpec {
        SandboxSpec::new(id, "/r", "/b", "/l", "/a")
    }

    #[test]
    fn sandboxes_move_through_their_states() {
        let d = FakeDriver::new();
        assert_eq!(d.state("s1").expect("state"), SandboxState::Missing);
        d.start(&spec("s1"), listener()).expect("start");
        let SandboxState::Running { pid } = d.state_of("s1") else {
            panic!("not running: {:?}", d.state_of("s1"));
        };
        assert!(pid >= FIRST_PID);
        assert!(matches!(
            d.start(&spec("s1"), listener()),
            Err(RuntimeError::AlreadyRunning(_))
        ));
        d.pause("s1").expect("pause");
        assert_eq!(d.state_of("s1"), SandboxState::Paused);
        assert_eq!(d.init_pid("s1").expect("pid of a paused one"), pid);
        d.resume("s1").expect("resume");
        assert_eq!(d.state_of("s1"), SandboxState::Running { pid });
        d.stop("s1", Duration::from_secs(3)).expect("stop");
        assert_eq!(d.state_of("s1"), SandboxState::Missing);
        d.stop("s1", Duration::ZERO).expect("stop is idempotent");
        assert!(matches!(d.pause("s1"), Err(RuntimeError::NotFound(_))));
        assert!(matches!(d.init_pid("s1"), Err(RuntimeError::NotFound(_))));
        assert_eq!(
            d.calls_of(Op::Stop),
            [
                Call::Stop {
                    id: "s1".into(),
                    grace: Duration::from_secs(3)
                },
                Call::Stop {
                    id: "s1".into(),
                    grace: Duration::ZERO
                }
            ]
        );
    }

    #[test]
    fn an_injected_failure_fails_one_call_and_changes_nothing() {
        let d = FakeDriver::new();
        d.fail_next(Op::Start, RuntimeError::InvalidSpec("injected".into()));
        assert!(matches!(
            d.start(&spec("s1"), listener()),
            Err(RuntimeError::InvalidSpec(_))
        ));
        assert_eq!(d.state_of("s1"), SandboxState::Missing);
        d.start(&spec("s1"), listener())
            .expect("the next start works");
        assert_eq!(d.calls_of(Op::Start).len(), 2);
    }

    #[test]
    fn a_network_namespace_only_when_given_one() {
        let d = FakeDriver::new();
        d.set_state("s1", SandboxState::Running { pid: FIRST_PID });
        assert!(matches!(d.netns("s1"), Err(RuntimeError::Network(_))));
        d.set_netns(Some("/run/test-netns".into()));
        assert_eq!(
            d.netns("s1").expect("netns"),
            PathBuf::from("/run/test-netns")
        );
        d.set_state("s1", SandboxState::Stopped);
        assert!(matches!(d.netns("s1"), Err(RuntimeError::NotRunning(_))));
    }
}
