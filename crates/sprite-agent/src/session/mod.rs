//! Sessions: the commands the agent runs and the clients attached to them.
//!
//! This module is one session (below); its parts are the submodules:
//! `registry` (sessions by id, starting one), `spawn` and `pty` (request to
//! child), `reaper` (the one `waitpid` loop), `pump` and `scrollback` (the
//! output), `attach` (a client streaming a session), `kill` and `signame`
//! (signalling one).
//!
//! One running command and the clients attached to it.
//!
//! A session's output is read by its pump (see `pump`) and published here:
//! to every attached client through a bounded channel (so a slow client
//! slows the command instead of growing a buffer), and to the scrollback.
//! TTY sessions keep all recent output as scrollback, replayed on every
//! attach. Non-TTY sessions only keep what was produced while no client was
//! attached, handed to the next client that attaches.
//!
//! Publishing a chunk and attaching both happen under the state lock, so a
//! chunk reaches a new client either through the replay or live, never both
//! and never neither.

pub mod attach;
pub mod kill;
pub mod pty;
pub mod pump;
pub mod reaper;
pub mod registry;
pub mod scrollback;
pub mod signame;
pub mod spawn;

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use sprites_api::agent::{Reply, SessionStarted};
use sprites_api::sprite::SessionInfo;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

use self::pty::Master;
use self::scrollback::{Chunk, Scrollback, DEFAULT_CAPACITY};
use crate::timestamp::rfc3339;

/// Chunks queued toward one client before the session waits for it.
const CLIENT_QUEUE: usize = 16;

/// What a client is sent, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Output(Chunk),
    /// The command is gone and all of its output was sent.
    Exit(i32),
}

/// A client's view of the session after attaching.
pub struct Attachment {
    pub client: u64,
    pub is_owner: bool,
    /// To send first: the scrollback, and `Exit` if the session is over.
    pub backlog: Vec<Event>,
    /// Live events; `None` when the session is already over.
    pub live: Option<mpsc::Receiver<Event>>,
}

/// Where a client's input goes.
pub enum Input {
    Pipe(pipe::Sender),
    Pty(Arc<Master>),
}

/// How the session was started: what listings and `session_info` show.
pub struct Spec {
    pub id: u32,
    pub command: String,
    pub workdir: String,
    pub tty: bool,
    pub rows: u16,
    pub cols: u16,
    pub max_run_after_disconnect: Option<Duration>,
}

struct Client {
    id: u64,
    tx: mpsc::Sender<Event>,
}

struct State {
    scrollback: Scrollback,
    clients: Vec<Client>,
    next_client: u64,
    /// Set once the exit was published: no more output will come.
    finished: Option<i32>,
    rows: u16,
    cols: u16,
    last_activity: SystemTime,
    /// Output bytes published so far: the listing's `bytes_per_second`.
    bytes_out: u64,
    /// Bumped on every attach and detach; a pending disconnect timer only
    /// fires if nothing happened since it was armed.
    epoch: u64,
}

pub struct Session {
    pub id: u32,
    command: String,
    workdir: String,
    created: SystemTime,
    tty: bool,
    max_run_after_disconnect: Option<Duration>,
    state: Mutex<State>,
    input: tokio::sync::Mutex<Option<Input>>,
    master: Option<Arc<Master>>,
    /// The process's exit code once reaped (output may still be draining).
    status: watch::Sender<Option<i32>>,
}

