//! Egress for sprites: the sandbox side (pasta behind nftables) lives in
//! `sprite_runtime::net`; here are the network policy (stored in SQLite,
//! shown inside at `/.sprite/policy/network.json`) and its enforcement: a
//! DNS resolver per running sprite ([`dns`]) and the nft sets it fills; and
//! the way into a running sprite's network namespace ([`netns`]), which its
//! URL and the proxy endpoint connect through.

pub mod dns;
pub mod netns;
pub mod policy;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use sprite_runtime::net::{host::Blocked, nft, run_nft, Egress};
use sprites_api::policy::NetworkPolicy;

use crate::config::Config;
use crate::db::Db;
use crate::error::Error;

/// Where a sprite's policy file and resolv.conf are bound inside.
pub const POLICY_DIR_IN_SPRITE: &str = "/.sprite/policy";
pub const RESOLV_CONF_IN_SPRITE: &str = "/etc/resolv.conf";

/// The sandbox side of egress for this host, handed to the driver, which
/// attaches it to every sandbox it starts (see `sprite_runtime::EgressHook`).
pub fn egress(cfg: &Config) -> anyhow::Result<Egress> {
    let mut extra = Vec::new();
    if !cfg.listen.ip().is_unspecified() {
        extra.push(ipnet::IpNet::from(cfg.listen.ip()));
    }
    Ok(Egress::from_host(
        cfg.layout().pasta_pids(),
        &extra,
        cfg.egress,
        cfg.egress_network,
    )?)
}

/// One running sprite's enforcement state.
pub struct Attached {
    pub id: String,
    /// The sprite's network namespace (a path that opens it).
    netns: PathBuf,
    nft_bin: PathBuf,
    policy: RwLock<NetworkPolicy>,
    resolver: Mutex<Option<tokio::task::AbortHandle>>,
    /// Failures of the upstream resolver, which queries can cause at will.
    upstream_warnings: dns::Throttle,
    /// Held while the blocked sets are replaced (one replacement at a time,
    /// each with the list as it is when it runs).
    blocked_update: tokio::sync::Mutex<()>,
}

impl Attached {
    pub fn policy(&self) -> NetworkPolicy {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds addresses to the sprite's `allow` or `deny` sets (before the
    /// DNS answer goes out, so the first connection already passes).
    pub async fn add(&self, which: &'static str, ips: &[IpAddr]) {
        if ips.is_empty() {
            return;
        }
        let script = nft::add_script(which, ips);
        let (bin, netns) = (self.nft_bin.clone(), self.netns.clone());
        let done = tokio::task::spawn_blocking(move || run_nft(&bin, &netns, &script)).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(sprite = %self.id, error = %e, "updating the egress sets");
        }
    }
}

/// Policies and resolvers of every sprite.
pub struct Network {
    db: Arc<Db>,
    upstream: Option<SocketAddr>,
    nft_bin: PathBuf,
    attached: Mutex<HashMap<String, Arc<Attached>>>,
    /// The network namespaces of running sprites.
    namespaces: Mutex<HashMap<String, Arc<netns::Namespace>>>,
    sockets: Arc<netns::SocketMaker>,
    /// The host's addresses, as sandboxes block them (see [`Network::follow`]).
    blocked: std::sync::OnceLock<Arc<Blocked>>,
}

impl Network {
    pub fn new(db: Arc<Db>, cfg: &Config) -> Self {
        Network {
            db,
            upstream: cfg.dns_upstream.or_else(dns::host_upstream),
            nft_bin: sprite_runtime::net::DEFAULT_NFT.into(),
            attached: Mutex::new(HashMap::new()),
            namespaces: Mutex::new(HashMap::new()),
            sockets: Arc::default(),
            blocked: std::sync::OnceLock::new(),
        }
    }

    /// Keeps every running sprite's blocked sets equal to `blocked`: from
    /// now on, each sprite attached with an older list (or by an earlier
    /// daemon) gets the current one, and [`Network::host_changed`] brings
    /// them all up to date.
    pub fn follow(&self, blocked: Arc<Blocked>) {
        let _ = self.blocked.set(blocked);
    }

