//! The data dir's runtime folders on a tmpfs: what a running sprite needs
//! and a reboot forgets (its run dir with the mount points under it, the
//! bundle, the policy files; runc's state), kept off the data dir's disk.
//!
//! A start makes ~20 inodes there and a destroy deletes them. On ext4
//! without a journal, every inode allocation checks the inodes deleted in
//! the last minute one by one (`recently_deleted`), which made a fifth of
//! the CPU of a burst of creates. In memory they cost nothing of the sort,
//! and nothing in them has to outlive a reboot: a reboot ends every sandbox
//! and unmounts every volume, and a start makes its files again.
//!
//! A folder moves onto a tmpfs only while nothing is mounted under the
//! sprites' run dirs (no sandbox runs): its files are copied into the new
//! tmpfs and the ones on disk are removed. The move can be cut short at any
//! point and finishes at the next start: the files on disk wait beside the
//! folder (`<dir>.disk`) until they are copied.

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::error::{IoContext, Result, StoreError};
use crate::{mount, mountinfo};

/// The source name of the tmpfs mounts this module makes.
const SOURCE: &str = "sprited-run";

/// Where a runtime folder's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// On a tmpfs (this start mounted it, or an earlier one).
    Tmpfs,
    /// On the data dir's disk: something was mounted under the sprites'
    /// run dirs (this path), so the folder could not move this time.
    KeptOnDisk(PathBuf),
}

/// Puts each of `dirs` (a folder and its mode) on a tmpfs of its own,
/// unless one already is. `sprites` is the sprites' run dirs: while
/// anything is mounted under them, a sandbox may run, and folders still on
/// disk stay there (a move would hide its files from it).
pub fn place_on_tmpfs(dirs: &[(&Path, u32)], sprites: &Path) -> Result<Vec<Placed>> {
    let mounts = mountinfo::read()?;
    let busy = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point.starts_with(sprites) && m.mount_point != sprites)
        .map(|m| m.mount_point.clone());
    let mut placed = Vec::with_capacity(dirs.len());
    for &(dir, mode) in dirs {
        let on_tmpfs = mountinfo::mount_at(&mounts, dir).is_some_and(|m| m.fs_type == "tmpfs");
        if on_tmpfs {
            // A move cut short after the mount: its files are still aside.
            finish_copy(dir)?;
            placed.push(Placed::Tmpfs);
            continue;
        }
        match &busy {
            Some(mounted) => placed.push(Placed::KeptOnDisk(mounted.clone())),
            None => {
                move_onto_tmpfs(dir, mode)?;
                placed.push(Placed::Tmpfs);
            }
        }
    }
    Ok(placed)
}

/// Where a folder's files on disk wait while it moves onto a tmpfs.
fn aside(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".disk");
    dir.with_file_name(name)
}

/// Moves `dir`, which is no mount point, onto a new tmpfs of mode `mode`.
fn move_onto_tmpfs(dir: &Path, mode: u32) -> Result<()> {
    let aside = aside(dir);
    match (dir.exists(), aside.exists()) {
        (true, false) => std::fs::rename(dir, &aside).ctx("rename", dir)?,
        // Cut short after the rename: what was made in `dir` since joins
        // the files aside.
        (true, true) => {
            copy_tree(dir, &aside)?;
            remove_unmounted(dir)?;
        }
        (false, _) => {}
    }
    std::fs::create_dir(dir).ctx("mkdir", dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).ctx("chmod", dir)?;
    let options = format!("mode={mode:o}");
    // Not `nodev`: a sandbox's granted devices are nodes in its bundle,
    // bound into it from there (`sprite_runtime::devices`).
    mount::mount_fs(
        Path::new(SOURCE),
        dir,
        "tmpfs",
        MsFlags::MS_NOSUID,
        Some(&options),
    )?;
    finish_copy(dir)
}

/// Copies the files waiting aside of `dir` into it, then removes them.
fn finish_copy(dir: &Path) -> Result<()> {
    let aside = aside(dir);
    if !aside.exists() {
        return Ok(());
    }
    copy_tree(&aside, dir)?;
    remove_unmounted(&aside)?;
    tracing::info!(dir = %dir.display(), "moved onto a tmpfs");
    Ok(())
}

