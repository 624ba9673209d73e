//! `sprite destroy`: delete the sprite, after confirmation on a terminal.

use anyhow::{bail, Result};

use super::{sprite_error, Context};
use crate::cli::DestroyArgs;
use crate::terminal;

pub async fn run(ctx: &Context, args: DestroyArgs) -> Result<i32> {
    let sprite = ctx.sprite()?;
    let name = sprite.name().to_string();
    if !args.force {
        if !terminal::stdin_is_tty() {
            bail!("refusing to destroy {name} without confirmation: pass --force");
        }
        let answer = terminal::ask(&format!(
            "Destroy sprite {name} and everything in it? Type its name to confirm: "
        ))?;
        if answer.trim() != name {
            bail!("not destroyed: the name did not match");
        }
    }
    sprite.delete().await.map_err(|e| sprite_error(e, &name))?;
    println!("Destroyed {name}");
    Ok(0)
}
