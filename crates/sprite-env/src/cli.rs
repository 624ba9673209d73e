//! The command line: clap definitions only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Where the sprite's API socket is unless `SPRITE_API_SOCK` says otherwise.
pub const DEFAULT_SOCKET: &str = "/.sprite/api.sock";

const EXIT_CODES: &str = "\
Exit status:
  0    success
  1    the API answered an error, or could not be reached
  2    the command line could not be parsed";

#[derive(Debug, Parser)]
#[command(
    name = "sprite-env",
    bin_name = "sprite-env",
    version,
    about = "Manage this sprite from inside it: checkpoints and services",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// The sprite's API socket
    #[arg(
        long,
        global = true,
        env = "SPRITE_API_SOCK",
        default_value = DEFAULT_SOCKET,
        value_name = "PATH"
    )]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Checkpoints of this sprite's filesystem
    #[command(visible_alias = "checkpoint")]
    Checkpoints {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
    /// Long-running processes this sprite supervises: started at boot in
    /// `needs` order, restarted when they crash
    #[command(visible_alias = "service")]
    Services {
        #[command(subcommand)]
        command: ServiceCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Take a checkpoint of the filesystem now
    Create(CreateArgs),
    /// List checkpoints, newest first (`*` marks the one the sprite stands on)
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one checkpoint
    Info(InfoArgs),
    /// Put the filesystem back to a checkpoint; restarts the whole sprite,
    /// this command included
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A note kept with the checkpoint
    #[arg(long, short = 'c')]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the API's JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Checkpoint id, e.g. v3
    #[arg(value_parser = checkpoint_id)]
    pub id: String,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Checkpoint id, e.g. v3
    #[arg(value_parser = checkpoint_id)]
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Define a service (or replace one) and start it:
    /// `sprite-env services create web --http-port 8080 -- python3 -m http.server 8080`
    Create(ServiceCreateArgs),
    /// List services and their state
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one service
    Get(ServiceGetArgs),
    /// Start a stopped service (a running one is left alone)
    Start(ServiceStartArgs),
    /// Stop a service: SIGTERM, SIGKILL after the timeout; it stays stopped,
    /// across restarts of the sprite too, until started again
    Stop(ServiceStopArgs),
    /// Stop (if running) and start again
    Restart(ServiceRestartArgs),
    /// Send a signal to a running service's processes
    Signal(ServiceSignalArgs),
    /// Stop a service and remove it, with its log
    #[command(visible_alias = "rm")]
    Delete(ServiceNameArgs),
    /// The last lines of a service's output (stdout and stderr)
    Logs(ServiceLogsArgs),
}

#[derive(Debug, Args)]
pub struct ServiceCreateArgs {
    #[arg(value_parser = service_name)]
    pub name: String,
    /// Services to start before this one (repeat or separate with commas)
    #[arg(long, value_delimiter = ',', value_parser = service_name, value_name = "SERVICE")]
    pub needs: Vec<String>,
    /// The port it serves HTTP on: the sprite's URL routes there
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Environment variables (repeat)
    #[arg(long, short = 'e', value_parser = env_pair, value_name = "KEY=VALUE")]
    pub env: Vec<(String, String)>,
    /// Working directory (default: the user's home)
    #[arg(long)]
    pub dir: Option<String>,
    /// How long to show its output after it starts, e.g. 5s
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub duration: Option<String>,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServiceGetArgs {
    #[arg(value_parser = service_name)]
    pub name: String,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServiceStartArgs {
    #[arg(value_parser = service_name)]
    pub name: String,
    /// How long to show its output after it starts, e.g. 5s
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub duration: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServiceStopArgs {
    #[arg(value_parser = service_name)]
    pub name: String,
    /// Time between SIGTERM and SIGKILL, e.g. 10s
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServiceRestartArgs {
    #[arg(value_parser = service_name)]
    pub name: String,
    /// How long to show its output after it starts, e.g. 5s
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Time between SIGTERM and SIGKILL when stopping it, e.g. 10s
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServiceSignalArgs {
    #[arg(value_parser = service_name)]
    pub name: String,
    /// A signal name or number: HUP, SIGTERM, 9
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct ServiceNameArgs {
    #[arg(value_parser = service_name)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ServiceLogsArgs {
    #[arg(value_parser = service_name)]
    pub name: String,
    /// How many lines
    #[arg(long, short = 'n', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub lines: u32,
}

/// Service names also go into request paths: checking them here keeps the
/// paths clean.
fn service_name(raw: &str) -> Result<String, String> {
    sprites_api::service::validate_name(raw).map(|()| raw.to_string())
}

/// Durations as the API takes them (`5s`, `500ms`, `2m`, or seconds).
fn duration(raw: &str) -> Result<String, String> {
    match sprites_api::duration::parse_duration(raw) {
        Some(_) => Ok(raw.trim().to_string()),
        None => Err("durations look like 5s, 500ms, 2m or a number of seconds".to_string()),
    }
}

fn env_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err("expected KEY=VALUE".to_string()),
    }
}

/// Ids are `v0`, `v1`, ...; checking them here also keeps them out of the
/// request path unescaped.
fn checkpoint_id(raw: &str) -> Result<String, String> {
    match sprites_api::checkpoint::parse_id(raw) {
        Some(_) => Ok(raw.to_string()),
        None => Err("checkpoint ids look like v3".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sprite-env").chain(args.iter().copied()))
    }

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn checkpoint_commands() {
        let cli = parse(&["checkpoints", "create", "--comment", "before upgrade"]).unwrap();
        match cli.command {
            Command::Checkpoints {
                command: CheckpointCommand::Create(a),
            } => assert_eq!(a.comment.as_deref(), Some("before upgrade")),
            other => panic!("{other:?}"),
        }
        let cli = parse(&["checkpoints", "create"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Checkpoints {
                command: CheckpointCommand::Create(CreateArgs { comment: None })
            }
        ));
        let cli = parse(&["checkpoint", "ls", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Checkpoints {
                command: CheckpointCommand::List(ListArgs { json: true })
            }
        ));
        let cli = parse(&["checkpoints", "restore", "v12"]).unwrap();
        match cli.command {
            Command::Checkpoints {
                command: CheckpointCommand::Restore(a),
            } => assert_eq!(a.id, "v12"),
            other => panic!("{other:?}"),
        }
        let cli = parse(&["checkpoints", "info", "v0", "--json"]).unwrap();
        match cli.command {
            Command::Checkpoints {
                command: CheckpointCommand::Info(a),
            } => assert!(a.id == "v0" && a.json),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn service_commands() {
        let cli = parse(&[
            "services",
            "create",
            "web",
            "--needs",
            "db,cache",
            "--needs",
            "queue",
            "--http-port",
            "8080",
            "-e",
            "A=1",
            "--env",
            "B=x=y",
            "--dir",
            "/srv",
            "--duration",
            "2s",
            "--",
            "python3",
            "-m",
            "http.server",
            "--bind",
            "::",
        ])
        .unwrap();
        match cli.command {
            Command::Services {
                command: ServiceCommand::Create(a),
            } => {
                assert_eq!(a.name, "web");
                assert_eq!(a.needs, ["db", "cache", "queue"]);
                assert_eq!(a.http_port, Some(8080));
                assert_eq!(
                    a.env,
                    [("A".into(), "1".into()), ("B".into(), "x=y".into())]
                );
                assert_eq!(a.dir.as_deref(), Some("/srv"));
                assert_eq!(a.duration.as_deref(), Some("2s"));
                assert_eq!(a.command, ["python3", "-m", "http.server", "--bind", "::"]);
            }
            other => panic!("{other:?}"),
        }
        // Without `--`, the command starts at the first free argument.
        let cli = parse(&["service", "create", "w", "sleep", "-x"]).unwrap();
        match cli.command {
            Command::Services {
                command: ServiceCommand::Create(a),
            } => assert_eq!(a.command, ["sleep", "-x"]),
            other => panic!("{other:?}"),
        }
        let cli = parse(&[
            "services",
            "restart",
            "w",
            "--timeout",
            "3s",
            "--duration",
            "1s",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Services {
                command: ServiceCommand::Restart(ServiceRestartArgs { .. })
            }
        ));
        let cli = parse(&["services", "logs", "w"]).unwrap();
        match cli.command {
            Command::Services {
                command: ServiceCommand::Logs(a),
            } => assert_eq!(a.lines, 100),
            other => panic!("{other:?}"),
        }
        for ok in [
            &["services", "ls", "--json"][..],
            &["services", "get", "w", "--json"],
            &["services", "start", "w", "--duration", "500ms"],
            &["services", "stop", "w", "--timeout", "10"],
            &["services", "signal", "w", "HUP"],
            &["services", "rm", "w"],
            &["services", "delete", "w"],
        ] {
            assert!(parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn socket_flag_and_default() {
        // SPRITE_API_SOCK may be set around the test run: pass the flag.
        let cli = parse(&["--socket", "/tmp/s.sock", "checkpoints", "list"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/s.sock"));
        let cli = parse(&["checkpoints", "list", "--socket=/tmp/t.sock"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/t.sock"));
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("SPRITE_API_SOCK"), "{help}");
        assert!(help.contains(DEFAULT_SOCKET), "{help}");
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["checkpoints"],
            &["checkpoints", "restore"],
            &["checkpoints", "restore", "3"],
            &["checkpoints", "restore", "../../sprites"],
            &["checkpoints", "info", "v01"],
            &["checkpoints", "list", "extra"],
            &["checkpoints", "create", "--comment"],
            &["services"],
            &["services", "create", "web"],
            &["services", "create", "../web", "--", "sleep"],
            &["services", "create", "web", "--env", "=x", "--", "sleep"],
            &[
                "services",
                "create",
                "web",
                "--duration",
                "soon",
                "--",
                "sleep",
            ],
            &["services", "stop", "web", "--timeout", "-1s"],
            &["services", "signal", "web"],
            &["services", "logs", "web", "-n", "0"],
        ] {
            let err = parse(bad).expect_err(&format!("{bad:?}"));
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
        let err = parse(&["--help"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DisplayHelp);
        assert_eq!(err.exit_code(), 0);
    }
}
