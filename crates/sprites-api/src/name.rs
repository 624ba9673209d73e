//! The sprite name rule: 1..=63 characters of lowercase ASCII letters, digits
//! and dashes, neither starting nor ending with a dash (a DNS label, so that a
//! name can be a host name and a URL label).

/// Whether `key` is an environment variable name a shell accepts: ASCII
/// letters, digits and `_`, not starting with a digit.
pub fn is_env_var(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a name was refused.
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("sprite name must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "sprite name is {} characters long; at most 63 are allowed",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "sprite name {name:?} contains {c:?}; only lowercase letters, digits and dashes are allowed"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "sprite name {name:?} must not start or end with a dash"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "demo", "my-sprite-2", "0", &"a".repeat(63)] {
            assert!(validate(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "Demo",
            "a_b",
            "a.b",
            "-a",
            "a-",
            "a b",
            "é",
            "../x",
            &"a".repeat(64),
        ] {
            assert!(validate(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
