//! What a sprite holds on the pool's disk: the blocks of its volume and of
//! its checkpoints, each block counted once however many of them share it
//! (reflinks share extents), read with FIEMAP.

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

/// The extents of `file` as `(physical, length)`, and the bytes of those
/// without a place on disk yet.
fn extents(file: &File, path: &Path, out: &mut Vec<(u64, u64)>) -> Result<u64> {
    let mut unplaced = 0;
    let mut start = 0u64;
    loop {
        let mut map = Box::new(Fiemap {
            start,
            length: u64::MAX - start,
            flags: 0,
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
            return Ok(unplaced);
        }
        for e in &map.extents[..n] {
            if e.flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC) != 0 {
                unplaced += e.length;
            } else {
                out.push((e.physical, e.length));
            }
        }
        let last = map.extents[n - 1];
        if last.flags & FIEMAP_EXTENT_LAST != 0 {
            return Ok(unplaced);
        }
        start = last.logical.saturating_add(last.length);
    }
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
        let mut ranges = Vec::new();
        let mut unplaced = 0;
        for path in files {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx("open", &path),
            };
            unplaced += extents(&file, &path, &mut ranges)?;
        }
        Ok(union_bytes(ranges) + unplaced)
    }
}

#[cfg(test)]
mod tests {
    use super::union_bytes;

    #[test]
    fn shared_ranges_count_once() {
        assert_eq!(union_bytes(vec![]), 0);
        assert_eq!(union_bytes(vec![(0, 10), (0, 10)]), 10);
        assert_eq!(union_bytes(vec![(0, 10), (5, 10), (30, 5)]), 20);
        assert_eq!(union_bytes(vec![(30, 5), (0, 10), (10, 10)]), 25);
    }
}
