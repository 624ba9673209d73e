//! The command line: clap definitions only.

use clap::{Args, Parser, Subcommand};
use sprites_client::sprites_api::{checkpoint, name};
use sprites_client::ForkSource;

const EXIT_CODES: &str = "\
Exit status:
  0    success
  1    the sprite CLI failed (bad input, API error, network)
  2    the command line could not be parsed
  exec, console and sessions attach pass the remote command's status through
  unchanged, and use 255 when the CLI itself fails (as ssh does).";

#[derive(Debug, Parser)]
#[command(
    name = "sprite",
    version,
    about = "Create, enter and drive sprites: persistent Linux sandboxes",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Sprite to act on (default: the `.sprite` file of this or a parent directory)
    #[arg(short = 's', long = "sprite", global = true, value_name = "NAME")]
    pub sprite: Option<String>,
    /// Organization (recorded in `.sprite`)
    #[arg(short = 'o', long = "org", global = true, value_name = "ORG")]
    pub org: Option<String>,
    /// API server (default: the one of `sprite login`, else http://127.0.0.1:7070)
    #[arg(long, global = true, env = "SPRITES_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// API token (default: the one of `sprite login`)
    #[arg(long, global = true, env = "SPRITE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a token against a server and remember both in ~/.sprites/config.json
    Login(LoginArgs),
    /// Create a sprite (and open its console when run on a terminal)
    Create(CreateArgs),
    /// Select the sprite for this directory (writes `.sprite`)
    Use(UseArgs),
    /// List sprites
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show the details of the sprite (where its data lives included)
    Info,
    /// Stop the sprite and move its volume and checkpoints to object storage now
    Evict,
    /// Run a command in the sprite
    #[command(visible_alias = "x")]
    Exec(ExecArgs),
    /// Open an interactive shell in the sprite (Ctrl+\ detaches)
    #[command(visible_alias = "c")]
    Console,
    /// Copy files between this machine and a sprite (SPRITE:PATH or :PATH)
    Cp(CpArgs),
    /// List, attach to, or kill exec sessions
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Create, list, show or delete checkpoints of the sprite's filesystem
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
    /// Put the sprite's filesystem back to a checkpoint, or to how it was
    /// at a time (a replicated snapshot), restarting its processes
    Restore(RestoreArgs),
    /// Manage services: processes the sprite keeps running (started at boot,
    /// restarted when they crash)
    #[command(visible_alias = "svc")]
    Services {
        #[command(subcommand)]
        command: ServicesCommand,
    },
    /// What the sprite (or, without -s, every sprite) used and what it costs
    Usage(UsageArgs),
    /// Show or set the sprite's egress policy (and, with `privileges`, its
    /// capabilities and devices)
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Create, list or revoke API tokens
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Show the sprite's URL and who may open it; `url update --auth` changes that
    Url {
        #[command(subcommand)]
        command: Option<UrlCommand>,
    },
    /// Forward local ports into the sprite: `3000` or `LOCAL:REMOTE`
    Proxy(ProxyArgs),
    /// Destroy the sprite and everything in it
    Destroy(DestroyArgs),
    /// Authenticated GET of an API path; prints the answer
    Api(ApiArgs),
}

