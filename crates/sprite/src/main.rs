//! `sprite`: the command-line client of a Sprites API server.

mod cli;
mod commands;
mod config;
mod console;
mod sprite_file;
mod terminal;
#[cfg(test)]
mod test_dir;
mod transfer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    terminal::install_panic_hook();
    let failure = cli.command.failure_exit_code();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(failure);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // A read of stdin may still be blocked in its thread: do not wait for it.
    runtime.shutdown_background();

    match result {
        Ok(code) => ExitCode::from(sprites_client::sprites_api::exec::exit_byte(code)),
        Err(err) if broken_pipe(&err) && stdout_gone() => ExitCode::from(STDOUT_GONE),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(failure)
        }
    }
}

/// Whether the reader of our standard output has gone away (`sprite list |
/// head -1`): then the command ends quietly, as other command-line tools
/// do, with the status of a death by SIGPIPE. SIGPIPE itself stays ignored
/// (Rust's default): a server that closes its end mid-upload must give an
/// error message, not kill the CLI without a word (hyper's vectored writes
/// raise SIGPIPE on a closed socket).
pub fn stdout_gone() -> bool {
    use std::os::fd::AsFd;
    let stdout = std::io::stdout();
    let mut fds = [nix::poll::PollFd::new(
        stdout.as_fd(),
        nix::poll::PollFlags::POLLOUT,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|_| {
        fds[0].revents().is_some_and(|r| {
            r.intersects(nix::poll::PollFlags::POLLERR | nix::poll::PollFlags::POLLHUP)
        })
    })
}

/// The exit status of a command whose output's reader went away.
pub const STDOUT_GONE: u8 = 128 + 13;

fn broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
