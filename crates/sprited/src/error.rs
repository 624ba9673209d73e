//! What the daemon's domain layer (the manager, the network, the tokens) can
//! fail with. Typed, with the source error kept: nothing here knows HTTP.
//! The one mapping to statuses and the Sprites error JSON is at the edge,
//! in `api::error` (`From<Error> for ApiError`).

use sprite_cold::ColdError;
use sprite_runtime::RuntimeError;
use sprite_store::StoreError;

use crate::agent_conn::AgentError;
use crate::db::DbError;

pub use crate::api::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No sprite of that name.
    #[error("no sprite named {0}")]
    NoSprite(String),
    /// Something else the request names does not exist (a checkpoint, a
    /// task, a token).
    #[error("{0}")]
    NotFound(String),
    /// The request asks for what cannot be (a bad name, a limit out of
    /// range, an unknown image).
    #[error("{0}")]
    Invalid(String),
    /// It cannot be done in the state things are in (a name taken, the
    /// current checkpoint deleted).
    #[error("{0}")]
    Conflict(String),
    /// A body or a value larger than the daemon takes.
    #[error("{0}")]
    TooLarge(String),
    /// A limit was hit (a rate, a count): waiting may help.
    #[error("{0}")]
    Limited(Box<Limit>),
    /// The sprite cannot be reached or brought up now.
    #[error("{0}")]
    Unavailable(String),
    /// The sprite holds all the space it may (its volume and checkpoints).
    #[error("{0}")]
    OverQuota(String),
    /// The storage pool (volumes, images, checkpoints) failed.
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: StoreError,
    },
    /// The sandbox driver failed.
    #[error("{context}: {source}")]
    Runtime {
        context: String,
        #[source]
        source: RuntimeError,
    },
    /// The cold tier (object storage) failed.
    #[error("{context}: {source}")]
    Cold {
        context: String,
        #[source]
        source: ColdError,
    },
    /// The sprite's agent refused, or could not be talked to.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Db(#[from] DbError),
    /// A file or socket of the daemon's own failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A task of the daemon's own died (a panic in a worker).
    #[error("worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
    /// An invariant of the daemon's own does not hold.
    #[error("{0}")]
    Internal(String),
}

/// What a limit error carries.
#[derive(Debug, Clone)]
pub struct Limit {
    pub code: &'static str,
    pub message: String,
    pub limit: u64,
    pub window_seconds: Option<u64>,
    /// `None`: waiting does not help (e.g. the number of sprites).
    pub retry_after_seconds: Option<u64>,
    pub current_count: u64,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error {
    pub fn limited(l: Limit) -> Self {
        Error::Limited(Box::new(l))
    }

    pub fn store(context: impl Into<String>) -> impl FnOnce(StoreError) -> Error {
        let context = context.into();
        move |source| Error::Store { context, source }
    }

    pub fn runtime(context: impl Into<String>) -> impl FnOnce(RuntimeError) -> Error {
        let context = context.into();
        move |source| Error::Runtime { context, source }
    }

    pub fn cold(context: impl Into<String>) -> impl FnOnce(ColdError) -> Error {
        let context = context.into();
        move |source| Error::Cold { context, source }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
