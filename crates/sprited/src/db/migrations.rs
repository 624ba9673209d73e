//! The schema's history. `PRAGMA user_version` is the number of migrations
//! a database has had; opening it applies the missing ones in order, each
//! in its own transaction that also bumps the version, so a crash leaves
//! the database at one version or the next, never between.
//!
//! Append only: a released migration is never edited (data dirs out there
//! have had it), a change of schema is a new migration at the end.
//!
//! Each migration is written twice, once per engine, and the two make the
//! same tables: on PostgreSQL integers are `BIGINT`, reals `DOUBLE
//! PRECISION`, and text compares byte by byte (`COLLATE "C"`, as SQLite
//! does), so names sort and page the same on both. PostgreSQL keeps the
//! version in `sprited_schema`, and migrates under an advisory lock, so
//! hosts that open one database at once apply each migration once.

use rusqlite::{Connection, TransactionBehavior};

use super::DbError;

/// One step of the schema.
struct Migration {
    /// What it changes, for the log.
    what: &'static str,
    sql: &'static str,
    /// The same for PostgreSQL.
    pg: &'static str,
}

/// In order: the database at version `n` has had the first `n`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        what: "the schema of the releases before schema versions",
        sql: V1,
        pg: PG_V1,
    },
    Migration {
        what: "each sprite's privileges policy",
        sql: V2,
        pg: PG_V2,
    },
    Migration {
        what: "token scopes",
        sql: V3,
        pg: PG_V3,
    },
    Migration {
        what: "replicated snapshots of volumes",
        sql: V4,
        pg: PG_V4,
    },
    Migration {
        what: "destroyed sprites whose copies in the object store are still to remove",
        sql: V5,
        pg: PG_V5,
    },
    Migration {
        what: "hosts, and the lease of the host that serves the database",
        sql: V6,
        pg: PG_V6,
    },
    Migration {
        what: "every host serves: hosts' heartbeats and load, and which host holds each sprite",
        sql: V7,
        pg: PG_V7,
    },
];

