//! Checking a checkpoint or snapshot image: what a crash-consistent copy
//! of a mounted ext4 is (its journal may hold the last transactions),
//! checked as its next mount would see it. A reflink copy beside it has
//! its journal replayed (`e2fsck -E journal_only`), then `e2fsck -fn`
//! must find nothing; the image itself is not touched.

use std::path::Path;
use std::process::Command;

/// `Ok` when `image`, its journal replayed, is a clean ext4; else what
/// e2fsck said. The copy is made next to `image` (same filesystem, for
/// the reflink) and removed.
pub fn check_image(image: &Path) -> Result<(), String> {
    let mut name = image.file_name().unwrap_or_default().to_os_string();
    name.push(".fsck");
    let copy = image.with_file_name(name);
    let _ = std::fs::remove_file(&copy);
    let result = check_copy(image, &copy);
    let _ = std::fs::remove_file(&copy);
    result
}

fn check_copy(image: &Path, copy: &Path) -> Result<(), String> {
    let cp = Command::new("cp")
        .arg("--reflink=always")
        .arg(image)
        .arg(copy)
        .output()
        .map_err(|e| format!("cp: {e}"))?;
    if !cp.status.success() {
        return Err(format!(
            "cp --reflink {}: {}",
            image.display(),
            String::from_utf8_lossy(&cp.stderr)
        ));
    }
    // 0: nothing to do, 1: the journal was replayed.
    let replay = Command::new("e2fsck")
        .args(["-E", "journal_only", "-p"])
        .arg(copy)
        .output()
        .map_err(|e| format!("e2fsck: {e}"))?;
    if !matches!(replay.status.code(), Some(0) | Some(1)) {
        return Err(format!(
            "e2fsck -E journal_only {}: {}{}",
            image.display(),
            String::from_utf8_lossy(&replay.stdout),
            String::from_utf8_lossy(&replay.stderr)
        ));
    }
    let check = Command::new("e2fsck")
        .arg("-fn")
        .arg(copy)
        .output()
        .map_err(|e| format!("e2fsck: {e}"))?;
    if check.status.success() {
        Ok(())
    } else {
        Err(format!(
            "e2fsck -fn {} (its journal replayed): {}{}",
            image.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        ))
    }
}
