//! Many hosts on one database (`--database postgres://`): every host
//! serves, each sprite is held by one of them (see [`crate::db::hosts`]).
//!
//! A host joins at start, under a new epoch, and renews its membership
//! with a heartbeat that also tells the others its load. A request for a
//! sprite is routed here, before anything else looks at it:
//!
//! - held by this host: served here;
//! - held by another live host: forwarded to it ([`forward`]), WebSockets
//!   included; the client cannot tell but for the latency;
//! - held by nobody live (never held, given up by a drained host, or its
//!   host's heartbeat ran out): this host claims it, makes it ready here
//!   from what the database and the object store keep (its last replicated
//!   snapshot or eviction, its checkpoints), and serves it. A cordoned
//!   host sends it to the host with the most room instead.
//!
//! A create goes to the host with the most room (placement): fewest
//! sprites held, then fewest running, then most free memory, among the
//! live hosts that are not cordoned, under their `--max-running`.
//!
//! A host that finds its membership gone (its heartbeat ran out: frozen,
//! cut off from the database) stops every sandbox it runs and exits 75,
//! writing nothing more: its sprites are claimed elsewhere.

pub mod forward;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, Response};
use axum::middleware::Next;

use crate::db::hosts::{Claimed, Holder, Lease, LiveHost, Load};
use crate::db::{Db, DbError};
use crate::manager::Manager;
use crate::urls::host::Route;
use crate::AppState;

pub use forward::FORWARDED_BY;

/// How long a sprite found held by another host is taken as held there
/// without asking the database again.
const REMOTE_FOR: Duration = Duration::from_secs(1);

/// Below this much free memory a host takes no new sprite.
const MIN_FREE_MB: i64 = 256;

/// This host's id: `--host-id`, else the one kept in the data dir (made
/// at first start), so a restart is the same host.
pub fn host_id(given: Option<&str>, file: &Path) -> anyhow::Result<String> {
    if let Some(id) = given {
        return Ok(id.to_string());
    }
    match std::fs::read_to_string(file) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    }
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = crate::layout::temp_beside(file);
    std::fs::write(&tmp, &id).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
    Ok(id)
}

/// This host's part in the cluster.
pub struct Cluster {
    pub lease: Lease,
    db: Arc<Db>,
    ttl: Duration,
    /// `--cordon`, or draining: takes no sprite it does not hold (unless
    /// no other host can, when only cordoned).
    cordoned: AtomicBool,
    /// Draining: takes no sprite at all.
    leaving: AtomicBool,
    /// Left the hosts (a drained host's stop): the heartbeat ends, and a
    /// membership found gone is this host's own doing, not a reason to
    /// exit 75.
    left: AtomicBool,
    /// Sprites other hosts hold, as last looked up: name → (when, host,
    /// address), trusted for [`REMOTE_FOR`]. A stale entry sends a request
    /// to a host that no longer holds the sprite, which answers 503 (the
    /// retry looks again); a host that cannot be reached is forgotten.
    remote: Mutex<HashMap<String, (std::time::Instant, String, String)>>,
    /// One gate per sprite claimed here: a request for a sprite being made
    /// ready here waits for it.
    claiming: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Memory available on this machine, MiB (0 when unknown).
fn free_mb() -> i64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb / 1024)
}

