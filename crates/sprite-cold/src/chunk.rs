//! One chunk: its hash, its stored (compressed) form, and the check made on
//! every read.

use crate::error::{ColdError, Result};

/// Bytes per chunk. Small enough that a sprite's small changes cost little
/// (ext4 scatters a change over a few blocks: bitmaps, inode table, journal,
/// data), large enough that a GiB is a thousand objects, not a million.
pub const CHUNK_SIZE: u64 = 1 << 20;

/// zstd level: 1 compresses text and binaries well at several hundred MB/s
/// per core, and gives up quickly on incompressible data.
const ZSTD_LEVEL: i32 = 1;

/// BLAKE3 of a chunk's plain bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(data: &[u8]) -> Hash {
        Hash(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn from_hex(s: &str) -> Result<Hash> {
        blake3::Hash::from_hex(s)
            .map(|h| Hash(*h.as_bytes()))
            .map_err(|e| ColdError::Corrupt {
                what: format!("chunk name {s:?}"),
                why: e.to_string(),
            })
    }

    /// Where the chunk lives in the store: `chunks/ab/abcd...`.
    pub fn key(&self) -> String {
        let hex = self.to_hex();
        format!("chunks/{}/{hex}", &hex[..2])
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The stored form of a chunk.
pub(crate) fn compress(data: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::compress(data, ZSTD_LEVEL)
        .map_err(|e| ColdError::Other(format!("compressing a chunk: {e}")))
}

/// A stored chunk back to its bytes, checked: its length must be `len` and
/// its hash `hash`.
pub(crate) fn open(stored: &[u8], hash: &Hash, len: usize) -> Result<Vec<u8>> {
    let corrupt = |why: String| ColdError::Corrupt {
        what: format!("chunk {hash}"),
        why,
    };
    // One byte of room more than expected, so a longer chunk is noticed
    // rather than cut to size.
    let plain = zstd::bulk::decompress(stored, len + 1)
        .map_err(|e| corrupt(format!("does not decompress: {e}")))?;
    if plain.len() != len {
        return Err(corrupt(format!(
            "holds {} bytes where {len} belong",
            plain.len()
        )));
    }
    let got = Hash::of(&plain);
    if &got != hash {
        return Err(corrupt(format!("its bytes hash to {got}")));
    }
    Ok(plain)
}

pub(crate) fn is_zero(data: &[u8]) -> bool {
    // Compare in words; the tail byte by byte.
    let (head, words, tail) = {
        // SAFETY: u64 has no invalid bit patterns and align_to only yields a
        // correctly aligned middle slice within `data`.
        unsafe { data.align_to::<u64>() }
    };
    head.iter().all(|b| *b == 0) && words.iter().all(|w| *w == 0) && tail.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_round_trips_and_damage_is_caught() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let h = Hash::of(&data);
        let stored = compress(&data).unwrap();
        assert!(
            stored.len() < data.len() / 10,
            "compressible data compresses"
        );
        assert_eq!(open(&stored, &h, data.len()).unwrap(), data);

        // Wrong length expected, wrong hash, flipped byte, truncated frame.
        assert!(matches!(
            open(&stored, &h, data.len() - 1),
            Err(ColdError::Corrupt { .. })
        ));
        let other = Hash::of(b"other");
        assert!(matches!(
            open(&stored, &other, data.len()),
            Err(ColdError::Corrupt { .. })
        ));
        let mut flipped = stored.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x40;
        assert!(open(&flipped, &h, data.len()).is_err());
        assert!(matches!(
            open(&stored[..stored.len() / 2], &h, data.len()),
            Err(ColdError::Corrupt { .. })
        ));
    }

    #[test]
    fn hashes_name_their_keys() {
        let h = Hash::of(b"x");
        let hex = h.to_hex();
        assert_eq!(h.key(), format!("chunks/{}/{hex}", &hex[..2]));
        assert_eq!(Hash::from_hex(&hex).unwrap(), h);
        assert!(Hash::from_hex("zz").is_err());
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 4099]));
        let mut v = vec![0u8; 4099];
        v[4098] = 1;
        assert!(!is_zero(&v));
        v[4098] = 0;
        v[1] = 1;
        assert!(!is_zero(&v));
        assert!(is_zero(&[]));
    }
}
