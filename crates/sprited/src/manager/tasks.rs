//! Tasks: named leases that keep a sprite awake until they expire (at most
//! 1 h) or are deleted. Kept in memory for the idle tracker and in the DB so
//! they outlive a daemon restart.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sprites_api::task::Task as TaskJson;

use super::slot::SpriteSlot;
use super::Manager;
use crate::db::SpriteRecord;
use crate::error::Error;
use crate::time::{now_rfc3339, rfc3339};

#[derive(Debug, Clone)]
pub struct Task {
    started_at: String,
    expires: SystemTime,
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn json(name: &str, t: &Task) -> TaskJson {
    TaskJson {
        name: name.to_string(),
        started_at: t.started_at.clone(),
        expires_at: rfc3339(t.expires),
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    sprites_api::service::validate_name(name)
        .map_err(|e| Error::Invalid(e.replace("service", "task")))
}

impl Manager {
    /// Whether an unexpired task holds the sprite awake (expired ones go).
    pub(super) fn has_tasks(&self, slot: &SpriteSlot) -> bool {
        let now = SystemTime::now();
        let mut state = slot.state();
        let tasks = &mut state.tasks;
        tasks.retain(|_, t| t.expires > now);
        !tasks.is_empty()
    }

    /// Start-up: tasks from the DB (unexpired ones).
    pub(super) fn load_tasks(&self, rec: &SpriteRecord) -> Result<(), Error> {
        let now = unix_ms(SystemTime::now());
        let slot = self.slot(&rec.id);
        let mut state = slot.state();
        let tasks = &mut state.tasks;
        for t in self.db.tasks(&rec.id)? {
            if t.expires_unix_ms > now {
                let expires = UNIX_EPOCH + Duration::from_millis(t.expires_unix_ms as u64);
                tasks.insert(
                    t.name,
                    Task {
                        started_at: t.started_at,
                        expires,
                    },
                );
            }
        }
        Ok(())
    }

    pub fn list_tasks(&self, rec: &SpriteRecord) -> Vec<TaskJson> {
        let slot = self.slot(&rec.id);
        self.has_tasks(&slot);
        let state = slot.state();
        let tasks = &state.tasks;
        tasks.iter().map(|(n, t)| json(n, t)).collect()
    }

    /// A new task; 409 if one of that name is still running.
    pub fn create_task(
        &self,
        rec: &SpriteRecord,
        name: &str,
        expire: Duration,
    ) -> Result<TaskJson, Error> {
        check_name(name)?;
        let slot = self.slot(&rec.id);
        self.has_tasks(&slot);
        if slot.state().tasks.contains_key(name) {
            return Err(Error::Conflict(format!("a task named {name} exists")));
        }
        self.save_task(rec, &slot, name, now_rfc3339(), expire)
    }

    /// Extends (or shortens) a running task; 404 if there is none.
    pub fn update_task(
        &self,
        rec: &SpriteRecord,
        name: &str,
        expire: Duration,
    ) -> Result<TaskJson, Error> {
        let slot = self.slot(&rec.id);
        self.has_tasks(&slot);
        let started = slot
            .state()
            .tasks
            .get(name)
            .map(|t| t.started_at.clone())
            .ok_or_else(|| Error::NotFound(format!("no task named {name}")))?;
        self.save_task(rec, &slot, name, started, expire)
    }

    pub fn delete_task(&self, rec: &SpriteRecord, name: &str) -> Result<(), Error> {
        let slot = self.slot(&rec.id);
        self.has_tasks(&slot);
        if slot.state().tasks.remove(name).is_none() {
            return Err(Error::NotFound(format!("no task named {name}")));
        }
        self.db.delete_task(&rec.id, name)?;
        Ok(())
    }

    fn save_task(
        &self,
        rec: &SpriteRecord,
        slot: &SpriteSlot,
        name: &str,
        started_at: String,
        expire: Duration,
    ) -> Result<TaskJson, Error> {
        let task = Task {
            started_at,
            expires: SystemTime::now() + expire,
        };
        self.db
            .put_task(&rec.id, name, &task.started_at, unix_ms(task.expires))?;
        slot.state().last_activity = std::time::Instant::now();
        let out = json(name, &task);
        slot.state().tasks.insert(name.to_string(), task);
        Ok(out)
    }
}
