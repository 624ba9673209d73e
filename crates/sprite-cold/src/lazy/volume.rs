//! The image being rebuilt: a sparse local backing file whose chunks are
//! fetched when first touched (or by the background filler), and the I/O
//! the FUSE side serves from it.
//!
//! A chunk is *local* when its bytes are in the backing file: chunks the
//! manifest does not list are zeros, so a sparse file already holds them;
//! the others become local when fetched and checked, and stay local. Bytes
//! of a chunk are only ever read or written once it is local, so a write
//! never lands on a chunk that a fetch could still overwrite.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::chunk::{self, Hash};
use crate::error::{ColdError, Result};
use crate::lazy::state::StateFile;
use crate::manifest::Manifest;
use crate::store::ColdStore;

/// How many chunks after one fetched on demand the filler takes next: a
/// read of one part of a file is usually followed by the next part.
const HINT_AHEAD: u64 = 4;

/// Who asks for a chunk: the sprite's I/O comes first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asker {
    Demand,
    Filler,
}

/// After the sprite waited for a chunk, the filler keeps to one fetch in
/// flight for this long: a boot reads one block after another, each read a
/// short wait that a busy filler would lengthen several times over.
const QUIET: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Traffic {
    demand: usize,
    filler: usize,
    last_demand: Option<Instant>,
}

impl Traffic {
    /// How much longer the filler should hold back, if at all.
    fn hold_back(&self) -> Option<Duration> {
        if self.demand > 0 {
            return Some(QUIET);
        }
        let left = QUIET.checked_sub(self.last_demand?.elapsed())?;
        (!left.is_zero()).then_some(left)
    }
}

/// Fetches chunks from the store for threads outside the async runtime.
pub(crate) struct Source {
    pub(crate) store: Arc<ColdStore>,
    pub(crate) handle: tokio::runtime::Handle,
}

impl Source {
    /// The plain bytes of chunk `hash`, checked. A damaged cached copy is
    /// dropped and the store asked instead. Bounded in time even if the
    /// store never answers, and an error (not a panic) if the runtime is
    /// gone.
    fn fetch(&self, hash: &Hash, len: usize) -> Result<Vec<u8>> {
        let store = &self.store;
        // The store's own timeout covers a request and its retries; this
        // one only stops a wait that would otherwise never end.
        let limit = store.request_timeout * 2 + Duration::from_secs(5);
        for _attempt in 0..2 {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // The timer is made inside: it needs the runtime's context.
                self.handle
                    .block_on(async { tokio::time::timeout(limit, store.fetch_chunk(hash)).await })
            }));
            let (stored, from_cache) = match run {
                Ok(Ok(got)) => got?,
                Ok(Err(_elapsed)) => {
                    return Err(ColdError::Store {
                        store: store.describe().to_string(),
                        op: "get",
                        key: hash.key(),
                        source: Box::new(object_store::Error::Generic {
                            store: "cold",
                            source: format!("no answer within {limit:?}").into(),
                        }),
                    })
                }
                Err(_panic) => {
                    return Err(ColdError::Other(
                        "fetching a chunk: the async runtime is gone".into(),
                    ))
                }
            };
            match chunk::open(&stored, hash, len) {
                Ok(plain) => return Ok(plain),
                Err(ColdError::Corrupt { .. }) if from_cache => {
                    tracing::warn!(chunk = %hash, "damaged chunk in the local cache; fetching it again");
                    store.cache.remove(hash);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ColdError::Other(format!("chunk {hash} could not be read")))
    }
}

