//! Waking a sprite without waiting for its whole volume: the image is
//! served through FUSE as one file, `<mountpoint>/volume.img`, to which the
//! loop device is attached, while its chunks come from the store as they
//! are touched, and a background filler fetches the rest.
//!
//! Underneath is the real image file (`backing`, sparse) and a small state
//! file recording which chunks are already in it (see `state.rs`). When every
//! chunk is local the backing file is the whole image; after
//! [`LazyImage::shutdown`] the state file is gone and the backing file is
//! used like any other volume. After a crash, [`LazyImage::finish_offline`]
//! completes it without FUSE (or [`LazyImage::start`] resumes it lazily).
//!
//! Durability follows the sprite's own: the loop device turns its flushes
//! into fsync of the FUSE file, which syncs the backing file and then
//! records the chunks that sync made durable.

mod fuse;
mod state;
mod volume;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{ColdError, Result};
use crate::manifest::Manifest;
use crate::store::ColdStore;
use fuse::FuseMount;
use state::StateFile;
use volume::{Asker, Source, Volume};

/// How long an orderly unmount waits for the file to be let go.
const UNMOUNT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Filling,
    Complete,
    Failed,
}

#[derive(Debug, Clone, Default)]
pub struct LazyOptions {
    /// Chunks the background filler fetches at once: `None` for the
    /// store's concurrency, `Some(0)` for no filler (only what the sprite
    /// touches is fetched).
    pub background_fetches: Option<usize>,
}

/// An image being rebuilt lazily, mounted through FUSE.
///
/// Dropped without [`LazyImage::shutdown`], it stops as a crash would: the
/// FUSE connection is aborted (I/O on the file fails from then on), and
/// nothing more is synced. The state file stays for a later resume.
pub struct LazyImage {
    vol: Arc<Volume>,
    mount: Option<FuseMount>,
    image_path: PathBuf,
    fillers: Vec<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
    phase: tokio::sync::watch::Receiver<Phase>,
}

impl std::fmt::Debug for LazyImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyImage")
            .field("image_path", &self.image_path)
            .field("progress", &self.vol.progress())
            .finish()
    }
}

impl LazyImage {
    /// Mounts the image of `manifest` as `<mountpoint>/volume.img` (the
    /// mountpoint is created if needed) and starts the background filler.
    ///
    /// With no state file, `backing` is created (and must not exist: a
    /// backing file without a state file is whole, or not ours). With one,
    /// the rebuild it records is resumed. Must run inside a multi-threaded
    /// tokio runtime: fetches run on it from the FUSE threads.
    pub async fn start(
        store: Arc<ColdStore>,
        manifest: Manifest,
        backing: PathBuf,
        state: PathBuf,
        mountpoint: PathBuf,
    ) -> Result<LazyImage> {
        Self::start_with(
            store,
            manifest,
            backing,
            state,
            mountpoint,
            LazyOptions::default(),
        )
        .await
    }

