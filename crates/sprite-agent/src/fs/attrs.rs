//! `chmod` and `chown`, of one path or (recursive) a tree. The named path
//! is followed when it is a symlink; inside a tree, symlinks are left alone
//! (`chmod`) or changed themselves (`chown`), never followed.

use std::os::unix::fs::PermissionsExt;

use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmodat, FchmodatFlags, Mode};
use nix::unistd::{fchownat, Gid, Uid};
use sprites_api::fs::{FsReply, PathBytes};

use super::conn::Conn;
use super::error::{gone, CallResult, FsError};
use super::paths::{self, Target};
use super::tree::{walk, OpenDir, Unreadable};
use crate::user::UserDb;

pub fn chmod(conn: &mut Conn, t: &Target, mode: u32, recursive: bool) -> CallResult {
    std::fs::set_permissions(&t.os, std::fs::Permissions::from_mode(mode))
        .map_err(|e| FsError::io("chmod", &t.shown, &e))?;
    let mut count = 1;
    if recursive && std::fs::metadata(&t.os).is_ok_and(|m| m.is_dir()) {
        let mut dir =
            OpenDir::open(&t.os, true).map_err(|e| FsError::errno("open", &t.shown, e))?;
        walk(&mut dir, &t.shown, Unreadable::Fail, &mut |item| {
            if item.stat.is_symlink() {
                return Ok(false);
            }
            fchmodat(
                Some(item.dir.fd()),
                paths::os(item.name),
                Mode::from_bits_truncate(mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| FsError::errno("chmod", item.shown, e))?;
            count += 1;
            Ok(true)
        })?;
    }
    done(conn, t, mode, count)
}

pub fn chown(
    conn: &mut Conn,
    t: &Target,
    user: Option<&str>,
    group: Option<&str>,
    recursive: bool,
) -> CallResult {
    let db = UserDb::load();
    let uid = user
        .map(|u| id_of(u, |n| db.uid_of(n)).map(Uid::from_raw))
        .transpose()
        .map_err(|m| FsError::invalid(&t.shown, m))?;
    let gid = group
        .map(|g| id_of(g, |n| db.gid_of(n)).map(Gid::from_raw))
        .transpose()
        .map_err(|m| FsError::invalid(&t.shown, m))?;
    nix::unistd::chown(&t.os, uid, gid).map_err(|e| FsError::errno("chown", &t.shown, e))?;
    let mut count = 1;
    if recursive && std::fs::metadata(&t.os).is_ok_and(|m| m.is_dir()) {
        let mut dir =
            OpenDir::open(&t.os, true).map_err(|e| FsError::errno("open", &t.shown, e))?;
        walk(&mut dir, &t.shown, Unreadable::Fail, &mut |item| {
            fchownat(
                Some(item.dir.fd()),
                paths::os(item.name),
                uid,
                gid,
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| FsError::errno("chown", item.shown, e))?;
            count += 1;
            Ok(true)
        })?;
    }
    let mode = std::fs::metadata(&t.os)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0);
    done(conn, t, mode, count)
}

/// A numeric id, or a name looked up with `by_name`.
fn id_of(spec: &str, by_name: impl Fn(&str) -> Option<u32>) -> Result<u32, String> {
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        return spec
            .parse()
            .map_err(|_| format!("id {spec} is out of range"));
    }
    by_name(spec).ok_or_else(|| format!("unknown user or group {spec:?}"))
}

fn done(conn: &mut Conn, t: &Target, mode: u32, count: u64) -> CallResult {
    conn.reply(&FsReply::Done {
        path: PathBytes(t.shown.clone()),
        dest: None,
        size: 0,
        mode,
        count,
    })
    .map_err(gone)
}
