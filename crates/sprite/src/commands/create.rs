//! `sprite create [name]`: make a sprite, then (on a terminal) enter it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use anyhow::{anyhow, Result};
use sprites_client::CreateSpriteRequest;

use super::{console, Context};
use crate::cli::CreateArgs;
use crate::terminal;

pub async fn run(ctx: &Context, args: CreateArgs) -> Result<i32> {
    let name = args.name.unwrap_or_else(generated_name);
    sprites_client::sprites_api::name::validate(&name).map_err(|e| anyhow!(e))?;
    let client = ctx.client()?;
    let sprite = client
        .create_sprite(&CreateSpriteRequest {
            name,
            image: args.image,
            ..Default::default()
        })
        .await?;
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
