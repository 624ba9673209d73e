//! `sprite-env checkpoints ...` against a real HTTP server on a Unix socket
//! that serves canned answers the way the daemon's in-sprite API does.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sprites_api::checkpoint::{Checkpoint, CreateCheckpointRequest};
use sprites_api::error::ErrorBody;
use tokio::sync::{mpsc, Notify};

/// What the server saw and what the client printed, shared with handlers.
#[derive(Clone, Default)]
struct Seen {
    /// `METHOD path host` of every request.
    requests: Arc<Mutex<Vec<String>>>,
    /// The comment of the last create.
    comment: Arc<Mutex<Option<String>>>,
    /// Rung by the client's output when its first line is printed.
    first_line_printed: Arc<Notify>,
}

impl Seen {
    fn record(&self, what: &str, headers: &HeaderMap) {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-");
        self.requests.lock().unwrap().push(format!("{what} {host}"));
    }
}

/// The fake in-sprite API of this file's routes.
type Server = common::FakeApi<Seen>;

impl Server {
    /// Run `sprite-env ARGS` against this server: (status, stdout, stderr).
    fn run(&self, args: &[&str]) -> (u8, String, String) {
        let mut out = Printed {
            text: Vec::new(),
            first_line: self.seen.first_line_printed.clone(),
        };
        let (code, err) = self.sprite_env(args, &mut out);
        (code, String::from_utf8_lossy(&out.text).into_owned(), err)
    }

    fn requests(&self) -> Vec<String> {
        self.seen.requests.lock().unwrap().clone()
    }
}

/// Stdout that tells the server when the first line has been printed.
struct Printed {
    text: Vec<u8>,
    first_line: Arc<Notify>,
}

impl Write for Printed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.text.contains(&b'\n') {
            self.first_line.notify_one();
        }
        Ok(())
    }
}

fn checkpoint(id: &str, comment: Option<&str>, current: bool) -> Checkpoint {
    Checkpoint {
        id: id.into(),
        create_time: format!("2026-01-05T10:3{}:00Z", &id[1..2]),
        source_id: None,
        history: Vec::new(),
        comment: comment.map(str::to_string),
        is_auto: None,
        is_current: Some(current),
    }
}

fn not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(ErrorBody::new(
            "not_found",
            format!("checkpoint {id} not found"),
        )),
    )
        .into_response()
}

/// An NDJSON answer whose chunks are sent one by one, cut mid-line on
/// purpose; `before_last` runs before the last chunk goes out.
fn ndjson<F>(chunks: Vec<&'static str>, before_last: F) -> Response
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let last = chunks.len().saturating_sub(1);
        let mut before_last = Some(Box::pin(before_last));
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i == last {
                if let Some(wait) = before_last.take() {
                    wait.await;
                }
            }
            if tx
                .send(Ok(Bytes::from_static(chunk.as_bytes())))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream))
        .expect("response")
}

fn routes(seen: Seen) -> Router {
    Router::new()
        .route("/v1/checkpoints", get(list).post(create))
        .route("/v1/checkpoint", post(create))
        .route("/v1/checkpoints/{id}", get(info))
        .route("/v1/checkpoints/{id}/restore", post(restore))
        .with_state(seen)
}

async fn list(State(seen): State<Seen>, headers: HeaderMap) -> Response {
    seen.record("GET /v1/checkpoints", &headers);
    Json(vec![
        checkpoint("v2", Some("after\tsetup"), true),
        checkpoint("v1", None, false),
        checkpoint("v0", Some("fresh"), false),
    ])
    .into_response()
}

async fn info(State(seen): State<Seen>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    seen.record(&format!("GET /v1/checkpoints/{id}"), &headers);
    match id.as_str() {
        "v2" => Json(checkpoint("v2", Some("after setup"), true)).into_response(),
        _ => not_found(&id),
    }
}

async fn create(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<CreateCheckpointRequest>,
) -> Response {
    seen.record("POST /v1/checkpoint", &headers);
    *seen.comment.lock().unwrap() = body.comment.clone();
    match body.comment.as_deref() {
        Some("fail") => ndjson(
            vec![
                "{\"type\":\"info\",\"data\":\"freezing\",\"time\":\"t\"}\n",
                "{\"type\":\"error\",\"error\":\"no space left on the volume\"}\n",
            ],
            async {},
        ),
        Some("cut") => ndjson(vec!["{\"type\":\"info\",\"data\":\"freezing\"}\n"], async {
        }),
        Some("refuse") => (
            StatusCode::CONFLICT,
            Json(ErrorBody::new(
                "conflict",
                "a checkpoint is already being taken",
            )),
        )
            .into_response(),
        _ => ndjson(
            vec![
                "{\"type\":\"info\",\"data\":\"freezing\",\"time\":\"t\"}\n{\"ty",
                "pe\":\"info\",\"data\":{\"files\":3}}\n",
                "\n{\"type\":\"complete\",\"data\":\"checkpoint v3 created\"}\n",
            ],
            async {},
        ),
    }
}

