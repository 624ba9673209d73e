//! Base images: `<pool>/images/<name>/{rootfs,manifest.json}`, shared
//! read-only by every sprite as its overlay's lower layer.
//!
//! A build happens in `<pool>/images/.build-<name>-<pid>-<n>/` and is renamed
//! into place only when complete (manifest written last), so a crash never
//! leaves a half-built image that looks ready.

mod archive;
mod standard;
mod tiny;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StoreError};
use crate::idshift;
use crate::store::{ensure_dir, Store};
use crate::validate_name;

/// The images this store knows how to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// busybox-static with the applet links, a passwd with `sprite`: builds in ~1 s.
    Tiny,
    /// Debian bookworm minbase with bash, python3, git, curl, sudo (mmdebstrap).
    Standard,
}

impl ImageKind {
    pub const ALL: [ImageKind; 2] = [ImageKind::Tiny, ImageKind::Standard];

    /// The image's name in the store.
    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Tiny => "tiny",
            ImageKind::Standard => "standard",
        }
    }
}

impl std::fmt::Display for ImageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ImageKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        ImageKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| StoreError::ImageMissing(s.to_string()))
    }
}

/// A step of an image build: what is happening and how far along (0.0..=1.0).
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub phase: String,
    pub fraction: f64,
}

/// `manifest.json` beside a built rootfs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageManifest {
    pub name: String,
    /// What it was built from, e.g. "busybox-static" or "mmdebstrap bookworm minbase".
    pub source: String,
    /// Host uid/gid that owns what root owns in the image.
    pub uid_shift: Option<u32>,
    pub built_at_unix: u64,
    pub build_seconds: f64,
    pub files: u64,
    pub bytes: u64,
}

/// Reports through the caller's callback, with the builder's own fractions
/// mapped into [start, end] of the whole build.
pub(crate) struct Reporter<'a> {
    callback: &'a mut dyn FnMut(Progress),
    start: f64,
    end: f64,
}

impl Reporter<'_> {
    pub(crate) fn report(&mut self, phase: impl Into<String>, fraction: f64) {
        let fraction = self.start + (self.end - self.start) * fraction.clamp(0.0, 1.0);
        (self.callback)(Progress {
            phase: phase.into(),
            fraction,
        });
    }
}

impl Store {
    /// `<pool>/images/<name>/rootfs` (pure path).
    pub fn image_rootfs(&self, name: &str) -> PathBuf {
        self.layout.image_rootfs(name)
    }

    /// Whether the image is built, for this store's uid shift.
    pub fn image_ready(&self, name: &str) -> bool {
        self.image_manifest(name)
            .is_ok_and(|m| m.uid_shift == self.opts.uid_shift)
    }

