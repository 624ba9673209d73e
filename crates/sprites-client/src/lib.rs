//! Rust SDK for the Sprites v1 API, as served by `sprited` (and by any
//! server that speaks the same protocol).
//!
//! ```no_run
//! use sprites_client::{Client, CreateSpriteRequest};
//!
//! # async fn demo() -> Result<(), sprites_client::Error> {
//! let client = Client::new("http://127.0.0.1:7070", "my-token")?;
//! client
//!     .create_sprite(&CreateSpriteRequest {
//!         name: "demo".into(),
//!         ..Default::default()
//!     })
//!     .await?;
//! let out = client.sprite("demo").command("uname").arg("-a").output().await?;
//! print!("{}", String::from_utf8_lossy(&out.stdout));
//! # Ok(()) }
//! ```

mod account;
mod checkpoints;
mod child;
mod client;
mod error;
mod event_stream;
mod exec;
mod fs;
mod http_exec;
mod policy;
mod ports;
mod services;
mod sessions;
mod sprites;

pub use account::Range;
pub use checkpoints::{checkpoint_id_in, CheckpointOutcome};
pub use child::{ExecChild, ExecEvent, ExecStdin};
pub use client::Client;
pub use error::Error;
pub use event_stream::{event_text, Completion, Event, EventStream, ServiceEvents};
pub use exec::{Command, Output, TtySize};
pub use fs::{FileStream, Filesystem, WriteOptions, MODE_HEADER};
pub use http_exec::HttpExec;
pub use ports::{PortWatch, ProxyStream};
pub use sessions::{parse_ndjson, KillOptions};
pub use sprites::{ListOptions, SpriteHandle, MAX_PAGE_SIZE};
pub use sprites_api::port::{ListeningPort, PortEvent};

/// The wire types, re-exported so that callers need not name `sprites-api`.
pub use sprites_api;
pub use sprites_api::checkpoint::{Checkpoint, CreateCheckpointRequest, ForkSource, Snapshot};
pub use sprites_api::fs::{
    ChangeResponse, DeleteResponse, FileKind, FsEntry, ListResponse, PathBytes, WriteResponse,
};
pub use sprites_api::policy::{
    CapabilityChanges, NetworkPolicy, PolicyAction, PolicyRule, PrivilegesPolicy,
};
pub use sprites_api::service::{Service, ServiceEvent, ServiceSpec, ServiceState};
pub use sprites_api::sprite::{
    CreateSpriteRequest, SessionInfo, Sprite, SpriteConfig, SpriteList, Status, StreamEvent,
    UpdateSpriteRequest, UrlSettings,
};
pub use sprites_api::task::Task;
pub use sprites_api::token::{NewToken, TokenInfo};
pub use sprites_api::usage::{Amounts, Cost, OrgUsage, UsageReport};

pub use reqwest::Body;
