//! A service's output: its stdout and stderr read line by line into the log
//! file and to whoever follows the service live (the event streams of
//! put/start/stop).
//!
//! Lines go to the file whole, so the two streams interleave by line. A
//! line without its newline is let out after [`PARTIAL_IDLE`] of quiet or
//! once it reaches [`PARTIAL_MAX`]. Followers get a bounded channel: one
//! that falls behind loses events, the service never waits for it.

use std::future::pending;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sprites_api::service::ServiceEvent;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::log::log;
use crate::services::logs::LogFile;
use crate::session::reaper::ExitReceiver;

const READ_CHUNK: usize = 64 * 1024;
/// A partial line is let out after this long without more output.
const PARTIAL_IDLE: Duration = Duration::from_millis(200);
/// A partial line is let out once it is this long.
const PARTIAL_MAX: usize = 16 * 1024;
/// After the exit, stop reading once the output was quiet this long...
const DRAIN_IDLE: Duration = Duration::from_millis(200);
/// ...or after this long in any case (a daemonised child may hold the pipe).
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Events buffered per follower.
const FOLLOW_QUEUE: usize = 256;

/// An event of one run of the service (`instance` counts its starts).
#[derive(Debug, Clone)]
pub struct Tagged {
    pub instance: u64,
    pub event: ServiceEvent,
}

/// Where a service's output goes: its log and its followers.
pub struct Output {
    log: Mutex<LogFile>,
    /// Only while someone follows: the channel keeps its last events until
    /// they are overwritten, which is memory an unwatched service should
    /// not hold.
    events: Mutex<Option<broadcast::Sender<Tagged>>>,
    /// Whether the last log write failed (reported once, not per line).
    log_failing: Mutex<bool>,
    name: String,
}

impl Output {
    pub fn new(log: LogFile, name: &str) -> Output {
        Output {
            log: Mutex::new(log),
            events: Mutex::new(None),
            log_failing: Mutex::new(false),
            name: name.to_string(),
        }
    }

    fn log(&self) -> MutexGuard<'_, LogFile> {
        // Each write is one call on the file: a poisoned lock is still whole.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn log_path(&self) -> String {
        self.log().path().to_string_lossy().into_owned()
    }

    fn events(&self) -> MutexGuard<'_, Option<broadcast::Sender<Tagged>>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follow events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Tagged> {
        let mut events = self.events();
        match events.as_ref() {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(FOLLOW_QUEUE);
                *events = Some(tx);
                rx
            }
        }
    }

    /// The channel to followers, if anyone follows (else it is dropped).
    fn followers(&self) -> Option<broadcast::Sender<Tagged>> {
        let mut events = self.events();
        if events.as_ref().is_some_and(|tx| tx.receiver_count() == 0) {
            *events = None;
        }
        events.clone()
    }

    /// Publish an event to followers (not the log).
    pub fn publish(&self, instance: u64, event: ServiceEvent) {
        if let Some(tx) = self.followers() {
            // A follower that left meanwhile is fine.
            let _ = tx.send(Tagged { instance, event });
        }
    }

    /// A supervisor note in the log.
    pub fn note(&self, text: &str) {
        let r = self.log().note(text);
        self.log_result(r);
    }

    /// Whole lines of one stream: to the log in one write, then to followers
    /// one event per line.
    fn lines(&self, instance: u64, kind: &'static str, bytes: &[u8]) {
        let r = self.log().write(bytes);
        self.log_result(r);
        let Some(tx) = self.followers() else {
            return;
        };
        let timestamp = now_ms();
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let _ = tx.send(Tagged {
                instance,
                event: ServiceEvent {
                    kind: kind.to_string(),
                    data: Some(String::from_utf8_lossy(line).into_owned()),
                    exit_code: None,
                    timestamp,
                    log_files: None,
                },
            });
        }
    }

    fn log_result(&self, r: std::io::Result<()>) {
        let mut failing = self.log_failing.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(()) => *failing = false,
            Err(e) => {
                if !*failing {
                    log!("service {}: writing its log: {e}", self.name);
                }
                *failing = true;
            }
        }
    }
}

/// Milliseconds since the Unix epoch, for event timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One stream's pending partial line.
struct Stream {
    kind: &'static str,
    rx: Option<pipe::Receiver>,
    partial: Vec<u8>,
    /// When the partial line got its last byte.
    partial_since: Instant,
}

impl Stream {
    fn new(kind: &'static str, fd: OwnedFd) -> Stream {
        let rx = match pipe::Receiver::from_owned_fd(fd) {
            Ok(rx) => Some(rx),
            Err(e) => {
                log!("service {kind} pipe: {e}");
                None
            }
        };
        Stream {
            kind,
            rx,
            partial: Vec::new(),
            partial_since: Instant::now(),
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.rx.as_mut() {
            Some(rx) => rx.read(buf).await,
            None => pending().await,
        }
    }

    /// Take in a chunk: let out every completed line.
    fn take(&mut self, chunk: &[u8], out: &Output, instance: u64) {
        match chunk.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                let (done, rest) = chunk.split_at(last + 1);
                if self.partial.is_empty() {
                    out.lines(instance, self.kind, done);
                } else {
                    self.partial.extend_from_slice(done);
                    out.lines(instance, self.kind, &self.partial);
                    self.partial.clear();
                }
                self.partial.extend_from_slice(rest);
            }
            None => self.partial.extend_from_slice(chunk),
        }
        self.partial_since = Instant::now();
        if self.partial.len() >= PARTIAL_MAX {
            self.flush(out, instance);
        }
    }

    fn flush(&mut self, out: &Output, instance: u64) {
        if !self.partial.is_empty() {
            out.lines(instance, self.kind, &self.partial);
            self.partial.clear();
        }
    }

    fn partial_deadline(&self) -> Option<Instant> {
        (!self.partial.is_empty()).then(|| self.partial_since + PARTIAL_IDLE)
    }
}

