//! Reading `/proc/self/mountinfo`: which paths are mount points, of what.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The filesystem's device number (`major:minor`); for FUSE the minor
    /// is the connection's number in the fuse control filesystem.
    pub dev: (u32, u32),
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// The current mount table, in mount order (later entries stack on earlier ones).
pub fn read() -> Result<Vec<MountEntry>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).ctx("read", path)?;
    Ok(parse(&text))
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount_point options [optional...] - fstype source super_options
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ');
    let (major, minor) = left.nth(2)?.split_once(':')?;
    let dev = (major.parse().ok()?, minor.parse().ok()?);
    let mount_point = left.nth(1)?;
    let mut right = right.split(' ');
    let fs_type = right.next()?;
    let source = right.next().unwrap_or("");
    let super_options = right.next().unwrap_or("");
    Some(MountEntry {
        dev,
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: unescape(fs_type),
        source: unescape(source),
        super_options: unescape(super_options),
    })
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The topmost mount at exactly `path`, if any.
pub fn mount_at<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    entries.iter().rev().find(|e| e.mount_point == path)
}

/// Mount points at or below `dir`, deepest and latest first (the order to unmount in).
pub fn mounts_under(entries: &[MountEntry], dir: &Path) -> Vec<PathBuf> {
    entries
        .iter()
        .rev()
        .filter(|e| e.mount_point.starts_with(dir))
        .map(|e| e.mount_point.clone())
        .collect()
}

/// What is mounted at a path: the topmost mount there, as a lookup of the
/// path finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// As mountinfo names it (`ext4`, `overlay`, `xfs`, ...).
    pub fs_type: String,
}

/// Filesystem types by their magic number (`statfs`), for those the store
/// mounts and asks about.
const MAGIC: &[(i64, &str)] = &[
    (0xEF53, "ext4"),
    (0x794c_7630, "overlay"),
    (0x5846_5342, "xfs"),
    (0x6573_5546, "fuse"),
    (0x0102_1994, "tmpfs"),
];

/// Whether a mount is at exactly `path`, and of what, without reading the
/// mount table: `statx` says whether the path is the root of a mount
/// (Linux 5.8), and `statfs` of what type. `/proc/self/mountinfo` is the
/// whole table, made anew by the kernel at each read: with 500 sprites
/// that is ~2,500 lines, read several times by every start. A kernel
/// without the attribute gets the table. `None` where nothing is mounted at
/// `path` or it does not exist.
pub fn at(path: &Path) -> Result<Option<At>> {
    match mount_root(path) {
        Ok(Some(true)) => {}
        Ok(Some(false)) => return Ok(None),
        Ok(None) => {
            return Ok(mount_at(&read()?, path).map(|m| At {
                fs_type: m.fs_type.clone(),
            }))
        }
        Err(e) => return Err(crate::StoreError::io("statx", path, e.into())),
    }
    let fs = rustix::fs::statfs(path)
        .map_err(std::io::Error::from)
        .ctx("statfs", path)?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    let magic = fs.f_type as i64;
    let fs_type = match MAGIC.iter().find(|(m, _)| *m == magic) {
        Some((_, name)) => (*name).to_string(),
        None => format!("{magic:#x}"),
    };
    Ok(Some(At { fs_type }))
}

/// Whether something is mounted at exactly `path`, by `statx` alone (see
/// [`at`]), the mount table only where the kernel does not say. Its type is
/// not asked: a FUSE mount's `statfs` would go to its server, which may be
/// this process, busy or stalled; `statx` with `AT_STATX_DONT_SYNC`
/// answers from what the kernel holds.
pub fn is_mount_root(path: &Path) -> Result<bool> {
    match mount_root(path) {
        Ok(Some(root)) => Ok(root),
        // A FUSE mount whose server is gone answers ENOTCONN (or EIO):
        // the table says what is there, as where the kernel cannot tell.
        Ok(None) | Err(_) => Ok(mount_at(&read()?, path).is_some()),
    }
}

/// What `statx` says of `path` being the root of a mount: `Some(false)`
/// where it does not exist, `None` where the kernel does not tell (before
/// Linux 5.8: the table has to).
fn mount_root(path: &Path) -> std::result::Result<Option<bool>, rustix::io::Errno> {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
    let st = match statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC,
        StatxFlags::TYPE,
    ) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(Some(false)),
        Err(e) => return Err(e),
    };
    if !st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
        return Ok(None);
    }
    Ok(Some(
        st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
    ))
}