impl Cluster {
    /// Joins the hosts sharing `db`, retrying while the database cannot be
    /// reached (it may be starting). Every write through `db` checks the
    /// membership from then on.
    pub async fn join(
        db: Arc<Db>,
        host_id: &str,
        advertise: &str,
        ttl: Duration,
        cordon: bool,
        max_running: u64,
    ) -> anyhow::Result<Arc<Cluster>> {
        let load = Load {
            running: 0,
            max_running: i64::try_from(max_running).unwrap_or(i64::MAX),
            free_mb: free_mb(),
            cordoned: cordon,
        };
        let lease = loop {
            let (d, h, a, l) = (
                db.clone(),
                host_id.to_string(),
                advertise.to_string(),
                load.clone(),
            );
            match tokio::task::spawn_blocking(move || d.join(&h, &a, ms(ttl), &l)).await? {
                Ok(lease) => break lease,
                Err(e @ DbError::Unavailable(_)) => {
                    tracing::warn!(error = %e, "the database cannot be reached; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e).context("joining the hosts of the database"),
            }
        };
        db.fence(&lease);
        tracing::info!(host = %lease.host_id, epoch = lease.epoch, advertise, "joined the hosts of this database");
        Ok(Arc::new(Cluster {
            lease,
            db,
            ttl,
            cordoned: AtomicBool::new(cordon),
            left: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            remote: Mutex::new(HashMap::new()),
            claiming: Mutex::new(HashMap::new()),
        }))
    }

    /// A drain begins: this host takes no sprite from now on, and the
    /// others learn it now rather than at the next heartbeat.
    pub async fn leaving(&self, manager: &Manager) {
        self.cordoned.store(true, Ordering::SeqCst);
        self.leaving.store(true, Ordering::SeqCst);
        if let Err(e) = self.beat(manager).await {
            tracing::warn!(error = %e, "cannot tell the other hosts this one drains; they learn it at its next heartbeat");
        }
    }

    /// One heartbeat with this host's load now: whether its membership is
    /// still live (see [`Db::heartbeat`]).
    async fn beat(&self, manager: &Manager) -> Result<bool, String> {
        let load = self.load(manager);
        let (db, lease, ttl) = (self.db.clone(), self.lease.clone(), ms(self.ttl));
        match tokio::task::spawn_blocking(move || db.heartbeat(&lease, ttl, &load)).await {
            Ok(beat) => beat.map_err(|e| e.to_string()),
            // The call itself failed (its task panicked): taken as gone.
            Err(_) => Ok(false),
        }
    }

    fn load(&self, manager: &Manager) -> Load {
        Load {
            running: i64::try_from(manager.running_count()).unwrap_or(i64::MAX),
            max_running: i64::try_from(manager.cfg.max_running).unwrap_or(i64::MAX),
            free_mb: free_mb(),
            cordoned: self.cordoned.load(Ordering::SeqCst),
        }
    }

    /// Renews the membership every third of `--host-timeout`. When it is
    /// gone: every sandbox here is stopped and the process exits (75,
    /// EX_TEMPFAIL: a supervisor that starts it again gets a new member).
    pub fn spawn_heartbeat(self: &Arc<Self>, manager: Arc<Manager>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.ttl / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if me.left.load(Ordering::SeqCst) {
                    return;
                }
                let beat = me.beat(&manager).await;
                if me.left.load(Ordering::SeqCst) {
                    return;
                }
                match beat {
                    Ok(true) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot renew this host's membership; trying again");
                    }
                    Ok(false) => {
                        tracing::error!(
                            host = %me.lease.host_id,
                            epoch = me.lease.epoch,
                            "this host's membership ran out (its sprites may be held elsewhere now): stopping every sandbox here and exiting, writing nothing more"
                        );
                        manager.stop_every_sandbox().await;
                        std::process::exit(75);
                    }
                }
            }
        });
    }

    /// Leaves the hosts (a drained host's stop): not live from now on.
    pub async fn leave(&self) {
        self.left.store(true, Ordering::SeqCst);
        let (db, lease) = (self.db.clone(), self.lease.clone());
        match tokio::task::spawn_blocking(move || db.leave(&lease)).await {
            Ok(Ok(())) => tracing::info!("left the hosts of this database"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot leave; the membership runs out"),
            Err(e) => tracing::warn!(error = %e, "cannot leave; the membership runs out"),
        }
    }

    /// The live host with the most room for one more sprite (see the
    /// module's notes); `exclude_me` for a host that takes none.
    async fn place(&self, exclude_me: bool) -> Result<Option<LiveHost>, String> {
        let db = self.db.clone();
        let hosts = match tokio::task::spawn_blocking(move || db.live_hosts()).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        };
        let me = &self.lease.host_id;
        let me_cordoned = self.cordoned.load(Ordering::SeqCst);
        Ok(choose(hosts, me, exclude_me || me_cordoned))
    }

    /// Makes sprite `id` this host's (it held it, or nobody live did) and
    /// ready here; what holds it when another host was quicker.
    async fn claim(
        &self,
        manager: &Arc<Manager>,
        id: &str,
    ) -> Result<Claimed, crate::error::Error> {
        let gate = {
            let mut claiming = self.claiming.lock().unwrap_or_else(|p| p.into_inner());
            claiming.entry(id.to_string()).or_default().clone()
        };
        let _held = gate.lock().await;
        // Made ready here by the claim this one waited for.
        if let Some(epoch) = self.db.held_here(id) {
            return Ok(Claimed::Mine {
                epoch,
                moved: false,
            });
        }
        let db = self.db.clone();
        let sid = id.to_string();
        let claimed = tokio::task::spawn_blocking(move || db.claim(&sid)).await??;
        if let Claimed::Mine { epoch, moved } = &claimed {
            let rec = manager.db.get_by_id(id)?;
            if let Some(rec) = rec {
                tracing::info!(sprite = %rec.name, epoch, moved, "this host holds the sprite now");
                if let Err(e) = manager.adopt(&rec, *moved).await {
                    // Not ready here: given up, for the next request to
                    // claim it again.
                    let db = self.db.clone();
                    let sid = id.to_string();
                    let _ = tokio::task::spawn_blocking(move || db.give_up(&sid)).await;
                    return Err(e);
                }
            }
        }
        Ok(claimed)
    }

    fn remote(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (std::time::Instant, String, String)>> {
        self.remote.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host holding sprite `name` as looked up less than
    /// [`REMOTE_FOR`] ago.
    fn remote_holder(&self, name: &str) -> Option<(String, String)> {
        let remote = self.remote();
        let (at, host, advertise) = remote.get(name)?;
        (at.elapsed() < REMOTE_FOR).then(|| (host.clone(), advertise.clone()))
    }

    fn remember_remote(&self, name: &str, host: &str, advertise: &str) {
        let mut remote = self.remote();
        if remote.len() > 10_000 {
            remote.retain(|_, (at, _, _)| at.elapsed() < REMOTE_FOR);
        }
        remote.insert(
            name.to_string(),
            (
                std::time::Instant::now(),
                host.to_string(),
                advertise.to_string(),
            ),
        );
    }

    /// Forgets every sprite taken as held by `host` (it could not be
    /// reached).
    fn forget_host(&self, host: &str) {
        self.remote().retain(|_, (_, h, _)| h != host);
    }

    /// Waits for a claim of `id` in progress here to end.
    async fn settled(&self, id: &str) {
        let gate = {
            let claiming = self.claiming.lock().unwrap_or_else(|p| p.into_inner());
            claiming.get(id).cloned()
        };
        if let Some(gate) = gate {
            let _ = gate.lock().await;
        }
    }
}

/// The host that should take one more sprite: among the live ones not
/// cordoned and under their `--max-running`, with free memory, the one
/// holding the fewest sprites, then running the fewest, then with the
/// most free memory, then this host.
pub fn choose(hosts: Vec<LiveHost>, me: &str, exclude_me: bool) -> Option<LiveHost> {
    hosts
        .into_iter()
        .filter(|h| !(exclude_me && h.id == me))
        .filter(|h| !h.load.cordoned || h.id == me)
        .filter(|h| h.load.max_running == 0 || h.load.running < h.load.max_running)
        .filter(|h| h.load.free_mb >= MIN_FREE_MB)
        .min_by_key(|h| (h.sprites, h.load.running, -h.load.free_mb, h.id != me))
}

/// Where a request goes.
enum Target {
    Here,
    There { host: String, advertise: String },
    Unavailable(String),
}

/// The sprite a request names: in the path of the API, or by its URL's
/// host name.
fn sprite_of(req: &Request, state: &AppState) -> Option<(String, bool)> {
    match crate::urls::host::route(req.uri(), req.headers(), &state.manager.cfg.url_domain) {
        Route::Sprite(name) => Some((name, false)),
        Route::Refuse(_) => None,
        Route::Api => {
            let rest = req.uri().path().strip_prefix("/v1/sprites/")?;
            let name = rest.split('/').next()?;
            (!name.is_empty()).then(|| (name.to_string(), true))
        }
    }
}

/// The routing layer: see the module's notes.
pub async fn route(State(state): State<AppState>, mut req: Request, next: Next) -> Response<Body> {
    let Some(cluster) = state.cluster.clone() else {
        return next.run(req).await;
    };
    let forwarded = req.headers().contains_key(FORWARDED_BY);
    if req.method() == Method::POST && req.uri().path() == crate::api::MCP_PATH {
        return route_mcp(state, cluster, req, next, forwarded).await;
    }
    let create = req.method() == Method::POST && req.uri().path() == "/v1/sprites";
    // A create or a delete may change who holds a name: looked up afresh.
    if create || req.method() == Method::DELETE {
        cluster.remote().clear();
    }
    let target = if create {
        if forwarded && !cluster.leaving.load(Ordering::SeqCst) {
            Target::Here
        } else {
            // A fork goes to its source's holder (its checkpoints are there).
            let (parts, bytes, body) =
                match read_json(req, CREATE_BODY_LIMIT, "a create's body").await {
                    Ok(read) => read,
                    Err(refused) => return refused,
                };
            let target = match body["source"]["sprite"].as_str() {
                Some(source) if !forwarded => {
                    let may_claim = crate::auth::admits(&state, &parts.headers);
                    sprite_target(&state, &cluster, source, forwarded, may_claim).await
                }
                _ => create_target(&cluster, cluster.leaving.load(Ordering::SeqCst)).await,
            };
            req = Request::from_parts(parts, Body::from(bytes));
            target
        }
    } else {
        match sprite_of(&req, &state) {
            None => Target::Here,
            Some((name, api)) => {
                // Only a caller the API would let in moves a sprite here.
                let may_claim = !api || crate::auth::admits(&state, req.headers());
                sprite_target(&state, &cluster, &name, forwarded, may_claim).await
            }
        }
    };
    go(&cluster, target, req, next).await
}

/// Serves `req` where `target` says.
async fn go(cluster: &Cluster, target: Target, req: Request, next: Next) -> Response<Body> {
    match target {
        Target::Here => next.run(req).await,
        Target::Unavailable(why) => forward::unavailable(why),
        Target::There { host, advertise } => {
            match forward::to(&advertise, &cluster.lease.host_id, req).await {
                Ok(res) => res,
                Err(why) => {
                    cluster.forget_host(&host);
                    forward::unavailable(format!(
                        "the host holding this sprite ({host} at {advertise}) cannot be reached: {why}; try again"
                    ))
                }
            }
        }
    }
}

/// Reads a request's body whole (at most `limit` bytes; more is refused
/// with 413, `what` naming it) to route by what it says: its head, the
/// bytes (to send on) and their JSON (null when not JSON).
async fn read_json(
    req: Request,
    limit: usize,
    what: &str,
) -> Result<
    (
        axum::http::request::Parts,
        axum::body::Bytes,
        serde_json::Value,
    ),
    Response<Body>,
> {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        crate::error::ApiError::PayloadTooLarge(format!("{what} is at most {limit} bytes: {e}"))
            .into_response()
    })?;
    let json = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok((parts, bytes, json))
}

