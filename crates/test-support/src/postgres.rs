//! A real PostgreSQL server for the tests of sprited's `--database
//! postgres://`: Debian's `postgresql` package (installed by
//! `scripts/deps.sh --tests`), a cluster made by `initdb` in a temporary
//! directory, run as the `postgres` user on a free loopback port, stopped
//! by PID and removed when dropped.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::port::free_port;

/// How long a new cluster may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    bin: PathBuf,
    /// The cluster's directory (and its log), owned by `postgres`.
    dir: tempfile::TempDir,
}

/// Where Debian's packages put the server's programs (the newest major
/// version installed), or `SPRITED_PG_BINDIR`.
fn bindir() -> PathBuf {
    if let Ok(p) = std::env::var("SPRITED_PG_BINDIR") {
        return PathBuf::from(p);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "the PostgreSQL tests need Debian's postgresql package (scripts/deps.sh --tests \
             installs it), or SPRITED_PG_BINDIR: no /usr/lib/postgresql/<version>/bin/postgres"
        ),
    }
}

/// The `postgres` account's uid and gid: the server refuses to run as root.
fn postgres_user() -> (u32, u32) {
    let name = c"postgres";
    // SAFETY: getpwnam with a NUL-terminated name; the record it returns is
    // read at once, before any other call that could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "the PostgreSQL tests need the postgres account (made by Debian's postgresql package)"
    );
    // SAFETY: pw is a valid record (checked non-null above).
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

fn as_postgres(cmd: &mut Command) -> &mut Command {
    let (uid, gid) = postgres_user();
    cmd.uid(uid).gid(gid)
}

fn chown(path: &Path) {
    let (uid, gid) = postgres_user();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
}

impl Postgres {
    /// Makes a new cluster and starts it. Durability is off (`fsync`):
    /// these servers live for one test.
    pub fn start() -> Postgres {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("sprited-pg-")
            .tempdir()
            .expect("a directory for the cluster");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir data");
        chown(&data);
        let out = as_postgres(&mut Command::new(bin.join("initdb")))
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .current_dir(dir.path())
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            child: None,
            port: free_port(),
            bin,
            dir,
        };
        pg.run();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the server on its cluster and port, and waits until it
    /// accepts connections.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("the server's log");
        chown(&self.log());
        let err = log.try_clone().expect("log");
        let child = as_postgres(&mut Command::new(self.bin.join("postgres")))
            .arg("-D")
            .arg(self.data())
            // TCP on loopback only: no Unix socket.
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k", ""])
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                    panic!("postgres exited at start ({status}); its log:\n{log}");
                }
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                panic!("postgres did not accept connections in {START_TIMEOUT:?}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: sessions are ended) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's PID; no memory is involved.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
        }
    }

    /// Starts it again on the same cluster and port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// A URL for `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs one SQL command as the superuser (in database `postgres`);
    /// its output, or a panic saying what failed.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// Runs one SQL command as the superuser in `database`: its rows, one
    /// a line, columns split by `|`.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Makes a new, empty database and gives its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql(&format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server for a whole test binary, made when first asked for and
/// stopped (its cluster removed) when the binary exits.
static SHARED: std::sync::Mutex<Option<Postgres>> = std::sync::Mutex::new(None);

extern "C" fn stop_shared() {
    if let Ok(mut shared) = SHARED.lock() {
        drop(shared.take());
    }
}

/// A new, empty database on the test binary's shared server: its URL.
pub fn shared_database() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if shared.is_none() {
        *shared = Some(Postgres::start());
        // SAFETY: atexit with a function that takes nothing and is safe to
        // run at exit (it only locks a static and drops the server).
        unsafe { libc::atexit(stop_shared) };
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("t{}_{n}", std::process::id());
    match shared.as_ref() {
        Some(pg) => pg.create_database(&name),
        None => unreachable!("started above"),
    }
}