/// Removes `dir` and everything under it, refusing (`Busy`) where anything
/// is mounted: nothing is ever deleted through a mount.
fn remove_unmounted(dir: &Path) -> Result<()> {
    if let Some(m) = mountinfo::mounts_under(&mountinfo::read()?, dir).first() {
        return Err(StoreError::Busy(m.clone()));
    }
    std::fs::remove_dir_all(dir).ctx("remove", dir)
}

/// Copies the folders, files and symlinks under `from` into the folder
/// `to`, with their modes and owners; replaces files of the same name.
/// Sockets, FIFOs and device nodes are left out: a start makes its own. `to`
/// itself keeps its mode.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).ctx("list", from)? {
        let entry = entry.ctx("list", from)?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().ctx("stat", &src)?;
        if kind.is_dir() {
            match std::fs::create_dir(&dst) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io("mkdir", &dst, e)),
            }
            let meta = std::fs::symlink_metadata(&src).ctx("stat", &src)?;
            std::fs::set_permissions(&dst, meta.permissions()).ctx("chmod", &dst)?;
            std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()))
                .ctx("chown", &dst)?;
            copy_tree(&src, &dst)?;
        } else if kind.is_file() || kind.is_symlink() {
            match std::fs::remove_file(&dst) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &dst, e)),
            }
            if kind.is_file() {
                std::fs::copy(&src, &dst).ctx("copy", &src)?;
            } else {
                let target = std::fs::read_link(&src).ctx("readlink", &src)?;
                std::os::unix::fs::symlink(target, &dst).ctx("symlink", &dst)?;
            }
            let meta = std::fs::symlink_metadata(&src).ctx("stat", &src)?;
            std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()))
                .ctx("chown", &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unmounts everything under a test's folder when the test ends, even
    /// by a failed assertion.
    struct Unmount(PathBuf);

    impl Drop for Unmount {
        fn drop(&mut self) {
            if let Err(e) = crate::unmount_all(&self.0) {
                eprintln!("cleanup: {e}");
            }
        }
    }

    fn tmpfs_at(dir: &Path) -> bool {
        mountinfo::read()
            .expect("mountinfo")
            .iter()
            .any(|m| m.mount_point == dir && m.fs_type == "tmpfs")
    }

    /// An older data dir's run dirs: files, a folder mode, a symlink, a
    /// FIFO; all but the FIFO come through the move, and nothing is left
    /// on disk. Needs root (mounts).
    #[test]
    fn a_folder_on_disk_moves_onto_a_tmpfs_with_its_files() {
        let data = tempfile::tempdir().expect("tempdir");
        let root = data.path().canonicalize().expect("canonicalize");
        let sprites = root.join("sprites");
        let runc = root.join("runc");
        let sprite = sprites.join("s1");
        std::fs::create_dir_all(sprite.join("run")).expect("mkdir");
        std::fs::create_dir_all(runc.join("pasta")).expect("mkdir");
        std::fs::set_permissions(&sprites, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        std::fs::set_permissions(sprite.join("run"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        std::fs::write(sprite.join("agent.log"), b"agent started\n").expect("write");
        std::os::unix::fs::chown(sprite.join("agent.log"), Some(100_000), Some(100_000))
            .expect("chown");
        std::os::unix::fs::symlink("run/api.sock", sprite.join("api.sock")).expect("symlink");
        nix::unistd::mkfifo(&sprite.join("exec.fifo"), nix::sys::stat::Mode::S_IRWXU)
            .expect("mkfifo");
        std::fs::write(runc.join("pasta/s1.pid"), b"42").expect("write");

        let mounted = Unmount(root.clone());
        let placed = place_on_tmpfs(&[(&sprites, 0o711), (&runc, 0o700)], &sprites).expect("place");
        assert_eq!(placed, vec![Placed::Tmpfs, Placed::Tmpfs]);
        assert!(tmpfs_at(&sprites) && tmpfs_at(&runc));
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode(&sprites), 0o711);
        assert_eq!(mode(&runc), 0o700);
        assert_eq!(mode(&sprite.join("run")), 0o750);
        assert_eq!(
            std::fs::read(sprite.join("agent.log")).expect("log"),
            b"agent started\n"
        );
        let log = std::fs::metadata(sprite.join("agent.log")).expect("stat");
        assert_eq!((log.uid(), log.gid()), (100_000, 100_000));
        assert_eq!(
            std::fs::read_link(sprite.join("api.sock")).expect("link"),
            Path::new("run/api.sock")
        );
        assert!(!sprite.join("exec.fifo").exists());
        assert_eq!(
            std::fs::read(runc.join("pasta/s1.pid")).expect("pid"),
            b"42"
        );
        assert!(!aside(&sprites).exists() && !aside(&runc).exists());
        // Again: already there, nothing changes.
        let again = place_on_tmpfs(&[(&sprites, 0o711), (&runc, 0o700)], &sprites).expect("again");
        assert_eq!(again, vec![Placed::Tmpfs, Placed::Tmpfs]);
        assert!(sprite.join("agent.log").exists());
        drop(mounted);
        // What is left on disk under the mount points: nothing.
        assert_eq!(std::fs::read_dir(&sprites).expect("list").count(), 0);
        assert_eq!(std::fs::read_dir(&runc).expect("list").count(), 0);
    }

    /// A move cut short after the rename (files aside, the folder made
    /// again and used) or after the mount (files aside, tmpfs mounted)
    /// finishes at the next call, losing nothing.
    #[test]
    fn a_move_cut_short_finishes_at_the_next_start() {
        let data = tempfile::tempdir().expect("tempdir");
        let root = data.path().canonicalize().expect("canonicalize");
        let sprites = root.join("sprites");
        let runc = root.join("runc");
        // sprites: cut short after the rename; a file made there since.
        std::fs::create_dir_all(aside(&sprites).join("s1")).expect("mkdir");
        std::fs::write(aside(&sprites).join("s1/agent.log"), b"old").expect("write");
        std::fs::create_dir_all(sprites.join("s2")).expect("mkdir");
        std::fs::write(sprites.join("s2/agent.log"), b"new").expect("write");
        // runc: cut short after the mount.
        std::fs::create_dir_all(aside(&runc).join("s1")).expect("mkdir");
        std::fs::write(aside(&runc).join("s1/state.json"), b"{}").expect("write");
        std::fs::create_dir(&runc).expect("mkdir");
        let _mounted = Unmount(root.clone());
        mount::mount_fs(
            Path::new(SOURCE),
            &runc,
            "tmpfs",
            MsFlags::empty(),
            Some("mode=700"),
        )
        .expect("mount");

        let placed = place_on_tmpfs(&[(&sprites, 0o711), (&runc, 0o700)], &sprites).expect("place");
        assert_eq!(placed, vec![Placed::Tmpfs, Placed::Tmpfs]);
        assert_eq!(
            std::fs::read(sprites.join("s1/agent.log")).expect("s1"),
            b"old"
        );
        assert_eq!(
            std::fs::read(sprites.join("s2/agent.log")).expect("s2"),
            b"new"
        );
        assert_eq!(
            std::fs::read(runc.join("s1/state.json")).expect("state"),
            b"{}"
        );
        assert!(!aside(&sprites).exists() && !aside(&runc).exists());
    }

    /// While anything is mounted under the sprites' run dirs, folders on
    /// disk stay there, their files untouched.
    #[test]
    fn folders_stay_on_disk_while_a_sprite_has_mounts() {
        let data = tempfile::tempdir().expect("tempdir");
        let root = data.path().canonicalize().expect("canonicalize");
        let sprites = root.join("sprites");
        let runc = root.join("runc");
        let rootfs = sprites.join("s1/rootfs");
        std::fs::create_dir_all(&rootfs).expect("mkdir");
        std::fs::create_dir_all(runc.join("s1")).expect("mkdir");
        std::fs::write(runc.join("s1/state.json"), b"{}").expect("write");
        let _mounted = Unmount(root.clone());
        mount::mount_fs(Path::new("test"), &rootfs, "tmpfs", MsFlags::empty(), None)
            .expect("mount");

        let placed = place_on_tmpfs(&[(&sprites, 0o711), (&runc, 0o700)], &sprites).expect("place");
        let kept = Placed::KeptOnDisk(rootfs.clone());
        assert_eq!(placed, vec![kept.clone(), kept]);
        assert!(!tmpfs_at(&sprites) && !tmpfs_at(&runc));
        assert!(runc.join("s1/state.json").exists());
    }
}
