//! Sandboxes started ahead (`--start-pool N`): for the create that asks
//! for nothing but the defaults (no fork, the default image, size and
//! limits), the whole start is done before anyone asks. Each is a volume
//! cloned from the template, its root mounted, its sandbox started
//! (namespaces, cgroups with the default limits, network attached, the
//! agent booted and listening) under an id chosen ahead and a placeholder
//! host name. A create that matches takes one: its record gets that id,
//! the sandbox its host name ([`Driver::set_hostname`], then the agent's
//! `/etc/hosts`) and guide, and it is the sprite's from then on; the pool
//! starts another in the background, once the sprite that took one has
//! answered its first request (or [`FIRST_REQUEST_WAIT`] has passed): on
//! two cores, a refill beside a new sprite's first exec (a veth pair, its
//! rules, a container created) made that exec wait for the CPU.
//!
//! A pooled sandbox is nobody's sprite: no record names it, nothing runs in
//! it but the agent (no command, no service: the daemon sends it none), it
//! is neither metered nor counted against `--max-running`. What start-up
//! finds of one (a daemon killed with some made) is a volume without a
//! record, removed as an unfinished destroy is; a daemon that stops removes
//! its own.
//!
//! [`Driver::set_hostname`]: sprite_runtime::Driver::set_hostname

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::slot::SpriteSlot;
use super::{blocking, lock, Manager};
use crate::agent_conn;
use crate::db::SpriteRecord;
use crate::error::Error;

/// The hostname of a sandbox until it is taken.
const UNNAMED: &str = "sprite";

/// How long the pool waits after failing to make one before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Longest a refill waits for the first request to a sandbox just taken.
const FIRST_REQUEST_WAIT: Duration = Duration::from_millis(100);

/// A sandbox started ahead.
pub(super) struct Pooled {
    pub(super) id: String,
    /// The in-sprite API socket, bound (served once the sandbox is taken).
    inside: std::os::unix::net::UnixListener,
}

/// A sandbox taken from the pool, until its first request has ended.
struct Taken {
    slot: Arc<SpriteSlot>,
    /// The slot's ended activities when it was taken.
    ended: u64,
    at: Instant,
}

impl Taken {
    fn new(slot: Arc<SpriteSlot>, at: Instant) -> Taken {
        let ended = slot.ended();
        Taken { slot, ended, at }
    }

    /// No request to it has ended yet, and it was taken less than
    /// [`FIRST_REQUEST_WAIT`] before `now`.
    fn pending(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < FIRST_REQUEST_WAIT
            && self.slot.ended() == self.ended
    }
}

#[derive(Default)]
pub(super) struct StartPool {
    ready: std::sync::Mutex<Vec<Pooled>>,
    /// A filler runs.
    filling: AtomicBool,
    /// No more are made (the host stops, or lost its database lease).
    closed: AtomicBool,
    /// When making one last failed.
    failed: std::sync::Mutex<Option<Instant>>,
    /// Taken and not yet past their first request: the next is made after.
    taken: std::sync::Mutex<Vec<Taken>>,
}

impl Manager {
    fn pool_size(&self) -> usize {
        // For the default create: of the default isolation, which must be
        // one whose sandboxes the driver renames (gVisor's it does not).
        if self.cfg.isolation == sprite_runtime::Isolation::Container && self.driver.renames() {
            self.cfg.start_pool
        } else {
            0
        }
    }

    /// What a default create's record holds, under a chosen id.
    fn pool_record(&self, id: String) -> Result<SpriteRecord, Error> {
        let limits = self.limits_for(&Default::default())?;
        let now = crate::time::now_rfc3339();
        Ok(SpriteRecord {
            id,
            name: UNNAMED.into(),
            image: self.cfg.default_image.clone(),
            url_auth: "sprite".into(),
            labels: Vec::new(),
            limits,
            environment: Default::default(),
            created_at: now.clone(),
            updated_at: now,
            last_running_at: None,
            last_active_at: None,
        })
    }

    /// A sandbox made ahead for a create of `image` with `limits`, if the
    /// pool has one that fits.
    pub(super) fn pool_take(&self, image: &str, limits: &crate::db::Limits) -> Option<Pooled> {
        if self.pool_size() == 0 || image != self.cfg.default_image {
            return None;
        }
        if self.limits_for(&Default::default()).ok().as_ref() != Some(limits) {
            return None;
        }
        let taken = lock(&self.pool.ready).pop();
        if let Some(p) = &taken {
            self.metrics.start_pool(lock(&self.pool.ready).len());
            let t = Taken::new(self.slot(&p.id), Instant::now());
            lock(&self.pool.taken).push(t);
        }
        taken
    }

    /// Gives back a sandbox taken for a create that did not happen.
    pub(super) fn pool_give_back(&self, p: Pooled) {
        let mut ready = lock(&self.pool.ready);
        ready.push(p);
        self.metrics.start_pool(ready.len());
    }

    /// Names sandbox `p` for sprite `rec` (its record holds `p`'s id) and
    /// serves it as the sprite; the caller holds the sprite's lifecycle
    /// lock and has admitted the start.
    pub(super) async fn start_pooled(&self, rec: &SpriteRecord, p: Pooled) -> Result<(), Error> {
        let t0 = Instant::now();
        self.name_pooled(rec).await?;
        let zero = Duration::ZERO;
        let named = t0.elapsed();
        self.started(rec, p.inside, t0, [zero, zero, zero, named])
            .await?;
        tracing::debug!(sprite = %rec.name, elapsed = ?t0.elapsed(), "started a sandbox made ahead");
        Ok(())
    }

