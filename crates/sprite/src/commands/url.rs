//! `sprite url` and `sprite url update --auth public|sprite|private`.

use anyhow::Result;
use sprites_client::Sprite;

use super::{sprite_error, Context};
use crate::cli::UrlCommand;

pub async fn run(ctx: &Context, command: Option<UrlCommand>) -> Result<i32> {
    let sprite = ctx.sprite()?;
    let info = match command {
        None => sprite.get().await,
        Some(UrlCommand::Update { auth }) => sprite.set_url_auth(&auth).await,
    }
    .map_err(|e| sprite_error(e, sprite.name()))?;
    print!("{}", describe(&info));
    Ok(0)
}

fn describe(s: &Sprite) -> String {
    let auth = s.url_settings.auth.as_deref().unwrap_or("sprite");
    let what = match auth {
        "public" => "anyone may open it",
        "private" => "no URL: reach it with `sprite proxy`",
        _ => "a token (Authorization: Bearer) or a browser login is needed",
    };
    format!("URL:  {}\nAuth: {auth} ({what})\n", s.url)
}
