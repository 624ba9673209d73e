//! `hosts` (every host sharing this database: where it is reached, whether
//! it is live, its load) and `sprite_leases` (which host holds each sprite).
//!
//! On PostgreSQL several hosts open one database and every one serves.
//! A host **joins** at start: its row gets a new epoch and an expiry, which
//! its heartbeat renews every third of `--host-timeout` with its load. A
//! host is live while its expiry is ahead by the database server's clock
//! (the hosts' clocks never compare); once the expiry has passed the row
//! cannot be renewed, only joined again (a new process, a new epoch).
//!
//! Every write a host makes checks, in the write's own transaction, that
//! its row is live at its epoch (`SELECT ... FOR SHARE`): once a host's
//! expiry passed, nothing more it writes lands.
//!
//! Each sprite is held by at most one host, under an epoch of the sprite's
//! own that grows by one each time it changes hands. A host **claims** a
//! sprite that nobody holds, or whose holder is not live: taking it from a
//! host locks that host's row (`FOR UPDATE`), so the old holder's writes
//! in flight end first, and looks at its expiry again under the lock (it
//! may have joined again meanwhile). A holder gives a sprite up (a drain)
//! after it stopped and evicted it. So a sprite's rows are written by one
//! live host at a time: the one that holds it.

use std::collections::HashMap;

use super::sprites::{SpriteRow, COLUMNS};
use super::sql::{params, Conn, Engine};
use super::{Db, DbError, SpriteRecord};

/// A host's membership: its id and the epoch of this process's join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub host_id: String,
    pub epoch: i64,
}

/// What a host tells the others with each heartbeat, for placement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    /// Sprites running (or warm) here.
    pub running: i64,
    /// `--max-running` (0: no limit).
    pub max_running: i64,
    /// Memory available on the machine, MiB.
    pub free_mb: i64,
    /// Takes no sprite it does not hold (`--cordon`, or draining).
    pub cordoned: bool,
}

/// A live host, as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveHost {
    pub id: String,
    pub advertise: String,
    /// Sprites it holds (counted from the leases: exact, not as of its
    /// last heartbeat).
    pub sprites: i64,
    pub load: Load,
}

/// Who holds a sprite, as a request for it finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// This host.
    Me,
    /// Another host, live, reached at `advertise`.
    Other { host_id: String, advertise: String },
    /// Nobody live: nobody ever, a host that gave it up, or a host whose
    /// heartbeat ran out. The first host that claims it holds it.
    Nobody,
}

/// A sprite's holder (`None`: given up) and its status as the holder last
/// recorded it.
pub type Held = (Option<String>, Option<String>);

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// This host holds the sprite now, under `epoch`. `moved`: it came
    /// from another host (or one that gave it up), so what this host may
    /// have of it from before is stale; not moved: this host held it
    /// already, or nobody ever did (a sprite from before hosts held
    /// sprites, or brought back from the store).
    Mine { epoch: i64, moved: bool },
    /// Another live host holds it.
    HeldBy { host_id: String, advertise: String },
}

/// The sprites this host holds, by name (→ id), as it knows without
/// asking the database: every change of what a host holds while it is
/// live goes through this handle (a create, a claim, a give-up, a delete),
/// and nobody takes a sprite from a live host. Trusted only while the
/// host's last heartbeat says it is live (by this host's clock, with a
/// margin): a host frozen or cut off past that asks the database again.
#[derive(Default)]
pub(super) struct Local {
    held: std::sync::Mutex<HashMap<String, String>>,
    /// The epoch of each sprite held here, by id.
    epochs: std::sync::Mutex<HashMap<String, i64>>,
    live_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Local {
    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn trusted(&self) -> bool {
        let until = *self.live_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|u| std::time::Instant::now() < u)
    }

    /// Live (by this host's own clock) for half of `ttl_ms` from when the
    /// renewal was sent (a margin for the time it took and clocks' rates);
    /// `None`: not live.
    fn live_for(&self, renewed: Option<(std::time::Instant, i64)>) {
        let until = renewed.map(|(sent, ttl_ms)| {
            sent + std::time::Duration::from_millis(u64::try_from(ttl_ms / 2).unwrap_or(0))
        });
        *self.live_until.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }

    pub(super) fn hold(&self, name: &str, id: &str) {
        self.lock_held().insert(name.to_string(), id.to_string());
    }