impl Session {
    pub fn new(spec: Spec, input: Option<Input>, master: Option<Arc<Master>>) -> Arc<Session> {
        let now = SystemTime::now();
        Arc::new(Session {
            id: spec.id,
            command: spec.command,
            workdir: spec.workdir,
            created: now,
            tty: spec.tty,
            max_run_after_disconnect: spec.max_run_after_disconnect,
            state: Mutex::new(State {
                scrollback: Scrollback::new(DEFAULT_CAPACITY),
                clients: Vec::new(),
                next_client: 1,
                finished: None,
                rows: spec.rows,
                cols: spec.cols,
                last_activity: now,
                bytes_out: 0,
                epoch: 0,
            }),
            input: tokio::sync::Mutex::new(input),
            master,
            status: watch::Sender::new(None),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data behind (every
        // update is a single assignment or push), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attach a client: the replay to send first and the live feed.
    pub fn attach(&self) -> Attachment {
        let mut st = self.state();
        let client = st.next_client;
        st.next_client += 1;
        st.epoch += 1;
        let is_owner = st.clients.is_empty();
        let mut backlog: Vec<Event> = st
            .scrollback
            .snapshot()
            .into_iter()
            .map(Event::Output)
            .collect();
        if !self.tty {
            st.scrollback.clear();
        }
        let live = match st.finished {
            Some(code) => {
                backlog.push(Event::Exit(code));
                None
            }
            None => {
                let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
                st.clients.push(Client { id: client, tx });
                Some(rx)
            }
        };
        Attachment {
            client,
            is_owner,
            backlog,
            live,
        }
    }

    /// A client left. When it was the last one and the session has a
    /// disconnect limit, its process group is killed after that long unless
    /// a client attaches again first.
    pub fn detach(self: &Arc<Self>, client: u64) {
        let (epoch, limit) = {
            let mut st = self.state();
            st.clients.retain(|c| c.id != client);
            st.epoch += 1;
            if !st.clients.is_empty() || st.finished.is_some() {
                return;
            }
            match self.max_run_after_disconnect {
                Some(limit) => (st.epoch, limit),
                None => return,
            }
        };
        let session = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            let expired = {
                let st = session.state();
                st.epoch == epoch && st.clients.is_empty() && st.finished.is_none()
            };
            if expired {
                let _ = session.signal(Signal::SIGKILL);
            }
        });
    }

    /// The `session_info` frame for a client.
    pub fn info_reply(&self, is_owner: bool) -> Reply {
        let st = self.state();
        Reply::SessionInfo(SessionStarted {
            session_id: self.id,
            command: self.command.clone(),
            workdir: self.workdir.clone(),
            created: rfc3339(self.created),
            cols: st.cols,
            rows: st.rows,
            is_owner,
            tty: self.tty,
        })
    }

    /// The entry in a `sessions` listing.
    pub fn listing(&self) -> SessionInfo {
        let st = self.state();
        SessionInfo {
            id: self.id.to_string(),
            command: self.command.clone(),
            workdir: self.workdir.clone(),
            created: rfc3339(self.created),
            bytes_per_second: average_rate(st.bytes_out, self.created),
            is_active: !st.clients.is_empty(),
            last_activity: Some(rfc3339(st.last_activity)),
            tty: self.tty,
        }
    }

    pub fn created(&self) -> SystemTime {
        self.created
    }

    /// The process's exit code, once it has been reaped.
    pub fn exit_status(&self) -> Option<i32> {
        *self.status.borrow()
    }

    /// Whether the exit has been published (all output was sent).
    pub fn is_finished(&self) -> bool {
        self.state().finished.is_some()
    }

    /// Whether the process still runs.
    pub fn is_live(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Wait up to `timeout` for the process to exit.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        let mut rx = self.status.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(code)) => *code,
            _ => self.exit_status(),
        }
    }

    /// Signal the session's process group and, for a terminal, its
    /// foreground group too (a job an interactive shell started).
    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        if self.state().finished.is_some() {
            return Err(Errno::ESRCH);
        }
        let pgid = i32::try_from(self.id).map_err(|_| Errno::ESRCH)?;
        if let Some(master) = &self.master {
            if let Some(fg) = master.foreground_group() {
                if fg.as_raw() != pgid {
                    let _ = killpg(fg, sig);
                }
            }
        }
        killpg(Pid::from_raw(pgid), sig)
    }

    /// Change the terminal size (TTY sessions; ignored otherwise).
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        let Some(master) = &self.master else {
            return Ok(());
        };
        master.resize(rows, cols)?;
        let mut st = self.state();
        st.rows = rows;
        st.cols = cols;
        Ok(())
    }

    /// Feed client input to the command, waiting while it is not reading.
    /// Input is dropped when the command does not take stdin or closed it.
    pub async fn write_input(&self, data: &[u8]) {
        self.state().last_activity = SystemTime::now();
        let mut input = self.input.lock().await;
        let failed = match input.as_mut() {
            Some(Input::Pipe(tx)) => tx.write_all(data).await.is_err(),
            Some(Input::Pty(master)) => master.write_all(data).await.is_err(),
            None => false,
        };
        if failed {
            *input = None;
        }
    }

    /// End of input: closes the command's stdin pipe. A terminal has no
    /// end of input (the client sends ^D itself), so TTY sessions ignore it.
    pub async fn close_input(&self) {
        let mut input = self.input.lock().await;
        if matches!(*input, Some(Input::Pipe(_))) {
            *input = None;
        }
    }

    /// Record the reaped exit code (the pump keeps draining output).
    pub fn set_exited(&self, code: i32) {
        self.status.send_replace(Some(code));
    }

    /// Follow the exit code as it becomes known.
    pub fn status_watch(&self) -> watch::Receiver<Option<i32>> {
        self.status.subscribe()
    }

    /// Hand one chunk of output to the scrollback and every client, waiting
    /// for clients whose queue is full.
    pub async fn publish(&self, chunk: Chunk) {
        let clients: Vec<(u64, mpsc::Sender<Event>)> = {
            let mut st = self.state();
            st.last_activity = SystemTime::now();
            st.bytes_out += chunk.data.len() as u64;
            if self.tty || st.clients.is_empty() {
                st.scrollback.push(chunk.clone());
            }
            st.clients.iter().map(|c| (c.id, c.tx.clone())).collect()
        };
        let mut gone = Vec::new();
        for (id, tx) in clients {
            if tx.send(Event::Output(chunk.clone())).await.is_err() {
                gone.push(id);
            }
        }
        if !gone.is_empty() {
            self.state().clients.retain(|c| !gone.contains(&c.id));
        }
    }

    /// Publish the exit after the last output. Returns whether a client
    /// took it (otherwise the final status should linger for a late attach).
    pub async fn finish(&self, code: i32) -> bool {
        self.set_exited(code);
        let clients = {
            let mut st = self.state();
            st.finished = Some(code);
            std::mem::take(&mut st.clients)
        };
        // Release the command's stdin, unless a client is stuck writing to
        // it (a grandchild may hold the terminal without reading): waiting
        // for that client here would hold back the exit.
        if let Ok(mut input) = self.input.try_lock() {
            *input = None;
        }
        let mut delivered = false;
        for c in clients {
            if c.tx.send(Event::Exit(code)).await.is_ok() {
                delivered = true;
            }
        }
        delivered
    }
}

