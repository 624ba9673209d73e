//! Moving files between this machine and a sprite, streamed both ways:
//! what `sprite cp` and `sprite exec --file` share.
//!
//! Uploads keep the local file's permission bits; downloads get the
//! sprite file's (less the umask) and land in a temporary file beside the
//! destination that is renamed over it at the end, so a broken transfer
//! never leaves half a file behind on either side.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use sprites_client::{FileKind, Filesystem, WriteOptions};
use tokio::io::AsyncWriteExt;

/// Bytes and files moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub files: u64,
    pub bytes: u64,
}

impl Moved {
    fn add(&mut self, other: Moved) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// Upload one local file (or stdin for `-`) to `remote`.
pub async fn upload_file(
    fs: &Filesystem,
    local: &Path,
    remote: &Path,
    mode: Option<u32>,
) -> Result<Moved> {
    if local == Path::new("-") {
        let w = fs
            .write_from(remote, tokio::io::stdin(), &write_options(mode))
            .await
            .with_context(|| format!("writing {}", remote.display()))?;
        return Ok(Moved {
            files: 1,
            bytes: w.size,
        });
    }
    let file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("opening {}", local.display()))?;
    let meta = file
        .metadata()
        .await
        .with_context(|| format!("reading {}", local.display()))?;
    if meta.is_dir() {
        bail!(
            "{} is a directory (copy directories with cp -r)",
            local.display()
        );
    }
    let mode = mode.or(Some(meta.permissions().mode() & 0o7777));
    let w = fs
        .write_from(remote, file, &write_options(mode))
        .await
        .with_context(|| format!("writing {}", remote.display()))?;
    Ok(Moved {
        files: 1,
        bytes: w.size,
    })
}

fn write_options(mode: Option<u32>) -> WriteOptions {
    WriteOptions {
        mode,
        mkdir_parents: true,
    }
}

/// Upload a local directory tree to `remote` (made if missing).
pub async fn upload_tree(fs: &Filesystem, local: &Path, remote: &Path) -> Result<Moved> {
    let mut moved = Moved::default();
    fs.create_dir_all(remote)
        .await
        .with_context(|| format!("making {}", remote.display()))?;
    // Depth first, with an explicit stack: trees may be deep.
    let mut stack = vec![(local.to_path_buf(), remote.to_path_buf())];
    while let Some((dir, rdir)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let target = rdir.join(e.file_name());
            let kind = e
                .file_type()
                .with_context(|| format!("reading {}", path.display()))?;
            if kind.is_dir() {
                fs.create_dir_all(&target)
                    .await
                    .with_context(|| format!("making {}", target.display()))?;
                stack.push((path, target));
            } else if kind.is_file() {
                moved.add(upload_file(fs, &path, &target, None).await?);
            } else {
                eprintln!(
                    "sprite: skipping {} (not a file or directory)",
                    path.display()
                );
            }
        }
    }
    Ok(moved)
}

/// Download one sprite file to `local` (or stdout for `-`).
pub async fn download_file(fs: &Filesystem, remote: &Path, local: &Path) -> Result<Moved> {
    let mut stream = fs
        .read_stream(remote)
        .await
        .with_context(|| format!("reading {}", remote.display()))?;
    if local == Path::new("-") {
        let mut out = tokio::io::stdout();
        let bytes = copy_stream(&mut stream, &mut out, remote).await?;
        return Ok(Moved { files: 1, bytes });
    }
    let mode = stream.mode().unwrap_or(0o644) & 0o777;
    let temp = temp_beside(local);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .with_context(|| format!("creating {}", local.display()))?;
    let mut out = tokio::fs::File::from_std(file);
    let copied = copy_stream(&mut stream, &mut out, remote).await;
    let result = match copied {
        Ok(bytes) => out
            .sync_all()
            .await
            .map_err(anyhow::Error::from)
            .and_then(|()| std::fs::rename(&temp, local).map_err(anyhow::Error::from))
            .map(|()| Moved { files: 1, bytes })
            .with_context(|| format!("writing {}", local.display())),
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

async fn copy_stream<W: tokio::io::AsyncWrite + Unpin>(
    stream: &mut sprites_client::FileStream,
    out: &mut W,
    remote: &Path,
) -> Result<u64> {
    use futures_util::StreamExt;
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("reading {}", remote.display()))?;
        out.write_all(&chunk).await.context("writing the copy")?;
        bytes += chunk.len() as u64;
    }
    if let Some(len) = stream.len() {
        if len != bytes {
            bail!("{}: got {bytes} of {len} bytes", remote.display());
        }
    }
    out.flush().await.context("writing the copy")?;
    Ok(bytes)
}

