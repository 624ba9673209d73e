//! The metadata database: which sprites exist and everything the daemon
//! keeps about them outside their volumes. The volume is the truth for a
//! sprite's files; this is the truth for which sprites exist.
//!
//! SQLite (`<data>/meta.db`) is the embedded default; `--database
//! postgres://...` keeps it in PostgreSQL instead, the same tables made by
//! the same migrations. One module per table group, each adding its
//! methods to [`Db`] in SQL both engines take ([`sql`]); the schema's
//! history is [`migrations`], applied in order when the database is
//! opened. A database written by a newer sprited (a schema version this
//! build does not know) is refused, never opened.

mod checkpoints;
mod cold;
mod dump;
pub mod hosts;
mod migrations;
mod network;
mod privileges;
mod sprites;
pub(crate) mod sql;
pub mod store_lock;
mod tasks;
mod tokens;
mod usage;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use rusqlite::{Connection, OpenFlags};

pub use checkpoints::CheckpointRecord;
pub use cold::{ColdCopy, ColdState, Snapshot};
pub use dump::{Row as DumpRow, SpriteDump};
pub use migrations::LATEST as SCHEMA_VERSION;
pub use sprites::{Limits, SpriteRecord};
pub use sql::Engine;
pub use tasks::TaskRow;
pub use tokens::TokenRow;
pub use usage::{MeterState, Usage, UsageRow, UsageSample};

use sql::Conn;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    #[error("the metadata database cannot be reached: {0}")]
    Unavailable(String),
    #[error(
        "this host ({host_id}) no longer serves the metadata database: another host took its \
         lease (this host's was epoch {epoch})"
    )]
    Fenced { host_id: String, epoch: i64 },
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a stored value is not what it should be: {0}")]
    Type(String),
    #[error("a sprite named {0} already exists")]
    Duplicate(String),
    #[error("a sprite's metadata from the object store cannot be loaded: {0}")]
    Dump(String),
    #[error("the database lock is poisoned")]
    Poisoned,
    #[error("restricting {path} to the daemon: {source}")]
    Permissions {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the metadata database has schema version {found} but this sprited knows versions up \
         to {known}: it was written by a newer sprited; run that release (or a newer one) on it"
    )]
    TooNew { found: u32, known: u32 },
}

/// What PostgreSQL said (its message and SQLSTATE), or what failed on the
/// way to it: `postgres::Error` alone shows only "db error".
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl DbError {
    /// A uniqueness constraint refused a write (a name taken).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::ConstraintViolation
            }
            DbError::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }
}

/// Where the metadata lives: the `--database` flag. Shown (`Display`,
/// `Debug`) without a password.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (the default: `<data>/meta.db`).
    File(std::path::PathBuf),
    /// A PostgreSQL database (`postgres://` or `postgresql://` URL).
    Postgres(String),
}

impl Location {
    /// `postgres://...` or `postgresql://...`: PostgreSQL; anything else is
    /// refused (a SQLite file is the default, not given by URL).
    pub fn parse_url(url: &str) -> Result<Location, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.parse::<postgres::Config>()
                .map_err(|e| format!("--database: {e}"))?;
            Ok(Location::Postgres(url.to_string()))
        } else {
            Err("--database takes a postgres:// URL (SQLite in the data dir is the default)".into())
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location({self})")
    }
}

