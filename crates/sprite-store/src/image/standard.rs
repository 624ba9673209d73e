//! The `standard` image: Debian bookworm minbase from mmdebstrap, with the
//! tools a sprite is expected to have and a `sprite` user with passwordless sudo.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use super::{write_file, write_file_mode, Reporter};
use crate::error::{IoContext, Result, StoreError};
use crate::tool;

const SUITE: &str = "bookworm";
const PACKAGES: &str =
    "bash,coreutils,procps,python3,python3-pip,python3-venv,git,curl,ca-certificates,sudo";

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
        b"sprite ALL=(ALL:ALL) NOPASSWD: ALL\n",
        0o440,
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
    Ok(format!("mmdebstrap {SUITE} minbase +{PACKAGES}"))
}