/// `.name.sprite-cp-<pid>` in the destination's directory.
fn temp_beside(local: &Path) -> PathBuf {
    let name = local
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_else(|| b"download".to_vec());
    let mut temp = b".".to_vec();
    temp.extend_from_slice(&name);
    temp.extend_from_slice(format!(".sprite-cp-{}", std::process::id()).as_bytes());
    local.with_file_name(OsStr::from_bytes(&temp))
}

/// Download a sprite directory tree to `local` (made if missing).
/// Symlinks are made again as symlinks, after everything else, and nothing
/// is written below one: a listing cannot make the copy write through a
/// link to elsewhere on this machine. Other special files are skipped.
pub async fn download_tree(fs: &Filesystem, remote: &Path, local: &Path) -> Result<Moved> {
    let listing = fs
        .list_recursive(remote)
        .await
        .with_context(|| format!("listing {}", remote.display()))?;
    std::fs::create_dir_all(local).with_context(|| format!("making {}", local.display()))?;
    let mut moved = Moved::default();
    let mut links: Vec<(PathBuf, String)> = Vec::new();
    for e in listing.entries {
        let rel = PathBuf::from(OsStr::from_bytes(e.raw_name().as_bytes()));
        if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
            bail!(
                "the sprite named an entry {:?}, outside the directory",
                e.name
            );
        }
        if links.iter().any(|(l, _)| rel.starts_with(l)) {
            bail!("the sprite listed {:?} below a symlink", e.name);
        }
        let target = local.join(&rel);
        // A symlink already in the local copy (an earlier download's)
        // must not be written through either.
        let is_dir = e.kind == FileKind::Directory;
        no_local_link(local, &rel, is_dir)?;
        let source = PathBuf::from(OsStr::from_bytes(e.raw_path().as_bytes()));
        match e.kind {
            FileKind::Directory => std::fs::create_dir_all(&target)
                .with_context(|| format!("making {}", target.display()))?,
            FileKind::File => moved.add(download_file(fs, &source, &target).await?),
            FileKind::Symlink => {
                if let Some(to) = e.link_target {
                    links.push((rel, to));
                }
            }
            FileKind::Other => {
                eprintln!("sprite: skipping {} (not a file or directory)", e.path);
            }
        }
    }
    for (rel, to) in links {
        no_local_link(local, &rel, false)?;
        let target = local.join(&rel);
        let _ = std::fs::remove_file(&target);
        std::os::unix::fs::symlink(&to, &target)
            .with_context(|| format!("making {}", target.display()))?;
    }
    Ok(moved)
}

/// Refuse to write `local/rel` when a directory on the way (or `rel`
/// itself, for a directory, which would be entered) is a symlink on this
/// machine: writing there would land wherever the link points.
fn no_local_link(local: &Path, rel: &Path, is_dir: bool) -> Result<()> {
    let parts: Vec<_> = rel.components().collect();
    let upto = if is_dir {
        parts.len()
    } else {
        parts.len().saturating_sub(1)
    };
    let mut at = local.to_path_buf();
    for c in &parts[..upto] {
        at.push(c);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!(
                "{} is a symlink here: not writing through it (remove it, or copy into another directory)",
                at.display()
            );
        }
    }
    Ok(())
}

/// A failure of a transfer, with "no such sprite" said plainly (the API's
/// `not_found` code; a missing file is `ENOENT`).
pub fn explain(err: anyhow::Error, sprite: &str) -> anyhow::Error {
    match err.downcast_ref::<sprites_client::Error>() {
        Some(api) if api.code() == Some("not_found") => anyhow::anyhow!("no sprite named {sprite}"),
        _ => err,
    }
}

/// Whether a sprite path is a directory (`false` when it does not exist).
pub async fn remote_is_dir(fs: &Filesystem, remote: &Path) -> Result<bool> {
    match fs.stat(remote).await {
        Ok(e) => Ok(e.is_dir),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e).with_context(|| format!("looking at {}", remote.display())),
    }
}
