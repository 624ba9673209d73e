//! What a sprite holds on the pool's disk: the blocks of its volume and of
//! its checkpoints, each block counted once however many of them share it
//! (reflinks share extents), read with FIEMAP.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{IoContext, Result, StoreError};
use crate::store::Store;
use crate::validate_name;

/// `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// The extent has no place on disk yet (delayed allocation) or one that
/// cannot be told: its length is counted as the file's own.
const FIEMAP_EXTENT_UNKNOWN: u32 = 0x2;
const FIEMAP_EXTENT_DELALLOC: u32 = 0x4;
/// Extents asked for per call.
const BATCH: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

/// `struct fiemap` followed by room for [`BATCH`] extents.
#[repr(C)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [FiemapExtent; BATCH],
}

/// `FIEMAP_FLAG_SYNC`: write the file's dirty pages back before mapping.
const FIEMAP_FLAG_SYNC: u32 = 0x1;

/// One mapped piece of a file: its place in the file and on disk.
/// `placed` is false when the filesystem cannot tell where it lies
/// (delayed allocation, unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    logical: u64,
    physical: u64,
    length: u64,
    placed: bool,
}

/// The extents of `file` as `(physical, length)`, and the bytes of those
/// without a place on disk yet.
fn extents(file: &File, path: &Path, out: &mut Vec<(u64, u64)>) -> Result<u64> {
    let mut unplaced = 0;
    for p in pieces(file, path, false)? {
        if p.placed {
            out.push((p.physical, p.length));
        } else {
            unplaced += p.length;
        }
    }
    Ok(unplaced)
}

/// Every mapped piece of `file`, in file order; with `sync`, its dirty
/// pages are written back first so that every piece has its place.
fn pieces(file: &File, path: &Path, sync: bool) -> Result<Vec<Piece>> {
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut map = Box::new(Fiemap {
            start,
            length: u64::MAX - start,
            flags: if sync && start == 0 {
                FIEMAP_FLAG_SYNC
            } else {
                0
            },
            mapped_extents: 0,
            extent_count: BATCH as u32,
            reserved: 0,
            extents: [FiemapExtent::default(); BATCH],
        });
        // SAFETY: FS_IOC_FIEMAP reads the header and writes at most
        // `extent_count` extents into the array that follows it; `map` is a
        // live, exclusively borrowed allocation of exactly that layout
        // (`#[repr(C)]`, as the kernel's `struct fiemap`), and `file` is open
        // for the whole call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut *map as *mut Fiemap) };
        if r < 0 {
            return Err(StoreError::io(
                "FIEMAP",
                path,
                std::io::Error::last_os_error(),
            ));
        }
        let n = (map.mapped_extents as usize).min(BATCH);
        if n == 0 {
            return Ok(out);
        }
        for e in &map.extents[..n] {
            out.push(Piece {
                logical: e.logical,
                physical: e.physical,
                length: e.length,
                placed: e.flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC) == 0,
            });
        }
        let last = map.extents[n - 1];
        if last.flags & FIEMAP_EXTENT_LAST != 0 {
            return Ok(out);
        }
        start = last.logical.saturating_add(last.length);
    }
}

/// Where one chunk's bytes lie: (offset in the chunk, disk address, length).
type ChunkMap = Vec<(u64, u64, u64)>;

/// What each `chunk`-byte chunk of a file maps to: its pieces, cut at the
/// chunk's edges, as (offset in the chunk, disk address, length). A chunk
/// with a piece of unknown place is marked so (`None`).
fn chunk_maps(pieces: &[Piece], chunk: u64) -> BTreeMap<u64, Option<ChunkMap>> {
    let mut maps: BTreeMap<u64, Option<ChunkMap>> = BTreeMap::new();
    for p in pieces {
        let end = p.logical.saturating_add(p.length);
        let mut at = p.logical;
        while at < end {
            let index = at / chunk;
            let chunk_end = (index + 1).saturating_mul(chunk).min(end);
            let entry = maps.entry(index).or_insert_with(|| Some(Vec::new()));
            match entry {
                Some(v) if p.placed => v.push((
                    at - index * chunk,
                    p.physical + (at - p.logical),
                    chunk_end - at,
                )),
                _ => *entry = None,
            }
            at = chunk_end;
        }
    }
    maps
}

