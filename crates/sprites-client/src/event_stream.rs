//! NDJSON event streams of long operations (checkpoint create and restore:
//! `info` lines while the work goes on; service create/start/stop: the
//! service's events), then one `complete` or `error` line. The HTTP status is
//! 200 before the work starts, so a failure arrives as an `error` line, not
//! as a status.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use sprites_api::service::ServiceEvent;
use sprites_api::sprite::StreamEvent;

use crate::error::Error;

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// Longest NDJSON line accepted: a server that never sends a newline must
/// not make the client buffer without end.
const MAX_LINE_BYTES: usize = 1 << 20;

/// The events of an operation as they arrive, up to and including its
/// `complete` or `error` line. Read them with [`EventStream::next_event`] or
/// as a [`Stream`]; [`EventStream::finish`] reads the rest and answers the
/// outcome.
pub struct EventStream<T = StreamEvent> {
    body: BodyStream,
    lines: LineDecoder<T>,
    eof: bool,
    done: bool,
}

/// An event that may end its stream.
pub trait Event: DeserializeOwned {
    /// Whether this is the `complete` or `error` line.
    fn is_terminal(&self) -> bool;
}

impl Event for StreamEvent {
    fn is_terminal(&self) -> bool {
        matches!(self.kind.as_str(), "complete" | "error")
    }
}

impl Event for ServiceEvent {
    fn is_terminal(&self) -> bool {
        matches!(self.kind.as_str(), "complete" | "error")
    }
}

/// The events of a service create, start, stop or restart.
pub type ServiceEvents = EventStream<ServiceEvent>;

impl<T> std::fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// How an operation ended when it succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// The `data` of the `complete` line, e.g. `Checkpoint v3 created`.
    pub message: String,
    /// The `data` of each `info` line, in order.
    pub info: Vec<String>,
}

impl<T: Event> EventStream<T> {
    pub(crate) fn new(resp: reqwest::Response) -> Self {
        Self::from_body(Box::pin(resp.bytes_stream()))
    }

    fn from_body(body: BodyStream) -> Self {
        EventStream {
            body,
            lines: LineDecoder::default(),
            eof: false,
            done: false,
        }
    }

    /// The next event; `None` after the `complete` or `error` line (or after
    /// an `Err`). A body that ends before either is [`Error::Protocol`].
    pub async fn next_event(&mut self) -> Option<Result<T, Error>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Error>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            // After the body's end, a last line without its newline still counts.
            let next = if self.eof {
                self.lines.finish()
            } else {
                self.lines.next_event()
            };
            match next {
                Ok(Some(event)) => {
                    self.done = event.is_terminal();
                    return Poll::Ready(Some(Ok(event)));
                }
                Ok(None) if self.eof => return Poll::Ready(Some(Err(self.fail(ended_early())))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(self.fail(e)))),
            }
            match self.body.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Err(e) = self.lines.push(&chunk) {
                        return Poll::Ready(Some(Err(self.fail(e))));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(self.fail(e.into())))),
                Poll::Ready(None) => self.eof = true,
            }
        }
    }

    fn fail(&mut self, err: Error) -> Error {
        self.done = true;
        err
    }
}

impl EventStream<StreamEvent> {
    /// Read to the end: the [`Completion`] on a `complete` line; an `error`
    /// line is [`Error::Operation`] with the server's message.
    pub async fn finish(self) -> Result<Completion, Error> {
        self.finish_with(|_| {}).await
    }

    /// [`EventStream::finish`], showing each event to `observe` first (to
    /// print progress as it comes).
    pub async fn finish_with(
        mut self,
        mut observe: impl FnMut(&StreamEvent),
    ) -> Result<Completion, Error> {
        let mut fold = Fold::default();
        while let Some(event) = self.next_event().await {
            let event = event?;
            observe(&event);
            if let Some(outcome) = fold.push(event) {
                return outcome;
            }
        }
        Err(ended_early())
    }
}

impl EventStream<ServiceEvent> {
    /// Read to the end: every event up to the `complete` line; an `error`
    /// line is [`Error::Operation`] with its message.
    pub async fn collect_events(mut self) -> Result<Vec<ServiceEvent>, Error> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event().await {
            let event = event?;
            match event.kind.as_str() {
                "complete" => {
                    events.push(event);
                    return Ok(events);
                }
                "error" => {
                    return Err(Error::Operation(
                        event
                            .data
                            .filter(|m| !m.trim().is_empty())
                            .unwrap_or_else(|| "the service operation failed".into()),
                    ))
                }
                _ => events.push(event),
            }
        }
        Err(ended_early())
    }
}

