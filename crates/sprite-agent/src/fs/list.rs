//! `list` and `stat`: entries as the API shows them.
//!
//! A directory lists its entries (sorted by name; recursively, each
//! directory's entries follow it, named by their path relative to the
//! listed one); anything else lists itself, like `ls`. Symlinks are shown,
//! not followed, except a symlink named as the path to list.

use std::os::unix::ffi::OsStrExt;

use sprites_api::fs::{FsEntry, FsReply, PathBytes};

use super::conn::{Batcher, Conn};
use super::entry::{approx_len, entry, Stat};
use super::error::{gone, CallResult, FsError};
use super::glob;
use super::paths::Target;
use super::tree::{walk, OpenDir, Unreadable};

pub fn list(conn: &mut Conn, t: &Target, recursive: bool, pattern: Option<&str>) -> CallResult {
    let lstat = std::fs::symlink_metadata(&t.os)
        .map(|m| Stat::from(&m))
        .map_err(|e| FsError::io("lstat", &t.shown, &e))?;
    let is_dir = lstat.is_dir()
        || (lstat.is_symlink() && std::fs::metadata(&t.os).is_ok_and(|m| m.is_dir()));
    let mut out = Batcher::new(|entries| FsReply::Entries { entries });
    if !is_dir {
        let link = lstat
            .is_symlink()
            .then(|| std::fs::read_link(&t.os).ok())
            .flatten();
        let e = entry(
            &t.name(),
            &t.shown,
            &lstat,
            link.as_ref().map(|l| l.as_os_str().as_bytes()),
        );
        send_one(conn, &mut out, e)?;
    } else {
        let mut dir =
            OpenDir::open(&t.os, true).map_err(|e| FsError::errno("open", &t.shown, e))?;
        let pattern = pattern.map(str::as_bytes);
        walk(&mut dir, &t.shown, Unreadable::Skip, &mut |item| {
            if pattern.is_none_or(|p| glob::matches(p, item.name)) {
                let link = if item.stat.is_symlink() {
                    item.dir.read_link(item.name)
                } else {
                    None
                };
                let e = entry(item.rel, item.shown, &item.stat, link.as_deref());
                let len = approx_len(&e);
                out.push(conn, e, len).map_err(gone)?;
            }
            Ok(recursive)
        })?;
    }
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

/// `stat`: the path itself, a symlink followed (a dangling one shown as
/// the link).
pub fn stat(conn: &mut Conn, t: &Target) -> CallResult {
    let followed = std::fs::metadata(&t.os);
    let (st, link) = match followed {
        Ok(m) => (Stat::from(&m), None),
        Err(first) => match std::fs::symlink_metadata(&t.os) {
            Ok(m) if m.file_type().is_symlink() => (
                Stat::from(&m),
                std::fs::read_link(&t.os)
                    .ok()
                    .map(|l| l.as_os_str().as_bytes().to_vec()),
            ),
            _ => return Err(FsError::io("stat", &t.shown, &first).into()),
        },
    };
    let mut out = Batcher::new(|entries| FsReply::Entries { entries });
    send_one(
        conn,
        &mut out,
        entry(&t.name(), &t.shown, &st, link.as_deref()),
    )?;
    conn.reply(&FsReply::Done {
        path: PathBytes(t.shown.clone()),
        dest: None,
        size: st.size,
        mode: st.perms(),
        count: 1,
    })
    .map_err(gone)
}

fn send_one(conn: &mut Conn, out: &mut Batcher<FsEntry>, e: FsEntry) -> CallResult {
    out.push(conn, e, 0).map_err(gone)?;
    out.flush(conn).map_err(gone)
}
