use std::path::PathBuf;

/// Everything a driver can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "invalid sandbox id {0:?}: use 1-128 of [A-Za-z0-9._-], starting with a letter or digit"
    )]
    InvalidId(String),
    #[error("sandbox {0:?} does not exist")]
    NotFound(String),
    #[error("sandbox {0:?} is already running")]
    AlreadyRunning(String),
    #[error("sandbox {0:?} is not running")]
    NotRunning(String),
    #[error("sandbox {0:?}: its root could not be mounted")]
    RootNotMounted(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Runc {
        command: String,
        status: String,
        output: String,
    },
    #[error("OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    #[error("network: {0}")]
    Network(String),
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error("seccomp filter: {0}")]
    Seccomp(String),
    #[error("sandbox {id:?} did not stop within {waited:?}")]
    StopTimeout {
        id: String,
        waited: std::time::Duration,
    },
}

impl RuntimeError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, RuntimeError>;
