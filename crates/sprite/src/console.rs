//! Connecting the local terminal (or pipes) to a running command: stdin in,
//! stdout and stderr out, window size changes, and Ctrl+\ to detach.

use anyhow::{Context as _, Result};
use bytes::Bytes;
use sprites_client::{ExecChild, ExecEvent, ExecStdin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::terminal::{self, RawMode};

/// Ctrl+\ : leave the session running and come back with `sessions attach`.
pub const DETACH_KEY: u8 = 0x1c;
/// Ctrl+D: what a terminal sends for end-of-file.
const EOT: u8 = 0x04;
const READ_CHUNK: usize = 32 * 1024;

/// How an interactive run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// The user detached; the session (id when known) goes on.
    Detached(Option<String>),
}

/// Pump the local stdio through `child` until it exits or the user detaches.
/// With `forward_stdin` false the command gets EOF at once. A TTY command on
/// a local terminal runs with the terminal in raw mode.
pub async fn run(mut child: ExecChild, forward_stdin: bool) -> Result<Outcome> {
    let stdin = child.take_stdin();
    let stdin = if forward_stdin { stdin } else { None };
    let raw = if child.is_tty() && stdin.is_some() && terminal::stdin_is_tty() {
        Some(RawMode::enable().context("switching the terminal to raw mode")?)
    } else {
        None
    };
    let outcome = pump(&mut child, stdin, raw.is_some()).await;
    drop(raw);
    match &outcome {
        Ok(Outcome::Detached(_)) => child.detach().await,
        _ => drop(child),
    }
    outcome
}

async fn pump(
    child: &mut ExecChild,
    mut stdin: Option<ExecStdin>,
    interactive: bool,
) -> Result<Outcome> {
    let tty = child.is_tty();
    if tty {
        if let Some(size) = terminal::size() {
            // The command may already have exited: its exit is read below.
            let _ = child.resize(size.rows, size.cols);
        }
    }
    let mut winch = signal(SignalKind::window_change()).context("watching the window size")?;
    let mut input = stdin.as_ref().map(|_| read_stdin());
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();

    loop {
        tokio::select! {
            event = child.next_event() => match event {
                Some(Ok(ExecEvent::Stdout(data))) => write_out(&mut stdout, &data).await?,
                Some(Ok(ExecEvent::Stderr(data))) => write_out(&mut stderr, &data).await?,
                Some(Ok(ExecEvent::Exit(code))) => return Ok(Outcome::Exited(code)),
                Some(Ok(ExecEvent::Text(_))) => {}
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(anyhow::anyhow!("connection closed before exit status"));
                }
            },
            chunk = next_chunk(&mut input) => match chunk {
                Some(data) => {
                    let Some(writer) = &stdin else { continue };
                    let (data, detach) = match data.iter().position(|&b| b == DETACH_KEY) {
                        Some(at) if interactive => (data.slice(..at), true),
                        _ => (data, false),
                    };
                    // A write fails once the command has exited and the
                    // stream is closing: stop sending input, keep reading
                    // until the exit status arrives.
                    if writer.write(data).await.is_err() {
                        stdin = None;
                        input = None;
                    }
                    if detach {
                        return Ok(Outcome::Detached(child.session_id().map(str::to_string)));
                    }
                }
                None => {
                    input = None;
                    // A pipe ran dry: EOF for a plain command (by dropping the
                    // writer); a terminal program gets the Ctrl+D a user types.
                    if let Some(writer) = stdin.take() {
                        if tty {
                            let _ = writer.write(vec![EOT]).await;
                        }
                    }
                }
            },
            Some(()) = winch.recv(), if tty => {
                if let Some(size) = terminal::size() {
                    let _ = child.resize(size.rows, size.cols);
                }
            }
        }
    }
}

/// Read stdin in a task of its own; `None` marks end-of-file or an error.
fn read_stdin() -> mpsc::Receiver<Option<Bytes>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None).await;
                    return;
                }
                Ok(n) => {
                    if tx
                        .send(Some(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The next stdin chunk; pending forever once stdin is done.
async fn next_chunk(input: &mut Option<mpsc::Receiver<Option<Bytes>>>) -> Option<Bytes> {
    match input {
        Some(rx) => rx.recv().await.flatten(),
        None => std::future::pending().await,
    }
}

async fn write_out(out: &mut (impl AsyncWriteExt + Unpin), data: &[u8]) -> Result<()> {
    out.write_all(data).await.context("writing output")?;
    out.flush().await.context("writing output")
}
