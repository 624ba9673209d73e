//! The service operations of the agent protocol: one `ServiceOp` in,
//! its replies out (see `sprites_api::agent`).
//!
//! - `list`, `get`, `logs`: one reply.
//! - `put`, `start`, `restart`: `stopping`/`stopped` if a run was replaced,
//!   `started` (or a terminal `error` if the start failed), then the run's
//!   `stdout`/`stderr` lines for `stream_ms` (0: none), an `exit` if it ends
//!   meanwhile, and `complete`.
//! - `stop`: `stopping`, the run's last output, `stopped` with its exit
//!   code, `complete`.
//! - `signal`, `delete`: `done`.
//!
//! Errors: `not_found` (unknown service), `bad_request` (name, spec,
//! signal), `conflict` (a second `http_port`; stop or signal of a service
//! that is not running; delete of a service others need), `internal`.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use sprites_api::agent::{AgentErrorCode, Reply, ServiceOp, MAX_FRAME};
use sprites_api::service::{validate_name, ServiceEvent, ServiceSpec};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::output::{now_ms, Tagged};
use super::store::Record;
use super::supervisor::{Command, Status, Step, Unit};
use super::{finish, logs, needs, warn_about_needs, Entry, Registry, Services};
use crate::session::signame;
use crate::wire;

/// Stop timeout when the request gives none (0).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest stop timeout honoured.
const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest event stream after a start.
const MAX_STREAM: Duration = Duration::from_secs(3600);
/// Lines of log when the request says 0.
const DEFAULT_LOG_LINES: usize = 100;
const MAX_LOG_LINES: usize = 10_000;

/// Why an operation was refused, before any event was sent.
#[derive(Debug)]
enum OpError {
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    Internal(String),
}

impl OpError {
    fn reply(self) -> Reply {
        let (code, message) = match self {
            OpError::NotFound(m) => (AgentErrorCode::NotFound, m),
            OpError::BadRequest(m) => (AgentErrorCode::BadRequest, m),
            OpError::Conflict(m) => (AgentErrorCode::Conflict, m),
            OpError::Internal(m) => (AgentErrorCode::Internal, m),
        };
        Reply::Error { code, message }
    }
}

fn no_service(name: &str) -> OpError {
    OpError::NotFound(format!("service {name:?} not found"))
}

/// Serve one service operation on a connection.
pub async fn serve(services: &Arc<Services>, op: ServiceOp, wr: &mut OwnedWriteHalf) {
    let result = match op {
        ServiceOp::List => list(services).await.map(Some),
        ServiceOp::Get { name } => get(services, &name).await.map(Some),
        ServiceOp::Logs { name, lines } => logs(services, &name, lines).await.map(Some),
        ServiceOp::Signal { name, signal } => send_signal(services, &name, &signal).await.map(Some),
        ServiceOp::Delete { name } => delete(services, &name).await.map(Some),
        ServiceOp::Put {
            name,
            spec,
            stream_ms,
        } => put(services, wr, name, spec, stream(stream_ms))
            .await
            .map(|_| None),
        ServiceOp::Start { name, stream_ms } => start(services, wr, &name, stream(stream_ms))
            .await
            .map(|_| None),
        ServiceOp::Stop { name, timeout_ms } => stop(services, wr, &name, stop_timeout(timeout_ms))
            .await
            .map(|_| None),
        ServiceOp::Restart {
            name,
            timeout_ms,
            stream_ms,
        } => restart(
            services,
            wr,
            &name,
            stop_timeout(timeout_ms),
            stream(stream_ms),
        )
        .await
        .map(|_| None),
    };
    let reply = match result {
        Ok(Some(reply)) => reply,
        Ok(None) => return,
        Err(e) => e.reply(),
    };
    let _ = wire::write_json(wr, &reply).await;
}

fn stream(ms: u64) -> Duration {
    Duration::from_millis(ms).min(MAX_STREAM)
}

fn stop_timeout(ms: u64) -> Duration {
    if ms == 0 {
        DEFAULT_STOP_TIMEOUT
    } else {
        Duration::from_millis(ms).min(MAX_STOP_TIMEOUT)
    }
}

/// The registry once loaded, or why services cannot be used.
async fn registry(services: &Services) -> Result<tokio::sync::MutexGuard<'_, Registry>, OpError> {
    services.booted().await;
    let reg = services.registry.lock().await;
    if let Some(why) = &reg.broken {
        return Err(OpError::Internal(why.clone()));
    }
    Ok(reg)
}