    pub async fn start_with(
        store: Arc<ColdStore>,
        manifest: Manifest,
        backing: PathBuf,
        state: PathBuf,
        mountpoint: PathBuf,
        opts: LazyOptions,
    ) -> Result<LazyImage> {
        if backing.starts_with(&mountpoint) || state.starts_with(&mountpoint) {
            return Err(ColdError::Other(format!(
                "the backing and state files cannot live under the mountpoint {}",
                mountpoint.display()
            )));
        }
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let fillers = opts.background_fetches.unwrap_or(store.concurrency);
            let vol = Arc::new(open_volume(store, manifest, &backing, &state, handle)?);
            let mount = fuse::mount(vol.clone(), &mountpoint)?;
            let (fillers, watcher, phase) = run_filler(&vol, fillers)?;
            Ok(LazyImage {
                vol,
                mount: Some(mount),
                image_path: mountpoint.join(fuse::FILE_NAME),
                fillers,
                watcher: Some(watcher),
                phase,
            })
        })
        .await
        .map_err(|e| ColdError::Other(format!("lazy start task failed: {e}")))?
    }

    /// The FUSE file, to attach a loop device to.
    pub fn image_path(&self) -> PathBuf {
        self.image_path.clone()
    }

    /// Whether every chunk is local and synced (the backing file is then
    /// the whole image, kept up to date by the sprite's writes).
    pub fn is_complete(&self) -> bool {
        *self.phase.borrow() == Phase::Complete
    }

    /// (chunks local, chunks listed in the manifest).
    pub fn progress(&self) -> (u64, u64) {
        self.vol.progress()
    }

    /// Waits until every chunk is local and synced, or returns the first
    /// fetch that failed (a chunk that is damaged, missing, or a store
    /// that did not answer in time).
    pub async fn wait_complete(&self) -> Result<()> {
        let mut phase = self.phase.clone();
        let got = phase.wait_for(|p| *p != Phase::Filling).await.map(|p| *p);
        match got {
            Ok(Phase::Complete) => Ok(()),
            _ => Err(self.vol.error().unwrap_or_else(|| {
                ColdError::Other("the lazy image stopped before it was complete".into())
            })),
        }
    }

    /// Stops the filler, unmounts (the caller has detached the loop
    /// device), syncs, and removes the state file if the image is whole.
    /// Incomplete, the state file stays, for a later start or
    /// [`LazyImage::finish_offline`].
    pub async fn shutdown(mut self) -> Result<()> {
        let mount = self.mount.take();
        let vol = self.vol.clone();
        let fillers = std::mem::take(&mut self.fillers);
        let watcher = self.watcher.take();
        drop(self);
        tokio::task::spawn_blocking(move || {
            vol.stop();
            join_all(fillers, watcher);
            if let Some(m) = mount {
                m.unmount(UNMOUNT_GRACE)?;
            }
            vol.commit()?;
            if vol.is_complete() {
                vol.remove_state()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| ColdError::Other(format!("lazy shutdown task failed: {e}")))?
    }

    /// After a crash: completes the rebuild recorded by `state` without
    /// FUSE. Chunks the state file says are local (the sprite may have
    /// written to them) are kept; the rest is fetched. Then the backing
    /// file is the whole image, synced, and the state file says so (every
    /// bit durable). The caller records the image whole wherever it keeps
    /// that, then removes the state file ([`remove_state`]): in that order
    /// a crash in between leaves a stale record, never a whole-looking
    /// image that is not. With no state file the image is taken as whole
    /// already.
    pub async fn finish_offline(
        store: Arc<ColdStore>,
        manifest: &Manifest,
        backing: &Path,
        state: &Path,
    ) -> Result<()> {
        if !state.exists() {
            return match backing.exists() {
                true => Ok(()),
                false => Err(ColdError::io(
                    "open",
                    backing,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                )),
            };
        }
        let handle = tokio::runtime::Handle::current();
        let (manifest, backing, state) =
            (manifest.clone(), backing.to_path_buf(), state.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let fillers = store.concurrency;
            let vol = Arc::new(open_volume(store, manifest, &backing, &state, handle)?);
            let threads = (0..fillers)
                .map(|n| spawn_filler(&vol, n))
                .collect::<Result<Vec<_>>>();
            let threads = match threads {
                Ok(t) => t,
                Err(e) => {
                    vol.stop();
                    return Err(e);
                }
            };
            let complete = vol.wait_complete_blocking();
            vol.stop();
            join_all(threads, None);
            if !complete {
                return Err(vol.error().unwrap_or_else(|| {
                    ColdError::Other("the offline rebuild stopped early".into())
                }));
            }
            vol.commit()
        })
        .await
        .map_err(|e| ColdError::Other(format!("offline rebuild task failed: {e}")))?
    }
}

