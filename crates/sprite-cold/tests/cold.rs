//! The cold tier against real stores: a local folder, and a real
//! S3-compatible server (moto, started on loopback by each test).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use sprite_cold::{ColdError, ColdStore, Hash, StoreOptions, CHUNK_SIZE};
use sprites_test_support::free_port;
use sprites_test_support::s3::Moto;

fn opts(url: String, cache: &Path, cache_bytes: u64) -> StoreOptions {
    StoreOptions {
        url,
        cache_dir: cache.to_path_buf(),
        cache_bytes,
        concurrency: 8,
        request_timeout: Duration::from_secs(5),
    }
}

/// A sparse test image: `size` bytes, with the given chunks filled by a
/// pattern of `seed` (and one chunk of zeros written for real).
fn make_image(path: &Path, size: u64, filled: &[u64], seed: u8) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for &i in filled {
        let len = (size - i * CHUNK_SIZE).min(CHUNK_SIZE) as usize;
        let buf: Vec<u8> = (0..len)
            .map(|j| {
                (j as u8)
                    .wrapping_mul(31)
                    .wrapping_add(seed)
                    .wrapping_add(i as u8)
            })
            .collect();
        f.write_all_at(&buf, i * CHUNK_SIZE).unwrap();
    }
    // Allocated but zero: must not be stored.
    f.write_all_at(&vec![0u8; CHUNK_SIZE as usize], 5 * CHUNK_SIZE)
        .unwrap();
}

/// A store in folder `store` under `dir`, its cache in `cache` there.
fn folder_store(dir: &Path, cache_bytes: u64) -> ColdStore {
    ColdStore::open(&opts(
        format!("file://{}", dir.join("store").display()),
        &dir.join("cache"),
        cache_bytes,
    ))
    .unwrap()
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Upload, dedup, download, damage and garbage collection, on one store.
async fn exercise(store: &ColdStore, work: &Path) {
    let size = 16 * CHUNK_SIZE + 4096; // a short last chunk
    let a = work.join("a.img");
    make_image(&a, size, &[0, 1, 7, 16], 1);

    let up = store
        .upload_image(&a, "sprites/a/volume", None)
        .await
        .unwrap();
    assert_eq!(up.chunks, 4, "holes and the zero chunk are not stored");
    assert_eq!(up.chunks_sent, 4);
    assert_eq!(up.manifest.size, size);

    // The same image again: nothing new goes over.
    let again = store.upload_image(&a, "sprites/a/v0", None).await.unwrap();
    assert_eq!(again.chunks_sent, 0, "identical chunks are stored once");

    // A second image sharing three chunks: only the changed one is sent.
    let b = work.join("b.img");
    std::fs::copy(&a, &b).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .unwrap()
        .write_all_at(b"changed", 7 * CHUNK_SIZE + 10)
        .unwrap();
    let ub = store
        .upload_image(&b, "sprites/b/volume", None)
        .await
        .unwrap();
    assert_eq!(ub.chunks_sent, 1);

    // Back again, byte for byte, from the manifest alone.
    let m = store.get_manifest("sprites/b/volume").await.unwrap();
    let out = work.join("b.out");
    let down = store.download_image(&m, &out, None).await.unwrap();
    assert_eq!(down.chunks, 4);
    assert!(same_bytes(&b, &out), "the image comes back whole");
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.len(), size);
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 6 * CHUNK_SIZE,
        "what was a hole stays a hole"
    );
    assert_eq!(
        store.list_manifests("sprites/").await.unwrap(),
        vec!["sprites/a/v0", "sprites/a/volume", "sprites/b/volume"]
    );

    // A damaged chunk is found, never written out as data.
    let victim = Hash::from_hex(&m.chunks[1].hash).unwrap();
    store
        .overwrite_chunk_for_test(&victim, zstd::bulk::compress(b"something else", 1).unwrap())
        .await
        .unwrap();
    let err = store
        .download_image(&m, &work.join("bad.out"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ColdError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&victim.to_hex()), "{err}");
    // Truncated, too.
    store
        .overwrite_chunk_for_test(&victim, b"\x28\xb5\x2f".to_vec())
        .await
        .unwrap();
    let err = store
        .download_image(&m, &work.join("bad.out"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ColdError::Corrupt { .. }), "{err}");

    // Garbage: nothing is collected while manifests name it...
    let (n, _) = store.collect_garbage().await.unwrap();
    assert_eq!(n, 0);
    // ...and b's own chunk goes with b's manifest.
    let (before, count_before) = store.chunk_usage().await.unwrap();
    store.delete_manifest("sprites/b/volume").await.unwrap();
    let (n, freed) = store.collect_garbage().await.unwrap();
    assert_eq!(n, 1);
    let (after, count_after) = store.chunk_usage().await.unwrap();
    assert_eq!(count_after, count_before - 1);
    assert_eq!(after, before - freed);

    // A missing manifest is NotFound, not a store failure.
    let err = store.get_manifest("sprites/none/volume").await.unwrap_err();
    assert!(matches!(err, ColdError::NotFound { .. }), "{err}");
    assert!(!store.has_manifest("sprites/none/volume").await.unwrap());
}