async fn list(services: &Services) -> Result<Reply, OpError> {
    let reg = registry(services).await?;
    let services = reg
        .entries
        .values()
        .map(|e| super::listing(&e.record, &e.unit))
        .collect();
    Ok(Reply::Services { services })
}

async fn get(services: &Services, name: &str) -> Result<Reply, OpError> {
    let reg = registry(services).await?;
    let service = reg.listing(name).ok_or_else(|| no_service(name))?;
    Ok(Reply::Service {
        service: Box::new(service),
    })
}

async fn logs(services: &Services, name: &str, lines: usize) -> Result<Reply, OpError> {
    {
        let reg = registry(services).await?;
        if !reg.entries.contains_key(name) {
            return Err(no_service(name));
        }
    }
    let lines = if lines == 0 {
        DEFAULT_LOG_LINES
    } else {
        lines.min(MAX_LOG_LINES)
    };
    let (dir, owned) = (services.logs_dir.clone(), name.to_string());
    let bytes = tokio::task::spawn_blocking(move || logs::tail(&dir, &owned, lines))
        .await
        .map_err(|e| OpError::Internal(e.to_string()))?
        .map_err(|e| OpError::Internal(format!("reading the log of {name}: {e}")))?;
    let file = logs::path(&services.logs_dir, name)
        .to_string_lossy()
        .into_owned();
    Ok(Reply::Logs {
        text: fit_in_frame(String::from_utf8_lossy(&bytes).into_owned()),
        // Both streams go to one file, as in `log_files` below.
        log_files: Some(BTreeMap::from([
            ("stdout".to_string(), file.clone()),
            ("stderr".to_string(), file),
        ])),
    })
}

/// Keep the end of `text` so that its reply fits in one frame (JSON escapes
/// can grow control characters sixfold).
fn fit_in_frame(mut text: String) -> String {
    const ROOM: usize = MAX_FRAME - 4096;
    loop {
        let size = serde_json::to_string(&text).map(|s| s.len()).unwrap_or(0);
        if size <= ROOM {
            return text;
        }
        let mut cut = text.len() / 2;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        // Start at a line where there is one.
        if let Some(nl) = text[cut..].find('\n') {
            cut += nl + 1;
        }
        text = text.split_off(cut);
    }
}

async fn send_signal(services: &Services, name: &str, raw: &str) -> Result<Reply, OpError> {
    let unit = {
        let reg = registry(services).await?;
        reg.entries
            .get(name)
            .map(|e| e.unit.clone())
            .ok_or_else(|| no_service(name))?
    };
    let sig = signame::parse(raw).map_err(OpError::BadRequest)?;
    let steps = unit
        .order(Command::Signal { signal: sig })
        .ok_or_else(|| no_service(name))?;
    match finish(steps).await {
        Some(Step::Signalled) => Ok(Reply::Done),
        Some(Step::NotRunning) => Err(not_running(name)),
        _ => Err(no_service(name)),
    }
}

fn not_running(name: &str) -> OpError {
    OpError::Conflict(format!("service {name:?} is not running"))
}

async fn delete(services: &Services, name: &str) -> Result<Reply, OpError> {
    let steps = {
        let mut reg = registry(services).await?;
        if !reg.entries.contains_key(name) {
            return Err(no_service(name));
        }
        let dependants: Vec<&str> = reg
            .entries
            .values()
            .filter(|e| e.record.spec.needs.iter().any(|n| n == name))
            .map(|e| e.record.name.as_str())
            .collect();
        if !dependants.is_empty() {
            return Err(OpError::Conflict(format!(
                "service {name:?} is needed by {}",
                dependants.join(", ")
            )));
        }
        remove_file(&reg, name).await?;
        let Some(entry) = reg.entries.remove(name) else {
            return Err(no_service(name));
        };
        entry.unit.order(Command::Shutdown {
            timeout: DEFAULT_STOP_TIMEOUT,
        })
    };
    if let Some(steps) = steps {
        finish(steps).await;
    }
    // The log goes too, unless a new service of that name came meanwhile.
    let reg = services.registry.lock().await;
    if !reg.entries.contains_key(name) {
        let (dir, owned) = (services.logs_dir.clone(), name.to_string());
        let _ = tokio::task::spawn_blocking(move || logs::remove(&dir, &owned)).await;
    }
    Ok(Reply::Done)
}

