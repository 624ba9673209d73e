//! Query strings with repeated keys (`cmd=a&cmd=b`), which serde's
//! urlencoded deserializer cannot express.

use sprites_api::duration::parse_duration;

use crate::error::ApiError;

pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some("true" | "1" | "yes") => Ok(Some(true)),
            Some("false" | "0" | "no" | "") => Ok(Some(false)),
            Some(v) => Err(ApiError::BadRequest(format!(
                "query parameter {key}={v:?} is not a boolean (true or false)"
            ))),
        }
    }

    pub fn number<T>(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>, ApiError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.parse::<T>() {
                Ok(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::BadRequest(format!(
                    "query parameter {key}={v:?} must be a number from {} to {}",
                    range.start(),
                    range.end()
                ))),
            },
        }
    }

    /// A duration: `10s`, `500ms`, `2m`, or bare seconds.
    pub fn duration(&self, key: &str) -> Result<Option<std::time::Duration>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_duration(v).map(Some).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "query parameter {key}={v:?} is not a duration (e.g. 10s)"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_and_typed_values() {
        let q = Query::parse(Some(
            "cmd=sh&cmd=-c&cmd=echo%20hi&tty=true&rows=40&env=A%3DB",
        ));
        assert_eq!(q.all("cmd"), ["sh", "-c", "echo hi"]);
        assert_eq!(q.all("env"), ["A=B"]);
        assert_eq!(q.bool("tty").expect("bool"), Some(true));
        assert_eq!(q.number::<u16>("rows", 1..=1000).expect("rows"), Some(40));
        assert_eq!(q.bool("stdin").expect("absent"), None);
        let bad = Query::parse(Some("tty=maybe&rows=0&d=forever"));
        assert!(bad.bool("tty").is_err());
        assert!(bad.number::<u16>("rows", 1..=1000).is_err());
        assert!(bad.duration("d").is_err());
        assert_eq!(
            parse_duration("10s"),
            Some(std::time::Duration::from_secs(10))
        );
        assert_eq!(parse_duration("7"), Some(std::time::Duration::from_secs(7)));
    }
}

/// Issue 19's fuzzing: any query string is read, and every typed getter
/// answers a value or a 400, never a panic.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_query_is_read(raw in ".{0,256}", key in "[a-z_]{1,8}") {
            let q = Query::parse(Some(&raw));
            let _ = q.all(&key);
            let _ = q.bool(&key);
            let _ = q.number::<u64>(&key, 0..=u64::MAX);
            let _ = q.number::<u32>(&key, 1..=100);
            let _ = q.duration(&key);
        }
    }
}
