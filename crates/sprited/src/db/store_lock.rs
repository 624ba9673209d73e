//! One garbage collection of the object store at a time across the hosts
//! of a shared database, and never while any host uploads.
//!
//! An upload names chunks in a manifest it writes last; a chunk already in
//! the store is not sent again, only named. A collection deletes every
//! chunk no manifest names. Run side by side, a collection could delete a
//! chunk an upload has just found in the store (or remembers having sent)
//! and is about to name. So on PostgreSQL every upload holds an advisory
//! lock shared, and a collection holds it exclusive; both only ever *try*
//! it (the host's one connection never blocks on it), an upload again and
//! again until no collection runs, a collection once (if any host uploads,
//! it skips this round). Each collection also counts itself in `store_gc`:
//! a host that finds the count moved since its last upload forgets which
//! chunks it knew to be in the store. The locks are the session's: if the
//! connection is lost during an upload, so is the lock, and the upload
//! fails rather than name chunks a collection may have deleted
//! ([`Db::store_unshare`] says so).
//!
//! On SQLite (one host) the store's own in-process lock is enough: these
//! take nothing.

use super::{Backend, Db, DbError};

/// The advisory lock (a constant of sprited's own).
const PG_STORE_LOCK: i64 = 0x7370_7269_7465_6404;

/// An upload's or a collection's hold on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHold {
    /// The connection it was taken on (0: SQLite, nothing taken).
    session: u64,
    /// Collections so far, as of taking it.
    pub generation: i64,
}

impl Db {
    fn store_try(&self, exclusive: bool) -> Result<Option<StoreHold>, DbError> {
        if !matches!(self.backend, Backend::Postgres(_)) {
            return Ok(Some(StoreHold {
                session: 0,
                generation: 0,
            }));
        }
        self.pg_session(|client, _, session| {
            let take = match exclusive {
                true => "SELECT pg_try_advisory_lock($1)",
                false => "SELECT pg_try_advisory_lock_shared($1)",
            };
            let got: bool = client.query_one(take, &[&PG_STORE_LOCK])?.get(0);
            if !got {
                return Ok(None);
            }
            let counted = match exclusive {
                true => client.query_one(
                    "UPDATE store_gc SET generation = generation + 1 RETURNING generation",
                    &[],
                ),
                false => client.query_one("SELECT generation FROM store_gc", &[]),
            };
            match counted {
                Ok(row) => Ok(Some(StoreHold {
                    session,
                    generation: row.get(0),
                })),
                Err(e) => {
                    let give = match exclusive {
                        true => "SELECT pg_advisory_unlock($1)",
                        false => "SELECT pg_advisory_unlock_shared($1)",
                    };
                    let _ = client.query_one(give, &[&PG_STORE_LOCK]);
                    Err(e.into())
                }
            }
        })
    }

    fn store_give(&self, hold: &StoreHold, exclusive: bool) -> Result<bool, DbError> {
        if hold.session == 0 {
            return Ok(true);
        }
        self.pg_session(|client, _, session| {
            if session != hold.session {
                // The connection it was taken on is gone, and the lock
                // with it.
                return Ok(false);
            }
            let give = match exclusive {
                true => "SELECT pg_advisory_unlock($1)",
                false => "SELECT pg_advisory_unlock_shared($1)",
            };
            Ok(client.query_one(give, &[&PG_STORE_LOCK])?.get::<_, bool>(0))
        })
    }

    /// An upload's hold: `None` while a collection runs (try again).
    pub fn store_share(&self) -> Result<Option<StoreHold>, DbError> {
        self.store_try(false)
    }

    /// Ends an upload's hold; false when it was lost before (the
    /// connection went): the upload must not be relied on.
    pub fn store_unshare(&self, hold: &StoreHold) -> Result<bool, DbError> {
        self.store_give(hold, false)
    }

    /// A collection's hold: `None` while any host uploads or collects.
    pub fn store_collect(&self) -> Result<Option<StoreHold>, DbError> {
        self.store_try(true)
    }

    /// Ends a collection's hold.
    pub fn store_collected(&self, hold: &StoreHold) -> Result<bool, DbError> {
        self.store_give(hold, true)
    }
}

#[cfg(test)]
mod tests {
    use crate::db::testing::each_engine_twice;

    #[test]
    fn a_collection_waits_for_uploads_on_every_host_and_they_for_it() {
        each_engine_twice(|fresh| {
            let (a, b) = fresh();
            let pg = a.engine() == crate::db::Engine::Postgres;
            let up = a.store_share().expect("share").expect("no collection runs");
            let up2 = a.store_share().expect("share").expect("shared twice");
            if pg {
                // b cannot collect while a uploads (twice over).
                assert_eq!(b.store_collect().expect("collect"), None);
                assert!(a.store_unshare(&up).expect("unshare"));
                assert_eq!(b.store_collect().expect("collect"), None);
            } else {
                assert!(a.store_unshare(&up).expect("unshare"));
            }
            assert!(a.store_unshare(&up2).expect("unshare"));
            let gc = b.store_collect().expect("collect").expect("nobody uploads");
            if pg {
                assert_eq!(gc.generation, 1);
                // Nobody uploads or collects while it collects.
                assert_eq!(a.store_share().expect("share"), None);
                assert_eq!(a.store_collect().expect("collect"), None);
            }
            assert!(b.store_collected(&gc).expect("done"));
            let up = a.store_share().expect("share").expect("collected");
            assert_eq!(up.generation, if pg { 1 } else { 0 });
            assert!(a.store_unshare(&up).expect("unshare"));
        });
    }
}
