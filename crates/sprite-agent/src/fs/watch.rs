//! `FsCall::Watch`: inotify on the paths asked for, in the worker, as the
//! worker's user: a path they cannot read they cannot watch, and every
//! path is the sprite's own. A recursive watch follows every directory
//! below (and the ones made later), up to [`MAX_WATCHES`] directories.
//!
//! Bounded both ways: the kernel queues at most `max_queued_events`
//! changes, and the worker writes them to the daemon as it reads them, so
//! a client that does not keep up holds the worker in its write and the
//! kernel drops what does not fit, which the client is told (`Overflow`)
//! instead of anything growing. The watch ends when the daemon hangs up.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use sprites_api::fs::{FsOp, FsReply, PathBytes};

use super::conn::Conn;
use super::error::{gone, CallResult, FsError};
use super::paths::{child, os, Target};

/// Most directories (and files) one watch follows.
pub const MAX_WATCHES: usize = 4096;

/// What is watched on every path.
fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVE_SELF
}

struct Watcher {
    ino: Inotify,
    /// Each watch's path, as shown.
    paths: HashMap<WatchDescriptor, Vec<u8>>,
    /// The watches of the paths asked for: their own removal is news
    /// (below them, the parent's watch tells it).
    roots: HashSet<WatchDescriptor>,
    recursive: bool,
    /// The limit was reached and the client told.
    full: bool,
}

/// `inotify_add_watch` as Linux answers it: only what the caller may read
/// is watched. gVisor's Sentry (2022) does not check, so the check is
/// made here first (the worker runs as the caller: `access` looks with
/// its ids).
fn add_watch<P: nix::NixPath + ?Sized>(
    ino: &Inotify,
    path: &P,
    flags: AddWatchFlags,
) -> nix::Result<WatchDescriptor> {
    nix::unistd::access(path, nix::unistd::AccessFlags::R_OK)?;
    ino.add_watch(path, flags)
}

