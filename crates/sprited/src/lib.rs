//! sprited: the daemon behind the Sprites v1 API.

pub mod agent_conn;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod console;
pub mod db;
pub mod error;
pub mod failpoint;
pub mod files;
pub mod host_env;
pub mod layout;
pub mod llm;
pub mod manager;
pub mod metrics;
pub mod net;
mod purge;
pub mod server;
pub mod time;
pub mod tokens;
pub mod urls;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sprite_runtime::Runc;
use sprite_store::{Store, StoreOptions};

pub use config::Config;
pub use purge::purge;

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub token: auth::Token,
    pub tokens: Arc<tokens::Tokens>,
    pub manager: Arc<manager::Manager>,
    pub urls: Arc<urls::Urls>,
    /// What the start's recovery from the object store brought back
    /// (with `--recover`).
    pub recovered: Option<manager::recover::RecoverReport>,
    /// The WebSockets open now, told when the daemon stops.
    pub sockets: api::ws::Sockets,
    /// The web console's signed-in browsers.
    pub console: Arc<console::session::Sessions>,
    /// This host's part among the hosts sharing its database.
    pub cluster: Option<Arc<cluster::Cluster>>,
    /// Set while the host hands its sprites over (`POST /v1/host/drain`).
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Told when the daemon should stop (a drain that finished).
    pub stop: Arc<tokio::sync::Notify>,
}

fn limits_of(cfg: &Config) -> server::Limits {
    server::Limits {
        max_connections: cfg.max_connections,
        shared: None,
        header_read_timeout: cfg.header_read_timeout,
    }
}

/// Handlers that need only the manager take it alone, so that the in-sprite
/// API (whose state is not this) can share them.
impl axum::extract::FromRef<AppState> for Arc<manager::Manager> {
    fn from_ref(state: &AppState) -> Self {
        state.manager.clone()
    }
}

pub fn store_options(cfg: &Config) -> StoreOptions {
    StoreOptions {
        uid_shift: cfg.uid_shift,
        volume_size_bytes: cfg.default_storage_gb * 1024 * 1024 * 1024,
        pool_size_bytes: cfg.pool_size_gb << 30,
        image_cache: cfg.image_cache.clone(),
        min_free_bytes: cfg.min_free_gb << 30,
    }
}

/// Find the static agent binary: the flag, else beside this executable,
/// else where `cargo build --target x86_64-unknown-linux-gnu` puts it.
pub fn find_agent(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        anyhow::ensure!(p.is_file(), "agent binary {} does not exist", p.display());
        anyhow::ensure!(
            is_static_executable(p),
            "agent binary {} is not a static executable",
            p.display()
        );
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().context("locating sprited")?;
    let dir = exe.parent().context("sprited has no directory")?;
    let profile = dir
        .file_name()
        .and_then(|p| p.to_str())
        .unwrap_or("release");
    let mut candidates = vec![dir.join("sprite-agent")];
    // target/<profile>/sprited → target/x86_64-unknown-linux-gnu/<profile>/sprite-agent
    if let Some(target) = dir.parent() {
        for p in [profile, "release", "debug"] {
            candidates.push(
                target
                    .join("x86_64-unknown-linux-gnu")
                    .join(p)
                    .join("sprite-agent"),
            );
        }
    }
    // target/<profile>/deps/<test> (integration tests)
    if profile == "deps" {
        if let Some(target) = dir.parent().and_then(|d| d.parent()) {
            for p in ["debug", "release"] {
                candidates.push(
                    target
                        .join("x86_64-unknown-linux-gnu")
                        .join(p)
                        .join("sprite-agent"),
                );
            }
        }
    }
    candidates
        .into_iter()
        .find(|c| is_static_executable(c))
        .context("no static sprite-agent binary was found; build it with `RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p sprite-agent` or pass --agent-bin")
}

/// The agent runs inside any image, so it must not need a dynamic loader:
/// an ELF file without a PT_INTERP program header.
pub fn is_static_executable(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let (Some(phentsize), Some(phnum)) = (u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    let Some(phoff) = b
        .get(0x20..0x28)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(|a| u64::from_le_bytes(a) as usize)
    else {
        return false;
    };
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        match b.get(o..o + 4).and_then(|s| <[u8; 4]>::try_from(s).ok()) {
            Some(t) => u32::from_le_bytes(t) != PT_INTERP,
            None => false,
        }
    })
}

