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

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SpriteConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_mb: Option<u64>,
    /// A whole number of CPUs, as every SDK declares it (`CPUs int` in Go).
    /// A request may write it `2.0`; a fraction is refused.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_cpus"
    )]
    pub cpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_gb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// sprited extension: how thick the sprite's walls are, `container`
    /// (namespaces around the host's kernel) or `gvisor` (a kernel in user
    /// space between its code and the host's). The daemon's `--isolation`
    /// when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
}

/// Reads `cpus` as a whole number, taking `2.0` for `2` (JSON has one number
/// type, and some encoders write every number with a point) and refusing a
/// fraction in words a user can act on.
fn whole_cpus<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(u) = n.as_u64() {
        return u32::try_from(u)
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{u} CPUs is more than any host has")));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&f) => Ok(Some(f as u32)),
        _ => Err(D::Error::custom(format!(
            "cpus must be a whole number of CPUs (1, 2, ...), not {n}"
        ))),
    }
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
    /// The SDKs' runtime variant: `default` (the daemon's default image)
    /// or `dev` (the development image, `standard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
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
    /// The environment given at create, which every command sees.
    #[serde(default)]
    pub environment: std::collections::BTreeMap<String, String>,
    /// Where the sprite runs: the host's region (one host, one region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_region: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub last_running_at: Option<String>,
    #[serde(default)]
    pub last_active_at: Option<String>,
    /// sprited extension: the base image the sprite was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Resource limits in force, and the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<SpriteConfig>,
    /// Extension: why the sprite could not be started (status `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// sprited extension: where the sprite's data lives, and its sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageInfo>,
    /// sprited extension: the host that holds and runs it (`--host-id`),
    /// where hosts share a database (`--database postgres://`); absent
    /// while no host holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
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

/// Answer of `POST /v1/sprites/{name}/restart`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestartReport {
    pub sprite_name: String,
    /// The sprite's id (what runs it here is the sprite's own sandbox).
    pub machine_id: String,
    pub message: String,
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
    /// When the newest snapshot replicated to the object store was taken
    /// (RFC 3339); absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated_at: Option<String>,
    /// How long the volume has had changes not yet replicated (0: none).
    #[serde(default)]
    pub replication_lag_seconds: u64,
    /// Why the last replication failed, while it keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_error: Option<String>,
}

/// `GET /v1/sprites`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpriteList {
    pub sprites: Vec<Sprite>,
    pub has_more: bool,
    /// Present only when `has_more` (the SDKs declare it optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_continuation_token: Option<String>,
    /// The organization's sprites by status, where the Go SDK reads them
    /// (`SpriteList.Org`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<OrgCounts>,
    /// The same, at the top level, where the JS SDK reads them (`name`,
    /// `running`, `warm`, `cold`, `running_limit`, `warm_limit`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<OrgCounts>,
}

/// `GET /v1/sprites/{name}/check`: whether the sprite answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpriteCheck {
    pub sprite_name: String,
    pub sprite_id: String,
    /// `healthy` or `unhealthy`.
    pub status: String,
    /// Why it is unhealthy, or what state a healthy sprite is in when it
    /// is not running (`warm`, `cold`: it starts on the next request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub checked_at: String,
    /// How long the check took, in milliseconds.
    pub elapsed: f64,
}

/// One line of `GET /v1/sprites` asked for as `application/x-ndjson` (the
/// SDKs' `watchSprites`): a sprite's state, or (`type: "heartbeat"`) only
/// the time and the counts. Times are RFC 3339.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpriteStateEvent {
    /// `heartbeat` for a keep-alive line; absent on a sprite's state.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A sprite status (`running`, `warm`, `cold`, `error`), or
    /// `destroyed` for a sprite that is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The sprite version it runs (while running or warm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_running_at: Option<String>,
    pub timestamp: String,
    pub org: OrgCounts,
}

/// The organization's sprites by status, on every watch line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrgCounts {
    pub name: String,
    pub running: u64,
    pub warm: u64,
    pub cold: u64,
    /// `--max-running`, when set: most sprites running or warm at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_limit: Option<u64>,
}

/// One entry of `GET /v1/sprites/{name}/exec`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionInfo {
    pub id: String,
    pub command: String,
    pub workdir: String,
    pub created: String,
    /// Output bytes per second, averaged over the session's life.
    #[serde(default)]
    pub bytes_per_second: f64,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<SpriteConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn cpus_are_whole_numbers_on_the_wire() {
        let c = SpriteConfig {
            ram_mb: Some(1024),
            cpus: Some(2),
            storage_gb: Some(10),
            region: Some("local".into()),
            isolation: None,
        };
        let text = serde_json::to_string(&c).expect("json");
        assert!(text.contains(r#""cpus":2,"#), "{text}");
        assert_eq!(config(r#"{"cpus":2}"#).expect("int").cpus, Some(2));
        assert_eq!(config(r#"{"cpus":2.0}"#).expect("2.0").cpus, Some(2));
        assert_eq!(config(r#"{"cpus":null}"#).expect("null").cpus, None);
        assert_eq!(config("{}").expect("absent").cpus, None);
        for bad in [
            r#"{"cpus":0.5}"#,
            r#"{"cpus":-1}"#,
            r#"{"cpus":"2"}"#,
            r#"{"cpus":1e12}"#,
        ] {
            assert!(config(bad).is_err(), "{bad} must be refused");
        }
        let e = config(r#"{"cpus":1.5}"#).expect_err("fraction");
        assert!(e.to_string().contains("whole number of CPUs"), "{e}");
    }

    #[test]
    fn the_sprite_object_carries_environment_and_region() {
        let s: Sprite = serde_json::from_value(serde_json::json!({
            "id": "s1", "name": "a", "organization": "local", "status": "running",
            "url": "http://a", "url_settings": {}, "labels": [],
            "created_at": "2026-01-05T10:30:00Z", "updated_at": "2026-01-05T10:30:00Z",
        }))
        .expect("an answer without the new fields still reads");
        assert!(s.environment.is_empty());
        let mut s = s;
        s.environment.insert("A".into(), "b".into());
        s.primary_region = Some("local".into());
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["environment"], serde_json::json!({"A": "b"}));
        assert_eq!(v["primary_region"], "local");
    }
}
