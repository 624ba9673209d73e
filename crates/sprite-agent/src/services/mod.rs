//! Services: long-running processes the agent supervises (see
//! `sprites_api::service` for the wire types and `ops` for each operation).
//!
//! - `store`: definitions, one JSON file each under `<state>/services/`
//! - `logs`: `<state>/logs/<name>.log`, rotated by size
//! - `needs`: the dependency graph and the start order
//! - `supervisor`: one task per service: its process, crashes, backoff
//! - `output`: a run's stdout/stderr into the log and to followers
//! - `ops`: the protocol side: a `ServiceOp` in, replies and events out
//!
//! `<state>` is `/.sprite` unless `SPRITE_AGENT_STATE_DIR` says otherwise
//! (host tests). Service operations wait (up to [`BOOT_WAIT`]) until boot
//! has started every service, so the first call after a cold wake sees
//! them running, as if the sprite had never stopped; everything else
//! (exec, sessions) is served at once. The registry (definitions and
//! supervisors by name) sits
//! behind one async lock, held only for short bookkeeping: checks, the
//! file write, queueing a command. What a command does to a process
//! (stopping takes up to its timeout) happens in the supervisor's task,
//! never under the lock, so listing never waits for a slow stop.

mod logs;
mod needs;
mod ops;
mod output;
mod store;
mod supervisor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sprites_api::service::{Service, ServiceSpec};
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

use crate::log::log;
use crate::session::reaper::Reaper;

pub use ops::serve;

use self::logs::LogFile;
use self::output::Output;
use self::store::{Record, Store};
use self::supervisor::{Command, Status, Step, Unit};

/// Environment variable naming the state directory (default `/.sprite`).
pub const STATE_DIR_ENV: &str = "SPRITE_AGENT_STATE_DIR";
const DEFAULT_STATE_DIR: &str = "/.sprite";
/// Longest a service operation waits for boot to start the services.
pub const BOOT_WAIT: Duration = Duration::from_secs(10);