/// Output bytes per second over the session's life so far (at least one
/// second, so a fresh session does not report a burst as a huge rate).
fn average_rate(bytes: u64, created: SystemTime) -> f64 {
    let secs = created.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    bytes as f64 / secs.max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tty: bool) -> Spec {
        Spec {
            id: 4242,
            command: "sh -c x".into(),
            workdir: "/".into(),
            tty,
            rows: 24,
            cols: 80,
            max_run_after_disconnect: None,
        }
    }

    fn out(s: &str) -> Chunk {
        Chunk {
            stream: sprites_api::agent::STDOUT,
            data: Arc::from(s.as_bytes()),
        }
    }

    #[tokio::test]
    async fn tty_scrollback_is_replayed_to_every_attach() {
        let s = Session::new(spec(true), None, None);
        s.publish(out("one")).await;
        let a = s.attach();
        assert!(a.is_owner);
        assert_eq!(a.backlog, vec![Event::Output(out("one"))]);
        let mut live = a.live.expect("live feed");
        s.publish(out("two")).await;
        assert_eq!(live.recv().await, Some(Event::Output(out("two"))));
        let b = s.attach();
        assert!(!b.is_owner);
        assert_eq!(b.backlog.len(), 2);
        assert!(s.listing().is_active);
    }

    #[tokio::test]
    async fn non_tty_backlog_is_handed_over_once() {
        let s = Session::new(spec(false), None, None);
        s.publish(out("while detached")).await;
        let a = s.attach();
        assert_eq!(a.backlog.len(), 1);
        s.detach(a.client);
        let b = s.attach();
        assert!(b.backlog.is_empty());
        assert!(b.is_owner);
    }

    #[tokio::test]
    async fn exit_follows_output_and_lingers_for_late_attach() {
        let s = Session::new(spec(true), None, None);
        let a = s.attach();
        let mut live = a.live.expect("live");
        s.publish(out("bye")).await;
        assert!(s.finish(3).await);
        assert_eq!(live.recv().await, Some(Event::Output(out("bye"))));
        assert_eq!(live.recv().await, Some(Event::Exit(3)));
        assert_eq!(live.recv().await, None);
        let late = s.attach();
        assert!(late.live.is_none());
        assert_eq!(late.backlog.last(), Some(&Event::Exit(3)));
        assert_eq!(s.exit_status(), Some(3));
        assert_eq!(s.signal(Signal::SIGTERM), Err(Errno::ESRCH));
    }

    #[tokio::test]
    async fn finish_without_clients_reports_undelivered() {
        let s = Session::new(spec(false), None, None);
        let a = s.attach();
        s.detach(a.client);
        drop(a);
        assert!(!s.finish(0).await);
        assert!(!s.listing().is_active);
    }
}
