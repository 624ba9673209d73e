//! `sprite-env services ...` against a real HTTP server on a Unix socket
//! that answers the way the daemon's in-sprite API does.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sprites_api::error::ErrorBody;
use sprites_api::service::{Service, ServiceSpec, ServiceState, SignalRequest};

/// What the server saw: `METHOD uri host` of each request, and bodies.
#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Seen {
    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-");
        self.requests
            .lock()
            .unwrap()
            .push(format!("{method} {uri} {host}"));
        if !body.is_empty() {
            self.bodies
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(body).into_owned());
        }
    }
}

/// The fake in-sprite API of this file's routes.
type Server = common::FakeApi<Seen>;

impl Server {
    /// Run `sprite-env ARGS` against this server: (status, stdout, stderr).
    fn run(&self, args: &[&str]) -> (u8, String, String) {
        let mut out = Vec::new();
        let (code, err) = self.sprite_env(args, &mut out);
        (code, String::from_utf8_lossy(&out).into_owned(), err)
    }

    fn requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.requests.lock().unwrap())
    }

    fn bodies(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.bodies.lock().unwrap())
    }
}

fn service(name: &str, status: &str, pid: Option<i32>) -> Service {
    Service {
        name: name.into(),
        cmd: "sleep".into(),
        args: vec!["300".into()],
        needs: vec![],
        http_port: None,
        env: Default::default(),
        dir: None,
        state: Some(ServiceState {
            name: name.into(),
            status: status.into(),
            pid,
            started_at: Some("2026-01-05T10:30:00Z".into()),
            error: None,
            restart_count: 0,
            next_restart_at: None,
        }),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

fn not_found(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("service {name:?} not found"),
    )
}

/// An NDJSON answer sent line by line.
fn ndjson(lines: Vec<String>) -> Response {
    let stream = futures_util::stream::iter(
        lines
            .into_iter()
            .map(|l| Ok::<_, std::io::Error>(Bytes::from(l + "\n"))),
    );
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream))
        .expect("response")
}

fn event(kind: &str, data: Option<&str>, exit_code: Option<i32>) -> String {
    let mut v = serde_json::json!({"type": kind, "timestamp": 1_767_609_000_000i64});
    if let Some(d) = data {
        v["data"] = d.into();
    }
    if let Some(c) = exit_code {
        v["exit_code"] = c.into();
    }
    if kind == "started" || kind == "complete" {
        v["log_files"] =
            serde_json::json!({"stdout": "/.sprite/logs/x.log", "stderr": "/.sprite/logs/x.log"});
    }
    v.to_string()
}

fn routes(seen: Seen) -> Router {
    Router::new()
        .route("/v1/services", get(list))
        .route("/v1/services/signal", post(signal))
        .route("/v1/services/{svc}", get(get_one).put(put).delete(delete))
        .route("/v1/services/{svc}/start", post(start))
        .route("/v1/services/{svc}/stop", post(stop))
        .route("/v1/services/{svc}/restart", post(restart))
        .route("/v1/services/{svc}/logs", get(logs))
        .with_state(seen)
}

async fn list(State(seen): State<Seen>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    seen.record(&method, &uri, &headers, b"");
    let mut db = service("db", "failed", None);
    if let Some(st) = db.state.as_mut() {
        st.restart_count = 4;
        st.error = Some("exited with code 1".into());
    }
    Json(vec![service("web", "running", Some(42)), db]).into_response()
}

async fn get_one(
    State(seen): State<Seen>,
    Path(svc): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    seen.record(&method, &uri, &headers, b"");
    match svc.as_str() {
        "web" => Json(service("web", "running", Some(42))).into_response(),
        _ => not_found(&svc),
    }
}

async fn put(
    State(seen): State<Seen>,
    Path(svc): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.record(&method, &uri, &headers, &body);
    let spec: ServiceSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    match svc.as_str() {
        "taken" => error(
            StatusCode::CONFLICT,
            "conflict",
            "service \"web\" already has an http_port",
        ),
        "ghost" => ndjson(vec![event(
            "error",
            Some(&format!("{}: command not found", spec.cmd)),
            None,
        )]),
        "once" => ndjson(vec![
            event("started", Some("pid 9"), None),
            event("stdout", Some("bye\n"), None),
            event("exit", None, Some(3)),
            event("complete", None, None),
        ]),
        "cut" => ndjson(vec![event("started", Some("pid 9"), None)]),
        _ => ndjson(vec![
            event("started", Some("pid 42"), None),
            event("stdout", Some("listening\n"), None),
            event("stderr", Some("warming up\n"), None),
            event("stdout", Some("partial "), None),
            event("stdout", Some("line\n"), None),
            event("complete", None, None),
        ]),
    }
}

