//! What the daemon keeps in memory about one sprite: one lifecycle lock,
//! one state behind one mutex, one activity counter, and its volume as the
//! cold tier sees it. The DB holds what must outlive the daemon; this holds
//! what a running daemon needs without a round trip to it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sprites_api::sprite::Status;

use super::cold::ColdVolume;
use super::replicate::Replication;
use super::tasks::Task;

pub(crate) struct SpriteSlot {
    /// Start, stop, destroy, checkpoint, restore, pause and eviction of
    /// this sprite take it: they never interleave, while different sprites
    /// proceed in parallel. Reads never wait on it.
    pub(super) lifecycle: tokio::sync::Mutex<()>,
    state: Mutex<SpriteState>,
    /// Requests and connections in flight that keep the sprite awake (see
    /// [`Activity`]). An atomic apart from `state`: the idle tracker and a
    /// request meet through it and the status in Dekker's order.
    active: AtomicUsize,
    /// Activities ended so far: a refill of the start pool waits for the
    /// first one of a sandbox just taken (see `pool::Taken`).
    ended: AtomicU64,
    /// Serialises mounting and unmounting the checkpoint views, which run
    /// beside the lifecycle (never on a request's path).
    pub(super) views: Arc<Mutex<()>>,
    /// Its volume as the cold tier sees it (evicted, filling).
    pub(super) cold: ColdVolume,
    /// Its continuous replication (see [`super::replicate`]).
    replication: Mutex<Replication>,
    /// Counts what may have changed its services: every service operation
    /// and every start (a restore brings other definitions). What is
    /// learnt from the services (a URL's port) is kept only as long as
    /// this stands still.
    services_generation: AtomicU64,
}

/// What changes as the sprite lives, read and written under one lock
/// (never held across an await).
pub(crate) struct SpriteState {
    pub status: Status,
    /// Its sandbox is being stopped (a stop, a restore, a destroy): what
    /// comes in waits for the lifecycle lock instead of using it.
    pub halting: bool,
    /// Why the last start failed (status `error`).
    pub error: Option<String>,
    /// When the sprite was paused (warm).
    pub warm_since: Option<Instant>,
    /// A start of it holds a place under `--max-running` (see
    /// [`super::limits::Admission`]), counted as awake until the start ends.
    pub admitted: bool,
    /// When the last activity started or ended.
    pub last_activity: Instant,
    /// When activity was last written to the DB.
    pub persisted: Option<Instant>,
    /// Tasks that keep it awake: name → expiry.
    pub tasks: BTreeMap<String, Task>,
    /// While the sprite runs, its API socket is served until this is
    /// dropped (see [`super::SpriteSocket`]).
    pub socket: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SpriteSlot {
    pub(super) fn new() -> SpriteSlot {
        SpriteSlot {
            lifecycle: tokio::sync::Mutex::new(()),
            state: Mutex::new(SpriteState {
                status: Status::Cold,
                halting: false,
                error: None,
                warm_since: None,
                admitted: false,
                last_activity: Instant::now(),
                persisted: None,
                tasks: BTreeMap::new(),
                socket: None,
            }),
            active: AtomicUsize::new(0),
            ended: AtomicU64::new(0),
            views: Arc::new(Mutex::new(())),
            cold: ColdVolume::default(),
            replication: Mutex::new(Replication::default()),
            services_generation: AtomicU64::new(0),
        }
    }

    pub(super) fn services_generation(&self) -> u64 {
        self.services_generation.load(Ordering::SeqCst)
    }

    pub(super) fn services_changed(&self) {
        self.services_generation.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn replication(&self) -> MutexGuard<'_, Replication> {
        self.replication.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn state(&self) -> MutexGuard<'_, SpriteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn status(&self) -> Status {
        self.state().status
    }

    /// The status as clients are told it: a `warm` whose pause has not
    /// happened yet (the idle tracker's tentative mark, set before it
    /// freezes: see `idle::pause_idle`) is still `running`. Told `warm`
    /// then, a client could find the sprite running after a daemon crash
    /// cut the pause short.
    pub(super) fn shown_status(&self) -> Status {
        let s = self.state();
        match s.status {
            Status::Warm if s.warm_since.is_none() => Status::Running,
            other => other,
        }
    }

    /// Running, and not being stopped: a request may go straight to it.
    pub(super) fn usable(&self) -> bool {
        let s = self.state();
        s.status == Status::Running && !s.halting
    }

    /// Activities in flight.
    pub(super) fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Activities ended so far.
    pub(super) fn ended(&self) -> u64 {
        self.ended.load(Ordering::SeqCst)
    }
}

/// Something in flight that keeps a sprite awake (an exec, a session, an
/// in-sprite API call, a proxied connection). Counted from before the
/// sprite is woken until it is dropped.
pub struct Activity {
    slot: Arc<SpriteSlot>,
}

impl Activity {
    /// Counted before the caller reads the status (Dekker's order with the
    /// idle tracker, which writes `warm` before it reads the count).
    pub(super) fn begin(slot: Arc<SpriteSlot>) -> Activity {
        slot.active.fetch_add(1, Ordering::SeqCst);
        slot.state().last_activity = Instant::now();
        Activity { slot }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.slot.state().last_activity = Instant::now();
        self.slot.active.fetch_sub(1, Ordering::SeqCst);
        self.slot.ended.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_in_flight_is_shown_as_running() {
        let slot = SpriteSlot::new();
        slot.state().status = Status::Running;
        assert_eq!(slot.shown_status(), Status::Running);
        // The idle tracker's mark, before it freezes.
        slot.state().status = Status::Warm;
        assert_eq!(slot.status(), Status::Warm);
        assert_eq!(slot.shown_status(), Status::Running);
        // Paused.
        slot.state().warm_since = Some(Instant::now());
        assert_eq!(slot.shown_status(), Status::Warm);
        slot.state().status = Status::Cold;
        assert_eq!(slot.shown_status(), Status::Cold);
    }
}