/// Crash tests only: from now on, every flush of a self-filling volume
/// waits for ever in this process's FUSE server instead of being answered
/// (as a server would that is about to be killed). Armed by the daemon's
/// `checkpoint-lazy-stall` failpoint; nothing else calls it.
pub fn stall_syncs() {
    fuse::STALL_SYNCS.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Removes the state file of a finished rebuild, durably (see
/// [`LazyImage::finish_offline`]). A missing file is fine.
pub fn remove_state(state: &Path) -> Result<()> {
    match std::fs::remove_file(state) {
        Ok(()) => state::sync_dir_of(state),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ColdError::io("remove", state, e)),
    }
}

impl Drop for LazyImage {
    fn drop(&mut self) {
        self.vol.stop();
        // Abort first: a request waiting on a fetch must not hold us up.
        drop(self.mount.take());
        join_all(std::mem::take(&mut self.fillers), self.watcher.take());
    }
}

fn join_all(fillers: Vec<JoinHandle<()>>, watcher: Option<JoinHandle<()>>) {
    for t in fillers.into_iter().chain(watcher) {
        let _ = t.join();
    }
}

/// Opens (or creates) the backing and state files and the volume on them.
fn open_volume(
    store: Arc<ColdStore>,
    manifest: Manifest,
    backing: &Path,
    state: &Path,
    handle: tokio::runtime::Handle,
) -> Result<Volume> {
    let chunks = manifest.size.div_ceil(manifest.chunk_size);
    let image = state::image_id(&manifest)?;
    let boot = state::boot_id()?;
    let (file, st) = match (state.exists(), backing.exists()) {
        (true, true) => {
            let st = StateFile::open(state, &image, chunks, &boot)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(backing)
                .map_err(|e| ColdError::io("open", backing, e))?;
            let len = file
                .metadata()
                .map_err(|e| ColdError::io("stat", backing, e))?
                .len();
            if len != manifest.size {
                return Err(ColdError::Other(format!(
                    "{} holds {len} bytes where the image has {}",
                    backing.display(),
                    manifest.size
                )));
            }
            (file, st)
        }
        (false, true) => {
            return Err(ColdError::Other(format!(
                "{} exists without a state file: it is a whole image, or not ours",
                backing.display()
            )))
        }
        // No backing file: nothing was fetched, whatever a state file says.
        (_, false) => {
            let st = StateFile::create(state, &image, chunks, &boot)?;
            (create_backing(backing, manifest.size)?, st)
        }
    };
    Volume::new(
        manifest,
        file,
        backing,
        st,
        Source {
            store,
            handle: handle.clone(),
        },
    )
}

/// A sparse file of `size` bytes, made durable.
fn create_backing(path: &Path, size: u64) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| ColdError::io("create", path, e))?;
    file.set_len(size)
        .and_then(|()| file.sync_all())
        .map_err(|e| ColdError::io("truncate", path, e))?;
    state::sync_dir_of(path)?;
    Ok(file)
}

type Phases = (
    Vec<JoinHandle<()>>,
    JoinHandle<()>,
    tokio::sync::watch::Receiver<Phase>,
);

/// Starts `n` filler threads and the watcher that tells when the image is
/// complete (and synced) or failed.
fn run_filler(vol: &Arc<Volume>, n: usize) -> Result<Phases> {
    let (tx, rx) = tokio::sync::watch::channel(Phase::Filling);
    let mut fillers = Vec::with_capacity(n);
    for i in 0..n {
        match spawn_filler(vol, i) {
            Ok(t) => fillers.push(t),
            Err(e) => {
                vol.stop();
                join_all(fillers, None);
                return Err(e);
            }
        }
    }
    let v = vol.clone();
    let watcher = std::thread::Builder::new()
        .name("sprite-lazy-watch".into())
        .spawn(move || {
            let phase = if v.wait_complete_blocking() {
                match v.commit() {
                    Ok(()) => Phase::Complete,
                    Err(e) => {
                        v.fail(&e);
                        Phase::Failed
                    }
                }
            } else if v.error().is_some() {
                Phase::Failed
            } else {
                // Stopped: whoever stopped it reports.
                return;
            };
            tx.send_replace(phase);
        });
    match watcher {
        Ok(w) => Ok((fillers, w, rx)),
        Err(e) => {
            vol.stop();
            join_all(fillers, None);
            Err(ColdError::Other(format!("spawning a thread: {e}")))
        }
    }
}

/// The filler's work yields the CPU to the sprite's own fetches.
fn lower_priority() {
    // SAFETY: gettid has no arguments; setpriority only reads its scalar
    // arguments and applies to this thread alone on Linux.
    let ret = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
    if ret != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "setpriority");
    }
}

fn spawn_filler(vol: &Arc<Volume>, n: usize) -> Result<JoinHandle<()>> {
    let vol = vol.clone();
    std::thread::Builder::new()
        .name(format!("sprite-lazy-fill{n}"))
        .spawn(move || {
            fuse::mark_io_flusher();
            lower_priority();
            while !vol.stopped() && !vol.failed() {
                let Some(i) = vol.next_for_filler() else {
                    break;
                };
                if vol.ensure_local(i, Asker::Filler).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| ColdError::Other(format!("spawning a thread: {e}")))
}