/// A database URL with its password (if any) replaced by `***`, and its
/// query (which may carry one: `?password=`) left out.
fn without_password(url: &str) -> String {
    let url = url.split('?').next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    match rest.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            let hidden = if rest[..rest.len() - host.len() - 1].contains(':') {
                ":***"
            } else {
                ""
            };
            format!("{scheme}://{user}{hidden}@{host}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

/// A PostgreSQL connection, made again when it was lost.
struct PgState {
    config: postgres::Config,
    client: Option<postgres::Client>,
    /// Statements prepared on `client`, by their SQL as written here.
    statements: HashMap<String, postgres::Statement>,
    /// Connections made so far: the session `client` is (a session's
    /// advisory locks end with it).
    sessions: u64,
}

/// How long a connection to PostgreSQL may take to make.
const PG_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl PgState {
    fn client(&mut self) -> Result<&mut postgres::Client, DbError> {
        if self
            .client
            .as_ref()
            .is_some_and(postgres::Client::is_closed)
        {
            self.client = None;
        }
        if self.client.is_none() {
            self.statements.clear();
            let client = self
                .config
                .connect(postgres::NoTls)
                .map_err(|e| DbError::Unavailable(e.to_string()))?;
            self.client = Some(client);
            self.sessions += 1;
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => Err(DbError::Unavailable("no connection".into())),
        }
    }

    /// After an error: a connection that broke is dropped (made again on
    /// the next call), and the error says the database is unreachable.
    fn after(&mut self, e: DbError) -> DbError {
        // The server ending sessions (a restart: class 57, operator
        // intervention) or the connection failing (class 08) is the
        // database being away, as is a connection found closed.
        let away = match &e {
            DbError::Postgres(pe) => pe.code().is_some_and(|c| {
                let code = c.code();
                code.starts_with("57") || code.starts_with("08")
            }),
            _ => false,
        };
        if away
            || self
                .client
                .as_ref()
                .is_some_and(postgres::Client::is_closed)
        {
            self.client = None;
            self.statements.clear();
            return DbError::Unavailable(e.to_string());
        }
        e
    }
}

enum Backend {
    Sqlite(Lite),
    Postgres(Box<Mutex<PgState>>),
}

/// How many read-only connections a SQLite database keeps beside its one
/// writer: as many reads as the host has cores, say, each its own.
const SQLITE_READERS: usize = 2;

/// SQLite's connections: one that writes (every write is one at a time
/// anyway: the database has one write lock), and a few that only read.
/// In WAL mode a reader never waits for the writer, so a `GET` is not
/// queued behind a create's commit and its flush to disk (each 1–40 ms
/// under load), as it was with one connection for everything.
struct Lite {
    /// Before the writer: dropped first, so that the writer is the last
    /// connection to close and folds the WAL back into the database.
    readers: Vec<Mutex<Connection>>,
    writer: Mutex<Connection>,
    /// Which reader the next read tries first.
    next: AtomicUsize,
}

/// `f` run where it may block: a worker of the daemon's multi-thread
/// runtime hands its other tasks to another thread first
/// (`block_in_place`), so a wait for the database's lock, or for its flush
/// to disk, does not stall requests that never touch it. Elsewhere (no
/// runtime, a current-thread runtime in some tests) `f` runs as it is.
fn step_aside<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Runs `f` with the connection behind `m`; where another holds it, the
/// wait and `f` both happen aside ([`step_aside`]). `aside` runs `f` aside
/// even when the lock is free (what will flush to disk).
fn with_conn<T>(
    m: &Mutex<Connection>,
    aside: bool,
    f: impl FnOnce(&mut Connection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    match m.try_lock() {
        Ok(mut c) if !aside => return f(&mut c),
        Ok(_) | Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Poisoned(_)) => return Err(DbError::Poisoned),
    }
    step_aside(|| f(&mut *m.lock().map_err(|_| DbError::Poisoned)?))
}

pub struct Db {
    backend: Backend,
    /// Writes made through this handle (see [`Db::generation`]).
    writes: AtomicU64,
    /// The serving lease every write checks, once [`Db::fence`] set it.
    fence: Mutex<Option<hosts::Lease>>,
    /// What this host holds, as it knows without asking (see
    /// [`hosts::Local`]).
    local: hosts::Local,
}

/// Runs `f` where a blocking PostgreSQL call may run: the `postgres`
/// client drives its connection with a runtime of its own, which cannot
/// be entered from a thread that drives the daemon's. On a worker of a
/// multi-thread runtime (the daemon's) the worker steps aside for the call
/// (`block_in_place`: its other tasks move to another thread); on a
/// current-thread runtime (some tests) the call runs on a scoped thread.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread => {
            std::thread::scope(|s| match s.spawn(f).join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            })
        }
        _ => step_aside(f),
    }
}

/// The database and its WAL files are the daemon's alone (0600): they
/// hold token hashes, policies and every sprite's settings. SQLite gives
/// the WAL files the main file's mode, and data dirs made by older
/// releases had 0644.
fn restrict(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::PermissionsExt;
    let mut name = path.as_os_str().to_owned();
    let main = path.to_path_buf();
    name.push("-wal");
    let wal = std::path::PathBuf::from(&name);
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    for p in [main, wal, std::path::PathBuf::from(shm)] {
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DbError::Permissions {
                    path: p.display().to_string(),
                    source,
                })
            }
        }
    }
    Ok(())
}

