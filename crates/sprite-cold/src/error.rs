use std::path::{Path, PathBuf};

pub type Result<T, E = ColdError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    /// The object store refused or could not be reached.
    #[error("object store {store}: {op} {key}: {source}")]
    Store {
        store: String,
        op: &'static str,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// A manifest or chunk the caller asked for is not in the store.
    #[error("object store {store}: {key} does not exist")]
    NotFound { store: String, key: String },
    /// A chunk whose bytes do not match its hash or length, or a manifest
    /// that does not parse: the store's data is damaged.
    #[error("corrupt data in the object store: {what}: {why}")]
    Corrupt { what: String, why: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad object store URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("{0}")]
    Other(String),
}

impl ColdError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        ColdError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// A copy for a second reader of the same failure (the sources of
    /// store and I/O errors are carried over as text).
    pub fn duplicate(&self) -> ColdError {
        match self {
            ColdError::Store {
                store,
                op,
                key,
                source,
            } => ColdError::Store {
                store: store.clone(),
                op,
                key: key.clone(),
                source: Box::new(object_store::Error::Generic {
                    store: "cold",
                    source: source.to_string().into(),
                }),
            },
            ColdError::NotFound { store, key } => ColdError::NotFound {
                store: store.clone(),
                key: key.clone(),
            },
            ColdError::Corrupt { what, why } => ColdError::Corrupt {
                what: what.clone(),
                why: why.clone(),
            },
            ColdError::Io { op, path, source } => ColdError::Io {
                op,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            ColdError::BadUrl { url, why } => ColdError::BadUrl {
                url: url.clone(),
                why: why.clone(),
            },
            ColdError::Other(s) => ColdError::Other(s.clone()),
        }
    }

    /// The store could not be reached or failed (as opposed to missing or
    /// damaged data): worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ColdError::Store { .. })
    }
}
