//! `sprite services list|create|start|stop|logs|delete`.
//!
//! Create, start and stop print the service's events as they arrive
//! (`started`, its output, `exit`, `stopped`) on stdout.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use sprites_client::{Error, Service, ServiceEvent, ServiceEvents, ServiceSpec, SpriteHandle};

use super::{sprite_error, table, Context};
use crate::cli::ServicesCommand;

pub async fn run(ctx: &Context, command: ServicesCommand) -> Result<i32> {
    let sprite = ctx.sprite()?;
    match command {
        ServicesCommand::List => list(&sprite).await,
        ServicesCommand::Create {
            name,
            needs,
            http_port,
            env,
            dir,
            watch,
            command,
        } => {
            let (cmd, args) = command
                .split_first()
                .ok_or_else(|| anyhow!("give the service's command after --"))?;
            let spec = ServiceSpec {
                cmd: cmd.clone(),
                args: args.to_vec(),
                needs,
                http_port,
                env: parse_env(&env)?,
                dir,
            };
            let events = sprite
                .create_service(&name, &spec, seconds(watch)?)
                .await
                .map_err(|e| service_error(e, &sprite, &name))?;
            follow(events).await
        }
        ServicesCommand::Start { name, watch } => {
            let events = sprite
                .start_service(&name, seconds(watch)?)
                .await
                .map_err(|e| service_error(e, &sprite, &name))?;
            follow(events).await
        }
        ServicesCommand::Stop { name, timeout } => {
            let events = sprite
                .stop_service(&name, seconds(timeout)?)
                .await
                .map_err(|e| service_error(e, &sprite, &name))?;
            follow(events).await
        }
        ServicesCommand::Logs { name, lines } => {
            let text = sprite
                .service_logs(&name, lines)
                .await
                .map_err(|e| service_error(e, &sprite, &name))?;
            print!("{text}");
            Ok(0)
        }
        ServicesCommand::Delete { name } => {
            sprite
                .delete_service(&name)
                .await
                .map_err(|e| service_error(e, &sprite, &name))?;
            println!("Deleted service {name} of sprite {}", sprite.name());
            Ok(0)
        }
    }
}

fn seconds(s: f64) -> Result<Duration> {
    if s.is_finite() && (0.0..=3600.0).contains(&s) {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(anyhow!("{s} is not a number of seconds between 0 and 3600"))
    }
}

fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(anyhow!("--env takes KEY=VALUE, not {p:?}")),
        })
        .collect()
}

/// 404s and 409s said plainly.
fn service_error(err: Error, sprite: &SpriteHandle, name: &str) -> anyhow::Error {
    match err.status() {
        Some(404) if err.to_string().contains("service") => {
            anyhow!("no service named {name} on sprite {}", sprite.name())
        }
        Some(409) => anyhow!("service {name}: {err}"),
        _ => sprite_error(err, sprite.name()),
    }
}

/// Print each event as it comes; exit 1 on an `error` event.
async fn follow(mut events: ServiceEvents) -> Result<i32> {
    while let Some(event) = events.next_event().await {
        let event = event?;
        if let Some(line) = render(&event) {
            println!("{line}");
        }
        if event.kind == "error" {
            return Ok(1);
        }
    }
    Ok(0)
}

fn render(e: &ServiceEvent) -> Option<String> {
    let data = e.data.as_deref().unwrap_or("").trim_end();
    match e.kind.as_str() {
        "stdout" | "stderr" => Some(data.to_string()),
        "exit" | "stopped" => Some(match e.exit_code {
            Some(code) => format!("[{}: exit code {code}]", e.kind),
            None => format!("[{}]", e.kind),
        }),
        "error" => Some(format!("error: {data}")),
        "complete" => None,
        other if data.is_empty() => Some(format!("[{other}]")),
        other => Some(format!("[{other}] {data}")),
    }
}

async fn list(sprite: &SpriteHandle) -> Result<i32> {
    let services = sprite
        .services()
        .await
        .map_err(|e| sprite_error(e, sprite.name()))?;
    if services.is_empty() {
        eprintln!("no services on sprite {}", sprite.name());
    } else {
        print!("{}", services_table(&services));
    }
    Ok(0)
}

fn services_table(services: &[Service]) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            let state = s.state.as_ref();
            let status = state.map(|st| st.status.clone()).unwrap_or_default();
            let pid = state
                .and_then(|st| st.pid)
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into());
            let restarts = state.map(|st| st.restart_count).unwrap_or(0).to_string();
            let command = std::iter::once(s.cmd.as_str())
                .chain(s.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            vec![s.name.clone(), status, pid, restarts, command]
        })
        .collect();
    table(&["NAME", "STATUS", "PID", "RESTARTS", "COMMAND"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs() {
        let env = parse_env(&["A=1".into(), "B=x=y".into()]).expect("env");
        assert_eq!(env["B"], "x=y");
        assert!(parse_env(&["=1".into()]).is_err());
        assert!(parse_env(&["A".into()]).is_err());
    }

    #[test]
    fn rendering() {
        let ev = |kind: &str, data: Option<&str>, code: Option<i32>| ServiceEvent {
            kind: kind.into(),
            data: data.map(String::from),
            exit_code: code,
            timestamp: 0,
            log_files: None,
        };
        assert_eq!(
            render(&ev("stdout", Some("hi\n"), None)).as_deref(),
            Some("hi")
        );
        assert_eq!(
            render(&ev("exit", None, Some(3))).as_deref(),
            Some("[exit: exit code 3]")
        );
        assert_eq!(render(&ev("complete", None, None)), None);
        assert_eq!(
            render(&ev("started", None, None)).as_deref(),
            Some("[started]")
        );
        assert!(seconds(-1.0).is_err() && seconds(f64::NAN).is_err());
    }
}