pub(crate) struct Volume {
    size: u64,
    chunk_size: u64,
    manifest: Manifest,
    /// The hash of each chunk the manifest lists, by chunk index.
    remote: HashMap<u64, Hash>,
    /// Indexes of the listed chunks, in the order the filler takes them.
    order: Vec<u64>,
    backing: File,
    /// The backing file opened O_DIRECT, for the filler's writes: they
    /// stay out of the page cache (the loop device caches what the sprite
    /// reads), and a flush of the sprite does not wait for them.
    direct: Option<File>,
    backing_path: PathBuf,
    state: StateFile,
    source: Source,
    /// Chunks being fetched right now, and the signal that one finished.
    fetching: Mutex<HashSet<u64>>,
    changed: Condvar,
    local: AtomicU64,
    /// Fetches made, failed ones included.
    fetches: AtomicU64,
    traffic: Mutex<Traffic>,
    traffic_changed: Condvar,
    hints: Mutex<VecDeque<u64>>,
    cursor: AtomicUsize,
    /// The first fetch that failed.
    error: Mutex<Option<ColdError>>,
    /// Serialises commits; holds the bits last made durable.
    committed: Mutex<Vec<u8>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Volume {
    pub(crate) fn new(
        manifest: Manifest,
        backing: File,
        backing_path: &Path,
        state: StateFile,
        source: Source,
    ) -> Result<Volume> {
        let mut remote = HashMap::with_capacity(manifest.chunks.len());
        let mut order = Vec::with_capacity(manifest.chunks.len());
        let mut local = 0;
        for c in &manifest.chunks {
            remote.insert(c.index, Hash::from_hex(&c.hash)?);
            order.push(c.index);
            if state.is_set(c.index) {
                local += 1;
            }
        }
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(backing_path)
            .inspect_err(|e| tracing::debug!(error = %e, "no direct I/O on the backing file"))
            .ok();
        Ok(Volume {
            direct,
            size: manifest.size,
            chunk_size: manifest.chunk_size,
            remote,
            order,
            backing,
            backing_path: backing_path.to_path_buf(),
            committed: Mutex::new(state.snapshot()),
            state,
            source,
            fetching: Mutex::new(HashSet::new()),
            changed: Condvar::new(),
            local: AtomicU64::new(local),
            fetches: AtomicU64::new(0),
            traffic: Mutex::new(Traffic::default()),
            traffic_changed: Condvar::new(),
            hints: Mutex::new(VecDeque::new()),
            cursor: AtomicUsize::new(0),
            error: Mutex::new(None),
            stop: AtomicBool::new(false),
            manifest,
        })
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// (chunks local, chunks listed in the manifest).
    pub(crate) fn progress(&self) -> (u64, u64) {
        (self.local.load(Ordering::Acquire), self.order.len() as u64)
    }

    pub(crate) fn is_complete(&self) -> bool {
        let (local, total) = self.progress();
        local == total
    }

    /// A copy of the first fetch error, if any.
    pub(crate) fn error(&self) -> Option<ColdError> {
        lock(&self.error).as_ref().map(ColdError::duplicate)
    }

    /// Records a failure (the first one is kept) and wakes the watcher.
    pub(crate) fn fail(&self, e: &ColdError) {
        let mut first = lock(&self.error);
        if first.is_none() {
            tracing::error!(image = %self.backing_path.display(), error = %e, "rebuilding an image lazily");
            *first = Some(e.duplicate());
        }
        drop(first);
        // Wake the completion watcher.
        let _g = lock(&self.fetching);
        self.changed.notify_all();
    }

    pub(crate) fn failed(&self) -> bool {
        lock(&self.error).is_some()
    }

    /// Deletes the state file: the backing file is the whole image.
    pub(crate) fn remove_state(&self) -> Result<()> {
        self.state.remove()
    }

    /// Asks every waiter and filler thread to give up.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _g = lock(&self.fetching);
        self.changed.notify_all();
        drop(_g);
        let _t = lock(&self.traffic);
        self.traffic_changed.notify_all();
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Makes chunk `i` local: fetches it unless it is, or waits for the
    /// fetch already under way (and tries itself if that one failed).
    pub(crate) fn ensure_local(&self, i: u64, asker: Asker) -> Result<()> {
        let Some(hash) = self.remote.get(&i).copied() else {
            return Ok(());
        };
        {
            let mut fetching = lock(&self.fetching);
            loop {
                if self.state.is_set(i) {
                    return Ok(());
                }
                if asker == Asker::Filler && self.stopped() {
                    return Err(ColdError::Other("stopped".into()));
                }
                if fetching.insert(i) {
                    break;
                }
                fetching = self
                    .changed
                    .wait(fetching)
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
        self.enter(asker);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let got = self.fetch_into_backing(i, &hash, asker);
        self.leave(asker);
        if asker == Asker::Demand {
            self.hint_after(i);
        }
        let mut fetching = lock(&self.fetching);
        fetching.remove(&i);
        if got.is_ok() {
            self.local.fetch_add(1, Ordering::AcqRel);
        }
        self.changed.notify_all();
        drop(fetching);
        if let Err(e) = &got {
            self.fail(e);
        }
        got
    }

    fn fetch_into_backing(&self, i: u64, hash: &Hash, asker: Asker) -> Result<()> {
        let len = self.manifest.chunk_len(i);
        let plain = self.source.fetch(hash, len)?;
        let off = i * self.chunk_size;
        // The sprite waits on a demand fetch: the page cache is quicker.
        let direct = match &self.direct {
            Some(f) if asker == Asker::Filler && len.is_multiple_of(PAGE) => Some(f),
            _ => None,
        };
        let written = match direct.map(|f| write_direct(f, &plain, off)) {
            None | Some(Err(_)) => self.backing.write_all_at(&plain, off),
            Some(Ok(())) => Ok(()),
        };
        written.map_err(|e| ColdError::io("write", &self.backing_path, e))?;
        // The bit follows the bytes: set, no write of the sprite can reach
        // the chunk before it is recorded.
        self.state.set(i)
    }

    /// Demand goes first: while the sprite waits for chunks (and a short
    /// while after), the filler keeps at most one fetch of its own in flight.
    fn enter(&self, asker: Asker) {
        let mut t = lock(&self.traffic);
        match asker {
            Asker::Demand => t.demand += 1,
            Asker::Filler => {
                while t.filler > 0 && !self.stopped() {
                    let Some(wait) = t.hold_back() else { break };
                    t = self
                        .traffic_changed
                        .wait_timeout(t, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                t.filler += 1;
            }
        }
    }

    fn leave(&self, asker: Asker) {
        let mut t = lock(&self.traffic);
        match asker {
            Asker::Demand => {
                t.demand -= 1;
                t.last_demand = Some(Instant::now());
            }
            Asker::Filler => t.filler -= 1,
        }
        self.traffic_changed.notify_all();
    }

    fn hint_after(&self, i: u64) {
        let mut hints = lock(&self.hints);
        for next in (i + 1)..=(i + HINT_AHEAD) {
            if self.remote.contains_key(&next) && !self.state.is_set(next) {
                hints.push_back(next);
            }
        }
        // Only recent hints matter.
        while hints.len() > 64 {
            hints.pop_front();
        }
    }

    /// The next chunk the filler should fetch, or None when none is left.
    pub(crate) fn next_for_filler(&self) -> Option<u64> {
        loop {
            let hinted = lock(&self.hints).pop_front();
            match hinted {
                Some(i) if !self.state.is_set(i) => return Some(i),
                Some(_) => continue,
                None => break,
            }
        }
        loop {
            let at = self.cursor.fetch_add(1, Ordering::AcqRel);
            let i = *self.order.get(at)?;
            if !self.state.is_set(i) {
                return Some(i);
            }
        }
    }

    /// Blocks until every chunk is local, a fetch failed, or `stop`.
    /// Returns whether the image is complete.
    pub(crate) fn wait_complete_blocking(&self) -> bool {
        let mut fetching = lock(&self.fetching);
        loop {
            if self.is_complete() {
                return true;
            }
            if self.stopped() || lock(&self.error).is_some() {
                return false;
            }
            fetching = self
                .changed
                .wait(fetching)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Makes everything written so far durable, and with it the record of
    /// which chunks are local.
    pub(crate) fn commit(&self) -> Result<()> {
        let mut committed = lock(&self.committed);
        let snapshot = self.state.snapshot();
        self.backing
            .sync_data()
            .map_err(|e| ColdError::io("fdatasync", &self.backing_path, e))?;
        if *committed != snapshot {
            self.state.commit(&snapshot)?;
            *committed = snapshot;
        }
        Ok(())
    }

    /// The chunks `[off, off+len)` touches.
    fn chunks_of(&self, off: u64, len: u64) -> std::ops::RangeInclusive<u64> {
        let last = (off + len.max(1) - 1) / self.chunk_size;
        (off / self.chunk_size)..=last
    }

    fn make_local(&self, off: u64, len: u64) -> Result<()> {
        for i in self.chunks_of(off, len) {
            self.ensure_local(i, Asker::Demand)?;
        }
        Ok(())
    }

    /// Bytes `[off, off+len)` (fewer at the end of the image).
    pub(crate) fn read(&self, off: u64, len: u32) -> Result<Vec<u8>> {
        if off >= self.size || len == 0 {
            return Ok(Vec::new());
        }
        let len = u64::from(len).min(self.size - off);
        self.make_local(off, len)?;
        let mut buf = vec![0u8; len as usize];
        self.backing
            .read_exact_at(&mut buf, off)
            .map_err(|e| ColdError::io("read", &self.backing_path, e))?;
        Ok(buf)
    }

    /// Writes `data` at `off`: the chunks it touches are made whole first,
    /// so a partial write never leaves the rest of a chunk as zeros.
    pub(crate) fn write(&self, off: u64, data: &[u8]) -> std::result::Result<(), WriteError> {
        let len = data.len() as u64;
        if off.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(WriteError::PastEnd);
        }
        if len == 0 {
            return Ok(());
        }
        self.make_local(off, len).map_err(|_| WriteError::Fetch)?;
        self.backing
            .write_all_at(data, off)
            .map_err(WriteError::Local)
    }

    /// fallocate(2) within the image: plain allocation, punching a hole
    /// and zeroing a range (what the loop driver sends for discards and
    /// write-zeroes). The image never grows.
    pub(crate) fn fallocate(
        &self,
        off: u64,
        len: u64,
        mode: i32,
    ) -> std::result::Result<(), WriteError> {
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let op = mode & !libc::FALLOC_FL_KEEP_SIZE;
        let end = off.checked_add(len).ok_or(WriteError::PastEnd)?;
        if end > self.size && !keep {
            return Err(WriteError::PastEnd);
        }
        let len = end.min(self.size).saturating_sub(off);
        if len == 0 {
            return Ok(());
        }
        match op {
            0 => {}
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE => {
                // The rest of a partly zeroed chunk must be its real bytes.
                self.make_local(off, len).map_err(|_| WriteError::Fetch)?;
            }
            _ => return Err(WriteError::Unsupported),
        }
        let (Ok(o), Ok(l)) = (libc::off_t::try_from(off), libc::off_t::try_from(len)) else {
            return Err(WriteError::PastEnd);
        };
        // SAFETY: fallocate only reads its scalar arguments; the fd belongs
        // to an open file we own.
        let ret = unsafe { libc::fallocate(self.backing.as_raw_fd(), mode, o, l) };
        if ret != 0 {
            return Err(WriteError::Local(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

const PAGE: usize = 4096;

/// A page-aligned block of memory, as O_DIRECT wants.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page([u8; PAGE]);

/// Writes `data` (a whole number of pages) at `off` (page-aligned) through
/// an O_DIRECT file, from an aligned copy.
fn write_direct(file: &File, data: &[u8], off: u64) -> std::io::Result<()> {
    let pages = data.len() / PAGE;
    let mut buf = vec![Page([0; PAGE]); pages];
    // SAFETY: `buf` is `pages` contiguous, initialised pages of plain bytes
    // with no padding; the slice covers exactly them and borrows `buf`
    // mutably for its lifetime.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), pages * PAGE) };
    bytes.copy_from_slice(&data[..pages * PAGE]);
    file.write_all_at(bytes, off)
}

/// Why a write (or fallocate) failed, for the errno the sprite sees.
#[derive(Debug)]
pub(crate) enum WriteError {
    PastEnd,
    Unsupported,
    /// A chunk could not be fetched (recorded by the volume).
    Fetch,
    Local(std::io::Error),
}

impl WriteError {
    pub(crate) fn errno(&self) -> i32 {
        match self {
            WriteError::PastEnd => libc::EFBIG,
            WriteError::Unsupported => libc::EOPNOTSUPP,
            WriteError::Fetch => libc::EIO,
            WriteError::Local(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn concurrent_demand_for_one_chunk_fetches_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = Arc::new(
            ColdStore::open(&StoreOptions {
                url: format!("file://{}", dir.path().join("store").display()),
                cache_dir: dir.path().join("cache"),
                cache_bytes: 0,
                concurrency: 4,
                request_timeout: Duration::from_secs(5),
            })
            .unwrap(),
        );
        let img = dir.path().join("img");
        let data: Vec<u8> = (0..3 * crate::CHUNK_SIZE as usize)
            .map(|i| (i % 251) as u8 | 1)
            .collect();
        std::fs::write(&img, &data).unwrap();
        let m = rt
            .block_on(store.upload_image(&img, "v", None))
            .unwrap()
            .manifest;
        let backing = dir.path().join("backing");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&backing)
            .unwrap();
        file.set_len(m.size).unwrap();
        let state = StateFile::create(
            &dir.path().join("state"),
            &[0; 32],
            3,
            "11111111-1111-1111-1111-111111111111",
        )
        .unwrap();
        let source = Source {
            store,
            handle: rt.handle().clone(),
        };
        let vol = Volume::new(m, file, &backing, state, source).unwrap();

        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| vol.ensure_local(1, Asker::Demand).unwrap());
            }
        });
        assert_eq!(vol.fetches.load(Ordering::Relaxed), 1);
        assert_eq!(vol.progress(), (1, 3));
        let cs = crate::CHUNK_SIZE as usize;
        // A read across a chunk boundary fetches the other chunk too.
        assert_eq!(
            vol.read(cs as u64 - 10, 20).unwrap(),
            &data[cs - 10..cs + 10]
        );
        assert_eq!(
            vol.fetches.load(Ordering::Relaxed),
            2,
            "chunk 0 came on demand"
        );
    }
}
