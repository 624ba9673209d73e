//! Sprite objects and the requests that make and change them.

use serde::{Deserialize, Serialize};

/// Lifecycle status as the API reports it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Cold,
    Warm,
    Running,
    /// It could not be started (e.g. a broken volume); its data stays, and
    /// the next request tries again.
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Cold => "cold",
            Status::Warm => "warm",
            Status::Running => "running",
            Status::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UrlSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SpriteConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_gb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// `POST /v1/sprites`. `image` is sprited's extension (`tiny` | `standard`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateSpriteRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_settings: Option<UrlSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<SpriteConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_capacity: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Extension: fork from a checkpoint of another sprite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::checkpoint::ForkSource>,
}

/// `PUT /v1/sprites/{name}`: a partial update.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateSpriteRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_settings: Option<UrlSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_labels: Option<bool>,
}

/// The sprite object every sprite call answers with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sprite {
    pub id: String,
    pub name: String,
    pub organization: String,
    pub status: Status,
    pub url: String,
    pub url_settings: UrlSettings,
    pub labels: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub last_running_at: Option<String>,
    #[serde(default)]
    pub last_active_at: Option<String>,
    /// sprited extension: the base image the sprite was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// sprited extension: resource limits in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<SpriteConfig>,
    /// Extension: why the sprite could not be started (status `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// sprited extension: where the sprite's data lives, and its sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageInfo>,
}

/// sprited extension: answer of `POST /v1/sprites/{name}/evict`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EvictReport {
    /// Where the volume is now: `object`.
    pub location: String,
    /// Chunks and bytes sent now (the store had the rest already).
    pub chunks_sent: u64,
    pub bytes_sent: u64,
    /// Bytes the sprite's volume takes in the store.
    pub stored_bytes: u64,
    pub checkpoints_uploaded: u32,
    pub elapsed_ms: f64,
}

/// Where a sprite's volume and checkpoints are kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StorageInfo {
    /// `local`: on this host's disk; `object`: evicted, only in object
    /// storage; `local+object`: local, with checkpoints also in the store.
    pub location: String,
    /// The object store (its URL, no credentials).
    pub object_store: String,
    /// Bytes on local disk (volume and checkpoint images, allocated).
    pub local_bytes: u64,
    /// Bytes in the object store (compressed; chunks shared with other
    /// images are counted for each that names them).
    pub object_bytes: u64,
    /// Data in the evicted volume (before compression, holes excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_data_bytes: Option<u64>,
    pub checkpoints_local: u32,
    pub checkpoints_in_object_store: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_at: Option<String>,
}

/// `GET /v1/sprites`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpriteList {
    pub sprites: Vec<Sprite>,
    pub has_more: bool,
    #[serde(default)]
    pub next_continuation_token: Option<String>,
}

/// One entry of `GET /v1/sprites/{name}/exec`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionInfo {
    pub id: String,
    pub command: String,
    pub workdir: String,
    pub created: String,
    pub is_active: bool,
    #[serde(default)]
    pub last_activity: Option<String>,
    pub tty: bool,
}

/// `GET /v1/sprites/{name}/exec` without an upgrade.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
    pub count: usize,
}

/// One line of an NDJSON event stream (session kill, checkpoints).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}
