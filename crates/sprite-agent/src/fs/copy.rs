//! `copy` and `rename`.
//!
//! Both take the destination as the exact new path (not a directory to put
//! the source into). A copy of a directory (recursive) makes the
//! destination, which must not exist; a file copy replaces a file there.
//! Inside a tree, symlinks are copied as symlinks and devices, FIFOs and
//! sockets are left out. A rename across filesystems is a copy and a
//! delete, as `mv` does it.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmodat, futimens, mkdirat, FchmodatFlags, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::symlinkat;
use sprites_api::fs::{FsReply, PathBytes};

use super::conn::Conn;
use super::entry::Stat;
use super::error::{gone, CallResult, FsError};
use super::paths::{self, Target};
use super::remove;
use super::tree::OpenDir;

pub fn copy(
    conn: &mut Conn,
    src: &Target,
    dst: &Target,
    recursive: bool,
    preserve: bool,
) -> CallResult {
    let count = copy_any(src, dst, recursive, preserve)?;
    done(conn, src, dst, count)
}

pub fn rename(conn: &mut Conn, src: &Target, dst: &Target) -> CallResult {
    match std::fs::rename(&src.os, &dst.os) {
        Ok(()) => done(conn, src, dst, 1),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let count = copy_any(src, dst, true, true)?;
            remove::remove(src, true, &mut |_| Ok(()))?;
            done(conn, src, dst, count)
        }
        Err(e) => Err(FsError::io("rename", &src.shown, &e).into()),
    }
}

fn done(conn: &mut Conn, src: &Target, dst: &Target, count: u64) -> CallResult {
    conn.reply(&FsReply::Done {
        path: PathBytes(src.shown.clone()),
        dest: Some(PathBytes(dst.shown.clone())),
        size: 0,
        mode: 0,
        count,
    })
    .map_err(gone)
}

fn copy_any(src: &Target, dst: &Target, recursive: bool, preserve: bool) -> CallResult<u64> {
    let sst = std::fs::metadata(&src.os)
        .map(|m| Stat::from(&m))
        .map_err(|e| FsError::io("stat", &src.shown, &e))?;
    if sst.is_dir() {
        if !recursive {
            return Err(FsError::errno("copy", &src.shown, Errno::EISDIR).into());
        }
        return copy_dir(src, dst, &sst, preserve);
    }
    if !sst.is_file() {
        return Err(FsError::invalid(
            &src.shown,
            format!(
                "copy {}: not a regular file or directory",
                String::from_utf8_lossy(&src.shown)
            ),
        )
        .into());
    }
    if std::fs::metadata(&dst.os).is_ok_and(|m| m.is_dir()) {
        return Err(FsError::errno("copy", &dst.shown, Errno::EISDIR).into());
    }
    let mut from = File::open(&src.os).map_err(|e| FsError::io("open", &src.shown, &e))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(sst.perms() & 0o777)
        .open(&dst.os)
        .map_err(|e| FsError::io("open", &dst.shown, &e))?;
    std::io::copy(&mut from, &mut to).map_err(|e| FsError::io("copy", &dst.shown, &e))?;
    set_attrs(&to, &sst, preserve).map_err(|e| FsError::io("chmod", &dst.shown, &e))?;
    Ok(1)
}

fn copy_dir(src: &Target, dst: &Target, sst: &Stat, preserve: bool) -> CallResult<u64> {
    if std::fs::symlink_metadata(&dst.os).is_ok() {
        return Err(FsError::errno("copy", &dst.shown, Errno::EEXIST).into());
    }
    let inside = match (
        std::fs::canonicalize(&src.os),
        dst.os.parent().map(std::fs::canonicalize),
    ) {
        (Ok(s), Some(Ok(d))) => d.starts_with(&s),
        _ => false,
    };
    if inside {
        return Err(FsError::invalid(
            &dst.shown,
            format!(
                "copy {}: cannot copy a directory into itself",
                String::from_utf8_lossy(&src.shown)
            ),
        )
        .into());
    }
    let mut from =
        OpenDir::open(&src.os, true).map_err(|e| FsError::errno("open", &src.shown, e))?;
    std::fs::DirBuilder::new()
        .create(&dst.os)
        .map_err(|e| FsError::io("mkdir", &dst.shown, &e))?;
    let to = OpenDir::open(&dst.os, false).map_err(|e| FsError::errno("open", &dst.shown, e))?;
    let mut count = 1;
    copy_children(&mut from, &to, &src.shown, &dst.shown, preserve, &mut count)?;
    set_dir_attrs(&to, sst, preserve).map_err(|e| FsError::errno("chmod", &dst.shown, e))?;
    Ok(count)
}

