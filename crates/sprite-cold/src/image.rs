//! Moving a whole image file (a sprite's volume or a checkpoint) to and
//! from the store.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use nix::unistd::{lseek, Whence};

use crate::chunk::{self, Hash, CHUNK_SIZE};
use crate::error::{ColdError, Result};
use crate::manifest::{ChunkRef, Manifest};
use crate::store::ColdStore;

/// What an upload did.
#[derive(Debug, Clone)]
pub struct UploadStats {
    pub manifest: Manifest,
    /// Chunks with data in the image.
    pub chunks: u64,
    /// Of those, chunks the store did not have yet, and their stored bytes.
    pub chunks_sent: u64,
    pub bytes_sent: u64,
    pub elapsed: Duration,
}

/// What a download did.
#[derive(Debug, Clone)]
pub struct DownloadStats {
    pub chunks: u64,
    /// Chunks served by the local cache rather than the store.
    pub from_cache: u64,
    pub bytes_written: u64,
    pub elapsed: Duration,
}

/// Called as chunks are done: (done, total).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

impl ColdStore {
    /// Cuts the image at `path` into chunks, sends the store those it lacks,
    /// then writes manifest `name` naming them all. When this returns, the
    /// manifest and every chunk it names are durable, so the local image
    /// may go. The image must not change meanwhile (the sprite is stopped,
    /// or the image is a checkpoint).
    pub async fn upload_image(
        &self,
        path: &Path,
        name: &str,
        progress: Option<Progress<'_>>,
    ) -> Result<UploadStats> {
        self.upload_image_since(path, name, None, progress).await
    }

