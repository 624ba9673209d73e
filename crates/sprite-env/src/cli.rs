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
    about = "Manage this sprite from inside it: checkpoints",
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
            &["services", "list"],
        ] {
            let err = parse(bad).expect_err(&format!("{bad:?}"));
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
        let err = parse(&["--help"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DisplayHelp);
        assert_eq!(err.exit_code(), 0);
    }
}
