//! Network (egress) policy: `GET`/`POST /v1/sprites/{name}/policy/network`.

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
