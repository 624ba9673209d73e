//! `read`: a file's bytes, streamed in frames of up to 1 MiB.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use nix::errno::Errno;
use nix::sys::statfs::{fstatfs, FsType};
use sprites_api::agent::HEADER_LEN;
use sprites_api::fs::{ByteRange, FsReply, PathBytes};

use super::conn::{Conn, CHUNK};
use super::entry::Stat;
use super::error::{gone, CallResult, FsError};
use super::paths::Target;

pub fn read(conn: &mut Conn, t: &Target, range: ByteRange) -> CallResult {
    // O_NONBLOCK: opening a FIFO must not hang the call (it is refused below).
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&t.os)
        .map_err(|e| FsError::io("open", &t.shown, &e))?;
    let meta = file
        .metadata()
        .map_err(|e| FsError::io("stat", &t.shown, &e))?;
    let st = Stat::from(&meta);
    if st.is_dir() {
        return Err(FsError::errno("read", &t.shown, Errno::EISDIR).into());
    }
    if !st.is_file() {
        return Err(FsError::invalid(
            &t.shown,
            format!(
                "read {}: not a regular file",
                String::from_utf8_lossy(&t.shown)
            ),
        )
        .into());
    }
    if range.end.is_some_and(|end| end < range.start) {
        return Err(FsError::invalid(
            &t.shown,
            format!(
                "byte range {}..{} ends before it starts",
                range.start,
                range.end.unwrap_or_default()
            ),
        )
        .into());
    }
    // What the range leaves: `limit` bytes at most from `start`.
    let limit = range.end.map(|end| end - range.start);
    let size = known_size(&file, &st).map(|s| {
        let s = s.saturating_sub(range.start);
        limit.map_or(s, |l| s.min(l))
    });
    if range.start > 0 {
        file.seek(SeekFrom::Start(range.start))
            .map_err(|e| FsError::io("seek", &t.shown, &e))?;
    }
    let path = PathBytes(t.shown.clone());
    conn.reply(&FsReply::Opened {
        path: path.clone(),
        size,
        mode: st.perms(),
    })
    .map_err(gone)?;
    let mut buf = Conn::data_buffer();
    let mut total: u64 = 0;
    loop {
        let want = match size.or(limit) {
            Some(s) => usize::try_from((s - total).min(CHUNK as u64)).unwrap_or(CHUNK),
            None => CHUNK,
        };
        if want == 0 {
            break;
        }
        let n = match file.read(&mut buf[HEADER_LEN..HEADER_LEN + want]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FsError::io("read", &t.shown, &e).into()),
        };
        if n == 0 {
            if size.is_some() {
                return Err(FsError {
                    code: "EIO".into(),
                    message: format!(
                        "read {}: the file shrank while it was read",
                        String::from_utf8_lossy(&t.shown)
                    ),
                    path: t.shown.clone(),
                }
                .into());
            }
            break;
        }
        conn.send_data(&mut buf, n).map_err(gone)?;
        total += n as u64;
    }
    conn.reply(&FsReply::Done {
        path,
        dest: None,
        size: total,
        mode: st.perms(),
        count: 1,
    })
    .map_err(gone)
}

/// The length to promise: `st_size` of an ordinary file. Pseudo
/// filesystems (`/proc`, `/sys`, cgroups, ...) report sizes that are not
/// the length of what a read returns, so those are read to their end.
fn known_size(file: &File, st: &Stat) -> Option<u64> {
    const PSEUDO: [FsType; 7] = [
        nix::sys::statfs::PROC_SUPER_MAGIC,
        nix::sys::statfs::SYSFS_MAGIC,
        nix::sys::statfs::CGROUP_SUPER_MAGIC,
        nix::sys::statfs::CGROUP2_SUPER_MAGIC,
        nix::sys::statfs::DEBUGFS_MAGIC,
        nix::sys::statfs::TRACEFS_MAGIC,
        nix::sys::statfs::SECURITYFS_MAGIC,
    ];
    match fstatfs(file) {
        Ok(fs) if PSEUDO.contains(&fs.filesystem_type()) => None,
        Ok(_) => Some(st.size),
        Err(_) => None,
    }
}
