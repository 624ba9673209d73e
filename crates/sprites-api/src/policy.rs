//! A sprite's policies: network (egress), `GET`/`POST
//! /v1/sprites/{name}/policy/network`, resources (memory),
//! `GET`/`POST`/`DELETE /v1/sprites/{name}/policy/resources`, and
//! privileges (capabilities and devices),
//! `GET`/`POST`/`DELETE /v1/sprites/{name}/policy/privileges`.

use serde::{Deserialize, Serialize};

/// `{rules: [...]}`; no rules means open egress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicy {
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

/// Either `{domain, action}` or `{include: "defaults"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<PolicyAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<String>,
}

impl PolicyRule {
    pub fn allow(domain: impl Into<String>) -> Self {
        PolicyRule {
            domain: Some(domain.into()),
            action: Some(PolicyAction::Allow),
            include: None,
        }
    }
    pub fn deny(domain: impl Into<String>) -> Self {
        PolicyRule {
            domain: Some(domain.into()),
            action: Some(PolicyAction::Deny),
            include: None,
        }
    }
    pub fn include_defaults() -> Self {
        PolicyRule {
            include: Some("defaults".into()),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    Allow,
    Deny,
}

/// `{memory: {limit_mb, autoscale}}`: the sprite's memory limit. A POST
/// without `memory` asks for no policy of its own (the server's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryPolicy>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryPolicy {
    pub limit_mb: u64,
    /// Growing the limit under pressure: sprited has none, so it is always
    /// `false` in an answer and `true` is refused.
    #[serde(default)]
    pub autoscale: bool,
}

/// What root inside the sprite may do beyond, or short of, the default
/// set. The service documents only the endpoints ("capability and device
/// restrictions"); the official JS SDK declares `{profile, devices,
/// noNewPrivileges}`, which this takes as it declares it, and
/// `capabilities: {add, drop}` is sprited's own. The empty policy is the
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegesPolicy {
    /// The capability set to start from: `minimal`, `standard` (the
    /// default) or `privileged` (standard and every grantable one); `""`
    /// is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default)]
    pub capabilities: CapabilityChanges,
    /// Device paths made available inside (`/dev/fuse`, ...).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Whether setuid programs are kept from gaining privileges; unset:
    /// the image's default (kept from it, except on images with `sudo`).
    #[serde(
        default,
        rename = "noNewPrivileges",
        skip_serializing_if = "Option::is_none"
    )]
    pub no_new_privileges: Option<bool>,
    /// Whether the io_uring system calls are allowed (extension; unset:
    /// no, seccomp answers EPERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_uring: Option<bool>,
}

/// Capability names (`CAP_NET_RAW`; `net_raw` is read the same) added to
/// or dropped from the default set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityChanges {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

impl PrivilegesPolicy {
    pub fn is_default(&self) -> bool {
        self == &PrivilegesPolicy::default()
    }
}