async fn start(
    State(seen): State<Seen>,
    Path(svc): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    seen.record(&method, &uri, &headers, b"");
    match svc.as_str() {
        "web" => ndjson(vec![
            event("started", Some("already running (pid 42)"), None),
            event("complete", None, None),
        ]),
        _ => not_found(&svc),
    }
}

async fn stop(
    State(seen): State<Seen>,
    Path(svc): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    seen.record(&method, &uri, &headers, b"");
    match svc.as_str() {
        "idle" => error(
            StatusCode::CONFLICT,
            "conflict",
            "service \"idle\" is not running",
        ),
        _ => ndjson(vec![
            event("stopping", None, None),
            event("stdout", Some("bye\n"), None),
            event("stopped", None, Some(143)),
            event("complete", None, None),
        ]),
    }
}

async fn restart(
    State(seen): State<Seen>,
    Path(_svc): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    seen.record(&method, &uri, &headers, b"");
    ndjson(vec![
        event("stopping", None, None),
        event("stopped", None, Some(0)),
        event("started", Some("pid 43"), None),
        event("complete", None, None),
    ])
}

async fn signal(
    State(seen): State<Seen>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.record(&method, &uri, &headers, &body);
    let Ok(req) = serde_json::from_slice::<SignalRequest>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "bad body");
    };
    match req.name.as_str() {
        "idle" => error(
            StatusCode::CONFLICT,
            "conflict",
            "service \"idle\" is not running",
        ),
        "web" => StatusCode::NO_CONTENT.into_response(),
        other => not_found(other),
    }
}

async fn delete(
    State(seen): State<Seen>,
    Path(svc): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    seen.record(&method, &uri, &headers, b"");
    match svc.as_str() {
        "web" => StatusCode::NO_CONTENT.into_response(),
        _ => not_found(&svc),
    }
}

async fn logs(
    State(seen): State<Seen>,
    Path(svc): Path<String>,
    RawQuery(q): RawQuery,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    seen.record(&method, &uri, &headers, b"");
    match svc.as_str() {
        "web" => {
            // The endpoint's NDJSON: a line per log line, then `complete`.
            let line = |kind: &str, data: Option<String>| {
                let mut v = serde_json::json!({"type": kind, "timestamp": 1});
                if let Some(d) = data {
                    v["data"] = d.into();
                }
                format!("{v}\n")
            };
            let body = [
                line("stdout", Some("one\n".into())),
                line("stdout", Some(format!("two ({})\n", q.unwrap_or_default()))),
                line("complete", None),
            ]
            .concat();
            ([("content-type", "application/x-ndjson")], body).into_response()
        }
        _ => not_found(&svc),
    }
}

