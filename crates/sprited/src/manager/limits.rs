//! Limits from the config: how many sprites may exist, how many may run
//! (or be warm) at once, how many may be created per minute. Each is
//! refused with the Sprites error codes and the rate-limit fields.

use std::time::{Duration, Instant};

use sprites_api::error::{
    CHECKPOINT_LIMIT_EXCEEDED, CONCURRENT_SPRITE_LIMIT_EXCEEDED, SPRITE_CREATION_RATE_LIMITED,
    SPRITE_LIMIT_EXCEEDED,
};
use sprites_api::sprite::Status;

use super::slot::SpriteSlot;
use super::{lock, Manager};
use crate::db::SpriteRecord;
use crate::error::{Error, Limit};

const RATE_WINDOW: Duration = Duration::from_secs(60);
/// What a caller refused for lack of room is told to wait: sprites go warm
/// and cold on their own, freeing room.
const CAPACITY_RETRY: Duration = Duration::from_secs(10);

impl Manager {
    /// Whether a checkpoint of `rec` may be made now: under the count cap,
    /// with room on the disk under the pool.
    pub fn checkpoint_admissible(&self, rec: &SpriteRecord) -> Result<(), Error> {
        self.admit_checkpoint(rec)?;
        self.store
            .ensure_room(sprite_store::CHECKPOINT_RESERVE_BYTES)
            .map_err(Error::store("checkpoint refused"))
    }

    /// The number of checkpoints a sprite keeps is bounded, and so is the
    /// space it holds with them (each holds on to the blocks its sprite has
    /// rewritten since): its volume's size and `--checkpoint-space` percent
    /// more, blocks they share counted once.
    pub(super) fn admit_checkpoint(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let max = self.cfg.max_checkpoints;
        let count = self.db.checkpoints(&rec.id)?.len() as u64;
        if max > 0 && count >= max {
            return Err(Error::limited(Limit {
                code: CHECKPOINT_LIMIT_EXCEEDED,
                message: format!(
                    "sprite {} has {count} checkpoints and this server allows {max}; delete some first",
                    rec.name
                ),
                limit: max,
                window_seconds: None,
                retry_after_seconds: None,
                current_count: count,
            }));
        }
        let pct = self.cfg.checkpoint_space_pct;
        if pct > 0 {
            let quota = (rec.limits.storage_gb << 30).saturating_mul(100 + pct) / 100;
            let reached = self
                .store
                .footprint_reaching(&rec.id, quota)
                .map_err(Error::store("measuring the sprite's space"))?;
            if let Some(held) = reached {
                return Err(Error::OverQuota(format!(
                    "sprite {} holds {:.2} GiB with its checkpoints and may hold {:.2} GiB \
                     ({} GiB of volume and {pct}% more for checkpoints); delete checkpoints first",
                    rec.name,
                    held as f64 / (1u64 << 30) as f64,
                    quota as f64 / (1u64 << 30) as f64,
                    rec.limits.storage_gb,
                )));
            }
        }
        Ok(())
    }

    /// The create rate and the number of sprites; counts this create.
    pub(super) fn admit_create(&self) -> Result<(), Error> {
        let max = self.cfg.max_sprites;
        if max > 0 {
            let count = self.db.all()?.len() as u64;
            if count >= max {
                return Err(Error::limited(Limit {
                    code: SPRITE_LIMIT_EXCEEDED,
                    message: format!(
                        "this server allows {max} sprites and has {count}; destroy one first"
                    ),
                    limit: max,
                    window_seconds: None,
                    retry_after_seconds: None,
                    current_count: count,
                }));
            }
        }
        let rate = self.cfg.create_rate_per_minute;
        if rate == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut recent = lock(&self.recent_creates);
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
        {
            recent.pop_front();
        }
        let count = recent.len() as u64;
        if count >= rate {
            let oldest = recent.front().copied().unwrap_or(now);
            let wait = RATE_WINDOW.saturating_sub(now.duration_since(oldest));
            let retry = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(Error::limited(Limit {
                code: SPRITE_CREATION_RATE_LIMITED,
                message: format!(
                    "at most {rate} sprites may be created per minute; retry in {retry} s"
                ),
                limit: rate,
                window_seconds: Some(RATE_WINDOW.as_secs()),
                retry_after_seconds: Some(retry.max(1)),
                current_count: count,
            }));
        }
        recent.push_back(now);
        Ok(())
    }

    /// Whether one more sprite may start: a place under `--max-running`
    /// for sprite `id`, held by what is returned until the start it admits
    /// has ended (the sprite then counts as running, or not at all). Starts
    /// so admitted are made side by side; only the check and the taking of
    /// the place are one at a time.
    pub(super) fn admit_start(&self, id: &str) -> Result<Option<Admission>, Error> {
        let max = self.cfg.max_running;
        if max == 0 {
            return Ok(None);
        }
        let _one_at_a_time = lock(&self.admission);
        let awake = self.held_count();
        if awake < max {
            let slot = self.slot(id);
            slot.state().admitted = true;
            return Ok(Some(Admission { slot }));
        }
        Err(Error::limited(Limit {
            code: CONCURRENT_SPRITE_LIMIT_EXCEEDED,
            message: format!(
                "{awake} sprites are running, warm or starting, the most this server runs at once; \
                 the sprite stays cold until one goes idle"
            ),
            limit: max,
            window_seconds: None,
            retry_after_seconds: Some(CAPACITY_RETRY.as_secs()),
            current_count: awake,
        }))
    }

    /// Sprites holding memory or a place to: running, warm, or starting.
    fn held_count(&self) -> u64 {
        lock(&self.slots)
            .values()
            .filter(|l| {
                let s = l.state();
                s.admitted || matches!(s.status, Status::Running | Status::Warm)
            })
            .count() as u64
    }
}

/// A start's place under `--max-running` ([`Manager::admit_start`]), given
/// back when dropped: by then the sprite runs (and counts as such) or its
/// start failed.
pub(crate) struct Admission {
    slot: std::sync::Arc<SpriteSlot>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.slot.state().admitted = false;
    }
}
