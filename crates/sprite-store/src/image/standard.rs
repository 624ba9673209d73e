//! The `standard` image, the development image: Debian bookworm from
//! mmdebstrap with the languages and tools a sprite is expected to have
//! (Python, Node.js, Go, Rust, Ruby, build tools), the package lists kept so
//! that `sudo apt-get install` works, a `sprite` user with passwordless sudo,
//! and a Python environment that user owns, first on PATH, so that `pip
//! install` needs neither sudo nor a flag (Debian's own Python refuses it:
//! PEP 668).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use super::{write_file, write_file_mode, Reporter};
use crate::error::{IoContext, Result, StoreError};
use crate::tool;

const SUITE: &str = "bookworm";
const PACKAGES: &str = "bash,coreutils,procps,sudo,ca-certificates,less,file,unzip,xz-utils,\
    python3,python3-pip,python3-venv,python-is-python3,nodejs,npm,golang-go,rustc,cargo,ruby,\
    build-essential,git,curl,wget,jq,sqlite3,vim,nano,tmux,htop,openssh-client";

/// The `sprite` user's Python environment: `python`, `pip` and what they
/// install. Its `bin` leads the PATH of every command ([`PATH`]) and of
/// login shells (`/etc/profile.d`).
pub const VENV: &str = "/opt/venv";

/// Where `npm install -g` puts packages (npm's `prefix`, in /etc/npmrc):
/// owned by the `sprite` user, as the venv is, so that it needs no sudo.
pub const NPM_PREFIX: &str = "/opt/npm";

/// PATH of every command in a `standard` sprite: the venv first, npm's
/// global commands, then Debian's, then where `sprite-env` is.
pub const PATH: &str = "/opt/venv/bin:/opt/npm/bin:\
    /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/.sprite/bin";

/// Variables `sudo` keeps: proxy settings and CA bundles given to every
/// sprite (`--sprite-env`, `--ca-file`) must reach `sudo apt-get` too.
const SUDO_ENV_KEEP: &str = "http_proxy https_proxy no_proxy all_proxy \
    HTTP_PROXY HTTPS_PROXY NO_PROXY ALL_PROXY \
    SSL_CERT_FILE REQUESTS_CA_BUNDLE PIP_CERT NODE_EXTRA_CA_CERTS CURL_CA_BUNDLE";

/// `/etc/profile.d/sprite-venv.sh`: [`PATH`]'s first two for login shells.
const LOGIN_PATH: &str = r#"for d in /opt/npm/bin /opt/venv/bin; do
    case ":$PATH:" in *:$d:*) ;; *) PATH="$d:$PATH" ;; esac
done
export VIRTUAL_ENV=/opt/venv
"#;

const SPRITE_UID: &str = "1000";

/// mmdebstrap's `I:` lines, in order, and how far along each one means we are.
const PHASES: [(&str, f64); 8] = [
    ("running apt-get update", 0.05),
    ("downloading packages", 0.15),
    ("extracting archives", 0.35),
    ("installing essential packages", 0.45),
    ("installing remaining packages", 0.6),
    ("running --customize-hook", 0.85),
    ("cleaning package lists", 0.9),
    ("success in", 0.92),
];

pub(super) fn build(rootfs: &Path, reporter: &mut Reporter<'_>) -> Result<String> {
    reporter.report("starting mmdebstrap", 0.0);
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase", "--format=directory"])
        .arg(format!("--include={PACKAGES}"))
        // The package lists stay, so that `apt-get install` works at once
        // (what the lists say was current when the image was built).
        .arg("--skip=cleanup/apt/lists")
        .arg(SUITE)
        .arg(rootfs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let command = tool::describe(&cmd);
    let mut child = cmd.spawn().map_err(|e| StoreError::Command {
        command: command.clone(),
        status: "not started".into(),
        output: e.to_string(),
    })?;
    let mut last_lines = VecDeque::with_capacity(40);
    let mut fraction = 0.0;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some((_, f)) = PHASES.iter().find(|(p, _)| line.contains(p)) {
                fraction = *f;
            }
            if let Some(msg) = line.strip_prefix("I: ") {
                reporter.report(msg.trim_end_matches("...").to_string(), fraction);
            }
            if last_lines.len() == 40 {
                last_lines.pop_front();
            }
            last_lines.push_back(line);
        }
    }
    let status = child.wait().map_err(|e| StoreError::Command {
        command: command.clone(),
        status: "wait failed".into(),
        output: e.to_string(),
    })?;
    if !status.success() {
        return Err(StoreError::Command {
            command,
            status: status.to_string(),
            output: Vec::from(last_lines).join("\n"),
        });
    }

    reporter.report("adding user sprite", 0.95);
    tool::run(
        Command::new("chroot")
            .arg(rootfs)
            .args(["useradd", "--create-home", "--uid", "1000", "--user-group"])
            .args(["--groups", "sudo", "--shell", "/bin/bash", "sprite"]),
    )?;
    let home = rootfs.join("home/sprite");
    write_file_mode(&home, 0o755)?;
    write_file(
        &rootfs.join("etc/sudoers.d/sprite"),
        format!("sprite ALL=(ALL:ALL) NOPASSWD: ALL\nDefaults env_keep += \"{SUDO_ENV_KEEP}\"\n")
            .as_bytes(),
        0o440,
    )?;

    reporter.report("creating the Python environment", 0.97);
    tool::run(
        Command::new("chroot")
            .arg(rootfs)
            .args(["python3", "-m", "venv", VENV]),
    )?;
    std::fs::create_dir_all(rootfs.join(&NPM_PREFIX[1..])).ctx("mkdir", rootfs)?;
    write_file(
        &rootfs.join("etc/npmrc"),
        format!("prefix={NPM_PREFIX}\n").as_bytes(),
        0o644,
    )?;
    let owner = format!("{SPRITE_UID}:{SPRITE_UID}");
    tool::run(
        Command::new("chroot")
            .arg(rootfs)
            .args(["chown", "-R", &owner, VENV, NPM_PREFIX]),
    )?;
    // Login shells: Debian's /etc/profile sets PATH afresh, then reads this.
    write_file(
        &rootfs.join("etc/profile.d/sprite-venv.sh"),
        LOGIN_PATH.as_bytes(),
        0o644,
    )?;
    let apt_cache = rootfs.join("var/cache/apt/archives");
    if apt_cache.is_dir() {
        // mmdebstrap cleans it already; make sure no .deb stays in the base.
        for entry in std::fs::read_dir(&apt_cache)
            .ctx("readdir", &apt_cache)?
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "deb") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    reporter.report("standard rootfs built", 1.0);
    Ok(format!(
        "mmdebstrap {SUITE} minbase +{PACKAGES}, venv {VENV}"
    ))
}
