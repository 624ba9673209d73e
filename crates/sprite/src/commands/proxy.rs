//! `sprite proxy 3000 [8000:3000 ...]`: local listeners whose every
//! accepted connection is carried into the sprite by the proxy WebSocket.

use anyhow::{Context as _, Result};
use tokio::net::TcpListener;

use super::Context;
use crate::cli::ProxyArgs;

pub async fn run(ctx: &Context, args: ProxyArgs) -> Result<i32> {
    let sprite = ctx.sprite()?;
    let mut tasks = Vec::new();
    for (local, remote) in args.ports {
        let addr = format!("{}:{local}", args.bind);
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!(
            "forwarding {} → {}:{remote}",
            listener.local_addr().map(|a| a.to_string()).unwrap_or(addr),
            sprite.name()
        );
        let sprite = sprite.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let sprite = sprite.clone();
                tokio::spawn(async move {
                    match sprite.proxy("localhost", remote).await {
                        Ok(stream) => {
                            let _ = stream.relay(tcp).await;
                        }
                        Err(e) => eprintln!("{peer}: port {remote}: {e}"),
                    }
                });
            }
        }));
    }
    tokio::signal::ctrl_c().await.ok();
    for t in tasks {
        t.abort();
    }
    Ok(0)
}
