use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sprited::Config;

/// The sprites daemon: persistent, isolated Linux sandboxes behind the
/// Sprites v1 API.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Address of the API.
    #[arg(long, default_value = "127.0.0.1:7070", global = true)]
    listen: SocketAddr,
    /// Where sprites, images, metadata and the admin token live.
    #[arg(long, default_value = "/var/lib/sprited", global = true)]
    data_dir: PathBuf,
    /// Image for create calls that name none.
    #[arg(long, default_value = "standard", value_parser = ["tiny", "standard"], global = true)]
    default_image: String,
    /// The static sprite-agent binary (default: found beside sprited).
    #[arg(long, global = true)]
    agent_bin: Option<PathBuf>,
    /// Default CPU limit of a sprite (a whole number of CPUs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    default_cpus: u32,
    /// Default memory limit of a sprite, in MiB.
    #[arg(long, default_value_t = 1024, global = true)]
    default_ram_mb: u64,
    /// Process limit of a sprite.
    #[arg(long, default_value_t = 1024, global = true)]
    pids_limit: u64,
    /// Run every sprite as the one shared host id range (100000..165535)
    /// instead of a range of its own (for hosts whose tools expect it, and
    /// to measure what the ranges cost).
    #[arg(long, global = true)]
    shared_id_range: bool,
    /// Start container sprites with `runc create` (as before sprited
    /// started them itself, ~20 ms faster; for hosts where that differs,
    /// and to measure it).
    #[arg(long, global = true)]
    runc_start: bool,
    /// The isolation of sprites whose create names none: `container`
    /// (runc) or `gvisor` (runsc, where installed).
    #[arg(long, default_value = "container", value_parser = parse_isolation, global = true)]
    isolation: sprite_runtime::Isolation,
    /// The platform gvisor sprites' Sentry runs on: `auto` (KVM where a
    /// KVM sandbox runs here, found once per boot; else ptrace), `ptrace`
    /// or `kvm`.
    #[arg(long, default_value = "auto", global = true)]
    gvisor_platform: sprite_runtime::gvisor_platform::Choice,
    /// Size of the storage pool file made where the data dir has no
    /// reflinks (sparse: only what is written takes space), in GiB.
    #[arg(long, default_value_t = 256, global = true)]
    pool_size_gb: u64,
    /// A running sprite with no activity for this long is paused: warm
    /// (`2s`, `30s`, `10m`).
    #[arg(long, default_value = "30s", value_parser = flag_duration, global = true)]
    idle_warm: std::time::Duration,
    /// A connection that sends no complete request head for this long is
    /// closed (idle or slow clients).
    #[arg(long, default_value = "30s", value_parser = flag_duration, global = true)]
    header_read_timeout: std::time::Duration,
    /// Connections the API holds open at once; more wait to be accepted.
    #[arg(long, default_value_t = 8192, global = true)]
    max_connections: usize,
    /// A warm sprite is stopped after this long: cold (no process, no memory).
    #[arg(long, default_value = "10m", value_parser = flag_duration, global = true)]
    idle_cold: std::time::Duration,
    /// How often CPU, memory and storage of every sprite are sampled.
    #[arg(long, default_value = "5s", value_parser = flag_duration, global = true)]
    meter_interval: std::time::Duration,
    /// Price of a vCPU-hour, in USD (the public service's by default).
    #[arg(long, default_value_t = 0.07, global = true)]
    rate_cpu_hour: f64,
    /// Price of a GB-hour of memory.
    #[arg(long, default_value_t = 0.04375, global = true)]
    rate_ram_gb_hour: f64,
    /// Price of a GB-month of hot (local) storage.
    #[arg(long, default_value_t = 0.50, global = true)]
    rate_hot_gb_month: f64,
    /// Price of a GB-month of cold (object) storage.
    #[arg(long, default_value_t = 0.02, global = true)]
    rate_cold_gb_month: f64,
    /// Most sprites that may exist (0: no limit).
    #[arg(long, default_value_t = 0, global = true)]
    max_sprites: u64,
    /// Most sprites running or warm at once (0: no limit); a wake over it is
    /// refused with 429 (the sprite waits cold), a create too unless it asks
    /// `wait_for_capacity` (then it is made cold).
    #[arg(long, default_value_t = 0, global = true)]
    max_running: u64,
    /// Sandboxes made ahead for creates that ask for nothing but the
    /// defaults (image, size, limits): volume, root and container ready,
    /// network attached, such a create only names and lets one run
    /// (0: none).
    #[arg(long, default_value_t = 2, global = true)]
    start_pool: usize,
    /// Most checkpoints one sprite may keep (0: no limit); one more is
    /// refused with 429 until some are deleted.
    #[arg(long, default_value_t = 256, global = true)]
    max_checkpoints: u64,
    /// What a sprite's checkpoints may hold on disk beyond its volume, in
    /// percent of its `storage_gb` (blocks shared counted once); over it a
    /// checkpoint answers 507 until some are deleted (0: no quota).
    #[arg(long, default_value_t = 100, global = true)]
    checkpoint_space: u64,
    /// GiB kept free on the disk under the storage pool (the host's disk
    /// when the pool is a loop-mounted image): creates, checkpoints and
    /// wakes are refused with 507 below it, before a running sprite could
    /// ever meet a full disk.
    #[arg(long, default_value_t = 2, global = true)]
    min_free_gb: u64,
    /// Most sprite creates per minute (0: no limit).
    #[arg(long, default_value_t = 0, global = true)]
    create_rate: u64,
    /// Upstream DNS server (`ip:port`) of the sprites' resolvers (default:
    /// the first nameserver in /etc/resolv.conf).
    #[arg(long, global = true)]
    dns_upstream: Option<SocketAddr>,
    /// How sprites reach the outside: `kernel` (a veth pair per sprite,
    /// routed and masqueraded by the host's kernel; IPv4) or `pasta` (a
    /// pasta process per sprite, NAT through the host's sockets; IPv6 too
    /// where the host has it, ~29 MiB per running sprite).
    #[arg(long, default_value = "kernel", value_parser = ["kernel", "pasta"], global = true)]
    egress: String,
    /// The network the kernel datapath hands out, a /31 per running sprite
    /// (it must not overlap a network the host routes).
    #[arg(long, default_value = sprite_runtime::net::veth::DEFAULT_NETWORK, global = true)]
    egress_network: ipnet::Ipv4Net,
    /// Keep the metadata (sprites, checkpoints, tokens, usage) in this
    /// PostgreSQL database (`postgres://user:password@host:port/db`)
    /// instead of SQLite in the data dir. Read from SPRITED_DATABASE when
    /// unset, so a password need not be on the command line.
    #[arg(long, env = "SPRITED_DATABASE", hide_env_values = true, global = true, value_parser = flag_database)]
    database: Option<sprited::db::Location>,
    /// With `--database`: this host's id among the hosts sharing it (kept
    /// in `<data-dir>/host.id`, made at first start, when not given).
    #[arg(long, global = true)]
    host_id: Option<String>,
    /// With `--database`: the URL other hosts reach this one at
    /// (`http://addr:port`; default: `http://` and `--listen`).
    #[arg(long, global = true)]
    advertise: Option<String>,
    /// With `--database`: every host serves, each sprite held by one; a
    /// host whose heartbeat has not come for this long is gone, and other
    /// hosts claim its sprites on their next request (`15s`).
    #[arg(long, default_value = "15s", value_parser = flag_duration, global = true)]
    host_timeout: std::time::Duration,
    /// With `--database`: this host takes no sprite it does not hold
    /// already; creates and sprites nobody holds go to the other hosts
    /// (it still answers, forwarding, every request).
    #[arg(long, global = true)]
    cordon: bool,
    /// Where evicted sprites' volumes and checkpoints go: `file:///path`
    /// or `s3://bucket/prefix` (with the AWS_* environment variables,
    /// AWS_ENDPOINT_URL included). Default: the folder `<data-dir>/objects`.
    #[arg(long, global = true)]
    object_store: Option<String>,
    /// A sprite cold (stopped) for this long leaves local disk: its volume
    /// and checkpoints go to the object store (`30s`, `1h`).
    #[arg(long, default_value = "1h", value_parser = flag_duration, global = true)]
    evict_after: std::time::Duration,
    /// Copy every checkpoint to the object store soon after it is made
    /// (in the background), so a lost disk does not take it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, global = true)]
    upload_checkpoints: bool,
    /// Set the kernel's `favordynmods` option on the host's cgroup2 mount
    /// at start-up (kept once set): every sandbox start's move into its
    /// cgroups then costs ~0.2 ms instead of an RCU grace period (7-20 ms
    /// here), at a small cost to every fork and exit on the host. `false`
    /// leaves the mount as it is.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, global = true)]
    favor_dynmods: bool,
    /// Keep the sprites' run dirs and runc's state (bundles, mount points,
    /// policy files: what a reboot forgets anyway) on a tmpfs
    /// of their own in the data dir, so a start makes no inodes on its
    /// disk. Moved there at a start with no sandbox running; `false` leaves
    /// them where they are.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, global = true)]
    runtime_tmpfs: bool,
    /// A sprite whose volume changed is replicated to the object store as a
    /// crash-consistent snapshot at most this long after the change (`0`:
    /// never; only what changed is read and sent).
    #[arg(long, default_value = "30s", value_parser = flag_duration_or_off, global = true)]
    replicate_every: std::time::Duration,
    /// How long replicated snapshots are kept (the newest always is).
    #[arg(long, default_value = "24h", value_parser = flag_duration, global = true)]
    snapshot_retention: std::time::Duration,
    /// At start, bring back every sprite (and API token) the object store
    /// keeps that this data dir does not know: a lost disk or a new host.
    #[arg(long, global = true)]
    recover: bool,
    /// Size cap of the local cache of object-store chunks, in GiB (0:
    /// none). Default: 2, and none with the default object store (a
    /// folder of the data dir, on the same disk as the cache).
    #[arg(long, global = true)]
    chunk_cache_gb: Option<f64>,
    /// How long one object-store request may take, retries included,
    /// before the store counts as unreachable.
    #[arg(long, default_value = "30s", value_parser = flag_duration, global = true)]
    object_store_timeout: std::time::Duration,
    /// The region this host is: every sprite's `primary_region` (a create
    /// may name any region; the sprite runs here).
    #[arg(long, default_value = sprited::config::DEFAULT_REGION, value_parser = parse_region, global = true)]
    region: String,
    /// A CA certificate file (PEM) every sprite trusts, added to its system
    /// bundle at start and named by SSL_CERT_FILE, REQUESTS_CA_BUNDLE,
    /// PIP_CERT, CURL_CA_BUNDLE and NODE_EXTRA_CA_CERTS: for networks whose
    /// TLS a proxy re-signs. Repeatable.
    #[arg(long = "ca-file", value_name = "PATH", global = true)]
    ca_files: Vec<PathBuf>,
    /// A variable every process of every sprite gets (e.g.
    /// HTTPS_PROXY=http://proxy:3128); a sprite's own environment wins.
    /// Repeatable.
    #[arg(long = "sprite-env", value_name = "KEY=VALUE", global = true)]
    sprite_env: Vec<String>,
    /// A folder of built base images shared by every data dir of this host:
    /// an image missing from the data dir is copied from there, and one
    /// built is left there (by recipe: a changed image is built anew).
    #[arg(long, value_name = "DIR", global = true)]
    image_cache: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve,
    /// Build base images into the data dir, with a progress bar.
    Images {
        /// Images to build.
        #[arg(value_parser = ["tiny", "standard"], required = true)]
        names: Vec<String>,
    },
    /// Stop every sprite of the data dir, unmount everything and delete it.
    Purge,
    /// Bring back every sprite the object store keeps (`--object-store`)
    /// into this data dir, then exit: name, config, URL settings,
    /// policies, labels, checkpoints, data as of its last replicated
    /// snapshot, usage, and the API tokens. Sprites the data dir knows
    /// already are left as they are.
    Recover,
    /// Hand every sprite of the daemon at `--listen` to another host of
    /// its shared database, then stop it (`POST /v1/host/drain`): each
    /// sprite stopped and moved to the object store, nothing lost. The
    /// admin token is SPRITED_TOKEN, else `<data-dir>/admin.token`.
    Drain,
}