#[test]
fn a_local_folder_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = folder_store(dir.path(), 0);
    rt().block_on(exercise(&store, dir.path()));
    assert!(dir.path().join("store/chunks").is_dir());
    assert!(dir
        .path()
        .join("store/manifests/sprites/a/volume.json")
        .is_file());
}

/// Chunks holding a little data among holes (what most chunks of a new
/// volume are: a few blocks of ext4 metadata), and data across a chunk's
/// edge: only the data is read, and the image comes back byte for byte.
#[test]
fn data_among_holes_comes_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = folder_store(dir.path(), 0);
    let img = dir.path().join("sparse.img");
    let size = 8 * CHUNK_SIZE;
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(size).unwrap();
    let block = |seed: u8| -> Vec<u8> { (0..4096u32).map(|j| (j as u8) ^ seed | 1).collect() };
    // A block at the start, one in the middle, one at the end of chunk 1;
    // 12 KiB across the edge of chunks 3 and 4; the image's last block.
    for (at, seed) in [
        (CHUNK_SIZE, 1),
        (CHUNK_SIZE + CHUNK_SIZE / 2, 2),
        (2 * CHUNK_SIZE - 4096, 3),
        (4 * CHUNK_SIZE - 8192, 4),
        (4 * CHUNK_SIZE - 4096, 5),
        (4 * CHUNK_SIZE, 6),
        (size - 4096, 7),
    ] {
        f.write_all_at(&block(seed), at).unwrap();
    }
    f.sync_all().unwrap();
    let rt = rt();
    let up = rt
        .block_on(store.upload_image(&img, "sprites/s/volume", None))
        .unwrap();
    assert_eq!(up.chunks, 4, "chunks 1, 3, 4 and 7");
    let out = dir.path().join("sparse.out");
    rt.block_on(store.download_image(&up.manifest, &out, None))
        .unwrap();
    assert!(same_bytes(&img, &out), "the image comes back whole");
}

#[test]
fn the_cache_serves_what_it_holds_and_a_damaged_copy_is_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let store = folder_store(dir.path(), 1 << 30);
    let rt = rt();
    let img = dir.path().join("a.img");
    make_image(&img, 8 * CHUNK_SIZE, &[0, 2, 3], 9);
    let up = rt.block_on(store.upload_image(&img, "x", None)).unwrap();
    assert_eq!(store.cache().len(), 3, "uploaded chunks are cached");
    let out = dir.path().join("out");
    let down = rt
        .block_on(store.download_image(&up.manifest, &out, None))
        .unwrap();
    assert_eq!(down.from_cache, 3);
    assert!(same_bytes(&img, &out));

    // Damage the cached copy of one chunk: the store's copy is used.
    let h = Hash::from_hex(&up.manifest.chunks[0].hash).unwrap();
    let hex = h.to_hex();
    std::fs::write(dir.path().join("cache").join(&hex[..2]).join(&hex), b"junk").unwrap();
    let down = rt
        .block_on(store.download_image(&up.manifest, &out, None))
        .unwrap();
    assert_eq!(down.from_cache, 2);
    assert!(same_bytes(&img, &out));
}

#[test]
fn bad_urls_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["ftp://x", "file://relative", "s3://", "/plain/path"] {
        let err = ColdStore::open(&opts(url.into(), dir.path(), 0)).unwrap_err();
        assert!(matches!(err, ColdError::BadUrl { .. }), "{url}: {err}");
    }
}

// --- S3 --------------------------------------------------------------------

/// Points `object_store` (through the environment) at `moto`.
fn use_moto(moto: &Moto) {
    for (k, v) in moto.env() {
        std::env::set_var(k, v);
    }
}

#[test]
fn an_s3_store_and_an_unreachable_one() {
    let moto = Moto::start("cold");
    use_moto(&moto);
    let dir = tempfile::tempdir().unwrap();
    let store = ColdStore::open(&opts(
        "s3://cold/some/prefix".into(),
        &dir.path().join("cache"),
        0,
    ))
    .unwrap();
    rt().block_on(exercise(&store, dir.path()));

    // Nothing listens: the error says which store and fails in bounded time.
    let closed = free_port();
    std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"));
    let mut o = opts("s3://cold".into(), &dir.path().join("cache2"), 0);
    o.request_timeout = Duration::from_secs(2);
    let down = ColdStore::open(&o).unwrap();
    let img = dir.path().join("u.img");
    make_image(&img, 4 * CHUNK_SIZE, &[0], 3);
    let started = Instant::now();
    let err = rt()
        .block_on(down.upload_image(&img, "u", None))
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("s3://cold"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