impl Db {
    /// Opens (or creates) the SQLite database and brings its schema up to
    /// date.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Refused before anything is written to it, the journal mode included.
        migrations::check_known(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        restrict(path)?;
        migrations::migrate(&mut conn)?;
        // Opened after the migrations: they read the schema as it is now.
        let readers = (0..SQLITE_READERS)
            .map(|_| {
                let r = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                r.busy_timeout(std::time::Duration::from_secs(5))?;
                Ok(Mutex::new(r))
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        Ok(Db {
            backend: Backend::Sqlite(Lite {
                readers,
                writer: Mutex::new(conn),
                next: AtomicUsize::new(0),
            }),
            writes: AtomicU64::new(0),
            fence: Mutex::new(None),
            local: Default::default(),
        })
    }

    /// Connects to a PostgreSQL database and brings its schema up to date
    /// (hosts opening it at once migrate it once).
    pub fn open_postgres(url: &str) -> Result<Db, DbError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| DbError::Unavailable(e.to_string()))?;
        config.connect_timeout(PG_CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("sprited");
        }
        let db = Db {
            backend: Backend::Postgres(Box::new(Mutex::new(PgState {
                config,
                client: None,
                statements: HashMap::new(),
                sessions: 0,
            }))),
            writes: AtomicU64::new(0),
            fence: Mutex::new(None),
            local: Default::default(),
        };
        db.pg(|client, _| migrations::migrate_postgres(client))?;
        Ok(db)
    }

    /// Opens the database at `location`.
    pub fn open_at(location: &Location) -> Result<Db, DbError> {
        match location {
            Location::File(path) => Db::open(path),
            Location::Postgres(url) => Db::open_postgres(url),
        }
    }

    pub fn engine(&self) -> Engine {
        match self.backend {
            Backend::Sqlite(_) => Engine::Sqlite,
            Backend::Postgres(_) => Engine::Postgres,
        }
    }

    /// Runs `f` with the PostgreSQL client, off the daemon's runtime.
    fn pg<T: Send>(
        &self,
        f: impl FnOnce(
                &mut postgres::Client,
                &mut HashMap<String, postgres::Statement>,
            ) -> Result<T, DbError>
            + Send,
    ) -> Result<T, DbError> {
        self.pg_session(|client, statements, _| f(client, statements))
    }

    /// [`Db::pg`], also telling `f` which session the client is (the
    /// connections made so far: a session's advisory locks end with it).
    fn pg_session<T: Send>(
        &self,
        f: impl FnOnce(
                &mut postgres::Client,
                &mut HashMap<String, postgres::Statement>,
                u64,
            ) -> Result<T, DbError>
            + Send,
    ) -> Result<T, DbError> {
        let Backend::Postgres(state) = &self.backend else {
            return Err(DbError::Type("not a PostgreSQL database".into()));
        };
        off_runtime(|| {
            let mut state = state.lock().map_err(|_| DbError::Poisoned)?;
            let state = &mut *state;
            let res = match state.client() {
                Ok(_) => match state.client.as_mut() {
                    Some(client) => f(client, &mut state.statements, state.sessions),
                    None => Err(DbError::Unavailable("no connection".into())),
                },
                Err(e) => Err(e),
            };
            res.map_err(|e| state.after(e))
        })
    }

    /// From now on every write through this handle checks, in its own
    /// transaction, that `lease` is still the serving lease (see
    /// [`hosts`]); a write after another host took it is refused.
    pub fn fence(&self, lease: &hosts::Lease) {
        if let Ok(mut f) = self.fence.lock() {
            *f = Some(lease.clone());
        }
    }

    fn fence_now(&self) -> Result<Option<hosts::Lease>, DbError> {
        Ok(self.fence.lock().map_err(|_| DbError::Poisoned)?.clone())
    }

