//! Daemon configuration: flags with embedded defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Image used when a create call names none: `tiny` or `standard`.
    pub default_image: String,
    /// The static `sprite-agent` binary; found next to `sprited` when unset.
    pub agent_bin: Option<PathBuf>,
    pub runc_bin: PathBuf,
    /// runsc, for gvisor sprites.
    pub runsc_bin: PathBuf,
    /// How gvisor sprites' Sentry platform is chosen (`--gvisor-platform`).
    pub gvisor_platform: sprite_runtime::gvisor_platform::Choice,
    /// What runs gvisor sprites on this host (runsc's version and the
    /// platform chosen), found at start; `None` where runsc is missing.
    pub gvisor: Option<GvisorInfo>,
    /// CPUs of a sprite whose create names none (a whole number: the API
    /// has no fractions).
    pub default_cpus: u32,
    pub default_ram_mb: u64,
    pub default_storage_gb: u64,
    pub pids_limit: u64,
    /// Size of the loop-backed pool, when one is made (sparse).
    pub pool_size_gb: u64,
    /// Host uid/gid that is root inside every sprite (user namespace), and
    /// the range its files are stored in.
    pub uid_shift: Option<u32>,
    /// Whether each running sprite gets a host id range of its own (where
    /// idmapped mounts work), its files shown under it.
    pub own_id_ranges: bool,
    /// Whether container sprites are started by sprited itself (its
    /// agent binary, see sprite-runtime's `native`) instead of `runc
    /// create`, where their spec allows.
    pub native_start: bool,
    /// The isolation of a sprite whose create names none.
    pub isolation: sprite_runtime::Isolation,
    pub url_domain: String,
    /// The one region this host is (`primary_region` of every sprite).
    pub region: String,
    /// How long a non-TTY command outlives a dropped client unless the
    /// request says otherwise.
    pub non_tty_linger: std::time::Duration,
    /// A running sprite with no activity for this long is paused (warm).
    pub idle_warm: std::time::Duration,
    /// Connections the API holds open at once (more wait to be accepted).
    pub max_connections: usize,
    /// A connection that sends no complete request head for this long is
    /// closed (idle or slow clients), on the API and in-sprite sockets.
    pub header_read_timeout: std::time::Duration,
    /// Connections one sprite may hold open to its `/.sprite/api.sock`.
    pub in_sprite_connections: usize,
    /// A warm sprite is stopped (cold) after this long.
    pub idle_cold: std::time::Duration,
    /// How often the meter samples every sprite.
    pub meter_interval: std::time::Duration,
    /// Prices of the usage report.
    pub rates: sprites_api::usage::Rates,
    /// Most sprites that may exist (0: no limit).
    pub max_sprites: u64,
    /// Most sprites running or warm at once (0: no limit).
    pub max_running: u64,
    /// Sandboxes made ahead for default creates (0: none); see
    /// `manager::pool`.
    pub start_pool: usize,
    /// Most checkpoints one sprite may keep (0: no limit).
    pub max_checkpoints: u64,
    /// What a sprite's checkpoints may hold beyond its volume, in percent
    /// of `storage_gb`; over it, checkpoints are refused (0: no quota).
    pub checkpoint_space_pct: u64,
    /// Space kept free on the disk under the storage pool: creates,
    /// checkpoints and wakes are refused below it.
    pub min_free_gb: u64,
    /// Most creates per minute (0: no limit).
    pub create_rate_per_minute: u64,
    /// Where sprites' DNS resolvers forward allowed names (default: the
    /// first nameserver of the host's /etc/resolv.conf).
    pub dns_upstream: Option<SocketAddr>,
    /// How sprites' traffic leaves the host: a veth pair per sprite (the
    /// kernel's datapath) or a pasta per sprite.
    pub egress: sprite_runtime::net::Datapath,
    /// The network the kernel datapath hands out (a /31 per running
    /// sprite); blocked for sprites on either datapath.
    pub egress_network: ipnet::Ipv4Net,
    /// The cold tier: `file:///path` or `s3://bucket/prefix` (default: the
    /// folder `<data>/objects`).
    pub object_store: Option<String>,
    /// Where the metadata lives when not in `<data>/meta.db`
    /// (`--database postgres://...`).
    pub database: Option<crate::db::Location>,
    /// This host's id among those of a shared database (`--host-id`; kept
    /// in the data dir when not given).
    pub host_id: Option<String>,
    /// Where other hosts reach this one (`--advertise`).
    pub advertise: Option<String>,
    /// A host whose heartbeat has not come for this long is gone: its
    /// sprites are claimed by other hosts (`--host-timeout`).
    pub host_timeout: std::time::Duration,
    /// Takes no sprite it does not hold already (`--cordon`): creates and
    /// sprites nobody holds go to the other hosts.
    pub cordon: bool,
    /// A sprite cold for this long leaves local disk for the object store.
    pub evict_after: std::time::Duration,
    /// Every checkpoint is copied to the object store soon after it is
    /// made, so losing this host's disk does not lose it.
    pub upload_checkpoints: bool,
    /// Sets `favordynmods` on the host's cgroup2 superblock at start-up:
    /// moving a sandbox's init into its cgroups then waits for no RCU
    /// grace period (see `sprite_runtime::cgroup::favor_dynmods`).
    pub favor_dynmods: bool,
    /// The sprites' run dirs and runc's state are kept on a tmpfs of their
    /// own under the data dir (`sprite_store::runtime_fs`), not on its disk.
    pub runtime_tmpfs: bool,
    /// A changed sprite's volume is replicated to the object store at most
    /// this long after the change (zero: no replication).
    pub replicate_every: std::time::Duration,
    /// Replicated snapshots are kept this long (the newest always).
    pub snapshot_retention: std::time::Duration,
    /// At start, every sprite the object store keeps and this data dir does
    /// not know is brought back from the store (a lost disk, a new host).
    pub recover: bool,
    /// Size cap of the local cache of chunks fetched from or sent to the store.
    pub chunk_cache_bytes: u64,
    /// How long one request to a remote object store may take, retries
    /// included, before it counts as unreachable.
    pub object_store_timeout: std::time::Duration,
    /// Extra CA certificates and variables every sprite gets.
    pub host_env: crate::host_env::HostEnv,
    /// A host-wide folder of built images, shared by data dirs (see
    /// `sprite_store::StoreOptions::image_cache`).
    pub image_cache: Option<PathBuf>,
}

