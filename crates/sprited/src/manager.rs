//! Sprite lifecycle: create, wake, destroy, and reconciling what the DB says
//! with what really runs after a daemon restart or a host reboot.
//!
//! Each sprite has a lifecycle lock: start, stop and destroy of one sprite
//! never interleave, while different sprites proceed in parallel. The
//! daemon never touches mounts or runc itself: it asks `sprite-store` and
//! `sprite-runtime`.

mod agent;
pub mod changes;
pub mod checkpoints;
pub mod cold;
pub mod idle;
pub mod limits;
pub mod meter;
mod pool;
pub mod privileges;
pub mod recover;
pub mod relay;
pub mod replicate;
pub mod resources;
pub mod services;
mod slot;
pub mod tasks;
#[cfg(test)]
mod tests;
pub mod uploads;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use sprite_runtime::{
    Bind, Driver, IdMap, Isolation, Limits as RtLimits, SandboxSpec, SandboxState,
};
use sprite_store::{IdShift, ImageKind, Store};
use sprites_api::agent::{Request, SOCKET_NAME};
use sprites_api::sprite::{CreateSpriteRequest, Status};

pub use slot::Activity;
use slot::SpriteSlot;

use crate::agent_conn::{self, AgentError, Conversation};
use crate::config::{Config, IMAGES};
use crate::db::{Db, DbError, Limits, SpriteRecord};
use crate::error::Error;
use crate::failpoint;
use crate::time::now_rfc3339;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const ACTIVITY_PERSIST_EVERY: Duration = Duration::from_secs(5);

/// The RAM a sprite may be given, in MiB (on create and in its resources
/// policy).
pub(crate) const RAM_MB: std::ops::RangeInclusive<u64> = 64..=1 << 20;

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
    /// The volume is about to be replaced (a restore): it is let go of
    /// without waiting for its contents to be written back (see
    /// [`Store::discard_rootfs`]).
    Discard,
    Destroy,
}

pub struct Manager {
    pub db: Arc<Db>,
    pub cfg: Arc<Config>,
    store: Arc<Store>,
    /// Runs the sandboxes; whatever the manager needs to know of one
    /// (state, init, network namespace) it asks this.
    driver: Arc<dyn Driver>,
    agent_bin: PathBuf,
    /// Every sprite's in-memory state, by id.
    slots: Mutex<HashMap<String, Arc<SpriteSlot>>>,
    images: tokio::sync::Mutex<()>,
    me: Weak<Manager>,
    /// One sample of a sprite at a time (rounds and last samples).
    meter_lock: Mutex<()>,
    /// Times of recent creates, for the create rate limit.
    recent_creates: Mutex<std::collections::VecDeque<std::time::Instant>>,
    /// Held while a start is checked against `max_running` and its place
    /// taken (not while it is made: starts go side by side).
    admission: Mutex<()>,
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
    /// Status changes, for watchers ([`changes`]).
    changes: tokio::sync::broadcast::Sender<changes::SpriteChange>,
    /// Wakes the checkpoint uploader ([`uploads`]).
    uploads: Arc<tokio::sync::Notify>,
    /// The metadata sweep's memory ([`recover`]).
    meta_sweep: Mutex<recover::MetaSweep>,
    /// The store's garbage collections as of this host's last upload or
    /// collection (see [`crate::db::store_lock`]).
    store_generation: std::sync::atomic::AtomicI64,
    /// Sandboxes made ahead for default creates ([`pool`]).
    pool: pool::StartPool,
    /// Uploads to the object store under way at once (replications,
    /// evictions, checkpoints, base images): see [`cold::UPLOADS_AT_ONCE`].
    upload_slots: tokio::sync::Semaphore,
}

async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// `standard` gives the `sprite` user passwordless sudo, which needs setuid
/// to work, so its sandboxes' specs turn no_new_privs off. Root inside is
/// still an unprivileged uid outside (user namespace), with 12 capabilities
/// and the seccomp filter, so setuid only reaches what sudo grants by design.
fn image_has_setuid_tools(image: &str) -> bool {
    image == "standard"
}

/// `url_settings.auth`: `sprite` (a token is needed), `public`, or
/// `private` (no URL: only the API's proxy endpoint reaches it).
pub fn validate_url_auth(auth: String) -> Result<String, Error> {
    match auth.as_str() {
        "sprite" | "public" | "private" => Ok(auth),
        _ => Err(Error::Invalid(format!(
            "url_settings.auth must be \"sprite\", \"public\" or \"private\", not {auth:?}"
        ))),
    }
}

/// PATH of every command in a sprite of `image` (an unknown name, which no
/// record has, gets the plain one).
fn image_path(image: &str) -> &'static str {
    image_kind(image).map_or(sprite_store::DEFAULT_PATH, ImageKind::path)
}

pub fn image_kind(name: &str) -> Result<ImageKind, Error> {
    match name {
        "tiny" => Ok(ImageKind::Tiny),
        "standard" => Ok(ImageKind::Standard),
        other => Err(Error::Invalid(format!(
            "unknown image {other:?}; known images: {}",
            IMAGES.join(", ")
        ))),
    }
}

impl Manager {
    pub fn new(
        db: Arc<Db>,
        cfg: Arc<Config>,
        store: Arc<Store>,
        driver: Arc<dyn Driver>,
        agent_bin: PathBuf,
        cold: Arc<sprite_cold::ColdStore>,
    ) -> Arc<Self> {
        let (sockets, to_serve) = tokio::sync::mpsc::unbounded_channel();
        let net = crate::net::Network::new(db.clone(), &cfg);
        let metrics = crate::metrics::Metrics::new();
        if let Some(info) = &cfg.gvisor {
            metrics.gvisor(info);
        }
        Arc::new_cyclic(|me| Manager {
            db: db.clone(),
            cfg,
            store,
            driver,
            agent_bin,
            slots: Mutex::new(HashMap::new()),
            images: tokio::sync::Mutex::new(()),
            me: me.clone(),
            meter_lock: Mutex::new(()),
            recent_creates: Mutex::new(Default::default()),
            admission: Mutex::new(()),
            metrics,
            net,
            cold,
            image_upload: tokio::sync::Mutex::new(()),
            sockets,
            to_serve: Mutex::new(Some(to_serve)),
            changes: tokio::sync::broadcast::Sender::new(changes::BACKLOG),
            uploads: Arc::new(tokio::sync::Notify::new()),
            meta_sweep: Mutex::new(Default::default()),
            store_generation: std::sync::atomic::AtomicI64::new(0),
            pool: Default::default(),
            upload_slots: tokio::sync::Semaphore::new(cold::UPLOADS_AT_ONCE),
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

    fn slot(&self, id: &str) -> Arc<SpriteSlot> {
        lock(&self.slots)
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(SpriteSlot::new()))
            .clone()
    }

    /// The sprite's slot if it has one (a destroyed sprite has none).
    fn existing_slot(&self, id: &str) -> Option<Arc<SpriteSlot>> {
        lock(&self.slots).get(id).cloned()
    }

    pub fn status(&self, id: &str) -> Status {
        self.slot(id).status()
    }

    /// The status clients are shown: `running` until an idle pause has
    /// happened (see `SpriteSlot::shown_status`).
    pub fn shown_status(&self, id: &str) -> Status {
        self.slot(id).shown_status()
    }

    fn set_status(&self, id: &str, s: Status) {
        self.slot(id).state().status = s;
        self.announce(id);
    }

    /// Why the sprite's last start failed, while its status is `error`.
    pub fn error_of(&self, id: &str) -> Option<String> {
        self.slot(id).state().error.clone()
    }

    /// Start counting an activity on the sprite (before waking it).
    pub fn activity(&self, id: &str) -> Activity {
        Activity::begin(self.slot(id))
    }

    /// The sprite's host-side directory.
    pub fn sprite_dir(&self, id: &str) -> PathBuf {
        self.store.sprite_dir(id)
    }

    pub fn socket_path(&self, id: &str) -> PathBuf {
        self.store.sprite_dir(id).join(SOCKET_NAME)
    }

    pub fn get(&self, name: &str) -> Result<SpriteRecord, Error> {
        self.db
            .get(name)?
            .ok_or_else(|| Error::NoSprite(name.to_string()))
    }

    /// Make an image ready if it is not yet (once, whoever asks first):
    /// from the object store if a copy is kept there, else by building it.
    pub async fn ensure_image(&self, name: &str) -> Result<(), Error> {
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
                .map_err(Error::store(format!("building image {name}")))
        })
        .await
    }

