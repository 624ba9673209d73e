//! The `tiny` image: a static busybox with a link for every applet, and just
//! enough of /etc for a `sprite` user. Built in about a second, used by tests
//! and as a minimal sprite.

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{write_file, write_file_mode, Reporter};
use crate::error::{IoContext, Result, StoreError};
use crate::store::ensure_dir;
use crate::tool;

const BUSYBOX_CANDIDATES: [&str; 2] = ["/usr/bin/busybox", "/bin/busybox"];
const SPRITE_UID: u32 = 1000;

pub(super) fn build(rootfs: &Path, reporter: &mut Reporter<'_>) -> Result<String> {
    reporter.report("creating directories", 0.05);
    ensure_dir(rootfs, 0o755)?;
    let dirs: [(&str, u32); 18] = [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("home/sprite", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("var", 0o755),
        ("var/tmp", 0o1777),
        ("run", 0o755),
        ("mnt", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        (".sprite", 0o755),
    ];
    for (dir, mode) in dirs {
        ensure_dir(&rootfs.join(dir), mode)?;
    }

    reporter.report("installing busybox", 0.2);
    let busybox = find_busybox()?;
    let target = rootfs.join("bin/busybox");
    std::fs::copy(&busybox, &target).ctx("copy", &target)?;
    write_file_mode(&target, 0o755)?;

    reporter.report("linking applets", 0.4);
    let list = tool::run(Command::new(&busybox).arg("--list-full"))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" || applet.contains("..") {
            continue;
        }
        let link = rootfs.join(applet);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).ctx("mkdir", parent)?;
        }
        if std::fs::symlink_metadata(&link).is_err() {
            symlink("/bin/busybox", &link).ctx("symlink", &link)?;
        }
    }

    reporter.report("writing /etc", 0.7);
    let etc = rootfs.join("etc");
    write_file(
        &etc.join("passwd"),
        b"root:x:0:0:root:/root:/bin/sh\n\
          sprite:x:1000:1000:sprite:/home/sprite:/bin/sh\n\
          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    )?;
    write_file(
        &etc.join("group"),
        b"root:x:0:\ntty:x:5:\nsprite:x:1000:\nnogroup:x:65534:\n",
        0o644,
    )?;
    write_file(
        &etc.join("profile"),
        b"export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        0o644,
    )?;
    let home = rootfs.join("home/sprite");
    std::os::unix::fs::chown(&home, Some(SPRITE_UID), Some(SPRITE_UID)).ctx("chown", &home)?;
    reporter.report("tiny rootfs built", 1.0);
    Ok(format!("busybox-static ({})", busybox.display()))
}

/// The host's busybox, which must be static: it runs inside an image with no libc.
fn find_busybox() -> Result<PathBuf> {
    let path = BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            StoreError::Unsupported("busybox not found: install busybox-static".into())
        })?;
    if has_interpreter(&path)? {
        return Err(StoreError::Unsupported(format!(
            "{} is dynamically linked: install busybox-static",
            path.display()
        )));
    }
    Ok(path)
}

/// Whether an ELF64 executable names a program interpreter (PT_INTERP),
/// i.e. is dynamically linked.
fn has_interpreter(path: &Path) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    let mut head = vec![0u8; 64 * 1024];
    let mut file = std::fs::File::open(path).ctx("open", path)?;
    let n = file.read(&mut head).ctx("read", path)?;
    let head = &head[..n];
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        head.get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    let not_elf =
        || StoreError::Unsupported(format!("{} is not an ELF64 executable", path.display()));
    if head.get(..5) != Some(b"\x7fELF\x02") {
        return Err(not_elf());
    }
    let phoff = u64_at(0x20)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(not_elf)?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(not_elf)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(not_elf)?);
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        let p_type = head
            .get(off..off + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(not_elf)?;
        if p_type == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_dynamic_executables() {
        // Any dynamically linked host binary will do; /bin/sh is always there.
        assert!(has_interpreter(Path::new("/bin/sh")).expect("elf"));
        if let Ok(bb) = find_busybox() {
            assert!(!has_interpreter(&bb).expect("elf"));
        }
    }
}
