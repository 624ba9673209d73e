//! `GET /v1/organization`: the one organization a sprited serves (its name
//! is what every sprite's `organization` says), its limits and its sprites
//! by status. The service documents the endpoint, not its answer: this
//! shape is sprited's.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub name: String,
    pub limits: OrgLimits,
    pub counts: SpriteCounts,
}

/// The daemon's configured limits; an absent one is not limited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgLimits {
    /// `--max-sprites`: most sprites that may exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sprites: Option<u64>,
    /// `--max-running`: most sprites running or warm at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u64>,
    /// `--create-rate`: most creates per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_rate_per_minute: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpriteCounts {
    pub running: u64,
    pub warm: u64,
    pub cold: u64,
    pub total: u64,
}
