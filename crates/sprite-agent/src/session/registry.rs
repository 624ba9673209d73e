//! The agent's sessions, by id (the pid of the command, which leads its own
//! process group): starting them and finding them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sprites_api::agent::ExecRequest;
use sprites_api::sprite::SessionInfo;
use tokio::net::unix::pipe;

use crate::session::pty::Master;
use crate::session::pump::{self, Source};
use crate::session::reaper::Reaper;
use crate::session::spawn::{self, ChildIo, Plan};
use crate::session::{Attachment, Input, Session, Spec};
use crate::user::UserDb;

/// Outcome of an exec request that was well formed.
pub enum Started {
    Running(Arc<Session>, Attachment),
    /// The command could not run: tell the client as a shell would.
    Failed {
        message: String,
        code: i32,
    },
}

/// Why an exec request was refused.
#[derive(Debug)]
pub enum StartError {
    BadRequest(String),
    Internal(String),
}

pub struct Sessions {
    map: Mutex<HashMap<u32, Arc<Session>>>,
    /// Ids of the sessions that ended since the agent started, oldest
    /// first, so that a kill can tell "ended" from "never was".
    ended: Mutex<VecDeque<u32>>,
    reaper: Reaper,
}

/// How many ended session ids are remembered.
const ENDED_REMEMBERED: usize = 4096;

impl Sessions {
    pub fn new(reaper: Reaper) -> Arc<Sessions> {
        Arc::new(Sessions {
            map: Mutex::new(HashMap::new()),
            ended: Mutex::new(VecDeque::new()),
            reaper,
        })
    }

    /// The reaper, for other children of the agent (filesystem workers).
    pub fn reaper(&self) -> &Reaper {
        &self.reaper
    }

    fn map(&self) -> MutexGuard<'_, HashMap<u32, Arc<Session>>> {
        // Every update is one insert or remove: a poisoned map is still whole.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ended(&self) -> MutexGuard<'_, VecDeque<u32>> {
        // Likewise: one push, pop or removal per update.
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a command as a new session, with the caller attached as owner.
    pub async fn start(self: &Arc<Self>, req: ExecRequest) -> Result<Started, StartError> {
        let users = UserDb::load();
        let prepared = match spawn::prepare(&req, &users).map_err(StartError::BadRequest)? {
            Plan::Run(p) => p,
            Plan::Fail { message, code } => return Ok(Started::Failed { message, code }),
        };
        let spawned = match spawn::spawn_now(&prepared, &self.reaper).await {
            Ok(s) => s,
            Err(e) => {
                let prog = req.path.as_deref().unwrap_or(&prepared.argv[0]);
                let (message, code) = spawn::failure(prog, &e);
                return Ok(Started::Failed { message, code });
            }
        };

        let spec = Spec {
            id: spawned.pid,
            command: prepared.argv.join(" "),
            workdir: prepared.dir.to_string_lossy().into_owned(),
            tty: prepared.tty,
            rows: prepared.rows,
            cols: prepared.cols,
            max_run_after_disconnect: req.max_run_after_disconnect_ms.map(Duration::from_millis),
        };
        // Registering fds with the runtime only fails when the runtime is
        // out of resources; the child is then killed rather than orphaned.
        let wired = wire(spawned.io, prepared.stdin);
        let (input, master, stdout, stderr) = match wired {
            Ok(w) => w,
            Err(e) => {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(spawned.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Err(StartError::Internal(format!("wiring child io: {e}")));
            }
        };
        let session = Session::new(spec, input, master);
        let attachment = session.attach();
        // A pid is reused once its process is gone: the id is live again.
        self.ended().retain(|&id| id != session.id);
        self.map().insert(session.id, session.clone());
        // The exit code is recorded as soon as the reaper has it, even while
        // the pump waits for a slow client: `kill` must see the exit.
        let waiter = session.clone();
        let exit = spawned.exit;
        tokio::spawn(async move {
            // The reaper never drops a registered sender; -1 if it did.
            waiter.set_exited(exit.await.unwrap_or(-1));
        });
        tokio::spawn(pump::run(session.clone(), stdout, stderr, self.clone()));
        Ok(Started::Running(session, attachment))
    }

    pub fn get(&self, id: u32) -> Option<Arc<Session>> {
        self.map().get(&id).cloned()
    }

    /// Forget a session (only this one: its pid may have been reused),
    /// remembering that its id has ended.
    pub fn remove(&self, session: &Arc<Session>) {
        let mut map = self.map();
        if map
            .get(&session.id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            map.remove(&session.id);
            let mut ended = self.ended();
            if ended.len() == ENDED_REMEMBERED {
                ended.pop_front();
            }
            ended.push_back(session.id);
        }
    }

    /// Whether `id` was a session whose process has exited (still kept
    /// for its output, or forgotten since).
    pub fn has_ended(&self, id: u32) -> bool {
        let kept = self.map().get(&id).map(|s| !s.is_live());
        kept.unwrap_or_else(|| self.ended().contains(&id))
    }

    /// Sessions whose process still runs, oldest first.
    pub fn live(&self) -> Vec<Arc<Session>> {
        let mut v: Vec<Arc<Session>> = self
            .map()
            .values()
            .filter(|s| s.is_live())
            .cloned()
            .collect();
        v.sort_by_key(|s| (s.created(), s.id));
        v
    }

    /// The `sessions` listing.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.live().iter().map(|s| s.listing()).collect()
    }
}

type Wired = (Option<Input>, Option<Arc<Master>>, Source, Option<Source>);

/// Register the child's fds with the runtime. Client input goes nowhere
/// unless the request asked for stdin.
fn wire(io: ChildIo, stdin: bool) -> std::io::Result<Wired> {
    match io {
        ChildIo::Pty { master } => {
            let master = Arc::new(Master::new(master)?);
            Ok((
                stdin.then(|| Input::Pty(master.clone())),
                Some(master.clone()),
                Source::Pty(master),
                None,
            ))
        }
        ChildIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let input = match stdin {
                Some(fd) => Some(Input::Pipe(pipe::Sender::from_owned_fd(fd)?)),
                None => None,
            };
            Ok((
                input,
                None,
                Source::Pipe(pipe::Receiver::from_owned_fd(stdout)?),
                Some(Source::Pipe(pipe::Receiver::from_owned_fd(stderr)?)),
            ))
        }
    }
}