impl<T: Event + Unpin> Stream for EventStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_event(cx)
    }
}

/// The text an event carries: `data` when it is a string, else its JSON.
pub fn event_text(event: &StreamEvent) -> Option<String> {
    match &event.data {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    }
}

fn ended_early() -> Error {
    Error::Protocol("the event stream ended before its complete or error line".into())
}

/// Folds events into the outcome of the operation.
#[derive(Debug, Default)]
struct Fold {
    info: Vec<String>,
}

impl Fold {
    /// `Some` once the operation has ended. Unknown event types are skipped,
    /// so that a server may add its own.
    fn push(&mut self, event: StreamEvent) -> Option<Result<Completion, Error>> {
        match event.kind.as_str() {
            "info" => {
                self.info.extend(event_text(&event));
                None
            }
            "complete" => Some(Ok(Completion {
                message: event_text(&event).unwrap_or_default(),
                info: std::mem::take(&mut self.info),
            })),
            "error" => {
                let message = event
                    .error
                    .clone()
                    .or_else(|| event.message.clone())
                    .or_else(|| event_text(&event))
                    .filter(|m| !m.trim().is_empty())
                    .unwrap_or_else(|| "the server reported an error without a message".into());
                Some(Err(Error::Operation(message)))
            }
            _ => None,
        }
    }
}

/// Splits the body into lines and parses each as an event.
#[derive(Debug)]
struct LineDecoder<T> {
    buf: BytesMut,
    line_no: usize,
    _event: std::marker::PhantomData<fn() -> T>,
}

impl<T> Default for LineDecoder<T> {
    fn default() -> Self {
        LineDecoder {
            buf: BytesMut::new(),
            line_no: 0,
            _event: std::marker::PhantomData,
        }
    }
}

