//! Checkpoints: `POST /v1/sprites/{name}/checkpoint`, `GET .../checkpoints`,
//! `GET|DELETE .../checkpoints/{id}`, `POST .../checkpoints/{id}/restore`.
//! Create and restore answer NDJSON lines of [`crate::sprite::StreamEvent`]
//! (`info`…, then `complete` or `error`).

use serde::{Deserialize, Serialize};

/// One checkpoint of a sprite's writable filesystem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    /// `v0`, `v1`, ... per sprite; never reused after a delete.
    pub id: String,
    /// RFC 3339, UTC.
    pub create_time: String,
    /// The checkpoint the sprite stood on when this one was taken (the one
    /// last created or restored), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// The checkpoints this one descends from, nearest first (its source,
    /// that one's source, ...): the branch `?history=` selects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_auto: Option<bool>,
    /// Extension: whether the sprite currently stands on this checkpoint
    /// (it cannot be deleted then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_current: Option<bool>,
}

/// Body of `POST /v1/sprites/{name}/checkpoint` (may be empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateCheckpointRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Extension of the create-sprite call: start the new sprite from a
/// checkpoint of another (a fork), `{"name":"exp","source":{"sprite":"demo","checkpoint":"v1"}}`,
/// or from one of its replicated snapshots, `{"sprite":"demo","snapshot":"1764800000000"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ForkSource {
    pub sprite: String,
    /// The checkpoint's id (empty when a snapshot is named).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checkpoint: String,
    /// A replicated snapshot's id (see `GET /v1/sprites/{name}/snapshots`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// Checks a checkpoint id: `v` followed by a decimal number without
/// leading zeros. Returns the number.
pub fn parse_id(id: &str) -> Option<u64> {
    let digits = id.strip_prefix('v')?;
    if digits.is_empty()
        || digits.len() > 20
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// Longest comment accepted, in bytes.
pub const MAX_COMMENT_BYTES: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(parse_id("v0"), Some(0));
        assert_eq!(parse_id("v17"), Some(17));
        for bad in [
            "",
            "v",
            "1",
            "v01",
            "v-1",
            "v1a",
            "V1",
            "v 1",
            "v99999999999999999999",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn wire_shape() {
        let c = Checkpoint {
            id: "v3".into(),
            create_time: "2026-01-05T10:30:00Z".into(),
            source_id: Some("v2".into()),
            history: vec!["v2".into(), "v0".into()],
            comment: None,
            is_auto: None,
            is_current: Some(true),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["id"], "v3");
        assert_eq!(v["source_id"], "v2");
        assert_eq!(v["history"], serde_json::json!(["v2", "v0"]));
        assert!(v.get("comment").is_none());
        let fork: super::super::sprite::CreateSpriteRequest =
            serde_json::from_str(r#"{"name":"exp","source":{"sprite":"demo","checkpoint":"v1"}}"#)
                .unwrap();
        assert_eq!(fork.source.unwrap().checkpoint, "v1");
    }
}

/// Extension (`GET /v1/sprites/{name}/snapshots`): a snapshot of the
/// sprite's volume replicated to the object store, restorable like a
/// checkpoint (`POST .../snapshots/{id}/restore`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    /// The unix time in milliseconds it was taken, as a string.
    pub id: String,
    /// RFC 3339, UTC.
    pub create_time: String,
    /// Data in the volume (holes and zeros excluded).
    pub data_bytes: u64,
    /// What it takes in the object store (compressed; chunks it shares
    /// with other images counted in full).
    pub stored_bytes: u64,
}
