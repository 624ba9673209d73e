//! One service's supervisor: a task that owns its process and takes
//! commands (start, stop, signal, shut down) one at a time.
//!
//! States (`state.status`):
//!
//! ```text
//!            start                exit / failed start
//! stopped ----------> running ----------------------> failed (waits, backoff)
//!    ^  (starting at     |   ^                            |
//!    |   boot, queued)   |   +------- next_restart_at ----+
//!    |        stop       v
//!    +------------- stopping
//! ```
//!
//! Any exit that was not asked for is a crash: the service is started again
//! after 1 s, then 2, 4, ... up to 60 s; the delay starts over once a run
//! lasted [`STABLE`]. A start that fails (command not found, missing dir)
//! counts as a crash too. `restart_count` counts these automatic restarts
//! since the last explicit start.
//!
//! A service runs in its own process group (its pid is the group id).
//! Stopping sends SIGTERM to the group, then SIGKILL after the timeout; when
//! the main process is gone, whatever is left of its group gets the rest of
//! the time, then SIGKILL, so nothing of an old run survives into the next.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use sprites_api::agent::ExecRequest;
use sprites_api::service::{ServiceEvent, ServiceSpec, ServiceState};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::services::output::{self, now_ms, Output};
use crate::session::reaper::Reaper;
use crate::session::spawn::{self, ChildIo, Plan};
use crate::timestamp::rfc3339;
use crate::user::UserDb;

/// First restart delay after a crash.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run this long resets the restart delay.
pub const STABLE: Duration = Duration::from_secs(10);
/// What is left of a crashed run's process group gets this long after
/// SIGTERM before SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the exit after SIGKILL.
const AFTER_SIGKILL: Duration = Duration::from_secs(5);
const GROUP_POLL: Duration = Duration::from_millis(20);

/// `state.status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Stopped,
    Starting,
    Running,
    Stopping,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Stopped => "stopped",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Stopping => "stopping",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
struct State {
    status: Status,
    pid: Option<i32>,
    started_at: Option<SystemTime>,
    error: Option<String>,
    restart_count: u32,
    next_restart_at: Option<SystemTime>,
}

/// What a command did, step by step (the op turns steps into events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// SIGTERM went to run `instance`.
    Stopping {
        instance: u64,
    },
    /// The run is over (`None`: nothing was running, a pending restart or
    /// boot start was cancelled).
    Stopped {
        exit_code: Option<i32>,
    },
    Started {
        instance: u64,
        pid: i32,
    },
    AlreadyRunning {
        instance: u64,
        pid: i32,
    },
    /// The start failed; a restart is scheduled.
    Failed {
        message: String,
    },
    /// Stop or signal of a service with no process and nothing pending.
    NotRunning,
    Signalled,
}

pub enum Command {
    /// Start now (a pending restart is cancelled and the backoff reset).
    /// `replace`: a running process is stopped first; else it is left
    /// running (`AlreadyRunning`).
    Start {
        replace: bool,
        stop_timeout: Duration,
    },
    Stop {
        timeout: Duration,
    },
    Signal {
        signal: Signal,
    },
    /// Stop and end the supervisor (delete, agent exit). Not sticky.
    Shutdown {
        timeout: Duration,
    },
}

/// A command and where its steps go; the sender is dropped when done.
pub struct Order {
    pub command: Command,
    pub steps: mpsc::UnboundedSender<Step>,
}

/// A supervised service: its definition as last put, its state, its output.
pub struct Unit {
    pub name: String,
    spec: Mutex<ServiceSpec>,
    state: Mutex<State>,
    pub output: Arc<Output>,
    orders: mpsc::UnboundedSender<Order>,
}

