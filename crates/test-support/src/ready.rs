//! Waiting for a server a test started: ready when it answers, as itself.
//!
//! A successful connect proves nothing: a connect to a port on which
//! nothing listens yet can succeed as a TCP self-connection (see `port`), or
//! reach another program that took the port. So a server is ready when an
//! HTTP request gets an answer that only that server gives (a header of its
//! own), and a server process that exits meanwhile ends the wait at once.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// The most of an answer's head that is read.
const MAX_HEAD: usize = 64 * 1024;

/// The head of an HTTP answer: its status and headers.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    headers: Vec<(String, String)>,
}

impl HttpAnswer {
    /// The value of header `name` (any case), if the answer has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (no body) on a fresh connection to `addr`
/// (`host:port`), answered by the server that sets header `marker`: the
/// answer's head. `Err` says why not: refused, a self-connection, a
/// timeout, bytes that are no HTTP answer, or an answer without `marker`.
pub fn http_answer(
    addr: &str,
    request: &str,
    headers: &[(&str, &str)],
    marker: &str,
) -> Result<HttpAnswer, String> {
    let answer = http_request(addr, request, headers)?;
    if answer.header(marker).is_none() {
        return Err(format!(
            "an answer ({}) without a {marker} header: another server on {addr}?",
            answer.status
        ));
    }
    Ok(answer)
}

/// `request` is `METHOD PATH`.
fn http_request(addr: &str, request: &str, headers: &[(&str, &str)]) -> Result<HttpAnswer, String> {
    let to = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut s = TcpStream::connect_timeout(&to, PROBE_TIMEOUT).map_err(|e| format!("{e}"))?;
    if self_connected(s.local_addr().ok(), s.peer_addr().ok()) {
        return Err("a TCP self-connection: nothing listens yet".into());
    }
    let timeouts = s
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(PROBE_TIMEOUT)));
    timeouts.map_err(|e| format!("socket timeouts: {e}"))?;
    let mut text =
        format!("{request} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    s.write_all(text.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let head = read_head(&mut s)?;
    parse_head(&head)
}

/// Local and peer address the same: the socket is connected to itself.
fn self_connected(local: Option<SocketAddr>, peer: Option<SocketAddr>) -> bool {
    local.is_some() && local == peer
}

/// The bytes before the blank line that ends an answer's head.
fn read_head(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(format!("no end of the head in {MAX_HEAD} bytes"));
        }
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Err(format!(
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&head)
            ));
        }
        head.extend_from_slice(&buf[..n]);
    }
}

fn parse_head(head: &[u8]) -> Result<HttpAnswer, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(HttpAnswer { status, headers })
}

/// Why a server never became ready.
#[derive(Debug)]
pub enum NotReady {
    /// Its process ended first.
    Exited(ExitStatus),
    /// No good answer in time; the last probe's failure.
    TimedOut { after: Duration, last: String },
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::Exited(status) => write!(f, "it exited ({status}) before it was ready"),
            NotReady::TimedOut { after, last } => {
                write!(f, "not ready after {after:?}; the last probe: {last}")
            }
        }
    }
}

/// Probes until `probe` says yes, `child` (the server) exits, or `timeout`
/// has passed.
pub fn wait_ready(
    child: &mut Child,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<(), String>,
) -> Result<(), NotReady> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        let last = match probe() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if started.elapsed() >= timeout {
            return Err(NotReady::TimedOut {
                after: timeout,
                last,
            });
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
}

/// A connection to `addr` once something listens there (a self-connection
/// does not count); panics after `timeout`. For servers that speak no HTTP.
pub async fn connect_when_listening(addr: SocketAddr, timeout: Duration) -> tokio::net::TcpStream {
    let started = Instant::now();
    loop {
        let why = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) if !self_connected(s.local_addr().ok(), s.peer_addr().ok()) => return s,
            Ok(_) => "a TCP self-connection".to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            started.elapsed() < timeout,
            "nothing listened on {addr} within {timeout:?}: {why}"
        );
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let a = parse_head(b"HTTP/1.1 401 Unauthorized\r\nSprite-Version: 0.1.0\r\nx: a:b")
            .expect("an answer");
        assert_eq!(a.status, 401);
        assert_eq!(a.header("sprite-version"), Some("0.1.0"));
        assert_eq!(a.header("x"), Some("a:b"));
        assert_eq!(a.header("y"), None);
        // What a self-connection reads back: our own request.
        assert!(parse_head(b"GET /v1/sprites HTTP/1.1\r\nHost: x").is_err());
        assert!(parse_head(b"").is_err());
    }

    #[test]
    fn a_server_that_answers_and_one_that_is_gone() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let server = std::thread::spawn(move || {
            for answer in [
                &b"HTTP/1.1 204 No Content\r\nmine: yes\r\n\r\n"[..],
                b"junk\r\n\r\n",
            ] {
                let (mut c, _) = l.accept().expect("accept");
                let _ = read_head(&mut c);
                c.write_all(answer).expect("answer");
            }
        });
        let a = http_answer(&addr, "GET /", &[("authorization", "Bearer t")], "mine")
            .expect("answered");
        assert_eq!(a.status, 204);
        let err = http_answer(&addr, "GET /", &[], "mine").expect_err("junk");
        assert!(err.contains("not an HTTP answer"), "{err}");
        server.join().expect("server");

        let mut gone = std::process::Command::new("true").spawn().expect("true");
        let err =
            wait_ready(&mut gone, Duration::from_secs(5), || Err("no".into())).expect_err("exited");
        assert!(matches!(err, NotReady::Exited(_)), "{err}");
    }
}
