//! What the daemon keeps in its data dir, by name: the one place that
//! joins paths under it. The storage pool, images and the sprites' run
//! dirs (`pool.img`, `pool/`, `sprites/`) belong to `sprite-store`, whose
//! README draws them; the rest is the daemon's:
//!
//! ```text
//! <data>/meta.db                 SQLite metadata
//! <data>/admin.token             the admin token, unless SPRITED_TOKEN is set (0600)
//! <data>/url-session.key         the key signing sprite URL logins (0600)
//! <data>/bin/sprite-agent-<hash> installed agents, one per build (content-named)
//! <data>/runc/                   runc's state (`--root`), a tmpfs of its own (`--runtime-tmpfs`)
//! <data>/runc/pasta/<id>.pid     each sandbox's pasta (kept here by earlier versions too)
//! <data>/cache/chunks/           cache of object-store chunks
//! <data>/cache/<image>.tar       a base image on its way to or from the object store
//! <data>/objects/                the object store, when it is the default `file://` one
//! ```

use std::path::{Path, PathBuf};

/// A data dir, with its parts named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn meta_db(&self) -> PathBuf {
        self.root.join("meta.db")
    }

    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    pub fn url_session_key(&self) -> PathBuf {
        self.root.join("url-session.key")
    }

    /// The object store this data dir's cold data is in.
    pub fn object_store_record(&self) -> PathBuf {
        self.root.join("object-store")
    }

    /// This host's id among the hosts of a shared database.
    pub fn host_id(&self) -> PathBuf {
        self.root.join("host.id")
    }

    /// Where installed agent binaries live.
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// runc's `--root`: its state of every sandbox.
    pub fn runc_state(&self) -> PathBuf {
        self.root.join("runc")
    }

    /// runsc's state (`--root`) and the network namespaces of gvisor sprites.
    pub fn runsc_state(&self) -> PathBuf {
        self.root.join("runsc")
    }

    /// The pid files of the sandboxes' pastas.
    pub fn pasta_pids(&self) -> PathBuf {
        self.runc_state().join("pasta")
    }

    /// The sprites' run dirs, one per sprite id (made by `sprite-store`).
    pub fn sprites_dir(&self) -> PathBuf {
        self.root.join("sprites")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// The local cache of object-store chunks.
    pub fn chunk_cache(&self) -> PathBuf {
        self.cache_dir().join("chunks")
    }

    /// Base image `name` exported for the object store.
    pub fn image_export(&self, name: &str) -> PathBuf {
        self.cache_dir().join(format!("{name}.tar"))
    }

    /// Base image `name` fetched from the object store.
    pub fn image_fetch(&self, name: &str) -> PathBuf {
        self.cache_dir().join(format!("{name}.fetch.tar"))
    }

    /// The object store when none is configured (`file://` this).
    pub fn default_objects(&self) -> PathBuf {
        self.root.join("objects")
    }
}

/// Where `path` is written before it is renamed into place.
pub fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_where_existing_data_dirs_have_them() {
        let d = DataDir::new("/var/lib/sprited");
        assert_eq!(d.meta_db(), Path::new("/var/lib/sprited/meta.db"));
        assert_eq!(d.admin_token(), Path::new("/var/lib/sprited/admin.token"));
        assert_eq!(
            d.url_session_key(),
            Path::new("/var/lib/sprited/url-session.key")
        );
        assert_eq!(d.runc_state(), Path::new("/var/lib/sprited/runc"));
        assert_eq!(d.pasta_pids(), Path::new("/var/lib/sprited/runc/pasta"));
        assert_eq!(d.chunk_cache(), Path::new("/var/lib/sprited/cache/chunks"));
        assert_eq!(
            d.image_fetch("tiny"),
            Path::new("/var/lib/sprited/cache/tiny.fetch.tar")
        );
        assert_eq!(
            temp_beside(&d.admin_token()),
            Path::new("/var/lib/sprited/admin.token.tmp")
        );
    }
}
