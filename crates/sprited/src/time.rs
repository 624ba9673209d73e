//! RFC 3339 timestamps as the API writes them.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// A system time as RFC 3339 (whole seconds, UTC).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Unix milliseconds as RFC 3339 (whole seconds, UTC).
pub fn rfc3339_of_ms(ms: u64) -> String {
    rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// How long ago an RFC 3339 timestamp was; `None` if it does not parse or
/// lies ahead.
pub fn age(rfc: &str) -> Option<std::time::Duration> {
    let t = OffsetDateTime::parse(rfc, &Rfc3339).ok()?;
    std::time::Duration::try_from(OffsetDateTime::now_utc() - t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_of_now_past_future_and_garbage() {
        let now = age(&now_rfc3339()).expect("now parses");
        assert!(now < std::time::Duration::from_secs(2), "{now:?}");
        let past = age(&rfc3339(
            std::time::SystemTime::now() - std::time::Duration::from_secs(60),
        ));
        assert!(
            past.is_some_and(|a| a >= std::time::Duration::from_secs(59)),
            "{past:?}"
        );
        let ahead = rfc3339(std::time::SystemTime::now() + std::time::Duration::from_secs(60));
        assert_eq!(age(&ahead), None);
        assert_eq!(age("yesterday"), None);
    }
}