/// Indexes of the `chunk`-byte chunks of `new` that may hold other bytes
/// than the same chunk of `old`, in order. On a reflink filesystem a block
/// two files share is never written in place (a write gives the writer a
/// new block), so a chunk mapped to exactly the same disk blocks in both
/// files holds the same bytes; every other chunk (moved, new, gone, or of
/// unknown place) is listed. `new`'s dirty pages are written back first.
pub fn changed_chunks(old: &Path, new: &Path, chunk: u64) -> Result<Vec<u64>> {
    let old_file = File::open(old).ctx("open", old)?;
    let new_file = File::open(new).ctx("open", new)?;
    let before = chunk_maps(&pieces(&old_file, old, false)?, chunk);
    let after = chunk_maps(&pieces(&new_file, new, true)?, chunk);
    let mut changed: Vec<u64> = before
        .keys()
        .chain(after.keys())
        .copied()
        .filter(|i| match (before.get(i), after.get(i)) {
            (Some(Some(a)), Some(Some(b))) => a != b,
            _ => true,
        })
        .collect();
    changed.sort_unstable();
    changed.dedup();
    Ok(changed)
}

/// Bytes covered by `(start, length)` ranges, overlaps counted once.
fn union_bytes(mut ranges: Vec<(u64, u64)>) -> u64 {
    ranges.sort_unstable();
    let mut total = 0u64;
    let mut current: Option<(u64, u64)> = None;
    for (start, len) in ranges {
        let end = start.saturating_add(len);
        match current {
            Some((s, e)) if start <= e => current = Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                current = Some((start, end));
            }
            None => current = Some((start, end)),
        }
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    total
}

impl Store {
    /// Bytes the sprite's volume and checkpoints hold on the pool's disk,
    /// blocks they share counted once. An evicted sprite's volume (not
    /// here) counts nothing.
    pub fn footprint(&self, id: &str) -> Result<u64> {
        validate_name(id)?;
        self.footprint_of(&self.footprint_files(id))
    }

    /// [`Store::footprint`] when it reaches `limit`; `None` when it stays
    /// under. The same files' allocated sizes added up (shared blocks
    /// counted in each) bound it from above, from one `stat` each: their
    /// extents are read only when that bound reaches the limit (a quota
    /// checked at every checkpoint, whose FIEMAPs grow with the number of
    /// checkpoints).
    pub fn footprint_reaching(&self, id: &str, limit: u64) -> Result<Option<u64>> {
        use std::os::unix::fs::MetadataExt;
        validate_name(id)?;
        let files = self.footprint_files(id);
        let mut bound = 0u64;
        for path in &files {
            match std::fs::metadata(path) {
                Ok(m) => bound = bound.saturating_add(m.blocks().saturating_mul(512)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).ctx("stat", path),
            }
        }
        if bound < limit {
            return Ok(None);
        }
        let held = self.footprint_of(&files)?;
        Ok((held >= limit).then_some(held))
    }

    /// The volume's image and every checkpoint image of the sprite.
    fn footprint_files(&self, id: &str) -> Vec<std::path::PathBuf> {
        let mut files = vec![self.layout.volume_image(id)];
        let dir = self.layout.checkpoints_dir(id);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if !name.starts_with('.') && name.ends_with(".img") {
                    files.push(e.path());
                }
            }
        }
        files
    }

    fn footprint_of(&self, files: &[std::path::PathBuf]) -> Result<u64> {
        let mut ranges = Vec::new();
        let mut unplaced = 0;
        for path in files {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx("open", path),
            };
            unplaced += extents(&file, path, &mut ranges)?;
        }
        Ok(union_bytes(ranges) + unplaced)
    }
}

#[cfg(test)]
mod tests {
    use super::{chunk_maps, union_bytes, Piece};

    fn piece(logical: u64, physical: u64, length: u64) -> Piece {
        Piece {
            logical,
            physical,
            length,
            placed: true,
        }
    }

    #[test]
    fn pieces_are_cut_at_chunk_edges() {
        let maps = chunk_maps(&[piece(5, 100, 20)], 10);
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[&0], Some(vec![(5, 100, 5)]));
        assert_eq!(maps[&1], Some(vec![(0, 105, 10)]));
        assert_eq!(maps[&2], Some(vec![(0, 115, 5)]));
        let unplaced = Piece {
            placed: false,
            ..piece(12, 0, 3)
        };
        let maps = chunk_maps(&[piece(0, 100, 12), unplaced], 10);
        assert_eq!(maps[&0], Some(vec![(0, 100, 10)]));
        assert_eq!(maps[&1], None);
    }

    #[test]
    fn shared_ranges_count_once() {
        assert_eq!(union_bytes(vec![]), 0);
        assert_eq!(union_bytes(vec![(0, 10), (0, 10)]), 10);
        assert_eq!(union_bytes(vec![(0, 10), (5, 10), (30, 5)]), 20);
        assert_eq!(union_bytes(vec![(30, 5), (0, 10), (10, 10)]), 25);
    }
}
