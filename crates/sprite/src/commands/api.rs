//! `sprite api <path>`: a raw authenticated GET.

use anyhow::Result;
use tokio::io::AsyncWriteExt;

use super::Context;
use crate::cli::ApiArgs;
use crate::terminal;

pub async fn run(ctx: &Context, args: ApiArgs) -> Result<i32> {
    let body = ctx.client()?.api_get(&args.path).await?;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(&body).await?;
    if terminal::stdout_is_tty() && !body.ends_with(b"\n") {
        stdout.write_all(b"\n").await?;
    }
    stdout.flush().await?;
    Ok(0)
}