/// Copy the agent into `dir` (the data dir's `bin/`) under a content-named
/// file, so that a rebuild never changes the binary under a running sprite.
fn install_agent(src: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let bytes = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    std::fs::create_dir_all(dir)?;
    let digest = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    });
    let dst = dir.join(format!("sprite-agent-{digest:016x}"));
    if !dst.is_file() {
        let tmp = dir.join(format!(".sprite-agent-{}.tmp", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &dst)?;
    }
    Ok(dst)
}

/// Puts the sprites' run dirs and runc's state on a tmpfs each, unless a
/// sandbox may run from them where they are (see
/// `sprite_store::runtime_fs`).
fn runtime_on_tmpfs(dirs: &layout::DataDir) -> anyhow::Result<()> {
    use sprite_store::runtime_fs::{place_on_tmpfs, Placed};
    let (sprites, runc) = (dirs.sprites_dir(), dirs.runc_state());
    let placed = place_on_tmpfs(&[(&sprites, 0o711), (&runc, 0o700)], &sprites)
        .context("moving the sprites' run dirs onto a tmpfs")?;
    if let Some(Placed::KeptOnDisk(mounted)) = placed.first() {
        tracing::info!(
            mounted = %mounted.display(),
            "the sprites' run dirs stay on the data dir's disk while sandboxes made from them may run; they move onto a tmpfs at a start with none"
        );
    }
    Ok(())
}

/// The sandbox drivers of this host: runc, and runsc where it is
/// installed, their state in the data dir, with egress for every sandbox.
/// The second is what runs gvisor sprites, and its description.
#[allow(clippy::type_complexity)]
fn driver(
    cfg: &Config,
) -> anyhow::Result<(
    Runc,
    Option<(Arc<sprite_runtime::Gvisor>, config::GvisorInfo)>,
    Arc<sprite_runtime::net::host::Blocked>,
)> {
    let egress: Arc<sprite_runtime::net::Egress> = Arc::new(net::egress(cfg)?);
    let blocked = egress.blocked.clone();
    let runc = Runc::new(cfg.layout().runc_state(), cfg.runc_bin.clone())
        .with_egress(egress.clone())
        .with_native_start(cfg.native_start);
    let gvisor = sprite_runtime::Gvisor::new(cfg.layout().runsc_state(), cfg.runsc_bin.clone())
        .with_egress(egress);
    let gvisor = match gvisor.version() {
        Ok(runsc) => {
            let chosen = sprite_runtime::gvisor_platform::choose(
                gvisor.runsc_bin(),
                &runsc,
                cfg.gvisor_platform,
            );
            let gvisor = gvisor.with_platform(chosen.platform);
            let info = config::GvisorInfo {
                runsc,
                platform: gvisor.platform(),
                why: chosen.why,
            };
            Some((Arc::new(gvisor), info))
        }
        Err(e) => {
            tracing::debug!(error = %e, "no runsc");
            None
        }
    };
    Ok((runc, gvisor, blocked))
}

/// An object store URL as it may be shown: without its query string and
/// user info (where credentials could be).
fn shown_store(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => no_query.to_string(),
    }
}

/// The object store holding a data dir's evicted sprites and checkpoints is
/// recorded beside it; started against another while any live only there,
/// the daemon refuses, saying which (their data would be unreachable: every
/// request to them would fail).
fn pin_object_store(record: &std::path::Path, url: &str, db: &db::Db) -> anyhow::Result<()> {
    let before = std::fs::read_to_string(record).ok();
    if let Some(before) = before.as_deref().map(str::trim) {
        if before != url {
            let cold = db.cold_count().context("counting evicted data")?;
            if cold > 0 {
                anyhow::bail!(
                    "{cold} evicted sprite volumes or checkpoints live only in the object store {} \
                     and this start names {}: start with --object-store set to the first (or \
                     wake them all with it first, then change stores)",
                    shown_store(before),
                    shown_store(url)
                );
            }
        }
    }
    if before.as_deref().map(str::trim) != Some(url) {
        let tmp = layout::temp_beside(record);
        std::fs::write(&tmp, url).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, record).with_context(|| format!("writing {}", record.display()))?;
    }
    Ok(())
}