async fn restore(State(seen): State<Seen>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    seen.record(&format!("POST /v1/checkpoints/{id}/restore"), &headers);
    if id != "v1" {
        return not_found(&id);
    }
    let printed = seen.first_line_printed.clone();
    ndjson(
        vec![
            "{\"type\":\"info\",\"data\":\"restoring v1\"}\n",
            "{\"type\":\"complete\",\"data\":\"restored v1\"}",
        ],
        async move {
            // The last line only goes out once the first is on the
            // screen: a client that waits for the whole body never
            // finishes (and the timeout turns that into an error).
            if tokio::time::timeout(Duration::from_secs(10), printed.notified())
                .await
                .is_err()
            {
                eprintln!("the client did not print the first line while the stream was open");
            }
        },
    )
}

#[test]
fn list_prints_a_table_and_json() {
    let server = Server::start(routes);
    let (code, out, err) = server.run(&["checkpoints", "list"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "  ID  CREATED               COMMENT\n\
         * v2  2026-01-05T10:32:00Z  after setup\n  \
           v1  2026-01-05T10:31:00Z\n  \
           v0  2026-01-05T10:30:00Z  fresh\n"
    );
    let (code, out, _) = server.run(&["checkpoints", "list", "--json"]);
    assert_eq!(code, 0);
    let back: Vec<Checkpoint> = serde_json::from_str(&out).expect("json list");
    assert_eq!(back.len(), 3);
    assert_eq!(back[0].id, "v2");
    assert_eq!(back[0].is_current, Some(true));
    assert_eq!(
        server.requests(),
        vec!["GET /v1/checkpoints sprite", "GET /v1/checkpoints sprite"]
    );
}

#[test]
fn info_and_unknown_ids() {
    let server = Server::start(routes);
    let (code, out, _) = server.run(&["checkpoints", "info", "v2"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "id:      v2 (current)\ncreated: 2026-01-05T10:32:00Z\ncomment: after setup\n"
    );
    let (code, out, err) = server.run(&["checkpoints", "info", "v9"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "sprite-env: no checkpoint v9\n");
    let (code, _, err) = server.run(&["checkpoints", "restore", "v9"]);
    assert_eq!(code, 1);
    assert!(err.ends_with("sprite-env: no checkpoint v9\n"), "{err}");
}

#[test]
fn create_streams_progress_then_completes() {
    let server = Server::start(routes);
    let (code, out, err) = server.run(&["checkpoints", "create", "--comment", "before upgrade"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert_eq!(out, "freezing\n{\"files\":3}\ncheckpoint v3 created\n");
    assert_eq!(
        server.seen.comment.lock().unwrap().as_deref(),
        Some("before upgrade")
    );
    assert_eq!(server.requests(), vec!["POST /v1/checkpoint sprite"]);

    let (code, _, _) = server.run(&["checkpoints", "create"]);
    assert_eq!(code, 0);
    assert_eq!(*server.seen.comment.lock().unwrap(), None);
}

#[test]
fn create_failures() {
    let server = Server::start(routes);
    let (code, out, err) = server.run(&["checkpoints", "create", "-c", "fail"]);
    assert_eq!(code, 1);
    assert_eq!(out, "freezing\n");
    assert_eq!(err, "sprite-env: no space left on the volume\n");

    let (code, out, err) = server.run(&["checkpoints", "create", "-c", "cut"]);
    assert_eq!(code, 1);
    assert_eq!(out, "freezing\n");
    assert_eq!(
        err,
        "sprite-env: the API ended the stream before the checkpoint completed\n"
    );

    let (code, out, err) = server.run(&["checkpoints", "create", "-c", "refuse"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "sprite-env: a checkpoint is already being taken\n");
}

#[test]
fn restore_prints_each_line_as_it_arrives() {
    let server = Server::start(routes);
    let started = std::time::Instant::now();
    let (code, out, err) = server.run(&["checkpoints", "restore", "v1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "restoring v1\nrestored v1\n");
    assert!(err.starts_with("restoring v1: "), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the first line was not printed before the stream ended"
    );
    assert_eq!(
        server.requests(),
        vec!["POST /v1/checkpoints/v1/restore sprite"]
    );
}

#[test]
fn no_socket_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("api.sock");
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = sprite_env::run(
        [
            "sprite-env",
            "--socket",
            socket.to_str().expect("utf-8 path"),
            "checkpoints",
            "list",
        ],
        &mut sprite_env::Streams {
            out: &mut out,
            err: &mut err,
        },
    );
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&err),
        format!(
            "sprite-env: cannot reach {}: No such file or directory \
             (is this running inside a sprite?)\n",
            socket.display()
        )
    );
}

#[test]
fn usage_errors_exit_2() {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = sprite_env::run(
        ["sprite-env", "checkpoints", "restore"],
        &mut sprite_env::Streams {
            out: &mut out,
            err: &mut err,
        },
    );
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(String::from_utf8_lossy(&err).contains("<ID>"));
}
