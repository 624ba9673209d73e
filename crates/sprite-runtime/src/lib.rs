//! Isolation for sprites: one [`Driver`] trait, implemented by [`Runc`]
//! (an OCI bundle written with `oci-spec`, started by `sprite-start` or
//! the `runc` CLI), plus cgroup v1/v2 handling and statistics, and the
//! [`EgressHook`] a driver calls to give its sandboxes outbound network
//! ([`net::Egress`]). Knows paths, not the DB or HTTP. With the `fake`
//! feature, `fake::FakeDriver` keeps sandboxes in memory, for unit tests
//! of what drives a driver.

pub mod bundle;
pub mod cgroup;
mod devices;
mod driver;
mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod gate;
pub mod gvisor;
pub mod gvisor_platform;
mod native;
pub mod net;
mod priority;
mod runc;
mod sandbox;
pub mod seccomp;
mod spawn;
pub mod spec;
pub mod userns;

pub use driver::{ByIsolation, Driver, EgressHook};
pub use error::RuntimeError;
pub use gate::{Gate, Opener};
pub use gvisor::Gvisor;
pub use oci_spec::runtime::Capability;
pub use runc::Runc;
pub use sandbox::{
    validate_id, Bind, Device, IdMap, Isolation, Limits, SandboxSpec, SandboxState, SandboxStats,
    AGENT_FD, AGENT_PATH_IN_SPRITE, SPRITE_ENV_PATH_IN_SPRITE,
};
