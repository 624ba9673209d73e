//! `hosts` (every host that has served this database) and `serving_lease`
//! (which one serves it now, under which epoch).
//!
//! On PostgreSQL several hosts can open one database; one serves it at a
//! time. A host takes the lease when nobody holds it, when it held it
//! itself (a restart: a new epoch, so the old process's writes are
//! fenced), or when the holder let it run out (`expires_ms` past, by the
//! database server's clock: the hosts' clocks never compare). It renews
//! it every third of its time to live. Once a host holds epoch `e`, every
//! write it makes checks, in the write's own transaction, that the lease is
//! still `e` at this host (`SELECT ... FOR SHARE`): a host that lost the
//! lease (stopped past its time, cut off) writes nothing more, and a taker
//! waits for a write in flight to end before it takes the lease.

use super::sql::{params, Conn, Engine};
use super::{Db, DbError};

/// The lease a host holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub host_id: String,
    pub epoch: i64,
}

/// What taking the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// This host serves the database now.
    Yes(Lease),
    /// Another host does, for at least `expires_in_ms` more.
    HeldBy {
        host_id: String,
        advertise: String,
        expires_in_ms: i64,
    },
}

/// The database server's clock in unix ms (PostgreSQL), or this host's
/// (SQLite: there is only one).
fn now_ms(c: &dyn Conn) -> &'static str {
    match c.engine() {
        Engine::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Engine::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
    }
}

/// The advisory lock taking the lease holds (a constant of sprited's own).
const PG_LEASE_LOCK: i64 = 0x7370_7269_7465_6402;

