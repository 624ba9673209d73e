//! Signal names as clients send them: `SIGTERM`, `TERM`, `term`, or `15`.

use std::str::FromStr;

use nix::sys::signal::Signal;

/// Parse a signal given by name (with or without `SIG`) or number.
pub fn parse(raw: &str) -> Result<Signal, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("empty signal name".into());
    }
    if let Ok(n) = trimmed.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal number {n}"));
    }
    let name = sprites_api::exec::signal_name(trimmed);
    Signal::from_str(&name).map_err(|_| {
        // The name is the client's: shown, but not at any length.
        let shown: String = raw.chars().take(32).collect();
        let more = if raw.chars().count() > 32 { "..." } else { "" };
        format!("unknown signal {shown:?}{more}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse("term"), Ok(Signal::SIGTERM));
        assert_eq!(parse(" KILL "), Ok(Signal::SIGKILL));
        assert_eq!(parse("2"), Ok(Signal::SIGINT));
        assert_eq!(parse("winch"), Ok(Signal::SIGWINCH));
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(parse("").is_err());
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("0").is_err());
        assert!(parse("999").is_err());
    }
}