/// The state directory this agent uses.
pub fn state_dir() -> PathBuf {
    std::env::var_os(STATE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

struct Entry {
    record: Record,
    unit: Arc<Unit>,
}

#[derive(Default)]
struct Registry {
    /// Why services cannot work (the state directory is unusable); set at boot.
    broken: Option<String>,
    store: Option<Store>,
    entries: BTreeMap<String, Entry>,
}

impl Registry {
    fn graph(&self) -> needs::Graph {
        self.entries
            .iter()
            .map(|(name, e)| (name.clone(), e.record.spec.needs.clone()))
            .collect()
    }

    fn listing(&self, name: &str) -> Option<Service> {
        self.entries.get(name).map(|e| listing(&e.record, &e.unit))
    }
}

fn listing(record: &Record, unit: &Unit) -> Service {
    let spec = &record.spec;
    Service {
        name: record.name.clone(),
        cmd: spec.cmd.clone(),
        args: spec.args.clone(),
        needs: spec.needs.clone(),
        http_port: spec.http_port,
        env: spec.env.clone(),
        dir: spec.dir.clone(),
        state: Some(unit.listing()),
    }
}

/// The sprite's services.
pub struct Services {
    reaper: Reaper,
    services_dir: PathBuf,
    logs_dir: PathBuf,
    registry: Arc<Mutex<Registry>>,
    shutting_down: AtomicBool,
    /// Set once boot has started (or tried) every service.
    booted: watch::Sender<bool>,
}

impl Services {
    /// Load the definitions and start every service not marked stopped, in
    /// the background: the agent answers connections meanwhile (service
    /// operations wait until the definitions are loaded).
    pub fn boot(reaper: Reaper, state_dir: &Path) -> Arc<Services> {
        let registry = Arc::new(Mutex::new(Registry::default()));
        // Taken before anyone else can see the registry, so no operation
        // runs before the definitions are in.
        let guard = registry.clone().try_lock_owned().ok();
        let services = Arc::new(Services {
            reaper,
            services_dir: state_dir.join("services"),
            logs_dir: state_dir.join("logs"),
            registry,
            shutting_down: AtomicBool::new(false),
            booted: watch::Sender::new(false),
        });
        tokio::spawn(services.clone().start_all(guard));
        services
    }

    async fn start_all(self: Arc<Self>, guard: Option<OwnedMutexGuard<Registry>>) {
        self.load_and_start(guard).await;
        self.booted.send_replace(true);
    }

    /// Wait (bounded) until boot has started the services.
    pub async fn booted(&self) {
        let mut rx = self.booted.subscribe();
        let _ = tokio::time::timeout(BOOT_WAIT, rx.wait_for(|done| *done)).await;
    }

    async fn load_and_start(&self, guard: Option<OwnedMutexGuard<Registry>>) {
        let mut reg = match guard {
            Some(g) => g,
            None => self.registry.clone().lock_owned().await,
        };
        let (services_dir, logs_dir) = (self.services_dir.clone(), self.logs_dir.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let store = Store::open(services_dir)?;
            store::ensure_dir(&logs_dir)?;
            Ok::<_, std::io::Error>((store.load_all(), store))
        })
        .await;
        let ((records, notes), store) = match opened {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => {
                log!("services unavailable: {e}");
                reg.broken = Some(format!("services are unavailable: {e}"));
                return;
            }
            Err(e) => {
                reg.broken = Some(format!("services are unavailable: {e}"));
                return;
            }
        };
        for n in notes {
            log!("services: {n}");
        }
        reg.store = Some(store);
        for record in records {
            let unit = self.unit(&record.name, record.spec.clone(), !record.stopped);
            reg.entries
                .insert(record.name.clone(), Entry { record, unit });
        }
        let (order, notes) = needs::start_order(&reg.graph());
        for n in &notes {
            log!("services: {n}");
        }
        drop(reg);

        // One after the other, in needs order: each start is a fork and
        // exec, so many services cost milliseconds each.
        for name in order {
            let steps = {
                let reg = self.registry.lock().await;
                if self.shutting_down.load(Ordering::SeqCst) {
                    return;
                }
                let Some(entry) = reg.entries.get(&name) else {
                    continue;
                };
                if entry.record.stopped || entry.unit.status() != Status::Starting {
                    continue;
                }
                warn_about_needs(&reg, &entry.record, &entry.unit);
                entry.unit.order(Command::Start {
                    replace: false,
                    stop_timeout: ops::DEFAULT_STOP_TIMEOUT,
                })
            };
            if let Some(mut steps) = steps {
                while steps.recv().await.is_some() {}
            }
        }
    }

    fn unit(&self, name: &str, spec: ServiceSpec, queued: bool) -> Arc<Unit> {
        let output = Output::new(LogFile::new(&self.logs_dir, name), name);
        Unit::spawn(name, spec, queued, output, self.reaper.clone())
    }

    /// Stop every service (SIGTERM, SIGKILL after `grace`) without marking
    /// any stopped: they start again at the next boot.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let units: Vec<Arc<Unit>> = {
            let reg = self.registry.lock().await;
            reg.entries.values().map(|e| e.unit.clone()).collect()
        };
        let mut waits = Vec::new();
        for unit in &units {
            if let Some(steps) = unit.order(Command::Shutdown { timeout: grace }) {
                waits.push(steps);
            }
        }
        let all = async {
            for mut steps in waits {
                while steps.recv().await.is_some() {}
            }
        };
        // A supervisor busy with a long stop would hold the queue: do not
        // wait for it past the grace.
        if tokio::time::timeout(grace + Duration::from_secs(1), all)
            .await
            .is_err()
        {
            for unit in &units {
                if let Some(pid) = unit.pid() {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

/// Note in `record`'s log each need that is not running: it starts anyway
/// (a need is an order, not a health check).
fn warn_about_needs(reg: &Registry, record: &Record, unit: &Unit) {
    for need in &record.spec.needs {
        match reg.entries.get(need) {
            None => unit.output.note(&format!(
                "needs {need:?}, which is not defined; starting anyway"
            )),
            Some(e) => {
                let status = e.unit.status();
                if status != Status::Running {
                    unit.output.note(&format!(
                        "needs {need:?}, which is {}; starting anyway",
                        status.as_str()
                    ));
                }
            }
        }
    }
}

/// Drain a command's steps to its end (the last one, if any).
async fn finish(mut steps: tokio::sync::mpsc::UnboundedReceiver<Step>) -> Option<Step> {
    let mut last = None;
    while let Some(s) = steps.recv().await {
        last = Some(s);
    }
    last
}