fn parse_region(s: &str) -> Result<String, String> {
    let ok = (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a region name: 1 to 63 lowercase letters, digits and dashes"
        ))
    }
}

/// A duration flag: any form `sprites_api` parses, but not zero.
/// A duration flag where `0` means "off".
fn flag_duration_or_off(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    flag_duration(s)
}

/// `--database`: a PostgreSQL URL.
fn flag_database(s: &str) -> Result<sprited::db::Location, String> {
    sprited::db::Location::parse_url(s)
}

fn flag_duration(s: &str) -> Result<std::time::Duration, String> {
    sprites_api::duration::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration like 2s, 30s or 10m"))
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn build_images(cfg: &Config, names: &[String]) -> anyhow::Result<()> {
    let store = sprite_store::Store::open(&cfg.data_dir, sprited::store_options(cfg))
        .with_context(|| format!("opening the storage pool in {}", cfg.data_dir.display()))?;
    for name in names {
        let kind = sprited::manager::image_kind(name).map_err(|e| anyhow::anyhow!("{e}"))?;
        if store.image_outdated(kind) {
            // Sprites made from it keep it as their lower layer: it is
            // replaced only when none is left.
            let users = sprites_using(cfg, name)?;
            if users > 0 {
                println!("image {name}: built by an older recipe; kept, {users} sprite(s) use it");
                continue;
            }
            println!("image {name}: built by an older recipe; building it anew");
            store
                .remove_image(name)
                .with_context(|| format!("removing the old image {name}"))?;
        } else if store.image_ready(name) {
            println!("image {name}: already built");
            continue;
        }
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>9} [{bar:40}] {percent:>3}% {elapsed} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(name.clone());
        store
            .build_image(kind, &mut |p| {
                bar.set_position((p.fraction.clamp(0.0, 1.0) * 1000.0) as u64);
                bar.set_message(p.phase.clone());
            })
            .with_context(|| format!("building image {name}"))?;
        bar.finish_with_message("done");
    }
    Ok(())
}

