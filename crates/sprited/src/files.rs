//! Small files the daemon keeps for a sprite (its policies, its guide, the
//! CA bundle it trusts), bound into the sandbox or read by it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Makes `path` hold `body` (and mode `mode`), replacing it by a rename so
/// that a reader sees the old file or the new one, never half of it; a
/// file that holds that already is left alone. Every start writes these
/// files, and most starts write what is there: the read costs ~20 µs,
/// the replacement ~250 µs here.
pub fn replace_if_changed(path: &Path, body: &[u8], mode: u32) -> std::io::Result<()> {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o7777 == mode
            && meta.len() == body.len() as u64
            && std::fs::read(path).is_ok_and(|now| now == body)
        {
            return Ok(());
        }
    }
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(body)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_file_holding_the_same_is_left_alone_and_any_change_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.json");
        replace_if_changed(&path, b"one", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let ino = std::fs::metadata(&path).unwrap().ino();

        replace_if_changed(&path, b"one", 0o644).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino, "rewritten");

        // Other bytes of the same length, then another length, then
        // another mode: each replaces the file.
        replace_if_changed(&path, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        replace_if_changed(&path, b"three", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        replace_if_changed(&path, b"three", 0o600).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_ne!(meta.ino(), ino);
        // Nothing left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("network.json")]);
    }
}