pub fn watch(conn: &mut Conn, targets: &[Target], recursive: bool) -> CallResult {
    if targets.is_empty() {
        return Err(FsError::invalid(b"", "no paths to watch").into());
    }
    if targets.len() > MAX_WATCHES {
        return Err(FsError::invalid(b"", format!("at most {MAX_WATCHES} paths")).into());
    }
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| FsError::errno("watch", b"", e))?;
    let mut w = Watcher {
        ino,
        paths: HashMap::new(),
        roots: HashSet::new(),
        recursive,
        full: false,
    };
    for t in targets {
        let wd =
            add_watch(&w.ino, &t.os, mask()).map_err(|e| FsError::errno("watch", &t.shown, e))?;
        w.paths.insert(wd, t.shown.clone());
        w.roots.insert(wd);
    }
    let mut notes = Vec::new();
    if recursive {
        for t in targets {
            w.follow_below(&t.shown, &mut notes);
        }
    }
    let watching = FsReply::Watching {
        paths: targets.iter().map(|t| PathBytes(t.shown.clone())).collect(),
    };
    conn.reply(&watching).map_err(gone)?;
    for n in notes.drain(..) {
        conn.reply(&n).map_err(gone)?;
    }
    loop {
        let (changes, hung_up) = {
            let mut fds = [
                PollFd::new(w.ino.as_fd(), PollFlags::POLLIN),
                PollFd::new(conn.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(FsError::errno("watch", b"", e).into()),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        // The daemon sends nothing once the watch runs: its socket turns
        // readable when it hangs up.
        if hung_up && conn.hung_up() {
            return Err(super::error::Failure::Gone);
        }
        if !changes {
            continue;
        }
        let events = match w.ino.read_events() {
            Ok(e) => e,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => return Err(FsError::errno("watch", b"", e).into()),
        };
        // One write(2) of a large file is many IN_MODIFY: a run of the
        // same change in one read is told once.
        let mut last: Option<FsReply> = None;
        for ev in events {
            for reply in w.replies(ev) {
                if last.as_ref() != Some(&reply) {
                    conn.reply(&reply).map_err(gone)?;
                }
                last = Some(reply);
            }
        }
    }
}

impl Watcher {
    /// What one inotify event tells the client (new directories of a
    /// recursive watch are followed on the way).
    fn replies(&mut self, ev: InotifyEvent) -> Vec<FsReply> {
        let m = ev.mask;
        if m.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            return vec![FsReply::Overflow {
                message: "changes were lost: they came faster than the client read them".into(),
            }];
        }
        if m.contains(AddWatchFlags::IN_IGNORED) {
            self.paths.remove(&ev.wd);
            self.roots.remove(&ev.wd);
            return Vec::new();
        }
        let Some(base) = self.paths.get(&ev.wd) else {
            return Vec::new();
        };
        let path = match &ev.name {
            Some(name) => child(
                base,
                std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()),
            ),
            None => base.clone(),
        };
        let is_self = ev.name.is_none();
        let op = if m.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO) {
            FsOp::Create
        } else if m.contains(AddWatchFlags::IN_MODIFY) {
            FsOp::Write
        } else if m.contains(AddWatchFlags::IN_ATTRIB) {
            FsOp::Chmod
        } else if m.intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_DELETE_SELF) {
            FsOp::Remove
        } else if m.intersects(AddWatchFlags::IN_MOVED_FROM | AddWatchFlags::IN_MOVE_SELF) {
            FsOp::Rename
        } else {
            return Vec::new();
        };
        // A followed directory's own removal is told by its parent's watch.
        if is_self && matches!(op, FsOp::Remove | FsOp::Rename) && !self.roots.contains(&ev.wd) {
            return Vec::new();
        }
        let is_dir = m.contains(AddWatchFlags::IN_ISDIR);
        let size = match op {
            FsOp::Create | FsOp::Write if !is_dir => {
                std::fs::symlink_metadata(os(&path)).ok().map(|md| md.len())
            }
            _ => None,
        };
        let mut out = vec![FsReply::Changed {
            path: PathBytes(path.clone()),
            op,
            is_dir,
            size,
        }];
        if op == FsOp::Create && is_dir && self.recursive {
            self.follow(&path, &mut out);
            self.follow_below(&path, &mut out);
        }
        out
    }

    /// Watch directory `dir` (a real one, not a link to one); `false`
    /// once no more may be watched.
    fn follow(&mut self, dir: &[u8], notes: &mut Vec<FsReply>) -> bool {
        if self.paths.len() >= MAX_WATCHES {
            self.tell_full(dir, notes);
            return false;
        }
        let flags = mask() | AddWatchFlags::IN_ONLYDIR | AddWatchFlags::IN_DONT_FOLLOW;
        match add_watch(&self.ino, os(dir), flags) {
            Ok(wd) => {
                self.paths.insert(wd, dir.to_vec());
                true
            }
            // The user's inotify limit (fs.inotify.max_user_watches).
            Err(Errno::ENOSPC) => {
                self.tell_full(dir, notes);
                false
            }
            // Gone already, or not theirs to read: nothing to follow.
            Err(_) => true,
        }
    }

    /// Follow every directory below `dir`, breadth first, to the limit.
    fn follow_below(&mut self, dir: &[u8], notes: &mut Vec<FsReply>) {
        let mut todo = vec![dir.to_vec()];
        while let Some(d) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(os(&d)) else {
                continue;
            };
            for e in entries.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let sub = child(
                    &d,
                    std::os::unix::ffi::OsStrExt::as_bytes(e.file_name().as_os_str()),
                );
                if !self.follow(&sub, notes) {
                    return;
                }
                todo.push(sub);
            }
        }
    }

    fn tell_full(&mut self, at: &[u8], notes: &mut Vec<FsReply>) {
        if self.full {
            return;
        }
        self.full = true;
        notes.push(FsReply::Overflow {
            message: format!(
                "watching at most {MAX_WATCHES} directories: {} and others are not watched",
                String::from_utf8_lossy(at)
            ),
        });
    }
}
