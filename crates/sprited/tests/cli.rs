//! The `sprite` CLI against the real daemon, as a user types it: the README
//! flow (create, exec, daemon SIGKILL and restart, exec again), login, use,
//! stdin, exit status, env, dir, console, sessions, human errors.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::cli::{cli_bin, text};
use common::Daemon;

struct Cli {
    home: tempfile::TempDir,
    cwd: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            home: tempfile::tempdir().expect("home"),
            cwd: tempfile::tempdir().expect("cwd"),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(cli_bin());
        c.args(args)
            .current_dir(self.cwd.path())
            .env("HOME", self.home.path())
            .env_remove("SPRITE_TOKEN")
            .env_remove("SPRITES_API_URL")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run sprite")
    }

    fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sprite");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }
}

impl Cli {
    /// Run `sprite <args>` on a real terminal (`script` gives it a PTY),
    /// typing each chunk after its pause; answers what the screen showed.
    fn on_terminal(&self, args: &str, typing: &[(u64, &[u8])]) -> String {
        let line = format!("{} {args}", cli_bin().display());
        let mut script = Command::new("script")
            .args(["-qfec", &line, "/dev/null"])
            .current_dir(self.cwd.path())
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script");
        let mut input = script.stdin.take().expect("stdin");
        for (pause_ms, keys) in typing {
            std::thread::sleep(std::time::Duration::from_millis(*pause_ms));
            input.write_all(keys).expect("type");
        }
        let o = script.wait_with_output().expect("terminal session");
        drop(input);
        text(&o.stdout)
    }
}

#[test]
fn the_readme_flow_and_every_command() {
    let mut d = Daemon::start();
    let cli = Cli::new();

    // Not logged in: a human error, not a stack trace.
    let o = cli.run(&["list"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).starts_with("error: "),
        "{}",
        text(&o.stderr)
    );

    let o = cli.run(&["login", &d.url, "--token", &d.token]);
    assert!(o.status.success(), "login: {}", text(&o.stderr));
    let cfg = cli.home.path().join(".sprites");
    assert!(cfg.is_dir());
    let o = cli.run(&["login", &d.url, "--token", "wrong"]);
    assert!(!o.status.success(), "a wrong token is refused at login");

    // The token typed at a prompt, not echoed; stored readable by the user only.
    let typed = Cli::new();
    let token_line = format!("{}\n", d.token);
    let screen = typed.on_terminal(&format!("login {}", d.url), &[(500, token_line.as_bytes())]);
    assert!(screen.contains("Logged in"), "{screen}");
    assert!(!screen.contains(&d.token), "the token was echoed: {screen}");
    let saved = typed.home.path().join(".sprites");
    let file = std::fs::read_dir(&saved)
        .expect("~/.sprites")
        .filter_map(Result::ok)
        .find(|e| e.path().is_file())
        .expect("a saved config");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&file.metadata().expect("stat").permissions());
    assert_eq!(mode & 0o777, 0o600, "the saved token is private");

    let o = cli.run(&["create", "demo", "--skip-console"]);
    assert!(o.status.success(), "create: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "demo");
    let o = cli.run(&[
        "exec",
        "-s",
        "demo",
        "--",
        "sh",
        "-c",
        "echo hi > /home/sprite/f",
    ]);
    assert!(o.status.success(), "exec: {}", text(&o.stderr));

    // kill -9 of the daemon and its restart: the file is still there.
    d.kill9();
    d.spawn();
    let o = cli.run(&["exec", "-s", "demo", "--", "cat", "/home/sprite/f"]);
    assert_eq!(text(&o.stdout), "hi\n", "{}", text(&o.stderr));

    // `use` writes .sprite; later commands need no -s.
    let o = cli.run(&["use", "demo"]);
    assert!(o.status.success(), "use: {}", text(&o.stderr));
    assert!(cli.cwd.path().join(".sprite").is_file());
    let o = cli.run(&["x", "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "exit status passes through");
    let o = cli.run_with_stdin(&["exec", "--", "tr", "a-z", "A-Z"], b"piped stdin\n");
    assert_eq!(text(&o.stdout), "PIPED STDIN\n");
    let o = cli.run(&[
        "exec",
        "--env",
        "A=1,B=2",
        "--dir",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo $A$B $(pwd)",
    ]);
    assert_eq!(text(&o.stdout), "12 /tmp\n");
    let o = cli.run(&["exec", "--", "sh", "-c", "echo to-stderr >&2"]);
    assert_eq!(text(&o.stderr), "to-stderr\n");
    assert!(o.stdout.is_empty());
    let o = cli.run(&["exec", "--tty", "--", "tty"]);
    assert!(
        text(&o.stdout).contains("/dev/pts/"),
        "{:?} {}",
        o.status,
        text(&o.stderr)
    );

    // list, info, sessions, console, api.
    let o = cli.run(&["list"]);
    assert!(text(&o.stdout).contains("demo"));
    let o = cli.run(&["info"]);
    assert!(text(&o.stdout).contains("demo"), "{}", text(&o.stdout));
    let o = cli.run(&["sessions", "list"]);
    assert!(o.status.success(), "sessions: {}", text(&o.stderr));
    let o = cli.run_with_stdin(&["console"], b"echo from-con$((1+1))sole\nexit\n");
    assert!(
        text(&o.stdout).contains("from-con2sole"),
        "{}",
        text(&o.stdout)
    );
    // An interactive console on a real terminal (script gives the CLI a
    // PTY): Ctrl+\ detaches, the session keeps running and can be killed.
    let screen = cli.on_terminal("console", &[(0, b"echo con-$((2+3))\n"), (1500, &[0x1c])]);
    assert!(screen.contains("con-5"), "{screen}");
    assert!(screen.contains("detached"), "{screen}");
    let o = cli.run(&["sessions", "list"]);
    let listed = text(&o.stdout);
    let id = listed
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1) == Some("yes"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the detached console is listed: {listed}"))
        .to_string();
    let o = cli.run(&["sessions", "kill", &id, "--signal", "KILL"]);
    assert!(o.status.success(), "kill: {}", text(&o.stderr));

    let o = cli.run(&["api", "/v1/sprites/demo"]);
    assert!(
        text(&o.stdout).contains("\"name\":\"demo\""),
        "{}",
        text(&o.stdout)
    );

    // Human errors for unknown sprites and bad names.
    let o = cli.run(&["info", "-s", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no sprite named nope"),
        "{}",
        text(&o.stderr)
    );
    let o = cli.run(&["create", "Bad_Name", "--skip-console"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).starts_with("error: "),
        "{}",
        text(&o.stderr)
    );

    let o = cli.run(&["destroy", "--force"]);
    assert!(o.status.success(), "destroy: {}", text(&o.stderr));
    let o = cli.run(&["list"]);
    assert!(!text(&o.stdout).contains("demo"));
}
