//! List every sprite (following the pages), optionally by name prefix.
//!
//! ```sh
//! SPRITE_TOKEN=... cargo run -p sprites-client --example list -- [PREFIX]
//! ```

use sprites_client::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SPRITES_API_URL").unwrap_or_else(|_| "http://127.0.0.1:7070".into());
    let token = std::env::var("SPRITE_TOKEN").map_err(|_| "set SPRITE_TOKEN")?;
    let prefix = std::env::args().nth(1);

    let client = Client::new(&url, token)?;
    for sprite in client.list_all_sprites(prefix.as_deref()).await? {
        println!(
            "{:<30} {:<8} {}",
            sprite.name,
            sprite.status.as_str(),
            sprite.created_at
        );
    }
    Ok(())
}
