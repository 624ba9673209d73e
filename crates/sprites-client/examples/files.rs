//! Files in a sprite: upload a local file (streamed), list, read back,
//! copy, rename, chmod, download (streamed) and clean up.
//!
//! ```sh
//! SPRITES_API_URL=http://127.0.0.1:7070 SPRITE_TOKEN=... \
//!     cargo run -p sprites-client --example files [NAME] [LOCAL-FILE]
//! ```
//!
//! Without NAME a sprite is created and destroyed again; without
//! LOCAL-FILE this example's own source is uploaded.

use sprites_client::{Client, CreateSpriteRequest, Error, WriteOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SPRITES_API_URL").unwrap_or_else(|_| "http://127.0.0.1:7070".into());
    let token = std::env::var("SPRITE_TOKEN").map_err(|_| "set SPRITE_TOKEN")?;
    let mut args = std::env::args().skip(1);
    let given = args.next();
    let local = args.next().unwrap_or_else(|| file!().to_string());

    let client = Client::new(&url, token)?;
    let name = match &given {
        Some(n) => n.clone(),
        None => {
            let n = format!("files-example-{}", std::process::id());
            client
                .create_sprite(&CreateSpriteRequest {
                    name: n.clone(),
                    ..Default::default()
                })
                .await?;
            println!("created {n}");
            n
        }
    };
    let result = run(&client, &name, &local).await;
    if given.is_none() {
        client.delete_sprite(&name).await?;
        println!("destroyed {name}");
    }
    Ok(result?)
}

async fn run(client: &Client, name: &str, local: &str) -> Result<(), Error> {
    let fs = client.sprite(name).fs();

    // Upload: the file streams from disk, whatever its size.
    let file = tokio::fs::File::open(local)
        .await
        .map_err(|e| Error::InvalidInput(format!("{local}: {e}")))?;
    let w = fs
        .write_from("example/upload.bin", file, &WriteOptions::mode(0o640))
        .await?;
    println!(
        "uploaded {local} to {} ({} bytes, mode {})",
        w.path, w.size, w.mode
    );

    fs.write("example/notes/hello.txt", "hello from the Rust SDK\n")
        .await?;
    fs.copy("example/notes", "example/notes-copy").await?;
    fs.rename("example/notes-copy/hello.txt", "example/notes-copy/hi.txt")
        .await?;
    fs.chmod("example/notes-copy/hi.txt", 0o600, false).await?;

    for e in fs.list_recursive("example").await?.entries {
        println!(
            "{:>9} {} {:>8}  {}",
            format!("{:?}", e.kind),
            e.mode,
            e.size,
            e.name
        );
    }
    let text = fs.read("example/notes-copy/hi.txt").await?;
    print!("hi.txt: {}", String::from_utf8_lossy(&text));

    // Download: streamed into a local file.
    let out_path = std::env::temp_dir().join(format!("files-example-{}", std::process::id()));
    let mut out = tokio::fs::File::create(&out_path)
        .await
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", out_path.display())))?;
    let n = fs.read_to("example/upload.bin", &mut out).await?;
    println!("downloaded {n} bytes to {}", out_path.display());
    let _ = tokio::fs::remove_file(&out_path).await;

    match fs.read("example/missing.txt").await {
        Err(e) => println!("reading a missing file: {} ({})", e, e.code().unwrap_or("")),
        Ok(_) => println!("unexpectedly, the missing file exists"),
    }
    let del = fs.remove_all("example").await?;
    println!("removed {} paths", del.count);
    Ok(())
}