impl<T: DeserializeOwned> LineDecoder<T> {
    fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > MAX_LINE_BYTES && !self.buf.contains(&b'\n') {
            return Err(Error::Protocol(format!(
                "line {} of the event stream is longer than {MAX_LINE_BYTES} bytes",
                self.line_no + 1
            )));
        }
        Ok(())
    }

    /// The next complete non-blank line's event, if one is buffered.
    fn next_event(&mut self) -> Result<Option<T>, Error> {
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line = self.buf.split_to(end + 1);
            if let Some(event) = self.parse(&line[..end])? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// What is left once the body has ended.
    fn finish(&mut self) -> Result<Option<T>, Error> {
        if let Some(event) = self.next_event()? {
            return Ok(Some(event));
        }
        let rest = self.buf.split();
        self.parse(&rest)
    }

    fn parse(&mut self, line: &[u8]) -> Result<Option<T>, Error> {
        self.line_no += 1;
        if line.trim_ascii().is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(line).map(Some).map_err(|e| {
            Error::Protocol(format!(
                "line {} of the event stream is not an event ({e}): {}",
                self.line_no,
                String::from_utf8_lossy(&line[..line.len().min(200)]).trim()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(chunks: &[&'static [u8]]) -> EventStream {
        let chunks: Vec<Result<Bytes, reqwest::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        EventStream::from_body(Box::pin(futures_util::stream::iter(chunks)))
    }

    /// The kinds of every event, then the outcome of folding them.
    async fn run(chunks: &[&'static [u8]]) -> (Vec<String>, Result<Completion, Error>) {
        let mut events = stream(chunks);
        let mut kinds = Vec::new();
        while let Some(Ok(event)) = events.next().await {
            kinds.push(event.kind);
        }
        (kinds, stream(chunks).finish().await)
    }

    #[tokio::test]
    async fn info_lines_then_complete() {
        let body: &[u8] = b"{\"type\":\"info\",\"data\":\"Creating checkpoint\",\"time\":\"2026-01-05T10:30:00Z\"}\n\
            {\"type\":\"info\",\"data\":\"Syncing\"}\n\n\
            {\"type\":\"complete\",\"data\":\"Checkpoint v3 created\"}\n";
        let (kinds, outcome) = run(&[body]).await;
        assert_eq!(kinds, ["info", "info", "complete"]);
        let done = outcome.expect("success");
        assert_eq!(done.message, "Checkpoint v3 created");
        assert_eq!(done.info, ["Creating checkpoint", "Syncing"]);
    }

    #[tokio::test]
    async fn finish_with_shows_every_event() {
        let mut seen = Vec::new();
        let done = stream(&[
            b"{\"type\":\"info\",\"data\":\"a\"}\n{\"type\":\"complete\",\"data\":\"b\"}\n",
        ])
        .finish_with(|e| seen.push(event_text(e).unwrap_or_default()))
        .await
        .expect("success");
        assert_eq!(seen, ["a", "b"]);
        assert_eq!(done.message, "b");
    }

    #[tokio::test]
    async fn lines_split_across_chunks_and_crlf() {
        let (kinds, outcome) = run(&[
            b"{\"type\":\"in",
            b"fo\",\"data\":\"a\"}\r",
            b"\n{\"type\":\"complete\",",
            b"\"data\":\"done\"}",
        ])
        .await;
        assert_eq!(kinds, ["info", "complete"]);
        let done = outcome.expect("a last line without newline counts");
        assert_eq!(
            (done.info, done.message.as_str()),
            (vec!["a".into()], "done")
        );
    }

    #[tokio::test]
    async fn an_error_line_fails_with_the_servers_message() {
        let (kinds, outcome) = run(&[
            b"{\"type\":\"info\",\"data\":\"Creating\"}\n{\"type\":\"error\",\"error\":\"disk full\"}\n",
        ])
        .await;
        assert_eq!(kinds, ["info", "error"]);
        match outcome {
            Err(Error::Operation(m)) => assert_eq!(m, "disk full"),
            other => panic!("unexpected {other:?}"),
        }
        // Servers that put the text in `message` or `data` instead.
        let (_, outcome) = run(&[b"{\"type\":\"error\",\"message\":\"m\"}\n"]).await;
        assert_eq!(outcome.expect_err("fails").to_string(), "m");
        let (_, outcome) = run(&[b"{\"type\":\"error\",\"data\":\"d\"}\n"]).await;
        assert_eq!(outcome.expect_err("fails").to_string(), "d");
        let (_, outcome) = run(&[b"{\"type\":\"error\"}\n"]).await;
        assert!(matches!(outcome, Err(Error::Operation(_))));
    }

    #[tokio::test]
    async fn lines_after_the_end_are_ignored() {
        let (kinds, outcome) = run(&[
            b"{\"type\":\"complete\",\"data\":\"ok\"}\n{\"type\":\"error\",\"error\":\"late\"}\n",
        ])
        .await;
        assert_eq!(kinds, ["complete"]);
        assert!(outcome.is_ok());
    }

    #[tokio::test]
    async fn a_stream_without_its_end_is_a_protocol_error() {
        for body in [&b""[..], b"\n", b"{\"type\":\"info\",\"data\":\"x\"}\n"] {
            let (_, outcome) = run(&[body]).await;
            assert!(matches!(outcome, Err(Error::Protocol(_))), "{body:?}");
        }
        // The events before the cut still arrive, then the error, then nothing.
        let mut events = stream(&[b"{\"type\":\"info\",\"data\":\"x\"}"]);
        assert!(matches!(events.next_event().await, Some(Ok(e)) if e.kind == "info"));
        assert!(matches!(
            events.next_event().await,
            Some(Err(Error::Protocol(_)))
        ));
        assert!(events.next_event().await.is_none());
    }

    #[tokio::test]
    async fn unknown_types_are_skipped_and_garbage_is_refused() {
        let (kinds, outcome) = run(&[
            b"{\"type\":\"progress\",\"data\":{\"pct\":50}}\n{\"type\":\"complete\",\"data\":\"ok\"}\n",
        ])
        .await;
        assert_eq!(kinds, ["progress", "complete"]);
        assert!(outcome.is_ok());
        let (_, outcome) = run(&[b"{\"type\":\"info\"}\nnot json\n"]).await;
        let err = outcome.expect_err("garbage");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut lines: LineDecoder<StreamEvent> = LineDecoder::default();
        let big = vec![b'x'; MAX_LINE_BYTES + 1];
        assert!(matches!(lines.push(&big), Err(Error::Protocol(_))));
    }

    #[test]
    fn non_string_data_reads_as_json() {
        let event: StreamEvent =
            serde_json::from_str(r#"{"type":"info","data":{"a":1}}"#).expect("event");
        assert_eq!(event_text(&event).as_deref(), Some(r#"{"a":1}"#));
    }
}
