//! Outbound network for a sandbox, one of two datapaths: the kernel's
//! ([`veth`]: a veth pair routed from the host and masqueraded there, the
//! default) or `pasta` attached to its network namespace (NAT through the
//! host's sockets, a process per sandbox; it carries IPv6 where the host
//! has it). Either way behind an nftables ruleset installed in that
//! namespace first, so that nothing leaves it before the rules are in
//! place (until the datapath attaches, the namespace has only `lo`).
//!
//! The ruleset (`table inet sprite`) drops traffic to the host's own
//! addresses, loopback beyond the sandbox's `lo`, link-local, multicast and
//! the default gateways; pasta runs with no port forwarding in either
//! direction and without mapping the gateway to the host, so the host is not
//! reachable through it either (the kernel datapath's host table drops
//! whatever a sprite link sends to the host). The sandbox's root has no CAP_NET_ADMIN and
//! cannot change the rules. The `egress_policy` chain and the `allow`/`deny` sets
//! belong to the daemon's egress policy (see [`nft::policy_script`]).

pub mod host;
mod libnft;
pub mod nft;
pub mod pasta;
mod rtnl;
pub mod veth;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use ipnet::{IpNet, Ipv4Net};

use crate::driver::EgressHook;
use crate::error::{Result, RuntimeError};
use crate::sandbox::validate_id;

/// How sandboxes get outbound network: the [`EgressHook`] the daemon
/// hands its driver.
#[derive(Debug, Clone)]
pub struct Egress {
    pub pasta_bin: PathBuf,
    pub nft_bin: PathBuf,
    /// Destinations dropped in every sandbox (see [`host::Blocked`]): the
    /// list a sandbox starts with; whoever follows the host's changes
    /// updates running sandboxes ([`nft::blocked_script`]).
    pub blocked: Arc<host::Blocked>,
    /// Where each sandbox's pasta pid file is kept (`<id>.pid`): pasta
    /// outlives the daemon with its sandbox, and is ended by this file.
    pub pid_dir: PathBuf,
    /// The kernel datapath, or none: pasta.
    pub kernel: Option<Arc<veth::Kernel>>,
}

/// Which datapath carries sandboxes' traffic out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datapath {
    /// A veth pair per sandbox (see [`veth`]).
    Kernel,
    /// A pasta process per sandbox (see [`pasta`]).
    Pasta,
}

impl Egress {
    /// nft (and pasta) from `PATH`, blocking the host's current addresses
    /// and the whole sprite network `network` (whichever the datapath: on
    /// a host where another daemon hands it out, its addresses are the
    /// host's); pasta's pid files in `pid_dir`. The kernel datapath readies
    /// the host here.
    pub fn from_host(
        pid_dir: PathBuf,
        extra_blocked: &[IpNet],
        datapath: Datapath,
        network: Ipv4Net,
    ) -> Result<Self> {
        let nft_bin = PathBuf::from(DEFAULT_NFT);
        let network = network.trunc();
        let mut extra = extra_blocked.to_vec();
        extra.push(IpNet::V4(network));
        let kernel = match datapath {
            Datapath::Kernel => Some(Arc::new(veth::Kernel::prepare(network, &nft_bin)?)),
            Datapath::Pasta => None,
        };
        Ok(Egress {
            pasta_bin: "pasta".into(),
            nft_bin,
            blocked: Arc::new(host::Blocked::from_host(&extra, network)?),
            pid_dir,
            kernel,
        })
    }

    /// The kernel datapath's attach of sandbox `id` in `netns`, with the
    /// blocked addresses as they are now; `prepared`: a namespace made
    /// before the sandbox starts, whose loopback is brought up too.
    fn attach_kernel(
        &self,
        kernel: &veth::Kernel,
        id: &str,
        netns: &Path,
        prepared: bool,
    ) -> Result<()> {
        let started = Instant::now();
        let (generation, blocked) = self.blocked.current();
        let link = kernel.attach(
            netns,
            &self.nft_bin,
            nft::base_script(&blocked),
            false,
            prepared,
        )?;
        self.blocked.made(id, generation);
        tracing::debug!(sandbox = %id, %link, prepared, elapsed = ?started.elapsed(), "network attached");
        Ok(())
    }

    /// The pid file of the pasta serving sandbox `id`.
    fn pid_file(&self, id: &str) -> PathBuf {
        self.pid_dir.join(format!("{id}.pid"))
    }
}

impl EgressHook for Egress {
    /// Installs the ruleset in the network namespace of `init_pid`, then
    /// attaches pasta.
    fn attach(&self, id: &str, init_pid: u32) -> Result<()> {
        validate_id(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.pid_dir)
            .map_err(|e| RuntimeError::io("mkdir", &self.pid_dir, e))?;
        if let Some(kernel) = &self.kernel {
            return self.attach_kernel(kernel, id, &netns_of(init_pid), false);
        }
        let started = Instant::now();
        let (generation, blocked) = self.blocked.current();
        run_nft(
            &self.nft_bin,
            &netns_of(init_pid),
            &nft::base_script(&blocked),
        )?;
        self.blocked.made(id, generation);
        pasta::start(&self.pasta_bin, init_pid, &self.pid_file(id))?;
        tracing::debug!(sandbox = %id, elapsed = ?started.elapsed(), "network attached");
        Ok(())
    }

    fn attaches_prepared(&self) -> bool {
        self.kernel.is_some()
    }

