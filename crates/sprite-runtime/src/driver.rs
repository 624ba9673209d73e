use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::RuntimeError;
use crate::gate::Gate;
use crate::sandbox::{IdMap, Isolation, SandboxSpec, SandboxState, SandboxStats};

/// An isolation driver: starts a sprite's init (the agent) in its sandbox,
/// controls its lifetime, and answers what the daemon needs to know of it.
/// Sandboxes outlive the daemon process: every method works on a sandbox
/// started by an earlier daemon. Everything a sandbox is made of (rootfs,
/// binds, limits, whether init gets no_new_privs) comes in its
/// [`SandboxSpec`]; what is the same for every sandbox of a host (state
/// dir, cgroup backend, [`EgressHook`]) is given to the driver when it is
/// made.
pub trait Driver: Send + Sync {
    /// Starts the sandbox with `listener` (the agent's listening socket) as
    /// fd 3 of its init, attaches its egress (see [`EgressHook`]), and
    /// returns once init runs. A stopped leftover of the same id (e.g. after
    /// a reboot) is replaced.
    fn start(&self, spec: &SandboxSpec, listener: OwnedFd) -> Result<(), RuntimeError>;

    /// [`Driver::start`] begun while the caller still mounts `spec.rootfs`:
    /// what needs no root runs at once, the rest once `gate` is opened
    /// (see [`crate::gate`]). A gate dropped unopened fails the start with
    /// [`RuntimeError::RootNotMounted`] and leaves no sandbox. By default
    /// the whole start waits for the gate.
    fn start_gated(
        &self,
        spec: &SandboxSpec,
        listener: OwnedFd,
        gate: Gate,
    ) -> Result<(), RuntimeError> {
        gate.wait(&spec.id)?;
        self.start(spec, listener)
    }

    fn state(&self, id: &str) -> Result<SandboxState, RuntimeError>;

    /// Whether [`Driver::set_hostname`] works: then a sandbox can be
    /// started ahead of the sprite it will be, under a placeholder name.
    fn renames(&self) -> bool {
        false
    }

    /// Sets the host name (of its UTS namespace) of a sandbox that runs:
    /// one started ahead, when it becomes a sprite and before anything of
    /// the sprite's runs in it. The daemon's own host name is untouched.
    fn set_hostname(&self, id: &str, hostname: &str) -> Result<(), RuntimeError> {
        let _ = hostname;
        Err(RuntimeError::InvalidSpec(format!(
            "this driver cannot rename sandbox {id}"
        )))
    }

    /// The host ids sandbox `id` is to run as (what its
    /// [`SandboxSpec::id_map`] says): a range of its own, reserved for it
    /// until it is deleted, where the driver gives one; else `shared`.
    /// Asked before its root is mounted, which shows its files under them.
    fn ids_for(&self, id: &str, shared: IdMap) -> IdMap {
        let _ = id;
        shared
    }

    /// The host pid of the sandbox's init while it runs or is paused.
    fn init_pid(&self, id: &str) -> Result<u32, RuntimeError>;

    /// The sandbox's network namespace while it runs or is paused: a path
    /// that opens it (for `setns`, `nsenter --net=`).
    fn netns(&self, id: &str) -> Result<PathBuf, RuntimeError>;

    /// SIGTERM to init, SIGKILL after `grace`, then removes the container:
    /// afterwards the state is `Missing`. Idempotent.
    fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Freezes every process of the sandbox (cgroup freezer).
    fn pause(&self, id: &str) -> Result<(), RuntimeError>;

    /// Thaws what [`Driver::pause`] froze.
    fn resume(&self, id: &str) -> Result<(), RuntimeError>;

    /// Thaws what [`Driver::pause`] froze if that takes one write to the
    /// sandbox's cgroup and no waiting, as it does but for a freeze still
    /// under way: true when done. False (nothing else tried) means
    /// [`Driver::resume`] must do it. Cheap enough for a caller that may
    /// not block.
    fn resume_now(&self, _id: &str) -> Result<bool, RuntimeError> {
        Ok(false)
    }

    /// Removes the container (killing what still runs), its egress and its
    /// cgroups. Idempotent.
    fn delete(&self, id: &str) -> Result<(), RuntimeError>;

    /// CPU time and memory of the sandbox's cgroup, for metering.
    fn stats(&self, id: &str) -> Result<SandboxStats, RuntimeError>;
}

/// Outbound network for sandboxes, handed to a driver when it is made and
/// called by it: [`EgressHook::attach`] once the sandbox's namespaces exist
/// and before anything inside can use the network, [`EgressHook::detach`]
/// whenever the sandbox is deleted. The hook decides what egress is
/// ([`crate::net::Egress`]: nftables, then pasta); the driver decides when,
/// because the moment depends on the mechanism: runc makes the network
/// namespace in `runc run`, with only `lo` in it until pasta attaches, while
/// a sandbox with its own network stack (gVisor's netstack) takes the
/// namespace's interfaces when it is created, so egress must be there
/// before. Called from inside the driver, egress costs a start nothing it
/// did not cost before, and no path that removes a sandbox can leave its
/// egress behind.
pub trait EgressHook: Send + Sync + std::fmt::Debug {
    /// Gives sandbox `id` outbound network; `init_pid` is a process in its
    /// network and user namespaces (`/proc/<pid>/ns/{net,user}`). A failure
    /// fails the start, and the driver removes the sandbox.
    fn attach(&self, id: &str, init_pid: u32) -> Result<(), RuntimeError>;