    /// Runs statements on the database (each its own transaction; each
    /// write checks the fence).
    pub(crate) fn run<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, DbError> + Send,
    ) -> Result<T, DbError> {
        let fence = self.fence_now()?;
        let fence = fence.as_ref();
        match &self.backend {
            Backend::Sqlite(l) => with_conn(&l.writer, false, |conn| {
                f(&mut sql::Lite {
                    conn,
                    writes: &self.writes,
                    fence,
                })
            }),
            Backend::Postgres(_) => self.pg(|client, statements| {
                f(&mut sql::Pg {
                    client,
                    statements,
                    writes: &self.writes,
                    fence,
                })
            }),
        }
    }

    /// Runs statements that only read. On SQLite they run on a connection
    /// of their own, beside the writer and never waiting for it; each
    /// reads the database as the last write that finished left it. A write
    /// there is refused (the connection is read-only), so what reads and
    /// then writes on what it read goes through [`Db::run`] or [`Db::tx`].
    pub(crate) fn read<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, DbError> + Send,
    ) -> Result<T, DbError> {
        let Backend::Sqlite(l) = &self.backend else {
            return self.run(f);
        };
        let n = l.readers.len();
        let first = l.next.fetch_add(1, Ordering::Relaxed);
        // The first reader free, else wait for one.
        let free = (0..n)
            .map(|i| &l.readers[(first + i) % n])
            .find_map(|r| r.try_lock().ok());
        let read = |conn: &Connection| {
            f(&mut sql::Lite {
                conn,
                writes: &self.writes,
                fence: None,
            })
        };
        match free {
            Some(conn) => read(&conn),
            None => with_conn(&l.readers[first % n], false, |conn| read(conn)),
        }
    }

    /// [`Db::run`] for a write whose loss to a power cut (not to a crash of
    /// the daemon: the kernel has it) costs nothing: a sprite's last
    /// activity or start time, rewritten at its next one. On SQLite its
    /// commit does not wait for the disk (`synchronous = NORMAL` for it),
    /// and the next write that does flushes it too. These come with every
    /// exec and every start, and each flush held the one writer 5–15 ms
    /// while 8 creates ran.
    pub(crate) fn run_unflushed<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, DbError> + Send,
    ) -> Result<T, DbError> {
        let fence = self.fence_now()?;
        let fence = fence.as_ref();
        let Backend::Sqlite(l) = &self.backend else {
            return self.run(f);
        };
        with_conn(&l.writer, false, |conn| {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            let res = f(&mut sql::Lite {
                conn,
                writes: &self.writes,
                fence,
            });
            conn.pragma_update(None, "synchronous", "FULL")?;
            res
        })
    }

    /// Runs statements in one transaction: all of them happen or none,
    /// and none unless the fence holds.
    pub(crate) fn tx<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, DbError> + Send,
    ) -> Result<T, DbError> {
        let fence = self.fence_now()?;
        self.tx_checking(fence.as_ref(), f)
    }

    /// [`Db::tx`] without the fence: what takes, renews and gives up the
    /// serving lease.
    pub(crate) fn unfenced_tx<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, DbError> + Send,
    ) -> Result<T, DbError> {
        self.tx_checking(None, f)
    }

    fn tx_checking<T: Send>(
        &self,
        fence: Option<&hosts::Lease>,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, DbError> + Send,
    ) -> Result<T, DbError> {
        let res = match &self.backend {
            // A transaction writes, and its commit waits for the disk:
            // always aside.
            Backend::Sqlite(l) => with_conn(&l.writer, true, |conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut c = sql::Lite {
                    conn: &tx,
                    writes: &self.writes,
                    fence: None,
                };
                if let Some(lease) = fence {
                    sql::check_fence(&mut c, lease)?;
                }
                let v = f(&mut c)?;
                tx.commit()?;
                Ok(v)
            })?,
            Backend::Postgres(_) => self.pg(|client, statements| {
                let mut tx = client.transaction()?;
                let mut c = sql::Pg {
                    client: &mut tx,
                    statements,
                    writes: &self.writes,
                    fence: None,
                };
                if let Some(lease) = fence {
                    sql::check_fence(&mut c, lease)?;
                }
                let v = f(&mut c)?;
                tx.commit()?;
                Ok(v)
            })?,
        };
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(res)
    }

    /// A number that changes whenever anything is written through this
    /// handle, which every write of the daemon goes through: a cache of
    /// rows read when it was `g` is current while it is still `g`.
    pub fn generation(&self) -> Result<u64, DbError> {
        Ok(self.writes.load(Ordering::SeqCst))
    }
}