impl Config {
    /// The object store's URL, the default filled in.
    pub fn object_store_url(&self) -> String {
        self.object_store
            .clone()
            .unwrap_or_else(|| format!("file://{}", self.layout().default_objects().display()))
    }

    /// The data dir's parts, by name.
    /// Where the metadata lives: `--database`, or SQLite in the data dir.
    pub fn database(&self) -> crate::db::Location {
        self.database
            .clone()
            .unwrap_or_else(|| crate::db::Location::File(self.layout().meta_db()))
    }

    pub fn layout(&self) -> crate::layout::DataDir {
        crate::layout::DataDir::new(&self.data_dir)
    }
}

pub const IMAGES: [&str; 2] = ["tiny", "standard"];

/// The region a host reports when its operator names none.
pub const DEFAULT_REGION: &str = "local";

impl Config {
    pub fn with_defaults(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Config {
            listen,
            data_dir,
            default_image: "standard".into(),
            agent_bin: None,
            runc_bin: PathBuf::from("runc"),
            runsc_bin: PathBuf::from("runsc"),
            gvisor_platform: sprite_runtime::gvisor_platform::Choice::Auto,
            gvisor: None,
            default_cpus: 1,
            default_ram_mb: 1024,
            default_storage_gb: 10,
            pids_limit: 1024,
            pool_size_gb: 256,
            uid_shift: Some(100_000),
            own_id_ranges: true,
            native_start: true,
            isolation: sprite_runtime::Isolation::Container,
            url_domain: "sprites.localhost".into(),
            region: DEFAULT_REGION.into(),
            non_tty_linger: std::time::Duration::from_secs(10),
            idle_warm: std::time::Duration::from_secs(30),
            max_connections: 8192,
            header_read_timeout: std::time::Duration::from_secs(30),
            in_sprite_connections: 32,
            idle_cold: std::time::Duration::from_secs(600),
            meter_interval: std::time::Duration::from_secs(5),
            rates: sprites_api::usage::Rates::default(),
            max_sprites: 0,
            max_running: 0,
            start_pool: 0,
            max_checkpoints: 256,
            checkpoint_space_pct: 100,
            min_free_gb: 2,
            create_rate_per_minute: 0,
            dns_upstream: None,
            egress: sprite_runtime::net::Datapath::Kernel,
            egress_network: sprite_runtime::net::veth::default_network(),
            object_store: None,
            database: None,
            host_id: None,
            advertise: None,
            host_timeout: std::time::Duration::from_secs(15),
            cordon: false,
            evict_after: std::time::Duration::from_secs(3600),
            upload_checkpoints: true,
            favor_dynmods: true,
            runtime_tmpfs: true,
            replicate_every: std::time::Duration::from_secs(30),
            snapshot_retention: std::time::Duration::from_secs(24 * 3600),
            recover: false,
            chunk_cache_bytes: 2 << 30,
            object_store_timeout: std::time::Duration::from_secs(30),
            host_env: Default::default(),
            image_cache: None,
        }
    }
}

/// What runs gvisor sprites on this host.
#[derive(Clone, Debug)]
pub struct GvisorInfo {
    /// runsc's version line.
    pub runsc: String,
    pub platform: &'static str,
    /// Why that platform (`set by --gvisor-platform`, or the probe's answer).
    pub why: String,
}

impl std::fmt::Display for GvisorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, platform {} ({})",
            self.runsc, self.platform, self.why
        )
    }
}