async fn put(
    services: &Services,
    wr: &mut OwnedWriteHalf,
    name: String,
    spec: ServiceSpec,
    stream: Duration,
) -> Result<(), OpError> {
    validate_name(&name).map_err(OpError::BadRequest)?;
    validate_spec(&spec).map_err(OpError::BadRequest)?;
    let (unit, steps, events) = {
        let mut reg = registry(services).await?;
        if let Some(port) = spec.http_port {
            if let Some(other) = reg
                .entries
                .values()
                .find(|e| e.record.name != name && e.record.spec.http_port.is_some())
            {
                return Err(OpError::Conflict(format!(
                    "service {:?} already has an http_port ({}): only one service may have one, \
                     {name:?} asked for {port}",
                    other.record.name,
                    other.record.spec.http_port.unwrap_or_default()
                )));
            }
        }
        needs::check(&name, &spec.needs, &reg.graph()).map_err(OpError::BadRequest)?;
        let record = Record {
            name: name.clone(),
            spec: spec.clone(),
            stopped: false,
        };
        save(&reg, &record).await?;
        let unit = match reg.entries.get_mut(&name) {
            Some(entry) => {
                entry.record = record.clone();
                entry.unit.set_spec(spec);
                entry.unit.clone()
            }
            None => {
                let unit = services.unit(&name, spec, false);
                reg.entries.insert(
                    name.clone(),
                    Entry {
                        record: record.clone(),
                        unit: unit.clone(),
                    },
                );
                unit
            }
        };
        warn_about_needs(&reg, &record, &unit);
        let events = unit.output.subscribe();
        let steps = unit.order(Command::Start {
            replace: true,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        });
        (unit, steps, events)
    };
    let steps = steps.ok_or_else(|| no_service(&name))?;
    follow(wr, &unit, steps, events, stream).await
}

async fn start(
    services: &Services,
    wr: &mut OwnedWriteHalf,
    name: &str,
    stream: Duration,
) -> Result<(), OpError> {
    start_or_restart(services, wr, name, false, DEFAULT_STOP_TIMEOUT, stream).await
}

async fn restart(
    services: &Services,
    wr: &mut OwnedWriteHalf,
    name: &str,
    stop_timeout: Duration,
    stream: Duration,
) -> Result<(), OpError> {
    start_or_restart(services, wr, name, true, stop_timeout, stream).await
}

/// Clear the sticky stop and start the service; `replace` stops a running
/// run first (restart), else a running service is left as it is (start).
async fn start_or_restart(
    services: &Services,
    wr: &mut OwnedWriteHalf,
    name: &str,
    replace: bool,
    stop_timeout: Duration,
    stream: Duration,
) -> Result<(), OpError> {
    let (unit, steps, events) = {
        let mut reg = registry(services).await?;
        let (unit, record) = unmark_stopped(&mut reg, name).await?;
        warn_about_needs(&reg, &record, &unit);
        let events = unit.output.subscribe();
        let steps = unit.order(Command::Start {
            replace,
            stop_timeout,
        });
        (unit, steps, events)
    };
    let steps = steps.ok_or_else(|| no_service(name))?;
    follow(wr, &unit, steps, events, stream).await
}

/// Clear the sticky stop of `name` (on disk first).
async fn unmark_stopped(reg: &mut Registry, name: &str) -> Result<(Arc<Unit>, Record), OpError> {
    let entry = reg.entries.get(name).ok_or_else(|| no_service(name))?;
    let (unit, mut record) = (entry.unit.clone(), entry.record.clone());
    if record.stopped {
        record.stopped = false;
        save(reg, &record).await?;
        if let Some(e) = reg.entries.get_mut(name) {
            e.record.stopped = false;
        }
    }
    Ok((unit, record))
}

async fn stop(
    services: &Services,
    wr: &mut OwnedWriteHalf,
    name: &str,
    timeout: Duration,
) -> Result<(), OpError> {
    let (unit, steps, events) = {
        let mut reg = registry(services).await?;
        let entry = reg.entries.get(name).ok_or_else(|| no_service(name))?;
        let unit = entry.unit.clone();
        if entry.record.stopped && unit.status() == Status::Stopped {
            return Err(not_running(name));
        }
        if !entry.record.stopped {
            let mut record = entry.record.clone();
            record.stopped = true;
            save(&reg, &record).await?;
            if let Some(e) = reg.entries.get_mut(name) {
                e.record.stopped = true;
            }
        }
        let events = unit.output.subscribe();
        let steps = unit.order(Command::Stop { timeout });
        (unit, steps, events)
    };
    let steps = steps.ok_or_else(|| no_service(name))?;
    follow(wr, &unit, steps, events, Duration::ZERO).await
}

