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

    #[test]
    fn unescape_edges() {
        assert_eq!(unescape("a\\040"), "a ");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("\\134x"), "\\x");
    }
}
