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
    /// Debian bookworm with the development tools (Python in a venv the
    /// `sprite` user owns, Node.js, Go, Rust, Ruby, build tools), package
    /// lists kept for `apt-get install` (mmdebstrap).
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

    /// Names what goes into the image: changed whenever its build changes,
    /// so that a copy built by an older recipe is known for what it is
    /// (see [`Store::image_outdated`], and the host-wide cache's key).
    pub fn recipe(self) -> &'static str {
        match self {
            ImageKind::Tiny => "tiny-2",
            ImageKind::Standard => "standard-3",
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
    /// [`ImageKind::recipe`] it was built by (none: before recipes were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
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
        match self.opts.image_cache.clone() {
            Some(cache) => self.build_through_cache(kind, &cache, progress),
            None => self.build_fresh(kind, progress),
        }
    }

    /// Whether image `name` is built, but by another recipe than this
    /// build's [`ImageKind::recipe`] (sprites made from it keep using it).
    pub fn image_outdated(&self, kind: ImageKind) -> bool {
        self.image_manifest(kind.name())
            .is_ok_and(|m| m.recipe.as_deref() != Some(kind.recipe()))
    }

    /// Deletes a built image; the caller makes sure no sprite uses it. The
    /// manifest goes first, so that a crash halfway leaves an image that is
    /// not built rather than one that looks whole.
    pub fn remove_image(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let _guard = self
            .build_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let manifest = self.layout.image_manifest(name);
        match std::fs::remove_file(&manifest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove", &manifest, e)),
        }
        let dir = self.layout.image_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", &dir, e)),
        }
    }

    /// The image from the host-wide cache when it holds this recipe for
    /// this uid shift (a copy, a few seconds, instead of minutes of
    /// mmdebstrap); otherwise built, then kept there for the next store.
    fn build_through_cache(
        &self,
        kind: ImageKind,
        cache: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImageManifest> {
        let name = kind.name();
        ensure_dir(cache, 0o700)?;
        let shift = self
            .opts
            .uid_shift
            .map_or_else(|| "none".to_string(), |s| s.to_string());
        let key = format!("{}-shift-{shift}", kind.recipe());
        let archive = cache.join(format!("{key}.tar"));
        let lock_path = cache.join(format!("{key}.lock"));
        let lock_file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx("open", &lock_path)?;
        // Another daemon of this host may be building the same image right
        // now: wait for it and take its copy rather than build it twice.
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| StoreError::io("flock", &lock_path, e.into()))?;
        if archive.is_file() {
            progress(Progress {
                phase: format!("copying image {name} from {}", archive.display()),
                fraction: 0.1,
            });
            match self.import_locked(name, &archive) {
                Ok(m) => {
                    progress(Progress {
                        phase: format!("image {name} is ready"),
                        fraction: 1.0,
                    });
                    return Ok(m);
                }
                Err(e) => {
                    tracing::warn!(archive = %archive.display(), error = %e, "the cached image cannot be used; building it");
                    let _ = std::fs::remove_file(&archive);
                }
            }
        }
        let manifest = self.build_fresh(kind, progress)?;
        let tmp = cache.join(format!(".{key}.{}.tar", std::process::id()));
        let kept = self
            .export_image(name, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &archive).ctx("rename", &archive));
        if let Err(e) = kept {
            // The image is built all the same; only the next store pays.
            tracing::warn!(cache = %cache.display(), error = %e, "cannot keep the image in the cache");
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(manifest)
    }

    /// Builds the image into the store; the caller holds the build lock.
    fn build_fresh(
        &self,
        kind: ImageKind,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImageManifest> {
        let name = kind.name();
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
            recipe: Some(kind.recipe().to_string()),
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

impl ImageKind {
    /// PATH of every command in a sprite of this image.
    pub fn path(self) -> &'static str {
        match self {
            ImageKind::Tiny => DEFAULT_PATH,
            ImageKind::Standard => standard::PATH,
        }
    }
}

/// PATH of a command in an image that asks for no other.
pub const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/.sprite/bin";

/// Group of the `sprite` user in every image.
const SPRITE_GID: u32 = 1000;

/// Top-level folders the `sprite` user may add to: `/` itself (tools
/// written for the hosted service run `mkdir -p /workspace`), and `/srv`,
/// `/opt` where an image has them.
const SHARED_TOP_DIRS: [&str; 3] = ["", "srv", "opt"];

/// What every image has, whatever it was built from: the agent's mount
/// point, a hostname, loopback hosts, an empty resolv.conf (the sprite's
/// network is set up by the daemon), and top-level folders the `sprite`
/// user can make folders in.
fn finish_rootfs(rootfs: &Path) -> Result<()> {
    // Group `sprite` may add entries; the sticky bit keeps it from
    // renaming or deleting those it does not own (/etc, /usr, /.sprite).
    // Nothing is opened that root inside could not open already: `sprite`
    // has passwordless sudo in `standard`, and root inside a sprite is an
    // unprivileged user outside (docs/design.md).
    for dir in SHARED_TOP_DIRS {
        let path = rootfs.join(dir);
        if path.is_dir() {
            std::os::unix::fs::chown(&path, Some(0), Some(SPRITE_GID)).ctx("chown", &path)?;
            write_file_mode(&path, 0o1775)?;
        }
    }
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
    // views, the API socket's directory and the guide for models; existing
    // in the image means runc need not create them (a copy-up into every
    // sprite's volume).
    write_file(&bin.join("sprite-agent"), b"", 0o755)?;
    write_file(&bin.join("sprite-env"), b"", 0o755)?;
    write_file(&sprite.join("llm.txt"), b"", 0o644)?;
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
