//! Directory entries as the API shows them, from `stat` results.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::FileStat;
use sprites_api::fs::{format_mode, FileKind, FsEntry, PathBytes};

use crate::timestamp;

/// The fields of a `stat` the API uses.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub mode: u32,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub atime: i64,
    pub atime_nsec: i64,
    pub dev: u64,
    pub ino: u64,
}

impl Stat {
    pub fn kind(&self) -> FileKind {
        match self.mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == FileKind::Directory
    }

    pub fn is_symlink(&self) -> bool {
        self.kind() == FileKind::Symlink
    }

    pub fn is_file(&self) -> bool {
        self.kind() == FileKind::File
    }

    pub fn perms(&self) -> u32 {
        self.mode & 0o7777
    }

    pub fn modified(&self) -> SystemTime {
        let nanos = u32::try_from(self.mtime_nsec.clamp(0, 999_999_999)).unwrap_or(0);
        if self.mtime >= 0 {
            UNIX_EPOCH + Duration::new(self.mtime.unsigned_abs(), nanos)
        } else {
            UNIX_EPOCH - Duration::new(self.mtime.unsigned_abs(), 0) + Duration::new(0, nanos)
        }
    }

    pub fn same_file(&self, other: &Stat) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

impl From<&std::fs::Metadata> for Stat {
    fn from(m: &std::fs::Metadata) -> Self {
        Stat {
            mode: m.mode(),
            size: m.size(),
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            atime: m.atime(),
            atime_nsec: m.atime_nsec(),
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

impl From<&FileStat> for Stat {
    fn from(s: &FileStat) -> Self {
        Stat {
            mode: s.st_mode,
            size: u64::try_from(s.st_size).unwrap_or(0),
            uid: s.st_uid,
            gid: s.st_gid,
            mtime: s.st_mtime,
            mtime_nsec: s.st_mtime_nsec,
            atime: s.st_atime,
            atime_nsec: s.st_atime_nsec,
            dev: s.st_dev,
            ino: s.st_ino,
        }
    }
}

/// The API's entry for `name` at shown path `path`.
pub fn entry(name: &[u8], path: &[u8], st: &Stat, link_target: Option<&[u8]>) -> FsEntry {
    let name = PathBytes::from(name);
    let path = PathBytes::from(path);
    FsEntry {
        name: name.lossy(),
        path: path.lossy(),
        kind: st.kind(),
        size: st.size,
        mode: format_mode(st.perms()),
        mod_time: timestamp::rfc3339(st.modified()),
        is_dir: st.is_dir(),
        link_target: link_target.map(|t| String::from_utf8_lossy(t).into_owned()),
        name_base64: name.base64_if_not_utf8(),
        path_base64: path.base64_if_not_utf8(),
    }
}

/// About how long an entry's JSON is (for batching).
pub fn approx_len(e: &FsEntry) -> usize {
    160 + e.name.len() * 2 + e.path.len() * 2 + e.link_target.as_ref().map_or(0, |t| t.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_mode_kind_and_raw_names() {
        let st = Stat {
            mode: libc::S_IFREG | 0o640,
            size: 12,
            uid: 1000,
            gid: 1000,
            mtime: 1_700_000_000,
            mtime_nsec: 5,
            atime: 0,
            atime_nsec: 0,
            dev: 1,
            ino: 2,
        };
        let e = entry(b"a\xff", b"/x/a\xff", &st, None);
        assert_eq!(e.mode, "0640");
        assert_eq!(e.kind, FileKind::File);
        assert!(!e.is_dir);
        assert_eq!(e.mod_time, "2023-11-14T22:13:20Z");
        assert_eq!(e.name, "a\u{fffd}");
        assert_eq!(e.raw_name().as_bytes(), b"a\xff");
        assert_eq!(e.raw_path().as_bytes(), b"/x/a\xff");
        let d = Stat {
            mode: libc::S_IFDIR | 0o755,
            ..st
        };
        let e = entry(b"d", b"/d", &d, None);
        assert!(e.is_dir);
        assert_eq!(e.name_base64, None);
        let old = Stat { mtime: -10, ..st };
        assert!(old.modified() < UNIX_EPOCH);
    }
}