/// Everything `serve` needs, opened: data dir, pool, DB, token, runtime.
pub async fn open(mut cfg: Config, token_env: Option<String>) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let dirs = cfg.layout();
    let token = auth::load_or_create(&dirs.admin_token(), token_env)?;
    let agent = find_agent(cfg.agent_bin.as_deref())?;
    let agent = install_agent(&agent, &dirs.bin_dir())?;
    if cfg.runtime_tmpfs {
        runtime_on_tmpfs(&dirs)?;
    }
    let store = Store::open(&cfg.data_dir, store_options(&cfg))
        .with_context(|| format!("opening the storage pool in {}", cfg.data_dir.display()))?;
    // First, before anything could touch them: the connections of the
    // self-filling volumes the last daemon served (see the function).
    store
        .abort_orphaned_lazy()
        .context("aborting the last daemon's FUSE connections")?;
    sprite_runtime::cgroup::prepare_host().context("preparing cgroups")?;
    if cfg.favor_dynmods {
        use sprite_runtime::cgroup::{favor_dynmods, Dynmods};
        match favor_dynmods() {
            Ok(Dynmods::Set(at)) => tracing::info!(
                mount = %at.display(),
                "set favordynmods on the host's cgroup2: moving a sandbox into its cgroups waits for no RCU grace period"
            ),
            Ok(Dynmods::Already(at)) => {
                tracing::debug!(mount = %at.display(), "the host's cgroup2 has favordynmods")
            }
            Ok(Dynmods::NoCgroup2) => tracing::info!(
                "no cgroup2 mounted: each sandbox start waits for an RCU grace period to join its cgroups"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot set favordynmods on the host's cgroup2 (kernel before 6.0?): each sandbox start waits for an RCU grace period to join its cgroups"
            ),
        }
    }
    let (driver, gvisor, blocked) = driver(&cfg)?;
    match &gvisor {
        Some((_, what)) => tracing::info!(gvisor = %what, "gvisor sprites available"),
        None if cfg.isolation == sprite_runtime::Isolation::Gvisor => anyhow::bail!(
            "--isolation gvisor needs runsc ({}), which cannot run here: install Debian's runsc package",
            cfg.runsc_bin.display()
        ),
        None => tracing::info!("no runsc: gvisor sprites unavailable"),
    }
    cfg.gvisor = gvisor.as_ref().map(|(_, what)| what.clone());
    let gvisor = gvisor.map(|(g, _)| g);
    // Each sprite runs as a host id range of its own where its root can
    // be shown under it (idmapped mounts); else all share one.
    let own_ranges = cfg.own_id_ranges && store.idmapped_layers_work();
    tracing::info!(own_ranges, "sprites' host ids");
    let driver = driver.with_own_ranges(own_ranges);
    let location = cfg.database();
    let db = db::Db::open_at(&location)
        .with_context(|| format!("opening the metadata database {location}"))?;
    tracing::info!(database = %location, "metadata");
    let db = Arc::new(db);
    // A shared database: this host joins the others before anything is
    // written to it, and every write it makes checks its membership.
    let cluster = match db.engine() {
        db::Engine::Postgres => {
            let host = cluster::host_id(cfg.host_id.as_deref(), &dirs.host_id())?;
            let advertise = cfg
                .advertise
                .clone()
                .unwrap_or_else(|| format!("http://{}", cfg.listen));
            Some(
                cluster::Cluster::join(
                    db.clone(),
                    &host,
                    &advertise,
                    cfg.host_timeout,
                    cfg.cordon,
                    cfg.max_running,
                )
                .await?,
            )
        }
        db::Engine::Sqlite => None,
    };
    pin_object_store(&dirs.object_store_record(), &cfg.object_store_url(), &db)?;
    let cold = sprite_cold::ColdStore::open(&sprite_cold::StoreOptions {
        url: cfg.object_store_url(),
        cache_dir: dirs.chunk_cache(),
        cache_bytes: cfg.chunk_cache_bytes,
        concurrency: 16,
        request_timeout: cfg.object_store_timeout,
    })
    .context("opening the object store")?;
    for kind in sprite_store::ImageKind::ALL {
        if store.image_outdated(kind) {
            // Kept: it is the lower layer of the sprites made from it.
            tracing::warn!(
                image = %kind,
                "image built by an older recipe; `sprited images {kind}` rebuilds it once no sprite uses it"
            );
        }
    }
    let cfg = Arc::new(cfg);
    let manager = manager::Manager::new(
        db,
        cfg.clone(),
        Arc::new(store),
        Arc::new(sprite_runtime::ByIsolation {
            container: Arc::new(driver),
            gvisor,
        }),
        agent,
        Arc::new(cold),
    );
    if let Some(cluster) = &cluster {
        cluster.spawn_heartbeat(manager.clone());
    }
    // Before anything reads the database: the sprites and tokens the
    // store keeps and this data dir does not know.
    let recovered = match cfg.recover {
        true => Some(
            manager
                .recover_from_store()
                .await
                .context("recovering from the object store")?,
        ),
        false => None,
    };
    if let Some(sockets) = manager.take_sockets() {
        api::in_sprite::serve_sockets(&manager, sockets);
    }
    manager
        .follow_host_addresses(blocked)
        .context("watching the host's addresses")?;
    manager
        .ensure_image(&cfg.default_image)
        .await
        .context("preparing the default image")?;
    manager
        .reconcile()
        .await
        .context("reconciling sprites with what runs")?;
    manager.spawn_cold_sweep();
    manager.spawn_pool_fill();
    manager.spawn_checkpoint_uploads();
    manager.spawn_replication();
    manager.spawn_meta_sweep();
    manager.spawn_idle_tracker();
    manager.spawn_meter();
    let tokens = Arc::new(tokens::Tokens::load(manager.db.clone()).context("loading API tokens")?);
    let urls = Arc::new(urls::Urls::open(&dirs.url_session_key())?);
    Ok(AppState {
        token,
        tokens,
        manager,
        urls,
        recovered,
        sockets: api::ws::Sockets::default(),
        console: Arc::default(),
        cluster,
        draining: Arc::default(),
        stop: Arc::default(),
    })
}