    /// Gives a sandbox started ahead sprite `rec`'s name: its host name,
    /// then its `/etc/hosts` (by its agent), then its guide.
    pub(super) async fn name_pooled(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let (driver, store) = (self.driver.clone(), self.store.clone());
        let (id, name, url) = (rec.id.clone(), rec.name.clone(), self.url_of(&rec.name));
        blocking(move || {
            driver
                .set_hostname(&id, &name)
                .map_err(Error::runtime("naming the sandbox"))?;
            crate::llm::rewrite(&store.sprite_dir(&id), &name, &url)
                .map_err(Error::io("writing the sprite's llm.txt"))
        })
        .await?;
        agent_conn::named(&self.socket_path(&rec.id), &rec.name)
            .await
            .map_err(|e| Error::Internal(format!("naming the sandbox's /etc/hosts: {e}")))
    }

    /// Makes sandboxes ahead until the pool is full, in the background
    /// (one filler at a time).
    pub fn spawn_pool_fill(self: &Arc<Self>) {
        let size = self.pool_size();
        if size == 0 || self.pool.closed.load(Ordering::SeqCst) {
            return;
        }
        if self.pool.filling.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let failed = *lock(&me.pool.failed);
                if let Some(at) = failed {
                    while at.elapsed() < RETRY_AFTER && !me.pool.closed.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                if me.pool.closed.load(Ordering::SeqCst) || lock(&me.pool.ready).len() >= size {
                    break;
                }
                me.wait_for_first_requests().await;
                match me.make_pooled().await {
                    Ok(p) => {
                        *lock(&me.pool.failed) = None;
                        if me.pool.closed.load(Ordering::SeqCst) {
                            drop(p.inside);
                            me.discard_pooled(&p.id).await;
                            break;
                        }
                        tracing::debug!(id = %p.id, "a sandbox made ahead");
                        me.pool_give_back(p);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot make a sandbox ahead; creates start their own meanwhile");
                        *lock(&me.pool.failed) = Some(Instant::now());
                    }
                }
            }
            me.pool.filling.store(false, Ordering::SeqCst);
            // Taken from between the last look and now: fill again.
            if !me.pool.closed.load(Ordering::SeqCst) && lock(&me.pool.ready).len() < size {
                me.spawn_pool_fill();
            }
        });
    }

    /// Waits until every sandbox taken has answered its first request, or
    /// was taken [`FIRST_REQUEST_WAIT`] ago (or the pool closes).
    async fn wait_for_first_requests(&self) {
        loop {
            let now = Instant::now();
            let pending = {
                let mut taken = lock(&self.pool.taken);
                taken.retain(|t| t.pending(now));
                !taken.is_empty()
            };
            if !pending || self.pool.closed.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn make_pooled(&self) -> Result<Pooled, Error> {
        let t0 = Instant::now();
        let rec = self.pool_record(uuid::Uuid::new_v4().to_string())?;
        self.create_volume_for(&rec).await?;
        let made = match self.sandbox_inputs(&rec, self.store.volume_path(&rec.id)) {
            Ok(inputs) => blocking(move || inputs.make(t0)).await,
            Err(e) => Err(e),
        };
        match made {
            Ok((inside, _)) => Ok(Pooled { id: rec.id, inside }),
            Err(e) => {
                self.discard_pooled(&rec.id).await;
                Err(e)
            }
        }
    }

    /// Removes a pooled sandbox and its volume.
    async fn discard_pooled(&self, id: &str) {
        if let Err(e) = self.teardown(id).await {
            tracing::warn!(id, error = %e, "removing a sandbox made ahead; the next start removes it");
        }
        lock(&self.slots).remove(id);
    }

    /// No more sandboxes are made ahead, and those made are removed (the
    /// daemon stops, or another host serves its sprites now).
    pub async fn close_pool(&self) {
        self.pool.closed.store(true, Ordering::SeqCst);
        // One being made is removed by its filler, which then ends.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.pool.filling.load(Ordering::SeqCst) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let taken: Vec<Pooled> = std::mem::take(&mut *lock(&self.pool.ready));
        self.metrics.start_pool(0);
        for p in taken {
            drop(p.inside);
            self.discard_pooled(&p.id).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::Activity;

    #[test]
    fn a_taken_sandbox_is_pending_until_its_first_request_ends() {
        let slot = Arc::new(SpriteSlot::new());
        let at = Instant::now();
        let taken = Taken::new(slot.clone(), at);
        assert!(taken.pending(at));
        let first = Activity::begin(slot.clone());
        assert!(taken.pending(at), "a request in flight");
        let second = Activity::begin(slot.clone());
        drop(first);
        assert!(!taken.pending(at), "the first request ended");
        drop(second);
        assert!(!taken.pending(at));
    }

    #[test]
    fn a_taken_sandbox_is_waited_for_at_most_first_request_wait() {
        let slot = Arc::new(SpriteSlot::new());
        let at = Instant::now();
        let taken = Taken::new(slot.clone(), at);
        let _in_flight = Activity::begin(slot);
        assert!(taken.pending(at + FIRST_REQUEST_WAIT / 2));
        assert!(!taken.pending(at + FIRST_REQUEST_WAIT));
    }

    #[test]
    fn requests_ended_before_the_take_do_not_count() {
        let slot = Arc::new(SpriteSlot::new());
        drop(Activity::begin(slot.clone()));
        let at = Instant::now();
        let taken = Taken::new(slot, at);
        assert!(taken.pending(at));
    }
}
