//! `connect`: relay one TCP connection to a loopback port inside the sprite
//! over the daemon's Unix connection. The agent runs in the sprite's network
//! namespace, so this reaches what the sprite's own programs listen on,
//! whatever isolates the sprite.

use std::net::SocketAddr;

use sprites_api::agent::Reply;
use sprites_api::port::loopback_target;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::wire;

pub async fn connect(rd: OwnedReadHalf, mut wr: OwnedWriteHalf, host: &str, port: u16) {
    let Some(addrs) = loopback_target(host) else {
        let reply = wire::bad_request(format!(
            "{host:?} is not this sprite: only localhost, 127.0.0.1 and ::1 can be reached"
        ));
        let _ = wire::write_json(&mut wr, &reply).await;
        return;
    };
    let mut last = None;
    let mut tcp = None;
    for ip in addrs {
        match TcpStream::connect(SocketAddr::new(ip, port)).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut tcp) = tcp else {
        let (code, message) = match last {
            Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => (
                "connection_refused",
                format!("nothing listens on port {port} in the sprite"),
            ),
            Some(e) => ("internal", format!("connecting to port {port}: {e}")),
            None => ("internal", format!("no address for port {port}")),
        };
        let reply = Reply::Error {
            code: code.into(),
            message,
        };
        let _ = wire::write_json(&mut wr, &reply).await;
        return;
    };
    let _ = tcp.set_nodelay(true);
    let target = format!("{host}:{port}");
    if wire::write_json(&mut wr, &Reply::Connected { target })
        .await
        .is_err()
    {
        return;
    }
    let Ok(mut unix) = rd.reunite(wr) else { return };
    // Copies both ways; an end of one side's stream shuts down writing on
    // the other (half-close), and the copy ends when both have ended.
    let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
}