#[test]
fn create_sends_the_definition_and_streams_output() {
    let server = Server::start(routes);
    let (code, out, err) = server.run(&[
        "services",
        "create",
        "web",
        "--needs",
        "db",
        "--http-port",
        "8080",
        "--env",
        "MODE=dev",
        "--dir",
        "/srv",
        "--duration",
        "2s",
        "--",
        "python3",
        "-m",
        "http.server",
        "8080",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "listening\npartial line\n");
    assert_eq!(err, "web: started (pid 42)\nwarming up\n");
    assert_eq!(
        server.requests(),
        ["PUT /v1/services/web?duration=2s sprite"]
    );
    let body: serde_json::Value = serde_json::from_str(&server.bodies()[0]).expect("json body");
    assert_eq!(
        body,
        serde_json::json!({
            "cmd": "python3",
            "args": ["-m", "http.server", "8080"],
            "needs": ["db"],
            "http_port": 8080,
            "env": {"MODE": "dev"},
            "dir": "/srv",
        })
    );

    // No duration: the daemon's default (no query).
    let (code, _, _) = server.run(&["services", "create", "web", "sleep", "9"]);
    assert_eq!(code, 0);
    assert_eq!(server.requests(), ["PUT /v1/services/web sprite"]);
}

#[test]
fn create_reports_exits_and_failures() {
    let server = Server::start(routes);
    let (code, out, err) = server.run(&["services", "create", "once", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, 0, "the service exited, the create worked: {err}");
    assert_eq!(out, "bye\n");
    assert_eq!(err, "once: started (pid 9)\nonce: exited with code 3\n");

    let (code, out, err) = server.run(&["services", "create", "ghost", "--", "nope"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "sprite-env: nope: command not found\n");

    let (code, _, err) = server.run(&["services", "create", "taken", "--", "sleep", "1"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "sprite-env: service \"web\" already has an http_port\n"
    );

    let (code, _, err) = server.run(&["services", "create", "cut", "--", "sleep", "1"]);
    assert_eq!(code, 1);
    assert!(
        err.ends_with(
            "sprite-env: the API ended the stream before the operation on cut completed\n"
        ),
        "{err}"
    );
}

#[test]
fn list_and_get() {
    let server = Server::start(routes);
    let (code, out, err) = server.run(&["services", "list"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "NAME  STATUS   PID  RESTARTS  COMMAND\n\
         web   running  42   0         sleep 300\n\
         db    failed   -    4         sleep 300\n"
    );
    let (code, out, _) = server.run(&["services", "ls", "--json"]);
    assert_eq!(code, 0);
    let back: Vec<Service> = serde_json::from_str(&out).expect("json");
    assert_eq!(back.len(), 2);
    assert_eq!(back[1].state.as_ref().map(|s| s.restart_count), Some(4));

    let (code, out, _) = server.run(&["services", "get", "web"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "name:    web\nstatus:  running\npid:     42\nstarted: 2026-01-05T10:30:00Z\n\
         command: sleep 300\n"
    );
    let (code, out, err) = server.run(&["services", "get", "nope"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "sprite-env: no service nope\n");
    assert_eq!(
        server.requests(),
        [
            "GET /v1/services sprite",
            "GET /v1/services sprite",
            "GET /v1/services/web sprite",
            "GET /v1/services/nope sprite",
        ]
    );
}

#[test]
fn start_stop_restart() {
    let server = Server::start(routes);
    let (code, out, err) = server.run(&["services", "start", "web", "--duration", "1s"]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(err, "web: already running (pid 42)\n");
    let (code, _, err) = server.run(&["services", "start", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(err, "sprite-env: no service nope\n");

    let (code, out, err) = server.run(&["services", "stop", "web", "--timeout", "3s"]);
    assert_eq!(code, 0);
    assert_eq!(out, "bye\n");
    assert_eq!(err, "web: stopping\nweb: stopped (exit code 143)\n");
    let (code, _, err) = server.run(&["services", "stop", "idle"]);
    assert_eq!(code, 1);
    assert_eq!(err, "sprite-env: service \"idle\" is not running\n");

    let (code, _, err) = server.run(&[
        "services",
        "restart",
        "web",
        "--timeout",
        "1s",
        "--duration",
        "2s",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        err,
        "web: stopping\nweb: stopped (exit code 0)\nweb: started (pid 43)\n"
    );
    assert_eq!(
        server.requests(),
        [
            "POST /v1/services/web/start?duration=1s sprite",
            "POST /v1/services/nope/start sprite",
            "POST /v1/services/web/stop?timeout=3s sprite",
            "POST /v1/services/idle/stop sprite",
            "POST /v1/services/web/restart?duration=2s&timeout=1s sprite",
        ]
    );
}

#[test]
fn signal_delete_logs() {
    let server = Server::start(routes);
    let (code, out, err) = server.run(&["services", "signal", "web", "HUP"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert_eq!(server.bodies(), [r#"{"name":"web","signal":"HUP"}"#]);
    let (code, _, err) = server.run(&["services", "signal", "idle", "TERM"]);
    assert_eq!(code, 1);
    assert_eq!(err, "sprite-env: service \"idle\" is not running\n");
    let (code, _, err) = server.run(&["services", "signal", "nope", "TERM"]);
    assert_eq!(code, 1);
    assert_eq!(err, "sprite-env: no service nope\n");

    let (code, out, err) = server.run(&["services", "delete", "web"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", "deleted web\n"));
    let (code, _, err) = server.run(&["services", "rm", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(err, "sprite-env: no service nope\n");

    let (code, out, _) = server.run(&["services", "logs", "web", "-n", "2"]);
    assert_eq!((code, out.as_str()), (0, "one\ntwo (lines=2)\n"));
    let (code, _, err) = server.run(&["services", "logs", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(err, "sprite-env: no service nope\n");
    assert_eq!(
        server.requests(),
        [
            "POST /v1/services/signal sprite",
            "POST /v1/services/signal sprite",
            "POST /v1/services/signal sprite",
            "DELETE /v1/services/web sprite",
            "DELETE /v1/services/nope sprite",
            "GET /v1/services/web/logs?lines=2 sprite",
            "GET /v1/services/nope/logs?lines=100 sprite",
        ]
    );
}