/// The schema version this build writes (and the newest it opens).
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// Version 1 is the schema as it stood when versions came in, statement for
/// statement: a data dir from then is at user_version 0 with these tables
/// already made, and `IF NOT EXISTS` makes applying it there a no-op.
const V1: &str = "
CREATE TABLE IF NOT EXISTS sprites (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    url_auth TEXT NOT NULL,
    labels TEXT NOT NULL,
    limits TEXT NOT NULL,
    environment TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_running_at TEXT,
    last_active_at TEXT
);
CREATE TABLE IF NOT EXISTS checkpoints (
    sprite_id TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    create_time TEXT NOT NULL,
    source_id TEXT,
    comment TEXT,
    is_auto INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sprite_id, id)
);
CREATE TABLE IF NOT EXISTS network_policies (
    sprite_id TEXT PRIMARY KEY,
    policy TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    sprite_id TEXT NOT NULL,
    name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    expires_unix_ms INTEGER NOT NULL,
    PRIMARY KEY (sprite_id, name)
);
CREATE TABLE IF NOT EXISTS usage (
    sprite_id TEXT NOT NULL,
    sprite_name TEXT NOT NULL,
    minute INTEGER NOT NULL,
    cpu_seconds REAL NOT NULL DEFAULT 0,
    ram_gb_seconds REAL NOT NULL DEFAULT 0,
    hot_gb_seconds REAL NOT NULL DEFAULT 0,
    cold_gb_hours REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (sprite_id, minute)
);
CREATE TABLE IF NOT EXISTS meter_state (
    sprite_id TEXT PRIMARY KEY,
    sampled_unix_ms INTEGER NOT NULL,
    cpu_ns INTEGER NOT NULL,
    running INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_used_at TEXT
);
CREATE TABLE IF NOT EXISTS cold_sprites (
    sprite_id TEXT PRIMARY KEY,
    evicted_at TEXT NOT NULL,
    stored_bytes INTEGER NOT NULL,
    data_bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cold_checkpoints (
    sprite_id TEXT NOT NULL,
    id TEXT NOT NULL,
    stored_bytes INTEGER NOT NULL,
    data_bytes INTEGER NOT NULL,
    PRIMARY KEY (sprite_id, id)
);
CREATE TABLE IF NOT EXISTS checkpoint_state (
    sprite_id TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    current TEXT
);
";

/// The privileges policies (capabilities, devices): as the API was given
/// them, validated; a sprite without a row has the default.
const V2: &str = "
CREATE TABLE privileges_policies (
    sprite_id TEXT PRIMARY KEY,
    policy TEXT NOT NULL
);
";

/// What each API token may do (JSON, `sprites_api::token::TokenScope`);
/// NULL for tokens made before scopes, which keep what they could do:
/// everything.
const V3: &str = "
ALTER TABLE tokens ADD COLUMN scope TEXT;
";

/// Snapshots of a sprite's volume replicated to the object store (manifest
/// `sprites/<id>/snapshots/<at_ms>`), by the unix time in ms they were taken.
const V4: &str = "
CREATE TABLE snapshots (
    sprite_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL,
    data_bytes INTEGER NOT NULL,
    PRIMARY KEY (sprite_id, at_ms)
);
";

/// Sprites destroyed here whose copies in the object store are not yet
/// removed: the store's sweep removes only these (what else the store
/// holds may be a sprite to recover, or another host's).
const V5: &str = "
CREATE TABLE forgotten (
    sprite_id TEXT PRIMARY KEY,
    destroyed_at TEXT NOT NULL
);
";

/// The hosts that have served this database (`--host-id`, where others
/// reach them, when each was last seen), and the one lease that says which
/// host serves it now. Every host writes its rows under the lease's epoch
/// (see `db::hosts`). On SQLite (one host, one file) only the host's own
/// row is kept.
const V6: &str = "
CREATE TABLE hosts (
    id TEXT PRIMARY KEY,
    advertise TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL
);
CREATE TABLE serving_lease (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    host_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
";

/// Every host of a shared database serves (see `db::hosts`): a host's
/// row carries its epoch (one more at each start), how long it is live
/// (its heartbeat renews it) and its load, for placement; each sprite is
/// held by at most one host, under an epoch of its own that grows each
/// time it changes hands, with its status as that host last saw it. The
/// one serving lease goes (a lease is nothing to keep: it runs out). The
/// object store's garbage collections are counted (`store_gc`), so that a
/// host knows when what it remembers of the store's chunks may be gone.
/// The copies in the store (an evicted volume, checkpoints, snapshots)
/// record the epoch of the holder that made them: it is in their
/// manifests' names (0, the rows from before: names without one).
const V7: &str = "
ALTER TABLE hosts ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN expires_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN running INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN max_running INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN free_mb INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN cordoned INTEGER NOT NULL DEFAULT 0;
DROP TABLE serving_lease;
CREATE TABLE sprite_leases (
    sprite_id TEXT PRIMARY KEY,
    host_id TEXT,
    epoch INTEGER NOT NULL,
    status TEXT
);
CREATE INDEX sprite_leases_host ON sprite_leases (host_id);
CREATE TABLE store_gc (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    generation INTEGER NOT NULL
);
INSERT INTO store_gc (one, generation) VALUES (1, 0);
ALTER TABLE cold_sprites ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cold_checkpoints ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE snapshots ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
";

/// [`V1`] to [`V7`] for PostgreSQL (which has no data dirs from before
/// schema versions).
const PG_V1: &str = r#"
CREATE TABLE sprites (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    image TEXT NOT NULL,
    url_auth TEXT NOT NULL,
    labels TEXT NOT NULL,
    limits TEXT NOT NULL,
    environment TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    last_running_at TEXT COLLATE "C",
    last_active_at TEXT COLLATE "C"
);
CREATE TABLE checkpoints (
    sprite_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    create_time TEXT COLLATE "C" NOT NULL,
    source_id TEXT COLLATE "C",
    comment TEXT,
    is_auto BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (sprite_id, id)
);
CREATE TABLE network_policies (
    sprite_id TEXT COLLATE "C" PRIMARY KEY,
    policy TEXT NOT NULL
);
CREATE TABLE tasks (
    sprite_id TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL,
    expires_unix_ms BIGINT NOT NULL,
    PRIMARY KEY (sprite_id, name)
);
CREATE TABLE usage (
    sprite_id TEXT COLLATE "C" NOT NULL,
    sprite_name TEXT COLLATE "C" NOT NULL,
    minute BIGINT NOT NULL,
    cpu_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    ram_gb_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    hot_gb_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    cold_gb_hours DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (sprite_id, minute)
);
CREATE TABLE meter_state (
    sprite_id TEXT COLLATE "C" PRIMARY KEY,
    sampled_unix_ms BIGINT NOT NULL,
    cpu_ns BIGINT NOT NULL,
    running BIGINT NOT NULL
);
CREATE TABLE tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    hash TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at TEXT COLLATE "C" NOT NULL,
    last_used_at TEXT COLLATE "C"
);
CREATE TABLE cold_sprites (
    sprite_id TEXT COLLATE "C" PRIMARY KEY,
    evicted_at TEXT COLLATE "C" NOT NULL,
    stored_bytes BIGINT NOT NULL,
    data_bytes BIGINT NOT NULL
);
CREATE TABLE cold_checkpoints (
    sprite_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    stored_bytes BIGINT NOT NULL,
    data_bytes BIGINT NOT NULL,
    PRIMARY KEY (sprite_id, id)
);
CREATE TABLE checkpoint_state (
    sprite_id TEXT COLLATE "C" PRIMARY KEY,
    next_seq BIGINT NOT NULL,
    current TEXT COLLATE "C"
);
"#;

const PG_V2: &str = r#"
CREATE TABLE privileges_policies (
    sprite_id TEXT COLLATE "C" PRIMARY KEY,
    policy TEXT NOT NULL
);
"#;

const PG_V3: &str = "
ALTER TABLE tokens ADD COLUMN scope TEXT;
";

const PG_V4: &str = r#"
CREATE TABLE snapshots (
    sprite_id TEXT COLLATE "C" NOT NULL,
    at_ms BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL,
    data_bytes BIGINT NOT NULL,
    PRIMARY KEY (sprite_id, at_ms)
);
"#;

const PG_V5: &str = r#"
CREATE TABLE forgotten (
    sprite_id TEXT COLLATE "C" PRIMARY KEY,
    destroyed_at TEXT COLLATE "C" NOT NULL
);
"#;

const PG_V6: &str = r#"
CREATE TABLE hosts (
    id TEXT COLLATE "C" PRIMARY KEY,
    advertise TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL
);
CREATE TABLE serving_lease (
    one BIGINT PRIMARY KEY CHECK (one = 1),
    host_id TEXT COLLATE "C" NOT NULL,
    epoch BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
"#;

const PG_V7: &str = r#"
ALTER TABLE hosts ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN expires_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN running BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN max_running BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN free_mb BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN cordoned BIGINT NOT NULL DEFAULT 0;
DROP TABLE serving_lease;
CREATE TABLE sprite_leases (
    sprite_id TEXT COLLATE "C" PRIMARY KEY,
    host_id TEXT COLLATE "C",
    epoch BIGINT NOT NULL,
    status TEXT
);
CREATE INDEX sprite_leases_host ON sprite_leases (host_id);
CREATE TABLE store_gc (
    one BIGINT PRIMARY KEY CHECK (one = 1),
    generation BIGINT NOT NULL
);
INSERT INTO store_gc (one, generation) VALUES (1, 0);
ALTER TABLE cold_sprites ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cold_checkpoints ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE snapshots ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
"#;

fn version(conn: &Connection) -> Result<u32, DbError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Refuses a database from a newer sprited: its schema may mean things
/// this build would misread or undo.
pub(super) fn check_known(conn: &Connection) -> Result<(), DbError> {
    match version(conn)? {
        found if found > LATEST => Err(DbError::TooNew {
            found,
            known: LATEST,
        }),
        _ => Ok(()),
    }
}

/// Applies the migrations the database has not had. The version is read
/// again inside each write transaction: two processes opening the file at
/// once apply each migration once.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        check_known(&tx)?;
        let at = version(&tx)?;
        let Some(m) = MIGRATIONS.get(at as usize) else {
            return Ok(());
        };
        tx.execute_batch(m.sql)?;
        tx.pragma_update(None, "user_version", at + 1)?;
        tx.commit()?;
        tracing::info!(version = at + 1, what = m.what, "metadata schema migrated");
    }
}

