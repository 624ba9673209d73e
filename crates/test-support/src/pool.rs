//! Removing a test's directory that held a storage pool: everything under
//! it unmounted, its loop devices gone, and never deleted through a mount.

use std::time::{Duration, Instant};

/// Unmounts what is under `dir`, waits for its loop devices to clear, and
/// removes it; where mounts remain, the directory is left behind (said on
/// stderr) rather than deleted through them.
pub fn remove_pool_dir(dir: tempfile::TempDir) {
    if let Err(e) = sprite_store::unmount_all(dir.path()) {
        eprintln!("cleanup: {e}");
    }
    // Loop devices clear themselves once unmounted; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sprite_store::loop_devices_under(dir.path()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mounted = sprite_store::mountinfo::read()
        .map(|m| !sprite_store::mountinfo::mounts_under(&m, dir.path()).is_empty())
        .unwrap_or(true);
    if mounted {
        eprintln!("cleanup: mounts remain under {}", dir.path().display());
        std::mem::forget(dir);
    }
}