    pub(super) fn drop_id(&self, id: &str) {
        self.lock_held().retain(|_, v| v != id);
        self.lock_epochs().remove(id);
    }

    fn lock_epochs(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.epochs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn set_epoch(&self, id: &str, epoch: i64) {
        self.lock_epochs().insert(id.to_string(), epoch);
    }
}

/// The database server's clock in unix ms (PostgreSQL), or this host's
/// (SQLite: there is only one).
fn now_ms(c: &dyn Conn) -> &'static str {
    match c.engine() {
        Engine::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Engine::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
    }
}

/// `FOR SHARE` / `FOR UPDATE` where the engine has row locks (SQLite's
/// write transactions exclude each other whole).
fn row_lock(c: &dyn Conn, mode: &'static str) -> &'static str {
    match c.engine() {
        Engine::Postgres => mode,
        Engine::Sqlite => "",
    }
}

/// The advisory lock claims hold (a constant of sprited's own): one claim
/// at a time, so two claims never wait on each other's host rows.
const PG_CLAIM_LOCK: i64 = 0x7370_7269_7465_6403;

/// Refuses a write (with [`DbError::Fenced`]) unless `lease`'s host is
/// still live at its epoch; holds its row `FOR SHARE` until the write's
/// transaction ends, so a claim from it waits for the write.
pub(super) fn check_fence(c: &mut dyn Conn, lease: &Lease) -> Result<(), DbError> {
    let sql = format!(
        "SELECT epoch FROM hosts WHERE id = ?1 AND epoch = ?2 AND expires_ms > {} {}",
        now_ms(c),
        row_lock(c, "FOR SHARE")
    );
    match c.query_opt(&sql, params![lease.host_id, lease.epoch], |_| Ok(()))? {
        Some(()) => Ok(()),
        None => Err(DbError::Fenced {
            host_id: lease.host_id.clone(),
            epoch: lease.epoch,
        }),
    }
}

impl Db {
    /// Joins the hosts sharing this database (or joins again: a restart),
    /// live for `ttl_ms`, under a new epoch: the last process of this host
    /// writes nothing more from now on.
    pub fn join(
        &self,
        host_id: &str,
        advertise: &str,
        ttl_ms: i64,
        load: &Load,
    ) -> Result<Lease, DbError> {
        self.unfenced_tx(|c| {
            let now = now_ms(c);
            let epoch = c
                .query_opt(
                    &format!(
                        "INSERT INTO hosts (id, advertise, started_ms, seen_ms, epoch, expires_ms,
                       running, max_running, free_mb, cordoned)
                     VALUES (?1, ?2, {now}, {now}, 1, {now} + ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (id) DO UPDATE SET advertise = excluded.advertise,
                       started_ms = excluded.started_ms, seen_ms = excluded.seen_ms,
                       epoch = hosts.epoch + 1, expires_ms = excluded.expires_ms,
                       running = excluded.running, max_running = excluded.max_running,
                       free_mb = excluded.free_mb, cordoned = excluded.cordoned
                     RETURNING epoch"
                    ),
                    params![
                        host_id,
                        advertise,
                        ttl_ms,
                        load.running,
                        load.max_running,
                        load.free_mb,
                        i64::from(load.cordoned)
                    ],
                    |r| r.get::<i64>(0),
                )?
                .ok_or_else(|| DbError::Type("joining returned no epoch".into()))?;
            Ok(Lease {
                host_id: host_id.to_string(),
                epoch,
            })
        })
        .inspect(|_| {
            self.local
                .live_for(Some((std::time::Instant::now(), ttl_ms)))
        })
    }

    /// The heartbeat: live for `ttl_ms` more, with this load. False when
    /// the host is not live at its epoch any more (its expiry passed, or
    /// it joined again elsewhere): it must stop.
    pub fn heartbeat(&self, lease: &Lease, ttl_ms: i64, load: &Load) -> Result<bool, DbError> {
        let sent = std::time::Instant::now();
        let beat = self.unfenced_tx(|c| {
            let now = now_ms(c);
            let n = c.execute(
                &format!(
                    "UPDATE hosts SET expires_ms = {now} + ?3, seen_ms = {now}, running = ?4,
                       max_running = ?5, free_mb = ?6, cordoned = ?7
                     WHERE id = ?1 AND epoch = ?2 AND expires_ms > {now}"
                ),
                params![
                    lease.host_id,
                    lease.epoch,
                    ttl_ms,
                    load.running,
                    load.max_running,
                    load.free_mb,
                    i64::from(load.cordoned)
                ],
            )?;
            Ok(n > 0)
        })?;
        self.local.live_for(beat.then_some((sent, ttl_ms)));
        Ok(beat)
    }

    /// Leaves (a drained host's stop): not live from now on.
    pub fn leave(&self, lease: &Lease) -> Result<(), DbError> {
        self.unfenced_tx(|c| {
            let now = now_ms(c);
            c.execute(
                &format!("UPDATE hosts SET expires_ms = {now} - 1 WHERE id = ?1 AND epoch = ?2"),
                params![lease.host_id, lease.epoch],
            )?;
            Ok(())
        })
    }

    /// Refused ([`DbError::Fenced`]) once this host's membership ran out:
    /// asked before a write outside the database (the object store), which
    /// its fence cannot cover. Always fine on a database of its own.
    pub fn check_live(&self) -> Result<(), DbError> {
        if self.me().is_none() {
            return Ok(());
        }
        self.tx(|_| Ok(()))
    }

    /// The epoch under which this host holds sprite `id`, if it knows it
    /// without asking (it claimed or made it, and is live).
    pub fn held_here(&self, id: &str) -> Option<i64> {
        if !self.local.trusted() {
            return None;
        }
        self.local.lock_epochs().get(id).copied()
    }

    /// The epoch under which this host holds sprite `id` (what names its
    /// copies in the object store); 0 on a database of its own. Refused
    /// for a sprite this host does not hold.
    pub fn held_epoch(&self, id: &str) -> Result<i64, DbError> {
        let Some(me) = self.me() else {
            return Ok(0);
        };
        if let Some(e) = self.local.lock_epochs().get(id) {
            return Ok(*e);
        }
        let epoch = self.run(|c| {
            c.query_opt(
                "SELECT epoch FROM sprite_leases WHERE sprite_id = ?1 AND host_id = ?2",
                params![id, me.host_id],
                |r| r.get::<i64>(0),
            )
        })?;
        match epoch {
            Some(e) => {
                self.local.set_epoch(id, e);
                Ok(e)
            }
            None => Err(DbError::Type(format!(
                "sprite {id} is not held by this host ({})",
                me.host_id
            ))),
        }
    }

    /// This handle's host, once it joined (see [`Db::fence`]).
    pub fn me(&self) -> Option<Lease> {
        self.fence_now().ok().flatten()
    }

    /// The live hosts with what they hold, for placement.
    pub fn live_hosts(&self) -> Result<Vec<LiveHost>, DbError> {
        self.read(|c| {
            let now = now_ms(c);
            c.query_map(
                &format!(
                    "SELECT h.id, h.advertise, h.running, h.max_running, h.free_mb, h.cordoned,
                       (SELECT COUNT(*) FROM sprite_leases l WHERE l.host_id = h.id)
                     FROM hosts h WHERE h.expires_ms > {now} ORDER BY h.id"
                ),
                &[],
                |r| {
                    Ok(LiveHost {
                        id: r.get(0)?,
                        advertise: r.get(1)?,
                        load: Load {
                            running: r.get(2)?,
                            max_running: r.get(3)?,
                            free_mb: r.get(4)?,
                            cordoned: r.get::<i64>(5)? != 0,
                        },
                        sprites: r.get(6)?,
                    })
                },
            )
        })
    }

    /// The sprite named `name` (its id) and who holds it, as this host
    /// sees it; `None` when there is no such sprite.
    pub fn holder_of(&self, name: &str) -> Result<Option<(String, Holder)>, DbError> {
        let me = self.me();
        if self.local.trusted() {
            if let Some(id) = self.local.lock_held().get(name) {
                return Ok(Some((id.clone(), Holder::Me)));
            }
        }
        let row = self.read(|c| {
            let now = now_ms(c);
            c.query_opt(
                &format!(
                    "SELECT s.id, l.host_id, h.advertise, COALESCE(h.expires_ms > {now}, FALSE)
                     FROM sprites s
                     LEFT JOIN sprite_leases l ON l.sprite_id = s.id
                     LEFT JOIN hosts h ON h.id = l.host_id
                     WHERE s.name = ?1"
                ),
                params![name],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<Option<String>>(1)?,
                        r.get::<Option<String>>(2)?,
                        r.get::<bool>(3)?,
                    ))
                },
            )
        })?;
        Ok(row.map(|(id, host, advertise, live)| {
            let holder = match (host, me) {
                (Some(h), Some(me)) if h == me.host_id => {
                    self.local.hold(name, &id);
                    Holder::Me
                }
                (Some(host_id), _) if live => Holder::Other {
                    host_id,
                    advertise: advertise.unwrap_or_default(),
                },
                _ => Holder::Nobody,
            };
            (id, holder)
        }))
    }

    /// The ids of the sprites this host holds (what [`Db::mine`] returns,
    /// without their rows), where it shares the database.
    pub fn mine_ids(&self) -> Result<std::collections::HashSet<String>, DbError> {
        let Some(me) = self.me() else {
            return Ok(self.sprite_ids()?.into_iter().collect());
        };
        let ids = self.read(|c| {
            c.query_map(
                "SELECT sprite_id FROM sprite_leases WHERE host_id = ?1",
                params![me.host_id],
                |r| r.get::<String>(0),
            )
        })?;
        Ok(ids.into_iter().collect())
    }

    /// The host holding sprite `id`, live or not (what `sprite info` shows).
    pub fn held_by(&self, id: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .run(|c| {
                c.query_opt(
                    "SELECT host_id FROM sprite_leases WHERE sprite_id = ?1",
                    params![id],
                    |r| r.get::<Option<String>>(0),
                )
            })?
            .flatten())
    }

    /// Takes sprite `id` for this host (see the module's notes). Only a
    /// host that joined claims.
    pub fn claim(&self, id: &str) -> Result<Claimed, DbError> {
        let Some(me) = self.me() else {
            return Err(DbError::Type("a claim needs a host that joined".into()));
        };
        self.unfenced_tx(|c| {
            if c.engine() == Engine::Postgres {
                c.query("SELECT 1 FROM pg_advisory_xact_lock(?1)", params![PG_CLAIM_LOCK])?;
            }
            check_fence(c, &me)?;
            let now = now_ms(c);
            let held = c.query_opt(
                &format!(
                    "SELECT l.host_id, l.epoch, COALESCE(h.expires_ms > {now}, FALSE), COALESCE(h.advertise, '')
                     FROM sprite_leases l LEFT JOIN hosts h ON h.id = l.host_id
                     WHERE l.sprite_id = ?1"
                ),
                params![id],
                |r| {
                    Ok((
                        r.get::<Option<String>>(0)?,
                        r.get::<i64>(1)?,
                        r.get::<bool>(2)?,
                        r.get::<String>(3)?,
                    ))
                },
            )?;
            let (epoch, moved) = match held {
                None => {
                    let exists = c
                        .query_opt("SELECT 1 FROM sprites WHERE id = ?1", params![id], |_| Ok(()))?
                        .is_some();
                    if !exists {
                        return Err(DbError::Type(format!("no sprite {id}")));
                    }
                    c.execute(
                        "INSERT INTO sprite_leases (sprite_id, host_id, epoch) VALUES (?1, ?2, 1)",
                        params![id, me.host_id],
                    )?;
                    return Ok(Claimed::Mine {
                        epoch: 1,
                        moved: false,
                    });
                }
                Some((Some(h), epoch, _, _)) if h == me.host_id => {
                    return Ok(Claimed::Mine {
                        epoch,
                        moved: false,
                    })
                }
                Some((None, epoch, _, _)) => (epoch + 1, true),
                Some((Some(h), epoch, live, advertise)) => {
                    if live {
                        return Ok(Claimed::HeldBy {
                            host_id: h,
                            advertise,
                        });
                    }
                    // Its writes in flight end; it may have joined again.
                    let live_now = c
                        .query_opt(
                            &format!(
                                "SELECT expires_ms > {now}, advertise FROM hosts WHERE id = ?1 {}",
                                row_lock(c, "FOR UPDATE")
                            ),
                            params![h],
                            |r| Ok((r.get::<bool>(0)?, r.get::<String>(1)?)),
                        )?
                        .filter(|(live, _)| *live);
                    if let Some((_, advertise)) = live_now {
                        return Ok(Claimed::HeldBy {
                            host_id: h,
                            advertise,
                        });
                    }
                    (epoch + 1, true)
                }
            };
            c.execute(
                "UPDATE sprite_leases SET host_id = ?2, epoch = ?3, status = NULL WHERE sprite_id = ?1",
                params![id, me.host_id, epoch],
            )?;
            Ok(Claimed::Mine { epoch, moved })
        })
        .inspect(|claimed| {
            if let Claimed::Mine { epoch, .. } = claimed {
                self.local.set_epoch(id, *epoch);
                if let Ok(Some(rec)) = self.get_by_id(id) {
                    self.local.hold(&rec.name, id);
                }
            }
        })
    }

    /// Gives sprite `id` up (this host stopped and evicted it): the next
    /// host that claims it holds it.
    pub fn give_up(&self, id: &str) -> Result<(), DbError> {
        let Some(me) = self.me() else {
            return Ok(());
        };
        self.tx(|c| {
            self.local.drop_id(id);
            c.execute(
                "UPDATE sprite_leases SET host_id = NULL, status = NULL WHERE sprite_id = ?1 AND host_id = ?2",
                params![id, me.host_id],
            )?;
            Ok(())
        })
    }

    /// Records sprite `id`'s status as its holder sees it (what other
    /// hosts show in a list).
    pub fn set_held_status(&self, id: &str, status: &str) -> Result<(), DbError> {
        let Some(me) = self.me() else {
            return Ok(());
        };
        self.run(|c| {
            c.execute(
                "UPDATE sprite_leases SET status = ?3 WHERE sprite_id = ?1 AND host_id = ?2
                   AND (status IS NULL OR status <> ?3)",
                params![id, me.host_id, status],
            )?;
            Ok(())
        })
    }

    /// Every lease's holder and status: sprite id → (host, status).
    pub fn held(&self) -> Result<HashMap<String, Held>, DbError> {
        let rows = self.read(|c| {
            c.query_map(
                "SELECT sprite_id, host_id, status FROM sprite_leases",
                &[],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        (r.get::<Option<String>>(1)?, r.get::<Option<String>>(2)?),
                    ))
                },
            )
        })?;
        Ok(rows.into_iter().collect())
    }

    /// The sprites this host holds, by name; every sprite when it shares
    /// the database with nobody (SQLite, or before it joined).
    pub fn mine(&self) -> Result<Vec<SpriteRecord>, DbError> {
        let Some(me) = self.me() else {
            return self.all();
        };
        let rows = self.read(|c| {
            c.query_map(
                &format!(
                    "SELECT {COLUMNS} FROM sprites WHERE id IN
                       (SELECT sprite_id FROM sprite_leases WHERE host_id = ?1) ORDER BY name"
                ),
                params![me.host_id],
                SpriteRow::read,
            )
        })?;
        rows.into_iter().map(SpriteRow::decode).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sprites::tests::rec;
    use crate::db::testing::{each_engine, each_engine_twice};

    fn load() -> Load {
        Load {
            running: 0,
            max_running: 0,
            free_mb: 1000,
            cordoned: false,
        }
    }

    #[test]
    fn hosts_join_and_a_host_whose_heartbeat_ran_out_is_fenced() {
        each_engine(|fresh| {
            let a = fresh();
            let la = a.join("a", "http://a", 60_000, &load()).expect("join");
            assert_eq!(la.epoch, 1);
            a.fence(&la);
            a.check_live().expect("live");
            a.insert(&rec("one")).expect("a writes while live");
            assert!(a.heartbeat(&la, 60_000, &load()).expect("beat"));
            let hosts = a.live_hosts().expect("hosts");
            assert_eq!(hosts.len(), 1);
            assert_eq!((hosts[0].id.as_str(), hosts[0].sprites), ("a", 1));

            // Its expiry passes: its writes are refused, and its heartbeat
            // says it must stop; reads go on.
            assert!(a.heartbeat(&la, -1, &load()).expect("beat"));
            let err = a.insert(&rec("two")).expect_err("a wrote after its expiry");
            assert!(matches!(err, DbError::Fenced { .. }), "{err:?}");
            let err = a.delete("id-one").expect_err("a deleted after its expiry");
            assert!(matches!(err, DbError::Fenced { .. }), "{err:?}");
            let err = a.check_live().expect_err("a is not live");
            assert!(matches!(err, DbError::Fenced { .. }), "{err:?}");
            assert!(!a.heartbeat(&la, 60_000, &load()).expect("beat"));
            assert!(a.get("one").expect("reads").is_some());
            assert!(a.live_hosts().expect("hosts").is_empty());

            // Joining again is a new epoch; the old one stays fenced.
            let la2 = a.join("a", "http://a", 60_000, &load()).expect("join");
            assert_eq!(la2.epoch, 2);
            a.insert(&rec("three")).expect_err("the old epoch wrote");
            a.fence(&la2);
            a.insert(&rec("three")).expect("the new epoch writes");
            a.leave(&la2).expect("leave");
            assert!(a.live_hosts().expect("hosts").is_empty());
        });
    }

    #[test]
    fn a_sprite_is_held_by_one_live_host_and_claimed_from_a_dead_one() {
        // Two handles on one database: hosts a and b.
        each_engine_twice(|fresh| {
            let (a, b) = fresh();
            let la = a.join("a", "http://a", 60_000, &load()).expect("join");
            let lb = b.join("b", "http://b", 60_000, &load()).expect("join");
            a.fence(&la);
            b.fence(&lb);
            a.insert(&rec("one")).expect("a creates");
            assert_eq!(a.held_by("id-one").expect("held"), Some("a".into()));
            assert_eq!(
                a.holder_of("one").expect("holder").map(|h| h.1),
                Some(Holder::Me)
            );
            assert_eq!(
                b.holder_of("one").expect("holder").map(|h| h.1),
                Some(Holder::Other {
                    host_id: "a".into(),
                    advertise: "http://a".into()
                })
            );
            assert_eq!(b.holder_of("nope").expect("holder"), None);
            assert_eq!(
                b.claim("id-one").expect("claim"),
                Claimed::HeldBy {
                    host_id: "a".into(),
                    advertise: "http://a".into()
                }
            );
            assert_eq!(
                a.claim("id-one").expect("claim"),
                Claimed::Mine {
                    epoch: 1,
                    moved: false
                }
            );
            assert_eq!(a.mine().expect("mine").len(), 1);
            assert!(b.mine().expect("mine").is_empty());
            assert_eq!(a.mine_ids().expect("mine"), ["id-one".to_string()].into());
            assert!(b.mine_ids().expect("mine").is_empty());
            assert_eq!(a.held_epoch("id-one").expect("epoch"), 1);
            b.held_epoch("id-one").expect_err("b does not hold it");
            a.set_held_status("id-one", "running").expect("status");
            assert_eq!(
                b.held().expect("held").get("id-one"),
                Some(&(Some("a".to_string()), Some("running".to_string())))
            );

            // a's heartbeat runs out: b claims the sprite (epoch 2, moved),
            // and a writes nothing more.
            assert!(a.heartbeat(&la, -1, &load()).expect("beat"));
            assert_eq!(
                b.holder_of("one").expect("holder").map(|h| h.1),
                Some(Holder::Nobody)
            );
            assert_eq!(
                b.claim("id-one").expect("claim"),
                Claimed::Mine {
                    epoch: 2,
                    moved: true
                }
            );
            assert_eq!(b.held_epoch("id-one").expect("epoch"), 2);
            assert_eq!(b.mine().expect("mine").len(), 1);
            // a knew it held "one" without asking; past its expiry it asks.
            assert_eq!(
                a.holder_of("one").expect("holder").map(|h| h.1),
                Some(Holder::Other {
                    host_id: "b".into(),
                    advertise: "http://b".into()
                })
            );
            let err = a
                .set_limits("id-one", &rec("one").limits, "now")
                .expect_err("fenced");
            assert!(matches!(err, DbError::Fenced { .. }), "{err:?}");

            // a joins again: the sprite stays b's. b gives it up; a claims
            // it (moved: what a had of it is stale).
            let la2 = a.join("a", "http://a", 60_000, &load()).expect("join");
            a.fence(&la2);
            assert!(a.mine().expect("mine").is_empty());
            b.give_up("id-one").expect("give up");
            assert_eq!(b.held_by("id-one").expect("held"), None);
            assert_eq!(
                a.claim("id-one").expect("claim"),
                Claimed::Mine {
                    epoch: 3,
                    moved: true
                }
            );

            // A sprite nobody ever held (from before hosts held sprites):
            // the first claim takes it, not moved.
            b.unfenced_tx(|c| {
                c.execute("DELETE FROM sprite_leases", &[])?;
                Ok(())
            })
            .expect("clear");
            assert_eq!(
                b.claim("id-one").expect("claim"),
                Claimed::Mine {
                    epoch: 1,
                    moved: false
                }
            );
            // Deleting a sprite drops its lease.
            b.delete("id-one").expect("delete");
            assert!(b.held().expect("leases").is_empty());
            let hosts = b.live_hosts().expect("hosts");
            assert_eq!(hosts.len(), 2);
        });
    }
}
