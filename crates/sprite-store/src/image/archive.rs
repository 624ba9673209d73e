//! A base image as one tar stream, for the cold tier: exported so that an
//! evicted sprite's image is kept beside its volume (its chunks stored once
//! however many sprites use it), and imported where the image is missing
//! (a new host, a lost disk) instead of being rebuilt.
//!
//! The export walks the tree in sorted order with each entry's own
//! metadata (owner, mode, mtime), so exporting the same image twice gives
//! the same bytes, hence the same chunks.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{IoContext, Result, StoreError};
use crate::image::ImageManifest;
use crate::store::{ensure_dir, Store};
use crate::validate_name;

impl Store {
    /// Writes image `name` (its `rootfs/` and `manifest.json`) as a tar
    /// stream to `out`. Returns its manifest.
    pub fn export_image(&self, name: &str, out: &Path) -> Result<ImageManifest> {
        validate_name(name)?;
        let manifest = self.image_manifest(name)?;
        let dir = self.layout.image_dir(name);
        let file = File::create(out).ctx("create", out)?;
        let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
        tar.follow_symlinks(false);
        tar.mode(tar::HeaderMode::Complete);
        append_sorted(&mut tar, &dir, Path::new(""))?;
        let mut w = tar.into_inner().ctx("write", out)?;
        w.flush().ctx("write", out)?;
        w.get_ref().sync_all().ctx("fsync", out)?;
        Ok(manifest)
    }

    /// Makes image `name` from a tar stream made by [`Store::export_image`],
    /// unless it is there already. Built aside and renamed into place, like
    /// a build.
    pub fn import_image(&self, name: &str, archive: &Path) -> Result<ImageManifest> {
        let _guard = self
            .build_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.import_locked(name, archive)
    }

    /// [`Store::import_image`] for a caller that holds the build lock.
    pub(crate) fn import_locked(&self, name: &str, archive: &Path) -> Result<ImageManifest> {
        validate_name(name)?;
        if self.image_ready(name) {
            return self.image_manifest(name);
        }
        let images = self.layout.images_dir();
        ensure_dir(&images, 0o755)?;
        let tmp = images.join(format!(".build-{name}-{}-import", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        ensure_dir(&tmp, 0o700)?;
        let unpacked = (|| {
            let file = File::open(archive).ctx("open", archive)?;
            let mut ar = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
            ar.set_preserve_permissions(true);
            ar.set_preserve_ownerships(true);
            ar.set_preserve_mtime(true);
            ar.set_overwrite(false);
            for entry in ar.entries().ctx("unpack", archive)? {
                let mut entry = entry.ctx("unpack", archive)?;
                let kind = entry.header().entry_type();
                if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
                    make_node(&entry, &tmp)?;
                } else {
                    entry.unpack_in(&tmp).ctx("unpack", archive)?;
                }
            }
            let m: ImageManifest = serde_json::from_slice(
                &std::fs::read(tmp.join("manifest.json")).ctx("read", &tmp)?,
            )
            .map_err(|e| StoreError::Corrupt(format!("image {name} manifest: {e}")))?;
            if m.name != name || m.uid_shift != self.opts.uid_shift {
                return Err(StoreError::Corrupt(format!(
                    "the archive holds image {} for uid shift {:?}, not {name} for {:?}",
                    m.name, m.uid_shift, self.opts.uid_shift
                )));
            }
            Ok(m)
        })();
        let m = match unpacked {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let dest = self.layout.image_dir(name);
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(StoreError::io("rename", &dest, e));
        }
        Ok(m)
    }
}

/// A device node or fifo of the archive, made under `dest` (the tar crate
/// would make an empty file).
fn make_node<R: std::io::Read>(entry: &tar::Entry<'_, R>, dest: &Path) -> Result<()> {
    use std::path::Component;
    let h = entry.header();
    let bad = |why: &str| StoreError::Corrupt(format!("image archive: {why}"));
    let rel = entry.path().map_err(|e| bad(&e.to_string()))?.into_owned();
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad(&format!("unsafe path {}", rel.display())));
    }
    let target = dest.join(&rel);
    let kind = if h.entry_type().is_character_special() {
        nix::sys::stat::SFlag::S_IFCHR
    } else if h.entry_type().is_block_special() {
        nix::sys::stat::SFlag::S_IFBLK
    } else {
        nix::sys::stat::SFlag::S_IFIFO
    };
    let num = |v: std::io::Result<Option<u32>>| v.ok().flatten().unwrap_or(0) as u64;
    let dev = nix::sys::stat::makedev(num(h.device_major()), num(h.device_minor()));
    let mode = h.mode().map_err(|e| bad(&e.to_string()))?;
    nix::sys::stat::mknod(
        &target,
        kind,
        nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
        dev,
    )
    .ctx("mknod", &target)?;
    let (uid, gid) = (
        h.uid().map_err(|e| bad(&e.to_string()))?,
        h.gid().map_err(|e| bad(&e.to_string()))?,
    );
    nix::unistd::fchownat(
        None,
        &target,
        Some(nix::unistd::Uid::from_raw(uid as u32)),
        Some(nix::unistd::Gid::from_raw(gid as u32)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ctx("chown", &target)?;
    // mknod's mode went through the umask.
    std::fs::set_permissions(
        &target,
        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
    )
    .ctx("chmod", &target)?;
    Ok(())
}

fn append_sorted<W: Write>(tar: &mut tar::Builder<W>, root: &Path, rel: &Path) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<std::ffi::OsString> = std::fs::read_dir(&dir)
        .ctx("read_dir", &dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .ctx("read_dir", &dir)?;
    entries.sort();
    for name in entries {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).ctx("stat", &path)?;
        let ft = meta.file_type();
        if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            // Device nodes and fifos by hand: the tar crate names them by
            // their absolute source path.
            let mut h = tar::Header::new_gnu();
            h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            h.set_size(0);
            let rdev = meta.rdev();
            h.set_device_major(nix::sys::stat::major(rdev) as u32)
                .ctx("archive", &path)?;
            h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
                .ctx("archive", &path)?;
            tar.append_data(&mut h, &rel, std::io::empty())
                .ctx("archive", &path)?;
            continue;
        }
        if ft.is_socket() {
            // Cannot be archived, and means nothing in a stopped image.
            continue;
        }
        tar.append_path_with_name(&path, &rel)
            .ctx("archive", &path)?;
        if meta.is_dir() {
            append_sorted(tar, root, &rel)?;
        }
    }
    Ok(())
}
