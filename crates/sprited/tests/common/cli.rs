//! The `sprite` CLI as a user runs it: its own home and working directory,
//! pointed at a daemon by the environment only (no saved login).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::Daemon;

pub fn cli_bin() -> PathBuf {
    let p = Path::new(super::BIN)
        .parent()
        .expect("target dir")
        .join("sprite");
    assert!(
        p.is_file(),
        "the sprite CLI is not built at {}",
        p.display()
    );
    p
}

/// The CLI with its own home and working directory, pointed at `d` by the
/// environment only (no saved login).
pub struct Cli {
    pub home: tempfile::TempDir,
    pub cwd: tempfile::TempDir,
    pub url: String,
    pub token: String,
}

impl Cli {
    pub fn new(d: &Daemon) -> Cli {
        Cli {
            home: tempfile::tempdir().expect("home"),
            cwd: tempfile::tempdir().expect("cwd"),
            url: d.url.clone(),
            token: d.token.clone(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run sprite")
    }

    /// The command, stdin closed; set stdio and run it yourself.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(cli_bin());
        c.args(args)
            .current_dir(self.cwd.path())
            .env("HOME", self.home.path())
            .env("SPRITES_API_URL", &self.url)
            .env("SPRITE_TOKEN", &self.token)
            .stdin(Stdio::null());
        c
    }

    /// Run and insist on success; answers stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "sprite {args:?} failed with {:?}: {}{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// Run and insist on failure with `code`; answers stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "sprite {args:?}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        let stderr = text(&o.stderr);
        assert!(stderr.starts_with("error: "), "sprite {args:?}: {stderr}");
        stderr
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
