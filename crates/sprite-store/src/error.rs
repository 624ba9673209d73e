use std::path::PathBuf;

/// Everything the store can fail with. Syscall and tool failures carry what
/// was attempted and on which path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid name {0:?}: use 1-128 of [A-Za-z0-9._-], starting with a letter or digit")]
    InvalidName(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mount {fstype} {source_path} on {target}: {errno}")]
    Mount {
        fstype: String,
        source_path: PathBuf,
        target: PathBuf,
        #[source]
        errno: std::io::Error,
    },
    #[error("unmount {target}: {errno}")]
    Unmount {
        target: PathBuf,
        #[source]
        errno: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("image {0:?} is not built")]
    ImageMissing(String),
    #[error("image {name:?} was built for uid shift {built:?} but the store uses {wanted:?}")]
    ImageShiftMismatch {
        name: String,
        built: Option<u32>,
        wanted: Option<u32>,
    },
    #[error("no volume for sprite {0:?}")]
    VolumeMissing(String),
    #[error("sprite {0:?} already has a volume")]
    VolumeExists(String),
    #[error("sprite {sprite:?} has no checkpoint {checkpoint}")]
    CheckpointMissing { sprite: String, checkpoint: String },
    #[error("sprite {sprite:?} already has a checkpoint {checkpoint}")]
    CheckpointExists { sprite: String, checkpoint: String },
    #[error("too little free space for the storage pool ({free_bytes} bytes free, {needed_bytes} needed, with the reserve the disk keeps)")]
    NoSpace { free_bytes: u64, needed_bytes: u64 },
    #[error("{0} is still mounted or in use")]
    Busy(PathBuf),
    #[error("path {0} cannot be used in mount options (contains ',', ':', '\\\\' or a control character)")]
    UnsupportedPath(PathBuf),
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("damaged data: {0}")]
    Corrupt(String),
    #[error("uid/gid {id} + shift {shift} overflows on {path}")]
    ShiftOverflow { id: u32, shift: u32, path: PathBuf },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

/// Attaches an operation name and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| StoreError::io(op, path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| StoreError::io(op, path, std::io::Error::from(e)))
    }
}