impl Unit {
    /// Start the supervisor of `name`. `queued`: it will be started by the
    /// boot sequence (`starting` until then); else it is `stopped` until a
    /// command starts it.
    pub fn spawn(
        name: &str,
        spec: ServiceSpec,
        queued: bool,
        output: Output,
        reaper: Reaper,
    ) -> Arc<Unit> {
        let (orders, rx) = mpsc::unbounded_channel();
        let unit = Arc::new(Unit {
            name: name.to_string(),
            spec: Mutex::new(spec),
            state: Mutex::new(State {
                status: if queued {
                    Status::Starting
                } else {
                    Status::Stopped
                },
                pid: None,
                started_at: None,
                error: None,
                restart_count: 0,
                next_restart_at: None,
            }),
            output: Arc::new(output),
            orders,
        });
        let runner = Runner {
            unit: unit.clone(),
            reaper,
            orders: rx,
            run: None,
            instance: 0,
            fails: 0,
            retry_at: None,
            queued,
        };
        tokio::spawn(runner.run());
        unit
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Updates are plain assignments: a poisoned lock is still whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn spec(&self) -> ServiceSpec {
        self.spec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The definition the next start uses.
    pub fn set_spec(&self, spec: ServiceSpec) {
        *self.spec.lock().unwrap_or_else(|p| p.into_inner()) = spec;
    }

    pub fn status(&self) -> Status {
        self.state().status
    }

    pub fn pid(&self) -> Option<i32> {
        self.state().pid
    }

    /// `state` as the API shows it.
    pub fn listing(&self) -> ServiceState {
        let st = self.state().clone();
        ServiceState {
            name: self.name.clone(),
            status: st.status.as_str().to_string(),
            pid: st.pid,
            started_at: st.started_at.map(rfc3339),
            error: st.error,
            restart_count: st.restart_count,
            next_restart_at: st.next_restart_at.map(rfc3339),
        }
    }

    /// Queue a command; `None` when the supervisor has ended (deleted).
    pub fn order(&self, command: Command) -> Option<mpsc::UnboundedReceiver<Step>> {
        let (steps, rx) = mpsc::unbounded_channel();
        self.orders.send(Order { command, steps }).ok().map(|_| rx)
    }
}

/// The restart delay after `fails` failures in a row (1 s, 2 s, 4 s, ...).
pub fn backoff(fails: u32) -> Duration {
    let doublings = fails.saturating_sub(1).min(16);
    BACKOFF_MIN
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

struct Run {
    instance: u64,
    pid: i32,
    since: Instant,
    capture: std::pin::Pin<Box<dyn std::future::Future<Output = i32> + Send>>,
}

struct Runner {
    unit: Arc<Unit>,
    reaper: Reaper,
    orders: mpsc::UnboundedReceiver<Order>,
    run: Option<Run>,
    /// Starts so far; tags events of each run.
    instance: u64,
    /// Failures in a row, for the backoff.
    fails: u32,
    retry_at: Option<Instant>,
    /// Waiting for the boot sequence to start it.
    queued: bool,
}

impl Runner {
    async fn run(mut self) {
        loop {
            tokio::select! {
                code = wait_run(&mut self.run) => self.crashed(code).await,
                _ = sleep_until(self.retry_at), if self.retry_at.is_some() => {
                    self.retry_at = None;
                    self.state().restart_count += 1;
                    self.launch().await;
                }
                order = self.orders.recv() => {
                    let Some(order) = order else {
                        // Every handle is gone: nobody can stop it any more.
                        self.end(Duration::ZERO).await;
                        return;
                    };
                    if !self.obey(order).await {
                        return;
                    }
                }
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.unit.state()
    }

    fn note(&self, text: &str) {
        self.unit.output.note(text);
    }

    /// Carry out one order; `false` once the supervisor must end.
    async fn obey(&mut self, order: Order) -> bool {
        let Order { command, steps } = order;
        let step = |s: Step| {
            // The op may have gone (its client left): the command still runs.
            let _ = steps.send(s);
        };
        match command {
            Command::Start {
                replace,
                stop_timeout,
            } => {
                if let Some(run) = &self.run {
                    if !replace {
                        step(Step::AlreadyRunning {
                            instance: run.instance,
                            pid: run.pid,
                        });
                        return true;
                    }
                    step(Step::Stopping {
                        instance: run.instance,
                    });
                    let code = self.stop_run(stop_timeout).await;
                    step(Step::Stopped { exit_code: code });
                }
                self.retry_at = None;
                self.queued = false;
                self.fails = 0;
                self.state().restart_count = 0;
                step(self.launch().await);
            }
            Command::Stop { timeout } => {
                if let Some(run) = &self.run {
                    step(Step::Stopping {
                        instance: run.instance,
                    });
                    let code = self.stop_run(timeout).await;
                    if let Some(c) = code {
                        self.note(&format!("stopped (exit code {c})"));
                    }
                    self.set_stopped();
                    step(Step::Stopped { exit_code: code });
                } else if self.retry_at.is_some() || self.queued {
                    step(Step::Stopping {
                        instance: self.instance,
                    });
                    self.note("stopped (a pending start was cancelled)");
                    self.set_stopped();
                    step(Step::Stopped { exit_code: None });
                } else {
                    step(Step::NotRunning);
                }
            }
            Command::Signal { signal } => match &self.run {
                Some(run) => {
                    // ESRCH: the group is already gone, its exit is on its way.
                    let _ = killpg(Pid::from_raw(run.pid), signal);
                    step(Step::Signalled);
                }
                None => step(Step::NotRunning),
            },
            Command::Shutdown { timeout } => {
                self.end(timeout).await;
                step(Step::Stopped { exit_code: None });
                return false;
            }
        }
        true
    }

    /// Stop whatever runs, without marking the service stopped for good.
    async fn end(&mut self, timeout: Duration) {
        self.stop_run(timeout).await;
        self.retry_at = None;
        self.queued = false;
        self.set_stopped();
    }

    fn set_stopped(&mut self) {
        self.retry_at = None;
        self.queued = false;
        self.fails = 0;
        let mut st = self.state();
        st.status = Status::Stopped;
        st.pid = None;
        st.error = None;
        st.next_restart_at = None;
    }

    /// Start a run of the current definition. On failure a retry is
    /// scheduled.
    async fn launch(&mut self) -> Step {
        self.state().status = Status::Starting;
        let spec = self.unit.spec();
        let reaper = self.reaper.clone();
        let prepared = tokio::task::spawn_blocking(move || start(&spec, &reaper)).await;
        let started = match prepared {
            Ok(r) => r,
            Err(e) => Err(format!("start task failed: {e}")),
        };
        match started {
            Ok(spawned) => {
                let ChildIo::Pipes { stdout, stderr, .. } = spawned.io else {
                    // Services never get a terminal; unreachable in practice.
                    let _ = killpg(Pid::from_raw(spawned.pid as i32), Signal::SIGKILL);
                    return self.failed("no output pipes".into());
                };
                let pid = i32::try_from(spawned.pid).unwrap_or(i32::MAX);
                self.instance += 1;
                let instance = self.instance;
                let capture = output::capture(
                    self.unit.output.clone(),
                    instance,
                    stdout,
                    stderr,
                    spawned.exit,
                );
                self.run = Some(Run {
                    instance,
                    pid,
                    since: Instant::now(),
                    capture: Box::pin(capture),
                });
                {
                    let mut st = self.state();
                    st.status = Status::Running;
                    st.pid = Some(pid);
                    st.started_at = Some(SystemTime::now());
                    st.error = None;
                    st.next_restart_at = None;
                }
                self.note(&format!("started (pid {pid})"));
                Step::Started { instance, pid }
            }
            Err(message) => self.failed(message),
        }
    }

    /// A start failed: record it, schedule the retry.
    fn failed(&mut self, message: String) -> Step {
        self.fails = self.fails.saturating_add(1);
        let delay = backoff(self.fails);
        self.note(&format!(
            "failed to start: {message}; retrying in {}s",
            delay.as_secs()
        ));
        self.schedule(delay, message.clone());
        Step::Failed { message }
    }

    fn schedule(&mut self, delay: Duration, error: String) {
        self.retry_at = Some(Instant::now() + delay);
        let mut st = self.state();
        st.status = Status::Failed;
        st.pid = None;
        st.error = Some(error);
        st.next_restart_at = Some(SystemTime::now() + delay);
    }

    /// The run ended by itself.
    async fn crashed(&mut self, code: i32) {
        let Some(run) = self.run.take() else {
            return;
        };
        self.publish_exit(run.instance, code);
        self.fails = if run.since.elapsed() >= STABLE {
            1
        } else {
            self.fails.saturating_add(1)
        };
        let delay = backoff(self.fails);
        self.note(&format!(
            "exited with code {code}; restarting in {}s",
            delay.as_secs()
        ));
        self.schedule(delay, format!("exited with code {code}"));
        // The state already says it is down while the rest of its group
        // gets its grace.
        end_group(run.pid, Instant::now() + LEFTOVER_GRACE).await;
    }

    /// SIGTERM the run's group, SIGKILL after `timeout`; its exit code, or
    /// `None` when nothing ran.
    async fn stop_run(&mut self, timeout: Duration) -> Option<i32> {
        let mut run = self.run.take()?;
        self.state().status = Status::Stopping;
        let deadline = Instant::now() + timeout;
        let group = Pid::from_raw(run.pid);
        let _ = killpg(group, Signal::SIGTERM);
        let code = match tokio::time::timeout_at(deadline, &mut run.capture).await {
            Ok(code) => code,
            Err(_) => {
                let _ = killpg(group, Signal::SIGKILL);
                match tokio::time::timeout(AFTER_SIGKILL, &mut run.capture).await {
                    Ok(code) => code,
                    // Unkillable (stuck in the kernel): the reaper collects
                    // it whenever it goes.
                    Err(_) => 128 + Signal::SIGKILL as i32,
                }
            }
        };
        self.publish_exit(run.instance, code);
        end_group(run.pid, deadline).await;
        let mut st = self.state();
        st.pid = None;
        Some(code)
    }

    fn publish_exit(&self, instance: u64, code: i32) {
        self.unit.output.publish(
            instance,
            ServiceEvent {
                kind: "exit".into(),
                data: None,
                exit_code: Some(code),
                timestamp: now_ms(),
                log_files: None,
            },
        );
    }
}

/// Resolve and spawn the service's command (blocking: fork and exec).
fn start(spec: &ServiceSpec, reaper: &Reaper) -> Result<spawn::Spawned, String> {
    let req = ExecRequest {
        cmd: std::iter::once(spec.cmd.clone())
            .chain(spec.args.iter().cloned())
            .collect(),
        env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        dir: spec.dir.clone(),
        ..Default::default()
    };
    let users = UserDb::load();
    let prepared = match spawn::prepare(&req, &users)? {
        Plan::Run(p) => p,
        Plan::Fail { message, .. } => return Err(message.trim_end().to_string()),
    };
    spawn::spawn(&prepared, reaper).map_err(|e| {
        let (message, _) = spawn::failure(&spec.cmd, &e);
        message.trim_end().to_string()
    })
}

/// Wait for what is left of process group `pgid` (its leader is gone) until
/// `deadline`, SIGTERM first, SIGKILL at the deadline.
async fn end_group(pgid: i32, deadline: Instant) {
    let group = Pid::from_raw(pgid);
    if killpg(group, None) == Err(Errno::ESRCH) {
        return;
    }
    let _ = killpg(group, Signal::SIGTERM);
    while Instant::now() < deadline {
        if killpg(group, None) == Err(Errno::ESRCH) {
            return;
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
}

async fn wait_run(run: &mut Option<Run>) -> i32 {
    match run {
        Some(r) => (&mut r.capture).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0), BACKOFF_MIN);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
