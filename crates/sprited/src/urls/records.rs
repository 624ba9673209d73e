//! Sprite records by name as the URL router last read them: every URL
//! request needs its sprite's, and reading it from SQLite (a statement, a
//! read transaction and its file locks) was the largest cost of a proxied
//! request after the network itself. An entry is used only while nothing
//! has been written to the database since it was read, so an auth change,
//! a destroy or a new sprite of the same name is seen by the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::db::SpriteRecord;
use crate::error::Error;
use crate::manager::Manager;

/// Most names kept (all are dropped at the next write anyway).
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub struct Records {
    /// The database generation the entries were read at, and the entries.
    cache: Mutex<(u64, HashMap<String, Arc<SpriteRecord>>)>,
}

impl Records {
    pub fn get(&self, m: &Manager, name: &str) -> Result<Arc<SpriteRecord>, Error> {
        // Read before the row: a write in between makes the entry stale at
        // once, never current with an old row.
        let generation = m.db.generation()?;
        {
            let cache = self.lock();
            if cache.0 == generation {
                if let Some(r) = cache.1.get(name) {
                    return Ok(r.clone());
                }
            }
        }
        let rec = Arc::new(m.get(name)?);
        let mut cache = self.lock();
        if cache.0 != generation || cache.1.len() >= MAX_ENTRIES {
            cache.1.clear();
            cache.0 = generation;
        }
        cache.1.insert(name.to_string(), rec.clone());
        Ok(rec)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<String, Arc<SpriteRecord>>)> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