/// How many sprites of the data dir were made from image `name`.
fn sprites_using(cfg: &Config, name: &str) -> anyhow::Result<usize> {
    let location = cfg.database();
    if let sprited::db::Location::File(path) = &location {
        if !path.exists() {
            return Ok(0);
        }
    }
    let db = sprited::db::Db::open_at(&location)
        .with_context(|| format!("opening the metadata database {location}"))?;
    Ok(db.all()?.iter().filter(|r| r.image == name).count())
}

/// Raise the soft limit on open files to the hard one (every sprite costs
/// the daemon descriptors: its agent connections, resolver sockets, API
/// socket), and say what it is.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            let got = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            };
            tracing::info!(open_files = got, hard_limit = hard, "file descriptor limit");
        }
        Err(e) => tracing::warn!(error = %e, "reading the file descriptor limit"),
    }
}

/// glibc gives each thread that allocates an arena of its own (up to 8
/// per core) and keeps in each what was freed there. The daemon's blocking
/// threads come and go, each compressing and hashing megabytes for an
/// upload: with 60 sprites replicating the daemon stayed at 150 MiB
/// resident after it all ended, 58 MiB with two arenas (measured with
/// `MALLOC_ARENA_MAX=2`). A value the user set in the environment wins.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && std::env::var_os("GLIBC_TUNABLES").is_none()
    {
        // SAFETY: mallopt only sets a parameter of malloc; this runs first
        // thing in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The daemon runs as a task on the runtime's workers, not as the main
    // thread's `block_on`: the accept loops are then polled where the I/O
    // driver wakes them. Polled on the main thread, each new connection
    // cost two more hand-offs between threads (worker to main to worker),
    // each waking an idle CPU.
    runtime.block_on(async {
        tokio::spawn(run())
            .await
            .context("the daemon's main task failed")?
    })
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let mut cfg = Config::with_defaults(cli.listen, cli.data_dir);
    raise_fd_limit();
    cfg.default_image = cli.default_image;
    cfg.agent_bin = cli.agent_bin;
    cfg.default_cpus = cli.default_cpus;
    cfg.region = cli.region;
    cfg.default_ram_mb = cli.default_ram_mb;
    cfg.pids_limit = cli.pids_limit;
    cfg.own_id_ranges = !cli.shared_id_range;
    cfg.native_start = !cli.runc_start;
    cfg.isolation = cli.isolation;
    cfg.gvisor_platform = cli.gvisor_platform;
    cfg.pool_size_gb = cli.pool_size_gb;
    cfg.idle_warm = cli.idle_warm;
    cfg.header_read_timeout = cli.header_read_timeout;
    cfg.max_connections = cli.max_connections;
    cfg.idle_cold = cli.idle_cold;
    cfg.meter_interval = cli.meter_interval;
    cfg.max_sprites = cli.max_sprites;
    cfg.max_running = cli.max_running;
    cfg.start_pool = cli.start_pool;
    cfg.max_checkpoints = cli.max_checkpoints;
    cfg.checkpoint_space_pct = cli.checkpoint_space;
    cfg.min_free_gb = cli.min_free_gb;
    cfg.create_rate_per_minute = cli.create_rate;
    cfg.dns_upstream = cli.dns_upstream;
    cfg.egress = match cli.egress.as_str() {
        "pasta" => sprite_runtime::net::Datapath::Pasta,
        _ => sprite_runtime::net::Datapath::Kernel,
    };
    cfg.egress_network = cli.egress_network;
    cfg.object_store = cli.object_store;
    cfg.database = cli.database;
    cfg.host_id = cli.host_id;
    cfg.advertise = cli.advertise;
    cfg.host_timeout = cli.host_timeout;
    cfg.cordon = cli.cordon;
    cfg.evict_after = cli.evict_after;
    cfg.upload_checkpoints = cli.upload_checkpoints;
    cfg.favor_dynmods = cli.favor_dynmods;
    cfg.runtime_tmpfs = cli.runtime_tmpfs;
    cfg.replicate_every = cli.replicate_every;
    cfg.snapshot_retention = cli.snapshot_retention;
    cfg.recover = cli.recover;
    cfg.chunk_cache_bytes = match cli.chunk_cache_gb {
        Some(gb) => (gb.max(0.0) * (1u64 << 30) as f64) as u64,
        // The default store is a folder on the cache's own disk: a cache
        // of it wrote every chunk sent twice (a first checkpoint copy of
        // 100 MiB took 220-330 ms instead of 145-175, beside the sprites'
        // own writes) and serves nothing faster than the store does.
        None if cfg.object_store.is_none() => 0,
        None => cfg.chunk_cache_bytes,
    };
    cfg.object_store_timeout = cli.object_store_timeout;
    cfg.host_env = sprited::host_env::HostEnv::from_flags(&cli.ca_files, &cli.sprite_env)?;
    if !cfg.host_env.ca_pem.is_empty() || !cfg.host_env.vars.is_empty() {
        tracing::info!(
            ca_files = cli.ca_files.len(),
            vars = ?cfg.host_env.var_names(),
            "every sprite gets these CA files and variables"
        );
    }
    cfg.image_cache = cli.image_cache;
    cfg.rates = sprites_api::usage::Rates {
        cpu_per_vcpu_hour: cli.rate_cpu_hour,
        ram_per_gb_hour: cli.rate_ram_gb_hour,
        hot_storage_per_gb_month: cli.rate_hot_gb_month,
        cold_storage_per_gb_month: cli.rate_cold_gb_month,
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Images { names } => {
            std::fs::create_dir_all(&cfg.data_dir)?;
            tokio::task::spawn_blocking(move || build_images(&cfg, &names)).await?
        }
        Command::Purge => sprited::purge(&cfg),
        Command::Recover => {
            cfg.recover = true;
            let token = std::env::var("SPRITED_TOKEN").ok();
            let state = sprited::open(cfg, token).await?;
            let report = state.recovered.unwrap_or_default();
            println!("{}", sprited::manager::recover::describe(&report));
            if !report.failed.is_empty() {
                anyhow::bail!("{} sprites could not be brought back", report.failed.len());
            }
            Ok(())
        }
        Command::Drain => {
            let token = match std::env::var("SPRITED_TOKEN") {
                Ok(t) => t,
                Err(_) => std::fs::read_to_string(cfg.layout().admin_token())
                    .with_context(|| {
                        format!(
                            "no SPRITED_TOKEN, and no {} to read the admin token from",
                            cfg.layout().admin_token().display()
                        )
                    })?
                    .trim()
                    .to_string(),
            };
            drain(&cfg.listen.to_string(), &token).await
        }
        Command::Serve => {
            let token = std::env::var("SPRITED_TOKEN").ok();
            let state = sprited::open(cfg, token).await?;
            sprited::serve(state).await
        }
    }
}