/// Serve the API until the process is told to stop. Sprites keep running.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let addr = state.manager.cfg.listen;
    let manager = state.manager.clone();
    let closing = manager.clone();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(%addr, data_dir = %state.manager.cfg.data_dir.display(), "sprited listening");
    let limits = limits_of(&manager.cfg);
    let sockets = state.sockets.clone();
    let told = sockets.clone();
    let stop = state.stop.clone();
    let cluster = state.cluster.clone();
    let drained = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drained_too = drained.clone();
    server::serve_tcp(listener, api::router(state), limits, async move {
        tokio::select! {
            () = shutdown_signal() => {}
            () = stop.notified() => {
                tracing::info!("drained: stopping");
                drained_too.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        // Streams that would last forever end, so the shutdown need not
        // wait for them; WebSockets close, saying why.
        manager.announce_closing();
        told.stop();
    })
    .await;
    // Sandboxes made ahead are nobody's: they go with the daemon.
    closing.close_pool().await;
    let left = sockets.wait(SOCKETS_GRACE).await;
    if left > 0 {
        tracing::info!(
            left,
            "WebSockets still open after {SOCKETS_GRACE:?}: cutting them"
        );
    }
    // A drained host leaves; any other stop keeps its membership until it
    // runs out, so a restart within --host-timeout keeps its sprites.
    if let Some(cluster) = &cluster {
        if drained.load(std::sync::atomic::Ordering::SeqCst) {
            cluster.leave().await;
        }
    }
    Ok(())
}

/// How long a stop waits for WebSockets to close once told (a client
/// answers a Close in milliseconds; this bounds one that does not).
const SOCKETS_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping; sprites keep running");
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_urls_are_shown_without_credentials() {
        assert_eq!(
            super::shown_store("s3://key:secret@host:9000/bucket?region=x"),
            "s3://host:9000/bucket"
        );
        assert_eq!(
            super::shown_store("file:///var/objects"),
            "file:///var/objects"
        );
    }

    #[test]
    fn dynamic_executables_are_not_static() {
        // This test binary itself is dynamically linked.
        let me = std::env::current_exe().expect("exe");
        assert!(!super::is_static_executable(&me));
        assert!(!super::is_static_executable(std::path::Path::new(
            "/etc/hostname"
        )));
    }
}