/// For the tests of every table module: run a test on each engine.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Db, Engine, Location};

    /// Runs `test` once per engine, SQLite then PostgreSQL (a server of the
    /// test binary's, `sprites_test_support::postgres`); `fresh` gives it
    /// where a new, empty database of that engine is each time it is called.
    fn on_each_engine(test: impl Fn(&mut dyn FnMut() -> Location)) {
        for engine in [Engine::Sqlite, Engine::Postgres] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut n = 0;
            let mut fresh = || {
                n += 1;
                match engine {
                    Engine::Sqlite => Location::File(dir.path().join(format!("meta{n}.db"))),
                    Engine::Postgres => {
                        Location::Postgres(sprites_test_support::postgres::shared_database())
                    }
                }
            };
            eprintln!("--- on {engine:?}");
            test(&mut fresh);
        }
    }

    /// [`on_each_engine`], `fresh` opening the new database.
    pub(crate) fn each_engine(test: impl Fn(&mut dyn FnMut() -> Db)) {
        on_each_engine(|fresh| test(&mut || Db::open_at(&fresh()).expect("open a fresh database")));
    }

    /// [`each_engine`] with two handles on each fresh database (two hosts).
    pub(crate) fn each_engine_twice(test: impl Fn(&mut dyn FnMut() -> (Db, Db))) {
        on_each_engine(|fresh| {
            test(&mut || {
                let at = fresh();
                (
                    Db::open_at(&at).expect("open a fresh database"),
                    Db::open_at(&at).expect("open it again"),
                )
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::sprites::tests::rec;
    use super::Db;

    /// SQLite's readers: a read neither waits for a write in progress nor
    /// sees it, sees it once it is committed, and cannot write.
    #[test]
    fn reads_go_beside_the_writer() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Db::open(&dir.path().join("meta.db")).expect("open");
        db.insert(&rec("a")).expect("insert");
        let (began, inside) = std::sync::mpsc::channel();
        let (read, read_done) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let db = &db;
            let writer = s.spawn(move || {
                db.tx(move |c| {
                    c.execute(
                        "UPDATE sprites SET url_auth = 'public' WHERE name = 'a'",
                        &[],
                    )?;
                    let _ = began.send(());
                    // Held until the read beside it is done (or 10 s).
                    Ok(read_done.recv_timeout(Duration::from_secs(10)).is_ok())
                })
            });
            inside.recv().expect("the transaction began");
            let during = db.get("a").expect("read during the write");
            let _ = read.send(());
            assert_eq!(during.map(|r| r.url_auth), Some("sprite".to_string()));
            assert!(
                writer.join().expect("writer").expect("tx"),
                "the read waited for the writer"
            );
        });
        let after = db.get("a").expect("read after the write");
        assert_eq!(after.map(|r| r.url_auth), Some("public".to_string()));
        // A write where only reads go is refused, and changes nothing.
        let refused = db.read(|c| c.execute("DELETE FROM sprites", &[]));
        assert!(refused.is_err(), "{refused:?}");
        assert!(db.get("a").expect("get").is_some());
    }

    /// A write that does not wait for the disk is written all the same,
    /// and the writer flushes every other write again afterwards.
    #[test]
    fn unflushed_writes_land_and_the_rest_stay_flushed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("meta.db");
        let db = Db::open(&path).expect("open");
        db.insert(&rec("a")).expect("insert");
        db.set_last_active("id-a", "2026-12-06T00:00:00Z")
            .expect("set_last_active");
        let sync = db
            .run(|c| c.query_opt("PRAGMA synchronous", &[], |r| r.get::<i64>(0)))
            .expect("pragma");
        assert_eq!(sync, Some(2), "the writer is back to synchronous = FULL");
        drop(db);
        let db = Db::open(&path).expect("open again");
        let rec = db.get("a").expect("get").expect("a");
        assert_eq!(rec.last_active_at.as_deref(), Some("2026-12-06T00:00:00Z"));
    }

    /// A data dir of an older release (meta.db 0644) is tightened on open.
    #[test]
    fn the_database_is_the_daemons_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("meta.db");
        std::fs::write(&path, b"").expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let db = Db::open(&path).expect("open");
        db.generation().expect("usable");
        for name in ["meta.db", "meta.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .expect(name)
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
        }
    }
}

#[cfg(test)]
mod location {
    use super::Location;

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let shown = |u: &str| Location::parse_url(u).expect(u).to_string();
        assert_eq!(
            shown("postgres://sprited:s3cr:et@db.example:5432/meta?sslmode=disable&password=x"),
            "postgres://sprited:***@db.example:5432/meta"
        );
        assert_eq!(shown("postgresql://u@h/d"), "postgresql://u@h/d");
        assert_eq!(shown("postgres://h:5/d"), "postgres://h:5/d");
        let l = Location::parse_url("postgres://a:pw@h/d").expect("url");
        assert!(!format!("{l:?}").contains("pw"));
        assert!(Location::parse_url("sqlite:///x.db").is_err());
        assert!(Location::parse_url("/var/lib/x.db").is_err());
    }
}

