//! A running command: the exec WebSocket split into a stdin writer, a stream
//! of output events, and resize/signal controls.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, Stream, StreamExt};
use reqwest::Url;
use sprites_api::exec::{TextMessage, EXIT, STDERR, STDIN, STDIN_EOF, STDOUT};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, USER_AGENT};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::Client;
use crate::error::Error;
use crate::exec::Output;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Waking a cold sprite happens inside the upgrade; allow for it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a polite close may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Exit status reported when the server's exit frame carries none.
const UNKNOWN_EXIT: i32 = 255;
const EVENT_BUFFER: usize = 64;
const STDIN_BUFFER: usize = 16;

/// What a running command sends back.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecEvent {
    /// Output on stdout (all output, in TTY mode).
    Stdout(Bytes),
    Stderr(Bytes),
    /// The command ended with this status; the last event.
    Exit(i32),
    /// A JSON text frame other than `exit`: `session_info`, `port_opened`,
    /// `port_closed`, ... (a non-JSON text frame arrives as a JSON string).
    Text(serde_json::Value),
}

impl ExecEvent {
    /// The typed form of a [`ExecEvent::Text`], when it is one we know.
    pub fn text_message(&self) -> Option<TextMessage> {
        match self {
            ExecEvent::Text(value) => serde_json::from_value(value.clone()).ok(),
            _ => None,
        }
    }
}

enum Control {
    Text(String),
    Close,
}

/// A command running in a sprite, from [`crate::Command::spawn`] or
/// [`crate::SpriteHandle::attach`]. Read its events with
/// [`ExecChild::next_event`] (or as a [`Stream`]); dropping it disconnects.
pub struct ExecChild {
    events: mpsc::Receiver<Result<ExecEvent, Error>>,
    stdin: Option<ExecStdin>,
    control: mpsc::UnboundedSender<Control>,
    writer: Option<JoinHandle<()>>,
    tty: bool,
    session_id: Option<String>,
    exit: Option<i32>,
}

impl std::fmt::Debug for ExecChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecChild")
            .field("tty", &self.tty)
            .field("session_id", &self.session_id)
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

/// The stdin of an [`ExecChild`]. Dropping it (or [`ExecStdin::close`])
/// sends end-of-file (non-TTY mode; a terminal has no EOF, send `0x04`).
#[derive(Debug)]
pub struct ExecStdin {
    tx: mpsc::Sender<Bytes>,
}

impl ExecStdin {
    /// Send bytes to the command's stdin; waits while the socket is busy.
    pub async fn write(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        let data = data.into();
        if data.is_empty() {
            return Ok(());
        }
        self.tx.send(data).await.map_err(|_| stream_closed())
    }

    /// Close stdin: the command reads end-of-file.
    pub fn close(self) {}
}

impl ExecChild {
    pub(crate) fn start(ws: Ws, tty: bool, stdin_open: bool, pending: Vec<Message>) -> Self {
        let (sink, stream) = ws.split();
        let (event_tx, events) = mpsc::channel(EVENT_BUFFER);
        let (control, control_rx) = mpsc::unbounded_channel();
        let (stdin_tx, stdin_rx) = mpsc::channel(STDIN_BUFFER);
        let writer = tokio::spawn(write_loop(sink, stdin_rx, control_rx, tty));
        tokio::spawn(read_loop(stream, event_tx, control.clone(), tty, pending));
        let stdin = ExecStdin { tx: stdin_tx };
        ExecChild {
            events,
            // A command without stdin gets its EOF at once, by the drop.
            stdin: stdin_open.then_some(stdin),
            control,
            writer: Some(writer),
            tty,
            session_id: None,
            exit: None,
        }
    }

    /// Whether the command runs under a pseudo-terminal.
    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// The session id from the server's `session_info`, once it has arrived
    /// (use it with [`crate::SpriteHandle::attach`]).
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The exit status, once the `Exit` event has been read.
    pub fn exit_status(&self) -> Option<i32> {
        self.exit
    }

    /// Take the stdin writer, as `child.stdin.take()` in std.
    pub fn take_stdin(&mut self) -> Option<ExecStdin> {
        self.stdin.take()
    }

    /// The next event; `None` after [`ExecEvent::Exit`] or an error.
    pub async fn next_event(&mut self) -> Option<Result<ExecEvent, Error>> {
        let item = self.events.recv().await;
        self.observe(item)
    }