/// Largest create body looked into (the API takes 1 MiB of JSON).
const CREATE_BODY_LIMIT: usize = 1 << 20;

/// Largest MCP message looked into (a tool call's arguments carry file
/// contents); a larger one is refused.
const MCP_BODY_LIMIT: usize = 32 << 20;

/// An MCP message names its sprite in its tool call's arguments (`sprite`;
/// `name` for a create): read, then routed as the matching API call is.
async fn route_mcp(
    state: AppState,
    cluster: Arc<Cluster>,
    req: Request,
    next: Next,
    forwarded: bool,
) -> Response<Body> {
    let (parts, bytes, call) = match read_json(req, MCP_BODY_LIMIT, "an MCP message").await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let tool = match call["method"].as_str() {
        Some("tools/call") => call["params"]["name"].as_str(),
        _ => None,
    };
    if matches!(tool, Some("create_sprite" | "destroy_sprite")) {
        // Who holds a name may change: looked up afresh.
        cluster.remote().clear();
    }
    let target = match (tool, call["params"]["arguments"]["sprite"].as_str()) {
        (None, _) => Target::Here,
        (Some("create_sprite"), _) if forwarded && !cluster.leaving.load(Ordering::SeqCst) => {
            Target::Here
        }
        (Some("create_sprite"), _) => {
            create_target(&cluster, cluster.leaving.load(Ordering::SeqCst)).await
        }
        (Some(_), Some(name)) => {
            let may_claim = crate::auth::admits(&state, &parts.headers);
            sprite_target(&state, &cluster, name, forwarded, may_claim).await
        }
        (Some(_), None) => Target::Here,
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    go(&cluster, target, req, next).await
}

/// Where a create goes; `leaving`: never here (a draining host).
async fn create_target(cluster: &Cluster, leaving: bool) -> Target {
    match cluster.place(leaving).await {
        Ok(Some(h)) if h.id == cluster.lease.host_id => Target::Here,
        Ok(Some(h)) => Target::There {
            host: h.id,
            advertise: h.advertise,
        },
        Ok(None) if leaving => Target::Unavailable(
            "this host is draining and no other host has room for a new sprite; try again".into(),
        ),
        // No host has room: this one answers (its own limits say why).
        Ok(None) => Target::Here,
        Err(e) => Target::Unavailable(format!("the hosts cannot be looked up: {e}")),
    }
}

async fn sprite_target(
    state: &AppState,
    cluster: &Cluster,
    name: &str,
    forwarded: bool,
    may_claim: bool,
) -> Target {
    if !forwarded {
        if let Some((host, advertise)) = cluster.remote_holder(name) {
            return Target::There { host, advertise };
        }
    }
    let db = cluster.db.clone();
    let n = name.to_string();
    let found = match tokio::task::spawn_blocking(move || db.holder_of(&n)).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return Target::Unavailable(format!("the database: {e}")),
        Err(e) => return Target::Unavailable(e.to_string()),
    };
    let Some((id, holder)) = found else {
        // No such sprite: answered here (404).
        return Target::Here;
    };
    match holder {
        Holder::Me => {
            cluster.settled(&id).await;
            Target::Here
        }
        Holder::Other { .. } if forwarded => Target::Unavailable(format!(
            "sprite {name} moved to another host while this request was forwarded; try again"
        )),
        Holder::Other { host_id, advertise } => {
            cluster.remember_remote(name, &host_id, &advertise);
            Target::There {
                host: host_id,
                advertise,
            }
        }
        // Answered here (401) without moving it.
        Holder::Nobody if !may_claim => Target::Here,
        Holder::Nobody => {
            let leaving = cluster.leaving.load(Ordering::SeqCst);
            if leaving && forwarded {
                return Target::Unavailable(format!(
                    "this host is draining and takes no sprite; sprite {name} goes to another host: try again"
                ));
            }
            // Woken where there is room (here, unless another host has
            // more); a forwarded request was placed already.
            if !forwarded {
                match cluster.place(false).await {
                    Ok(Some(h)) if h.id == cluster.lease.host_id => {}
                    Ok(Some(h)) => {
                        return Target::There {
                            host: h.id,
                            advertise: h.advertise,
                        }
                    }
                    Ok(None) if leaving => {
                        return Target::Unavailable(format!(
                            "this host is draining and no other host can take sprite {name} now; try again"
                        ))
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Target::Unavailable(format!("the hosts cannot be looked up: {e}"))
                    }
                }
            }
            match cluster.claim(&state.manager, &id).await {
                Ok(Claimed::Mine { .. }) => Target::Here,
                Ok(Claimed::HeldBy { .. }) if forwarded => Target::Unavailable(format!(
                    "sprite {name} was taken by another host meanwhile; try again"
                )),
                Ok(Claimed::HeldBy { host_id, advertise }) => Target::There {
                    host: host_id,
                    advertise,
                },
                Err(e) => Target::Unavailable(format!(
                    "sprite {name} cannot be brought to this host: {e}"
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, sprites: i64, running: i64, free_mb: i64) -> LiveHost {
        LiveHost {
            id: id.into(),
            advertise: format!("http://{id}"),
            sprites,
            load: Load {
                running,
                max_running: 0,
                free_mb,
                cordoned: false,
            },
        }
    }

    #[test]
    fn a_create_goes_to_the_host_with_the_most_room() {
        let pick = |hosts: Vec<LiveHost>, me: &str, exclude: bool| {
            choose(hosts, me, exclude).map(|h| h.id)
        };
        // Fewest sprites held first.
        let hosts = vec![
            host("a", 3, 1, 9000),
            host("b", 1, 1, 1000),
            host("c", 2, 0, 9000),
        ];
        assert_eq!(pick(hosts.clone(), "a", false).as_deref(), Some("b"));
        // Even: fewest running, then most memory, then this host.
        let even = vec![
            host("a", 1, 1, 2000),
            host("b", 1, 0, 1000),
            host("c", 1, 0, 3000),
        ];
        assert_eq!(pick(even, "a", false).as_deref(), Some("c"));
        let tie = vec![host("a", 0, 0, 1000), host("b", 0, 0, 1000)];
        assert_eq!(pick(tie.clone(), "b", false).as_deref(), Some("b"));
        assert_eq!(pick(tie, "b", true).as_deref(), Some("a"));
        // Full, cordoned and short of memory take none.
        let mut full = host("b", 0, 4, 9000);
        full.load.max_running = 4;
        let mut cordoned = host("c", 0, 0, 9000);
        cordoned.load.cordoned = true;
        let short = host("d", 0, 0, MIN_FREE_MB - 1);
        let busy = host("a", 9, 3, 9000);
        assert_eq!(
            pick(vec![busy.clone(), full, cordoned, short], "x", false).as_deref(),
            Some("a")
        );
        assert_eq!(pick(vec![busy], "a", true), None);
    }

    #[test]
    fn a_host_id_is_kept_across_starts() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("host.id");
        let a = host_id(None, &file).expect("made");
        assert_eq!(host_id(None, &file).expect("again"), a);
        assert_eq!(host_id(Some("h1"), &file).expect("given"), "h1");
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    }
}