    /// The kernel datapath's [`EgressHook::attach`] in a namespace made
    /// for the sandbox before it starts, loopback up.
    fn attach_prepared(&self, id: &str, netns: &Path) -> Result<()> {
        validate_id(id)?;
        let Some(kernel) = &self.kernel else {
            return Err(RuntimeError::Network(
                "pasta attaches to a running sandbox".into(),
            ));
        };
        self.attach_kernel(kernel, id, netns, true)
    }

    /// The same ruleset as [`EgressHook::attach`]'s, with what a
    /// namespace that forwards needs (see [`nft::forward_script`]); then
    /// forwarding on, then pasta.
    fn attach_netns(&self, id: &str, netns: &Path) -> Result<()> {
        validate_id(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.pid_dir)
            .map_err(|e| RuntimeError::io("mkdir", &self.pid_dir, e))?;
        let started = Instant::now();
        let (generation, blocked) = self.blocked.current();
        let mut script = nft::base_script(&blocked);
        script.push_str(&nft::forward_script(
            crate::gvisor::GATEWAY_IF,
            crate::gvisor::SANDBOX_ADDR,
        ));
        if let Some(kernel) = &self.kernel {
            let link = kernel.attach(netns, &self.nft_bin, script, true, false)?;
            self.blocked.made(id, generation);
            tracing::debug!(sandbox = %id, %link, elapsed = ?started.elapsed(), "network attached (forwarding)");
            return Ok(());
        }
        run_nft(&self.nft_bin, netns, &script)?;
        self.blocked.made(id, generation);
        set_forwarding(netns)?;
        pasta::start_in(&self.pasta_bin, netns, &self.pid_file(id))?;
        tracing::debug!(sandbox = %id, elapsed = ?started.elapsed(), "network attached (forwarding)");
        Ok(())
    }

    /// Ends the sandbox's pasta: it does not notice its namespace dying.
    /// (A veth pair goes with its namespace: nothing to end. A pasta that
    /// an earlier daemon on the pasta datapath started still is.)
    fn detach(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        self.blocked.forget(id);
        let pid_file = self.pid_file(id);
        if self.kernel.is_some() && !pid_file.exists() {
            return Ok(());
        }
        pasta::stop(&pid_file)
    }
}

/// Turns IPv4 forwarding on in the network namespace bound at `netns`
/// (its sysctls are its own), from a thread that enters it.
fn set_forwarding(netns: &Path) -> Result<()> {
    let path = netns.to_path_buf();
    let what = format!("turning on forwarding in {}", netns.display());
    in_netns(netns, what, move |_| {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1\n")
            .map_err(|e| RuntimeError::io("turn on forwarding in", path, e))
    })
}

/// The network namespace of process `pid`.
pub fn netns_of(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// Runs an nft script inside the network namespace `netns` (a path that
/// opens it, e.g. [`netns_of`]), as [`nft_here`] does.
pub fn run_nft(nft_bin: &Path, netns: &Path, script: &str) -> Result<()> {
    let what = format!(
        "{} in the network namespace {}",
        nft_bin.display(),
        netns.display()
    );
    let (nft_bin, script) = (nft_bin.to_path_buf(), script.to_string());
    in_netns(netns, what, move |what| nft_here(&nft_bin, &script, what))
}

/// Runs `program args` inside the network namespace `netns`, with `script`
/// on its standard input: started from a thread that has entered the
/// namespace (a child is born in its parent thread's namespaces), which
/// saves the exec of an `nsenter` on every call.
pub(crate) fn run_script_in(
    netns: &Path,
    program: &Path,
    args: &[&str],
    script: &str,
) -> Result<()> {
    let what = format!(
        "{} in the network namespace {}",
        program.display(),
        netns.display()
    );
    let mut cmd = Command::new(program);
    cmd.args(args);
    let script = script.to_string();
    in_netns(netns, what, move |what| {
        run_with_input(&mut cmd, &script, what)
    })
}

/// Runs `f` (given `what`, for its errors) on a thread that has entered
/// the network namespace `netns`, and waits for it.
fn in_netns<F>(netns: &Path, what: String, f: F) -> Result<()>
where
    F: FnOnce(&str) -> Result<()> + Send + 'static,
{
    let ns = std::fs::File::open(netns).map_err(|e| RuntimeError::io("open", netns, e))?;
    std::thread::spawn(move || -> Result<()> {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            RuntimeError::Network(format!("entering the namespace for {what}: {e}"))
        })?;
        f(&what)
    })
    .join()
    .map_err(|_| RuntimeError::Network("the namespace thread panicked".into()))?
}

/// The `nft` that scripts go to unless told otherwise.
pub const DEFAULT_NFT: &str = "nft";

/// Runs nftables `script` in the calling thread's network namespace, all
/// of it or none: in this process through `libnftables` (see [`libnft`])
/// where `nft_bin` is [`DEFAULT_NFT`] and the library opened, else as
/// `nft_bin -f -`.
pub(crate) fn nft_here(nft_bin: &Path, script: &str, what: &str) -> Result<()> {
    if nft_bin == Path::new(DEFAULT_NFT) {
        if let Some(done) = libnft::run(script) {
            return done.map_err(|e| RuntimeError::Network(format!("{what} failed: {e}")));
        }
    }
    run_with_input(Command::new(nft_bin).args(["-f", "-"]), script, what)
}

pub(crate) fn run_with_input(cmd: &mut Command, input: &str, what: &str) -> Result<()> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RuntimeError::io("spawn", what.to_string(), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| RuntimeError::io("write to", what.to_string(), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RuntimeError::io("wait for", what.to_string(), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RuntimeError::Network(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