    /// Tell the pseudo-terminal its new size.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), Error> {
        self.send_text(&TextMessage::Resize { cols, rows })
    }

    /// Send a signal (`TERM`, `SIGINT`, ...) to the command.
    pub fn signal(&self, signal: &str) -> Result<(), Error> {
        self.send_text(&TextMessage::Signal {
            signal: signal.trim().to_string(),
        })
    }

    /// Close stdin, discard the output, and answer the exit status.
    pub async fn wait(mut self) -> Result<i32, Error> {
        drop(self.stdin.take());
        while let Some(event) = self.next_event().await {
            if let ExecEvent::Exit(code) = event? {
                return Ok(code);
            }
        }
        self.exit.ok_or_else(|| closed_before_exit(None))
    }

    /// Close stdin and collect everything up to the exit status.
    pub async fn wait_with_output(mut self) -> Result<Output, Error> {
        drop(self.stdin.take());
        let mut out = Output::default();
        while let Some(event) = self.next_event().await {
            if out.record(event?) {
                return Ok(out);
            }
        }
        Err(closed_before_exit(None))
    }

    /// Disconnect without ending the command: a TTY session keeps running on
    /// the server and can be attached again by its [`ExecChild::session_id`].
    pub async fn detach(mut self) {
        let _ = self.control.send(Control::Close);
        if let Some(writer) = self.writer.take() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, writer).await;
        }
    }

    fn send_text(&self, msg: &TextMessage) -> Result<(), Error> {
        let json = serde_json::to_string(msg)
            .map_err(|e| Error::InvalidInput(format!("encoding {msg:?}: {e}")))?;
        self.control
            .send(Control::Text(json))
            .map_err(|_| stream_closed())
    }

    fn observe(
        &mut self,
        item: Option<Result<ExecEvent, Error>>,
    ) -> Option<Result<ExecEvent, Error>> {
        match &item {
            Some(Ok(ExecEvent::Exit(code))) => self.exit = Some(*code),
            Some(Ok(ExecEvent::Text(value))) if value["type"] == "session_info" => {
                match &value["session_id"] {
                    serde_json::Value::String(id) => self.session_id = Some(id.clone()),
                    serde_json::Value::Number(id) => self.session_id = Some(id.to_string()),
                    _ => {}
                }
                if let Some(tty) = value["tty"].as_bool() {
                    self.tty = tty;
                }
            }
            _ => {}
        }
        item
    }
}

impl Stream for ExecChild {
    type Item = Result<ExecEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.events.poll_recv(cx) {
            Poll::Ready(item) => Poll::Ready(self.observe(item)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Open an exec-family WebSocket, authenticated like every other call.
pub(crate) async fn connect(client: &Client, url: Url) -> Result<Ws, Error> {
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::InvalidInput(format!("bad WebSocket URL {url}: {e}")))?;
    let headers = req.headers_mut();
    headers.insert(AUTHORIZATION, client.auth_header().clone());
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("sprites-client-rust/", env!("CARGO_PKG_VERSION"))),
    );
    let connecting = tokio_tungstenite::connect_async(req);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Err(_) => Err(Error::Network(format!(
            "no WebSocket answer from {} within {}s",
            redact_query(&url),
            HANDSHAKE_TIMEOUT.as_secs()
        ))),
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err(Error::from_response(response.status().as_u16(), body))
        }
        Ok(Err(e)) => Err(Error::network(e)),
    }
}