    /// The host's addresses or routes may have changed: looks again, and
    /// replaces the blocked sets of every running sprite whose list is not
    /// the current one.
    pub async fn host_changed(&self) {
        let Some(blocked) = self.blocked.get() else {
            return;
        };
        let b = blocked.clone();
        match tokio::task::spawn_blocking(move || b.refresh()).await {
            Ok(Ok(Some(generation))) => {
                tracing::info!(
                    generation,
                    "the host's addresses changed: updating every sprite's blocked destinations"
                )
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "reading the host's addresses"),
            Err(e) => tracing::warn!(error = %e, "reading the host's addresses"),
        }
        let attached: Vec<Arc<Attached>> = self.lock().values().cloned().collect();
        for a in attached {
            if !blocked.is_current(&a.id) {
                self.push_blocked(&a).await;
            }
        }
    }

    /// Replaces a sprite's blocked sets with the current list.
    async fn push_blocked(&self, a: &Attached) {
        let Some(blocked) = self.blocked.get() else {
            return;
        };
        let _one = a.blocked_update.lock().await;
        let (generation, list) = blocked.current();
        let script = nft::blocked_script(&list);
        let (bin, netns) = (a.nft_bin.clone(), a.netns.clone());
        match tokio::task::spawn_blocking(move || run_nft(&bin, &netns, &script)).await {
            Ok(Ok(())) => blocked.made(&a.id, generation),
            Ok(Err(e)) => {
                tracing::warn!(sprite = %a.id, error = %e, "updating the blocked destinations")
            }
            Err(e) => {
                tracing::warn!(sprite = %a.id, error = %e, "updating the blocked destinations")
            }
        }
    }

    /// The network namespace of a running sprite, to connect to its ports.
    pub fn namespace(&self, id: &str) -> Option<Arc<netns::Namespace>> {
        self.lock_namespaces().get(id).cloned()
    }

