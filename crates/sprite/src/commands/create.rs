//! `sprite create [name] [--from SPRITE:CHECKPOINT | --from-snapshot SPRITE:TIME]`:
//! make a sprite (or fork one from a checkpoint or a replicated snapshot),
//! then (on a terminal) enter it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use anyhow::{anyhow, Result};
use sprites_client::{CreateSpriteRequest, ForkSource};

use super::checkpoint::{checkpoint_error, snapshot_at};
use super::{console, sprite_error, Context};
use crate::cli::CreateArgs;
use crate::terminal;

pub async fn run(ctx: &Context, args: CreateArgs) -> Result<i32> {
    let name = args.name.unwrap_or_else(generated_name);
    sprites_client::sprites_api::name::validate(&name).map_err(|e| anyhow!(e))?;
    let client = ctx.client()?;
    let source = match (&args.from, &args.from_snapshot) {
        (Some(from), _) => Some(from.clone()),
        (None, Some((sprite, at))) => {
            let source = client.sprite(sprite.as_str());
            let snapshots = source
                .snapshots()
                .await
                .map_err(|e| sprite_error(e, sprite))?;
            let snap = snapshot_at(&source, &snapshots, at)?;
            Some(ForkSource {
                sprite: sprite.clone(),
                snapshot: Some(snap.id.clone()),
                ..Default::default()
            })
        }
        (None, None) => None,
    };
    let request = CreateSpriteRequest {
        name,
        image: args.image,
        source,
        config: args
            .isolation
            .map(|isolation| sprites_client::SpriteConfig {
                isolation: Some(isolation),
                ..Default::default()
            }),
        ..Default::default()
    };
    let sprite = match (client.create_sprite(&request).await, &args.from) {
        (Ok(sprite), _) => sprite,
        // A fork's 404 is about its source.
        (Err(e), Some(from)) => {
            let source = client.sprite(from.sprite.as_str());
            return Err(checkpoint_error(&source, e, &from.checkpoint).await);
        }
        (Err(e), None) => match &args.from_snapshot {
            Some((source, _)) => return Err(sprite_error(e, source)),
            None => return Err(e.into()),
        },
    };
    println!("{}", sprite.name);

    if !args.skip_console && terminal::stdin_is_tty() && terminal::stdout_is_tty() {
        return console::open(&client.sprite(sprite.name)).await;
    }
    Ok(0)
}

/// `sprite-` and six hex digits of per-process randomness.
fn generated_name() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("sprite-{:06x}", hasher.finish() & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid() {
        for _ in 0..20 {
            let name = generated_name();
            assert!(
                sprites_client::sprites_api::name::validate(&name).is_ok(),
                "{name}"
            );
            assert_eq!(name.len(), "sprite-".len() + 6);
        }
    }
}
