//! Idmapped mounts: a sprite's files shown under its own host ids.
//!
//! Each running sprite has a host id range of its own (sprite-runtime's
//! driver hands them out), while everything it is made of is stored owned
//! by the one on-disk range (`StoreOptions::uid_shift`, 100000..165535):
//! the base image all sprites of it share, its volume, and the checkpoint
//! images that fork, restore, replication and the cold tier copy between
//! sprites as they are. Each layer of its root (and of its checkpoint
//! views) is mounted for it through an idmapped clone, made with
//! `open_tree(OPEN_TREE_CLONE)`, `mount_setattr(MOUNT_ATTR_IDMAP)` and
//! `move_mount` (runc 1.1 cannot make one): on-disk `from..from+size` is
//! seen as `to..to+size`, and what the sprite creates lands on disk in the
//! shared range again. A process that escaped its sprite runs as ids of
//! that sprite's range: it owns nothing of another sprite as seen through
//! that sprite's mounts, and nothing on disk, whose range no process has.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{Result, StoreError};

/// On-disk ids `from..from+size` seen as `to..to+size` (uids and gids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdShift {
    pub from: u32,
    pub to: u32,
    pub size: u32,
}

impl IdShift {
    /// The namespace map that says it: inside ids are the on-disk ones.
    /// Root stays root: overlayfs makes its work directories as whoever
    /// mounted it (host root), which a map without it refuses (EOVERFLOW)
    /// and the overlay then mounts read-only. Nothing of the sprite's is
    /// stored as 0, and the sprite's own namespace does not map host root.
    fn map_line(&self) -> String {
        format!("0 0 1\n{} {} {}\n", self.from, self.to, self.size)
    }
}

/// One namespace per shift, made once and kept (a mount holds its own
/// reference; these only spare the next mount making one).
#[derive(Debug, Default)]
pub(crate) struct IdMaps {
    made: Mutex<HashMap<IdShift, Arc<OwnedFd>>>,
}

impl IdMaps {
    fn namespace(&self, shift: IdShift) -> Result<Arc<OwnedFd>> {
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ns) = made.get(&shift) {
            return Ok(ns.clone());
        }
        let ns = crate::userns::create(None, &shift.map_line()).map_err(|e| {
            StoreError::io(
                "make the user namespace of an idmapped mount",
                "/proc/self/ns/user",
                e,
            )
        })?;
        let ns = Arc::new(ns);
        made.insert(shift, ns.clone());
        Ok(ns)
    }

    /// Mounts `src` (a directory, whole mount or not) at `dst` again with
    /// its ids shifted by `shift`; `dst` must exist.
    pub(crate) fn mount(&self, src: &Path, dst: &Path, shift: IdShift) -> Result<()> {
        let ns = self.namespace(shift)?;
        clone_idmapped(src, dst, &ns)
    }
}

impl crate::store::Store {
    /// Whether this kernel and pool can show a sprite's root under its own
    /// ids: an overlay on idmapped clones of two directories of the pool,
    /// made and taken down again in a scratch directory.
    pub fn idmapped_layers_work(&self) -> bool {
        let Some(from) = self.opts.uid_shift else {
            return false;
        };
        let dir = self.layout.pool().join(".idmap-probe");
        let result = self.probe_idmapped_layers(&dir, from);
        for target in ["merged", "l", "u"] {
            while let Ok(true) = crate::mount::unmount(&dir.join(target)) {}
        }
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "idmapped mounts do not work here: every sprite runs as the one shared id range");
                false
            }
        }
    }

    fn probe_idmapped_layers(&self, dir: &Path, from: u32) -> Result<()> {
        use crate::store::ensure_dir;
        let _ = std::fs::remove_dir_all(dir);
        for sub in [
            "", "lower", "upper", "upper/up", "upper/wk", "l", "u", "merged",
        ] {
            ensure_dir(&dir.join(sub), 0o700)?;
        }
        for sub in ["lower", "upper", "upper/up", "upper/wk"] {
            let p = dir.join(sub);
            nix::unistd::chown(
                &p,
                Some(nix::unistd::Uid::from_raw(from)),
                Some(nix::unistd::Gid::from_raw(from)),
            )
            .map_err(|e| StoreError::io("chown", &p, e.into()))?;
        }
        let shift = IdShift {
            from,
            to: PROBE_RANGE,
            size: 1,
        };
        self.idmaps
            .mount(&dir.join("lower"), &dir.join("l"), shift)?;
        self.idmaps
            .mount(&dir.join("upper"), &dir.join("u"), shift)?;
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            dir.join("l").display(),
            dir.join("u/up").display(),
            dir.join("u/wk").display()
        );
        let merged = dir.join("merged");
        crate::mount::mount_fs(
            Path::new("overlay"),
            &merged,
            "overlay",
            nix::mount::MsFlags::empty(),
            Some(&options),
        )?;
        // An overlay that cannot make its work directory mounts read-only
        // rather than fail.
        let st = nix::sys::statvfs::statvfs(&merged)
            .map_err(|e| StoreError::io("statvfs", &merged, e.into()))?;
        if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
            return Err(StoreError::io(
                "mount a writable overlay on idmapped layers",
                &merged,
                std::io::Error::from_raw_os_error(libc::EROFS),
            ));
        }
        Ok(())
    }
}

