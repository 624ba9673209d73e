//! `delete`: a file, an empty directory, or (recursive) a whole tree,
//! reporting every path removed, children before their directory.

use nix::errno::Errno;
use nix::unistd::{unlinkat, UnlinkatFlags};
use sprites_api::fs::{FsReply, PathBytes};

use super::conn::{Batcher, Conn};
use super::entry::Stat;
use super::error::{gone, CallResult, FsError};
use super::paths::{self, Target};
use super::tree::OpenDir;

pub fn delete(conn: &mut Conn, t: &Target, recursive: bool) -> CallResult {
    let mut out = Batcher::new(|paths| FsReply::Deleted { paths });
    remove(t, recursive, &mut |shown| {
        out.push(conn, PathBytes(shown.to_vec()), shown.len() * 2 + 8)
            .map_err(gone)
    })?;
    out.flush(conn).map_err(gone)?;
    conn.reply(&FsReply::Done {
        path: PathBytes(t.shown.clone()),
        dest: None,
        size: 0,
        mode: 0,
        count: out.total,
    })
    .map_err(gone)
}

/// Tells which path was just removed.
pub type Report<'a> = dyn FnMut(&[u8]) -> CallResult + 'a;

/// Remove `t` (a tree when `recursive`), reporting each path removed.
pub fn remove(t: &Target, recursive: bool, report: &mut Report<'_>) -> CallResult {
    let st = std::fs::symlink_metadata(&t.os)
        .map(|m| Stat::from(&m))
        .map_err(|e| FsError::io("lstat", &t.shown, &e))?;
    if !st.is_dir() {
        std::fs::remove_file(&t.os).map_err(|e| FsError::io("remove", &t.shown, &e))?;
        return report(&t.shown);
    }
    let root = std::fs::metadata("/").map(|m| Stat::from(&m));
    if root.is_ok_and(|r| r.same_file(&st)) {
        return Err(FsError {
            code: "EPERM".into(),
            message: "refusing to delete the root directory".into(),
            path: t.shown.clone(),
        }
        .into());
    }
    if recursive {
        let mut dir =
            OpenDir::open(&t.os, false).map_err(|e| FsError::errno("open", &t.shown, e))?;
        remove_children(&mut dir, &t.shown, report)?;
    }
    std::fs::remove_dir(&t.os).map_err(|e| FsError::io("remove", &t.shown, &e))?;
    report(&t.shown)
}

fn remove_children(dir: &mut OpenDir, shown: &[u8], report: &mut Report<'_>) -> CallResult {
    let names = dir
        .names()
        .map_err(|e| FsError::errno("read directory", shown, e))?;
    for name in names {
        let child = paths::child(shown, &name);
        let st = match dir.lstat(&name) {
            Ok(s) => s,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(FsError::errno("lstat", &child, e).into()),
        };
        let flag = if st.is_dir() {
            let mut sub = dir
                .open_child(&name)
                .map_err(|e| FsError::errno("open", &child, e))?;
            remove_children(&mut sub, &child, report)?;
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unlinkat(Some(dir.fd()), paths::os(&name), flag) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(FsError::errno("remove", &child, e).into()),
        }
        report(&child)?;
    }
    Ok(())
}
