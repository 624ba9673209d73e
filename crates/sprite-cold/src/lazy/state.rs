//! The state file of a lazily rebuilt image: which chunks are already in the
//! local backing file, so that a restart neither fetches a chunk again over
//! what the sprite wrote into it, nor trusts a chunk whose bytes never
//! reached the disk.
//!
//! It holds two bitmaps, one bit per chunk of the image:
//! - *live*: a bit is written (not synced) once the chunk's bytes are in the
//!   backing file and before any write of the sprite into the chunk is
//!   acknowledged. After a crash of the daemon alone the page cache still
//!   holds both files, so these bits are exact.
//! - *durable*: the live bits as they were when the backing file was last
//!   fdatasync'd, written and synced after that sync. After a crash of the
//!   host only these are trusted: a chunk fetched since the last sync may
//!   have lost its bytes, and since no flush of the sprite came after it,
//!   neither did any write of the sprite into it; fetching it again shows
//!   what a disk with a volatile write cache would show.
//!
//! The header names the boot (the kernel's `boot_id`) the live bits belong
//! to, and the image (a hash of its manifest) the file describes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{ColdError, Result};
use crate::manifest::Manifest;

const MAGIC: &[u8; 8] = b"SPRLAZY1";
const HEADER: u64 = 128;
const IMAGE_AT: usize = 16;
const BOOT_AT: usize = 48;
const BOOT_LEN: usize = 36;

pub(crate) struct StateFile {
    path: PathBuf,
    file: File,
    chunks: u64,
    live: Mutex<Vec<u8>>,
}

/// The kernel's id of this boot: live bits from another boot are stale.
pub(crate) fn boot_id() -> Result<String> {
    let p = Path::new("/proc/sys/kernel/random/boot_id");
    let s = std::fs::read_to_string(p).map_err(|e| ColdError::io("read", p, e))?;
    Ok(s.trim().to_string())
}

/// What ties a state file to one image version.
pub(crate) fn image_id(m: &Manifest) -> Result<[u8; 32]> {
    let bytes =
        serde_json::to_vec(m).map_err(|e| ColdError::Other(format!("encoding a manifest: {e}")))?;
    Ok(*blake3::hash(&bytes).as_bytes())
}

fn header(chunks: u64, image: &[u8; 32], boot: &str) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&chunks.to_le_bytes());
    h[IMAGE_AT..IMAGE_AT + 32].copy_from_slice(image);
    let b = boot.as_bytes();
    let n = b.len().min(BOOT_LEN);
    h[BOOT_AT..BOOT_AT + n].copy_from_slice(&b[..n]);
    h
}

fn bitmap_len(chunks: u64) -> u64 {
    chunks.div_ceil(8)
}

pub(crate) fn sync_dir_of(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ColdError::io("fsync", dir, e))
}

impl StateFile {
    /// A new state file with no chunk local, made durable (written aside,
    /// synced, renamed into place).
    pub(crate) fn create(
        path: &Path,
        image: &[u8; 32],
        chunks: u64,
        boot: &str,
    ) -> Result<StateFile> {
        let tmp = path.with_extension("tmp");
        let mut bytes = header(chunks, image, boot).to_vec();
        bytes.resize((HEADER + 2 * bitmap_len(chunks)) as usize, 0);
        let write = || -> std::io::Result<()> {
            let f = File::create(&tmp)?;
            f.write_all_at(&bytes, 0)?;
            f.sync_all()
        };
        write().map_err(|e| ColdError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| ColdError::io("rename", path, e))?;
        sync_dir_of(path)?;
        Self::open(path, image, chunks, boot)
    }

