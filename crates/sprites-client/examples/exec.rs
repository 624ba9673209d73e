//! Create a sprite, run a few commands in it, print what they wrote, and
//! destroy it again.
//!
//! ```sh
//! SPRITES_API_URL=http://127.0.0.1:7070 SPRITE_TOKEN=... \
//!     cargo run -p sprites-client --example exec [NAME]
//! ```

use sprites_client::{Client, CreateSpriteRequest, Error};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SPRITES_API_URL").unwrap_or_else(|_| "http://127.0.0.1:7070".into());
    let token = std::env::var("SPRITE_TOKEN").map_err(|_| "set SPRITE_TOKEN")?;
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("sdk-example-{}", std::process::id()));

    let client = Client::new(&url, token)?;
    let sprite = client
        .create_sprite(&CreateSpriteRequest {
            name: name.clone(),
            image: std::env::var("SPRITE_IMAGE").ok(),
            ..Default::default()
        })
        .await?;
    println!("created {} ({})", sprite.name, sprite.status.as_str());

    let result = run(&client, &name).await;
    client.delete_sprite(&name).await?;
    println!("destroyed {name}");
    Ok(result?)
}

async fn run(client: &Client, name: &str) -> Result<(), Error> {
    let sprite = client.sprite(name);

    let out = sprite.command("uname").arg("-a").output().await?;
    print!("uname: {}", String::from_utf8_lossy(&out.stdout));

    let out = sprite
        .command("sh")
        .arg("-c")
        .arg("echo \"$GREETING from $(pwd)\"; echo oops >&2; exit 3")
        .env("GREETING", "hello")
        .current_dir("/tmp")
        .output()
        .await?;
    println!(
        "status {}: stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let code = sprite
        .command("echo")
        .arg("status() prints straight through")
        .status()
        .await?;
    println!("exit status {code}");
    Ok(())
}
