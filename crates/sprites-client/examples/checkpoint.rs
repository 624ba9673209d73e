//! Checkpoints: create a sprite, write a file, checkpoint it, break the
//! file, restore the checkpoint, and show the file is back; then fork a
//! second sprite from the checkpoint. Both sprites are destroyed at the end.
//!
//! ```sh
//! SPRITES_API_URL=http://127.0.0.1:7070 SPRITE_TOKEN=... \
//!     cargo run -p sprites-client --example checkpoint [NAME]
//! ```

use futures_util::StreamExt;
use sprites_client::{event_text, Client, CreateSpriteRequest, SpriteHandle};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const FILE: &str = "/home/sprite/notes.txt";

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::var("SPRITES_API_URL").unwrap_or_else(|_| "http://127.0.0.1:7070".into());
    let token = std::env::var("SPRITE_TOKEN").map_err(|_| "set SPRITE_TOKEN")?;
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("sdk-checkpoint-{}", std::process::id()));
    let fork = format!("{name}-fork");

    let client = Client::new(&url, token)?;
    client
        .create_sprite(&CreateSpriteRequest {
            name: name.clone(),
            image: std::env::var("SPRITE_IMAGE").ok(),
            ..Default::default()
        })
        .await?;
    println!("created {name}");

    let result = run(&client, &name, &fork).await;
    for sprite in [&fork, &name] {
        match client.delete_sprite(sprite).await {
            Ok(()) => println!("destroyed {sprite}"),
            Err(e) if e.is_not_found() => {}
            Err(e) => eprintln!("destroying {sprite}: {e}"),
        }
    }
    result
}

async fn run(client: &Client, name: &str, fork: &str) -> Result<()> {
    let sprite = client.sprite(name);
    sh(&sprite, &format!("echo 'the good version' > {FILE}")).await?;
    print!("before:   {}", sh(&sprite, &format!("cat {FILE}")).await?);

    // The simple form waits for the end and names the new checkpoint.
    let made = sprite.create_checkpoint(Some("good version")).await?;
    println!("{} -> {}", made.message, made.id);

    sh(&sprite, &format!("echo 'broken!' > {FILE}")).await?;
    print!("broken:   {}", sh(&sprite, &format!("cat {FILE}")).await?);

    // The streaming form shows progress as it happens.
    let mut events = sprite.restore_checkpoint_stream(&made.id).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        println!(
            "  [{}] {}",
            event.kind,
            event_text(&event).unwrap_or_default()
        );
        if event.kind == "error" {
            return Err(format!("restore failed: {}", event.error.unwrap_or_default()).into());
        }
    }
    print!("restored: {}", sh(&sprite, &format!("cat {FILE}")).await?);

    for c in sprite.checkpoints().await? {
        let current = if c.is_current == Some(true) {
            " (current)"
        } else {
            ""
        };
        println!(
            "checkpoint {}{current} {} {}",
            c.id,
            c.create_time,
            c.comment.unwrap_or_default()
        );
    }

    // A fork starts from the checkpoint, independent of its source.
    client.fork_sprite(fork, name, &made.id).await?;
    print!(
        "fork {fork}: {}",
        sh(&client.sprite(fork), &format!("cat {FILE}")).await?
    );
    Ok(())
}

/// Run a shell line in the sprite; its stdout, or an error with its stderr.
async fn sh(sprite: &SpriteHandle, line: &str) -> Result<String> {
    let out = sprite.command("sh").arg("-c").arg(line).output().await?;
    if !out.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{line}` exited with {}: {}", out.status, stderr.trim()).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