    /// Opens the state file at `path`, which must describe `image`. Live
    /// bits written in another boot are replaced by the durable ones.
    pub(crate) fn open(
        path: &Path,
        image: &[u8; 32],
        chunks: u64,
        boot: &str,
    ) -> Result<StateFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| ColdError::io("open", path, e))?;
        let bits = bitmap_len(chunks);
        let mut bytes = vec![0u8; (HEADER + 2 * bits) as usize];
        let bad = |why: &str| ColdError::Other(format!("state file {}: {why}", path.display()));
        let len = file
            .metadata()
            .map_err(|e| ColdError::io("stat", path, e))?
            .len();
        if len != bytes.len() as u64 {
            return Err(bad(&format!("{len} bytes where {} belong", bytes.len())));
        }
        file.read_exact_at(&mut bytes, 0)
            .map_err(|e| ColdError::io("read", path, e))?;
        let want = header(chunks, image, boot);
        if bytes[..8] != want[..8] {
            return Err(bad("not a state file"));
        }
        if bytes[8..BOOT_AT] != want[8..BOOT_AT] {
            return Err(bad("it describes another image"));
        }
        let (live_at, durable_at) = (HEADER as usize, (HEADER + bits) as usize);
        let same_boot = bytes[BOOT_AT..BOOT_AT + BOOT_LEN] == want[BOOT_AT..BOOT_AT + BOOT_LEN];
        let live = if same_boot {
            bytes[live_at..durable_at].to_vec()
        } else {
            // The host restarted: only what was synced counts. Recorded
            // before anything new is marked, so a crash in between is safe.
            let durable = bytes[durable_at..].to_vec();
            let mut fresh = want.to_vec();
            fresh.extend_from_slice(&durable);
            file.write_all_at(&fresh, 0)
                .and_then(|()| file.sync_data())
                .map_err(|e| ColdError::io("write", path, e))?;
            durable
        };
        Ok(StateFile {
            path: path.to_path_buf(),
            file,
            chunks,
            live: Mutex::new(live),
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_set(&self, i: u64) -> bool {
        let live = self.live();
        live.get((i / 8) as usize)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Marks chunk `i` local (its bytes are in the backing file).
    pub(crate) fn set(&self, i: u64) -> Result<()> {
        if i >= self.chunks {
            return Err(ColdError::Other(format!("chunk {i} out of range")));
        }
        let mut live = self.live();
        let at = (i / 8) as usize;
        let mut byte = live[at];
        byte |= 1 << (i % 8);
        // Written under the lock, so bytes reach the file in the order they change.
        self.file
            .write_all_at(&[byte], HEADER + at as u64)
            .map_err(|e| ColdError::io("write", &self.path, e))?;
        live[at] = byte;
        Ok(())
    }

    /// The live bits now: what a sync of the backing file started after
    /// this call makes durable.
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        self.live().clone()
    }

    /// Records `snapshot` as durable. Only after the backing file was synced.
    pub(crate) fn commit(&self, snapshot: &[u8]) -> Result<()> {
        self.file
            .write_all_at(snapshot, HEADER + bitmap_len(self.chunks))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| ColdError::io("write", &self.path, e))
    }

    /// Deletes the file, durably: the image is whole.
    pub(crate) fn remove(&self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| ColdError::io("remove", &self.path, e))?;
        sync_dir_of(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT_A: &str = "11111111-1111-1111-1111-111111111111";
    const BOOT_B: &str = "22222222-2222-2222-2222-222222222222";

    #[test]
    fn live_bits_count_within_a_boot_and_durable_ones_after_a_reboot() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        let image = [7u8; 32];
        let s = StateFile::create(&p, &image, 20, BOOT_A).unwrap();
        s.set(0).unwrap();
        s.set(9).unwrap();
        let snap = s.snapshot();
        s.commit(&snap).unwrap();
        s.set(19).unwrap();
        assert!(s.is_set(0) && s.is_set(9) && s.is_set(19) && !s.is_set(1));
        assert!(s.set(20).is_err());
        drop(s);

        // The daemon restarted, the host did not: every live bit holds.
        let s = StateFile::open(&p, &image, 20, BOOT_A).unwrap();
        assert!(s.is_set(0) && s.is_set(9) && s.is_set(19));
        drop(s);

        // The host restarted: chunk 19 was never synced, so it is fetched again.
        let s = StateFile::open(&p, &image, 20, BOOT_B).unwrap();
        assert!(s.is_set(0) && s.is_set(9) && !s.is_set(19));
        s.set(3).unwrap();
        drop(s);
        // ...and the file now belongs to the new boot.
        let s = StateFile::open(&p, &image, 20, BOOT_B).unwrap();
        assert!(s.is_set(3) && !s.is_set(19));

        // Another image, or another size, is refused.
        assert!(StateFile::open(&p, &[8u8; 32], 20, BOOT_B).is_err());
        assert!(StateFile::open(&p, &image, 21, BOOT_B).is_err());

        s.remove().unwrap();
        assert!(!p.exists());
    }
}
