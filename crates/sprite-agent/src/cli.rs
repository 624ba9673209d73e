//! Command line and environment: where the agent gets its listening socket.

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

/// Environment variable naming an inherited, already listening socket fd.
pub const LISTEN_FD_ENV: &str = "SPRITE_AGENT_FD";

/// Where the control socket comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenOn {
    /// An fd the daemon bound and passed down (`SPRITE_AGENT_FD`).
    Inherited(RawFd),
    /// Bind a fresh socket at this path (`--listen PATH`, host tests).
    Path(PathBuf),
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Run(ListenOn),
    Version,
    Help,
}

pub const USAGE: &str = "usage: sprite-agent [--listen PATH]\n\
    \n\
    Runs as PID 1 inside a sprite. The control socket is the fd named by\n\
    SPRITE_AGENT_FD when set, else a socket bound at --listen PATH.\n";

/// The name that makes this binary the in-sprite CLI (the runtime mounts it
/// at `/.sprite/bin/sprite-env` too).
pub const SPRITE_ENV: &str = "sprite-env";

/// When the binary is `sprite-env` (by argv[0]'s base name, or as
/// `sprite-agent env ...`): that CLI's arguments, its name first.
pub fn sprite_env_args(argv: Vec<OsString>) -> Option<Vec<OsString>> {
    let mut argv = argv.into_iter();
    let name = argv.next()?;
    if Path::new(&name).file_name() == Some(OsStr::new(SPRITE_ENV)) {
        return Some(std::iter::once(name).chain(argv).collect());
    }
    let mut rest = argv.peekable();
    if rest.next_if(|a| a == "env").is_some() {
        return Some(
            std::iter::once(OsString::from(SPRITE_ENV))
                .chain(rest)
                .collect(),
        );
    }
    None
}

/// Parse arguments (without the program name) and the fd variable's value.
pub fn parse<I: IntoIterator<Item = String>>(
    args: I,
    fd_env: Option<String>,
) -> Result<Invocation, String> {
    let mut listen: Option<PathBuf> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next() {
                Some(p) if !p.is_empty() => listen = Some(PathBuf::from(p)),
                _ => return Err("--listen needs a path".into()),
            },
            "--version" | "-V" => return Ok(Invocation::Version),
            "--help" | "-h" => return Ok(Invocation::Help),
            other => {
                if let Some(p) = other.strip_prefix("--listen=") {
                    listen = Some(PathBuf::from(p));
                } else {
                    return Err(format!("unknown argument {other:?}"));
                }
            }
        }
    }
    if let Some(raw) = fd_env.filter(|v| !v.trim().is_empty()) {
        let fd: RawFd = raw
            .trim()
            .parse()
            .map_err(|_| format!("{LISTEN_FD_ENV}={raw:?} is not an fd number"))?;
        if fd < 0 {
            return Err(format!("{LISTEN_FD_ENV}={fd} is negative"));
        }
        return Ok(Invocation::Run(ListenOn::Inherited(fd)));
    }
    match listen {
        Some(p) => Ok(Invocation::Run(ListenOn::Path(p))),
        None => Err(format!(
            "no socket: set {LISTEN_FD_ENV} or pass --listen PATH"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn os(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn sprite_env_by_name_or_subcommand() {
        assert_eq!(
            sprite_env_args(os(&["/.sprite/bin/sprite-env", "checkpoints", "list"])),
            Some(os(&["/.sprite/bin/sprite-env", "checkpoints", "list"]))
        );
        assert_eq!(
            sprite_env_args(os(&["sprite-env"])),
            Some(os(&["sprite-env"]))
        );
        assert_eq!(
            sprite_env_args(os(&["/.sprite/bin/sprite-agent", "env", "--help"])),
            Some(os(&["sprite-env", "--help"]))
        );
        for agent in [
            &["/.sprite/bin/sprite-agent"][..],
            &["sprite-agent", "--listen", "env"],
            &["/x/sprite-env-old"],
            &["sprite-agent", "--env"],
            &[],
        ] {
            assert_eq!(sprite_env_args(os(agent)), None, "{agent:?}");
        }
    }

    #[test]
    fn inherited_fd_wins() {
        let got = parse(args(&["--listen", "/tmp/x"]), Some("3".into()));
        assert_eq!(got, Ok(Invocation::Run(ListenOn::Inherited(3))));
    }

    #[test]
    fn listen_path_forms() {
        assert_eq!(
            parse(args(&["--listen", "/tmp/a.sock"]), None),
            Ok(Invocation::Run(ListenOn::Path("/tmp/a.sock".into())))
        );
        assert_eq!(
            parse(args(&["--listen=/tmp/b.sock"]), Some(String::new())),
            Ok(Invocation::Run(ListenOn::Path("/tmp/b.sock".into())))
        );
    }

    #[test]
    fn refuses_nonsense() {
        assert!(parse(args(&[]), None).is_err());
        assert!(parse(args(&["--listen"]), None).is_err());
        assert!(parse(args(&["--bogus"]), None).is_err());
        assert!(parse(args(&[]), Some("three".into())).is_err());
        assert!(parse(args(&[]), Some("-1".into())).is_err());
        assert_eq!(parse(args(&["--version"]), None), Ok(Invocation::Version));
    }
}
