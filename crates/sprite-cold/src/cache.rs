//! The local hot cache: compressed chunks as files under one directory,
//! at most `cap` bytes of them, the least recently used removed first.
//!
//! The cache is only ever a copy: anything in it is also in the store, and
//! everything read from it is checked against its hash like a chunk from
//! the store. So losing it, or a damaged file in it, costs a refetch.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::chunk::Hash;
use crate::error::{ColdError, Result};

pub struct ChunkCache {
    dir: PathBuf,
    cap: u64,
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    /// hash → (stored bytes, last use)
    entries: HashMap<Hash, (u64, u64)>,
    /// last use → hash, oldest first
    by_use: BTreeMap<u64, Hash>,
    total: u64,
    clock: u64,
}

impl Index {
    fn touch(&mut self, h: Hash) -> bool {
        let Some((_, used)) = self.entries.get_mut(&h) else {
            return false;
        };
        self.by_use.remove(used);
        self.clock += 1;
        *used = self.clock;
        self.by_use.insert(self.clock, h);
        true
    }

    fn insert(&mut self, h: Hash, size: u64) {
        if self.touch(h) {
            return;
        }
        self.clock += 1;
        self.entries.insert(h, (size, self.clock));
        self.by_use.insert(self.clock, h);
        self.total += size;
    }

    fn remove(&mut self, h: &Hash) {
        if let Some((size, used)) = self.entries.remove(h) {
            self.by_use.remove(&used);
            self.total -= size;
        }
    }
}

impl ChunkCache {
    /// Opens (or makes) the cache in `dir`, learning what is already there,
    /// oldest first by modification time. `cap` 0 disables it.
    pub fn open(dir: &Path, cap: u64) -> Result<ChunkCache> {
        std::fs::create_dir_all(dir).map_err(|e| ColdError::io("mkdir", dir, e))?;
        let mut found = Vec::new();
        for sub in std::fs::read_dir(dir).map_err(|e| ColdError::io("read_dir", dir, e))? {
            let sub = sub.map_err(|e| ColdError::io("read_dir", dir, e))?.path();
            if !sub.is_dir() {
                continue;
            }
            let entries =
                std::fs::read_dir(&sub).map_err(|e| ColdError::io("read_dir", &sub, e))?;
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(meta) = e.metadata() else { continue };
                match Hash::from_hex(&name) {
                    Ok(h) => found.push((meta.modified().ok(), h, meta.len())),
                    // Left over from a write cut short.
                    Err(_) => {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        found.sort_by_key(|(t, _, _)| *t);
        let mut index = Index::default();
        for (_, h, size) in found {
            index.insert(h, size);
        }
        let cache = ChunkCache {
            dir: dir.to_path_buf(),
            cap,
            index: Mutex::new(index),
        };
        cache.shrink(0);
        Ok(cache)
    }

    fn path(&self, h: &Hash) -> PathBuf {
        let hex = h.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored bytes of chunk `h`, if cached.
    pub fn get(&self, h: &Hash) -> Option<Vec<u8>> {
        if !self.lock().touch(*h) {
            return None;
        }
        match std::fs::read(self.path(h)) {
            Ok(b) => Some(b),
            Err(_) => {
                self.lock().remove(h);
                None
            }
        }
    }

    /// Keeps a copy of chunk `h`'s stored bytes, making room first.
    pub fn put(&self, h: &Hash, stored: &[u8]) {
        let size = stored.len() as u64;
        if self.cap == 0 || size > self.cap || self.lock().entries.contains_key(h) {
            return;
        }
        self.shrink(size);
        let path = self.path(h);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, stored)?;
            std::fs::rename(&tmp, &path)
        };
        match write() {
            Ok(()) => self.lock().insert(*h, size),
            Err(e) => tracing::debug!(error = %e, "caching a chunk failed"),
        }
    }

    /// Forgets chunk `h` (deleted from the store, or found damaged).
    pub fn remove(&self, h: &Hash) {
        self.lock().remove(h);
        let _ = std::fs::remove_file(self.path(h));
    }

    /// Removes least recently used chunks until `room` more bytes fit.
    fn shrink(&self, room: u64) {
        loop {
            let victim = {
                let mut ix = self.lock();
                if ix.total + room <= self.cap {
                    return;
                }
                let Some((_, h)) = ix.by_use.iter().next().map(|(k, h)| (*k, *h)) else {
                    return;
                };
                ix.remove(&h);
                h
            };
            let _ = std::fs::remove_file(self.path(&victim));
        }
    }

    /// Bytes cached now.
    pub fn bytes(&self) -> u64 {
        self.lock().total
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, h: &Hash) -> bool {
        self.lock().entries.contains_key(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first_and_the_cap_holds() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 300).unwrap();
        let [a, b, c, d] = [b"a", b"b", b"c", b"d"].map(|x| Hash::of(x));
        cache.put(&a, &[1; 100]);
        cache.put(&b, &[2; 100]);
        cache.put(&c, &[3; 100]);
        assert_eq!(cache.bytes(), 300);
        // a is used, so b is now the oldest.
        assert_eq!(cache.get(&a).unwrap(), vec![1; 100]);
        cache.put(&d, &[4; 100]);
        assert_eq!(cache.bytes(), 300);
        assert!(cache.get(&b).is_none(), "b was least recently used");
        assert!(cache.contains(&a) && cache.contains(&c) && cache.contains(&d));
        assert!(!dir.path().join(&b.to_hex()[..2]).join(b.to_hex()).exists());

        // Reopened, it knows its files and still keeps to a (smaller) cap.
        drop(cache);
        let again = ChunkCache::open(dir.path(), 150).unwrap();
        assert_eq!(again.len(), 1);
        assert!(again.bytes() <= 150);

        // Too big for the cap: not cached at all.
        again.put(&Hash::of(b"big"), &[0; 151]);
        assert!(!again.contains(&Hash::of(b"big")));

        // A file removed behind its back is a miss, not an error.
        let left = [a, c, d].into_iter().find(|h| again.contains(h)).unwrap();
        again.remove(&left);
        assert!(again.get(&left).is_none());
        assert!(again.is_empty());
    }

    #[test]
    fn a_zero_cap_caches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 0).unwrap();
        cache.put(&Hash::of(b"a"), b"x");
        assert!(cache.is_empty());
    }
}
