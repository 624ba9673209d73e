//! What a network policy decides for a name.
//!
//! - No rules: every name is allowed and egress is open.
//! - A rule's `domain` is an exact name (`github.com`), a wildcard for the
//!   subdomains of a name (`*.github.com`: `api.github.com`, not
//!   `github.com`), or `*` (every name).
//! - The most specific matching rule wins: exact, then the longest
//!   wildcard, then `*`; between equally specific rules, deny wins.
//! - A name no rule matches is allowed.
//! - `{include: "defaults"}` adds allow rules for [`DEFAULTS`].
//! - The policy is *restrictive* when `*` is denied: then the sprite reaches
//!   only addresses its DNS resolver answered for allowed names. Otherwise
//!   egress is open except to the addresses of denied names (those the
//!   resolver saw, and what exact denied names resolve to when the policy is
//!   set or the sprite starts).

use sprites_api::policy::{NetworkPolicy, PolicyAction};

/// Package registries and common development hosts.
pub const DEFAULTS: &[&str] = &[
    "pypi.org",
    "files.pythonhosted.org",
    "*.pythonhosted.org",
    "registry.npmjs.org",
    "*.npmjs.org",
    "registry.yarnpkg.com",
    "crates.io",
    "*.crates.io",
    "static.rust-lang.org",
    "*.rust-lang.org",
    "proxy.golang.org",
    "sum.golang.org",
    "github.com",
    "*.github.com",
    "*.githubusercontent.com",
    "gitlab.com",
    "deb.debian.org",
    "security.debian.org",
    "archive.ubuntu.com",
    "security.ubuntu.com",
    "rubygems.org",
    "*.rubygems.org",
    "repo.maven.apache.org",
    "repo1.maven.org",
    "registry-1.docker.io",
    "auth.docker.io",
    "production.cloudflare.docker.com",
    "ghcr.io",
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("rule {0}: give either domain and action, or include")]
    Shape(usize),
    #[error("rule {0}: the only include is \"defaults\"")]
    Include(usize),
    #[error("rule {0}: invalid domain {1:?}")]
    Domain(usize, String),
}

/// Checks the shape of every rule and normalises domains (lower case, no
/// trailing dot).
pub fn validate(policy: &NetworkPolicy) -> Result<NetworkPolicy, PolicyError> {
    let mut out = policy.clone();
    for (i, rule) in out.rules.iter_mut().enumerate() {
        match (&rule.domain, &rule.action, &rule.include) {
            (Some(d), Some(_), None) => {
                let d = normalise(d);
                let bare = d.strip_prefix("*.").unwrap_or(&d);
                let ok = d == "*"
                    || (!bare.is_empty()
                        && bare.len() <= 253
                        && bare.split('.').all(|l| {
                            !l.is_empty()
                                && l.len() <= 63
                                && l.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                        }));
                if !ok {
                    return Err(PolicyError::Domain(i, d));
                }
                rule.domain = Some(d);
            }
            (None, None, Some(inc)) => {
                if inc != "defaults" {
                    return Err(PolicyError::Include(i));
                }
            }
            _ => return Err(PolicyError::Shape(i)),
        }
    }
    Ok(out)
}

fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// How specific `pattern` is for `name`, if it matches.
fn specificity(pattern: &str, name: &str) -> Option<usize> {
    if pattern == "*" {
        Some(0)
    } else if let Some(suffix) = pattern.strip_prefix("*.") {
        (name.len() > suffix.len() + 1
            && name.ends_with(suffix)
            && name.as_bytes()[name.len() - suffix.len() - 1] == b'.')
            .then_some(1 + suffix.len())
    } else {
        (pattern == name).then_some(1000 + name.len())
    }
}

/// Every (pattern, action), with `include` expanded.
fn expanded(policy: &NetworkPolicy) -> Vec<(String, PolicyAction)> {
    let mut out = Vec::new();
    for rule in &policy.rules {
        match (&rule.domain, rule.action, &rule.include) {
            (Some(d), Some(a), _) => out.push((normalise(d), a)),
            (_, _, Some(inc)) if inc == "defaults" => out.extend(
                DEFAULTS
                    .iter()
                    .map(|d| (d.to_string(), PolicyAction::Allow)),
            ),
            _ => {}
        }
    }
    out
}

/// Whether `name` may be resolved and reached.
pub fn allows(policy: &NetworkPolicy, name: &str) -> bool {
    let name = normalise(name);
    let mut best: Option<(usize, PolicyAction)> = None;
    for (pattern, action) in expanded(policy) {
        if let Some(s) = specificity(&pattern, &name) {
            best = match best {
                Some((b, a)) if b > s || (b == s && a == PolicyAction::Deny) => Some((b, a)),
                _ => Some((s, action)),
            };
        }
    }
    best.is_none_or(|(_, a)| a == PolicyAction::Allow)
}

/// Whether only allowed names' addresses are reachable (`*` denied).
pub fn restrictive(policy: &NetworkPolicy) -> bool {
    expanded(policy)
        .iter()
        .any(|(p, a)| p == "*" && *a == PolicyAction::Deny)
}

/// Exact denied names (their addresses are blocked up front).
pub fn denied_names(policy: &NetworkPolicy) -> Vec<String> {
    expanded(policy)
        .into_iter()
        .filter(|(p, a)| *a == PolicyAction::Deny && !p.starts_with('*'))
        .map(|(p, _)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprites_api::policy::PolicyRule;

    fn p(rules: Vec<PolicyRule>) -> NetworkPolicy {
        validate(&NetworkPolicy { rules }).unwrap()
    }

    #[test]
    fn no_rules_allow_everything() {
        let pol = p(vec![]);
        assert!(allows(&pol, "example.com"));
        assert!(!restrictive(&pol));
    }

    #[test]
    fn most_specific_rule_wins() {
        let pol = p(vec![
            PolicyRule::deny("*"),
            PolicyRule::allow("*.github.com"),
            PolicyRule::deny("evil.github.com"),
            PolicyRule::allow("example.com."),
        ]);
        assert!(restrictive(&pol));
        assert!(allows(&pol, "api.github.com"));
        assert!(allows(&pol, "API.GitHub.com."));
        assert!(!allows(&pol, "github.com"));
        assert!(!allows(&pol, "evil.github.com"));
        assert!(!allows(&pol, "notgithub.com"));
        assert!(allows(&pol, "example.com"));
        assert!(!allows(&pol, "other.org"));
    }

    #[test]
    fn deny_wins_a_tie_and_defaults_expand() {
        let pol = p(vec![
            PolicyRule::allow("a.test"),
            PolicyRule::deny("a.test"),
        ]);
        assert!(!allows(&pol, "a.test"));
        assert_eq!(denied_names(&pol), vec!["a.test".to_string()]);
        let pol = p(vec![PolicyRule::include_defaults(), PolicyRule::deny("*")]);
        assert!(allows(&pol, "pypi.org"));
        assert!(allows(&pol, "files.pythonhosted.org"));
        assert!(!allows(&pol, "example.com"));
    }

    #[test]
    fn malformed_rules_are_refused() {
        let bad = |r: PolicyRule| validate(&NetworkPolicy { rules: vec![r] }).is_err();
        assert!(bad(PolicyRule::default()));
        assert!(bad(PolicyRule {
            include: Some("everything".into()),
            ..Default::default()
        }));
        assert!(bad(PolicyRule::allow("a b.com")));
        assert!(bad(PolicyRule::allow("*.a..b")));
        assert!(bad(PolicyRule {
            domain: Some("x.com".into()),
            action: Some(PolicyAction::Allow),
            include: Some("defaults".into()),
        }));
    }
}