fn copy_children(
    from: &mut OpenDir,
    to: &OpenDir,
    src_shown: &[u8],
    dst_shown: &[u8],
    preserve: bool,
    count: &mut u64,
) -> CallResult {
    let names = from
        .names()
        .map_err(|e| FsError::errno("read directory", src_shown, e))?;
    for name in names {
        let s = paths::child(src_shown, &name);
        let d = paths::child(dst_shown, &name);
        let st = match from.lstat(&name) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(FsError::errno("lstat", &s, e).into()),
        };
        let os = paths::os(&name);
        if st.is_dir() {
            mkdirat(Some(to.fd()), os, Mode::from_bits_truncate(0o700))
                .map_err(|e| FsError::errno("mkdir", &d, e))?;
            let mut sub_from = from
                .open_child(&name)
                .map_err(|e| FsError::errno("open", &s, e))?;
            let sub_to = to
                .open_child(&name)
                .map_err(|e| FsError::errno("open", &d, e))?;
            copy_children(&mut sub_from, &sub_to, &s, &d, preserve, count)?;
            set_dir_attrs(&sub_to, &st, preserve).map_err(|e| FsError::errno("chmod", &d, e))?;
        } else if st.is_symlink() {
            let Some(target) = from.read_link(&name) else {
                continue;
            };
            symlinkat(paths::os(&target), Some(to.fd()), os)
                .map_err(|e| FsError::errno("symlink", &d, e))?;
        } else if st.is_file() {
            let mut src_file = open_at(from, &name, OFlag::O_RDONLY, 0)
                .map_err(|e| FsError::errno("open", &s, e))?;
            let mut dst_file = open_at(
                to,
                &name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                st.perms() & 0o777,
            )
            .map_err(|e| FsError::errno("open", &d, e))?;
            std::io::copy(&mut src_file, &mut dst_file).map_err(|e| FsError::io("copy", &d, &e))?;
            set_attrs(&dst_file, &st, preserve).map_err(|e| FsError::io("chmod", &d, &e))?;
        } else {
            continue;
        }
        *count += 1;
    }
    Ok(())
}

/// Open an entry of `dir`, never through a symlink.
fn open_at(dir: &OpenDir, name: &[u8], flags: OFlag, mode: u32) -> nix::Result<File> {
    let fd = openat(
        Some(dir.fd()),
        paths::os(name),
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::from_bits_truncate(mode),
    )?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The source's permission bits (without set-id bits unless `preserve`),
/// and with `preserve` its owner (where permitted) and times.
fn set_attrs(to: &File, st: &Stat, preserve: bool) -> std::io::Result<()> {
    if preserve {
        // Only root may give files away; others keep their own.
        let _ = std::os::unix::fs::fchown(to, Some(st.uid), Some(st.gid));
    }
    let perms = if preserve {
        st.perms()
    } else {
        st.perms() & 0o777
    };
    to.set_permissions(std::fs::Permissions::from_mode(perms))?;
    if preserve {
        futimens(to.as_raw_fd(), &atime(st), &mtime(st)).map_err(std::io::Error::from)?;
    }
    Ok(())
}

fn set_dir_attrs(to: &OpenDir, st: &Stat, preserve: bool) -> nix::Result<()> {
    if preserve {
        let _ = nix::unistd::fchown(
            to.fd(),
            Some(nix::unistd::Uid::from_raw(st.uid)),
            Some(nix::unistd::Gid::from_raw(st.gid)),
        );
    }
    let perms = if preserve {
        st.perms()
    } else {
        st.perms() & 0o777
    };
    fchmodat(
        Some(to.fd()),
        ".",
        Mode::from_bits_truncate(perms),
        FchmodatFlags::FollowSymlink,
    )?;
    if preserve {
        futimens(to.fd(), &atime(st), &mtime(st))?;
    }
    Ok(())
}

fn atime(st: &Stat) -> TimeSpec {
    TimeSpec::new(st.atime, st.atime_nsec)
}

fn mtime(st: &Stat) -> TimeSpec {
    TimeSpec::new(st.mtime, st.mtime_nsec)
}