/// Read one run's output until it is done, and answer its exit code (the
/// process's status, or 128 + signal). Everything it wrote before exiting
/// is in the log when this returns.
pub async fn capture(
    out: Arc<Output>,
    instance: u64,
    stdout: OwnedFd,
    stderr: OwnedFd,
    mut exit: ExitReceiver,
) -> i32 {
    let mut streams = [Stream::new("stdout", stdout), Stream::new("stderr", stderr)];
    let mut out_buf = vec![0u8; READ_CHUNK];
    let mut err_buf = vec![0u8; READ_CHUNK];
    let mut code: Option<i32> = None;
    let mut exited_at = Instant::now();
    let mut last_output = Instant::now();
    loop {
        if streams.iter().all(|s| s.rx.is_none()) && code.is_some() {
            break;
        }
        let drain_until =
            code.map(|_| (last_output.max(exited_at) + DRAIN_IDLE).min(exited_at + DRAIN_MAX));
        let partial_due = streams.iter().filter_map(Stream::partial_deadline).min();
        let [s_out, s_err] = &mut streams;
        tokio::select! {
            r = s_out.read(&mut out_buf), if s_out.rx.is_some() => {
                match r {
                    Ok(n) if n > 0 => {
                        last_output = Instant::now();
                        s_out.take(&out_buf[..n], &out, instance);
                    }
                    _ => s_out.rx = None,
                }
            }
            r = s_err.read(&mut err_buf), if s_err.rx.is_some() => {
                match r {
                    Ok(n) if n > 0 => {
                        last_output = Instant::now();
                        s_err.take(&err_buf[..n], &out, instance);
                    }
                    _ => s_err.rx = None,
                }
            }
            c = &mut exit, if code.is_none() => {
                // The reaper never drops a registered sender; -1 if it did.
                code = Some(c.unwrap_or(-1));
                exited_at = Instant::now();
            }
            _ = sleep_until(partial_due), if partial_due.is_some() => {
                for s in streams.iter_mut() {
                    if s.partial_deadline().is_some_and(|d| d <= Instant::now()) {
                        s.flush(&out, instance);
                    }
                }
            }
            _ = sleep_until(drain_until), if drain_until.is_some() => break,
        }
    }
    for s in streams.iter_mut() {
        s.flush(&out, instance);
    }
    match code {
        Some(c) => c,
        // Both pipes closed before the exit (the service closed them): the
        // process still runs, wait for it.
        None => exit.await.unwrap_or(-1),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(tag: &str) -> (Output, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "sprite-agent-output-{tag}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        (Output::new(LogFile::new(&dir, "svc"), "svc"), dir)
    }

    #[tokio::test]
    async fn followers_get_lines_and_the_channel_goes_with_them() {
        let (o, dir) = out("follow");
        o.lines(1, "stdout", b"before\n");
        assert!(o.events().is_none(), "nobody follows: no channel");
        let mut rx = o.subscribe();
        o.lines(1, "stdout", b"a\nb\n");
        o.lines(1, "stderr", b"c\n");
        let got: Vec<(String, String)> = (0..3)
            .map(|_| {
                let t = rx.try_recv().expect("event");
                (t.event.kind, t.event.data.unwrap_or_default())
            })
            .collect();
        assert_eq!(
            got,
            [
                ("stdout".to_string(), "a\n".to_string()),
                ("stdout".to_string(), "b\n".to_string()),
                ("stderr".to_string(), "c\n".to_string())
            ]
        );
        drop(rx);
        o.publish(
            1,
            ServiceEvent {
                kind: "exit".into(),
                data: None,
                exit_code: Some(0),
                timestamp: now_ms(),
                log_files: None,
            },
        );
        assert!(
            o.events().is_none(),
            "the last follower left: channel dropped"
        );
        let log = std::fs::read_to_string(dir.join("svc.log")).expect("log");
        assert_eq!(log, "before\na\nb\nc\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn partial_lines_wait_for_their_end() {
        let (o, dir) = out("partial");
        let mut s = Stream {
            kind: "stdout",
            rx: None,
            partial: Vec::new(),
            partial_since: Instant::now(),
        };
        s.take(b"one\ntw", &o, 1);
        assert_eq!(s.partial, b"tw");
        s.take(b"o\nthr", &o, 1);
        assert_eq!(s.partial, b"thr");
        assert!(s.partial_deadline().is_some());
        s.flush(&o, 1);
        assert!(s.partial_deadline().is_none());
        s.take(&vec![b'x'; PARTIAL_MAX], &o, 1);
        assert!(s.partial.is_empty(), "a long partial line is let out");
        let log = std::fs::read_to_string(dir.join("svc.log")).expect("log");
        assert!(log.starts_with("one\ntwo\nthrxxx"), "{log:.20}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
