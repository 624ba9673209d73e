//! The filesystem calls (`fs/read`, `fs/write`, `fs/list`, ...).
//!
//! Each call runs in a worker process: this agent binary started again as
//! `sprite-agent fs-worker`, as the user the call asked for (by default
//! `sprite`), with the daemon connection as its stdin. So the kernel
//! checks every access with that user's credentials, exactly as for a
//! command they run, and the worker has nothing of the agent's: not its
//! descriptors, not its privileges. The agent only resolves the user and
//! the working directory, then hands the connection over.

mod attrs;
mod conn;
mod copy;
mod entry;
mod error;
mod glob;
mod list;
mod mkdir;
mod paths;
mod read;
mod remove;
mod tree;
mod watch;
mod worker;
mod write;

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use sprites_api::fs::{FsReply, FsRequest, PathBytes};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::log::log;
use crate::session::registry::Sessions;
use crate::user::{Account, UserDb};
use crate::wire;

pub use worker::{main as worker_main, ARG as WORKER_ARG};

/// Largest job the agent passes to a worker (it travels in the environment,
/// where one string may hold 128 KiB).
const MAX_JOB: usize = 96 * 1024;

/// Serve one `fs` request: start its worker with the connection.
pub async fn serve(rd: OwnedReadHalf, mut wr: OwnedWriteHalf, sessions: &Sessions, req: FsRequest) {
    let account = match UserDb::load().resolve(req.user.as_deref()) {
        Ok(a) => a,
        Err(message) => {
            let _ = wire::write_json(&mut wr, &refused(message)).await;
            return;
        }
    };
    let job = worker::Job {
        working_dir: working_dir(req.working_dir.as_ref(), &account),
        call: req.call,
    };
    let json = match serde_json::to_string(&job) {
        Ok(j) if j.len() <= MAX_JOB => j,
        _ => {
            let _ = wire::write_json(&mut wr, &refused("the request is too large")).await;
            return;
        }
    };
    let sock = match rd.reunite(wr).map_err(io::Error::other).and_then(|s| {
        let s = s.into_std()?;
        s.set_nonblocking(false)?;
        Ok(OwnedFd::from(s))
    }) {
        Ok(s) => s,
        Err(e) => {
            log!("fs: handing over the connection: {e}");
            return;
        }
    };
    let reaper = sessions.reaper().clone();
    let started = tokio::task::spawn_blocking(move || {
        // A copy to answer on if the worker cannot start; dropped otherwise.
        let spare = sock.try_clone().ok();
        let mut cmd = worker_command(&account, json, sock);
        reaper
            .spawn(&mut cmd)
            .map(|(_child, exit)| exit)
            .map_err(|e| (e, spare))
    })
    .await;
    let exit = match started {
        Ok(Ok(exit)) => exit,
        Ok(Err((e, spare))) => {
            log!("fs: starting a worker: {e}");
            if let Some(spare) = spare {
                tell(
                    spare,
                    FsReply::Error {
                        code: "EAGAIN".into(),
                        message: format!("cannot start the filesystem worker: {e}"),
                        path: PathBytes::default(),
                    },
                );
            }
            return;
        }
        Err(e) => {
            log!("fs: worker task: {e}");
            return;
        }
    };
    // Only to note a worker that died oddly; the reaper owns the status.
    if let Ok(code) = exit.await {
        if code != 0 && code != 3 {
            log!("fs worker exited with {code}");
        }
    }
}

fn refused(message: impl Into<String>) -> FsReply {
    FsReply::Error {
        code: "EINVAL".into(),
        message: message.into(),
        path: PathBytes::default(),
    }
}

/// Send one reply on a blocking copy of the connection.
fn tell(sock: OwnedFd, reply: FsReply) {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::from(sock);
    let _ = s.write_all(&sprites_api::agent::json_frame(&reply));
}

/// The worker: this binary again, as `account`, the connection as stdin.
fn worker_command(account: &Account, job: String, sock: OwnedFd) -> Command {
    // /proc/self/exe: the binary the agent runs from, reachable whatever
    // the user's permissions on the directories above it.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("sprite-agent")
        .arg(WORKER_ARG)
        .env_clear()
        .env(worker::JOB_ENV, job)
        .current_dir("/")
        .stdin(Stdio::from(sock))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let creds = Creds::for_account(account);
    // SAFETY: the hook runs in the forked child before exec and only makes
    // the async-signal-safe calls setgroups/setgid/setuid on data prepared
    // here; it does not allocate.
    unsafe {
        cmd.pre_exec(move || creds.apply());
    }
    cmd
}

/// Who the worker becomes.
struct Creds {
    switch: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl Creds {
    fn for_account(a: &Account) -> Creds {
        let euid = nix::unistd::geteuid().as_raw();
        let egid = nix::unistd::getegid().as_raw();
        Creds {
            // A non-root agent (host tests) can only be itself.
            switch: euid == 0 || euid != a.uid || egid != a.gid,
            uid: a.uid,
            gid: a.gid,
            groups: a.groups.clone(),
        }
    }

    fn apply(&self) -> io::Result<()> {
        if !self.switch {
            return Ok(());
        }
        // SAFETY: plain system calls on values owned by `self`; `groups`
        // outlives the call and its length is passed with it.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) < 0
                || libc::setgid(self.gid) < 0
                || libc::setuid(self.uid) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The absolute directory relative paths resolve against: the request's
/// (relative ones taken from the home), else the home, else `/`.
fn working_dir(requested: Option<&PathBytes>, account: &Account) -> PathBytes {
    let home = if Path::new(&account.home).is_dir() {
        account.home.as_bytes().to_vec()
    } else {
        b"/".to_vec()
    };
    let dir = match requested.map(PathBytes::as_bytes).filter(|d| !d.is_empty()) {
        None => home,
        Some(d) if d.first() == Some(&b'/') => d.to_vec(),
        Some(d) => paths::child(&home, d),
    };
    PathBytes(dir)
}
