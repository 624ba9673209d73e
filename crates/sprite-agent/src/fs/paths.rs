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
        os: PathBuf::from(OsStr::from_bytes(&walk_links(&joined))),
    })
}

/// How many symbolic links one walk follows before it leaves the rest to
/// the kernel (which then answers ELOOP where it should).
const MAX_LINKS: usize = 40;

/// The absolute path `path` with the symbolic links among its directories
/// resolved here, component by component, and its last component left as
/// it is for the call (which decides whether to follow it).
///
/// The kernel would resolve the same way (a link's `..` is taken from
/// where the link points), so nothing changes for a container. The walk
/// exists for gVisor: its 2022 Sentry drops the rest of a path after a
/// link whose target is `/` (`ln -s / r; cat r/etc/passwd` reads the root
/// directory), and a path handed over with its directories already
/// resolved never meets such a link. Where a step cannot be looked at (it
/// does not exist, no search permission, too many links), the rest is
/// handed over unresolved and the kernel gives the answer it would have.
pub fn walk_links(path: &[u8]) -> Vec<u8> {
    let mut rest: std::collections::VecDeque<Vec<u8>> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let trailing_slash = path.len() > 1 && path.last() == Some(&b'/');
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    let joined = |done: &[Vec<u8>], rest: &[Vec<u8>], trailing: bool| {
        let mut out = Vec::with_capacity(path.len() + 1);
        for c in done.iter().chain(rest) {
            out.push(b'/');
            out.extend_from_slice(c);
        }
        if out.is_empty() || trailing {
            out.push(b'/');
        }
        out
    };
    while rest.len() > 1 {
        let Some(c) = rest.pop_front() else { break };
        match c.as_slice() {
            b"." => continue,
            b".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        done.push(c);
        let here = joined(&done, &[], false);
        let is_link = std::fs::symlink_metadata(os(&here)).map(|m| m.file_type().is_symlink());
        match is_link {
            Ok(false) => {}
            Ok(true) if links < MAX_LINKS => {
                let Ok(target) = std::fs::read_link(os(&here)) else {
                    return joined(&done, rest.make_contiguous(), trailing_slash);
                };
                links += 1;
                done.pop();
                let target = target.as_os_str().as_bytes();
                if target.first() == Some(&b'/') {
                    done.clear();
                }
                for t in target.split(|&b| b == b'/').rev() {
                    if !t.is_empty() {
                        rest.push_front(t.to_vec());
                    }
                }
            }
            _ => return joined(&done, rest.make_contiguous(), trailing_slash),
        }
    }
    joined(&done, rest.make_contiguous(), trailing_slash)
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
    fn links_among_the_directories_are_resolved_here() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("real/sub")).expect("dirs");
        std::fs::write(d.join("real/sub/f"), "x").expect("file");
        std::os::unix::fs::symlink("/", d.join("root")).expect("link");
        std::os::unix::fs::symlink("//", d.join("root2")).expect("link");
        std::os::unix::fs::symlink("real/sub", d.join("rel")).expect("link");
        std::os::unix::fs::symlink("rel", d.join("chain")).expect("link");
        std::os::unix::fs::symlink("loop", d.join("loop")).expect("link");
        std::os::unix::fs::symlink("real/sub/f", d.join("last")).expect("link");
        let base = d.as_os_str().as_bytes().to_vec();
        let at = |p: &str| {
            let mut v = base.clone();
            v.extend_from_slice(p.as_bytes());
            walk_links(&v)
        };
        // A link to the root, then more path: the root's own path.
        assert_eq!(at("/root/etc/passwd"), b"/etc/passwd".to_vec());
        assert_eq!(at("/root2/etc"), b"/etc".to_vec());
        let real = |p: &str| {
            let mut v = std::fs::canonicalize(d)
                .expect("real")
                .as_os_str()
                .as_bytes()
                .to_vec();
            v.extend_from_slice(p.as_bytes());
            v
        };
        // Relative links and chains resolve where they point; `..` after
        // a link goes up from its target, as the kernel's would.
        assert_eq!(at("/chain/f"), real("/real/sub/f"));
        assert_eq!(at("/rel/../sub/./f"), real("/real/sub/f"));
        // The last component is the call's: not followed here.
        assert_eq!(at("/last"), real("/last"));
        assert_eq!(at("/root"), real("/root"));
        assert_eq!(at("/rel/"), real("/rel/"));
        // What cannot be looked at is handed over as it is.
        assert_eq!(at("/missing/x/../y"), real("/missing/x/../y"));
        assert!(at("/loop/x").ends_with(b"/loop/x"));
        assert_eq!(walk_links(b"/"), b"/".to_vec());
        assert_eq!(walk_links(b"/.."), b"/..".to_vec());
    }

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
