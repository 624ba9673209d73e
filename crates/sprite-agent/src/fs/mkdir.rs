//! `mkdir`: one directory, or (`parents`) every missing one, as `mkdir -p`.

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use sprites_api::fs::{FsReply, PathBytes};

use super::conn::Conn;
use super::error::{gone, CallResult, FsError};
use super::paths::Target;

const DEFAULT_MODE: u32 = 0o755;

pub fn mkdir(conn: &mut Conn, t: &Target, mode: Option<u32>, parents: bool) -> CallResult {
    let mode = mode.unwrap_or(DEFAULT_MODE);
    let existed = parents && t.os.is_dir();
    if !existed {
        DirBuilder::new()
            .mode(mode)
            .recursive(parents)
            .create(&t.os)
            .map_err(|e| FsError::io("mkdir", &t.shown, &e))?;
        // The umask took bits away; the caller asked for these.
        std::fs::set_permissions(&t.os, std::fs::Permissions::from_mode(mode))
            .map_err(|e| FsError::io("chmod", &t.shown, &e))?;
    }
    conn.reply(&FsReply::Done {
        path: PathBytes(t.shown.clone()),
        dest: None,
        size: 0,
        mode,
        count: u64::from(!existed),
    })
    .map_err(gone)
}
