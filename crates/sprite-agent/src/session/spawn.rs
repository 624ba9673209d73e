//! From an exec request to a running child: user, environment, working
//! directory, program lookup, and the `fork`/`exec` itself (a new session,
//! the controlling terminal, dropped privileges).

use std::ffi::CString;
use std::fs::Metadata;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sprites_api::agent::{ExecRequest, EXEC_ENV_VAR};

use crate::session::pty;
use crate::session::reaper::{ExitReceiver, Reaper};
use crate::user::{Account, UserDb};

/// `PATH` every command starts with.
/// `/.sprite/bin` holds `sprite-env`, the in-sprite CLI.
pub const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/.sprite/bin";
/// `TERM` in TTY mode.
pub const TTY_TERM: &str = "xterm-256color";

/// Exit code of a command that was not found.
pub const NOT_FOUND: i32 = 127;
/// Exit code of a command that was found but cannot be run.
pub const CANNOT_RUN: i32 = 126;

/// Everything needed to start the command.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The program to `exec`, an absolute path.
    pub program: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub dir: PathBuf,
    pub account: Account,
    pub tty: bool,
    pub rows: u16,
    pub cols: u16,
    pub stdin: bool,
}

/// What to do with a request that is well formed.
#[derive(Debug)]
pub enum Plan {
    Run(Prepared),
    /// The command cannot run (not found, not executable): report `message`
    /// on stderr and exit with `code`, as a shell would.
    Fail {
        message: String,
        code: i32,
    },
}

/// Validate and resolve a request. `Err` is a bad request (unknown user,
/// missing directory, empty command).
pub fn prepare(req: &ExecRequest, users: &UserDb) -> Result<Plan, String> {
    let argv: Vec<String> = if req.cmd.is_empty() {
        match req.path.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => vec![p.to_string()],
            None => return Err("cmd is empty".into()),
        }
    } else {
        req.cmd.clone()
    };
    let has_nul = |s: &String| s.as_bytes().contains(&0);
    if argv.iter().any(has_nul)
        || req.env.iter().any(has_nul)
        || req.path.iter().any(has_nul)
        || req.dir.iter().any(has_nul)
    {
        return Err("arguments, environment and paths must not contain NUL".into());
    }
    let account = users.resolve(req.user.as_deref())?;
    let env = environment(&account, req.tty, &req.env);
    let dir = working_dir(req.dir.as_deref(), &account)?;
    let prog = req
        .path
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or(&argv[0]);
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    let program = match find_program(prog, path_var, &dir, &account) {
        Ok(p) => p,
        Err((message, code)) => return Ok(Plan::Fail { message, code }),
    };
    Ok(Plan::Run(Prepared {
        program,
        argv,
        env,
        dir,
        account,
        tty: req.tty,
        rows: req.rows,
        cols: req.cols,
        stdin: req.stdin,
    }))
}

/// The sprite's environment from the daemon ([`EXEC_ENV_VAR`]), set once
/// at boot.
static SPRITE_ENV: OnceLock<Vec<String>> = OnceLock::new();

/// Takes the daemon's environment for every command from the agent's own
/// (`None`: there is none). Called once, before any command starts.
pub fn set_sprite_env(raw: Option<&str>) -> Result<(), String> {
    let vars: Vec<String> = match raw.filter(|r| !r.trim().is_empty()) {
        None => Vec::new(),
        Some(raw) => serde_json::from_str(raw)
            .map_err(|e| format!("{EXEC_ENV_VAR} is not a JSON list of strings: {e}"))?,
    };
    SPRITE_ENV
        .set(vars)
        .map_err(|_| format!("{EXEC_ENV_VAR} was taken twice"))
}

/// The default environment for `account`, then the sprite's (from the
/// daemon: PATH of the image, the host's variables), then the request's
/// `K=V` pairs (entries without `=` or with an empty key are ignored).
pub fn environment(account: &Account, tty: bool, extra: &[String]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), account.home.clone()),
        ("USER".into(), account.name.clone()),
        ("LOGNAME".into(), account.name.clone()),
        ("SHELL".into(), account.shell.clone()),
    ];
    if tty {
        env.push(("TERM".into(), TTY_TERM.into()));
    }
    let sprite = SPRITE_ENV.get().map(Vec::as_slice).unwrap_or_default();
    for kv in sprite.iter().chain(extra) {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if k.is_empty() {
            continue;
        }
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
    }
    env
}