impl Command {
    /// Exit status when the CLI itself fails: commands that pass a remote
    /// status through keep 1..=254 for it.
    pub fn failure_exit_code(&self) -> u8 {
        match self {
            Command::Exec(_)
            | Command::Console
            | Command::Sessions {
                command: SessionsCommand::Attach { .. },
            } => 255,
            _ => 1,
        }
    }
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// API server URL (default: --api-url, the saved one, or http://127.0.0.1:7070)
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the new sprite (default: a generated one)
    pub name: Option<String>,
    /// Base image
    #[arg(long, value_parser = ["tiny", "standard"])]
    pub image: Option<String>,
    /// How thick the sprite's walls are: `container` (namespaces around the
    /// host's kernel) or `gvisor` (a kernel in user space between its code
    /// and the host's); the server's default when not given
    #[arg(long, value_parser = ["container", "gvisor"])]
    pub isolation: Option<String>,
    /// Do not open a console after creating
    #[arg(long)]
    pub skip_console: bool,
    /// Start from a checkpoint of another sprite (a fork), e.g. demo:v1
    #[arg(long, value_name = "SPRITE:CHECKPOINT", value_parser = fork_source, conflicts_with = "image")]
    pub from: Option<ForkSource>,
    /// Start from another sprite's replicated snapshot taken at or before
    /// TIME (RFC 3339, or a duration ago such as 10m), e.g. demo:10m
    #[arg(long, value_name = "SPRITE:TIME", value_parser = snapshot_source, conflicts_with_all = ["image", "from"])]
    pub from_snapshot: Option<(String, String)>,
}