    /// Gives sandbox `id` outbound network through `netns`, a namespace the
    /// driver made (owned by the host's user namespace) and bound to that
    /// file, where the sandbox's packets arrive on
    /// [`crate::gvisor::GATEWAY_IF`] to be forwarded (see [`crate::Gvisor`]).
    fn attach_netns(&self, id: &str, netns: &std::path::Path) -> Result<(), RuntimeError> {
        let _ = netns;
        Err(RuntimeError::Network(format!(
            "this egress cannot serve sandbox {id}'s own namespace"
        )))
    }

    /// Whether [`EgressHook::attach_prepared`] serves: the driver then makes
    /// the sandbox's network namespace before it starts (owned by the
    /// sandbox's user namespace) and attaches it while runc runs.
    fn attaches_prepared(&self) -> bool {
        false
    }

    /// Gives sandbox `id` outbound network in `netns`, the namespace made
    /// for it that it is joining as this runs. The sandbox's way out
    /// appears only once its rules are in, as with `attach`; a namespace
    /// that was joined (not made by runc) also needs its loopback brought
    /// up here. A failure fails the start.
    fn attach_prepared(&self, id: &str, netns: &std::path::Path) -> Result<(), RuntimeError> {
        let _ = netns;
        Err(RuntimeError::Network(format!(
            "this egress cannot attach sandbox {id} before it starts"
        )))
    }

    /// Ends what `attach` started for `id` (nothing when there is none).
    /// Idempotent.
    fn detach(&self, id: &str) -> Result<(), RuntimeError>;
}

/// The drivers of a host, one per [`Isolation`] level: a start goes to the
/// driver its spec names, everything else to the one that knows the
/// sandbox (asked of gVisor's state first: a sandbox runc does not know
/// costs runc nothing to be asked about).
pub struct ByIsolation {
    pub container: Arc<dyn Driver>,
    /// `None` where runsc is not installed: a gvisor sprite is refused.
    pub gvisor: Option<Arc<crate::Gvisor>>,
}

impl std::fmt::Debug for ByIsolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByIsolation")
            .field("gvisor", &self.gvisor)
            .finish_non_exhaustive()
    }
}

impl ByIsolation {
    /// A container start removes a gVisor sandbox left of the same id
    /// (its isolation changed) first.
    fn delete_gvisor_leftover(&self, id: &str) -> Result<(), RuntimeError> {
        match self.gvisor.as_ref().filter(|g| g.knows(id)) {
            Some(g) => g.delete(id),
            None => Ok(()),
        }
    }

    fn of(&self, id: &str) -> &dyn Driver {
        match &self.gvisor {
            Some(g) if g.knows(id) => g.as_ref(),
            _ => self.container.as_ref(),
        }
    }
}

impl Driver for ByIsolation {
    fn start(&self, spec: &SandboxSpec, listener: OwnedFd) -> Result<(), RuntimeError> {
        // A leftover of the other level (its isolation changed) goes first.
        match spec.isolation {
            Isolation::Container => {
                self.delete_gvisor_leftover(&spec.id)?;
                self.container.start(spec, listener)
            }
            Isolation::Gvisor => {
                let Some(g) = &self.gvisor else {
                    return Err(RuntimeError::InvalidSpec(
                        "gvisor isolation needs runsc, which this host does not have".into(),
                    ));
                };
                if !matches!(self.container.state(&spec.id)?, SandboxState::Missing) {
                    self.container.delete(&spec.id)?;
                }
                g.start(spec, listener)
            }
        }
    }

    fn start_gated(
        &self,
        spec: &SandboxSpec,
        listener: OwnedFd,
        gate: Gate,
    ) -> Result<(), RuntimeError> {
        match spec.isolation {
            Isolation::Container => {
                self.delete_gvisor_leftover(&spec.id)?;
                self.container.start_gated(spec, listener, gate)
            }
            Isolation::Gvisor => {
                gate.wait(&spec.id)?;
                self.start(spec, listener)
            }
        }
    }

    fn state(&self, id: &str) -> Result<SandboxState, RuntimeError> {
        self.of(id).state(id)
    }

    fn renames(&self) -> bool {
        self.container.renames()
    }

    fn set_hostname(&self, id: &str, hostname: &str) -> Result<(), RuntimeError> {
        self.of(id).set_hostname(id, hostname)
    }

    fn ids_for(&self, id: &str, shared: IdMap) -> IdMap {
        self.container.ids_for(id, shared)
    }

    fn init_pid(&self, id: &str) -> Result<u32, RuntimeError> {
        self.of(id).init_pid(id)
    }

    fn netns(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        self.of(id).netns(id)
    }

    fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.of(id).stop(id, grace)
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.of(id).pause(id)
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.of(id).resume(id)
    }

    fn resume_now(&self, id: &str) -> Result<bool, RuntimeError> {
        self.of(id).resume_now(id)
    }

    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        self.of(id).delete(id)
    }

    fn stats(&self, id: &str) -> Result<SandboxStats, RuntimeError> {
        self.of(id).stats(id)
    }
}
