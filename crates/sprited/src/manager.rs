//! Sprite lifecycle: create, wake, destroy, and reconciling what the DB says
//! with what really runs after a daemon restart or a host reboot.
//!
//! Each sprite has a lifecycle lock: start, stop and destroy of one sprite
//! never interleave, while different sprites proceed in parallel. The
//! daemon never touches mounts or runc itself: it asks `sprite-store` and
//! `sprite-runtime`.

pub mod checkpoints;
pub mod cold;
pub mod idle;
pub mod limits;
pub mod meter;
pub mod relay;
pub mod services;
pub mod tasks;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sprite_runtime::{Bind, Driver, IdMap, Limits as RtLimits, SandboxSpec, SandboxState};
use sprite_store::{ImageKind, Store};
use sprites_api::agent::{Reply, Request, SOCKET_NAME};
use sprites_api::sprite::{CreateSpriteRequest, Status};

use crate::agent_conn::{self, AgentError, AgentReader, AgentWriter};
use crate::config::{Config, IMAGES};
use crate::db::{Db, DbError, Limits, SpriteRecord};
use crate::error::ApiError;
use crate::time::now_rfc3339;

/// What the daemon keeps in memory about one sprite.
struct Live {
    lifecycle: tokio::sync::Mutex<()>,
    status: Mutex<Status>,
    /// When activity was last written to the DB.
    persisted: Mutex<Option<std::time::Instant>>,
    /// Serialises mounting and unmounting the checkpoint views, which run
    /// beside the lifecycle (never on a request's path).
    views: Arc<Mutex<()>>,
    /// While the sprite runs, its API socket is served until this is
    /// dropped (see [`SpriteSocket`]).
    socket: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Requests and connections in flight that keep the sprite awake.
    active: AtomicUsize,
    /// When the last activity started or ended.
    last_activity: Mutex<std::time::Instant>,
    /// When the sprite was paused (warm).
    warm_since: Mutex<Option<std::time::Instant>>,
    /// Why the last start failed (status `error`).
    error: Mutex<Option<String>>,
    /// Tasks that keep it awake: name → expiry.
    tasks: Mutex<std::collections::BTreeMap<String, tasks::Task>>,
    /// Its volume lives only in object storage (mirrors the DB).
    evicted: Mutex<bool>,
    /// When the last eviction attempt failed.
    evict_failed: Mutex<Option<std::time::Instant>>,
    /// Its volume while it fills itself from the object store (woken from
    /// eviction, until it next stops). Taken under the lifecycle lock.
    lazy: tokio::sync::Mutex<Option<sprite_cold::LazyImage>>,
    /// Set while `lazy` is (for reading without its lock).
    filling: Mutex<bool>,
    /// Why the last fill from the object store failed (reported by the
    /// wake it broke).
    fill_error: Mutex<Option<sprite_cold::ColdError>>,
}

/// Something in flight that keeps a sprite awake (an exec, a session, an
/// in-sprite API call, a proxied connection). Counted from before the
/// sprite is woken until it is dropped.
pub struct Activity {
    live: Arc<Live>,
}

