//! `sprite-env services create|list|get|start|stop|restart|signal|delete|logs`.
//!
//! Streaming commands print the service's own output as it arrives (its
//! stdout on stdout, its stderr on stderr) and what happens to it
//! (`started`, `stopped`, ...) on stderr, so stdout holds only the service's
//! words.

use std::collections::BTreeMap;

use sprites_api::service::{Service, ServiceEvent, ServiceSpec, SignalRequest};

use crate::cli::{
    ListArgs, ServiceCommand, ServiceCreateArgs, ServiceGetArgs, ServiceLogsArgs, ServiceNameArgs,
    ServiceRestartArgs, ServiceSignalArgs, ServiceStartArgs, ServiceStopArgs,
};
use crate::client::{Client, Method};
use crate::error::Error;
use crate::table::table;
use crate::Streams;

pub async fn run(
    client: &Client,
    command: ServiceCommand,
    io: &mut Streams<'_>,
) -> Result<(), Error> {
    match command {
        ServiceCommand::Create(args) => create(client, args, io).await,
        ServiceCommand::List(args) => list(client, args, io).await,
        ServiceCommand::Get(args) => get(client, args, io).await,
        ServiceCommand::Start(args) => start(client, args, io).await,
        ServiceCommand::Stop(args) => stop(client, args, io).await,
        ServiceCommand::Restart(args) => restart(client, args, io).await,
        ServiceCommand::Signal(args) => signal(client, args).await,
        ServiceCommand::Delete(args) => delete(client, args, io).await,
        ServiceCommand::Logs(args) => logs(client, args, io).await,
    }
}

fn path(name: &str) -> String {
    format!("/v1/services/{name}")
}

/// `path?k=v&...` for the parameters that are set (values are checked
/// durations: nothing to escape).
fn with_query(path: String, params: &[(&str, &Option<String>)]) -> String {
    let set: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if set.is_empty() {
        path
    } else {
        format!("{path}?{}", set.join("&"))
    }
}

async fn create(
    client: &Client,
    args: ServiceCreateArgs,
    io: &mut Streams<'_>,
) -> Result<(), Error> {
    let mut command = args.command.into_iter();
    let cmd = command.next().unwrap_or_default();
    let spec = ServiceSpec {
        cmd,
        args: command.collect(),
        needs: args.needs,
        http_port: args.http_port,
        env: args.env.into_iter().collect::<BTreeMap<_, _>>(),
        dir: args.dir,
    };
    let url = with_query(path(&args.name), &[("duration", &args.duration)]);
    follow(client, Method::PUT, &url, Some(&spec), &args.name, io).await
}

async fn start(client: &Client, args: ServiceStartArgs, io: &mut Streams<'_>) -> Result<(), Error> {
    let url = with_query(
        format!("{}/start", path(&args.name)),
        &[("duration", &args.duration)],
    );
    follow(client, Method::POST, &url, None, &args.name, io).await
}

async fn stop(client: &Client, args: ServiceStopArgs, io: &mut Streams<'_>) -> Result<(), Error> {
    let url = with_query(
        format!("{}/stop", path(&args.name)),
        &[("timeout", &args.timeout)],
    );
    follow(client, Method::POST, &url, None, &args.name, io).await
}

async fn restart(
    client: &Client,
    args: ServiceRestartArgs,
    io: &mut Streams<'_>,
) -> Result<(), Error> {
    let url = with_query(
        format!("{}/restart", path(&args.name)),
        &[("duration", &args.duration), ("timeout", &args.timeout)],
    );
    follow(client, Method::POST, &url, None, &args.name, io).await
}

async fn signal(client: &Client, args: ServiceSignalArgs) -> Result<(), Error> {
    let body = SignalRequest {
        name: args.name.clone(),
        signal: args.signal,
    };
    client
        .call(Method::POST, "/v1/services/signal", Some(&body))
        .await
        .map_err(|e| no_service(e, &args.name))
}

async fn delete(client: &Client, args: ServiceNameArgs, io: &mut Streams<'_>) -> Result<(), Error> {
    client
        .call::<()>(Method::DELETE, &path(&args.name), None)
        .await
        .map_err(|e| no_service(e, &args.name))?;
    writeln!(io.err, "deleted {}", args.name)?;
    Ok(())
}

async fn logs(client: &Client, args: ServiceLogsArgs, io: &mut Streams<'_>) -> Result<(), Error> {
    // One message per line of the log (its text, newline included), then
    // `complete`: the lines go to stdout as they were before, both streams
    // of the service together, as the log keeps them.
    let url = format!("{}/logs?lines={}", path(&args.name), args.lines);
    let mut failed = None;
    client
        .ndjson(Method::GET, &url, None::<&()>, |event: ServiceEvent| {
            match event.kind.as_str() {
                "stdout" | "stderr" => write!(io.out, "{}", event.data.as_deref().unwrap_or(""))?,
                "error" => failed = event.data,
                _ => {}
            }
            Ok(())
        })
        .await
        .map_err(|e| no_service(e, &args.name))?;
    io.out.flush()?;
    match failed {
        Some(message) => Err(Error::Failed(message)),
        None => Ok(()),
    }
}