#[derive(Debug, Args)]
pub struct UseArgs {
    /// Sprite to use here (without: show the current one)
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only sprites whose name starts with this
    #[arg(long)]
    pub prefix: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Working directory inside the sprite
    #[arg(long, value_name = "DIR")]
    pub dir: Option<String>,
    /// Run under a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Environment variables: K=V, comma separated, repeatable
    #[arg(short = 'e', long = "env", value_name = "K=V[,K=V...]")]
    pub env: Vec<String>,
    /// Use the plain HTTP exec endpoint instead of a WebSocket
    #[arg(long, conflicts_with = "tty")]
    pub http_post: bool,
    /// Upload a local file first: LOCAL:REMOTE (REMOTE relative to --dir,
    /// else the home; without :REMOTE the file keeps its name); repeatable
    #[arg(long = "file", value_name = "LOCAL:REMOTE", value_parser = clap::value_parser!(std::ffi::OsString))]
    pub files: Vec<std::ffi::OsString>,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  sprite cp ./a.txt demo:/home/sprite/a.txt    upload
  sprite cp demo:/etc/hostname ./h             download
  sprite cp -r ./site :www                     a directory, to the sprite of -s or .sprite
  tar c . | sprite cp - :backup.tar            stdin to a file (and - as DEST: stdout)")]
pub struct CpArgs {
    /// Copy directories and what is in them
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Permission bits of an uploaded file, e.g. 0755 (default: the local file's)
    #[arg(long, value_parser = octal_mode)]
    pub mode: Option<u32>,
    /// Act as this user inside the sprite (a name or uid; default: sprite)
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// What to copy: a local path, - (stdin), or SPRITE:PATH / :PATH
    #[arg(value_parser = clap::value_parser!(std::ffi::OsString))]
    pub source: std::ffi::OsString,
    /// Where to: a local path, - (stdout), or SPRITE:PATH / :PATH
    #[arg(value_parser = clap::value_parser!(std::ffi::OsString))]
    pub dest: std::ffi::OsString,
}

/// An octal mode argument.
fn octal_mode(arg: &str) -> Result<u32, String> {
    sprites_client::sprites_api::fs::parse_mode(arg)
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List the sprite's exec sessions
    #[command(visible_alias = "ls")]
    List,
    /// Attach to a running session (Ctrl+\ detaches)
    Attach {
        /// Session id (see `sprite sessions list`)
        id: String,
    },
    /// End a session: a signal, then SIGKILL after the timeout
    Kill {
        /// Session id
        id: String,
        /// Signal to send first
        #[arg(long, default_value = "SIGTERM")]
        signal: String,
        /// Seconds to wait before SIGKILL (default: the server's)
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Checkpoint the sprite's filesystem now; prints the new id
    Create {
        /// A note kept with the checkpoint
        #[arg(long)]
        comment: Option<String>,
    },
    /// List the sprite's checkpoints, newest first
    #[command(visible_alias = "ls")]
    List,
    /// Show one checkpoint
    Info {
        /// Checkpoint id (v0, v1, ...)
        #[arg(value_parser = checkpoint_id)]
        id: String,
    },
    /// Delete a checkpoint (not the one the sprite stands on)
    Delete {
        /// Checkpoint id (v0, v1, ...)
        #[arg(value_parser = checkpoint_id)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// List the sprite's services and their state
    #[command(visible_alias = "ls")]
    List,
    /// Create (or replace) a service and start it: `sprite services create web -- python3 -m http.server 8080`
    Create {
        /// Service name
        name: String,
        /// Services that must start first (repeatable)
        #[arg(long = "needs")]
        needs: Vec<String>,
        /// The port its HTTP server listens on (the sprite's URL routes there)
        #[arg(long)]
        http_port: Option<u16>,
        /// Environment, KEY=VALUE (repeatable)
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// Working directory
        #[arg(long)]
        dir: Option<String>,
        /// Seconds of its output to show after it starts
        #[arg(long, default_value_t = 2.0)]
        watch: f64,
        /// The command and its arguments
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Start a stopped service
    Start {
        name: String,
        /// Seconds of its output to show after it starts
        #[arg(long, default_value_t = 2.0)]
        watch: f64,
    },
    /// Stop a service (it stays stopped until started again)
    Stop {
        name: String,
        /// Seconds between SIGTERM and SIGKILL
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
    /// Show the last lines of a service's output
    Logs {
        name: String,
        /// How many lines
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
    },
    /// Stop a service and forget it
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// How far back: 7d, 24h, 30m (default 30d)
    #[arg(long, default_value = "30d", value_parser = since)]
    pub since: std::time::Duration,
    /// Every sprite, per day, even when a sprite is selected
    #[arg(long)]
    pub all: bool,
}

fn since(arg: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = arg.split_at(arg.find(|c: char| !c.is_ascii_digit()).unwrap_or(arg.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{arg:?} is not like 7d, 24h or 30m"))?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" | "" => n,
        _ => return Err(format!("{arg:?} is not like 7d, 24h or 30m")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Debug, Subcommand)]
pub enum UrlCommand {
    /// Change who may open the URL
    Update {
        /// sprite: a token or login is needed; public: anyone; private: no URL
        #[arg(long, value_parser = ["sprite", "public", "private"])]
        auth: String,
    },
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// `PORT` (same port locally and in the sprite) or `LOCAL:REMOTE`
    #[arg(required = true, value_parser = port_pair)]
    pub ports: Vec<(u16, u16)>,
    /// Local address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
}

/// `3000` → (3000, 3000); `8000:3000` → (8000, 3000).
pub fn port_pair(s: &str) -> Result<(u16, u16), String> {
    let parse = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{p:?} is not a port (1-65535)"))
    };
    match s.split_once(':') {
        Some((l, r)) => Ok((parse(l)?, parse(r)?)),
        None => parse(s).map(|p| (p, p)),
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the rules in force (none: open egress)
    Show,
    /// Replace the rules: `sprite policy set --include-defaults --allow github.com --deny '*'`
    Set {
        /// Allow the package registries and dev hosts of the default list
        #[arg(long)]
        include_defaults: bool,
        /// Domains to allow (`example.com`, `*.example.com`), repeatable
        #[arg(long)]
        allow: Vec<String>,
        /// Domains to deny (`*` for everything not allowed), repeatable
        #[arg(long)]
        deny: Vec<String>,
    },
    /// Remove every rule: open egress
    Clear,
    /// The sprite's capabilities and devices (applied at its next start)
    Privileges {
        #[command(subcommand)]
        command: PrivilegesCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PrivilegesCommand {
    /// Print the policy (empty: the default privileges)
    Show,
    /// Replace the policy: `sprite policy privileges set --add CAP_NET_RAW --drop CAP_CHOWN --device /dev/fuse`
    Set {
        /// Capabilities to grant beyond the default set, repeatable
        #[arg(long)]
        add: Vec<String>,
        /// Capabilities to take away, repeatable
        #[arg(long)]
        drop: Vec<String>,
        /// Devices to make available (`/dev/fuse`, `/dev/net/tun`, `/dev/kvm`), repeatable
        #[arg(long)]
        device: Vec<String>,
        /// The capability set the changes apply to: minimal, standard (the default) or privileged
        #[arg(long)]
        profile: Option<String>,
        /// Keep setuid programs from gaining privileges (true) or let them (false); default: the image's
        #[arg(long)]
        no_new_privileges: Option<bool>,
        /// Allow the io_uring system calls (true); denied by default
        #[arg(long)]
        io_uring: Option<bool>,
    },
    /// Back to the default privileges
    Clear,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token; prints its secret (shown this once). Without a scope
    /// it reaches every sprite with every action and is no admin; only an
    /// admin token may make tokens
    Create {
        #[arg(long)]
        name: Option<String>,
        /// An admin token: manages tokens, reaches everything
        #[arg(long, conflicts_with_all = ["sprite", "prefix", "actions"])]
        admin: bool,
        /// A sprite it reaches (repeatable)
        #[arg(long = "sprite", value_name = "NAME")]
        sprite: Vec<String>,
        /// It reaches every sprite whose name starts with this
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// What it may do: read, exec, manage (comma-separated; all by default)
        #[arg(long, value_delimiter = ',', value_parser = ["read", "exec", "manage"])]
        actions: Vec<String>,
    },
    /// List tokens (never their secrets)
    #[command(visible_alias = "ls")]
    List,
    /// Revoke a token by id: it fails at once
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Checkpoint id (v0, v1, ...; see `sprite checkpoint list`)
    #[arg(value_parser = checkpoint_id, required_unless_present = "at", conflicts_with = "at")]
    pub id: Option<String>,
    /// Instead of a checkpoint: the newest replicated snapshot taken at or
    /// before TIME (RFC 3339, e.g. 2026-12-03T10:00:00Z, or a duration ago,
    /// e.g. 10m); `sprite restore --at list` lists them
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

/// A checkpoint id argument: `v` and a number.
fn checkpoint_id(arg: &str) -> Result<String, String> {
    match checkpoint::parse_id(arg) {
        Some(_) => Ok(arg.to_string()),
        None => Err(format!(
            "{arg:?} is not a checkpoint id; ids look like v0, v1, v2, ..."
        )),
    }
}

/// `--from-snapshot SPRITE:TIME` of `create` (the time may hold colons).
fn snapshot_source(arg: &str) -> Result<(String, String), String> {
    let Some((sprite, at)) = arg.split_once(':') else {
        return Err("expected SPRITE:TIME, e.g. demo:10m or demo:2026-12-04T10:00:00Z".into());
    };
    if at.is_empty() {
        return Err("the time after ':' is missing (SPRITE:TIME, e.g. demo:10m)".into());
    }
    name::validate(sprite)?;
    Ok((sprite.to_string(), at.to_string()))
}

/// `--from SPRITE:CHECKPOINT` of `create`.
fn fork_source(arg: &str) -> Result<ForkSource, String> {
    let Some((sprite, id)) = arg.split_once(':') else {
        return Err("expected SPRITE:CHECKPOINT, e.g. demo:v1".into());
    };
    if sprite.is_empty() {
        return Err(
            "the sprite name before ':' is missing (SPRITE:CHECKPOINT, e.g. demo:v1)".into(),
        );
    }
    if id.is_empty() {
        return Err(
            "the checkpoint id after ':' is missing (SPRITE:CHECKPOINT, e.g. demo:v1)".into(),
        );
    }
    name::validate(sprite)?;
    Ok(ForkSource {
        sprite: sprite.to_string(),
        checkpoint: checkpoint_id(id)?,
        snapshot: None,
    })
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Path such as /v1/sprites (the /v1 prefix is optional)
    pub path: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("sprite").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?} should parse: {e}"))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exec_keeps_the_remote_flags_for_the_command() {
        let cli = parse(&[
            "exec", "--dir", "/tmp", "-e", "A=1,B=2", "ls", "-la", "-s", "x",
        ]);
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(args.dir.as_deref(), Some("/tmp"));
        assert_eq!(args.env, ["A=1,B=2"]);
        assert_eq!(args.command, ["ls", "-la", "-s", "x"]);
        assert_eq!(cli.global.sprite, None);
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let cli = parse(&["-s", "a", "x", "--tty", "--", "bash", "-l"]);
        assert_eq!(cli.global.sprite.as_deref(), Some("a"));
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert!(args.tty);
        assert_eq!(args.command, ["bash", "-l"]);

        let cli = parse(&["info", "--sprite", "b", "-o", "acme"]);
        assert_eq!(cli.global.sprite.as_deref(), Some("b"));
        assert_eq!(cli.global.org.as_deref(), Some("acme"));
    }

    #[test]
    fn cp_and_exec_files() {
        let cli = parse(&[
            "cp",
            "-r",
            "--mode",
            "0755",
            "./site",
            "demo:/srv",
            "-s",
            "x",
        ]);
        let Command::Cp(args) = cli.command else {
            panic!("not cp")
        };
        assert!(args.recursive);
        assert_eq!(args.mode, Some(0o755));
        assert_eq!(
            (args.source.to_str(), args.dest.to_str()),
            (Some("./site"), Some("demo:/srv"))
        );
        assert!(Cli::try_parse_from(["sprite", "cp", "--mode", "999", "a", ":b"]).is_err());
        assert!(Cli::try_parse_from(["sprite", "cp", "a"]).is_err());
        let cli = parse(&[
            "exec",
            "--file",
            "a.sh:/tmp/a.sh",
            "--file",
            "b",
            "sh",
            "/tmp/a.sh",
        ]);
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(args.files, ["a.sh:/tmp/a.sh", "b"]);
        assert_eq!(args.command, ["sh", "/tmp/a.sh"]);
    }

    #[test]
    fn env_flags_repeat() {
        let cli = parse(&["exec", "--env", "A=1", "--env", "B=2,C=3", "env"]);
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(args.env, ["A=1", "B=2,C=3"]);
    }

    #[test]
    fn exec_needs_a_command_and_refuses_tty_over_http() {
        assert!(Cli::try_parse_from(["sprite", "exec"]).is_err());
        assert!(Cli::try_parse_from(["sprite", "exec", "--tty", "--http-post", "sh"]).is_err());
    }

    #[test]
    fn aliases_and_subcommands() {
        assert!(matches!(parse(&["ls"]).command, Command::List(_)));
        assert!(matches!(parse(&["c"]).command, Command::Console));
        let cli = parse(&["sessions", "kill", "7", "--signal", "INT", "--timeout", "3"]);
        match cli.command {
            Command::Sessions {
                command:
                    SessionsCommand::Kill {
                        id,
                        signal,
                        timeout,
                    },
            } => {
                assert_eq!(
                    (id.as_str(), signal.as_str(), timeout),
                    ("7", "INT", Some(3))
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse(&["sessions", "ls"]).command,
            Command::Sessions {
                command: SessionsCommand::List
            }
        ));
    }

    #[test]
    fn create_takes_known_images_only() {
        let cli = parse(&["create", "box", "--image", "tiny", "--skip-console"]);
        let Command::Create(args) = cli.command else {
            panic!("not create")
        };
        assert_eq!(args.name.as_deref(), Some("box"));
        assert!(args.skip_console);
        assert!(Cli::try_parse_from(["sprite", "create", "--image", "huge"]).is_err());
    }

    #[test]
    fn checkpoint_commands() {
        let cli = parse(&[
            "checkpoint",
            "create",
            "--comment",
            "before upgrade",
            "-s",
            "d",
        ]);
        assert_eq!(cli.global.sprite.as_deref(), Some("d"));
        match cli.command {
            Command::Checkpoint {
                command: CheckpointCommand::Create { comment },
            } => assert_eq!(comment.as_deref(), Some("before upgrade")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse(&["checkpoint", "ls"]).command,
            Command::Checkpoint {
                command: CheckpointCommand::List
            }
        ));
        assert!(matches!(
            parse(&["checkpoint", "info", "v3"]).command,
            Command::Checkpoint {
                command: CheckpointCommand::Info { id }
            } if id == "v3"
        ));
        assert!(matches!(
            parse(&["restore", "v0"]).command,
            Command::Restore(RestoreArgs { id: Some(id), at: None }) if id == "v0"
        ));
        assert!(matches!(
            parse(&["restore", "--at", "10m"]).command,
            Command::Restore(RestoreArgs { id: None, at: Some(at) }) if at == "10m"
        ));
        assert_eq!(parse(&["restore", "v0"]).command.failure_exit_code(), 1);
        for bad in [
            &["restore", "3"][..],
            &["restore", "v01"],
            &["restore"],
            &["restore", "v0", "--at", "10m"],
            &["checkpoint", "delete", "x1"],
            &["checkpoint", "info"],
        ] {
            let err = Cli::try_parse_from(std::iter::once("sprite").chain(bad.iter().copied()))
                .expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn create_from_a_checkpoint() {
        let cli = parse(&["create", "exp", "--from", "demo:v1", "--skip-console"]);
        let Command::Create(args) = cli.command else {
            panic!("not create")
        };
        assert_eq!(
            args.from,
            Some(ForkSource {
                sprite: "demo".into(),
                checkpoint: "v1".into(),
                snapshot: None,
            })
        );
        // A fork takes its image from the source.
        assert!(
            Cli::try_parse_from(["sprite", "create", "--from", "a:v1", "--image", "tiny"]).is_err()
        );
    }

    #[test]
    fn bad_fork_sources_say_what_is_wrong() {
        let cases = [
            ("demo", "expected SPRITE:CHECKPOINT"),
            ("demo:", "checkpoint id after ':' is missing"),
            (":v1", "sprite name before ':' is missing"),
            ("demo:x1", "\"x1\" is not a checkpoint id"),
            ("demo:v1:v2", "is not a checkpoint id"),
            ("Demo:v1", "only lowercase letters"),
            ("", "expected SPRITE:CHECKPOINT"),
        ];
        for (arg, why) in cases {
            let err = fork_source(arg).expect_err(arg);
            assert!(err.contains(why), "{arg:?}: {err}");
            let err = Cli::try_parse_from(["sprite", "create", "x", "--from", arg])
                .expect_err("refused by clap");
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(why), "{arg:?}: {err}");
        }
    }

    #[test]
    fn create_from_a_snapshot_takes_a_time_with_colons() {
        let cli = parse(&[
            "create",
            "exp",
            "--from-snapshot",
            "demo:2026-12-04T10:00:00Z",
        ]);
        let Command::Create(args) = cli.command else {
            panic!("not create")
        };
        assert_eq!(
            args.from_snapshot,
            Some(("demo".into(), "2026-12-04T10:00:00Z".into()))
        );
        for (arg, why) in [
            ("demo", "expected SPRITE:TIME"),
            ("demo:", "time after ':' is missing"),
            ("Demo:10m", "only lowercase letters"),
        ] {
            let err = snapshot_source(arg).expect_err(arg);
            assert!(err.contains(why), "{arg:?}: {err}");
        }
        // One source at a time.
        assert!(Cli::try_parse_from([
            "sprite",
            "create",
            "--from",
            "a:v1",
            "--from-snapshot",
            "a:10m"
        ])
        .is_err());
    }

    #[test]
    fn failures_of_pass_through_commands_use_255() {
        assert_eq!(parse(&["x", "true"]).command.failure_exit_code(), 255);
        assert_eq!(parse(&["console"]).command.failure_exit_code(), 255);
        assert_eq!(
            parse(&["sessions", "attach", "3"])
                .command
                .failure_exit_code(),
            255
        );
        assert_eq!(parse(&["list"]).command.failure_exit_code(), 1);
        assert_eq!(parse(&["destroy", "-f"]).command.failure_exit_code(), 1);
    }
}
