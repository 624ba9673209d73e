//! Exec over plain HTTP: `POST /v1/sprites/{name}/exec`, the request body is
//! stdin, the answer streams the `0x01`/`0x02`/`0x03` framing.
//!
//! That framing has no lengths, so (as the official CLI does) each chunk of
//! the answer is read as one frame: the server must write every frame as a
//! chunk of its own. A chunk that starts with no known stream id continues
//! the previous stream, which covers a frame split in two by the network.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::Method;
use sprites_api::exec::{EXIT, STDERR, STDOUT};

use crate::child::{closed_before_exit, ExecEvent};
use crate::error::Error;
use crate::exec::{Command, Output};

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

impl Command {
    /// Run over HTTP with `stdin` as the request body (`Bytes`, a `Vec<u8>`,
    /// or [`reqwest::Body::wrap_stream`] to stream it), collecting the output.
    /// TTY mode is not available this way.
    pub async fn http_output(&self, stdin: impl Into<reqwest::Body>) -> Result<Output, Error> {
        let mut run = self.http_spawn(stdin).await?;
        let mut out = Output::default();
        while let Some(event) = run.next_event().await {
            if out.record(event?) {
                return Ok(out);
            }
        }
        Err(closed_before_exit(None))
    }

    /// Start over HTTP and read the output as it streams in.
    pub async fn http_spawn(&self, stdin: impl Into<reqwest::Body>) -> Result<HttpExec, Error> {
        if self.get_tty().is_some() {
            return Err(Error::InvalidInput(
                "HTTP exec cannot run a TTY command; use the WebSocket exec".into(),
            ));
        }
        let client = self.sprite().client();
        let req = client
            .request(Method::POST, self.exec_url(false))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(stdin);
        let resp = client.send(req).await?;
        Ok(HttpExec {
            body: Box::pin(resp.bytes_stream()),
            decoder: HttpFrameDecoder::default(),
            done: false,
        })
    }
}

/// An HTTP exec in progress: its events, up to [`ExecEvent::Exit`].
pub struct HttpExec {
    body: BodyStream,
    decoder: HttpFrameDecoder,
    done: bool,
}

impl std::fmt::Debug for HttpExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpExec")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl HttpExec {
    /// The next event; `None` after [`ExecEvent::Exit`] or an error.
    pub async fn next_event(&mut self) -> Option<Result<ExecEvent, Error>> {
        while !self.done {
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    if let Some(event) = self.decoder.push(chunk) {
                        self.done = matches!(event, ExecEvent::Exit(_));
                        return Some(Ok(event));
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(Error::from(e)));
                }
                None => {
                    self.done = true;
                    return Some(Err(closed_before_exit(None)));
                }
            }
        }
        None
    }
}

/// Turns answer chunks into events; see the module comment.
#[derive(Debug, Default)]
struct HttpFrameDecoder {
    last_stream: Option<u8>,
}

impl HttpFrameDecoder {
    fn push(&mut self, chunk: Bytes) -> Option<ExecEvent> {
        let first = *chunk.first()?;
        let (stream, payload) = match first {
            STDOUT | STDERR | EXIT => (first, chunk.slice(1..)),
            _ => (self.last_stream?, chunk),
        };
        self.last_stream = Some(stream);
        match stream {
            EXIT => Some(ExecEvent::Exit(
                payload.first().map_or(255, |&code| i32::from(code)),
            )),
            _ if payload.is_empty() => None,
            STDOUT => Some(ExecEvent::Stdout(payload)),
            _ => Some(ExecEvent::Stderr(payload)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(d: &mut HttpFrameDecoder, bytes: &'static [u8]) -> Option<ExecEvent> {
        d.push(Bytes::from_static(bytes))
    }

    #[test]
    fn one_chunk_is_one_frame() {
        let mut d = HttpFrameDecoder::default();
        assert_eq!(
            push(&mut d, b"\x01out\x02put"),
            Some(ExecEvent::Stdout(Bytes::from_static(b"out\x02put")))
        );
        assert_eq!(
            push(&mut d, b"\x02err"),
            Some(ExecEvent::Stderr(Bytes::from_static(b"err")))
        );
        assert_eq!(push(&mut d, b"\x03\x05"), Some(ExecEvent::Exit(5)));
    }

    #[test]
    fn a_split_frame_continues_its_stream() {
        let mut d = HttpFrameDecoder::default();
        assert_eq!(
            push(&mut d, b"\x02par"),
            Some(ExecEvent::Stderr(Bytes::from_static(b"par")))
        );
        assert_eq!(
            push(&mut d, b"tial"),
            Some(ExecEvent::Stderr(Bytes::from_static(b"tial")))
        );
    }

    #[test]
    fn stray_bytes_before_any_frame_are_dropped() {
        let mut d = HttpFrameDecoder::default();
        assert_eq!(push(&mut d, b"zzz"), None);
        assert_eq!(push(&mut d, b""), None);
        assert_eq!(push(&mut d, b"\x01"), None);
    }

    #[tokio::test]
    async fn tty_is_refused_before_any_request() {
        let client = crate::Client::new("http://127.0.0.1:9", "t").expect("client");
        let mut cmd = client.sprite("x").command("sh");
        cmd.tty(24, 80);
        let err = cmd.http_output(Vec::new()).await.expect_err("refused");
        assert!(matches!(err, Error::InvalidInput(_)));
    }
}
