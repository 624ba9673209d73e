use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::error::RuntimeError;
use crate::sandbox::{SandboxSpec, SandboxState, SandboxStats};

/// An isolation driver: starts a sprite's init (the agent) in its sandbox
/// and controls its lifetime. Sandboxes outlive the daemon process: every
/// method works on a sandbox started by an earlier daemon.
pub trait Driver: Send + Sync {
    /// Starts the sandbox with `listener` (the agent's listening socket) as
    /// fd 3 of its init, and returns once init runs. A stopped leftover of
    /// the same id (e.g. after a reboot) is replaced.
    fn start(&self, spec: &SandboxSpec, listener: OwnedFd) -> Result<(), RuntimeError>;

    fn state(&self, id: &str) -> Result<SandboxState, RuntimeError>;

    /// SIGTERM to init, SIGKILL after `grace`, then removes the container:
    /// afterwards the state is `Missing`. Idempotent.
    fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Freezes every process of the sandbox (cgroup freezer).
    fn pause(&self, id: &str) -> Result<(), RuntimeError>;

    fn resume(&self, id: &str) -> Result<(), RuntimeError>;

    /// Removes the container (killing what still runs) and its cgroups. Idempotent.
    fn delete(&self, id: &str) -> Result<(), RuntimeError>;

    /// CPU time and memory of the sandbox's cgroup, for metering.
    fn stats(&self, id: &str) -> Result<SandboxStats, RuntimeError>;
}