    pub async fn create(&self, req: CreateSpriteRequest) -> Result<SpriteRecord, Error> {
        sprites_api::name::validate(&req.name).map_err(Error::Invalid)?;
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
        // A default create takes a sandbox made ahead, if one is ready.
        let mut pooled = match fork {
            None => self.pool_take(&image, &limits),
            Some(_) => None,
        };
        let now = now_rfc3339();
        let rec = SpriteRecord {
            id: pooled
                .as_ref()
                .map_or_else(|| uuid::Uuid::new_v4().to_string(), |p| p.id.clone()),
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
        if let Err(e) = self.db.insert(&rec) {
            if let Some(p) = pooled.take() {
                self.pool_give_back(p);
            }
            return Err(match e {
                DbError::Duplicate(n) => {
                    Error::Invalid(format!("a sprite named {n} already exists"))
                }
                e => e.into(),
            });
        }
        let ahead = pooled.is_some();
        let slot = self.slot(&rec.id);
        let _g = slot.lifecycle.lock().await;
        let made = match &fork {
            Some((src, checkpoint)) => self.fork_volume(src, checkpoint, &rec.id).await,
            // Made with the sandbox.
            None if pooled.is_some() => Ok(()),
            None => self.create_volume_for(&rec).await,
        };
        let made_ok = made.is_ok();
        let started = match made {
            Ok(()) => {
                match self.admit_start(&rec.id) {
                    Ok(_admitted) => match pooled.take() {
                        Some(p) => self.start_ahead_or_anew(&rec, p).await,
                        None => self.start_locked(&rec).await,
                    },
                    // Made, and waits cold until there is room.
                    Err(_) if req.wait_for_capacity == Some(true) => {
                        let halted = match pooled.take() {
                            // Its sandbox goes, its volume stays: named
                            // first, so that what the agent wrote at its
                            // boot (/etc/hosts) names the sprite.
                            Some(_) => {
                                if let Err(e) = self.name_pooled(&rec).await {
                                    tracing::warn!(sprite = %rec.name, error = %e, "naming a sandbox made ahead; its /etc/hosts may keep the placeholder");
                                }
                                self.halt(&rec.id, Duration::ZERO, Release::Unmount).await
                            }
                            None => Ok(()),
                        };
                        halted.map(|()| self.set_status(&rec.id, Status::Cold))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if ahead {
            // Another made ahead for the next.
            if let Some(me) = self.arc() {
                me.spawn_pool_fill();
            }
        }
        if let Err(e) = started {
            tracing::warn!(sprite = %rec.name, error = %e, "create failed; rolling back");
            // The record first: a volume left without one is removed at the
            // next start, a record left without its volume would be a
            // sprite that cannot run.
            match self.db.delete(&rec.id) {
                Ok(()) => {
                    let _ = self.teardown(&rec.id).await;
                }
                Err(de) if made_ok => {
                    // The database is away: the sprite stays, whole (its
                    // record and its volume), cold.
                    tracing::warn!(sprite = %rec.name, error = %de, "the failed create's record cannot be removed now: the sprite is kept whole, cold");
                    let _ = self.halt(&rec.id, STOP_GRACE, Release::Unmount).await;
                    self.set_status(&rec.id, Status::Cold);
                }
                Err(de) => {
                    tracing::warn!(sprite = %rec.name, error = %de, "the failed create's record cannot be removed now; removing it when the database is back");
                    let _ = self.teardown(&rec.id).await;
                    self.forget_when_back(&rec.id);
                }
            }
            return Err(e);
        }
        self.metrics.created(ahead);
        tracing::info!(sprite = %rec.name, id = %rec.id, image = %rec.image, ahead, "sprite created");
        self.get(&rec.name)
    }

    /// Starts a new sprite on sandbox `p`, made ahead under its id; if that
    /// fails, on a volume and sandbox made now, as without one.
    async fn start_ahead_or_anew(&self, rec: &SpriteRecord, p: pool::Pooled) -> Result<(), Error> {
        let Err(e) = self.start_pooled(rec, p).await else {
            return Ok(());
        };
        tracing::warn!(sprite = %rec.name, error = %e, "a sandbox made ahead could not be used; making one");
        self.halt(&rec.id, Duration::ZERO, Release::Destroy).await?;
        self.create_volume_for(rec).await?;
        self.start_locked(rec).await
    }

    /// Makes sprite `rec`'s volume, a clone of the template of its size.
    async fn create_volume_for(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let (store, id) = (self.store.clone(), rec.id.clone());
        let bytes = rec.limits.storage_gb << 30;
        blocking(move || {
            store
                .create_volume_sized(&id, bytes)
                .map_err(Error::store("creating the volume"))
        })
        .await
    }

    /// Removes the record of a create that failed before its volume was
    /// made, retrying while the database cannot be reached.
    fn forget_when_back(&self, id: &str) {
        let Some(me) = self.me.upgrade() else { return };
        let id = id.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let db = me.db.clone();
                let i = id.clone();
                match tokio::task::spawn_blocking(move || db.delete(&i)).await {
                    Ok(Ok(())) => return,
                    Ok(Err(DbError::Unavailable(_))) => continue,
                    Ok(Err(e)) => {
                        tracing::warn!(id, error = %e, "cannot remove a failed create's record");
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
    }

    fn limits_for(&self, req: &CreateSpriteRequest) -> Result<Limits, Error> {
        let c = req.config.clone().unwrap_or_default();
        let cpus = c.cpus.unwrap_or(self.cfg.default_cpus);
        let host_cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let max_cpus = host_cpus.max(1).saturating_mul(4);
        if !(1..=max_cpus).contains(&cpus) {
            return Err(Error::Invalid(format!(
                "config.cpus must be a whole number from 1 to {max_cpus}"
            )));
        }
        let ram_mb = c.ram_mb.unwrap_or(self.cfg.default_ram_mb);
        if !RAM_MB.contains(&ram_mb) {
            return Err(Error::Invalid(format!(
                "config.ram_mb must be between {} and {}",
                RAM_MB.start(),
                RAM_MB.end()
            )));
        }
        let storage_gb = c.storage_gb.unwrap_or(self.cfg.default_storage_gb);
        if !(1..=MAX_STORAGE_GB).contains(&storage_gb) {
            return Err(Error::Invalid(format!(
                "config.storage_gb must be between 1 and {MAX_STORAGE_GB}"
            )));
        }
        let isolation = match c.isolation.as_deref() {
            None => self.cfg.isolation,
            Some(s) => Isolation::parse(s).ok_or_else(|| {
                Error::Invalid(format!(
                    "config.isolation must be \"container\" or \"gvisor\", not {s:?}"
                ))
            })?,
        };
        if isolation == Isolation::Gvisor && self.cfg.gvisor.is_none() {
            return Err(Error::Invalid(
                "config.isolation \"gvisor\" is not available on this host: install runsc (Debian's runsc package) and restart sprited".into(),
            ));
        }
        Ok(Limits {
            cpus: f64::from(cpus),
            ram_mb,
            storage_gb,
            isolation,
        })
    }

    /// Start the sandbox; the caller holds the lifecycle lock.
    async fn start_locked(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let t0 = std::time::Instant::now();
        // A volume still filling itself from the object store is read
        // through its self-filling view.
        let volume = self
            .slot(&rec.id)
            .cold
            .filling_image_path()
            .unwrap_or_else(|| self.store.volume_path(&rec.id));
        let inputs = self.sandbox_inputs(rec, volume)?;
        let (inside, times) = blocking(move || inputs.make(t0)).await?;
        self.started(rec, inside, t0, times).await
    }

    /// What making sprite `rec`'s sandbox on `volume` takes, gathered here
    /// (the DB, the network's files) for [`SandboxInputs::make`] to use in
    /// a blocking thread.
    fn sandbox_inputs(&self, rec: &SpriteRecord, volume: PathBuf) -> Result<SandboxInputs, Error> {
        let (resolv_conf, policy_dir) = self.net.files(
            &rec.id,
            &self.store.sprite_dir(&rec.id),
            crate::net::resolver_for(rec.limits.isolation),
        )?;
        let privileges = self.privileges_at_start(rec, &policy_dir)?;
        Ok(SandboxInputs {
            store: self.store.clone(),
            driver: self.driver.clone(),
            spec_base: self.spec_for(rec),
            image: rec.image.clone(),
            socket: self.socket_path(&rec.id),
            resolv_conf,
            policy_dir,
            privileges,
            host_env: self.cfg.host_env.clone(),
            name: rec.name.clone(),
            url: self.url_of(&rec.name),
            volume,
        })
    }

    /// The rest of a start once the sandbox runs: its network policy, its
    /// in-sprite API served, its status.
    async fn started(
        &self,
        rec: &SpriteRecord,
        inside: std::os::unix::net::UnixListener,
        t0: std::time::Instant,
        [queued, prepared, mounted, started]: [Duration; 4],
    ) -> Result<(), Error> {
        let returned = t0.elapsed();
        if let Err(e) = self.attach_network(rec, true).await {
            let (driver, id) = (self.driver.clone(), rec.id.clone());
            let _ = blocking(move || {
                driver
                    .delete(&id)
                    .map_err(Error::runtime("removing the sandbox"))
            })
            .await;
            return Err(e);
        }
        self.hand_over_socket(rec, inside);
        self.slot(&rec.id).state().error = None;
        self.slot(&rec.id).services_changed();
        let attached = t0.elapsed();
        self.set_status(&rec.id, Status::Running);
        self.db.set_last_running(&rec.id, &now_rfc3339())?;
        self.refresh_views(rec);
        tracing::debug!(
            sprite = %rec.name,
            queued_ms = checkpoints::ms(queued),
            prepare_ms = checkpoints::ms(prepared - queued),
            mount_ms = checkpoints::ms(mounted - prepared),
            sandbox_ms = checkpoints::ms(started - mounted),
            back_ms = checkpoints::ms(returned - started),
            policy_ms = checkpoints::ms(attached - returned),
            record_ms = checkpoints::ms(t0.elapsed() - attached),
            "sprite started"
        );
        Ok(())
    }

    /// Keeps every sandbox's blocked destinations equal to the host's
    /// addresses as they change (a new interface, a VPN, a DHCP lease): the
    /// kernel's announcements are watched for as long as the manager lives,
    /// and looked at again every 30 s whatever it announced.
    pub fn follow_host_addresses(
        self: &Arc<Self>,
        blocked: Arc<sprite_runtime::net::host::Blocked>,
    ) -> Result<(), Error> {
        let sprite_network = blocked.sprite_network();
        self.net.follow(blocked);
        let changed = Arc::new(tokio::sync::Notify::new());
        let me = Arc::downgrade(self);
        let wake = changed.clone();
        sprite_runtime::net::host::watch(
            me.clone(),
            sprite_network,
            Duration::from_millis(100),
            Duration::from_secs(30),
            move || wake.notify_one(),
        )
        .map_err(Error::runtime("watching the host's addresses"))?;
        tokio::spawn(async move {
            loop {
                changed.notified().await;
                let Some(m) = me.upgrade() else { break };
                m.net.host_changed().await;
            }
        });
        Ok(())
    }

    /// Enforce the network policy in a running (or paused) sprite, in the
    /// network namespace its driver reports. (Egress itself, the sandbox's
    /// way out, is attached by the driver as it starts the sandbox.)
    /// `fresh`: the sandbox was just started, its table as egress made it.
    async fn attach_network(&self, rec: &SpriteRecord, fresh: bool) -> Result<(), Error> {
        let (driver, id) = (self.driver.clone(), rec.id.clone());
        let netns = blocking(move || {
            driver
                .netns(&id)
                .map_err(Error::runtime("the sandbox's network namespace"))
        })
        .await?;
        self.net
            .attach(
                &rec.id,
                &netns,
                crate::net::resolver_for(rec.limits.isolation),
                fresh,
            )
            .await
    }

    /// Hand a running sprite's bound API socket over to be served
    /// (replacing, and so stopping, a previous server of it).
    fn hand_over_socket(&self, rec: &SpriteRecord, listener: std::os::unix::net::UnixListener) {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        self.slot(&rec.id).state().socket = Some(stop);
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
        self.slot(id).state().socket.take();
    }

    /// The sprite's URL on this daemon's listener.
    pub fn url_of(&self, name: &str) -> String {
        format!(
            "http://{name}.{}:{}",
            self.cfg.url_domain,
            self.cfg.listen.port()
        )
    }

    fn spec_for(&self, rec: &SpriteRecord) -> SandboxSpec {
        let dir = self.store.sprite_dir(&rec.id);
        SandboxSpec {
            id: rec.id.clone(),
            hostname: rec.name.clone(),
            rootfs: dir.join("rootfs"),
            bundle_dir: dir.join("bundle"),
            log_path: self.store.agent_log(&rec.id),
            agent_bin: self.agent_bin.clone(),
            init_args: vec!["/.sprite/bin/sprite-agent".into()],
            // Nothing here names the sprite: a sandbox made ahead gets its
            // name only when it is taken (its hostname, its llm.txt).
            env: vec![self.cfg.host_env.agent_var(image_path(&rec.image))],
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
            no_new_privileges: !image_has_setuid_tools(&rec.image),
            // What the privileges policy changes is set at start.
            capabilities: sprite_runtime::spec::CAPABILITIES.to_vec(),
            devices: Vec::new(),
            io_uring: false,
            // Init is the agent: it loads the filter compiled once.
            init_loads_seccomp: true,
            isolation: rec.limits.isolation,
        }
    }

    /// Make sure the sprite runs; wakes it when it is cold or paused.
    /// The wake runs in a task of its own, so that a client hanging up
    /// cannot cancel it halfway through a start.
    pub async fn ensure_running(self: &Arc<Self>, rec: &SpriteRecord) -> Result<(), Error> {
        if self.slot(&rec.id).usable() || self.thaw_here(rec) {
            return Ok(());
        }
        let this = self.clone();
        let rec = rec.clone();
        tokio::spawn(async move { this.wake(&rec).await })
            .await
            .map_err(|e| Error::Internal(format!("wake task failed: {e}")))?
    }

    /// The warm fast path without leaving the caller's task: when nothing
    /// else holds the sprite's lifecycle and its cgroup thaws with one
    /// write, it is running again here (no task, no blocking thread: each
    /// hand-off wakes an idle CPU, a good part of a warm wake's cost).
    /// False leaves everything to [`Manager::wake`].
    fn thaw_here(&self, rec: &SpriteRecord) -> bool {
        let slot = self.slot(&rec.id);
        let Ok(_g) = slot.lifecycle.try_lock() else {
            return false;
        };
        if self.status(&rec.id) != Status::Warm {
            return false;
        }
        match self.driver.resume_now(&rec.id) {
            Ok(true) => {
                self.resumed(rec);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::debug!(sprite = %rec.name, error = %e, "thawing in place failed; waking it");
                false
            }
        }
    }

    /// A warm sprite was thawed: it is running.
    fn resumed(&self, rec: &SpriteRecord) {
        tracing::debug!(sprite = %rec.name, "resumed");
        self.metrics.woke("warm");
        self.slot(&rec.id).state().warm_since = None;
        self.set_status(&rec.id, Status::Running);
    }

    async fn wake(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let slot = self.slot(&rec.id);
        let _g = slot.lifecycle.lock().await;
        self.wake_locked(rec).await
    }

    /// Running again from wherever it is; the caller holds the lifecycle lock.
    async fn wake_locked(&self, rec: &SpriteRecord) -> Result<(), Error> {
        match self.status(&rec.id) {
            Status::Running => return Ok(()),
            Status::Warm => {
                // The fast path: thaw the cgroup, no runc involved.
                let driver = self.driver.clone();
                let id = rec.id.clone();
                let resumed = blocking(move || {
                    driver
                        .resume(&id)
                        .map_err(Error::runtime("resuming the sandbox"))
                })
                .await;
                match resumed {
                    Ok(()) => {
                        self.resumed(rec);
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!(sprite = %rec.name, error = %e, "resume failed; starting it afresh");
                    }
                }
            }
            Status::Cold => {}
            Status::Error => {
                // A failed start or stop may have left a sandbox (or a
                // mount) behind: what runs is brought in line with the
                // record before anything starts again.
                self.halt(&rec.id, Duration::ZERO, Release::Unmount)
                    .await
                    .map_err(|e| {
                        Error::Unavailable(format!(
                            "sprite {} is in error and what is left of it cannot be stopped: {e}",
                            rec.name
                        ))
                    })?;
            }
        }
        tracing::info!(sprite = %rec.name, "waking sprite");
        let _admitted = self.admit_start(&rec.id)?;
        // Its image first, and an evicted sprite's volume starts filling
        // itself from the object store (what the boot reads first); if
        // that cannot start, the sprite stays as it was and the error says why.
        self.ensure_image(&rec.image).await?;
        self.wake_lazily_locked(rec).await?;
        match self.start_locked(rec).await {
            Ok(()) => {
                self.metrics.woke("cold");
                self.slot(&rec.id).state().error = None;
                self.slot(&rec.id).state().warm_since = None;
                Ok(())
            }
            Err(e) => {
                tracing::error!(sprite = %rec.name, error = %e, "sprite failed to start");
                // Whatever half-started is taken down; the volume stays.
                let _ = self.halt(&rec.id, Duration::ZERO, Release::Unmount).await;
                // A volume that could not be read from the object store is
                // the cause to report (the sprite stays evicted and intact).
                if let Some(fill) = self.slot(&rec.id).cold.take_fill_error() {
                    return Err(Error::cold(format!("waking sprite {}", rec.name))(fill));
                }
                self.slot(&rec.id).state().error = Some(e.to_string());
                self.set_status(&rec.id, Status::Error);
                Err(Error::Unavailable(format!(
                    "sprite {} failed to start: {e}",
                    rec.name
                )))
            }
        }
    }

    /// Open an agent conversation for `req`, waking the sprite first; it
    /// keeps the sprite awake while it lasts. A stale "running" (the
    /// sandbox died under us) is noticed and repaired once. The typed
    /// sessions built on it are in `manager/agent.rs`.
    async fn open(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        req: &Request,
    ) -> Result<Conversation, Error> {
        // Counted before the wake: the idle tracker never pauses a sprite
        // that a request is about to use.
        let activity = self.activity(&rec.id);
        for attempt in 0..2 {
            self.ensure_running(rec).await?;
            match agent_conn::open(&self.socket_path(&rec.id), req).await {
                Ok(mut conv) => {
                    self.touch(rec);
                    conv.hold(activity);
                    return Ok(conv);
                }
                Err(AgentError::Connect(e)) if short_of(&e).is_some() => {
                    // The daemon's own shortage is never the sprite's fault.
                    return Err(daemon_short(rec, &e));
                }
                Err(AgentError::Connect(e)) if attempt == 0 => {
                    tracing::warn!(sprite = %rec.name, error = %e, "agent unreachable; restarting the sprite");
                    self.take_down_unreachable(rec).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Unavailable(format!(
            "sprite {} did not come up",
            rec.name
        )))
    }

    /// The sprite's agent refuses connections: its sandbox died under us, or
    /// its agent did. Whatever still runs of it is stopped and its volume
    /// released before the next wake starts it again; never just marked
    /// cold, which would leave a sandbox running for the next start to
    /// collide with. A failure to stop leaves it in error (the next wake
    /// tries again).
    pub(crate) async fn take_down_unreachable(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let slot = self.slot(&rec.id);
        let _g = slot.lifecycle.lock().await;
        // Another request may have done it already (and started it again).
        if self.status(&rec.id) != Status::Running || self.agent_answers(rec).await {
            return Ok(());
        }
        match self.halt(&rec.id, Duration::ZERO, Release::Unmount).await {
            Ok(()) => {
                self.set_status(&rec.id, Status::Cold);
                Ok(())
            }
            Err(e) => {
                slot.state().error = Some(e.to_string());
                self.set_status(&rec.id, Status::Error);
                Err(Error::Unavailable(format!(
                    "sprite {}'s agent is gone and its sandbox could not be stopped: {e}",
                    rec.name
                )))
            }
        }
    }

    /// Whether the sprite's agent is there: false only when its socket is
    /// gone or refuses, or the conversation is cut before the agent answers
    /// a `busy` question (a sandbox whose init is dying: runc already calls
    /// it stopped once the main thread is a zombie, while another thread of
    /// the agent still holds the listener and takes connections it will
    /// never answer). The daemon's own shortage of descriptors or memory
    /// says nothing about the sprite, and a slow answer is still an agent:
    /// both count as there.
    pub(crate) async fn agent_answers(&self, rec: &SpriteRecord) -> bool {
        match self.ask_busy(&rec.id).await {
            Some(Ok(_)) | None => true,
            Some(Err(AgentError::Connect(e))) => !matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ),
            Some(Err(e)) => !agent_conn::cut_short(&e),
        }
    }

    /// Note activity. The DB write happens off the request path and at most
    /// every few seconds per sprite: exec latency must not pay for an fsync.
    fn touch(&self, rec: &SpriteRecord) {
        let now = std::time::Instant::now();
        {
            let slot = self.slot(&rec.id);
            let mut state = slot.state();
            if state
                .persisted
                .is_some_and(|t| now.duration_since(t) < ACTIVITY_PERSIST_EVERY)
            {
                return;
            }
            state.persisted = Some(now);
        }
        let db = self.db.clone();
        let id = rec.id.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = db.set_last_active(&id, &now_rfc3339()) {
                tracing::warn!(error = %e, "recording activity");
            }
        });
    }

    pub async fn destroy(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let slot = self.slot(&rec.id);
        let _g = slot.lifecycle.lock().await;
        // Its snapshots first: a crash before the record goes must not
        // make start-up bring back, from them, a sprite being destroyed.
        self.db.delete_snapshots(&rec.id)?;
        // What it used until now, while its record is there to bill.
        if self.status(&rec.id) != Status::Cold {
            self.meter_one(&rec.id).await;
        }
        // Then the record, before anything of its data goes: from here the
        // destroy is decided, and a crash leaves files without a record,
        // which start-up removes. (The other way round, a crash after the
        // volume went brought an evicted sprite back from the store's older
        // copy, without what it wrote since its wake.)
        self.db.delete(&rec.id)?;
        failpoint::hit("destroy-recorded");
        let released = self.teardown(&rec.id).await;
        lock(&self.slots).remove(&rec.id);
        self.announce(&rec.id);
        // Its copies in the object store go in the background: a slow or
        // unreachable store must not hold up the destroy.
        if let Some(me) = self.arc() {
            let id = rec.id.clone();
            tokio::spawn(async move {
                me.forget_cold(&id).await;
                me.spawn_cold_sweep();
            });
        }
        if let Err(e) = released {
            tracing::warn!(sprite = %rec.name, error = %e, "a destroyed sprite's files could not all be removed; the next start removes them");
            return Err(e);
        }
        failpoint::hit("destroy-released");
        tracing::info!(sprite = %rec.name, "sprite destroyed");
        Ok(())
    }

    /// Remove whatever exists of a sprite's sandbox and volume; the caller
    /// holds the lifecycle lock (or, at start-up, nothing else runs).
    async fn teardown(&self, id: &str) -> Result<(), Error> {
        self.halt(id, Duration::ZERO, Release::Destroy).await
    }

    /// Stop a sprite's processes and unmount its volume (it stays, cold).
    pub async fn stop(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let slot = self.slot(&rec.id);
        let _g = slot.lifecycle.lock().await;
        self.halt(&rec.id, STOP_GRACE, Release::Unmount).await?;
        self.set_status(&rec.id, Status::Cold);
        slot.state().warm_since = None;
        Ok(())
    }

    /// Stop the sprite's processes and start it again from its record as
    /// stored now (so a changed RAM limit applies); its files stay.
    pub async fn restart(self: &Arc<Self>, name: &str) -> Result<SpriteRecord, Error> {
        let rec = self.get(name)?;
        self.stop(&rec).await?;
        let rec = self.get(name)?;
        self.ensure_running(&rec).await?;
        Ok(rec)
    }

    /// Stop the sandbox (SIGTERM, SIGKILL after `grace`, container removed),
    /// then unmount or destroy the volume.
    async fn halt(&self, id: &str, grace: Duration, release: Release) -> Result<(), Error> {
        self.halt_keeping(id, grace, release).await.map(drop)
    }

    /// [`Manager::halt`] that hands back the old volume of a
    /// [`Release::Discard`], still held: the caller drops it once the
    /// sprite runs again, so that its write-back (into the replaced file)
    /// does not compete with the new volume's mount.
    async fn halt_keeping(
        &self,
        id: &str,
        grace: Duration,
        release: Release,
    ) -> Result<Option<sprite_store::Discarded>, Error> {
        // What it used since the last sample: its counters read before
        // they go, recorded while it stops.
        let metering = match self.status(id) {
            Status::Cold => None,
            _ => Some(self.meter_one_begun(id).await),
        };
        // From here on a request waits for the lifecycle lock (after the
        // stop, the restore, ... that holds it) and wakes the sprite, rather
        // than reaching an agent that is being killed.
        let slot = self.slot(id);
        slot.state().halting = true;
        let halted = self.halt_locked(id, grace, release).await;
        slot.state().halting = false;
        if let Some(m) = metering {
            m.finish().await;
        }
        halted
    }

    async fn halt_locked(
        &self,
        id: &str,
        grace: Duration,
        release: Release,
    ) -> Result<Option<sprite_store::Discarded>, Error> {
        self.stop_serving_socket(id);
        self.net.detach(id);
        let store = self.store.clone();
        let driver = self.driver.clone();
        let views = self.slot(id).views.clone();
        let sid = id.to_string();
        let destroy = matches!(release, Release::Destroy);
        let discard = matches!(release, Release::Discard);
        let unmount = matches!(release, Release::Unmount);
        let t0 = std::time::Instant::now();
        let (stopped, discarded) = blocking(move || {
            driver
                .stop(&sid, grace)
                .map_err(Error::runtime("stopping the sandbox"))?;
            let stopped = t0.elapsed();
            let _views = views.lock().unwrap_or_else(|p| p.into_inner());
            let discarded = if discard {
                store.discard_rootfs(&sid).map(Some)
            } else {
                store.unmount_rootfs(&sid).map(|()| None)
            }
            .map_err(Error::store("releasing the volume"))?;
            if unmount {
                // Cold: its run dir's files go until the next start.
                if let Err(e) = store.remove_run_dir(&sid) {
                    tracing::warn!(id = %sid, error = %e, "removing the run dir of a sprite gone cold");
                }
            }
            Ok((stopped, discarded))
        })
        .await?;
        tracing::debug!(
            id,
            stop_ms = checkpoints::ms(stopped),
            unmount_ms = checkpoints::ms(t0.elapsed() - stopped),
            "sandbox stopped"
        );
        // A volume that was filling itself from the object store is
        // completed (unless it goes) and becomes a plain local volume.
        if let Some(e) = self.finish_lazy(id, destroy).await {
            tracing::warn!(id, error = %e, "the volume could not be completed from the object store; it stays there, and the next wake resumes");
            self.slot(id).cold.record_fill_error(e);
        }
        if destroy {
            let store = self.store.clone();
            let views = self.slot(id).views.clone();
            let id = id.to_string();
            blocking(move || {
                // Not while a view is mounted or a checkpoint settled.
                let _views = views.lock().unwrap_or_else(|p| p.into_inner());
                store
                    .destroy_volume(&id)
                    .map_err(Error::store("releasing the volume"))
            })
            .await?;
        }
        Ok(discarded)
    }

    /// Stops every sandbox of this host, writing nothing anywhere but to
    /// the sandboxes: what a host does when it learns another took the
    /// database's serving lease (that host brings the sprites back from
    /// their replicated state; these copies must not run on beside them).
    pub async fn stop_every_sandbox(&self) {
        self.close_pool().await;
        let mut ids: std::collections::BTreeSet<String> =
            lock(&self.slots).keys().cloned().collect();
        let store = self.store.clone();
        if let Ok(Ok(volumes)) = tokio::task::spawn_blocking(move || store.volume_ids()).await {
            ids.extend(volumes);
        }
        let driver = self.driver.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for id in ids {
                if matches!(driver.state(&id), Ok(SandboxState::Missing)) {
                    continue;
                }
                // A warm sandbox is frozen: thawed first, or it cannot die.
                let _ = driver.resume(&id);
                if let Err(e) = driver.stop(&id, std::time::Duration::from_secs(1)) {
                    tracing::warn!(id, error = %e, "cannot stop a sandbox");
                }
            }
        })
        .await;
    }

    /// After a daemon start: finish what a killed daemon left half done,
    /// and learn which sprites still run.
    ///
    /// A create writes the DB row, then the volume; a destroy removes the
    /// row, then the volume. So a row without a volume (and no copy in the
    /// object store) is a create that never finished (nothing of the
    /// user's is in it), and a volume without a row is a destroy that never
    /// finished: both go.
    pub async fn reconcile(&self) -> Result<(), Error> {
        let store = self.store.clone();
        blocking(move || store.recover().map_err(Error::store("recovering storage"))).await?;
        let records = self.db.all()?;
        let store = self.store.clone();
        let volumes =
            blocking(move || store.volume_ids().map_err(Error::store("listing volumes"))).await?;
        for id in volumes
            .iter()
            .filter(|v| !records.iter().any(|r| &r.id == *v))
        {
            tracing::warn!(id = %id, "removing a volume no sprite has (a sandbox made ahead, an unfinished create or destroy)");
            self.teardown(id).await?;
        }
        // Hosts sharing the database: this host looks after what it holds.
        let records = match self.db.me() {
            None => records,
            Some(me) => {
                self.keep_what_is_held(&me, &volumes).await?;
                self.db.mine()?
            }
        };
        // Sprites are independent here: several at once (each waits on
        // runc and the kernel; 500 running sprites took 38 s one by one).
        let results: Vec<Result<(), Error>> =
            futures_util::stream::iter(records.into_iter().map(|rec| self.reconcile_one(rec)))
                .buffer_unordered(RECONCILE_AT_ONCE)
                .collect()
                .await;
        results.into_iter().collect()
    }

    /// A host sharing the database, at start: of the volumes here, what it
    /// holds stays; a sprite nobody ever held (from before hosts held
    /// sprites) it takes; the copy of a sprite another host holds now, or
    /// that it gave up, is stale (the sprite moved on): removed, its
    /// sandbox stopped.
    async fn keep_what_is_held(
        &self,
        me: &crate::db::hosts::Lease,
        volumes: &[String],
    ) -> Result<(), Error> {
        let leases = self.db.held()?;
        for id in volumes {
            let stale = match leases.get(id) {
                Some((Some(h), _)) => h != &me.host_id,
                Some((None, _)) => true,
                None => match self.db.claim(id) {
                    Ok(crate::db::hosts::Claimed::Mine { .. }) => false,
                    Ok(crate::db::hosts::Claimed::HeldBy { .. }) => true,
                    // Not a sprite (any more): reconcile removed it.
                    Err(crate::db::DbError::Type(_)) => false,
                    Err(e) => return Err(e.into()),
                },
            };
            if stale {
                tracing::info!(id = %id, "removing the copy of a sprite another host holds now");
                lock(&self.slots).remove(id);
                self.teardown(id).await?;
                lock(&self.slots).remove(id);
            }
        }
        Ok(())
    }

    /// A sprite this host claimed, made ready here: `moved` from another
    /// host (what this host may have of it is stale, and goes), then
    /// brought in from what the database and the object store keep, as at
    /// a start.
    pub async fn adopt(&self, rec: &SpriteRecord, moved: bool) -> Result<(), Error> {
        lock(&self.slots).remove(&rec.id);
        if moved && self.has_any_of(&rec.id).await {
            self.teardown(&rec.id).await?;
            lock(&self.slots).remove(&rec.id);
        }
        self.reconcile_one(rec.clone()).await
    }

    /// Whether this host has anything of sprite `id`: its volume, or a
    /// sandbox (running or not) of its driver.
    async fn has_any_of(&self, id: &str) -> bool {
        if self.store.volume_exists(id) {
            return true;
        }
        let (driver, sid) = (self.driver.clone(), id.to_string());
        !matches!(
            tokio::task::spawn_blocking(move || driver.state(&sid)).await,
            Ok(Ok(SandboxState::Missing))
        )
    }

    /// Sprites running or warm here.
    pub fn running_count(&self) -> usize {
        lock(&self.slots)
            .values()
            .filter(|s| matches!(s.status(), Status::Running | Status::Warm))
            .count()
    }

    /// [`Manager::reconcile`] for one sprite the DB holds.
    async fn reconcile_one(&self, rec: SpriteRecord) -> Result<(), Error> {
        let evicted = self.db.evicted(&rec.id)?.is_some();
        self.slot(&rec.id).cold.set_evicted(evicted);
        self.reconcile_lazy(&rec, evicted).await?;
        if evicted {
            self.reconcile_cold(&rec).await?;
        }
        let mut evicted = evicted;
        if !evicted && !self.store.volume_exists(&rec.id) {
            match self.recover_from_snapshot(&rec).await {
                Ok(true) => {
                    evicted = true;
                    self.slot(&rec.id).cold.set_evicted(true);
                }
                Ok(false) => {}
                Err(e) => {
                    // Kept, in error, for a later start to retry.
                    tracing::warn!(sprite = %rec.name, error = %e, "cannot bring a sprite back from its replicated snapshot");
                    self.slot(&rec.id).state().error = Some(e.to_string());
                    self.set_status(&rec.id, Status::Error);
                    return Ok(());
                }
            }
        }
        if !evicted
            && !self.store.volume_exists(&rec.id)
            && self.db.engine() == crate::db::Engine::Postgres
        {
            // A shared database: the volume may be on the host that served
            // it before this one, never replicated. Kept, in error, for the
            // user to delete (or that host to come back).
            let why = "its volume is not on this host and no replicated copy of it is in the \
                       object store (the host that ran it stopped before replicating it, or its \
                       create never finished): delete it, or bring that host's data back";
            tracing::warn!(sprite = %rec.name, "{why}");
            self.slot(&rec.id).state().error = Some(why.to_string());
            self.set_status(&rec.id, Status::Error);
            return Ok(());
        }
        if !evicted && !self.store.volume_exists(&rec.id) {
            tracing::warn!(sprite = %rec.name, "forgetting a sprite whose create or destroy never finished");
            self.teardown(&rec.id).await?;
            self.db.delete(&rec.id)?;
            return Ok(());
        }
        let driver = self.driver.clone();
        let id = rec.id.clone();
        let state = blocking(move || {
            driver
                .state(&id)
                .map_err(Error::runtime("reading the sandbox state"))
        })
        .await;
        let status = match state {
            Ok(SandboxState::Running { .. }) => Status::Running,
            Ok(SandboxState::Paused) => Status::Warm,
            Ok(SandboxState::Stopped | SandboxState::Missing) => Status::Cold,
            Err(e) => {
                // Not cold: it may run. In error, its next wake stops
                // whatever is left before it starts.
                tracing::warn!(sprite = %rec.name, error = %e, "cannot read sandbox state");
                self.slot(&rec.id).state().error = Some(e.to_string());
                Status::Error
            }
        };
        let status = if status == Status::Cold {
            self.release_leftovers(&rec).await
        } else {
            status
        };
        self.set_status(&rec.id, status);
        if status == Status::Warm {
            self.slot(&rec.id).state().warm_since = Some(std::time::Instant::now());
        }
        self.load_tasks(&rec)?;
        self.reconcile_checkpoints(&rec).await?;
        if status != Status::Cold {
            if let Err(e) = self.attach_network(&rec, false).await {
                tracing::warn!(sprite = %rec.name, error = %e, "cannot enforce the network policy");
            }
            self.resume_inside(&rec).await;
        }
        tracing::info!(sprite = %rec.name, status = status.as_str(), "found sprite");
        Ok(())
    }
}

impl Manager {
    /// A sprite found cold at start-up whose root the last daemon left
    /// mounted (it was killed between a mount and the sandbox's start, or
    /// the sandbox died while no daemon ran): its root, volume and views are
    /// unmounted, which writes back what the kernel still held of them.
    /// Everything else takes a cold sprite as unmounted: an eviction reads
    /// its image, a wake from the store replaces it, and a mount left over
    /// would keep taking the writes of a file no longer the volume. Answers
    /// the status to give it: `Error`, with the reason, where the unmount
    /// fails (its next wake tries again).
    async fn release_leftovers(&self, rec: &SpriteRecord) -> Status {
        // Asked first (a few statx calls): the unmount also waits for every
        // loop device of the volume to let go, one read of sysfs per device
        // bound on the host, which every cold sprite of a start would pay.
        let store = self.store.clone();
        let id = rec.id.clone();
        let left = blocking(move || {
            store
                .is_anything_mounted(&id)
                .map_err(Error::store("reading what is mounted"))
        })
        .await;
        let released = match left {
            Ok(true) => {
                self.unmount_root(&rec.id, "unmounting what the last daemon left mounted")
                    .await
            }
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        match released {
            Ok(()) => Status::Cold,
            Err(e) => {
                tracing::warn!(sprite = %rec.name, error = %e, "cannot unmount a cold sprite");
                self.slot(&rec.id).state().error = Some(e.to_string());
                Status::Error
            }
        }
    }

    /// Unmounts sprite `id`'s root, volume and views
    /// ([`Store::unmount_rootfs`]) on a blocking thread; `what` says what
    /// for, in the error.
    async fn unmount_root(&self, id: &str, what: &'static str) -> Result<(), Error> {
        let store = self.store.clone();
        let id = id.to_string();
        blocking(move || store.unmount_rootfs(&id).map_err(Error::store(what))).await
    }
}

/// Sprites a restart reconciles at once.
const RECONCILE_AT_ONCE: usize = 8;

/// What the daemon itself is short of, when an error says so (a shortage
/// of descriptors or memory in this process or on the host).
pub(crate) fn short_of(e: &std::io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(libc::EMFILE) => Some("file descriptors"),
        Some(libc::ENFILE) => Some("file descriptors (host-wide)"),
        Some(libc::ENOMEM | libc::ENOBUFS) => Some("memory"),
        _ => None,
    }
}

/// The error for a request the daemon could not serve for want of `e`'s
/// resource: 503, the sprite untouched.
pub(crate) fn daemon_short(rec: &SpriteRecord, e: &std::io::Error) -> Error {
    let what = short_of(e).unwrap_or("resources");
    tracing::warn!(sprite = %rec.name, error = %e, "the daemon is short of {what}");
    Error::Unavailable(format!(
        "the daemon is short of {what} and could not reach sprite {}; the sprite is untouched: try again",
        rec.name
    ))
}

/// What a sandbox is made of, gathered by [`Manager::sandbox_inputs`].
struct SandboxInputs {
    store: Arc<Store>,
    driver: Arc<dyn Driver>,
    spec_base: SandboxSpec,
    image: String,
    /// Where the agent's socket is bound (host side).
    socket: PathBuf,
    resolv_conf: PathBuf,
    policy_dir: PathBuf,
    privileges: privileges::Privileges,
    host_env: crate::host_env::HostEnv,
    name: String,
    url: String,
    volume: PathBuf,
}

impl SandboxInputs {
    /// Mounts the sprite's root and starts its sandbox, the two side by
    /// side: the start's first part needs no root (its starter, cgroups,
    /// namespaces, network: ~4 ms here) and runs while the root is
    /// mounted (~6 ms); the rest waits for the gate the mount opens (see
    /// `sprite_runtime::gate`). Blocking. Returns the bound in-sprite API
    /// socket and when each phase ended (queued, prepared, mounted,
    /// started), from `t0`.
    fn make(
        self,
        t0: std::time::Instant,
    ) -> Result<(std::os::unix::net::UnixListener, [Duration; 4]), Error> {
        let SandboxInputs {
            store,
            driver,
            spec_base,
            image,
            socket,
            resolv_conf,
            policy_dir,
            privileges,
            host_env,
            name,
            url,
            volume,
        } = self;
        let id = spec_base.id.clone();
        // The host ids it runs as, and its files shown under them.
        // (Under gVisor the Sentry, not the host's kernel, runs its
        // processes: it keeps the shared range.)
        let shared = spec_base.id_map;
        let ids = match spec_base.isolation {
            Isolation::Container => shared.map(|shared| driver.ids_for(&id, shared)),
            Isolation::Gvisor => shared,
        };
        let shift = match (shared, ids) {
            (Some(shared), Some(ids)) if ids != shared => Some(IdShift {
                from: shared.host_base,
                to: ids.host_base,
                size: ids.size,
            }),
            _ => None,
        };
        // A leftover sandbox (killed processes, host reboot) is cleared by
        // the driver's start; mounts are repaired by the store.
        let queued = t0.elapsed();
        // Everything but the root, made first: the sprite's directory and
        // what its sandbox binds from it.
        let run_dir = store
            .inside_run_dir(&id)
            .map_err(Error::store("preparing /.sprite/run"))?;
        host_env
            .write_ca_file(&run_dir)
            .map_err(|e| Error::Internal(format!("the sprite's CA certificates: {e}")))?;
        let guide = crate::llm::write(&store.sprite_dir(&id), &name, &url)
            .map_err(Error::io("writing the sprite's llm.txt"))?;
        let inside = bind_inside_socket(&run_dir.join(INSIDE_SOCKET))?;
        let listener = bind_agent_socket(&socket)?;
        let no_new_privileges = privileges
            .no_new_privileges
            .unwrap_or(spec_base.no_new_privileges);
        let rootfs = store.rootfs_path(&id);
        let mut spec = SandboxSpec {
            rootfs: rootfs.clone(),
            id_map: ids,
            capabilities: privileges.capabilities,
            devices: privileges.devices,
            no_new_privileges,
            io_uring: privileges.io_uring,
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
            Bind {
                source: guide,
                destination: crate::llm::PATH_IN_SPRITE.into(),
                read_only: true,
                follow_host_mounts: false,
            },
        ];
        let (gate, opener) = sprite_runtime::gate::gate().map_err(Error::io("a pipe"))?;
        let prepared = t0.elapsed();
        let (mounted, started) = std::thread::scope(|scope| {
            let starting = std::thread::Builder::new()
                .name("start-sandbox".into())
                .spawn_scoped(scope, || driver.start_gated(&spec, listener, gate));
            let starting = match starting {
                Ok(s) => s,
                // No thread: dropping the closure dropped the gate and
                // the listener; nothing was started.
                Err(e) => return (Err(Error::io("starting a thread")(e)), Ok(Ok(()))),
            };
            failpoint::hit("root-mounting");
            let mounted = store
                .mount_rootfs_from(&id, &image, &volume, shift)
                .map_err(Error::store("mounting the volume"))
                .and_then(|at| {
                    if at == rootfs {
                        Ok(())
                    } else {
                        Err(Error::Internal(format!(
                            "the root was mounted at {}, not {}",
                            at.display(),
                            rootfs.display()
                        )))
                    }
                });
            let mounted = mounted.map(|()| {
                // A start that failed already has closed its end: its
                // error is the one to tell.
                let _ = opener.open();
                t0.elapsed()
            });
            // Dropped unopened where the mount failed: the start ends.
            (mounted, starting.join())
        });
        let started = started
            .map_err(|_| Error::Internal("the thread starting the sandbox panicked".into()))?;
        // The mount's error first: a start it stopped says only that.
        let mounted = mounted?;
        started.map_err(Error::runtime("starting the sandbox"))?;
        Ok((inside, [queued, prepared, mounted, t0.elapsed()]))
    }
}

/// Bind the in-sprite API socket; anyone inside may connect (it is their
/// sprite), nobody outside sees the directory.
fn bind_inside_socket(path: &std::path::Path) -> Result<std::os::unix::net::UnixListener, Error> {
    use std::os::unix::fs::PermissionsExt;
    let fd = bind_agent_socket(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(Error::io(format!("chmod {}", path.display())))?;
    let l = std::os::unix::net::UnixListener::from(fd);
    l.set_nonblocking(true).map_err(Error::io("socket"))?;
    Ok(l)
}

/// Bind the agent's listening socket in the sprite's host-side directory
/// (made by the store), which the sprite never sees: the agent gets the fd,
/// not the path.
fn bind_agent_socket(path: &std::path::Path) -> Result<OwnedFd, Error> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("removing old socket")(e)),
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .map_err(Error::io(format!("binding {}", path.display())))?;
    Ok(OwnedFd::from(l))
}

impl Manager {
    /// Prometheus text: the sprites by status and every metric.
    pub fn render_metrics(&self) -> String {
        let mut counts = std::collections::BTreeMap::new();
        for l in lock(&self.slots).values() {
            *counts.entry(l.state().status.as_str()).or_insert(0i64) += 1;
        }
        let by: Vec<(&str, i64)> = ["running", "warm", "cold", "error"]
            .iter()
            .map(|s| (*s, counts.get(s).copied().unwrap_or(0)))
            .collect();
        let pool = self
            .store
            .pool_space()
            .map_err(|e| tracing::debug!(error = %e, "the pool's space"))
            .ok();
        self.metrics.render(&by, pool)
    }
}
