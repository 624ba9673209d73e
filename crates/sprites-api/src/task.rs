//! Tasks: named leases that keep a sprite awake (in-sprite socket
//! `/v1/tasks`; also `/v1/sprites/{name}/tasks` on the API).

use serde::{Deserialize, Serialize};

/// Longest a task may keep a sprite awake.
pub const MAX_EXPIRE_SECS: u64 = 3600;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Task {
    pub name: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskList {
    pub tasks: Vec<Task>,
}

/// `POST /v1/tasks {name, expire}`; `PUT /v1/tasks/{name} {expire}`.
/// `expire` is seconds (a number) or a duration (`"90s"`, `"10m"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub expire: serde_json::Value,
}

/// The `expire` value as a duration: 1 s to 1 h.
pub fn parse_expire(v: &serde_json::Value) -> Result<std::time::Duration, String> {
    let d = match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 1e9)
            .map(std::time::Duration::from_secs_f64),
        serde_json::Value::String(s) => crate::duration::parse_duration(s),
        _ => None,
    }
    .ok_or_else(|| "expire must be a number of seconds or a duration like \"10m\"".to_string())?;
    if d.as_secs_f64() < 1.0 || d.as_secs() > MAX_EXPIRE_SECS {
        return Err(format!(
            "expire must be between 1 s and {MAX_EXPIRE_SECS} s (1 h)"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expire_values() {
        assert_eq!(parse_expire(&json!(90)).map(|d| d.as_secs()), Ok(90));
        assert_eq!(parse_expire(&json!("10m")).map(|d| d.as_secs()), Ok(600));
        assert_eq!(parse_expire(&json!("1h")).map(|d| d.as_secs()), Ok(3600));
        for bad in [
            json!(0),
            json!(3601),
            json!("2h"),
            json!(true),
            json!("x"),
            json!(-5),
        ] {
            assert!(parse_expire(&bad).is_err(), "{bad}");
        }
    }
}