/// Where PostgreSQL keeps the schema version (one row).
const PG_VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS sprited_schema (one BIGINT PRIMARY KEY CHECK (one = 1), version BIGINT NOT NULL)";

/// The advisory lock migrations hold (a constant of sprited's own).
const PG_MIGRATION_LOCK: i64 = 0x7370_7269_7465_6401;

/// [`migrate`] for PostgreSQL: the version is read and each migration
/// applied under a transaction-scoped advisory lock, so two hosts opening
/// the database at once wait for each other and apply each step once.
pub(super) fn migrate_postgres(client: &mut postgres::Client) -> Result<(), DbError> {
    loop {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_MIGRATION_LOCK])?;
        tx.batch_execute(PG_VERSION_TABLE)?;
        let at = match tx.query_opt("SELECT version FROM sprited_schema", &[])? {
            Some(row) => row.try_get::<_, i64>(0)?,
            None => {
                tx.execute(
                    "INSERT INTO sprited_schema (one, version) VALUES (1, 0)",
                    &[],
                )?;
                0
            }
        };
        let at = u32::try_from(at).map_err(|_| DbError::Type(format!("schema version {at}")))?;
        if at > LATEST {
            return Err(DbError::TooNew {
                found: at,
                known: LATEST,
            });
        }
        let Some(m) = MIGRATIONS.get(at as usize) else {
            return Ok(());
        };
        tx.batch_execute(m.pg)?;
        tx.execute(
            "UPDATE sprited_schema SET version = $1",
            &[&(i64::from(at) + 1)],
        )?;
        tx.commit()?;
        tracing::info!(
            version = at + 1,
            what = m.what,
            "metadata schema migrated (postgres)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    /// A `meta.db` written by the last release without schema versions
    /// (see `tests/fixtures/upgrade-c2f2e72/README.md`).
    const UNVERSIONED: &[u8] = include_bytes!("../../tests/fixtures/upgrade-c2f2e72/meta.db");

    fn user_version(path: &std::path::Path) -> u32 {
        let conn = Connection::open(path).expect("open");
        version(&conn).expect("version")
    }

    /// Every table and index as SQLite records it: what a schema is.
    fn schema(path: &std::path::Path) -> Vec<(String, String)> {
        let conn = Connection::open(path).expect("open");
        let mut st = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .expect("prepare");
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    #[test]
    fn a_new_database_gets_the_latest_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        Db::open(&path).expect("open");
        assert_eq!(user_version(&path), LATEST);
        // Opening again applies nothing and changes nothing.
        let before = schema(&path);
        Db::open(&path).expect("reopen");
        assert_eq!(user_version(&path), LATEST);
        assert_eq!(schema(&path), before);
    }

    #[test]
    fn an_unversioned_database_from_the_last_release_migrates_with_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        std::fs::write(&path, UNVERSIONED).expect("write");
        assert_eq!(user_version(&path), 0);

        let db = Db::open(&path).expect("open");
        assert_eq!(user_version(&path), LATEST);
        let names: Vec<_> = db.all().expect("all").into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["alpha", "alpha-fork", "beta"]);
        let alpha = db.get("alpha").expect("get").expect("alpha");
        assert_eq!(alpha.labels, ["blue", "team-a"]);
        assert_eq!(alpha.limits.storage_gb, 1);
        assert_eq!(alpha.environment["GREETING"], "hello");
        let cks: Vec<_> = db
            .checkpoints(&alpha.id)
            .expect("checkpoints")
            .into_iter()
            .map(|c| (c.id, c.comment))
            .collect();
        assert_eq!(
            cks,
            [
                ("v1".to_string(), Some("second draft".to_string())),
                ("v0".to_string(), Some("first draft".to_string()))
            ]
        );
        assert_eq!(db.next_checkpoint_seq(&alpha.id).expect("seq"), 2);
        let beta = db.get("beta").expect("get").expect("beta");
        assert_eq!(beta.url_auth, "public");
        assert!(db.network_policy(&beta.id).expect("policy").is_some());
        let tokens: Vec<_> = db
            .tokens()
            .expect("tokens")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(tokens, ["ci"]);
        assert!(!db
            .usage(None, 0, i64::MAX, false)
            .expect("usage")
            .is_empty());
        assert!(db.meter_state(&beta.id).expect("meter").is_some());
        assert_eq!(db.privileges_policy(&beta.id).expect("privileges"), None);
        // Snapshots (version 4) start empty and work.
        assert_eq!(db.last_snapshot(&beta.id).expect("snapshots"), None);
        let snap = super::super::Snapshot {
            at_ms: 1,
            stored_bytes: 2,
            data_bytes: 3,
            epoch: 4,
        };
        db.add_snapshot(&beta.id, &snap).expect("add snapshot");
        assert_eq!(db.last_snapshot(&beta.id).expect("snapshots"), Some(snap));
        // Destroyed sprites to forget in the store (version 5) too.
        assert!(db.forgotten().expect("forgotten").is_empty());
        db.delete(&beta.id).expect("destroy beta");
        assert_eq!(db.forgotten().expect("forgotten"), vec![beta.id.clone()]);
        db.forget_done(&beta.id).expect("forget done");
        assert!(db.forgotten().expect("forgotten").is_empty());
        drop(db);

        // Migrated, it is the schema a new database gets.
        let fresh = dir.path().join("fresh.db");
        Db::open(&fresh).expect("fresh");
        assert_eq!(schema(&path), schema(&fresh));
    }

    /// A database of version 6 (one host serving a shared database, under
    /// the serving lease) opens with its sprites and hosts; the sprites are
    /// held by nobody until a host claims them, and the lease is gone.
    #[test]
    fn a_version_6_database_migrates_with_its_sprites_and_hosts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        let mut conn = Connection::open(&path).expect("open");
        let tx = conn.transaction().expect("tx");
        for m in &MIGRATIONS[..6] {
            tx.execute_batch(m.sql).expect("migration");
        }
        tx.pragma_update(None, "user_version", 6).expect("version");
        tx.execute_batch(
            "INSERT INTO sprites (id, name, image, url_auth, labels, limits, environment, created_at, updated_at)
               VALUES ('id-a', 'a', 'tiny', 'sprite', '[]', '{\"cpus\":1.0,\"ram_mb\":512,\"storage_gb\":10}', '{}', 't', 't');
             INSERT INTO snapshots (sprite_id, at_ms, stored_bytes, data_bytes) VALUES ('id-a', 5, 6, 7);
             INSERT INTO hosts (id, advertise, started_ms, seen_ms) VALUES ('h1', 'http://h1', 1, 2);
             INSERT INTO serving_lease (one, host_id, epoch, expires_ms) VALUES (1, 'h1', 3, 4);",
        )
        .expect("rows");
        tx.commit().expect("commit");
        drop(conn);

        let db = Db::open(&path).expect("open");
        assert_eq!(user_version(&path), LATEST);
        assert_eq!(db.get("a").expect("get").expect("a").id, "id-a");
        assert!(db.held().expect("leases").is_empty());
        // A snapshot from before is named as before (epoch 0).
        let snap = db.last_snapshot("id-a").expect("snapshots").expect("kept");
        assert_eq!((snap.at_ms, snap.stored_bytes, snap.epoch), (5, 6, 0));
        assert_eq!(db.held_by("id-a").expect("held"), None);
        // The host joins again under a new epoch, and claims its sprite.
        let lease = db
            .join("h1", "http://h1", 60_000, &Default::default())
            .expect("join");
        assert_eq!(lease.epoch, 1);
        db.fence(&lease);
        assert!(matches!(
            db.claim("id-a").expect("claim"),
            crate::db::hosts::Claimed::Mine { moved: false, .. }
        ));
        drop(db);
        let conn = Connection::open(&path).expect("open");
        let advertise: String = conn
            .query_row("SELECT advertise FROM hosts WHERE id = 'h1'", [], |r| {
                r.get(0)
            })
            .expect("host kept");
        assert_eq!(advertise, "http://h1");
        let lease_table: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'serving_lease'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(lease_table, 0);
    }

    /// A database of the first schema version, with rows in every table
    /// it knows, opens on this build with all of them and the new table.
    #[test]
    fn a_version_1_database_migrates_with_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        std::fs::write(&path, UNVERSIONED).expect("write");
        let mut conn = Connection::open(&path).expect("open");
        let tx = conn.transaction().expect("tx");
        tx.execute_batch(V1).expect("v1");
        tx.pragma_update(None, "user_version", 1).expect("version");
        tx.commit().expect("commit");
        drop(conn);
        let before: Vec<_> = {
            let db_rows = Connection::open(&path).expect("open");
            let mut st = db_rows
                .prepare("SELECT name, labels, limits FROM sprites ORDER BY name")
                .expect("prepare");
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .expect("query");
            rows.collect::<Result<_, _>>().expect("rows")
        };

        let db = Db::open(&path).expect("open");
        assert_eq!(user_version(&path), LATEST);
        let alpha = db.get("alpha").expect("get").expect("alpha");
        assert_eq!(alpha.labels, ["blue", "team-a"]);
        assert_eq!(db.privileges_policy(&alpha.id).expect("read"), None);
        db.set_privileges_policy(&alpha.id, Some("{}"))
            .expect("write");
        assert_eq!(
            db.privileges_policy(&alpha.id).expect("read").as_deref(),
            Some("{}")
        );
        drop(db);
        let conn = Connection::open(&path).expect("open");
        let mut st = conn
            .prepare("SELECT name, labels, limits FROM sprites ORDER BY name")
            .expect("prepare");
        let after: Vec<(String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(after, before);
    }

    #[test]
    fn a_database_from_a_newer_sprited_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        let conn = Connection::open(&path).expect("create");
        conn.pragma_update(None, "user_version", LATEST + 1)
            .expect("set version");
        conn.execute_batch("CREATE TABLE from_the_future (x TEXT)")
            .expect("table");
        drop(conn);
        let before = std::fs::read(&path).expect("read");

        let err = Db::open(&path).err().expect("a newer database was opened");
        assert!(
            matches!(err, DbError::TooNew { found, known } if found == LATEST + 1 && known == LATEST),
            "{err}"
        );
        assert!(err.to_string().contains("newer sprited"), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
        assert_eq!(user_version(&path), LATEST + 1);
    }
}