/// The id the probe shows its directories as (no one's).
const PROBE_RANGE: u32 = 4_000_000_000;

/// `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;

fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| StoreError::io("mount", p, std::io::Error::from_raw_os_error(libc::EINVAL)))
}

fn clone_idmapped(src: &Path, dst: &Path, ns: &OwnedFd) -> Result<()> {
    let (c_src, c_dst) = (c_path(src)?, c_path(dst)?);
    let fail =
        |op: &'static str, path: &Path| StoreError::io(op, path, std::io::Error::last_os_error());
    // SAFETY: open_tree reads the NUL-terminated path, which lives across
    // the call; it returns a new fd or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c_src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(fail("open_tree", src));
    }
    // SAFETY: a fresh fd from open_tree, owned by nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: mount_setattr reads `attr` (a live local of the size passed)
    // and the empty path; the fds are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(fail("mount_setattr(MOUNT_ATTR_IDMAP)", src));
    }
    // SAFETY: move_mount reads the two NUL-terminated paths, live across
    // the call; the tree fd is open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c_dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(fail("move_mount", dst));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn host_ids(p: &Path) -> (u32, u32) {
        let m = std::fs::metadata(p).expect("stat");
        (m.uid(), m.gid())
    }

    /// What is owned on disk by the shared range shows under the sprite's,
    /// and what is made through the mount lands in the shared range.
    #[test]
    fn a_clone_shows_the_shifted_ids_and_writes_the_stored_ones() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test mounts and chowns: run it as root"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir(&src).expect("mkdir");
        std::fs::create_dir(&dst).expect("mkdir");
        std::fs::write(src.join("f"), "x").expect("write");
        nix::unistd::chown(
            &src.join("f"),
            Some(nix::unistd::Uid::from_raw(101_000)),
            Some(nix::unistd::Gid::from_raw(101_000)),
        )
        .expect("chown");
        nix::unistd::chown(
            &src,
            Some(nix::unistd::Uid::from_raw(100_000)),
            Some(nix::unistd::Gid::from_raw(100_000)),
        )
        .expect("chown");
        let shift = IdShift {
            from: 100_000,
            to: 3_000_000,
            size: 65_536,
        };
        let maps = IdMaps::default();
        maps.mount(&src, &dst, shift).expect("idmapped clone");
        let seen = std::fs::metadata(dst.join("f")).expect("stat");
        // Host root stays root (overlayfs makes its work dirs as root).
        let root_made = std::fs::write(dst.join("g"), "");
        // Chowned through the clone to the sprite's 2000: 102000 on disk.
        let chowned = nix::unistd::chown(
            &dst.join("f"),
            Some(nix::unistd::Uid::from_raw(3_002_000)),
            None,
        );
        let on_disk = std::fs::metadata(src.join("f")).expect("stat");
        nix::mount::umount2(&dst, nix::mount::MntFlags::MNT_DETACH).expect("umount");
        assert_eq!((seen.uid(), seen.gid()), (3_001_000, 3_001_000));
        chowned.expect("chown through the clone");
        assert_eq!(on_disk.uid(), 102_000);
        root_made.expect("root writes through the clone");
        assert_eq!(host_ids(&src.join("g")), (0, 0));
        // An id of neither range has no place there.
        let stranger =
            nix::unistd::chown(&dst.join("g"), Some(nix::unistd::Uid::from_raw(5000)), None);
        assert!(stranger.is_err(), "uid 5000 stored through the clone");
    }
}
