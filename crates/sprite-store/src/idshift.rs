//! Shifting a built tree's ownership by the uid shift, so that the sprite's
//! user-namespace root (host uid `shift`) owns what root owned.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StoreError};

/// What a walk over a tree found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TreeStats {
    pub files: u64,
    pub bytes: u64,
}

/// Adds `shift` to the uid and gid of every file under `root` (not following
/// symlinks; hard links once). chown clears setuid/setgid, so those modes are
/// put back. With `shift` None the tree is only counted.
pub(crate) fn shift_tree(root: &Path, shift: Option<u32>) -> Result<TreeStats> {
    let mut stats = TreeStats::default();
    let mut seen_links = HashSet::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).ctx("lstat", &path)?;
        let file_type = meta.file_type();
        if file_type.is_dir() {
            for entry in std::fs::read_dir(&path).ctx("readdir", &path)? {
                stack.push(entry.ctx("readdir", &path)?.path());
            }
        } else if meta.nlink() > 1 && !seen_links.insert((meta.dev(), meta.ino())) {
            continue;
        }
        stats.files += 1;
        stats.bytes += meta.len();
        let Some(shift) = shift else { continue };
        let add = |id: u32| {
            id.checked_add(shift)
                .ok_or_else(|| StoreError::ShiftOverflow {
                    id,
                    shift,
                    path: path.clone(),
                })
        };
        std::os::unix::fs::lchown(&path, Some(add(meta.uid())?), Some(add(meta.gid())?))
            .ctx("lchown", &path)?;
        let mode = meta.mode() & 0o7777;
        if !file_type.is_symlink() && mode & 0o6000 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .ctx("chmod", &path)?;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn shifts_once_and_keeps_setuid() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir");
        let file = root.join("suid");
        std::fs::write(&file, b"x").expect("write");
        std::os::unix::fs::chown(&file, Some(1000), Some(5)).expect("chown");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
        std::fs::hard_link(&file, root.join("link")).expect("link");
        symlink("suid", root.join("sym")).expect("symlink");

        let stats = shift_tree(&root, Some(100_000)).expect("shift");
        assert_eq!(stats.files, 3); // root dir, one of the two links, the symlink
        let meta = std::fs::metadata(&file).expect("stat");
        assert_eq!((meta.uid(), meta.gid()), (101_000, 100_005));
        assert_eq!(meta.mode() & 0o7777, 0o4755);
        let sym = std::fs::symlink_metadata(root.join("sym")).expect("lstat");
        assert_eq!(sym.uid(), 100_000);
        assert_eq!(std::fs::metadata(&root).expect("stat").uid(), 100_000);
    }
}