    fn lock_namespaces(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<netns::Namespace>>> {
        self.namespaces.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn policy(&self, id: &str) -> Result<NetworkPolicy, Error> {
        Ok(self
            .db
            .network_policy(id)?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default())
    }

    /// Validates, stores and (if the sprite runs) applies a policy.
    pub async fn set_policy(
        &self,
        id: &str,
        sprite_dir: &Path,
        policy: &NetworkPolicy,
    ) -> Result<(), Error> {
        let policy = policy::validate(policy).map_err(|e| Error::Invalid(e.to_string()))?;
        let json = serde_json::to_string(&policy)
            .map_err(|e| Error::Internal(format!("encoding the policy: {e}")))?;
        self.db.set_network_policy(id, &json)?;
        self.write_files(sprite_dir, &policy)?;
        let attached = self.lock().get(id).cloned();
        if let Some(a) = attached {
            *a.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
            self.apply(&a, false).await?;
        }
        Ok(())
    }

    /// The host files bound into the sprite: `(resolv.conf, policy dir)`.
    /// `resolver` is where the sprite's resolver answers it (see
    /// [`resolver_for`]).
    pub fn files(
        &self,
        id: &str,
        sprite_dir: &Path,
        resolver: IpAddr,
    ) -> Result<(PathBuf, PathBuf), Error> {
        let policy = self.policy(id)?;
        let (resolv, policy_dir) = self.write_files(sprite_dir, &policy)?;
        let want = format!("nameserver {resolver}\n");
        if std::fs::read_to_string(&resolv).ok().as_deref() != Some(want.as_str()) {
            std::fs::write(&resolv, want)
                .map_err(Error::io(format!("write {}", resolv.display())))?;
        }
        Ok((resolv, policy_dir))
    }

    fn write_files(
        &self,
        sprite_dir: &Path,
        policy: &NetworkPolicy,
    ) -> Result<(PathBuf, PathBuf), Error> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            Error::io(format!("{what} {}", p.display()))(e)
        };
        let dir = sprite_dir.join("net");
        let policy_dir = dir.join("policy");
        std::fs::create_dir_all(&policy_dir).map_err(|e| io("mkdir", &policy_dir, e))?;
        let resolv = dir.join("resolv.conf");
        // Replaced by rename: the sprite sees the directory, so it sees the new file.
        let body = serde_json::to_vec_pretty(policy)
            .map_err(|e| Error::Internal(format!("encoding the policy: {e}")))?;
        let file = policy_dir.join("network.json");
        crate::files::replace_if_changed(&file, &body, 0o644).map_err(|e| io("write", &file, e))?;
        Ok((resolv, policy_dir))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Attached>>> {
        self.attached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enforces the policy in a running sprite whose network namespace is
    /// `netns` (after a start, or a daemon restart): nft policy, then the
    /// resolver. The namespace is kept first, so that the sprite's ports
    /// are reachable even where its policy cannot be applied. `fresh`: the
    /// namespace's table is as egress just made it (empty policy chain and
    /// sets), so an open policy with nothing denied needs no change there.
    pub async fn attach(
        &self,
        id: &str,
        netns: &Path,
        resolver: IpAddr,
        fresh: bool,
    ) -> Result<(), Error> {
        self.detach(id);
        let ns = netns::Namespace::open(netns, self.sockets.clone())
            .map_err(Error::io("the sprite's network namespace"))?;
        self.lock_namespaces().insert(id.to_string(), Arc::new(ns));
        let a = Arc::new(Attached {
            id: id.to_string(),
            netns: netns.to_path_buf(),
            nft_bin: self.nft_bin.clone(),
            policy: RwLock::new(self.policy(id)?),
            resolver: Mutex::new(None),
            upstream_warnings: dns::Throttle::default(),
            blocked_update: tokio::sync::Mutex::new(()),
        });
        self.apply(&a, fresh).await?;
        let path = netns.to_path_buf();
        let sockets = tokio::task::spawn_blocking(move || dns::bind_in_netns(&path, resolver))
            .await?
            .map_err(Error::io("binding the sprite's resolver"))?;
        match self.upstream {
            Some(up) => {
                let task = tokio::spawn(dns::serve(sockets, a.clone(), up));
                *a.resolver.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
            }
            None => tracing::warn!(sprite = %id, "no upstream resolver: DNS fails inside"),
        }
        self.lock().insert(id.to_string(), a.clone());
        // Made with a list that has changed since, or by an earlier daemon
        // (the host may have changed while none ran).
        if self.blocked.get().is_some_and(|b| !b.is_current(id)) {
            self.push_blocked(&a).await;
        }
        Ok(())
    }

    /// Stops the resolver of a sprite that stops and lets its namespace go.
    pub fn detach(&self, id: &str) {
        self.lock_namespaces().remove(id);
        if let Some(a) = self.lock().remove(id) {
            if let Some(t) = a.resolver.lock().unwrap_or_else(|p| p.into_inner()).take() {
                t.abort();
            }
        }
    }

    /// Rewrites the sprite's policy chain and sets; exact denied names are
    /// resolved now so that their addresses are blocked before any lookup.
    /// On a `fresh` table an open policy that denies no name is already in
    /// place: nothing is run (it saves every start an `nft`).
    async fn apply(&self, a: &Attached, fresh: bool) -> Result<(), Error> {
        let pol = a.policy();
        let restrictive = policy::restrictive(&pol);
        if fresh && !restrictive && policy::denied_names(&pol).is_empty() {
            return Ok(());
        }
        let mut deny = Vec::new();
        if let Some(up) = self.upstream {
            for name in policy::denied_names(&pol) {
                if let Some(q) = dns::a_query(&name) {
                    if let Ok(reply) = dns::forward(&q, up).await {
                        deny.extend(dns::addresses(&reply));
                    }
                }
            }
        }
        let script = nft::policy_script(restrictive, &deny);
        let (bin, netns) = (a.nft_bin.clone(), a.netns.clone());
        tokio::task::spawn_blocking(move || run_nft(&bin, &netns, &script))
            .await?
            .map_err(Error::runtime("applying the network policy"))
    }
}

/// Where a sprite of `isolation` finds its resolver: in a container, on
/// its loopback (the namespace's); under gVisor, whose loopback is the
/// Sentry's own, at the gateway of its veth (see [`sprite_runtime::Gvisor`]).
pub fn resolver_for(isolation: sprite_runtime::Isolation) -> IpAddr {
    match isolation {
        sprite_runtime::Isolation::Container => IpAddr::V4(dns::RESOLVER),
        sprite_runtime::Isolation::Gvisor => IpAddr::V4(sprite_runtime::gvisor::GATEWAY_ADDR),
    }
}
