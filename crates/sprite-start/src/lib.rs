//! Starting a sandbox's init without runc.
//!
//! `runc create` costs a start ~20 ms before anything of the sandbox runs:
//! two starts of a Go runtime (`runc create`, then `runc init` re-executed
//! from itself), its C bootstrap's three-process dance, a state file of
//! ~10 KB, all of it the same for every sprite. What it does for the
//! sandboxes sprited makes is a fixed list of system calls, and
//! `sprite-runtime` writes that list down as a [`Plan`] (from the same OCI
//! spec it gives runc, so the two cannot drift apart in what they
//! promise). This crate carries it out, in a process of its own: the
//! static `sprite-agent` binary run on the host with [`ARG`] (see
//! [`main`]), so that nothing forks the multi-threaded daemon.
//!
//! The result is what runc leaves, read by the same code: an init waiting
//! to exec in its exec fifo (`<state_dir>/exec.fifo`), a `state.json`
//! with its pid, start time and cgroup directories, and its pid in the
//! pid file.

mod plan;
mod start;

pub use plan::{Caps, CgroupDir, CgroupFs, Mount, MountKind, Plan, Rlimit, PLAN_FILE};
pub use start::{main, StateFile, STATE_FILE};

/// The first argument that makes `sprite-agent` run [`main`] on the host.
pub const ARG: &str = "__sprite-start";
