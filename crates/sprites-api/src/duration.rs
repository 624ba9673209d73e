//! Durations as clients write them, in query strings, JSON bodies and the
//! daemon's flags: one parser for all of them.

use std::time::Duration;

/// The largest duration the SDK form takes, in seconds (~31 years).
const MAX_SDK_SECS: f64 = 1e9;

/// A duration: `5s`, `2.5s`, `500ms`, `10m`, `1h` or a bare number of
/// seconds, as the SDKs send them; else humantime's forms (`1min`, `2days`,
/// `1h 30m`), which the API has always accepted too. `None` for anything
/// else. Callers decide whether zero is allowed.
pub fn parse_duration(s: &str) -> Option<Duration> {
    sdk_form(s).or_else(|| humantime::parse_duration(s).ok())
}

/// A number with an optional unit; fractions allowed, no unit is seconds.
fn sdk_form(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    if !secs.is_finite() || !(0.0..=MAX_SDK_SECS).contains(&secs) {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2.5s"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "s", "-1s", "abc", "NaNs", "1e99s", "5 parsecs", "1x"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    /// What the daemon's query strings took through humantime stays taken.
    #[test]
    fn humantime_forms() {
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2min"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("15sec"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250msec"), Some(Duration::from_millis(250)));
        // Past the SDK form's bound, humantime still reads it.
        assert_eq!(
            parse_duration("2000000000s"),
            Some(Duration::from_secs(2_000_000_000))
        );
    }
}
