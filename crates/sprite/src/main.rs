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
    restore_sigpipe();
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
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(failure)
        }
    }
}

/// Die quietly of SIGPIPE when the reader of our output goes away
/// (`sprite list | head -1`), as other command-line tools do, instead of
/// failing every later write. Sockets are unaffected: Rust sends with
/// MSG_NOSIGNAL.
fn restore_sigpipe() {
    // SAFETY: setting a signal's disposition to the default has no memory
    // effects, and no other thread exists yet to race with it.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
