//! A session's output pump: reads the command's stdout/stderr (or its
//! terminal) until EOF, then publishes the exit, so every byte of output
//! goes out before the exit, however fast the command was.
//!
//! After the process exits the pump keeps reading until EOF. A background
//! grandchild may hold the pipes or terminal open forever, so draining stops
//! once no output came for [`DRAIN_IDLE`], or after [`DRAIN_MAX`] at most.

use std::future::pending;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use sprites_api::agent::{STDERR, STDOUT};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::session::pty::Master;
use crate::session::registry::Sessions;
use crate::session::scrollback::Chunk;
use crate::session::Session;

/// Largest chunk read at once (and so the largest output frame).
const READ_CHUNK: usize = 64 * 1024;
/// After the exit, stop draining once the output was quiet this long.
const DRAIN_IDLE: Duration = Duration::from_millis(200);
/// After the exit, stop draining after this long in any case.
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// How long a final status is kept for a late attach when no client saw it.
const LINGER: Duration = Duration::from_secs(60);

/// One output stream of the command.
pub enum Source {
    Pipe(pipe::Receiver),
    Pty(Arc<Master>),
}

impl Source {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Pipe(rx) => rx.read(buf).await,
            Source::Pty(master) => master.read(buf).await,
        }
    }
}

/// Read from `source` if there is one, else never complete.
async fn read_from(source: &mut Option<Source>, buf: &mut [u8]) -> io::Result<usize> {
    match source {
        Some(s) => s.read(buf).await,
        None => pending().await,
    }
}

/// Wait until the process's exit code is known.
async fn exit_code(status: &mut watch::Receiver<Option<i32>>) -> i32 {
    match status.wait_for(Option::is_some).await {
        Ok(code) => code.unwrap_or(-1),
        // The sender lives in the session, which outlives this pump.
        Err(_) => -1,
    }
}

/// Pump `stdout` (all output, for a terminal) and `stderr` into the session
/// until the command is done, publish its exit, then retire the session.
pub async fn run(
    session: Arc<Session>,
    stdout: Source,
    stderr: Option<Source>,
    sessions: Arc<Sessions>,
) {
    let mut status = session.status_watch();
    let mut out = Some(stdout);
    let mut err = stderr;
    let mut out_buf = vec![0u8; READ_CHUNK];
    let mut err_buf = vec![0u8; if err.is_some() { READ_CHUNK } else { 0 }];
    let mut code: Option<i32> = None;
    let mut exited_at = Instant::now();
    let mut last_output = Instant::now();

    while out.is_some() || err.is_some() {
        let drain_until =
            code.map(|_| (last_output.max(exited_at) + DRAIN_IDLE).min(exited_at + DRAIN_MAX));
        tokio::select! {
            r = read_from(&mut out, &mut out_buf), if out.is_some() => match r {
                Ok(n) if n > 0 => {
                    last_output = Instant::now();
                    session.publish(chunk(STDOUT, &out_buf[..n])).await;
                }
                _ => out = None,
            },
            r = read_from(&mut err, &mut err_buf), if err.is_some() => match r {
                Ok(n) if n > 0 => {
                    last_output = Instant::now();
                    session.publish(chunk(STDERR, &err_buf[..n])).await;
                }
                _ => err = None,
            },
            c = exit_code(&mut status), if code.is_none() => {
                code = Some(c);
                exited_at = Instant::now();
            }
            _ = sleep_until(drain_until), if drain_until.is_some() => break,
        }
    }
    drop((out, err));

    let code = match code {
        Some(c) => c,
        // Output closed before the exit: the process still runs.
        None => exit_code(&mut status).await,
    };
    let delivered = session.finish(code).await;
    if !delivered {
        tokio::time::sleep(LINGER).await;
    }
    sessions.remove(&session);
}

fn chunk(stream: u8, data: &[u8]) -> Chunk {
    Chunk {
        stream,
        data: Arc::from(data),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => pending().await,
    }
}