async fn save(reg: &Registry, record: &Record) -> Result<(), OpError> {
    let store = reg
        .store
        .clone()
        .ok_or_else(|| OpError::Internal("services are not loaded".into()))?;
    let record = record.clone();
    let name = record.name.clone();
    tokio::task::spawn_blocking(move || store.save(&record))
        .await
        .map_err(|e| OpError::Internal(e.to_string()))?
        .map_err(|e| OpError::Internal(format!("saving service {name}: {e}")))
}

async fn remove_file(reg: &Registry, name: &str) -> Result<(), OpError> {
    let store = reg
        .store
        .clone()
        .ok_or_else(|| OpError::Internal("services are not loaded".into()))?;
    let owned = name.to_string();
    tokio::task::spawn_blocking(move || store.remove(&owned))
        .await
        .map_err(|e| OpError::Internal(e.to_string()))?
        .map_err(|e| OpError::Internal(format!("removing service {name}: {e}")))
}

/// What `put` refuses in a definition.
fn validate_spec(spec: &ServiceSpec) -> Result<(), String> {
    if spec.cmd.trim().is_empty() {
        return Err("cmd is required".into());
    }
    let nul = |s: &String| s.as_bytes().contains(&0);
    if nul(&spec.cmd)
        || spec.args.iter().any(nul)
        || spec.dir.iter().any(nul)
        || spec.env.iter().any(|(k, v)| nul(k) || nul(v))
    {
        return Err("cmd, args, env and dir must not contain NUL".into());
    }
    if let Some(bad) = spec.env.keys().find(|k| k.is_empty() || k.contains('=')) {
        return Err(format!("invalid environment variable name {bad:?}"));
    }
    for need in &spec.needs {
        validate_name(need)?;
    }
    Ok(())
}

fn event(kind: &str, data: Option<String>) -> ServiceEvent {
    ServiceEvent {
        kind: kind.into(),
        data,
        exit_code: None,
        timestamp: now_ms(),
        log_files: None,
    }
}

/// Both streams go to one file, in the order they came.
fn log_files(unit: &Unit) -> BTreeMap<String, String> {
    let path = unit.output.log_path();
    BTreeMap::from([
        ("stdout".to_string(), path.clone()),
        ("stderr".to_string(), path),
    ])
}

async fn send(wr: &mut OwnedWriteHalf, event: ServiceEvent) -> io::Result<()> {
    wire::write_json(
        wr,
        &Reply::ServiceEvent {
            event: Box::new(event),
        },
    )
    .await
}

/// Turn a command's steps and the service's events into the event stream,
/// ending with `complete` (or a terminal `error`).
async fn follow(
    wr: &mut OwnedWriteHalf,
    unit: &Unit,
    mut steps: mpsc::UnboundedReceiver<Step>,
    mut events: broadcast::Receiver<Tagged>,
    stream: Duration,
) -> Result<(), OpError> {
    match run_stream(wr, unit, &mut steps, &mut events, stream).await {
        Ok(Outcome::Refused(e)) => Err(e),
        // The daemon went away: the command goes on without it.
        Ok(Outcome::Sent) | Err(_) => Ok(()),
    }
}

enum Outcome {
    Sent,
    Refused(OpError),
}

