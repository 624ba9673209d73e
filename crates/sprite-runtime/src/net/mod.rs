//! Outbound network for a sandbox: `pasta` attached to its network
//! namespace (NAT through the host's sockets, nothing bridged), behind an
//! nftables ruleset installed in that namespace first, so that nothing
//! leaves it before the rules are in place (until pasta attaches, the
//! namespace has only `lo`).
//!
//! The ruleset (`table inet sprite`) drops traffic to the host's own
//! addresses, loopback beyond the sandbox's `lo`, link-local, multicast and
//! the default gateways; pasta runs with no port forwarding in either
//! direction and without mapping the gateway to the host, so the host is not
//! reachable through it either. The sandbox's root has no CAP_NET_ADMIN and
//! cannot change the rules. The `egress_policy` chain and the `allow`/`deny` sets
//! belong to the daemon's egress policy (see [`nft::policy_script`]).

pub mod host;
pub mod nft;
pub mod pasta;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::IpNet;

use crate::error::{Result, RuntimeError};

/// How sandboxes get outbound network.
#[derive(Debug, Clone, PartialEq)]
pub struct Egress {
    pub pasta_bin: PathBuf,
    pub nft_bin: PathBuf,
    /// Destinations dropped in every sandbox (see [`host::blocked_destinations`]).
    pub blocked: Vec<IpNet>,
}

impl Egress {
    /// pasta and nft from `PATH`, blocking the host's current addresses.
    pub fn from_host(extra_blocked: &[IpNet]) -> Result<Self> {
        let mut blocked = host::blocked_destinations()?;
        blocked.extend_from_slice(extra_blocked);
        Ok(Egress {
            pasta_bin: "pasta".into(),
            nft_bin: "nft".into(),
            blocked,
        })
    }

    /// Installs the ruleset in the namespace of `pid`, then attaches pasta
    /// (its pid written to `pasta_pid_file`).
    pub fn attach(&self, pid: u32, pasta_pid_file: &Path) -> Result<()> {
        run_nft(&self.nft_bin, pid, &nft::base_script(&self.blocked))?;
        pasta::start(&self.pasta_bin, pid, pasta_pid_file)
    }
}

/// Runs an nft script inside the network namespace of `pid`.
pub fn run_nft(nft_bin: &Path, pid: u32, script: &str) -> Result<()> {
    use std::io::Write;
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .arg(nft_bin)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::io("spawn", "nsenter (nft)", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| RuntimeError::io("write to", "nft", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RuntimeError::io("wait for", "nft", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RuntimeError::Network(format!(
            "nft in the namespace of {pid} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
