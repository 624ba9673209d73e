//! `sprite login [url]`: check a token against a server, then save both.

use anyhow::{anyhow, bail, Result};
use sprites_client::{Client, ListOptions};

use super::Context;
use crate::config::{self, Config, DEFAULT_API_URL};
use crate::terminal;

pub async fn run(ctx: &Context, args: crate::cli::LoginArgs) -> Result<i32> {
    let home = ctx.home()?;
    let saved = config::load(home)?;
    let url = args
        .url
        .or_else(|| ctx.global.api_url.clone())
        .or_else(|| saved.as_ref().map(|c| c.url.clone()))
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    let url = url.trim().to_string();

    let token = match ctx.global.token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => token.to_string(),
        _ => terminal::read_secret(&format!("API token for {url}: ")).map_err(|_| {
            anyhow!("no token: pass --token, set SPRITE_TOKEN, or run on a terminal")
        })?,
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("no token given");
    }

    let client = Client::new(&url, token.clone())?;
    let probe = ListOptions {
        max_results: Some(1),
        ..Default::default()
    };
    if let Err(err) = client.list_sprites(&probe).await {
        return Err(match err.status() {
            Some(401 | 403) => anyhow!("{url} refused the token: {err}"),
            _ => anyhow!("could not log in to {url}: {err}"),
        });
    }
    let path = config::save(
        home,
        &Config {
            url: url.clone(),
            token,
        },
    )?;
    println!("Logged in to {url} (saved in {})", path.display());
    Ok(0)
}
