//! `/etc/hosts` must name the sprite's own host name, or programs that look
//! it up (sudo, many servers) stall or complain. Done at boot, as PID 1,
//! and again when a sandbox made ahead under a placeholder name becomes a
//! sprite ([`rename`]).

use std::path::Path;
use std::sync::Mutex;

/// The host name `/etc/hosts` was last made to name.
static NAMED: Mutex<String> = Mutex::new(String::new());

/// The kernel's host name (of this UTS namespace); empty if unreadable.
pub fn kernel_hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// At boot: `/etc/hosts` names `hostname`, which is remembered for a later
/// [`rename`].
pub fn at_boot(path: &Path, hostname: &str) -> std::io::Result<()> {
    *NAMED.lock().unwrap_or_else(|p| p.into_inner()) = hostname.to_string();
    ensure(path, hostname)
}

/// The host name changed to `hostname`: the line that named the old one
/// names the new one instead (other lines, the user's, are kept); where
/// there is no such line the new name is added.
pub fn rename(path: &Path, hostname: &str) -> std::io::Result<()> {
    let mut named = NAMED.lock().unwrap_or_else(|p| p.into_inner());
    let current = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let old = line_for(&named);
    let old = old.trim_end();
    if named.is_empty() || !current.lines().any(|l| l == old) {
        ensure(path, hostname)?;
    } else {
        let next: String = current
            .split_inclusive('\n')
            .map(|l| {
                if l.trim_end_matches('\n') == old {
                    line_for(hostname)
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(path, next)?;
    }
    *named = hostname.to_string();
    Ok(())
}

/// The line that makes `hostname` resolve to loopback.
fn line_for(hostname: &str) -> String {
    format!("127.0.1.1\t{hostname}\n")
}

/// Whether `hosts` already maps `hostname` (any address, any column).
fn names(hosts: &str, hostname: &str) -> bool {
    hosts.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("");
        l.split_whitespace().skip(1).any(|n| n == hostname)
    })
}

/// Add the host name to `path` if it is missing; a missing file gets the
/// usual localhost lines too.
pub fn ensure(path: &Path, hostname: &str) -> std::io::Result<()> {
    if hostname.is_empty() {
        return Ok(());
    }
    let current = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string()
        }
        Err(e) => return Err(e),
    };
    if names(&current, hostname) {
        return Ok(());
    }
    let mut next = current;
    if !next.is_empty() && !next.ends_with('\n') {
        next.push('\n');
    }
    next.push_str(&line_for(hostname));
    std::fs::write(path, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_name_once() {
        let dir = std::env::temp_dir().join(format!("hosts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("hosts");
        std::fs::write(&p, "127.0.0.1 localhost").expect("write");
        ensure(&p, "demo").expect("ensure");
        ensure(&p, "demo").expect("again");
        let s = std::fs::read_to_string(&p).expect("read");
        assert_eq!(s, "127.0.0.1 localhost\n127.0.1.1\tdemo\n");
        std::fs::remove_file(&p).expect("rm");
        ensure(&p, "x").expect("missing file");
        assert!(names(&std::fs::read_to_string(&p).expect("read"), "x"));
        assert!(!names("# 127.0.0.1 x\n", "x"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_rename_replaces_the_placeholder_line_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("hosts-rename-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("hosts");
        std::fs::write(&p, "127.0.0.1 localhost\n10.0.0.9 db # mine\n").expect("write");
        at_boot(&p, "sprite").expect("boot");
        rename(&p, "demo").expect("rename");
        let s = std::fs::read_to_string(&p).expect("read");
        assert_eq!(
            s,
            "127.0.0.1 localhost\n10.0.0.9 db # mine\n127.0.1.1\tdemo\n"
        );
        // Again, and where the placeholder line is gone: the name is added once.
        rename(&p, "demo").expect("again");
        std::fs::write(&p, "127.0.0.1 localhost\n").expect("write");
        rename(&p, "other").expect("no line to replace");
        let s = std::fs::read_to_string(&p).expect("read");
        assert_eq!(s, "127.0.0.1 localhost\n127.0.1.1\tother\n");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