/// The requested directory (relative ones are taken from the home), or the
/// home, or `/` when the home does not exist.
fn working_dir(requested: Option<&str>, account: &Account) -> Result<PathBuf, String> {
    let home = Path::new(&account.home);
    let Some(d) = requested.filter(|d| !d.is_empty()) else {
        return Ok(if home.is_dir() {
            home.to_path_buf()
        } else {
            PathBuf::from("/")
        });
    };
    let p = home.join(d);
    match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => {
            if permits(&m, account, 0o1) {
                Ok(p)
            } else {
                Err(format!("dir {d:?}: permission denied for {}", account.name))
            }
        }
        Ok(_) => Err(format!("dir {d:?} is not a directory")),
        Err(e) => Err(format!("dir {d:?}: {e}")),
    }
}

/// Whether `account` holds permission `bit` (1 = x, 2 = w, 4 = r) by the mode
/// bits; root needs an x bit somewhere to execute.
fn permits(meta: &Metadata, account: &Account, bit: u32) -> bool {
    let mode = meta.mode();
    if account.uid == 0 {
        return bit != 0o1 || meta.is_dir() || mode & 0o111 != 0;
    }
    let shift = if meta.uid() == account.uid {
        6
    } else if account.groups.contains(&meta.gid()) {
        3
    } else {
        0
    };
    (mode >> shift) & bit != 0
}

/// Find the program like a shell: a name with a slash is taken as a path
/// (relative to `dir`), else searched in `path_var`. `Err` carries the shell's
/// message and exit code.
pub fn find_program(
    prog: &str,
    path_var: &str,
    dir: &Path,
    account: &Account,
) -> Result<PathBuf, (String, i32)> {
    if prog.contains('/') {
        let p = dir.join(prog);
        return match std::fs::metadata(&p) {
            Err(_) => Err((format!("{prog}: No such file or directory\n"), NOT_FOUND)),
            Ok(m) if m.is_dir() => Err((format!("{prog}: Is a directory\n"), CANNOT_RUN)),
            Ok(m) if !permits(&m, account, 0o1) => {
                Err((format!("{prog}: Permission denied\n"), CANNOT_RUN))
            }
            Ok(_) => Ok(p),
        };
    }
    let mut denied = false;
    for entry in path_var.split(':') {
        let base = if entry.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(entry)
        };
        let candidate = base.join(prog);
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() => {
                if permits(&m, account, 0o1) {
                    return Ok(candidate);
                }
                denied = true;
            }
            _ => continue,
        }
    }
    if denied {
        Err((format!("{prog}: Permission denied\n"), CANNOT_RUN))
    } else {
        Err((format!("{prog}: command not found\n"), NOT_FOUND))
    }
}

/// How a spawned child's stdio is connected to the agent.
pub enum ChildIo {
    Pipes {
        /// `None` when the child reads `/dev/null`.
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Pty {
        master: OwnedFd,
    },
}

/// A started child.
pub struct Spawned {
    pub pid: u32,
    pub exit: ExitReceiver,
    pub io: ChildIo,
}

/// Start the command. Blocking: run it from `spawn_blocking`, or use
/// [`spawn_now`] on the runtime.
///
/// An `Err` is a failure to start: either the agent's own resources (pipes,
/// fork) or the child's set-up and `exec` failing; [`failure`] maps it to a
/// shell-style message and exit code.
pub fn spawn(p: &Prepared, reaper: &Reaper) -> io::Result<Spawned> {
    let (mut cmd, master) = command(p)?;
    let (child, exit) = reaper.spawn(&mut cmd)?;
    started(cmd, child, exit, master)
}

/// [`spawn`] on the runtime's thread (see [`Reaper::spawn_now`]): what an
/// exec session starts with.
pub async fn spawn_now(p: &Prepared, reaper: &Reaper) -> io::Result<Spawned> {
    let (mut cmd, master) = command(p)?;
    let (child, exit) = reaper.spawn_now(&mut cmd).await?;
    started(cmd, child, exit, master)
}

/// The command to start, and the pty's master side when it has one.
fn command(p: &Prepared) -> io::Result<(Command, Option<OwnedFd>)> {
    let mut cmd = Command::new(&p.program);
    if let Some((arg0, rest)) = p.argv.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear().envs(p.env.iter().map(|(k, v)| (k, v)));

    let mut master = None;
    if p.tty {
        let pair = pty::open(p.rows, p.cols)?;
        cmd.stdin(Stdio::from(pair.slave.try_clone()?))
            .stdout(Stdio::from(pair.slave.try_clone()?))
            .stderr(Stdio::from(pair.slave));
        master = Some(pair.master);
    } else {
        cmd.stdin(if p.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    }

    let setup = ChildSetup::new(p)?;
    // SAFETY: the hook runs in the forked child before `exec`; `ChildSetup::
    // apply` only makes async-signal-safe system calls on data prepared
    // here in the parent, and never allocates.
    unsafe {
        cmd.pre_exec(move || setup.apply());
    }
    Ok((cmd, master))
}

/// What the parent keeps of a started child.
fn started(
    cmd: Command,
    mut child: std::process::Child,
    exit: ExitReceiver,
    master: Option<OwnedFd>,
) -> io::Result<Spawned> {
    // Closes the parent's copies of the pty slave: the master then sees EIO
    // once the command's side is gone.
    drop(cmd);
    let pid = child.id();
    let io = match master {
        Some(master) => ChildIo::Pty { master },
        None => {
            let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
                return Err(io::Error::other("child pipes missing"));
            };
            ChildIo::Pipes {
                stdin: child.stdin.take().map(OwnedFd::from),
                stdout: stdout.into(),
                stderr: stderr.into(),
            }
        }
    };
    // Dropping `child` neither waits nor kills: the reaper owns its status.
    drop(child);
    Ok(Spawned { pid, exit, io })
}

/// Shell-style message and exit code for a command that failed to start.
pub fn failure(prog: &str, err: &io::Error) -> (String, i32) {
    let code = if err.kind() == io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        CANNOT_RUN
    };
    let reason = match err.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => err.to_string(),
    };
    (format!("{prog}: {reason}\n"), code)
}

