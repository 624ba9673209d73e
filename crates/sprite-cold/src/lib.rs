//! The cold tier: a sprite's volume and checkpoint images kept in object
//! storage (a local folder, or any S3-compatible store) while the sprite is
//! evicted from local disk.
//!
//! An image is cut into fixed-size chunks. Each chunk is stored once, under
//! the BLAKE3 hash of its plain bytes, zstd-compressed; holes and all-zero
//! chunks are not stored at all. A [`Manifest`] lists the chunks of one
//! image version. So identical chunks across sprites, checkpoints and
//! versions are stored once, and the store holds only what differs.
//!
//! Layout under the store's root (or the `s3://bucket/prefix`):
//! - `chunks/<2 hex>/<64 hex>`: one compressed chunk;
//! - `manifests/<name>.json`: one manifest, written after its chunks are durable;
//! - anything else callers put with [`ColdStore::put_doc`] (e.g. `meta/...`).
//!
//! Every chunk read is decompressed and checked against its hash and
//! length; a mismatch is [`ColdError::Corrupt`], never silent corruption.
//! A local [`cache::ChunkCache`] of compressed chunks (size cap, least
//! recently used out first) spares refetching what was seen lately.
//!
//! A [`LazyImage`] wakes a sprite without waiting for its whole volume: the
//! image is served through FUSE while its chunks are fetched as they are
//! touched, and in the background (see [`lazy`]).

pub mod cache;
mod chunk;
mod error;
mod image;
pub mod lazy;
mod manifest;
mod store;

pub use cache::ChunkCache;
pub use chunk::{Hash, CHUNK_SIZE};
pub use error::{ColdError, Result};
pub use image::{DownloadStats, Progress, UploadStats};
pub use lazy::{LazyImage, LazyOptions};
pub use manifest::{ChunkRef, Manifest};
pub use store::{ColdStore, StoreOptions};
