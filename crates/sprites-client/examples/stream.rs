//! Stream a command both ways: write its stdin line by line and print its
//! output events as they arrive.
//!
//! ```sh
//! SPRITE_TOKEN=... cargo run -p sprites-client --example stream -- NAME
//! ```

use futures_util::StreamExt;
use sprites_client::{Client, ExecEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SPRITES_API_URL").unwrap_or_else(|_| "http://127.0.0.1:7070".into());
    let token = std::env::var("SPRITE_TOKEN").map_err(|_| "set SPRITE_TOKEN")?;
    let name = std::env::args().nth(1).ok_or("usage: stream NAME")?;

    let client = Client::new(&url, token)?;
    let mut child = client
        .sprite(name)
        .command("sh")
        .arg("-c")
        .arg("while read line; do echo \"got $line\"; done; echo 'stdin closed' >&2; exit 7")
        .spawn()
        .await?;

    let stdin = child.take_stdin().ok_or("stdin already taken")?;
    let writer = tokio::spawn(async move {
        for i in 1..=3 {
            stdin.write(format!("line {i}\n")).await?;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        stdin.close(); // the command reads EOF
        Ok::<_, sprites_client::Error>(())
    });

    // ExecChild is a Stream of events (or call `child.next_event().await`).
    while let Some(event) = child.next().await {
        match event? {
            ExecEvent::Stdout(data) => print!("stdout: {}", String::from_utf8_lossy(&data)),
            ExecEvent::Stderr(data) => print!("stderr: {}", String::from_utf8_lossy(&data)),
            ExecEvent::Text(json) => println!("message: {json}"),
            ExecEvent::Exit(code) => println!("exited with {code}"),
        }
    }
    // Once the command has exited, further writes fail like a broken pipe.
    if let Err(e) = writer.await? {
        eprintln!("stdin: {e}");
    }
    Ok(())
}