impl Db {
    /// Takes the lease to serve this database for `ttl_ms`, if it is free
    /// (see the module's notes), and records this host as seen.
    pub fn take_serving(
        &self,
        host_id: &str,
        advertise: &str,
        ttl_ms: i64,
    ) -> Result<Taken, DbError> {
        self.unfenced_tx(|c| {
            if c.engine() == Engine::Postgres {
                c.query("SELECT 1 FROM pg_advisory_xact_lock(?1)", params![PG_LEASE_LOCK])?;
            }
            let now = now_ms(c);
            c.execute(
                &format!(
                    "INSERT INTO hosts (id, advertise, started_ms, seen_ms) VALUES (?1, ?2, {now}, {now})
                     ON CONFLICT (id) DO UPDATE SET advertise = excluded.advertise,
                       started_ms = excluded.started_ms, seen_ms = excluded.seen_ms"
                ),
                params![host_id, advertise],
            )?;
            let held = c.query_opt(
                &format!(
                    "SELECT l.host_id, l.epoch, l.expires_ms - {now}, COALESCE(h.advertise, '')
                     FROM serving_lease l LEFT JOIN hosts h ON h.id = l.host_id"
                ),
                &[],
                |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?, r.get::<String>(3)?)),
            )?;
            let epoch = match held {
                None => 1,
                Some((holder, epoch, left, _)) if holder == host_id || left < 0 => epoch + 1,
                Some((holder, _, left, advertise)) => {
                    return Ok(Taken::HeldBy {
                        host_id: holder,
                        advertise,
                        expires_in_ms: left,
                    })
                }
            };
            c.execute(
                &format!(
                    "INSERT INTO serving_lease (one, host_id, epoch, expires_ms) VALUES (1, ?1, ?2, {now} + ?3)
                     ON CONFLICT (one) DO UPDATE SET host_id = excluded.host_id,
                       epoch = excluded.epoch, expires_ms = excluded.expires_ms"
                ),
                params![host_id, epoch, ttl_ms],
            )?;
            Ok(Taken::Yes(Lease {
                host_id: host_id.to_string(),
                epoch,
            }))
        })
    }

    /// Extends the lease by `ttl_ms` from now; false when this host no
    /// longer holds it (another took it).
    pub fn renew_serving(&self, lease: &Lease, ttl_ms: i64) -> Result<bool, DbError> {
        self.unfenced_tx(|c| {
            let now = now_ms(c);
            let n = c.execute(
                &format!(
                    "UPDATE serving_lease SET expires_ms = {now} + ?3 WHERE host_id = ?1 AND epoch = ?2"
                ),
                params![lease.host_id, lease.epoch, ttl_ms],
            )?;
            if n > 0 {
                c.execute(
                    &format!("UPDATE hosts SET seen_ms = {now} WHERE id = ?1"),
                    params![lease.host_id],
                )?;
            }
            Ok(n > 0)
        })
    }

    /// Gives the lease up (a clean stop): another host may take it at once.
    pub fn release_serving(&self, lease: &Lease) -> Result<(), DbError> {
        self.unfenced_tx(|c| {
            let now = now_ms(c);
            c.execute(
                &format!(
                    "UPDATE serving_lease SET expires_ms = {now} - 1 WHERE host_id = ?1 AND epoch = ?2"
                ),
                params![lease.host_id, lease.epoch],
            )?;
            Ok(())
        })
    }

    /// The host that holds the lease now, and where it is reached.
    pub fn serving_host(&self) -> Result<Option<(String, String)>, DbError> {
        self.run(|c| {
            c.query_opt(
                "SELECT l.host_id, h.advertise FROM serving_lease l JOIN hosts h ON h.id = l.host_id",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    /// Who holds the lease now, and its epoch (what the tests look at).
    #[cfg(test)]
    pub fn serving(&self) -> Result<Option<Lease>, DbError> {
        self.run(|c| {
            c.query_opt("SELECT host_id, epoch FROM serving_lease", &[], |r| {
                Ok(Lease {
                    host_id: r.get(0)?,
                    epoch: r.get(1)?,
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sprites::tests::rec;
    use crate::db::testing::each_engine;

    #[test]
    fn one_host_serves_and_a_taker_fences_the_last() {
        each_engine(|fresh| {
            let a = fresh();
            // Taken when free; renewed; held against another host.
            let Taken::Yes(la) = a.take_serving("a", "http://a", 60_000).expect("take") else {
                panic!("a free lease was not taken")
            };
            assert_eq!(la.epoch, 1);
            a.fence(&la);
            a.insert(&rec("one")).expect("a writes under its lease");
            assert!(a.renew_serving(&la, 60_000).expect("renew"));
            match a.take_serving("b", "http://b", 60_000).expect("take") {
                Taken::HeldBy {
                    host_id,
                    advertise,
                    expires_in_ms,
                } => {
                    assert_eq!((host_id.as_str(), advertise.as_str()), ("a", "http://a"));
                    assert!(expires_in_ms > 50_000, "{expires_in_ms}");
                }
                other => panic!("b took a held lease: {other:?}"),
            }

            // Run out (a ttl in the past): b takes it, epoch 2, and a's
            // writes are refused from then on; a's renewal says so.
            assert!(a.renew_serving(&la, -1).expect("renew"));
            let Taken::Yes(lb) = a.take_serving("b", "http://b", 60_000).expect("take") else {
                panic!("a lease that ran out was not taken")
            };
            assert_eq!(
                lb,
                Lease {
                    host_id: "b".into(),
                    epoch: 2
                }
            );
            let err = a
                .insert(&rec("two"))
                .expect_err("a wrote after losing the lease");
            assert!(matches!(err, DbError::Fenced { .. }), "{err:?}");
            let err = a
                .delete("id-one")
                .expect_err("a deleted after losing the lease");
            assert!(matches!(err, DbError::Fenced { .. }), "{err:?}");
            assert!(!a.renew_serving(&la, 60_000).expect("renew"));
            assert!(a.get("one").expect("reads go on").is_some());
            assert!(a.get("two").expect("read").is_none());

            // The same host taking it again (a restart) gets a new epoch;
            // a release lets another take it at once.
            let Taken::Yes(lb2) = a.take_serving("b", "http://b", 60_000).expect("take") else {
                panic!("b could not take its own lease again")
            };
            assert_eq!(lb2.epoch, 3);
            a.release_serving(&lb2).expect("release");
            let Taken::Yes(la2) = a.take_serving("a", "http://a", 60_000).expect("take") else {
                panic!("a released lease was not taken")
            };
            assert_eq!(la2.epoch, 4);
            assert_eq!(a.serving().expect("serving"), Some(la2));
            assert_eq!(
                a.serving_host().expect("serving host"),
                Some(("a".to_string(), "http://a".to_string()))
            );
        });
    }
}