    /// [`upload_image`](Self::upload_image), reading only chunks that may
    /// differ from an earlier upload: with `since = (base, changed)`, a
    /// chunk whose index is not in `changed` is taken to hold what `base`
    /// says (the caller knows it from the file's extents, see
    /// `sprite_store::changed_chunks`) and is neither read nor sent.
    pub async fn upload_image_since(
        &self,
        path: &Path,
        name: &str,
        since: Option<(&Manifest, &[u64])>,
        progress: Option<Progress<'_>>,
    ) -> Result<UploadStats> {
        let started = Instant::now();
        let _no_gc = self.gc_lock.read().await;
        let file = File::open(path).map_err(|e| ColdError::io("open", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| ColdError::io("stat", path, e))?
            .len();
        let mut indexes = {
            let path = path.to_path_buf();
            let f = file
                .try_clone()
                .map_err(|e| ColdError::io("dup", &path, e))?;
            tokio::task::spawn_blocking(move || {
                data_chunks(&f, size, CHUNK_SIZE).map_err(|e| ColdError::io("lseek", &path, e))
            })
            .await
            .map_err(|e| ColdError::Other(format!("scan task failed: {e}")))??
        };
        // Unchanged chunks keep the base's references (those within the
        // image's size); only changed ones holding data are read.
        let mut kept = Vec::new();
        if let Some((base, changed)) = since.filter(|(b, _)| b.chunk_size == CHUNK_SIZE) {
            let changed: std::collections::BTreeSet<u64> = changed.iter().copied().collect();
            indexes.retain(|(i, _)| changed.contains(i));
            kept = base
                .chunks
                .iter()
                .filter(|c| !changed.contains(&c.index) && c.index * CHUNK_SIZE < size)
                .cloned()
                .collect();
        }
        let total = indexes.len() as u64;

        // A reader thread hashes chunks in order; sends run concurrently.
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<(u64, Hash, bytes::Bytes)>>(self.concurrency * 2);
        let reader = {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || {
                for (i, data) in indexes {
                    let off = i * CHUNK_SIZE;
                    let len = (size - off).min(CHUNK_SIZE) as usize;
                    let mut buf = vec![0u8; len];
                    // Only the chunk's data: its holes are the zeros `buf`
                    // holds. Read through, a hole made the kernel fill
                    // page-cache pages with zeros for it (most of a new
                    // volume's chunks hold a few blocks of ext4 metadata),
                    // a third of the daemon's time while new sprites
                    // replicated.
                    let item = data
                        .iter()
                        .try_for_each(|r| {
                            let at = (r.start - off) as usize..(r.end - off) as usize;
                            match buf.get_mut(at) {
                                Some(part) => file.read_exact_at(part, r.start),
                                None => Err(std::io::ErrorKind::InvalidInput.into()),
                            }
                        })
                        .map_err(|e| ColdError::io("read", &path, e))
                        .map(|()| buf);
                    let item = match item {
                        Ok(buf) if chunk::is_zero(&buf) => continue,
                        Ok(buf) => Ok((i, Hash::of(&buf), bytes::Bytes::from(buf))),
                        Err(e) => Err(e),
                    };
                    let stop = item.is_err();
                    if tx.blocking_send(item).is_err() || stop {
                        break;
                    }
                }
            })
        };
        let items =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|x| (x, rx)) },
            );
        let done = std::sync::atomic::AtomicU64::new(0);
        let sent = std::sync::atomic::AtomicU64::new(0);
        let sent_bytes = std::sync::atomic::AtomicU64::new(0);
        let result: Result<Vec<ChunkRef>> = items
            .map(|item| async {
                let (index, hash, plain) = item?;
                let (stored, new) = self.ensure_chunk(hash, plain).await?;
                if new {
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    sent_bytes.fetch_add(stored, std::sync::atomic::Ordering::Relaxed);
                }
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if let Some(p) = progress {
                    p(n, total);
                }
                Ok(ChunkRef {
                    index,
                    hash: hash.to_hex(),
                    stored,
                })
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await;
        // On an error the channel closes and the reader stops.
        let mut refs = result?;
        refs.extend(kept);
        reader
            .await
            .map_err(|e| ColdError::Other(format!("reader task failed: {e}")))?;
        let manifest = Manifest::new(size, CHUNK_SIZE, refs);
        self.put_manifest(name, &manifest).await?;
        Ok(UploadStats {
            chunks: manifest.chunks.len() as u64,
            manifest,
            chunks_sent: sent.into_inner(),
            bytes_sent: sent_bytes.into_inner(),
            elapsed: started.elapsed(),
        })
    }

    /// Rebuilds the image of manifest `m` at `dest` (created, or replaced
    /// if it exists): sparse, zeros where no chunk is listed. Each chunk is
    /// checked against its hash before it is written. Not synced: the
    /// caller decides when the file must be durable.
    pub async fn download_image(
        &self,
        m: &Manifest,
        dest: &Path,
        progress: Option<Progress<'_>>,
    ) -> Result<DownloadStats> {
        let started = Instant::now();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dest)
            .map_err(|e| ColdError::io("create", dest, e))?;
        file.set_len(m.size)
            .map_err(|e| ColdError::io("truncate", dest, e))?;
        let file = Arc::new(file);
        let total = m.chunks.len() as u64;
        let done = std::sync::atomic::AtomicU64::new(0);
        let cached = std::sync::atomic::AtomicU64::new(0);
        // Owned items: a stream of borrowed ones trips up Send futures.
        let jobs: Vec<(String, usize, u64)> = m
            .chunks
            .iter()
            .map(|c| (c.hash.clone(), m.chunk_len(c.index), c.index * m.chunk_size))
            .collect();
        let (done_ref, cached_ref) = (&done, &cached);
        futures_util::stream::iter(jobs)
            .map(|(hash, len, off)| {
                let file = file.clone();
                async move {
                    let hash = Hash::from_hex(&hash)?;
                    let from_cache = self.fetch_and_write(&hash, len, &file, off, dest).await?;
                    if from_cache {
                        cached_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let n = done_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if let Some(p) = progress {
                        p(n, total);
                    }
                    Ok::<_, ColdError>(())
                }
            })
            .buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await?;
        Ok(DownloadStats {
            chunks: total,
            from_cache: cached.into_inner(),
            bytes_written: m.data_bytes(),
            elapsed: started.elapsed(),
        })
    }

    /// One chunk into `file` at `off`, checked. A damaged cached copy is
    /// dropped and the chunk fetched from the store instead; a damaged
    /// chunk in the store is an error. Returns whether the cache served it.
    async fn fetch_and_write(
        &self,
        hash: &Hash,
        len: usize,
        file: &Arc<File>,
        off: u64,
        dest: &Path,
    ) -> Result<bool> {
        for attempt in 0..2 {
            let (stored, from_cache) = if attempt == 0 {
                self.fetch_chunk(hash).await?
            } else {
                self.cache.remove(hash);
                self.fetch_chunk(hash).await?
            };
            let h = *hash;
            let f = file.clone();
            let path = dest.to_path_buf();
            let cache = self.cache.clone();
            let checked = tokio::task::spawn_blocking(move || {
                let plain = chunk::open(&stored, &h, len)?;
                f.write_all_at(&plain, off)
                    .map_err(|e| ColdError::io("write", &path, e))?;
                if !from_cache {
                    cache.put(&h, &stored);
                }
                Ok::<_, ColdError>(())
            })
            .await
            .map_err(|e| ColdError::Other(format!("chunk task failed: {e}")))?;
            match checked {
                Ok(()) => return Ok(from_cache),
                Err(ColdError::Corrupt { .. }) if from_cache => {
                    tracing::warn!(chunk = %hash, "damaged chunk in the local cache; fetching it again");
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ColdError::Other(format!("chunk {hash} could not be read")))
    }
}

/// The chunks that hold any allocated data (the rest are holes): each
/// chunk's index and the byte ranges of the file within it that are data
/// (`SEEK_DATA`, `SEEK_HOLE`), in order.
type DataChunks = Vec<(u64, Vec<std::ops::Range<u64>>)>;

fn data_chunks(file: &File, size: u64, chunk: u64) -> std::io::Result<DataChunks> {
    let mut out: DataChunks = Vec::new();
    let mut off: i64 = 0;
    let size = size as i64;
    while off < size {
        let start = match lseek(file.as_raw_fd(), off, Whence::SeekData) {
            Ok(s) => s,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = match lseek(file.as_raw_fd(), start, Whence::SeekHole) {
            Ok(e) => e.min(size),
            Err(nix::errno::Errno::ENXIO) => size,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            break;
        }
        off = end;
        let (start, end) = (start as u64, end as u64);
        for i in start / chunk..=(end - 1) / chunk {
            let part = start.max(i * chunk)..end.min((i + 1) * chunk);
            match out.last_mut() {
                Some((last, ranges)) if *last == i => ranges.push(part),
                _ => out.push((i, vec![part])),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod data_tests {
    use std::os::unix::fs::FileExt;

    use super::data_chunks;

    /// The data ranges found are the blocks written, cut at chunk edges.
    #[test]
    fn data_ranges_are_cut_at_chunk_edges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("img");
        let f = std::fs::File::create(&path).expect("create");
        let chunk = 64 * 1024;
        f.set_len(4 * chunk).expect("set_len");
        let block = vec![7u8; 4096];
        f.write_all_at(&block, 4096).expect("write");
        f.write_all_at(&[block.clone(), block.clone()].concat(), 2 * chunk - 4096)
            .expect("write");
        f.sync_all().expect("sync");
        let found: Vec<(u64, Vec<(u64, u64)>)> = data_chunks(&f, 4 * chunk, chunk)
            .expect("scan")
            .into_iter()
            .map(|(i, ranges)| (i, ranges.iter().map(|r| (r.start, r.end)).collect()))
            .collect();
        assert_eq!(
            found,
            vec![
                (0, vec![(4096, 8192)]),
                (1, vec![(2 * chunk - 4096, 2 * chunk)]),
                (2, vec![(2 * chunk, 2 * chunk + 4096)]),
            ]
        );
    }
}
