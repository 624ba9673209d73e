//! `sprite use [name]`: record the sprite of this directory in `.sprite`.

use anyhow::{bail, Result};

use super::{sprite_error, Context};
use crate::cli::UseArgs;
use crate::sprite_file::{self, SpriteFile};

pub async fn run(ctx: &Context, args: UseArgs) -> Result<i32> {
    let Some(name) = args.name.or_else(|| ctx.global.sprite.clone()) else {
        return show(ctx);
    };
    let sprite = ctx
        .client()?
        .get_sprite(&name)
        .await
        .map_err(|e| sprite_error(e, &name))?;
    let file = SpriteFile {
        organization: ctx.global.org.clone().unwrap_or(sprite.organization),
        sprite: sprite.name,
    };
    let path = sprite_file::write(&ctx.cwd, &file)?;
    println!("Using sprite {} here ({})", file.sprite, path.display());
    Ok(0)
}

fn show(ctx: &Context) -> Result<i32> {
    match sprite_file::find(&ctx.cwd)? {
        Some((path, file)) => {
            println!("{} (from {})", file.sprite, path.display());
            Ok(0)
        }
        None => bail!("no sprite selected: pass -s NAME or run `sprite use NAME`"),
    }
}
