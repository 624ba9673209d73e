//! Paths of a call: what the kernel resolves, and what the API shows.
//!
//! The kernel resolves a path joined to the working directory as it is
//! (`..` after a symlink goes where the kernel says); the API shows the
//! same path with `.` and `..` folded lexically. Nothing here can leave
//! the sprite: the worker runs in the sprite's mount namespace, whose root
//! is the sprite's own.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use sprites_api::fs::PathBytes;

use super::error::FsError;

/// A path of a call.
#[derive(Debug, Clone)]
pub struct Target {
    /// What system calls get.
    pub os: PathBuf,
    /// Absolute and folded, for answers and error messages.
    pub shown: Vec<u8>,
}

impl Target {
    /// The last component as shown (`/` for the root).
    pub fn name(&self) -> Vec<u8> {
        base_name(&self.shown).to_vec()
    }
}

/// Resolve `raw` against the absolute directory `base`. An empty path
/// means `base` itself when `empty_is_base`, else it is refused.
pub fn resolve(base: &[u8], raw: &PathBytes, empty_is_base: bool) -> Result<Target, FsError> {
    let p = raw.as_bytes();
    if p.contains(&0) {
        return Err(FsError::invalid(p, "paths must not contain NUL bytes"));
    }
    if p.is_empty() && !empty_is_base {
        return Err(FsError::invalid(p, "the path is empty"));
    }
    let joined: Vec<u8> = if p.first() == Some(&b'/') {
        p.to_vec()
    } else if p.is_empty() {
        base.to_vec()
    } else {
        let mut j = base.to_vec();
        if j.last() != Some(&b'/') {
            j.push(b'/');
        }
        j.extend_from_slice(p);
        j
    };
    Ok(Target {
        shown: fold(&joined),
        os: PathBuf::from(OsStr::from_bytes(&joined)),
    })
}

/// Fold `.`, `..` and repeated slashes of an absolute path; `..` at the
/// root stays at the root.
pub fn fold(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for c in &parts {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// The last component of a shown path (`/` for the root).
pub fn base_name(shown: &[u8]) -> &[u8] {
    match shown.iter().rposition(|&b| b == b'/') {
        Some(i) if i + 1 < shown.len() => &shown[i + 1..],
        _ => shown,
    }
}

/// `parent/name` of shown paths.
pub fn child(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = parent.to_vec();
    if out.last() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

pub fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_like_a_lexical_clean() {
        assert_eq!(fold(b"/a/./b//c/../d/"), b"/a/b/d".to_vec());
        assert_eq!(fold(b"/../../etc"), b"/etc".to_vec());
        assert_eq!(fold(b"/"), b"/".to_vec());
        assert_eq!(fold(b"/a/.."), b"/".to_vec());
    }

    #[test]
    fn resolves_against_the_base() {
        let t = resolve(b"/home/sprite", &"a b.txt".into(), false).expect("ok");
        assert_eq!(t.os, PathBuf::from("/home/sprite/a b.txt"));
        assert_eq!(t.shown, b"/home/sprite/a b.txt".to_vec());
        assert_eq!(t.name(), b"a b.txt".to_vec());
        let t = resolve(b"/home/sprite", &"../../../etc/passwd".into(), false).expect("ok");
        assert_eq!(t.shown, b"/etc/passwd".to_vec());
        assert_eq!(t.os, PathBuf::from("/home/sprite/../../../etc/passwd"));
        let t = resolve(b"/home/sprite", &"/tmp/x".into(), false).expect("ok");
        assert_eq!(t.os, PathBuf::from("/tmp/x"));
        let t = resolve(b"/", &PathBytes(b"\xffname".to_vec()), false).expect("ok");
        assert_eq!(t.shown, b"/\xffname".to_vec());
        let t = resolve(b"/srv", &"".into(), true).expect("base");
        assert_eq!(t.shown, b"/srv".to_vec());
        assert!(resolve(b"/srv", &"".into(), false).is_err());
        assert!(resolve(b"/", &PathBytes(b"a\0b".to_vec()), false).is_err());
        assert_eq!(
            resolve(b"/", &"/".into(), false).expect("root").name(),
            b"/"
        );
    }
}
