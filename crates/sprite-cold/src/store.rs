//! The object store behind the cold tier, and what is kept in it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::cache::ChunkCache;
use crate::chunk::{self, Hash};
use crate::error::{ColdError, Result};
use crate::manifest::Manifest;

/// How a store is reached.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `file:///path` (a local folder) or `s3://bucket[/prefix]`, with the
    /// usual `AWS_*` environment variables (`AWS_ENDPOINT_URL` or
    /// `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ALLOW_HTTP`).
    pub url: String,
    /// The local hot cache of chunks.
    pub cache_dir: PathBuf,
    pub cache_bytes: u64,
    /// Requests in flight at once during an upload or download.
    pub concurrency: usize,
    /// How long a request to a remote store may take, retries included,
    /// before the store counts as unreachable.
    pub request_timeout: Duration,
}

pub struct ColdStore {
    pub(crate) objects: Arc<dyn ObjectStore>,
    /// The folder of a `file://` store: made durable with syncfs.
    local_root: Option<PathBuf>,
    /// What the store is, for messages (no credentials).
    describe: String,
    pub(crate) cache: Arc<ChunkCache>,
    pub(crate) concurrency: usize,
    /// The longest one request may take, retries included.
    pub(crate) request_timeout: Duration,
    /// Chunks known to be in the store (put or seen by this process), with
    /// their stored sizes.
    known: Mutex<HashMap<Hash, u64>>,
    /// Uploads hold it shared, garbage collection exclusively: a chunk an
    /// upload counts on is never collected before its manifest is written.
    pub(crate) gc_lock: tokio::sync::RwLock<()>,
}

