//! `sprite sessions list|attach|kill`.

use std::time::Duration;

use anyhow::{bail, Result};
use sprites_client::{KillOptions, SessionInfo, StreamEvent};

use super::{console as console_cmd, table, Context};
use crate::cli::SessionsCommand;
use crate::console;

pub async fn run(ctx: &Context, command: SessionsCommand) -> Result<i32> {
    let sprite = ctx.sprite()?;
    match command {
        SessionsCommand::List => {
            let sessions = sprite.list_sessions().await?;
            if sessions.is_empty() {
                eprintln!("no sessions");
            } else {
                print!("{}", session_table(&sessions));
            }
            Ok(0)
        }
        SessionsCommand::Attach { id } => {
            let child = sprite.attach(&id).await?;
            console_cmd::finish(sprite.name(), console::run(child, true).await?)
        }
        SessionsCommand::Kill {
            id,
            signal,
            timeout,
        } => {
            let opts = KillOptions {
                signal: Some(signal),
                timeout: timeout.map(Duration::from_secs),
            };
            let events = sprite.kill_session(&id, &opts).await?;
            for event in &events {
                println!("{}", describe_event(event));
            }
            if let Some(failed) = events.iter().find(|e| e.kind == "error") {
                bail!(
                    "{}",
                    event_detail(failed).unwrap_or_else(|| "kill failed".into())
                );
            }
            Ok(0)
        }
    }
}

fn session_table(sessions: &[SessionInfo]) -> String {
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                yes_no(s.tty),
                yes_no(s.is_active),
                s.created.clone(),
                s.workdir.clone(),
                s.command.clone(),
            ]
        })
        .collect();
    table(&["ID", "TTY", "ACTIVE", "CREATED", "DIR", "COMMAND"], &rows)
}

fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_string()
}

/// One line per kill event: its type, then what it carries.
fn describe_event(event: &StreamEvent) -> String {
    match event_detail(event) {
        Some(detail) => format!("{}: {detail}", event.kind),
        None => event.kind.clone(),
    }
}

fn event_detail(event: &StreamEvent) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(message) = event.message.as_ref().or(event.error.as_ref()) {
        parts.push(message.clone());
    }
    match &event.data {
        Some(serde_json::Value::String(s)) => parts.push(s.clone()),
        Some(serde_json::Value::Null) | None => {}
        Some(other) => parts.push(other.to_string()),
    }
    if let Some(code) = event.exit_code {
        parts.push(format!("exit code {code}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> StreamEvent {
        serde_json::from_str(json).expect("event")
    }

    #[test]
    fn kill_events_read_as_lines() {
        assert_eq!(
            describe_event(&event(r#"{"type":"signal","data":"SIGTERM"}"#)),
            "signal: SIGTERM"
        );
        assert_eq!(
            describe_event(&event(r#"{"type":"complete","exit_code":143}"#)),
            "complete: exit code 143"
        );
        assert_eq!(
            describe_event(&event(r#"{"type":"error","message":"gone"}"#)),
            "error: gone"
        );
        assert_eq!(describe_event(&event(r#"{"type":"killed"}"#)), "killed");
    }

    #[test]
    fn sessions_table_has_a_row_each() {
        let s: SessionInfo = serde_json::from_value(serde_json::json!({
            "id": "12", "command": "bash -l", "workdir": "/home/sprite",
            "created": "2025-01-01T00:00:00Z", "is_active": true, "tty": true
        }))
        .expect("session");
        let text = session_table(&[s]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID  TTY  ACTIVE"), "{text}");
        assert!(lines[1].starts_with("12  yes  yes"), "{text}");
        assert!(lines[1].ends_with("bash -l"), "{text}");
    }
}
