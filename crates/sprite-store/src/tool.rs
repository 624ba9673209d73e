//! External tools (mkfs.xfs, mkfs.ext4, mmdebstrap, chroot) run with their
//! output captured for the error message.

use std::process::{Command, Output, Stdio};

use crate::error::{Result, StoreError};

/// Renders a command line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion; a non-zero exit becomes `StoreError::Command`.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StoreError::Command {
            command: describe(cmd),
            status: "not started".into(),
            output: e.to_string(),
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(StoreError::Command {
            command: describe(cmd),
            status: output.status.to_string(),
            output: tail(&[&output.stderr[..], &output.stdout[..]].concat(), 2000),
        })
    }
}

/// The last `max` bytes of a tool's output, as text.
pub(crate) fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}