/// The URL without its query (which holds the command line) for messages.
fn redact_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// Wait for the `session_info` that opens an attach stream, which says
/// whether the session is a TTY. Messages read on the way are handed back
/// so that the events stream still shows them.
pub(crate) async fn await_session_info(
    ws: &mut Ws,
    limit: Duration,
) -> Result<(bool, Vec<Message>), Error> {
    let mut seen = Vec::new();
    let waiting = async {
        loop {
            match ws.next().await {
                None => return Err(closed_before_exit(None)),
                Some(Err(e)) => return Err(read_error(e)),
                Some(Ok(Message::Close(frame))) => return Err(closed_before_exit(frame)),
                Some(Ok(Message::Text(text))) => {
                    let value: Option<serde_json::Value> = serde_json::from_str(&text).ok();
                    let tty = value
                        .as_ref()
                        .filter(|v| v["type"] == "session_info")
                        .map(|v| v["tty"].as_bool().unwrap_or(true));
                    seen.push(Message::Text(text));
                    if let Some(tty) = tty {
                        return Ok(tty);
                    }
                }
                Some(Ok(msg @ Message::Binary(_))) => {
                    // Output before any session_info: only TTY sessions are
                    // attachable, so read it raw.
                    seen.push(msg);
                    return Ok(true);
                }
                Some(Ok(_)) => {}
            }
        }
    };
    match tokio::time::timeout(limit, waiting).await {
        Ok(Ok(tty)) => Ok((tty, seen)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Protocol(
            "the server sent no session_info for the attached session".into(),
        )),
    }
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    events: mpsc::Sender<Result<ExecEvent, Error>>,
    control: mpsc::UnboundedSender<Control>,
    mut tty: bool,
    pending: Vec<Message>,
) {
    let mut pending = pending.into_iter();
    loop {
        let next = match pending.next() {
            Some(msg) => Some(Ok(msg)),
            None => tokio::select! {
                next = stream.next() => next,
                // Nobody reads any more: stop, and let the writer close.
                () = events.closed() => break,
            },
        };
        let decoded = match next {
            None => Err(closed_before_exit(None)),
            Some(Err(e)) => Err(read_error(e)),
            Some(Ok(Message::Close(frame))) => Err(closed_before_exit(frame)),
            Some(Ok(msg)) => Ok(decode(msg, &mut tty)),
        };
        match decoded {
            Ok(None) => {}
            Ok(Some(event)) => {
                let last = matches!(event, ExecEvent::Exit(_));
                if events.send(Ok(event)).await.is_err() || last {
                    break;
                }
            }
            Err(e) => {
                let _ = events.send(Err(e)).await;
                break;
            }
        }
    }
    // The exit status is in (or the stream is dead): close promptly.
    let _ = control.send(Control::Close);
}

async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    mut stdin: mpsc::Receiver<Bytes>,
    mut control: mpsc::UnboundedReceiver<Control>,
    tty: bool,
) {
    let mut stdin_open = true;
    loop {
        let msg = tokio::select! {
            biased;
            ctl = control.recv() => match ctl {
                Some(Control::Text(json)) => Message::text(json),
                Some(Control::Close) | None => break,
            },
            data = stdin.recv(), if stdin_open => match data {
                Some(data) => encode_stdin(tty, data),
                None => {
                    stdin_open = false;
                    if tty {
                        continue;
                    }
                    Message::binary(vec![STDIN_EOF])
                }
            },
        };
        if sink.send(msg).await.is_err() {
            break;
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
}

fn encode_stdin(tty: bool, data: Bytes) -> Message {
    if tty {
        return Message::Binary(data);
    }
    let mut framed = Vec::with_capacity(data.len() + 1);
    framed.push(STDIN);
    framed.extend_from_slice(&data);
    Message::binary(framed)
}

/// One server frame as an event; `None` for frames that carry nothing.
/// A `session_info` may switch the mode (attach learns it that way).
fn decode(msg: Message, tty: &mut bool) -> Option<ExecEvent> {
    match msg {
        Message::Binary(data) if *tty => (!data.is_empty()).then_some(ExecEvent::Stdout(data)),
        Message::Binary(data) => {
            let stream = *data.first()?;
            let payload = data.slice(1..);
            match stream {
                STDOUT if !payload.is_empty() => Some(ExecEvent::Stdout(payload)),
                STDERR if !payload.is_empty() => Some(ExecEvent::Stderr(payload)),
                EXIT => Some(ExecEvent::Exit(
                    payload
                        .first()
                        .map_or(UNKNOWN_EXIT, |&code| i32::from(code)),
                )),
                _ => None,
            }
        }
        Message::Text(text) => {
            let value = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(value) => value,
                Err(_) => {
                    return Some(ExecEvent::Text(serde_json::Value::String(text.to_string())))
                }
            };
            if value["type"] == "exit" {
                let code = value["exit_code"]
                    .as_i64()
                    .and_then(|c| i32::try_from(c).ok())
                    .unwrap_or(UNKNOWN_EXIT);
                return Some(ExecEvent::Exit(code));
            }
            if value["type"] == "session_info" {
                if let Some(session_tty) = value["tty"].as_bool() {
                    *tty = session_tty;
                }
            }
            Some(ExecEvent::Text(value))
        }
        _ => None,
    }
}

fn read_error(err: tungstenite::Error) -> Error {
    use tungstenite::error::ProtocolError;
    match err {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            closed_before_exit(None)
        }
        other => Error::network(other),
    }
}

