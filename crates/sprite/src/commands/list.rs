//! `sprite list`: a table of sprites.

use anyhow::Result;

use super::{table, Context};
use crate::cli::ListArgs;

pub async fn run(ctx: &Context, args: ListArgs) -> Result<i32> {
    let sprites = ctx
        .client()?
        .list_all_sprites(args.prefix.as_deref())
        .await?;
    if sprites.is_empty() {
        eprintln!("no sprites");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = sprites
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.status.as_str().to_string(),
                s.created_at.clone(),
            ]
        })
        .collect();
    print!("{}", table(&["NAME", "STATUS", "CREATED"], &rows));
    Ok(0)
}
