//! A manifest: the chunks that make up one version of one image.

use serde::{Deserialize, Serialize};

use crate::chunk::Hash;
use crate::error::{ColdError, Result};

const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The image's apparent size in bytes (holes included).
    pub size: u64,
    pub chunk_size: u64,
    /// Chunks holding data, by index; any index not listed is zeros.
    pub chunks: Vec<ChunkRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Index of the chunk: it starts at `index * chunk_size`.
    #[serde(rename = "i")]
    pub index: u64,
    /// BLAKE3 of its plain bytes, hex.
    #[serde(rename = "h")]
    pub hash: String,
    /// Bytes it takes in the store (compressed).
    #[serde(rename = "z")]
    pub stored: u64,
}

impl Manifest {
    pub(crate) fn new(size: u64, chunk_size: u64, mut chunks: Vec<ChunkRef>) -> Manifest {
        chunks.sort_by_key(|c| c.index);
        Manifest {
            format: FORMAT,
            size,
            chunk_size,
            chunks,
        }
    }

    pub(crate) fn parse(what: &str, bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| ColdError::Corrupt {
            what: format!("manifest {what}"),
            why: e.to_string(),
        })?;
        m.check(what)?;
        Ok(m)
    }

    fn check(&self, what: &str) -> Result<()> {
        let bad = |why: String| ColdError::Corrupt {
            what: format!("manifest {what}"),
            why,
        };
        if self.format != FORMAT {
            return Err(bad(format!("unknown format {}", self.format)));
        }
        if self.chunk_size == 0 || self.chunk_size > 64 << 20 {
            return Err(bad(format!("chunk size {}", self.chunk_size)));
        }
        let mut last = None;
        for c in &self.chunks {
            if c.index.saturating_mul(self.chunk_size) >= self.size {
                return Err(bad(format!("chunk {} lies past the end", c.index)));
            }
            if last.is_some_and(|l| l >= c.index) {
                return Err(bad(format!("chunk {} is out of order", c.index)));
            }
            last = Some(c.index);
            Hash::from_hex(&c.hash)?;
        }
        Ok(())
    }

    /// Length of chunk `index` (the last one may be short).
    pub fn chunk_len(&self, index: u64) -> usize {
        let start = index * self.chunk_size;
        self.size.saturating_sub(start).min(self.chunk_size) as usize
    }

    /// Bytes of data (non-zero chunks), before compression.
    pub fn data_bytes(&self) -> u64 {
        self.chunks
            .iter()
            .map(|c| self.chunk_len(c.index) as u64)
            .sum()
    }

    /// Bytes its distinct chunks take in the store.
    pub fn stored_bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.chunks
            .iter()
            .filter(|c| seen.insert(c.hash.as_str()))
            .map(|c| c.stored)
            .sum()
    }

    /// The distinct chunk hashes it refers to.
    pub fn hashes(&self) -> Result<Vec<Hash>> {
        let mut v: Vec<Hash> = self
            .chunks
            .iter()
            .map(|c| Hash::from_hex(&c.hash))
            .collect::<Result<_>>()?;
        v.sort();
        v.dedup();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cref(index: u64, data: &[u8]) -> ChunkRef {
        ChunkRef {
            index,
            hash: Hash::of(data).to_hex(),
            stored: 10,
        }
    }

    #[test]
    fn parses_what_it_writes_and_refuses_damage() {
        let m = Manifest::new(
            3 * 1024 + 5,
            1024,
            vec![cref(3, b"b"), cref(0, b"a"), cref(1, b"a")],
        );
        assert_eq!(m.chunks[0].index, 0, "sorted");
        assert_eq!(m.chunk_len(3), 5);
        assert_eq!(m.data_bytes(), 1024 + 1024 + 5);
        assert_eq!(m.stored_bytes(), 20, "a chunk used twice is stored once");
        assert_eq!(m.hashes().unwrap().len(), 2);
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(Manifest::parse("t", &bytes).unwrap(), m);

        assert!(Manifest::parse("t", &bytes[..bytes.len() - 3]).is_err());
        let mut past = m.clone();
        past.chunks.push(cref(4, b"c"));
        assert!(Manifest::parse("t", &serde_json::to_vec(&past).unwrap()).is_err());
        let mut dup = m.clone();
        dup.chunks[1].index = 0;
        assert!(Manifest::parse("t", &serde_json::to_vec(&dup).unwrap()).is_err());
        let mut badhash = m;
        badhash.chunks[0].hash = "nothex".into();
        assert!(Manifest::parse("t", &serde_json::to_vec(&badhash).unwrap()).is_err());
    }
}
