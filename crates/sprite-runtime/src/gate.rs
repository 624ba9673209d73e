//! Starting a sandbox while its root is being mounted
//! ([`crate::Driver::start_gated`]): the part of a start that needs no
//! root (the starter's own start, the cgroups, the user namespace, the
//! network) runs at once, beside the mount, and the rest once the
//! mounting side opens the gate. A gate dropped unopened fails the start,
//! which then leaves nothing behind.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use crate::error::RuntimeError;

/// What a start waits on.
#[derive(Debug)]
pub struct Gate {
    r: File,
}

/// What the mounting side opens the gate with (or drops: not mounted).
#[derive(Debug)]
pub struct Opener {
    w: File,
}

/// A closed gate and its opener (a pipe, both ends close-on-exec).
pub fn gate() -> std::io::Result<(Gate, Opener)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((Gate { r: File::from(r) }, Opener { w: File::from(w) }))
}

impl Opener {
    /// The root is mounted: the start goes on.
    pub fn open(mut self) -> std::io::Result<()> {
        self.w.write_all(b"r")
    }
}

impl Gate {
    /// Blocks until the gate is opened; an error if it was dropped
    /// unopened (the root could not be mounted).
    pub fn wait(mut self, id: &str) -> Result<(), RuntimeError> {
        let mut byte = [0u8; 1];
        loop {
            return match self.r.read(&mut byte) {
                Ok(1) => Ok(()),
                Ok(_) => Err(RuntimeError::RootNotMounted(id.to_string())),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(RuntimeError::io(
                    "waiting for the root of",
                    std::path::Path::new(id),
                    e,
                )),
            };
        }
    }

    /// The read end, for a process that waits on it itself.
    pub(crate) fn into_fd(self) -> OwnedFd {
        OwnedFd::from(self.r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opened_gate_lets_through_and_a_dropped_one_fails() {
        let (g, o) = gate().expect("gate");
        o.open().expect("open");
        g.wait("a").expect("opened");
        let (g, o) = gate().expect("gate");
        drop(o);
        assert!(matches!(g.wait("b"), Err(RuntimeError::RootNotMounted(id)) if id == "b"));
    }
}