async fn list(client: &Client, args: ListArgs, io: &mut Streams<'_>) -> Result<(), Error> {
    let services: Vec<Service> = client.get_json("/v1/services").await?;
    if args.json {
        writeln!(io.out, "{}", pretty(&services)?)?;
    } else if services.is_empty() {
        writeln!(io.err, "no services")?;
    } else {
        write!(io.out, "{}", list_table(&services))?;
    }
    Ok(())
}

async fn get(client: &Client, args: ServiceGetArgs, io: &mut Streams<'_>) -> Result<(), Error> {
    let service: Service = client
        .get_json(&path(&args.name))
        .await
        .map_err(|e| no_service(e, &args.name))?;
    if args.json {
        writeln!(io.out, "{}", pretty(&service)?)?;
    } else {
        write!(io.out, "{}", info_text(&service))?;
    }
    Ok(())
}

/// Send the request and show its events as they come; the outcome is the
/// last one (`complete`, or `error` with its message).
async fn follow(
    client: &Client,
    method: Method,
    url: &str,
    body: Option<&ServiceSpec>,
    name: &str,
    io: &mut Streams<'_>,
) -> Result<(), Error> {
    let mut outcome: Option<Result<(), Error>> = None;
    client
        .ndjson(method, url, body, |event: ServiceEvent| {
            if outcome.is_some() {
                return Ok(());
            }
            match show(&event, name, io)? {
                Shown::Going => {}
                Shown::Done => outcome = Some(Ok(())),
                Shown::Failed(message) => outcome = Some(Err(Error::Failed(message))),
            }
            Ok(())
        })
        .await
        .map_err(|e| no_service(e, name))?;
    outcome.unwrap_or_else(|| {
        Err(Error::Failed(format!(
            "the API ended the stream before the operation on {name} completed"
        )))
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Shown {
    Going,
    Done,
    Failed(String),
}

/// Print one event (flushed: the caller may be watching a slow start).
fn show(event: &ServiceEvent, name: &str, io: &mut Streams<'_>) -> Result<Shown, Error> {
    let data = event.data.as_deref().unwrap_or("");
    let shown = match event.kind.as_str() {
        "stdout" => {
            io.out.write_all(data.as_bytes())?;
            io.out.flush()?;
            Shown::Going
        }
        "stderr" => {
            io.err.write_all(data.as_bytes())?;
            Shown::Going
        }
        "started" if data.is_empty() => note(io, format!("{name}: started"))?,
        "started" if data.starts_with("pid ") => note(io, format!("{name}: started ({data})"))?,
        "started" => note(io, format!("{name}: {data}"))?,
        "exit" => note(io, format!("{name}: exited with code {}", code(event)))?,
        "stopping" => note(io, format!("{name}: stopping"))?,
        "stopped" => match event.exit_code {
            Some(c) => note(io, format!("{name}: stopped (exit code {c})"))?,
            None => note(io, format!("{name}: stopped"))?,
        },
        "complete" => Shown::Done,
        "error" => Shown::Failed(if data.is_empty() {
            format!("the operation on {name} failed")
        } else {
            data.trim_end().to_string()
        }),
        _ => Shown::Going,
    };
    io.err.flush()?;
    Ok(shown)
}

fn note(io: &mut Streams<'_>, line: String) -> Result<Shown, Error> {
    writeln!(io.err, "{line}")?;
    Ok(Shown::Going)
}

fn code(event: &ServiceEvent) -> String {
    event
        .exit_code
        .map(|c| c.to_string())
        .unwrap_or_else(|| "?".into())
}

/// A 404 about a service, said plainly.
fn no_service(err: Error, name: &str) -> Error {
    if err.is_not_found() {
        Error::Failed(format!("no service {name}"))
    } else {
        err
    }
}

fn pretty<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string_pretty(value).map_err(|e| Error::BadAnswer(e.to_string()))
}

/// The command line as a shell would read it back.
fn command_line(s: &Service) -> String {
    std::iter::once(&s.cmd)
        .chain(&s.args)
        .map(|a| quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `NAME`, `STATUS`, `PID`, `RESTARTS`, `COMMAND`.
pub fn list_table(services: &[Service]) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            let st = s.state.as_ref();
            vec![
                s.name.clone(),
                st.map(|st| st.status.clone()).unwrap_or_else(|| "-".into()),
                st.and_then(|st| st.pid)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                st.map(|st| st.restart_count.to_string())
                    .unwrap_or_else(|| "0".into()),
                command_line(s).replace(char::is_control, " "),
            ]
        })
        .collect();
    table(&["NAME", "STATUS", "PID", "RESTARTS", "COMMAND"], &rows)
}

/// `key: value` lines, the keys padded to one width.
pub fn info_text(s: &Service) -> String {
    let mut fields = vec![("name", s.name.clone())];
    if let Some(st) = &s.state {
        fields.push(("status", st.status.clone()));
        if let Some(pid) = st.pid {
            fields.push(("pid", pid.to_string()));
        }
        if let Some(at) = &st.started_at {
            fields.push(("started", at.clone()));
        }
        if st.restart_count > 0 {
            fields.push(("restarts", st.restart_count.to_string()));
        }
        if let Some(at) = &st.next_restart_at {
            fields.push(("next start", at.clone()));
        }
        if let Some(e) = &st.error {
            fields.push(("error", e.clone()));
        }
    }
    fields.push(("command", command_line(s)));
    if !s.needs.is_empty() {
        fields.push(("needs", s.needs.join(", ")));
    }
    if let Some(port) = s.http_port {
        fields.push(("http port", port.to_string()));
    }
    if let Some(dir) = &s.dir {
        fields.push(("dir", dir.clone()));
    }
    for (k, v) in &s.env {
        fields.push(("env", format!("{k}={v}")));
    }
    let width = fields.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{:<width$} {}\n",
                format!("{k}:"),
                v.replace(char::is_control, " ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprites_api::service::ServiceState;

    fn service(name: &str, status: &str, pid: Option<i32>) -> Service {
        Service {
            name: name.into(),
            cmd: "python3".into(),
            args: vec!["-m".into(), "http.server".into(), "it's".into()],
            needs: vec![],
            http_port: None,
            env: BTreeMap::new(),
            dir: None,
            state: Some(ServiceState {
                name: name.into(),
                status: status.into(),
                pid,
                started_at: None,
                error: None,
                restart_count: 0,
                next_restart_at: None,
            }),
        }
    }

    #[test]
    fn table_of_services() {
        let mut db = service("db", "failed", None);
        db.cmd = "postgres".into();
        db.args = vec![];
        if let Some(st) = db.state.as_mut() {
            st.restart_count = 3;
        }
        assert_eq!(
            list_table(&[service("web", "running", Some(42)), db]),
            "NAME  STATUS   PID  RESTARTS  COMMAND\n\
             web   running  42   0         python3 -m http.server 'it'\\''s'\n\
             db    failed   -    3         postgres\n"
        );
    }

    #[test]
    fn info_of_a_service() {
        let mut s = service("web", "failed", None);
        s.needs = vec!["db".into()];
        s.http_port = Some(8080);
        s.env.insert("A".into(), "1".into());
        if let Some(st) = s.state.as_mut() {
            st.restart_count = 2;
            st.error = Some("exited with code 1".into());
            st.next_restart_at = Some("2026-01-05T10:30:00Z".into());
        }
        assert_eq!(
            info_text(&s),
            "name:       web\n\
             status:     failed\n\
             restarts:   2\n\
             next start: 2026-01-05T10:30:00Z\n\
             error:      exited with code 1\n\
             command:    python3 -m http.server 'it'\\''s'\n\
             needs:      db\n\
             http port:  8080\n\
             env:        A=1\n"
        );
    }

    #[test]
    fn queries_carry_what_is_set() {
        assert_eq!(
            with_query(
                "/v1/services/w/restart".into(),
                &[("duration", &None), ("timeout", &Some("3s".into()))]
            ),
            "/v1/services/w/restart?timeout=3s"
        );
        assert_eq!(with_query("/p".into(), &[("duration", &None)]), "/p");
    }

    #[test]
    fn events_as_lines() {
        let ev = |kind: &str, data: Option<&str>, code: Option<i32>| ServiceEvent {
            kind: kind.into(),
            data: data.map(str::to_string),
            exit_code: code,
            timestamp: 0,
            log_files: None,
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut io = Streams {
            out: &mut out,
            err: &mut err,
        };
        let seq = [
            ev("stopping", None, None),
            ev("stopped", None, Some(143)),
            ev("started", Some("pid 7"), None),
            ev("stdout", Some("hello\n"), None),
            ev("stderr", Some("warn\n"), None),
            ev("exit", None, Some(1)),
            ev("started", Some("already running (pid 7)"), None),
        ];
        for e in &seq {
            assert_eq!(show(e, "web", &mut io).unwrap(), Shown::Going);
        }
        assert_eq!(
            show(&ev("complete", None, None), "web", &mut io).unwrap(),
            Shown::Done
        );
        assert_eq!(
            show(
                &ev("error", Some("no-such: command not found\n"), None),
                "web",
                &mut io
            )
            .unwrap(),
            Shown::Failed("no-such: command not found".into())
        );
        assert_eq!(String::from_utf8_lossy(&out), "hello\n");
        assert_eq!(
            String::from_utf8_lossy(&err),
            "web: stopping\nweb: stopped (exit code 143)\nweb: started (pid 7)\nwarn\n\
             web: exited with code 1\nweb: already running (pid 7)\n"
        );
    }
}
