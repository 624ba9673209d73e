//! `sprite console`: an interactive login shell in the sprite.

use anyhow::Result;
use sprites_client::SpriteHandle;

use super::{sprite_error, Context};
use crate::console::{self, Outcome};
use crate::terminal;

/// bash when the image has it, else sh; as a login shell either way.
const LOGIN_SHELL: &str =
    "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi";

pub async fn run(ctx: &Context) -> Result<i32> {
    open(&ctx.sprite()?).await
}

/// Open a console on `sprite`; answers the shell's exit status.
pub async fn open(sprite: &SpriteHandle) -> Result<i32> {
    let size = terminal::size().unwrap_or_default();
    let mut cmd = sprite.command("sh");
    cmd.arg("-c")
        .arg(LOGIN_SHELL)
        .tty(size.rows, size.cols)
        .envs(terminal::forwarded_env());
    let child = cmd
        .spawn()
        .await
        .map_err(|e| sprite_error(e, sprite.name()))?;
    finish(sprite.name(), console::run(child, true).await?)
}

/// The exit status of an interactive run, telling how to come back after a
/// detach.
pub fn finish(sprite: &str, outcome: Outcome) -> Result<i32> {
    match outcome {
        Outcome::Exited(code) => Ok(code),
        Outcome::Detached(Some(id)) => {
            eprintln!(
                "\ndetached from session {id}, which keeps running; reattach with:\n  \
                 sprite -s {sprite} sessions attach {id}"
            );
            Ok(0)
        }
        Outcome::Detached(None) => {
            eprintln!(
                "\ndetached; the session keeps running (see `sprite -s {sprite} sessions list`)"
            );
            Ok(0)
        }
    }
}
