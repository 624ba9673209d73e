//! `sprite-env`: the CLI inside a sprite for the sprite's own API socket
//! (`/.sprite/api.sock`). It ships inside the static `sprite-agent` binary,
//! which runs [`main`] when called by this name. See README.md.

pub mod checkpoints;
pub mod cli;
pub mod client;
pub mod error;
pub mod ndjson;
pub mod progress;
pub mod services;
pub mod table;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::client::Client;
use crate::error::Error;

/// Where commands write: results on `out`, notes on `err`.
pub struct Streams<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// Exit status when the API answered an error or could not be reached.
pub const EXIT_FAILURE: u8 = 1;

/// Run as the process: `args` with the program name first.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    restore_sigpipe();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = run(
        args,
        &mut Streams {
            out: &mut stdout.lock(),
            err: &mut stderr.lock(),
        },
    );
    ExitCode::from(code)
}

/// Parse `args` (program name first), run the command, answer the exit
/// status: 0 done, 1 failed, 2 bad command line.
pub fn run<I, T>(args: I, io: &mut Streams<'_>) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0, mistakes to stderr.
            let to = if e.use_stderr() {
                &mut *io.err
            } else {
                &mut *io.out
            };
            let _ = write!(to, "{}", e.render());
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(io.err, "sprite-env: starting the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli, io));
    runtime.shutdown_background();
    let flushed = io.out.flush();
    match result.and(flushed.map_err(Error::from)) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(io.err, "sprite-env: {e}");
            EXIT_FAILURE
        }
    }
}

async fn dispatch(cli: Cli, io: &mut Streams<'_>) -> Result<(), Error> {
    let client = Client::new(cli.socket);
    match cli.command {
        Command::Checkpoints { command } => checkpoints::run(&client, command, io).await,
        Command::Services { command } => services::run(&client, command, io).await,
    }
}

/// Die quietly of SIGPIPE when the reader of our output goes away
/// (`sprite-env services list | head -1`), as other command-line tools do.
/// Sockets are unaffected: Rust sends with MSG_NOSIGNAL.
fn restore_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_DFL installs no handler of ours, so no code can run in
    // signal context; the process is single-threaded at this point.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
