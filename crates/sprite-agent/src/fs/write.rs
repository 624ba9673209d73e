//! `write`: the daemon streams the bytes; the file changes only once all
//! of them arrived.
//!
//! The bytes go to a temporary file beside the target, which is renamed
//! over it at the end: an upload that breaks off leaves the old file as
//! it was. Where that cannot work (a symlink or device as the target, or
//! a directory the user may not create files in but a file they may
//! write), the target is written in place.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use sprites_api::fs::{FsReply, MkdirParents, PathBytes};

use super::conn::{Conn, Incoming, CHUNK};
use super::entry::Stat;
use super::error::{gone, CallResult, Failure, FsError};
use super::paths::{self, Target};

/// Mode of a new file when the request names none.
const NEW_FILE_MODE: u32 = 0o644;
/// Mode of directories made for a write.
const NEW_DIR_MODE: u32 = 0o755;

/// Where the bytes go.
enum Sink {
    /// A temporary file, renamed over `target` at the end.
    Temp { path: PathBuf, file: File },
    /// The target itself.
    InPlace { file: File },
}

pub fn write(conn: &mut Conn, t: &Target, mode: Option<u32>, parents: MkdirParents) -> CallResult {
    make_parents(t, parents)?;
    let existing = std::fs::symlink_metadata(&t.os)
        .ok()
        .map(|m| Stat::from(&m));
    if existing.is_some_and(|s| s.is_dir()) {
        return Err(FsError::errno("write", &t.shown, Errno::EISDIR).into());
    }
    let mut sink = open_sink(t, existing.as_ref())?;
    let final_mode = mode.unwrap_or_else(|| match (&sink, &existing) {
        (Sink::Temp { .. }, Some(old)) => old.perms(),
        _ => NEW_FILE_MODE,
    });
    let path = PathBytes(t.shown.clone());
    conn.reply(&FsReply::Opened {
        path: path.clone(),
        size: None,
        mode: final_mode,
    })
    .map_err(gone)?;
    let received = receive(conn, t, &mut sink);
    let size = match received {
        Ok(n) => n,
        Err(e) => {
            if let Sink::Temp { path, .. } = &sink {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    finish(t, sink, mode, final_mode, existing.as_ref())?;
    conn.reply(&FsReply::Done {
        path,
        dest: None,
        size,
        mode: final_mode,
        count: 1,
    })
    .map_err(gone)
}

/// Create the file's directory (and, with [`MkdirParents::All`], every
/// missing one above it). A failure here is left for the open to report.
fn make_parents(t: &Target, parents: MkdirParents) -> CallResult {
    let Some(parent) = t.os.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let mut b = DirBuilder::new();
    b.mode(NEW_DIR_MODE).recursive(parents == MkdirParents::All);
    match b.create(parent) {
        Ok(()) => Ok(()),
        Err(_) if parent.is_dir() => Ok(()),
        Err(e) => {
            let shown = paths::fold(parent.as_os_str().as_encoded_bytes());
            // Something that is not a directory is in the way.
            if e.raw_os_error() == Some(libc::EEXIST) {
                return Err(FsError::errno("write", &shown, Errno::ENOTDIR).into());
            }
            Err(FsError::io("mkdir", &shown, &e).into())
        }
    }
}

fn open_sink(t: &Target, existing: Option<&Stat>) -> CallResult<Sink> {
    let replaceable = match existing {
        None => true,
        Some(s) => s.is_file(),
    };
    if replaceable {
        let temp = temp_path(&t.os);
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp);
        match created {
            Ok(file) => return Ok(Sink::Temp { path: temp, file }),
            // No file to write in place: the directory's answer is the answer.
            Err(e) if existing.is_none() => {
                return Err(FsError::io("open", &t.shown, &e).into());
            }
            Err(_) => {}
        }
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(NEW_FILE_MODE)
        .custom_flags(libc::O_NOCTTY)
        .open(&t.os)
        .map_err(|e| FsError::io("open", &t.shown, &e))?;
    Ok(Sink::InPlace { file })
}

/// `.name.sprite-upload-<pid>-<nanos>` beside the target.
fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or(b"file");
    let short = &name[..name.len().min(100)];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut temp = b".".to_vec();
    temp.extend_from_slice(short);
    temp.extend_from_slice(format!(".sprite-upload-{}-{nanos}", std::process::id()).as_bytes());
    target.with_file_name(paths::os(&temp))
}

/// Copy `STDIN` frames into the sink until `STDIN_EOF`.
fn receive(conn: &mut Conn, t: &Target, sink: &mut Sink) -> CallResult<u64> {
    let file = match sink {
        Sink::Temp { file, .. } | Sink::InPlace { file } => file,
    };
    let mut buf = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    loop {
        match conn.next(&mut buf).map_err(gone)? {
            Incoming::Data(n) => {
                file.write_all(&buf[..n])
                    .map_err(|e| Failure::Fs(FsError::io("write", &t.shown, &e)))?;
                total += n as u64;
            }
            Incoming::Eof => return Ok(total),
            Incoming::Other => {}
        }
    }
}

fn finish(
    t: &Target,
    sink: Sink,
    mode: Option<u32>,
    final_mode: u32,
    existing: Option<&Stat>,
) -> CallResult {
    match sink {
        Sink::InPlace { file } => {
            if mode.is_some() {
                file.set_permissions(std::fs::Permissions::from_mode(final_mode))
                    .map_err(|e| FsError::io("chmod", &t.shown, &e))?;
            }
            Ok(())
        }
        Sink::Temp { path, file } => {
            let done = (|| {
                if let Some(old) = existing {
                    // Root replacing someone's file keeps it theirs; others
                    // cannot give files away, and need not.
                    if nix::unistd::geteuid().is_root() {
                        let _ = std::os::unix::fs::fchown(&file, Some(old.uid), Some(old.gid));
                    }
                }
                // After the chown, which clears set-id bits.
                file.set_permissions(std::fs::Permissions::from_mode(final_mode))
                    .map_err(|e| FsError::io("chmod", &t.shown, &e))?;
                drop(file);
                std::fs::rename(&path, &t.os).map_err(|e| FsError::io("rename", &t.shown, &e))
            })();
            if done.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            done.map_err(Failure::Fs)
        }
    }
}
