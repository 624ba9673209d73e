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
        validate_name(name)?;
        let _guard = self
            .build_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
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
            ar.unpack(&tmp).ctx("unpack", archive)?;
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
        tar.append_path_with_name(&path, &rel)
            .ctx("archive", &path)?;
        let meta = std::fs::symlink_metadata(&path).ctx("stat", &path)?;
        if meta.is_dir() {
            append_sorted(tar, root, &rel)?;
        }
    }
    Ok(())
}