impl Drop for Activity {
    fn drop(&mut self) {
        *lock(&self.live.last_activity) = std::time::Instant::now();
        self.live.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const ACTIVITY_PERSIST_EVERY: Duration = Duration::from_secs(5);

/// Largest volume a sprite may ask for (volumes are sparse: only what is
/// written takes space).
const MAX_STORAGE_GB: u64 = 1024;

/// Where the in-sprite API socket lives inside (a bind of the host's
/// `<data>/sprites/<id>/run`); `/.sprite/api.sock`, the name users call, is
/// a link to it in the base image. The daemon never writes into a sprite's
/// root filesystem itself: a path there can be a symlink the sprite made.
const INSIDE_RUN_DIR: &str = "/.sprite/run";
const INSIDE_SOCKET: &str = "api.sock";

/// A running sprite's API socket (`/.sprite/run/api.sock`), bound by the
/// manager and handed to whoever serves it (the API layer), which serves it
/// until `stopped` ends: when the sprite stops, or a new socket replaces it.
pub struct SpriteSocket {
    /// The sprite it belongs to: only that sprite can reach the socket.
    pub name: String,
    /// Bound and non-blocking.
    pub listener: std::os::unix::net::UnixListener,
    pub stopped: tokio::sync::oneshot::Receiver<()>,
}

/// How long a stopping sprite's processes get between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What happens to the volume when a sandbox stops.
enum Release {
    Unmount,
    Destroy,
}

pub struct Manager {
    pub db: Arc<Db>,
    pub cfg: Arc<Config>,
    store: Arc<Store>,
    driver: Arc<dyn Driver>,
    /// Starts sandboxes without no_new_privs, for images whose users need
    /// setuid programs (`sudo` in `standard`).
    setuid_driver: Arc<dyn Driver>,
    agent_bin: PathBuf,
    live: Mutex<HashMap<String, Arc<Live>>>,
    images: tokio::sync::Mutex<()>,
    me: Weak<Manager>,
    /// One sample of a sprite at a time (rounds and last samples).
    meter_lock: Mutex<()>,
    /// Times of recent creates, for the create rate limit.
    recent_creates: Mutex<std::collections::VecDeque<std::time::Instant>>,
    /// Held while a start is checked against `max_running` and made.
    admission: tokio::sync::Mutex<()>,
    pub metrics: crate::metrics::Metrics,
    /// Network policies and their enforcement.
    pub net: crate::net::Network,
    /// The cold tier: evicted volumes and checkpoints.
    cold: Arc<sprite_cold::ColdStore>,
    /// One base-image upload at a time.
    image_upload: tokio::sync::Mutex<()>,
    /// Where running sprites' API sockets go to be served.
    sockets: tokio::sync::mpsc::UnboundedSender<SpriteSocket>,
    /// Their other end, until whoever serves them takes it.
    to_serve: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<SpriteSocket>>>,
}

async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// `standard` gives the `sprite` user passwordless sudo, which needs setuid
/// to work, so its sandboxes run without no_new_privs. Root inside is still
/// an unprivileged uid outside (user namespace), with 12 capabilities and the
/// seccomp filter, so setuid only reaches what sudo grants by design.
fn image_has_setuid_tools(image: &str) -> bool {
    image == "standard"
}

/// `url_settings.auth`: `sprite` (a token is needed), `public`, or
/// `private` (no URL: only the API's proxy endpoint reaches it).
pub fn validate_url_auth(auth: String) -> Result<String, ApiError> {
    match auth.as_str() {
        "sprite" | "public" | "private" => Ok(auth),
        _ => Err(ApiError::BadRequest(format!(
            "url_settings.auth must be \"sprite\", \"public\" or \"private\", not {auth:?}"
        ))),
    }
}

pub fn image_kind(name: &str) -> Result<ImageKind, ApiError> {
    match name {
        "tiny" => Ok(ImageKind::Tiny),
        "standard" => Ok(ImageKind::Standard),
        other => Err(ApiError::BadRequest(format!(
            "unknown image {other:?}; known images: {}",
            IMAGES.join(", ")
        ))),
    }
}

impl Manager {
    pub fn new(
        db: Db,
        cfg: Arc<Config>,
        store: Arc<Store>,
        driver: Arc<dyn Driver>,
        setuid_driver: Arc<dyn Driver>,
        agent_bin: PathBuf,
        cold: Arc<sprite_cold::ColdStore>,
    ) -> Arc<Self> {
        let db = Arc::new(db);
        let (sockets, to_serve) = tokio::sync::mpsc::unbounded_channel();
        let net = crate::net::Network::new(db.clone(), &cfg);
        Arc::new_cyclic(|me| Manager {
            db: db.clone(),
            cfg,
            store,
            driver,
            setuid_driver,
            agent_bin,
            live: Mutex::new(HashMap::new()),
            images: tokio::sync::Mutex::new(()),
            me: me.clone(),
            meter_lock: Mutex::new(()),
            recent_creates: Mutex::new(Default::default()),
            admission: tokio::sync::Mutex::new(()),
            metrics: crate::metrics::Metrics::new(),
            net,
            cold,
            image_upload: tokio::sync::Mutex::new(()),
            sockets,
            to_serve: Mutex::new(Some(to_serve)),
        })
    }

    /// Running sprites' API sockets, each as it is bound, for the API layer
    /// to serve (the first caller gets them).
    pub fn take_sockets(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<SpriteSocket>> {
        lock(&self.to_serve).take()
    }

    /// This manager as an `Arc` (it is only ever made as one).
    fn arc(&self) -> Option<Arc<Manager>> {
        self.me.upgrade()
    }

    fn live(&self, id: &str) -> Arc<Live> {
        let mut map = self.live.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(Live {
                    lifecycle: tokio::sync::Mutex::new(()),
                    status: Mutex::new(Status::Cold),
                    persisted: Mutex::new(None),
                    views: Arc::new(Mutex::new(())),
                    socket: Mutex::new(None),
                    active: AtomicUsize::new(0),
                    last_activity: Mutex::new(std::time::Instant::now()),
                    warm_since: Mutex::new(None),
                    error: Mutex::new(None),
                    tasks: Mutex::new(Default::default()),
                    evicted: Mutex::new(false),
                    evict_failed: Mutex::new(None),
                    lazy: tokio::sync::Mutex::new(None),
                    filling: Mutex::new(false),
                    fill_error: Mutex::new(None),
                })
            })
            .clone()
    }

    pub fn status(&self, id: &str) -> Status {
        *self
            .live(id)
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn set_status(&self, id: &str, s: Status) {
        *self
            .live(id)
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Why the sprite's last start failed, while its status is `error`.
    pub fn error_of(&self, id: &str) -> Option<String> {
        lock(&self.live(id).error).clone()
    }

    /// Start counting an activity on the sprite (before waking it).
    pub fn activity(&self, id: &str) -> Activity {
        let live = self.live(id);
        live.active.fetch_add(1, Ordering::SeqCst);
        *lock(&live.last_activity) = std::time::Instant::now();
        Activity { live }
    }

    /// The sprite's host-side directory.
    pub fn sprite_dir(&self, id: &str) -> PathBuf {
        self.store.sprite_dir(id)
    }

    pub fn socket_path(&self, id: &str) -> PathBuf {
        self.store.sprite_dir(id).join(SOCKET_NAME)
    }

    pub fn get(&self, name: &str) -> Result<SpriteRecord, ApiError> {
        self.db.get(name)?.ok_or_else(|| ApiError::no_sprite(name))
    }

    /// Make an image ready if it is not yet (once, whoever asks first):
    /// from the object store if a copy is kept there, else by building it.
    pub async fn ensure_image(&self, name: &str) -> Result<(), ApiError> {
        let kind = image_kind(name)?;
        if self.store.image_ready(name) {
            return Ok(());
        }
        let _g = self.images.lock().await;
        if self.store.image_ready(name) {
            return Ok(());
        }
        match self.fetch_image(name).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(image = %name, error = %e, "cannot fetch the image from the object store; building it")
            }
        }
        let store = self.store.clone();
        let name = name.to_string();
        blocking(move || {
            tracing::info!(image = %name, "building base image");
            store
                .build_image(kind, &mut |p| {
                    tracing::info!(image = %name, phase = %p.phase, "image build progress");
                })
                .map(|_| ())
                .map_err(|e| ApiError::internal(format!("building image {name}: {e}")))
        })
        .await
    }

    pub async fn create(&self, req: CreateSpriteRequest) -> Result<SpriteRecord, ApiError> {
        sprites_api::name::validate(&req.name).map_err(ApiError::BadRequest)?;
        let fork = match &req.source {
            None => None,
            Some(src) => Some(self.fork_source(src, req.image.as_deref())?),
        };
        let image = match &fork {
            Some((src, _)) => src.image.clone(),
            None => req
                .image
                .clone()
                .unwrap_or_else(|| self.cfg.default_image.clone()),
        };
        image_kind(&image)?;
        let mut limits = self.limits_for(&req)?;
        if let Some((src, _)) = &fork {
            // The volume is a clone of the source's: its size comes along.
            limits.storage_gb = src.limits.storage_gb;
        }
        self.admit_create()?;
        let auth = match req.url_settings.as_ref().and_then(|u| u.auth.clone()) {
            None => "sprite".to_string(),
            Some(a) => validate_url_auth(a)?,
        };
        self.ensure_image(&image).await?;
        let now = now_rfc3339();
        let rec = SpriteRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: req.name.clone(),
            image,
            url_auth: auth,
            labels: req.labels.clone().unwrap_or_default(),
            limits,
            environment: req.environment.clone().unwrap_or_default(),
            created_at: now.clone(),
            updated_at: now,
            last_running_at: None,
            last_active_at: None,
        };
        match self.db.insert(&rec) {
            Ok(()) => {}
            Err(DbError::Duplicate(n)) => {
                return Err(ApiError::BadRequest(format!(
                    "a sprite named {n} already exists"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let live = self.live(&rec.id);
        let _g = live.lifecycle.lock().await;
        let made = match &fork {
            Some((src, checkpoint)) => self.fork_volume(src, checkpoint, &rec.id).await,
            None => {
                let store = self.store.clone();
                let id = rec.id.clone();
                let bytes = rec.limits.storage_gb << 30;
                blocking(move || {
                    store
                        .create_volume_sized(&id, bytes)
                        .map_err(|e| ApiError::internal(format!("creating the volume: {e}")))
                })
                .await
            }
        };
        let started = match made {
            Ok(()) => {
                let _admitted = self.admission_lock().await;
                match self.admit_start() {
                    Ok(()) => self.start_locked(&rec).await,
                    // Made, and waits cold until there is room.
                    Err(_) if req.wait_for_capacity == Some(true) => {
                        self.set_status(&rec.id, Status::Cold);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            tracing::warn!(sprite = %rec.name, error = %e, "create failed; rolling back");
            let _ = self.teardown(&rec.id).await;
            self.db.delete(&rec.id)?;
            return Err(e);
        }
        tracing::info!(sprite = %rec.name, id = %rec.id, image = %rec.image, "sprite created");
        self.get(&rec.name)
    }

    fn limits_for(&self, req: &CreateSpriteRequest) -> Result<Limits, ApiError> {
        let c = req.config.clone().unwrap_or_default();
        let cpus = c.cpus.unwrap_or(self.cfg.default_cpus);
        let host_cpus = std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0);
        if !(cpus > 0.0 && cpus <= host_cpus.max(1.0) * 4.0) {
            return Err(ApiError::BadRequest(format!(
                "config.cpus must be above 0 and at most {}",
                host_cpus * 4.0
            )));
        }
        let ram_mb = c.ram_mb.unwrap_or(self.cfg.default_ram_mb);
        if !(64..=1 << 20).contains(&ram_mb) {
            return Err(ApiError::BadRequest(
                "config.ram_mb must be between 64 and 1048576".into(),
            ));
        }
        let storage_gb = c.storage_gb.unwrap_or(self.cfg.default_storage_gb);
        if !(1..=MAX_STORAGE_GB).contains(&storage_gb) {
            return Err(ApiError::BadRequest(format!(
                "config.storage_gb must be between 1 and {MAX_STORAGE_GB}"
            )));
        }
        Ok(Limits {
            cpus,
            ram_mb,
            storage_gb,
        })
    }

    /// Start the sandbox; the caller holds the lifecycle lock.
    async fn start_locked(&self, rec: &SpriteRecord) -> Result<(), ApiError> {
        let store = self.store.clone();
        let driver = if image_has_setuid_tools(&rec.image) {
            self.setuid_driver.clone()
        } else {
            self.driver.clone()
        };
        let spec_base = self.spec_for(rec);
        let id = rec.id.clone();
        let image = rec.image.clone();
        let socket = self.socket_path(&rec.id);
        let (resolv_conf, policy_dir) = self.net.files(&rec.id, &self.store.sprite_dir(&rec.id))?;
        let sandbox_driver = driver.clone();
        // A volume still filling itself from the object store is read
        // through its self-filling view.
        let volume = self
            .live(&rec.id)
            .lazy
            .lock()
            .await
            .as_ref()
            .map(|l| l.image_path())
            .unwrap_or_else(|| self.store.volume_path(&rec.id));
        let inside = blocking(move || {
            // A leftover sandbox (killed processes, host reboot) is cleared by
            // the driver's start; mounts are repaired by the store.
            let rootfs = store
                .mount_rootfs_from(&id, &image, &volume)
                .map_err(|e| ApiError::internal(format!("mounting the volume: {e}")))?;
            let run_dir = store
                .inside_run_dir(&id)
                .map_err(|e| ApiError::internal(format!("preparing /.sprite/run: {e}")))?;
            let inside = bind_inside_socket(&run_dir.join(INSIDE_SOCKET))?;
            let listener = bind_agent_socket(&socket)?;
            let mut spec = SandboxSpec {
                rootfs,
                ..spec_base
            };
            spec.binds = vec![
                Bind {
                    source: store.views_dir(&id),
                    destination: "/.sprite/checkpoints".into(),
                    read_only: true,
                    follow_host_mounts: true,
                },
                Bind {
                    source: run_dir,
                    destination: INSIDE_RUN_DIR.into(),
                    read_only: true,
                    follow_host_mounts: false,
                },
                Bind {
                    source: policy_dir,
                    destination: crate::net::POLICY_DIR_IN_SPRITE.into(),
                    read_only: true,
                    follow_host_mounts: false,
                },
                Bind {
                    source: resolv_conf,
                    destination: crate::net::RESOLV_CONF_IN_SPRITE.into(),
                    read_only: true,
                    follow_host_mounts: false,
                },
            ];
            sandbox_driver
                .start(&spec, listener)
                .map_err(|e| ApiError::internal(format!("starting the sandbox: {e}")))?;
            Ok(inside)
        })
        .await?;
        if let Err(e) = self.attach_network(rec, &driver).await {
            let id = rec.id.clone();
            let _ = blocking(move || driver.delete(&id).map_err(ApiError::internal)).await;
            return Err(e);
        }
        self.hand_over_socket(rec, inside);
        *lock(&self.live(&rec.id).error) = None;
        self.set_status(&rec.id, Status::Running);
        self.db.set_last_running(&rec.id, &now_rfc3339())?;
        self.refresh_views(rec);
        Ok(())
    }

    /// Enforce the network policy in a running (or paused) sprite.
    async fn attach_network(
        &self,
        rec: &SpriteRecord,
        driver: &Arc<dyn Driver>,
    ) -> Result<(), ApiError> {
        let (d, id) = (driver.clone(), rec.id.clone());
        let pid = match blocking(move || d.state(&id).map_err(ApiError::internal)).await? {
            SandboxState::Running { pid } => pid,
            _ => {
                let path = self.store.sprite_dir(&rec.id).join("bundle/init.pid");
                std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| ApiError::internal("the sandbox has no init pid"))?
            }
        };
        self.net.attach(&rec.id, pid).await
    }

    /// Hand a running sprite's bound API socket over to be served
    /// (replacing, and so stopping, a previous server of it).
    fn hand_over_socket(&self, rec: &SpriteRecord, listener: std::os::unix::net::UnixListener) {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        *lock(&self.live(&rec.id).socket) = Some(stop);
        let socket = SpriteSocket {
            name: rec.name.clone(),
            listener,
            stopped,
        };
        if self.sockets.send(socket).is_err() {
            tracing::warn!(sprite = %rec.name, "nothing serves the in-sprite API");
        }
    }

    fn stop_serving_socket(&self, id: &str) {
        lock(&self.live(id).socket).take();
    }

    fn spec_for(&self, rec: &SpriteRecord) -> SandboxSpec {
        let dir = self.store.sprite_dir(&rec.id);
        SandboxSpec {
            id: rec.id.clone(),
            hostname: rec.name.clone(),
            rootfs: dir.join("rootfs"),
            bundle_dir: dir.join("bundle"),
            log_path: dir.join("agent.log"),
            agent_bin: self.agent_bin.clone(),
            init_args: vec!["/.sprite/bin/sprite-agent".into()],
            env: vec![format!("SPRITE_NAME={}", rec.name)],
            limits: RtLimits {
                cpus: rec.limits.cpus,
                memory_bytes: rec.limits.ram_mb * 1024 * 1024,
                pids: self.cfg.pids_limit,
            },
            id_map: self.cfg.uid_shift.map(|base| IdMap {
                host_base: base,
                size: 65536,
            }),
            binds: Vec::new(),
        }
    }

    /// Make sure the sprite runs; wakes it when it is cold or paused.
    /// The wake runs in a task of its own, so that a client hanging up
    /// cannot cancel it halfway through a start.
    pub async fn ensure_running(self: &Arc<Self>, rec: &SpriteRecord) -> Result<(), ApiError> {
        if self.status(&rec.id) == Status::Running {
            return Ok(());
        }
        let this = self.clone();
        let rec = rec.clone();
        tokio::spawn(async move { this.wake(&rec).await })
            .await
            .map_err(|e| ApiError::internal(format!("wake task failed: {e}")))?
    }

    async fn wake(&self, rec: &SpriteRecord) -> Result<(), ApiError> {
        let live = self.live(&rec.id);
        let _g = live.lifecycle.lock().await;
        self.wake_locked(rec).await
    }

    /// Running again from wherever it is; the caller holds the lifecycle lock.
    async fn wake_locked(&self, rec: &SpriteRecord) -> Result<(), ApiError> {
        match self.status(&rec.id) {
            Status::Running => return Ok(()),
            Status::Warm => {
                // The fast path: thaw the cgroup, no runc involved.
                let driver = self.driver.clone();
                let id = rec.id.clone();
                let resumed =
                    blocking(move || driver.resume(&id).map_err(ApiError::internal)).await;
                match resumed {
                    Ok(()) => {
                        tracing::debug!(sprite = %rec.name, "resumed");
                        self.metrics.woke("warm");
                        *lock(&self.live(&rec.id).warm_since) = None;
                        self.set_status(&rec.id, Status::Running);
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!(sprite = %rec.name, error = %e, "resume failed; starting it afresh");
                    }
                }
            }
            Status::Cold | Status::Error => {}
        }
        tracing::info!(sprite = %rec.name, "waking sprite");
        let _admitted = self.admission_lock().await;
        self.admit_start()?;
        // Its image first, and an evicted sprite's volume starts filling
        // itself from the object store (what the boot reads first); if
        // that cannot start, the sprite stays as it was and the error says why.
        self.ensure_image(&rec.image).await?;
        self.wake_lazily_locked(rec).await?;
        match self.start_locked(rec).await {
            Ok(()) => {
                self.metrics.woke("cold");
                *lock(&self.live(&rec.id).error) = None;
                *lock(&self.live(&rec.id).warm_since) = None;
                Ok(())
            }
            Err(e) => {
                tracing::error!(sprite = %rec.name, error = %e, "sprite failed to start");
                // Whatever half-started is taken down; the volume stays.
                let _ = self.halt(&rec.id, Duration::ZERO, Release::Unmount).await;
                // A volume that could not be read from the object store is
                // the cause to report (the sprite stays evicted and intact).
                if let Some(fill) = lock(&self.live(&rec.id).fill_error).take() {
                    return Err(cold::cold_error(
                        &format!("waking sprite {}", rec.name),
                        fill,
                    ));
                }
                *lock(&self.live(&rec.id).error) = Some(e.to_string());
                self.set_status(&rec.id, Status::Error);
                Err(ApiError::Unavailable(format!(
                    "sprite {} failed to start: {e}",
                    rec.name
                )))
            }
        }
    }

    /// Open an agent connection for `req`, waking the sprite first. A stale
    /// "running" (the sandbox died under us) is noticed and repaired once.
    pub async fn open(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        req: &Request,
    ) -> Result<(AgentReader, AgentWriter), ApiError> {
        // Counted before the wake: the idle tracker never pauses a sprite
        // that a request is about to use.
        let activity = self.activity(&rec.id);
        for attempt in 0..2 {
            self.ensure_running(rec).await?;
            match agent_conn::open(&self.socket_path(&rec.id), req).await {
                Ok((mut r, w)) => {
                    self.touch(rec);
                    r.hold(activity);
                    return Ok((r, w));
                }
                Err(AgentError::Connect(e)) if attempt == 0 => {
                    tracing::warn!(sprite = %rec.name, error = %e, "agent unreachable; restarting the sprite");
                    self.set_status(&rec.id, Status::Cold);
                }
                Err(e) => return Err(ApiError::Unavailable(e.to_string())),
            }
        }
        Err(ApiError::Unavailable(format!(
            "sprite {} did not come up",
            rec.name
        )))
    }

    /// A request-reply exchange with the agent.
    pub async fn ask(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        req: &Request,
    ) -> Result<Reply, ApiError> {
        let (mut r, _w) = self.open(rec, req).await?;
        r.reply()
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    /// Note activity. The DB write happens off the request path and at most
    /// every few seconds per sprite: exec latency must not pay for an fsync.
    fn touch(&self, rec: &SpriteRecord) {
        let live = self.live(&rec.id);
        let now = std::time::Instant::now();
        {
            let mut last = live.persisted.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now.duration_since(t) < ACTIVITY_PERSIST_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let db = self.db.clone();
        let id = rec.id.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = db.set_last_active(&id, &now_rfc3339()) {
                tracing::warn!(error = %e, "recording activity");
            }
        });
    }

    pub async fn destroy(&self, rec: &SpriteRecord) -> Result<(), ApiError> {
        let live = self.live(&rec.id);
        let _g = live.lifecycle.lock().await;
        self.teardown(&rec.id).await?;
        self.db.delete(&rec.id)?;
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        tracing::info!(sprite = %rec.name, "sprite destroyed");
        // Its copies in the object store go in the background: a slow or
        // unreachable store must not hold up the destroy.
        if let Some(me) = self.arc() {
            let id = rec.id.clone();
            tokio::spawn(async move {
                me.forget_cold(&id).await;
                me.spawn_cold_sweep();
            });
        }
        Ok(())
    }

    /// Remove whatever exists of a sprite's sandbox and volume; the caller
    /// holds the lifecycle lock (or, at start-up, nothing else runs).
    async fn teardown(&self, id: &str) -> Result<(), ApiError> {
        self.halt(id, Duration::ZERO, Release::Destroy).await
    }

    /// Stop a sprite's processes and unmount its volume (it stays, cold).
    pub async fn stop(&self, rec: &SpriteRecord) -> Result<(), ApiError> {
        let live = self.live(&rec.id);
        let _g = live.lifecycle.lock().await;
        self.halt(&rec.id, STOP_GRACE, Release::Unmount).await?;
        self.set_status(&rec.id, Status::Cold);
        *lock(&live.warm_since) = None;
        Ok(())
    }

    /// Stop the sandbox (SIGTERM, SIGKILL after `grace`, container removed),
    /// then unmount or destroy the volume.
    async fn halt(&self, id: &str, grace: Duration, release: Release) -> Result<(), ApiError> {
        // What it used since the last sample, before the counters go.
        if self.status(id) != Status::Cold {
            self.meter_one(id).await;
        }
        self.stop_serving_socket(id);
        self.net.detach(id);
        let store = self.store.clone();
        let driver = self.driver.clone();
        let views = self.live(id).views.clone();
        let sid = id.to_string();
        let destroy = matches!(release, Release::Destroy);
        blocking(move || {
            driver
                .stop(&sid, grace)
                .map_err(|e| ApiError::internal(format!("stopping the sandbox: {e}")))?;
            let _views = views.lock().unwrap_or_else(|p| p.into_inner());
            store
                .unmount_rootfs(&sid)
                .map_err(|e| ApiError::internal(format!("releasing the volume: {e}")))
        })
        .await?;
        // A volume that was filling itself from the object store is
        // completed (unless it goes) and becomes a plain local volume.
        if let Some(e) = self.finish_lazy(id, destroy).await {
            tracing::warn!(id, error = %e, "the volume could not be completed from the object store; it stays there, and the next wake resumes");
            *lock(&self.live(id).fill_error) = Some(e);
        }
        if destroy {
            let store = self.store.clone();
            let id = id.to_string();
            blocking(move || {
                store
                    .destroy_volume(&id)
                    .map_err(|e| ApiError::internal(format!("releasing the volume: {e}")))
            })
            .await?;
        }
        Ok(())
    }

    /// After a daemon start: finish what a killed daemon left half done,
    /// and learn which sprites still run.
    ///
    /// A create writes the DB row, then the volume; a destroy removes the
    /// volume, then the row. So a row without a volume is a create or destroy
    /// that never finished (nothing of the user's is in it), and a volume
    /// without a row is the same from the other side.
    pub async fn reconcile(&self) -> Result<(), ApiError> {
        let store = self.store.clone();
        blocking(move || {
            store
                .recover()
                .map_err(|e| ApiError::internal(format!("recovering storage: {e}")))
        })
        .await?;
        let records = self.db.all()?;
        let store = self.store.clone();
        let volumes = blocking(move || store.volume_ids().map_err(ApiError::internal)).await?;
        for id in volumes
            .iter()
            .filter(|v| !records.iter().any(|r| &r.id == *v))
        {
            tracing::warn!(id = %id, "removing the volume of an unfinished create or destroy");
            self.teardown(id).await?;
        }
        for rec in records {
            let evicted = self.db.evicted(&rec.id)?.is_some();
            *lock(&self.live(&rec.id).evicted) = evicted;
            self.reconcile_lazy(&rec, evicted).await?;
            if evicted {
                self.reconcile_cold(&rec).await?;
            }
            if !evicted && !self.store.volume_exists(&rec.id) {
                tracing::warn!(sprite = %rec.name, "forgetting a sprite whose create or destroy never finished");
                self.teardown(&rec.id).await?;
                self.db.delete(&rec.id)?;
                continue;
            }
            let driver = self.driver.clone();
            let id = rec.id.clone();
            let state = blocking(move || driver.state(&id).map_err(ApiError::internal)).await;
            let status = match state {
                Ok(SandboxState::Running { .. }) => Status::Running,
                Ok(SandboxState::Paused) => Status::Warm,
                Ok(SandboxState::Stopped | SandboxState::Missing) => Status::Cold,
                Err(e) => {
                    tracing::warn!(sprite = %rec.name, error = %e, "cannot read sandbox state");
                    Status::Cold
                }
            };
            self.set_status(&rec.id, status);
            if status == Status::Warm {
                *lock(&self.live(&rec.id).warm_since) = Some(std::time::Instant::now());
            }
            self.load_tasks(&rec)?;
            self.reconcile_checkpoints(&rec).await?;
            if status != Status::Cold {
                let driver = self.driver.clone();
                if let Err(e) = self.attach_network(&rec, &driver).await {
                    tracing::warn!(sprite = %rec.name, error = %e, "cannot enforce the network policy");
                }
                self.resume_inside(&rec).await;
            }
            tracing::info!(sprite = %rec.name, status = status.as_str(), "found sprite");
        }
        Ok(())
    }
}

/// Bind the in-sprite API socket; anyone inside may connect (it is their
/// sprite), nobody outside sees the directory.
fn bind_inside_socket(
    path: &std::path::Path,
) -> Result<std::os::unix::net::UnixListener, ApiError> {
    use std::os::unix::fs::PermissionsExt;
    let fd = bind_agent_socket(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| ApiError::internal(format!("chmod {}: {e}", path.display())))?;
    let l = std::os::unix::net::UnixListener::from(fd);
    l.set_nonblocking(true)
        .map_err(|e| ApiError::internal(format!("socket: {e}")))?;
    Ok(l)
}

/// Bind the agent's listening socket in the sprite's host-side directory
/// (made by the store), which the sprite never sees: the agent gets the fd,
/// not the path.
fn bind_agent_socket(path: &std::path::Path) -> Result<OwnedFd, ApiError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ApiError::internal(format!("removing old socket: {e}"))),
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| ApiError::internal(format!("binding {}: {e}", path.display())))?;
    Ok(OwnedFd::from(l))
}

impl Manager {
    /// Prometheus text: the sprites by status and every metric.
    pub fn render_metrics(&self) -> String {
        let mut counts = std::collections::BTreeMap::new();
        for l in lock(&self.live).values() {
            *counts.entry(lock(&l.status).as_str()).or_insert(0i64) += 1;
        }
        let by: Vec<(&str, i64)> = ["running", "warm", "cold", "error"]
            .iter()
            .map(|s| (*s, counts.get(s).copied().unwrap_or(0)))
            .collect();
        self.metrics.render(&by)
    }
}