pub(crate) fn closed_before_exit(frame: Option<CloseFrame>) -> Error {
    let detail = match frame {
        Some(frame) if frame.reason.is_empty() => format!(" (code {})", u16::from(frame.code)),
        Some(frame) => format!(" (code {}: {})", u16::from(frame.code), frame.reason),
        None => String::new(),
    };
    Error::Protocol(format!("connection closed before exit status{detail}"))
}

fn stream_closed() -> Error {
    Error::Protocol("the exec stream is closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    fn bin(bytes: &[u8]) -> Message {
        Message::binary(bytes.to_vec())
    }

    #[test]
    fn decodes_the_non_tty_framing() {
        let mut tty = false;
        assert_eq!(
            decode(bin(b"\x01hi"), &mut tty),
            Some(ExecEvent::Stdout(Bytes::from_static(b"hi")))
        );
        assert_eq!(
            decode(bin(b"\x02oops"), &mut tty),
            Some(ExecEvent::Stderr(Bytes::from_static(b"oops")))
        );
        assert_eq!(decode(bin(&[3, 7]), &mut tty), Some(ExecEvent::Exit(7)));
        assert_eq!(decode(bin(&[3]), &mut tty), Some(ExecEvent::Exit(255)));
        assert_eq!(decode(bin(&[1]), &mut tty), None);
        assert_eq!(decode(bin(&[]), &mut tty), None);
        assert_eq!(decode(bin(b"\x09?"), &mut tty), None);
    }

    #[test]
    fn tty_binary_frames_are_raw_stdout() {
        let mut tty = true;
        assert_eq!(
            decode(bin(b"\x01\x02raw"), &mut tty),
            Some(ExecEvent::Stdout(Bytes::from_static(b"\x01\x02raw")))
        );
    }

    #[test]
    fn text_frames_become_exit_or_json() {
        let mut tty = true;
        let exit = Message::text(r#"{"type":"exit","exit_code":42}"#);
        assert_eq!(decode(exit, &mut tty), Some(ExecEvent::Exit(42)));

        let port =
            Message::text(r#"{"type":"port_opened","port":8080,"address":"0.0.0.0","pid":9}"#);
        let event = decode(port, &mut tty).expect("event");
        assert_eq!(
            event.text_message(),
            Some(TextMessage::PortOpened(sprites_api::port::SessionPort {
                port: 8080,
                address: "0.0.0.0".into(),
                pid: 9
            }))
        );

        let junk = decode(Message::text("not json"), &mut tty);
        assert_eq!(junk, Some(ExecEvent::Text("not json".into())));
    }

    #[test]
    fn session_info_sets_the_mode() {
        let mut tty = true;
        let info = Message::text(
            r#"{"type":"session_info","session_id":"12","command":"sh","created":"x","cols":80,"rows":24,"is_owner":true,"tty":false}"#,
        );
        assert!(matches!(decode(info, &mut tty), Some(ExecEvent::Text(_))));
        assert!(!tty);
    }

    #[test]
    fn stdin_is_framed_only_without_tty() {
        assert_eq!(
            encode_stdin(false, Bytes::from_static(b"ab")),
            bin(b"\x00ab")
        );
        assert_eq!(encode_stdin(true, Bytes::from_static(b"ab")), bin(b"ab"));
    }

    #[test]
    fn closed_before_exit_names_the_close_frame() {
        assert_eq!(
            closed_before_exit(None).to_string(),
            "protocol error: connection closed before exit status"
        );
        let frame = CloseFrame {
            code: CloseCode::Error,
            reason: "agent gone".into(),
        };
        assert_eq!(
            closed_before_exit(Some(frame)).to_string(),
            "protocol error: connection closed before exit status (code 1011: agent gone)"
        );
    }

    #[test]
    fn redacts_the_command_line_from_messages() {
        let url = Url::parse("ws://h/v1/sprites/x/exec?cmd=secret").expect("url");
        assert_eq!(redact_query(&url), "ws://h/v1/sprites/x/exec");
    }
}