    /// The manifest of a built image.
    pub fn image_manifest(&self, name: &str) -> Result<ImageManifest> {
        validate_name(name)?;
        let path = self.layout.image_manifest(name);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::ImageMissing(name.to_string()))
            }
            Err(e) => return Err(StoreError::io("read", &path, e)),
        };
        serde_json::from_slice(&text).map_err(|source| StoreError::Manifest { path, source })
    }

    /// Builds the image unless it is already built (idempotent), reporting
    /// progress through `progress`.
    pub fn build_image(
        &self,
        kind: ImageKind,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImageManifest> {
        let name = kind.name();
        let _guard = self
            .build_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match self.image_manifest(name) {
            Ok(m) if m.uid_shift == self.opts.uid_shift => {
                progress(Progress {
                    phase: format!("image {name} is ready"),
                    fraction: 1.0,
                });
                return Ok(m);
            }
            Ok(m) => {
                return Err(StoreError::ImageShiftMismatch {
                    name: name.to_string(),
                    built: m.uid_shift,
                    wanted: self.opts.uid_shift,
                })
            }
            Err(StoreError::ImageMissing(_)) => {}
            Err(e) => return Err(e),
        }
        let images = self.layout.images_dir();
        remove_stale_builds(&images, name);
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = images.join(format!(".build-{name}-{}-{nonce}", std::process::id()));
        ensure_dir(&tmp, 0o700)?;
        let built = self.build_into(kind, &tmp, progress);
        let manifest = match built {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let dest = self.layout.image_dir(name);
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another process finished the same build first: use theirs.
            if dest.join("manifest.json").exists() {
                return self.image_manifest(name);
            }
            return Err(StoreError::io("rename", &dest, e));
        }
        progress(Progress {
            phase: format!("image {name} is ready"),
            fraction: 1.0,
        });
        Ok(manifest)
    }

    fn build_into(
        &self,
        kind: ImageKind,
        tmp: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImageManifest> {
        let started = Instant::now();
        let rootfs = tmp.join("rootfs");
        let source = {
            let mut reporter = Reporter {
                callback: progress,
                start: 0.0,
                end: 0.9,
            };
            match kind {
                ImageKind::Tiny => tiny::build(&rootfs, &mut reporter)?,
                ImageKind::Standard => standard::build(&rootfs, &mut reporter)?,
            }
        };
        finish_rootfs(&rootfs)?;
        progress(Progress {
            phase: "shifting ownership".into(),
            fraction: 0.9,
        });
        let stats = idshift::shift_tree(&rootfs, self.opts.uid_shift)?;
        let manifest = ImageManifest {
            name: kind.name().to_string(),
            source,
            uid_shift: self.opts.uid_shift,
            built_at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            build_seconds: started.elapsed().as_secs_f64(),
            files: stats.files,
            bytes: stats.bytes,
        };
        let path = tmp.join("manifest.json");
        let json = serde_json::to_vec_pretty(&manifest).map_err(|source| StoreError::Manifest {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, json).ctx("write", &path)?;
        progress(Progress {
            phase: "finalizing".into(),
            fraction: 0.98,
        });
        Ok(manifest)
    }
}

/// What every image has, whatever it was built from: the agent's mount
/// point, a hostname, loopback hosts, and an empty resolv.conf (the sprite's
/// network is set up by the daemon).
fn finish_rootfs(rootfs: &Path) -> Result<()> {
    let sprite = rootfs.join(".sprite");
    let bin = sprite.join("bin");
    for dir in [
        sprite.clone(),
        bin.clone(),
        sprite.join("checkpoints"),
        sprite.join("run"),
    ] {
        ensure_dir(&dir, 0o755)?;
    }
    // Bind-mount targets for the agent (also as `sprite-env`), the checkpoint
    // views and the API socket's directory; existing in the image means runc
    // need not create them (a copy-up into every sprite's volume).
    write_file(&bin.join("sprite-agent"), b"", 0o755)?;
    write_file(&bin.join("sprite-env"), b"", 0o755)?;
    replace_symlink(Path::new("run/api.sock"), &sprite.join("api.sock"))?;
    // On every PATH, login shells included.
    let local_bin = rootfs.join("usr/local/bin");
    std::fs::create_dir_all(&local_bin).ctx("mkdir", &local_bin)?;
    replace_symlink(
        Path::new("/.sprite/bin/sprite-env"),
        &local_bin.join("sprite-env"),
    )?;
    let etc = rootfs.join("etc");
    write_file(&etc.join("hostname"), b"sprite\n", 0o644)?;
    write_file(
        &etc.join("hosts"),
        b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        0o644,
    )?;
    write_file(&etc.join("resolv.conf"), b"", 0o644)?;
    Ok(())
}

fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    if std::fs::symlink_metadata(link).is_ok() {
        std::fs::remove_file(link).ctx("remove", link)?;
    }
    std::os::unix::fs::symlink(target, link).ctx("symlink", link)
}

/// Writes a file with `mode`, replacing whatever (even a symlink) was there.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => std::fs::remove_file(path).ctx("remove", path)?,
        _ => {}
    }
    std::fs::write(path, contents).ctx("write", path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).ctx("chmod", path)
}

/// Removes `.build-<name>-<pid>-*` dirs left by builds whose process is gone
/// (or by this process, which holds the build lock).
fn remove_stale_builds(images: &Path, name: &str) {
    let prefix = format!(".build-{name}-");
    let Ok(entries) = std::fs::read_dir(images) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            tracing::info!(dir = %entry.path().display(), "removing stale image build");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Sets the mode of an existing file or directory.
pub(crate) fn write_file_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).ctx("chmod", path)
}