/// The entries of `dir` that are mount points (one level: what the store
/// mounts there), by [`at`]; none where `dir` does not exist.
pub fn children(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("readdir", dir),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.ctx("readdir", dir)?.path();
        if at(&path)?.is_some() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
42 27 7:0 / /tmp/d/pool rw,relatime - xfs /dev/loop0 rw,inode64
43 27 7:1 / /tmp/d/sprites/a\\040b/volume rw,relatime shared:5 - ext4 /dev/loop1 rw
46 27 0:39 / /tmp/d/sprites/a\\040b/rootfs rw,relatime - overlay overlay rw,lowerdir=x,upperdir=y
";

    #[test]
    fn parses_and_unescapes() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].mount_point, PathBuf::from("/tmp/d/sprites/a b/volume"));
        assert_eq!(m[2].fs_type, "ext4");
        assert_eq!(m[2].source, "/dev/loop1");
        assert_eq!(m[2].dev, (7, 1));
        assert_eq!(m[3].dev, (0, 39));
        assert_eq!(m[3].fs_type, "overlay");
        assert!(mount_at(&m, Path::new("/tmp/d/pool")).is_some());
        assert!(mount_at(&m, Path::new("/tmp/d")).is_none());
        let under = mounts_under(&m, Path::new("/tmp/d/sprites"));
        assert_eq!(
            under,
            vec![
                PathBuf::from("/tmp/d/sprites/a b/rootfs"),
                PathBuf::from("/tmp/d/sprites/a b/volume")
            ]
        );
    }

    /// `at` and `children` against real mounts (the tests run as root):
    /// stacked, under a name with a space, and agreeing with the table.
    #[test]
    fn at_and_children_see_real_mounts() {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a b");
        let plain = dir.path().join("plain");
        for d in [&a, &plain] {
            std::fs::create_dir(d).expect("mkdir");
        }
        std::fs::write(dir.path().join("file"), b"x").expect("write");
        std::os::unix::fs::symlink(&a, dir.path().join("link")).expect("symlink");
        assert_eq!(at(&a).expect("at"), None);
        assert_eq!(at(&dir.path().join("missing")).expect("at"), None);
        assert_eq!(at(&dir.path().join("file/x")).expect("at"), None);
        for p in [&a, &dir.path().join("missing"), &dir.path().join("file/x")] {
            assert!(!is_mount_root(p).expect("is_mount_root"), "{}", p.display());
        }
        // Whatever fails below, nothing stays mounted.
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                while umount2(&self.0, MntFlags::MNT_DETACH).is_ok() {}
            }
        }
        let _cleanup = Unmount(a.clone());
        let tmpfs = || {
            mount(
                Some("tmpfs"),
                &a,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
        };
        tmpfs().expect("mount tmpfs (the tests run as root)");
        tmpfs().expect("mount a second tmpfs on it");
        let seen = at(&a).expect("at");
        assert_eq!(seen.map(|m| m.fs_type), Some("tmpfs".to_string()));
        assert!(is_mount_root(&a).expect("is_mount_root"));
        // A symlink to a mount point is not one.
        assert_eq!(at(&dir.path().join("link")).expect("at"), None);
        assert!(!is_mount_root(&dir.path().join("link")).expect("is_mount_root"));
        assert_eq!(children(dir.path()).expect("children"), vec![a.clone()]);
        assert_eq!(
            children(&dir.path().join("missing")).expect("children"),
            Vec::<PathBuf>::new()
        );
        // The table says the same.
        let table = read().expect("mountinfo");
        assert_eq!(
            mount_at(&table, &a).map(|m| m.fs_type.as_str()),
            Some("tmpfs")
        );
        umount2(&a, MntFlags::empty()).expect("umount the top one");
        assert!(
            at(&a).expect("at").is_some(),
            "the one under it is still there"
        );
        assert!(is_mount_root(&a).expect("is_mount_root"));
        umount2(&a, MntFlags::empty()).expect("umount");
        assert_eq!(at(&a).expect("at"), None);
        assert!(!is_mount_root(&a).expect("is_mount_root"));
        assert!(children(dir.path()).expect("children").is_empty());
    }

    #[test]
    fn unescape_edges() {
        assert_eq!(unescape("a\\040"), "a ");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("\\134x"), "\\x");
    }
}