impl std::fmt::Debug for ColdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl ColdStore {
    pub fn open(opts: &StoreOptions) -> Result<ColdStore> {
        let bad = |why: &str| ColdError::BadUrl {
            url: opts.url.clone(),
            why: why.to_string(),
        };
        let (objects, local_root): (Arc<dyn ObjectStore>, _) = if let Some(path) =
            opts.url.strip_prefix("file://")
        {
            if !path.starts_with('/') {
                return Err(bad(
                    "a file:// store needs an absolute path (file:///srv/cold)",
                ));
            }
            let root = PathBuf::from(path);
            std::fs::create_dir_all(&root).map_err(|e| ColdError::io("mkdir", &root, e))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)
                .map_err(|e| bad(&e.to_string()))?
                .with_automatic_cleanup(true);
            (Arc::new(fs), Some(root))
        } else if let Some(rest) = opts.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket (s3://bucket/prefix)"));
            }
            let retry = object_store::RetryConfig {
                backoff: object_store::BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: opts.request_timeout,
            };
            // Replaces the client options from_env read: carry AWS_ALLOW_HTTP over.
            let allow_http = std::env::var("AWS_ALLOW_HTTP")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            let client = object_store::ClientOptions::new()
                .with_allow_http(allow_http)
                .with_connect_timeout(Duration::from_secs(3))
                .with_timeout(opts.request_timeout);
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .with_client_options(client);
            // The SDKs' name for an endpoint override, besides AWS_ENDPOINT.
            if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                b = b.with_endpoint(endpoint);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                b = b.with_region("us-east-1");
            }
            let s3 = b.build().map_err(|e| bad(&e.to_string()))?;
            let store: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(
                    s3,
                    prefix.trim_matches('/'),
                ))
            };
            (store, None)
        } else {
            return Err(bad("use file:///path or s3://bucket/prefix"));
        };
        Ok(ColdStore {
            objects,
            local_root,
            describe: opts.url.clone(),
            cache: Arc::new(ChunkCache::open(&opts.cache_dir, opts.cache_bytes)?),
            concurrency: opts.concurrency.max(1),
            request_timeout: opts.request_timeout,
            known: Mutex::new(HashMap::new()),
            gc_lock: tokio::sync::RwLock::new(()),
        })
    }

    /// The store's URL, for messages.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    pub fn cache(&self) -> &ChunkCache {
        &self.cache
    }

    fn store_err(&self, op: &'static str, key: &str, source: object_store::Error) -> ColdError {
        match source {
            object_store::Error::NotFound { .. } => ColdError::NotFound {
                store: self.describe.clone(),
                key: key.to_string(),
            },
            source => ColdError::Store {
                store: self.describe.clone(),
                op,
                key: key.to_string(),
                source: Box::new(source),
            },
        }
    }

    /// Forgets which chunks it knew to be in the store (another host's
    /// garbage collection may have deleted some): each is asked of the
    /// store again before it is named.
    pub fn forget_known(&self) {
        self.known().clear();
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<Hash, u64>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes everything written so far durable. A `file://` store writes
    /// objects without fsync, so its filesystem is synced; an S3 store has
    /// acknowledged each put durably already.
    pub async fn make_durable(&self) -> Result<()> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || {
            let dir = std::fs::File::open(&root).map_err(|e| ColdError::io("open", &root, e))?;
            nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir))
                .map_err(|e| ColdError::io("syncfs", &root, e.into()))
        })
        .await
        .map_err(|e| ColdError::Other(format!("sync task failed: {e}")))?
    }

    // --- documents and manifests -------------------------------------------

    /// Writes a small object whole (atomically: readers see the old or the
    /// new bytes), durably.
    pub async fn put_doc(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.objects
            .put(&ObjPath::from(key), PutPayload::from(bytes))
            .await
            .map_err(|e| self.store_err("put", key, e))?;
        self.make_durable().await
    }

    pub async fn get_doc(&self, key: &str) -> Result<Vec<u8>> {
        let got = self
            .objects
            .get(&ObjPath::from(key))
            .await
            .map_err(|e| self.store_err("get", key, e))?;
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.store_err("get", key, e))?;
        Ok(bytes.to_vec())
    }

    /// Deletes an object; one that is not there is not an error.
    pub async fn delete_doc(&self, key: &str) -> Result<()> {
        match self.objects.delete(&ObjPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_err("delete", key, e)),
        }
    }

    /// Keys of the documents under folder `prefix` (e.g. `meta/sprites`),
    /// sorted.
    pub async fn list_docs(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = prefix.trim_end_matches('/');
        let metas: Vec<_> = self
            .objects
            .list(Some(&ObjPath::from(dir)))
            .try_collect()
            .await
            .map_err(|e| self.store_err("list", dir, e))?;
        let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        keys.sort();
        Ok(keys)
    }

    fn manifest_key(name: &str) -> String {
        format!("manifests/{name}.json")
    }

    /// Writes manifest `name` (e.g. `sprites/<id>/volume`), durably: only
    /// after this returns may the local copy of the image go.
    pub async fn put_manifest(&self, name: &str, m: &Manifest) -> Result<()> {
        let bytes = serde_json::to_vec(m)
            .map_err(|e| ColdError::Other(format!("encoding a manifest: {e}")))?;
        // Its chunks first, then the manifest that names them.
        self.make_durable().await?;
        self.put_doc(&Self::manifest_key(name), bytes).await
    }

    pub async fn get_manifest(&self, name: &str) -> Result<Manifest> {
        let key = Self::manifest_key(name);
        let bytes = self.get_doc(&key).await?;
        Manifest::parse(&key, &bytes)
    }

    pub async fn has_manifest(&self, name: &str) -> Result<bool> {
        let key = Self::manifest_key(name);
        match self.objects.head(&ObjPath::from(key.as_str())).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.store_err("head", &key, e)),
        }
    }

    pub async fn delete_manifest(&self, name: &str) -> Result<()> {
        self.delete_doc(&Self::manifest_key(name)).await
    }

    /// Names of the manifests under `prefix` (e.g. `sprites/<id>/`).
    pub async fn list_manifests(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = format!("manifests/{}", prefix.trim_end_matches('/'));
        let metas: Vec<_> = self
            .objects
            .list(Some(&ObjPath::from(dir.as_str())))
            .try_collect()
            .await
            .map_err(|e| self.store_err("list", &dir, e))?;
        let mut names: Vec<String> = metas
            .into_iter()
            .filter_map(|m| {
                let key = m.location.to_string();
                key.strip_prefix("manifests/")
                    .and_then(|k| k.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    // --- chunks -------------------------------------------------------------

    /// Makes sure chunk `h` is in the store; `plain` is only compressed and
    /// sent when it is not. Returns its stored size, and whether it was sent.
    pub(crate) async fn ensure_chunk(&self, h: Hash, plain: bytes::Bytes) -> Result<(u64, bool)> {
        let key = h.key();
        if let Some(size) = self.known().get(&h) {
            return Ok((*size, false));
        }
        match self.objects.head(&ObjPath::from(key.as_str())).await {
            Ok(meta) => {
                self.known().insert(h, meta.size);
                return Ok((meta.size, false));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.store_err("head", &key, e)),
        }
        let cache = self.cache.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let stored = chunk::compress(&plain)?;
            // Cached here, off the runtime's threads: a file written.
            cache.put(&h, &stored);
            Ok::<_, ColdError>(stored)
        })
        .await
        .map_err(|e| ColdError::Other(format!("compress task failed: {e}")))??;
        let size = stored.len() as u64;
        self.objects
            .put(&ObjPath::from(key.as_str()), PutPayload::from(stored))
            .await
            .map_err(|e| self.store_err("put", &key, e))?;
        self.known().insert(h, size);
        Ok((size, true))
    }

    /// The stored bytes of chunk `h`: from the cache, else from the store
    /// (then cached). Not yet checked: see [`chunk::open`].
    pub(crate) async fn fetch_chunk(&self, h: &Hash) -> Result<(Vec<u8>, bool)> {
        if let Some(b) = self.cache.get(h) {
            return Ok((b, true));
        }
        let key = h.key();
        let got = self
            .objects
            .get(&ObjPath::from(key.as_str()))
            .await
            .map_err(|e| self.store_err("get", &key, e))?;
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.store_err("get", &key, e))?;
        Ok((bytes.to_vec(), false))
    }

    /// Bytes and count of every chunk in the store.
    pub async fn chunk_usage(&self) -> Result<(u64, u64)> {
        let mut list = self.objects.list(Some(&ObjPath::from("chunks")));
        let (mut bytes, mut count) = (0, 0);
        while let Some(m) = list.next().await {
            let m = m.map_err(|e| self.store_err("list", "chunks", e))?;
            bytes += m.size;
            count += 1;
        }
        Ok((bytes, count))
    }

    /// Deletes every chunk no manifest names. Uploads wait meanwhile (and
    /// it waits for uploads in flight), so nothing an upload relies on goes.
    /// Returns how many chunks and bytes were freed.
    pub async fn collect_garbage(&self) -> Result<(u64, u64)> {
        let _g = self.gc_lock.write().await;
        let mut live = HashSet::new();
        for name in self.list_manifests("").await? {
            match self.get_manifest(&name).await {
                Ok(m) => live.extend(m.hashes()?),
                Err(ColdError::NotFound { .. }) => {}
                // A manifest that cannot be read could name anything: keep all.
                Err(e) => return Err(e),
            }
        }
        let metas: Vec<_> = self
            .objects
            .list(Some(&ObjPath::from("chunks")))
            .try_collect()
            .await
            .map_err(|e| self.store_err("list", "chunks", e))?;
        let (mut count, mut bytes) = (0, 0);
        for m in metas {
            let key = m.location.to_string();
            let Some(name) = key.rsplit('/').next() else {
                continue;
            };
            let Ok(h) = Hash::from_hex(name) else {
                continue;
            };
            if live.contains(&h) {
                continue;
            }
            self.delete_doc(&key).await?;
            self.known().remove(&h);
            self.cache.remove(&h);
            count += 1;
            bytes += m.size;
        }
        if count > 0 {
            self.make_durable().await?;
        }
        Ok((count, bytes))
    }

    /// For tests of damage: the stored bytes of chunk `h`, replaced.
    pub async fn overwrite_chunk_for_test(&self, h: &Hash, stored: Vec<u8>) -> Result<()> {
        self.cache.remove(h);
        let key = h.key();
        self.objects
            .put(&ObjPath::from(key.as_str()), PutPayload::from(stored))
            .await
            .map_err(|e| self.store_err("put", &key, e))?;
        Ok(())
    }

    /// The local folder of a `file://` store.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }
}
