//! The worker process: one filesystem call, as the user it was started
//! as, on the daemon connection it got as stdin.

use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use sprites_api::fs::{FsCall, PathBytes};

use super::conn::Conn;
use super::error::{CallResult, Failure, FsError};
use super::paths::resolve;
use super::{attrs, copy, list, mkdir, read, remove, watch, write};
use crate::log::log;

/// The argument that makes the agent binary a worker.
pub const ARG: &str = "fs-worker";
/// The environment variable that carries the [`Job`].
pub const JOB_ENV: &str = "SPRITE_FS_JOB";

/// What the agent hands a worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    /// Absolute; relative paths of the call resolve against it.
    pub working_dir: PathBytes,
    pub call: FsCall,
}

pub fn main() -> ExitCode {
    // Started through /proc/self/exe: without this, `ps` calls it "exe".
    let _ = nix::sys::prctl::set_name(c"sprite-fs");
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let mut conn = match Conn::from_stdin() {
        Ok(c) => c,
        Err(e) => {
            log!("fs worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let job: Option<Job> =
        std::env::var_os(JOB_ENV).and_then(|v| serde_json::from_slice(v.as_bytes()).ok());
    let Some(job) = job else {
        let _ = conn.reply(&FsError::invalid(b"", "the worker got no job").reply());
        return ExitCode::FAILURE;
    };
    match run(&mut conn, &job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Fs(e)) => {
            // A failure after streaming began ends the stream the same way.
            let _ = conn.reply(&e.reply());
            ExitCode::SUCCESS
        }
        // The daemon went away (its client did): nothing to tell anyone.
        Err(Failure::Gone) => ExitCode::from(3),
    }
}

fn run(conn: &mut Conn, job: &Job) -> CallResult {
    let base = job.working_dir.as_bytes();
    match &job.call {
        FsCall::Read { path, range } => read::read(
            conn,
            &resolve(base, path, false)?,
            range.unwrap_or_default(),
        ),
        FsCall::Write {
            path,
            mode,
            mkdir_parents,
        } => write::write(conn, &resolve(base, path, false)?, *mode, *mkdir_parents),
        FsCall::List {
            path,
            recursive,
            pattern,
        } => list::list(
            conn,
            &resolve(base, path, true)?,
            *recursive,
            pattern.as_deref().filter(|p| !p.is_empty()),
        ),
        FsCall::Stat { path } => list::stat(conn, &resolve(base, path, true)?),
        FsCall::Delete { path, recursive } => {
            remove::delete(conn, &resolve(base, path, false)?, *recursive)
        }
        FsCall::Mkdir {
            path,
            mode,
            parents,
        } => mkdir::mkdir(conn, &resolve(base, path, false)?, *mode, *parents),
        FsCall::Rename { source, dest } => copy::rename(
            conn,
            &resolve(base, source, false)?,
            &resolve(base, dest, false)?,
        ),
        FsCall::Copy {
            source,
            dest,
            recursive,
            preserve_attrs,
        } => copy::copy(
            conn,
            &resolve(base, source, false)?,
            &resolve(base, dest, false)?,
            *recursive,
            *preserve_attrs,
        ),
        FsCall::Chmod {
            path,
            mode,
            recursive,
        } => attrs::chmod(conn, &resolve(base, path, false)?, *mode, *recursive),
        FsCall::Chown {
            path,
            uid,
            gid,
            recursive,
        } => attrs::chown(
            conn,
            &resolve(base, path, false)?,
            uid.as_deref(),
            gid.as_deref(),
            *recursive,
        ),
        FsCall::Watch { paths, recursive } => {
            let targets = paths
                .iter()
                .map(|p| resolve(base, p, true))
                .collect::<Result<Vec<_>, _>>()?;
            watch::watch(conn, &targets, *recursive)
        }
    }
}