/// `sprited drain`: asks the daemon at `addr` to drain, printing its
/// progress lines; fails on its error line (or none at all).
async fn drain(addr: &str, token: &str) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to sprited at {addr} (--listen)"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::post("/v1/host/drain")
        .header("host", addr)
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let mut body = res.into_body();
    let mut pending = Vec::new();
    let mut outcome: Option<Result<String, String>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            let data = v["data"].as_str().unwrap_or_default().to_string();
            match v["type"].as_str() {
                Some("info") => println!("{data}"),
                Some("complete") => outcome = Some(Ok(data)),
                Some("error") => {
                    outcome = Some(Err(v["error"].as_str().unwrap_or_default().to_string()))
                }
                _ => {}
            }
        }
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&pending).into_owned();
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        anyhow::bail!("drain refused ({status}): {msg}");
    }
    match outcome {
        Some(Ok(msg)) => {
            println!("{msg}");
            Ok(())
        }
        Some(Err(e)) => anyhow::bail!("the drain failed (this host serves on): {e}"),
        None => anyhow::bail!("the drain's answer ended before it said how it went"),
    }
}

fn parse_isolation(s: &str) -> Result<sprite_runtime::Isolation, String> {
    sprite_runtime::Isolation::parse(s)
        .ok_or_else(|| format!("{s:?}: use \"container\" or \"gvisor\""))
}
