//! Walking directory trees without following symlinks.
//!
//! Every directory below the top one is opened relative to its parent's
//! descriptor with `O_NOFOLLOW`, and every change is made with the `*at`
//! calls on that descriptor: a process in the sprite that swaps a
//! directory for a symlink while a walk runs cannot send the walk
//! somewhere else.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};

use super::entry::Stat;
use super::error::{CallResult, FsError};
use super::paths;

/// An open directory.
pub struct OpenDir {
    dir: Dir,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC);

impl OpenDir {
    /// Open `path` as a directory; `follow`: whether a symlink as its last
    /// component is followed.
    pub fn open(path: &Path, follow: bool) -> nix::Result<OpenDir> {
        let flags = if follow {
            DIR_FLAGS
        } else {
            DIR_FLAGS | OFlag::O_NOFOLLOW
        };
        Dir::open(path, flags, Mode::empty()).map(|dir| OpenDir { dir })
    }

    /// Open the directory `name` inside this one, never through a symlink.
    pub fn open_child(&self, name: &[u8]) -> nix::Result<OpenDir> {
        Dir::openat(
            Some(self.fd()),
            OsStr::from_bytes(name),
            DIR_FLAGS | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map(|dir| OpenDir { dir })
    }

    pub fn fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }

    /// The entries' names, sorted, without `.` and `..`.
    pub fn names(&mut self) -> nix::Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        for e in self.dir.iter() {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        names.sort();
        Ok(names)
    }

    /// `lstat` of an entry.
    pub fn lstat(&self, name: &[u8]) -> nix::Result<Stat> {
        fstatat(
            Some(self.fd()),
            OsStr::from_bytes(name),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map(|s| Stat::from(&s))
    }

    /// The target of a symlink entry.
    pub fn read_link(&self, name: &[u8]) -> Option<Vec<u8>> {
        nix::fcntl::readlinkat(Some(self.fd()), OsStr::from_bytes(name))
            .ok()
            .map(|t| t.as_bytes().to_vec())
    }
}

/// One thing found by [`walk`].
pub struct Item<'a> {
    /// The directory it is in.
    pub dir: &'a OpenDir,
    pub name: &'a [u8],
    /// Its path relative to the top of the walk.
    pub rel: &'a [u8],
    /// Its shown (absolute) path.
    pub shown: &'a [u8],
    pub stat: Stat,
}

/// How a walk treats a subdirectory it cannot open or read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Leave it out (a listing).
    Skip,
    /// Fail the call (a change that must be whole or reported).
    Fail,
}

/// Visit everything below `dir`, parents before children, never through
/// a symlink; `visit` answers whether to descend into a directory. The top
/// directory must be readable; `unreadable` says what happens below it.
pub fn walk(
    dir: &mut OpenDir,
    shown: &[u8],
    unreadable: Unreadable,
    visit: &mut dyn FnMut(&Item<'_>) -> CallResult<bool>,
) -> CallResult {
    let names = dir
        .names()
        .map_err(|e| FsError::errno("read directory", shown, e))?;
    walk_in(dir, names, shown, b"", unreadable, visit)
}

fn walk_in(
    dir: &mut OpenDir,
    names: Vec<Vec<u8>>,
    shown: &[u8],
    rel: &[u8],
    unreadable: Unreadable,
    visit: &mut dyn FnMut(&Item<'_>) -> CallResult<bool>,
) -> CallResult {
    for name in names {
        let child_shown = paths::child(shown, &name);
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            paths::child(rel, &name)
        };
        let stat = match dir.lstat(&name) {
            Ok(s) => s,
            // Removed since it was listed.
            Err(Errno::ENOENT) => continue,
            Err(_) if unreadable == Unreadable::Skip => continue,
            Err(e) => return Err(FsError::errno("stat", &child_shown, e).into()),
        };
        let item = Item {
            dir,
            name: &name,
            rel: &child_rel,
            shown: &child_shown,
            stat,
        };
        if !(visit(&item)? && stat.is_dir()) {
            continue;
        }
        let opened = dir.open_child(&name).and_then(|mut sub| {
            let names = sub.names()?;
            Ok((sub, names))
        });
        let (mut sub, sub_names) = match opened {
            Ok(x) => x,
            Err(_) if unreadable == Unreadable::Skip => continue,
            Err(e) => return Err(FsError::errno("read directory", &child_shown, e).into()),
        };
        walk_in(
            &mut sub,
            sub_names,
            &child_shown,
            &child_rel,
            unreadable,
            visit,
        )?;
    }
    Ok(())
}
