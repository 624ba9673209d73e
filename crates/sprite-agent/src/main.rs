//! `sprite-agent`: PID 1 inside every sprite, and the in-sprite CLI
//! `sprite-env` when called by that name. See README.md.

mod cli;
mod confine;
mod connection;
mod fds;
mod fs;
mod hosts;
mod listener;
mod log;
mod ports;
mod services;
mod session;
mod shutdown;
mod timestamp;
mod trust;
mod tunnel;
mod user;
mod wire;

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{Invocation, ListenOn};
use crate::log::log;

fn main() -> ExitCode {
    if let Some(args) = cli::sprite_env_args(std::env::args_os().collect()) {
        return sprite_env::main(args);
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == fs::WORKER_ARG)
    {
        return fs::worker_main();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == sprite_start::ARG)
    {
        // On the host, run by the daemon: starts a sandbox (whose init
        // then execs this binary again, inside).
        let args: Vec<_> = std::env::args_os().skip(2).collect();
        return ExitCode::from(u8::try_from(sprite_start::main(&args)).unwrap_or(1));
    }
    let args = std::env::args().skip(1);
    let fd_env = std::env::var(cli::LISTEN_FD_ENV).ok();
    match cli::parse(args, fd_env) {
        Ok(Invocation::Run(on)) => run(on),
        Ok(Invocation::Version) => {
            let _ = writeln!(
                std::io::stdout(),
                "sprite-agent {}",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Ok(Invocation::Help) => {
            let _ = write!(std::io::stdout(), "{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Err(e) => {
            log!("{e}");
            let _ = write!(std::io::stderr(), "{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}

fn run(on: ListenOn) -> ExitCode {
    let pid1 = std::process::id() == 1;
    if pid1 {
        if let Err(e) = confine::from_daemon() {
            log!("{e}; not starting");
            return ExitCode::from(1);
        }
    }
    fds::close_inherited_on_exec();
    if pid1 {
        if let Err(e) = hosts::at_boot(
            std::path::Path::new("/etc/hosts"),
            &hosts::kernel_hostname(),
        ) {
            log!("/etc/hosts: {e}");
        }
        let extra = std::path::Path::new(sprites_api::agent::EXTRA_CA_FILE);
        let (bundle, local) = (
            std::path::Path::new(trust::BUNDLE),
            std::path::Path::new(trust::LOCAL_DIR),
        );
        if let Err(e) = trust::install(extra, bundle, local) {
            log!("extra CA certificates: {e}");
        }
    }
    let sprite_env = std::env::var(sprites_api::agent::EXEC_ENV_VAR).ok();
    if let Err(e) = session::spawn::set_sprite_env(sprite_env.as_deref()) {
        // Commands still run, with the defaults: better than no sprite.
        log!("{e}");
    }
    if !pid1 {
        // Orphans of our commands come back to us, as they would to PID 1.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            log!("PR_SET_CHILD_SUBREAPER: {e}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(on, pid1));
    runtime.shutdown_background();
    code
}

async fn serve(on: ListenOn, pid1: bool) -> ExitCode {
    // The reaper first: no child may exist before SIGCHLD is handled.
    let reaper = match session::reaper::Reaper::start() {
        Ok(r) => r,
        Err(e) => {
            log!("SIGCHLD handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stop = match shutdown::StopSignals::install(pid1) {
        Ok(s) => s,
        Err(e) => {
            log!("signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match listener::open(&on) {
        Ok(l) => l,
        Err(e) => {
            log!("control socket: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sessions = session::registry::Sessions::new(reaper.clone());
    // After the listener: the daemon's connections are accepted while the
    // services start in the background.
    let services = services::Services::boot(reaper, &services::state_dir());
    tokio::select! {
        _ = listener::serve(listener, sessions.clone(), services.clone(), ports::PortTable::default()) => {}
        why = stop.wait() => log!("{why}: stopping"),
    }
    tokio::join!(
        services.shutdown(shutdown::GRACE),
        shutdown::stop_everything(&sessions, pid1)
    );
    if let ListenOn::Path(path) = &on {
        let _ = std::fs::remove_file(path);
    }
    ExitCode::SUCCESS
}
