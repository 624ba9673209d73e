//! `/etc/hosts` must name the sprite's own host name, or programs that look
//! it up (sudo, many servers) stall or complain. Done once at boot, as PID 1.

use std::path::Path;

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
}