/// Every table's statements, on both engines.
#[cfg(test)]
mod engines {
    use super::testing::each_engine;
    use super::*;

    fn sample(id: &str, minute: i64, cpu: f64, cpu_ns: u64, running: bool) -> UsageSample {
        UsageSample {
            sprite_id: id.into(),
            sprite_name: format!("name-{id}"),
            minute,
            usage: Usage {
                cpu_seconds: cpu,
                ram_gb_seconds: 2.0 * cpu,
                hot_storage_gb_seconds: 0.5,
                cold_storage_gb_hours: 0.0,
            },
            sampled_unix_ms: minute * 60_000,
            cpu_ns,
            running,
        }
    }

    #[test]
    fn tokens_tasks_policies_and_usage() {
        each_engine(|fresh| {
            let db = fresh();
            let g0 = db.generation().expect("generation");
            // Tokens: in order of creation, a scope or none, deletable once.
            for (id, at, scope) in [
                ("t2", "2026-01-02T00:00:00Z", None),
                ("t1", "2026-01-01T00:00:00Z", Some(r#"{"sprites":["a"]}"#)),
            ] {
                db.insert_token(&TokenRow {
                    id: id.into(),
                    name: format!("n-{id}"),
                    hash: format!("h-{id}"),
                    created_at: at.into(),
                    scope: scope.map(str::to_string),
                })
                .expect("insert token");
            }
            assert!(
                db.generation().expect("generation") > g0,
                "a write moves the generation"
            );
            let tokens = db.tokens().expect("tokens");
            assert_eq!(
                tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
                ["t1", "t2"]
            );
            assert_eq!(tokens[0].scope.as_deref(), Some(r#"{"sprites":["a"]}"#));
            assert_eq!(tokens[1].scope, None);
            assert!(db.delete_token("t1").expect("delete"));
            assert!(!db.delete_token("t1").expect("delete again"));

            // Tasks: replaced by name, sorted, deleted.
            db.put_task("s", "b", "x", 1).expect("task");
            db.put_task("s", "a", "y", 2).expect("task");
            db.put_task("s", "b", "z", 3).expect("task again");
            let tasks = db.tasks("s").expect("tasks");
            assert_eq!(
                tasks,
                [
                    TaskRow {
                        name: "a".into(),
                        started_at: "y".into(),
                        expires_unix_ms: 2
                    },
                    TaskRow {
                        name: "b".into(),
                        started_at: "z".into(),
                        expires_unix_ms: 3
                    },
                ]
            );
            db.delete_task("s", "a").expect("delete task");
            assert_eq!(db.tasks("s").expect("tasks").len(), 1);

            // Policies: set, replaced, cleared.
            assert_eq!(db.network_policy("s").expect("policy"), None);
            db.set_network_policy("s", "{}").expect("policy");
            db.set_network_policy("s", r#"{"rules":[]}"#)
                .expect("policy");
            assert_eq!(
                db.network_policy("s").expect("policy").as_deref(),
                Some(r#"{"rules":[]}"#)
            );
            db.set_privileges_policy("s", Some("p"))
                .expect("privileges");
            assert_eq!(
                db.privileges_policy("s").expect("privileges").as_deref(),
                Some("p")
            );
            db.set_privileges_policy("s", None).expect("privileges");
            assert_eq!(db.privileges_policy("s").expect("privileges"), None);

            // Usage: added up per minute, summed per day or in all; the
            // meter's state replaced.
            let day = 1440;
            db.record_usage(&[sample("a", 5, 1.0, 10, true), sample("b", 5, 4.0, 7, false)])
                .expect("usage");
            db.record_usage(&[
                sample("a", 5, 2.0, 20, false),
                sample("a", day + 1, 0.25, 30, true),
            ])
            .expect("usage");
            assert_eq!(
                db.meter_state("a").expect("meter"),
                Some(MeterState {
                    sampled_unix_ms: (day + 1) * 60_000,
                    cpu_ns: 30,
                    running: true
                })
            );
            assert_eq!(db.meter_state("nobody").expect("meter"), None);
            let all = db.usage(None, 0, i64::MAX, false).expect("usage");
            assert_eq!(all.len(), 2);
            assert_eq!((all[0].day, all[0].sprite_name.as_str()), (0, "name-a"));
            assert_eq!(all[0].usage.cpu_seconds, 3.25);
            assert_eq!(all[0].usage.ram_gb_seconds, 6.5);
            assert_eq!(all[0].usage.hot_storage_gb_seconds, 1.5);
            assert_eq!(all[1].usage.cpu_seconds, 4.0);
            let by_day = db.usage(Some("a"), 0, i64::MAX, true).expect("usage");
            assert_eq!(
                by_day
                    .iter()
                    .map(|r| (r.day, r.usage.cpu_seconds))
                    .collect::<Vec<_>>(),
                [(0, 3.0), (1, 0.25)]
            );
            assert!(db
                .usage(Some("a"), 6, day, false)
                .expect("usage")
                .is_empty());
        });
    }

    /// A copy in the object store whose fields all follow from `n`.
    fn copy(n: u64) -> ColdCopy {
        ColdCopy {
            at: format!("at{n}"),
            stored_bytes: n,
            data_bytes: 2 * n,
            epoch: n as i64 + 3,
        }
    }

    #[test]
    fn the_cold_tier_and_forgotten_sprites() {
        each_engine(|fresh| {
            let db = fresh();
            assert_eq!(db.evicted("s").expect("evicted"), None);
            db.set_evicted("s", &copy(1)).expect("evict");
            db.set_evicted("s", &copy(2)).expect("evict again");
            assert_eq!(db.evicted("s").expect("evicted"), Some(copy(2)));
            db.set_cold_checkpoint("s", "v0", &copy(3))
                .expect("cold checkpoint");
            db.set_cold_checkpoint("s", "v0", &copy(4))
                .expect("cold checkpoint again");
            db.set_cold_checkpoint("s", "v1", &copy(5))
                .expect("cold checkpoint");
            assert_eq!(db.cold_count().expect("count"), 3);
            let cks = db.cold_checkpoints("s").expect("cold checkpoints");
            assert_eq!(cks.keys().collect::<Vec<_>>(), ["v0", "v1"]);
            assert_eq!(cks["v0"].stored_bytes, 4);
            db.set_local("s").expect("local");
            assert_eq!(db.evicted("s").expect("evicted"), None);
            assert_eq!(db.cold_count().expect("count"), 2);
            assert!(db.delete_checkpoint("s", "v0").is_ok());
            assert_eq!(db.cold_count().expect("count"), 1);

            let snap = |at_ms: u64| Snapshot {
                at_ms,
                stored_bytes: at_ms + 1,
                data_bytes: at_ms + 2,
                epoch: at_ms as i64 * 10,
            };
            for at in [5, 9, 7] {
                db.add_snapshot("s", &snap(at)).expect("snapshot");
            }
            assert_eq!(
                db.snapshots("s").expect("snapshots"),
                [snap(9), snap(7), snap(5)]
            );
            assert_eq!(db.last_snapshot("s").expect("last"), Some(snap(9)));
            db.delete_snapshot("s", 9).expect("delete snapshot");
            assert_eq!(db.last_snapshot("s").expect("last"), Some(snap(7)));
            db.delete_snapshots("s").expect("delete snapshots");
            assert_eq!(db.last_snapshot("s").expect("last"), None);

            // A destroyed sprite is remembered until its copies are gone.
            db.insert(&super::sprites::tests::rec("gone"))
                .expect("insert");
            db.set_evicted("id-gone", &copy(1)).expect("evict");
            db.delete("id-gone").expect("destroy");
            assert_eq!(db.evicted("id-gone").expect("evicted"), None);
            assert_eq!(db.forgotten().expect("forgotten"), ["id-gone"]);
            db.forget_done("id-gone").expect("done");
            assert!(db.forgotten().expect("forgotten").is_empty());
        });
    }

    /// A listing's page asks the cold tier once: each sprite's evicted
    /// copy, its cold checkpoints (count and bytes) and newest snapshot,
    /// as the one-sprite queries answer them.
    #[test]
    fn cold_states_answer_a_page_at_once() {
        each_engine(|fresh| {
            let db = fresh();
            for name in ["a", "b", "c", "d"] {
                db.insert(&super::sprites::tests::rec(name))
                    .expect("insert");
            }
            let snap = |at_ms: u64| Snapshot {
                at_ms,
                stored_bytes: 1,
                data_bytes: 1,
                epoch: 0,
            };
            db.set_evicted("id-a", &copy(7)).expect("evict");
            db.set_cold_checkpoint("id-a", "v0", &copy(3_000_000_000))
                .expect("cold checkpoint");
            db.set_cold_checkpoint("id-a", "v1", &copy(4_000_000_000))
                .expect("cold checkpoint");
            db.set_cold_checkpoint("id-b", "v0", &copy(5))
                .expect("cold");
            for at in [5, 9, 7] {
                db.add_snapshot("id-b", &snap(at)).expect("snapshot");
            }
            db.add_snapshot("id-c", &snap(1_700_000_000_000))
                .expect("snapshot");
            let states = db
                .cold_states(&["id-a", "id-b", "id-c", "id-d", "id-nobody"])
                .expect("cold states");
            assert_eq!(
                states.get("id-a"),
                Some(&ColdState {
                    evicted: Some(copy(7)),
                    checkpoints: 2,
                    checkpoint_bytes: 7_000_000_000,
                    last_snapshot_ms: None,
                })
            );
            assert_eq!(
                states.get("id-b"),
                Some(&ColdState {
                    evicted: None,
                    checkpoints: 1,
                    checkpoint_bytes: 5,
                    last_snapshot_ms: Some(9),
                })
            );
            assert_eq!(
                states.get("id-c").and_then(|s| s.last_snapshot_ms),
                Some(1_700_000_000_000)
            );
            // Nothing in the cold tier, and no such sprite: no entry.
            assert_eq!(states.len(), 3);
            assert!(db.cold_states(&[]).expect("no ids").is_empty());
            // The same answers as the one-sprite queries.
            for id in ["id-a", "id-b", "id-c", "id-d"] {
                let one = db.cold_states(&[id]).expect("one");
                let state = one.get(id).cloned().unwrap_or_default();
                assert_eq!(state.evicted, db.evicted(id).expect("evicted"));
                let cks = db.cold_checkpoints(id).expect("cold checkpoints");
                assert_eq!(state.checkpoints, cks.len() as u64);
                assert_eq!(
                    state.checkpoint_bytes,
                    cks.values().map(|c| c.stored_bytes).sum::<u64>()
                );
                assert_eq!(
                    state.last_snapshot_ms,
                    db.last_snapshot(id).expect("last").map(|s| s.at_ms)
                );
            }
        });
    }

    /// Two hosts opening one new PostgreSQL database at once: each
    /// migration is applied once, both end at the latest version.
    #[test]
    fn postgres_migrates_once_when_opened_at_once() {
        let url = sprites_test_support::postgres::shared_database();
        let opened: Vec<Result<Db, DbError>> = std::thread::scope(|s| {
            let a = s.spawn(|| Db::open_postgres(&url));
            let b = s.spawn(|| Db::open_postgres(&url));
            vec![a.join().expect("a"), b.join().expect("b")]
        });
        for db in opened {
            let db = db.expect("open");
            let v = db
                .run(|c| {
                    c.query_opt("SELECT version FROM sprited_schema", &[], |r| {
                        r.get::<i64>(0)
                    })
                })
                .expect("version");
            assert_eq!(v, Some(i64::from(SCHEMA_VERSION)));
            db.insert(&super::sprites::tests::rec(&format!(
                "x{}",
                db.generation().expect("g")
            )))
            .ok();
        }
        // A database of a newer sprited is refused, and left as it was.
        let db = Db::open_postgres(&url).expect("reopen");
        db.run(|c| c.execute("UPDATE sprited_schema SET version = version + 1", &[]))
            .expect("bump");
        let err = Db::open_postgres(&url)
            .err()
            .expect("a newer database was opened");
        assert!(
            matches!(err, DbError::TooNew { found, known } if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
            "{err}"
        );
    }

    /// A server that goes away makes calls fail as unavailable, not
    /// corrupt; when it is back, the next call reconnects.
    #[test]
    fn postgres_down_is_unavailable_and_reconnects() {
        let mut pg = sprites_test_support::postgres::Postgres::start();
        let url = pg.create_database("sprited");
        let db = Db::open_postgres(&url).expect("open");
        db.insert(&super::sprites::tests::rec("a")).expect("insert");
        pg.stop();
        let err = db.get("a").expect_err("a read with the server down");
        assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
        let err = db.get("a").expect_err("again");
        assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
        pg.restart();
        assert_eq!(
            db.get("a").expect("after the restart").map(|r| r.name),
            Some("a".into())
        );
    }
}