async fn run_stream(
    wr: &mut OwnedWriteHalf,
    unit: &Unit,
    steps: &mut mpsc::UnboundedReceiver<Step>,
    events: &mut broadcast::Receiver<Tagged>,
    stream: Duration,
) -> io::Result<Outcome> {
    // The run being stopped (its output is shown, its exit becomes
    // `stopped`) and the run being followed after a start.
    let mut stopping: Option<u64> = None;
    let mut following: Option<u64> = None;
    let mut deadline: Option<Instant> = None;
    let mut steps_open = true;
    let mut sent_any = false;
    loop {
        // A window already over (0 included) shows nothing more, even what
        // is queued; the timer below may fire a tick late.
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        tokio::select! {
            // Steps first: a run's `started` is always queued before its
            // output, and `stopped` after its last line.
            biased;
            step = steps.recv(), if steps_open => {
                let Some(step) = step else {
                    steps_open = false;
                    if !sent_any {
                        // The supervisor ended without a word: deleted.
                        return Ok(Outcome::Refused(no_service(&unit.name)));
                    }
                    if deadline.is_none() {
                        break;
                    }
                    continue;
                };
                sent_any = true;
                match step {
                    Step::Stopping { instance } => {
                        stopping = Some(instance);
                        send(wr, event("stopping", None)).await?;
                    }
                    Step::Stopped { exit_code } => {
                        // Output published before the stop finished.
                        loop {
                            match events.try_recv() {
                                Ok(t) if Some(t.instance) == stopping && t.event.kind != "exit" => {
                                    send(wr, t.event).await?;
                                }
                                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                                Err(_) => break,
                            }
                        }
                        stopping = None;
                        let mut e = event("stopped", None);
                        e.exit_code = exit_code;
                        send(wr, e).await?;
                    }
                    Step::Started { instance, pid } | Step::AlreadyRunning { instance, pid } => {
                        let data = match step {
                            Step::AlreadyRunning { .. } => format!("already running (pid {pid})"),
                            _ => format!("pid {pid}"),
                        };
                        let mut e = event("started", Some(data));
                        e.log_files = Some(log_files(unit));
                        send(wr, e).await?;
                        following = Some(instance);
                        deadline = Some(Instant::now() + stream);
                    }
                    Step::Failed { message } => {
                        send(wr, event("error", Some(message))).await?;
                        return Ok(Outcome::Sent);
                    }
                    Step::NotRunning => return Ok(Outcome::Refused(not_running(&unit.name))),
                    Step::Signalled => {}
                }
            }
            // The window is over: what comes later is not shown, even if
            // it is already queued.
            _ = sleep_until(deadline), if deadline.is_some() => break,
            received = events.recv() => match received {
                Ok(t) => {
                    if Some(t.instance) == stopping && t.event.kind != "exit" {
                        send(wr, t.event).await?;
                    } else if Some(t.instance) == following {
                        let exited = t.event.kind == "exit";
                        send(wr, t.event).await?;
                        if exited {
                            break;
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
        }
    }
    let mut done = event("complete", None);
    done.log_files = Some(log_files(unit));
    send(wr, done).await?;
    Ok(Outcome::Sent)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked() {
        let ok = ServiceSpec {
            cmd: "sleep".into(),
            ..Default::default()
        };
        assert!(validate_spec(&ok).is_ok());
        let mut bad = ok.clone();
        bad.cmd = "  ".into();
        assert!(validate_spec(&bad).is_err());
        let mut bad = ok.clone();
        bad.args = vec!["a\0b".into()];
        assert!(validate_spec(&bad).is_err());
        let mut bad = ok.clone();
        bad.env.insert("A=B".into(), "x".into());
        assert!(validate_spec(&bad).is_err());
        let mut bad = ok.clone();
        bad.needs = vec!["../etc".into()];
        assert!(validate_spec(&bad).is_err());
    }

    #[test]
    fn long_logs_are_cut_to_fit_a_frame() {
        let line = "x".repeat(99) + "\n";
        let text = line.repeat(20_000);
        let fitted = fit_in_frame(text.clone());
        assert!(fitted.len() < MAX_FRAME);
        assert!(text.ends_with(&fitted));
        assert!(fitted.starts_with('x'));
        let short = "a\nb\n".to_string();
        assert_eq!(fit_in_frame(short.clone()), short);
        let controls = "\u{1}".repeat(MAX_FRAME / 2);
        let fitted = fit_in_frame(controls);
        assert!(serde_json::to_string(&fitted).expect("json").len() < MAX_FRAME);
    }

    #[test]
    fn timeouts_and_windows() {
        assert_eq!(stop_timeout(0), DEFAULT_STOP_TIMEOUT);
        assert_eq!(stop_timeout(1500), Duration::from_millis(1500));
        assert_eq!(stop_timeout(u64::MAX), MAX_STOP_TIMEOUT);
        assert_eq!(stream(0), Duration::ZERO);
        assert_eq!(stream(u64::MAX), MAX_STREAM);
    }
}
