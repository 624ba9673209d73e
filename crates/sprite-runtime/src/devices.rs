//! The device nodes of a sandbox's [`Device`]s. Each start makes them
//! afresh in `<bundle>/devices` (0700: only the runtime reaches them on the
//! host), owned by the sandbox's root, and the spec binds each at its path
//! inside. A node of our own rather than the host's: the host's belongs to
//! a user the sandbox's user namespace does not map, and its mode is the
//! host's (often 0600), so root inside could not open it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chown, Gid, Uid};

use crate::error::{Result, RuntimeError};
use crate::sandbox::{Device, SandboxSpec};

/// Where the node of `dev` is made on the host.
pub(crate) fn node_path(bundle_dir: &Path, dev: &Device) -> PathBuf {
    let flat = dev.path.trim_start_matches('/').replace('/', "_");
    bundle_dir.join("devices").join(flat)
}

/// Makes the nodes of the sandbox's devices (and removes those of an
/// earlier start).
pub(crate) fn make_nodes(spec: &SandboxSpec) -> Result<()> {
    let dir = spec.bundle_dir.join("devices");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(RuntimeError::io("remove", &dir, e)),
    }
    if spec.devices.is_empty() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| RuntimeError::io("mkdir", &dir, e))?;
    let owner = spec.id_map.map(|m| m.host_base).unwrap_or(0);
    for dev in &spec.devices {
        let node = node_path(&spec.bundle_dir, dev);
        let nix_io = |what: &'static str, e: nix::Error| RuntimeError::io(what, &node, e.into());
        mknod(
            &node,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(dev.mode),
            makedev(dev.major, dev.minor),
        )
        .map_err(|e| nix_io("mknod", e))?;
        chown(
            &node,
            Some(Uid::from_raw(owner)),
            Some(Gid::from_raw(owner)),
        )
        .map_err(|e| nix_io("chown", e))?;
        // mknod's mode went through the umask.
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(dev.mode))
            .map_err(|e| RuntimeError::io("chmod", &node, e))?;
    }
    Ok(())
}
