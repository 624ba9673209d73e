//! `run_command`: a command run to its end, as HTTP exec runs it (the same
//! manager call, environment and user), its output gathered up to a cap
//! and the command killed at a deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use sprites_api::agent::ExecRequest;

use super::{Failure, Outcome};
use crate::agent_conn::exec::{ExecSession, SessionEvent};
use crate::error::ApiError;
use crate::AppState;

const DEFAULT_TIMEOUT_SECONDS: u64 = 60;
const MAX_TIMEOUT_SECONDS: u64 = 3600;
const DEFAULT_OUTPUT_BYTES: usize = 64 << 10;
const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// How long a command killed at its deadline has to report its exit.
const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct RunCommand {
    /// The sprite's name.
    sprite: String,
    /// The command as argv, run without a shell, e.g. ["ls", "-la"]. Give
    /// this or `shell`.
    #[serde(default)]
    command: Option<Vec<String>>,
    /// A command line run by `sh -c`, e.g. "cd src && make 2>&1 | tail".
    /// Give this or `command`.
    #[serde(default)]
    shell: Option<String>,
    /// Working directory (default: the user's home).
    #[serde(default)]
    dir: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    /// The user to run as, a name or uid (default: "sprite"; "root" for root).
    #[serde(default)]
    user: Option<String>,
    /// Seconds before the command is killed (1-3600, default 60).
    #[serde(default)]
    timeout_seconds: Option<u64>,
    /// Most bytes kept of stdout and of stderr each (1-1048576, default
    /// 65536); the rest is dropped and `truncated` says so.
    #[serde(default)]
    max_output_bytes: Option<usize>,
}

pub(super) async fn run(state: &AppState, args: RunCommand) -> Outcome {
    let cmd = match (args.command, args.shell) {
        (Some(argv), None) if !argv.is_empty() => argv,
        (None, Some(line)) => vec!["sh".into(), "-c".into(), line],
        _ => {
            return Err(bad(
                "give either command (a non-empty argv) or shell, not both",
            ))
        }
    };
    let timeout = args.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&timeout) {
        return Err(bad(format!(
            "timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}"
        )));
    }
    let cap = args.max_output_bytes.unwrap_or(DEFAULT_OUTPUT_BYTES);
    if !(1..=MAX_OUTPUT_BYTES).contains(&cap) {
        return Err(bad(format!(
            "max_output_bytes must be between 1 and {MAX_OUTPUT_BYTES}"
        )));
    }
    let rec = state.manager.get(&args.sprite)?;
    let mut env: Vec<String> = rec
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(env_pairs(args.env)?);
    let req = ExecRequest {
        cmd,
        path: None,
        env,
        dir: args.dir.filter(|d| !d.is_empty()),
        user: args.user.filter(|u| !u.is_empty()),
        tty: false,
        rows: 24,
        cols: 80,
        stdin: false,
        // A client that goes away leaves the command as HTTP exec does.
        max_run_after_disconnect_ms: Some(
            u64::try_from(state.manager.cfg.non_tty_linger.as_millis()).unwrap_or(u64::MAX),
        ),
    };
    let session = crate::api::exec::start(state, &rec, req).await?;
    let out = collect(session, Duration::from_secs(timeout), cap).await?;
    Ok(json!({
        "stdout": String::from_utf8_lossy(&out.stdout),
        "stderr": String::from_utf8_lossy(&out.stderr),
        "exit_code": out.exit_code,
        "timed_out": out.timed_out,
        "truncated": out.truncated,
    }))
}

fn bad(message: impl Into<String>) -> Failure {
    ApiError::BadRequest(message.into()).into()
}

/// `env` of a tool, checked as exec checks its `env=` (a non-empty name).
fn env_pairs(env: Option<BTreeMap<String, String>>) -> Result<Vec<String>, Failure> {
    env.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            if k.is_empty() || k.contains('=') {
                Err(bad(format!("env name {k:?} is not a variable name")))
            } else {
                Ok(format!("{k}={v}"))
            }
        })
        .collect()
}

#[derive(Debug, Default)]
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// `None` when a killed command did not report its end in time.
    exit_code: Option<i32>,
    timed_out: bool,
    truncated: bool,
}

impl Output {
    fn keep(&mut self, stderr: bool, bytes: &[u8], cap: usize) {
        let buf = if stderr {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        let room = cap.saturating_sub(buf.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Reads the session to its exit, keeping at most `cap` bytes of each
/// stream (the rest is read and dropped, so the command never blocks on a
/// full pipe); at `timeout` the command gets SIGKILL.
async fn collect(session: ExecSession, timeout: Duration, cap: usize) -> Result<Output, Failure> {
    let ExecSession {
        events: mut r,
        input: mut w,
        ..
    } = session;
    let mut out = Output::default();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        let event = tokio::select! {
            e = r.next() => e,
            () = &mut deadline => {
                if out.timed_out {
                    // Killed, and no exit came in the grace either.
                    return Ok(out);
                }
                out.timed_out = true;
                // If the signal cannot be sent the agent is gone, and the
                // next read says so.
                let _ = w.signal("SIGKILL".into()).await;
                deadline.as_mut().reset(tokio::time::Instant::now() + KILL_GRACE);
                continue;
            }
        };
        match event.map_err(|e| Failure::from(ApiError::from(e)))? {
            Some(SessionEvent::Stdout(b)) => out.keep(false, &b, cap),
            Some(SessionEvent::Stderr(b)) => out.keep(true, &b, cap),
            Some(SessionEvent::Exit(code)) => {
                out.exit_code = Some(code);
                return Ok(out);
            }
            Some(SessionEvent::PortOpened(_) | SessionEvent::PortClosed(_)) => {}
            Some(SessionEvent::Failed(message)) => {
                return Err(ApiError::Unavailable(message).into());
            }
            // The sprite stopped under the command.
            None => {
                out.exit_code = Some(crate::api::exec::KILLED_EXIT);
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_cap_is_dropped_and_told() {
        let mut out = Output::default();
        out.keep(false, b"hello", 8);
        assert!(!out.truncated);
        out.keep(false, b" world", 8);
        out.keep(true, b"err", 8);
        assert_eq!(out.stdout, b"hello wo");
        assert_eq!(out.stderr, b"err");
        assert!(out.truncated);
    }

    #[test]
    fn env_names_must_be_names() {
        let ok = env_pairs(Some(BTreeMap::from([("A".into(), "1=2".into())])));
        assert_eq!(ok.expect("ok"), vec!["A=1=2".to_string()]);
        assert!(env_pairs(Some(BTreeMap::from([("".into(), "x".into())]))).is_err());
        assert!(env_pairs(Some(BTreeMap::from([("A=B".into(), "x".into())]))).is_err());
    }
}