/// Data the forked child applies before `exec`, prepared in the parent.
struct ChildSetup {
    tty: bool,
    /// Set groups, gid and uid: when the agent is root, or the target user
    /// differs from the agent's (which then fails, as it should).
    switch_user: bool,
    set_groups: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    dir: CString,
    /// What the command's `oom_score_adj` is set to (a line).
    oom_score_adj: &'static [u8],
}

/// The OOM score adjustment a command starts with. The runtime starts the
/// agent with a low one where the host lets it (then commands start back
/// at the neutral 0); where it could not (no CAP_SYS_RESOURCE on the
/// host), the agent is at 0 and commands start at 500 instead, so that
/// any command goes before the agent whatever their sizes.
fn command_oom_score_adj() -> &'static [u8] {
    static ADJ: std::sync::OnceLock<&'static [u8]> = std::sync::OnceLock::new();
    ADJ.get_or_init(|| {
        let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if own < 0 {
            b"0\n"
        } else {
            b"500\n"
        }
    })
}

impl ChildSetup {
    fn new(p: &Prepared) -> io::Result<ChildSetup> {
        let euid = nix::unistd::geteuid().as_raw();
        let egid = nix::unistd::getegid().as_raw();
        let dir = CString::new(p.dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in dir"))?;
        // Already the right user (say root in a sprite whose capability set
        // lacks CAP_SETGID): nothing to change, and nothing to fail.
        let mut current: Vec<u32> = nix::unistd::getgroups()
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default();
        let mut wanted = p.account.groups.clone();
        for g in [&mut current, &mut wanted] {
            g.retain(|&x| x != p.account.gid);
            g.sort_unstable();
            g.dedup();
        }
        // Only root can set groups; others keep theirs whatever /etc/group says.
        let same_user =
            euid == p.account.uid && egid == p.account.gid && (euid != 0 || current == wanted);
        Ok(ChildSetup {
            tty: p.tty,
            switch_user: !same_user,
            set_groups: euid == 0,
            uid: p.account.uid,
            gid: p.account.gid,
            groups: p.account.groups.clone(),
            dir,
            oom_score_adj: command_oom_score_adj(),
        })
    }

    /// Runs in the child between `fork` and `exec`.
    fn apply(&self) -> io::Result<()> {
        // SAFETY: plain system calls on fds and memory owned by this (forked,
        // single-threaded) process: `groups` and `dir` live in `self`, which
        // outlives the calls; none of these calls allocates or takes locks.
        unsafe {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if self.tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The OOM killer must pick a command, never the agent: see
            // `command_oom_score_adj` (raising needs no privilege; done
            // before dropping root).
            let adj = self.oom_score_adj;
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                libc::write(fd, adj.as_ptr().cast(), adj.len());
                libc::close(fd);
            }
            if self.switch_user {
                if self.set_groups && libc::setgroups(self.groups.len(), self.groups.as_ptr()) < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setgid(self.gid) < 0 || libc::setuid(self.uid) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::chdir(self.dir.as_ptr()) < 0 {
                return Err(io::Error::last_os_error());
            }
            // Handlers are reset by exec, but ignored signals stay ignored:
            // start the command with every disposition at its default.
            for sig in [
                libc::SIGINT,
                libc::SIGQUIT,
                libc::SIGHUP,
                libc::SIGTERM,
                libc::SIGPIPE,
                libc::SIGCHLD,
                libc::SIGTSTP,
                libc::SIGTTIN,
                libc::SIGTTOU,
            ] {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Account {
        UserDb::parse("", "").resolve(Some("root")).expect("root")
    }

    #[test]
    fn environment_defaults_and_overrides() {
        let acct = root();
        let env = environment(
            &acct,
            true,
            &[
                "PATH=/x".into(),
                "FOO=a=b".into(),
                "junk".into(),
                "=v".into(),
            ],
        );
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/x"));
        assert_eq!(get("FOO"), Some("a=b"));
        assert_eq!(get("HOME"), Some("/root"));
        assert_eq!(get("USER"), Some("root"));
        assert_eq!(get("LOGNAME"), Some("root"));
        assert_eq!(get("TERM"), Some(TTY_TERM));
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
        let plain = environment(&acct, false, &[]);
        assert!(plain.iter().all(|(k, _)| k != "TERM"));
    }

    #[test]
    fn lookup_follows_path_and_reports_like_a_shell() {
        let acct = root();
        let sh = find_program("sh", DEFAULT_PATH, Path::new("/"), &acct).expect("sh is found");
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        let (msg, code) = find_program("no-such-cmd-xyz", DEFAULT_PATH, Path::new("/"), &acct)
            .expect_err("missing");
        assert_eq!(
            (msg.as_str(), code),
            ("no-such-cmd-xyz: command not found\n", 127)
        );
        let (_, code) = find_program("/no/such/file", DEFAULT_PATH, Path::new("/"), &acct)
            .expect_err("missing");
        assert_eq!(code, 127);
        let (msg, code) = find_program("/etc/passwd", DEFAULT_PATH, Path::new("/"), &acct)
            .expect_err("not executable");
        assert_eq!(
            (msg.as_str(), code),
            ("/etc/passwd: Permission denied\n", 126)
        );
        let (_, code) = find_program("/etc", DEFAULT_PATH, Path::new("/"), &acct).expect_err("dir");
        assert_eq!(code, 126);
        let rel = find_program("bin/sh", "", Path::new("/"), &acct).expect("relative path");
        assert_eq!(rel, PathBuf::from("/bin/sh"));
    }

    #[test]
    fn prepare_validates() {
        let users = UserDb::parse("", "");
        let empty = ExecRequest::default();
        assert!(prepare(&empty, &users).is_err());
        let nul = ExecRequest {
            cmd: vec!["echo".into(), "a\0b".into()],
            ..Default::default()
        };
        assert!(prepare(&nul, &users).is_err());
        let nodir = ExecRequest {
            cmd: vec!["true".into()],
            dir: Some("/no/such/dir/xyz".into()),
            ..Default::default()
        };
        assert!(prepare(&nodir, &users).is_err());
        let unknown = ExecRequest {
            cmd: vec!["true".into()],
            user: Some("no-such-user-xyz".into()),
            ..Default::default()
        };
        assert!(prepare(&unknown, &users).is_err());
        let missing = ExecRequest {
            cmd: vec!["no-such-cmd-xyz".into()],
            ..Default::default()
        };
        match prepare(&missing, &users) {
            Ok(Plan::Fail { code, .. }) => assert_eq!(code, 127),
            other => panic!("unexpected {other:?}"),
        }
        let ok = ExecRequest {
            cmd: vec!["echo".into(), "x".into()],
            dir: Some("/tmp".into()),
            ..Default::default()
        };
        match prepare(&ok, &users) {
            Ok(Plan::Run(p)) => {
                assert_eq!(p.dir, PathBuf::from("/tmp"));
                assert_eq!(p.argv, vec!["echo", "x"]);
                assert!(p.program.is_absolute());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn failures_map_to_shell_codes() {
        let nf = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(failure("x", &nf).1, 127);
        let perm = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(failure("x", &perm), ("x: Permission denied\n".into(), 126));
    }
}
