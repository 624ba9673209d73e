//! `connect`: a TCP connection to one of the sprite's own ports, carried
//! over the daemon's connection to the agent. It is how the daemon reaches
//! a port where it cannot connect from the sprite's network namespace
//! itself: under gVisor the sprite's loopback is the Sentry's own, so a
//! server listening on 127.0.0.1 only is reachable from in here alone.

use std::net::IpAddr;
use std::time::Duration;

use sprites_api::agent::{self, AgentErrorCode, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::wire;

/// How long a connect to a port inside may take (loopback: at once, unless
/// the listener's backlog is full).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn error(code: AgentErrorCode, message: String) -> Reply {
    Reply::Error { code, message }
}

/// Connect to `ip:port`, answer `done` (or why not), then carry the bytes
/// both ways until both directions have ended.
pub async fn serve(rd: OwnedReadHalf, mut wr: OwnedWriteHalf, ip: IpAddr, port: u16) {
    // Only the sprite's own ports: never a way out of it.
    if !ip.is_loopback() {
        let reply = wire::bad_request(format!("{ip} is not a loopback address"));
        let _ = wire::write_json(&mut wr, &reply).await;
        return;
    }
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((ip, port))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let code = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                AgentErrorCode::Refused
            } else {
                AgentErrorCode::Internal
            };
            let reply = error(code, format!("connecting to {ip}:{port}: {e}"));
            let _ = wire::write_json(&mut wr, &reply).await;
            return;
        }
        Err(_) => {
            let reply = error(
                AgentErrorCode::Internal,
                format!("connecting to {ip}:{port}: no answer within {CONNECT_TIMEOUT:?}"),
            );
            let _ = wire::write_json(&mut wr, &reply).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    if wire::write_json(&mut wr, &Reply::Done).await.is_err() {
        return;
    }
    carry(rd, wr, tcp).await;
}

/// In frames, each end of data said rather than left to a half-close of
/// the daemon's socket (a host socket under gVisor, whose Sentry decides
/// what its shutdown does): the daemon's bytes come as `STDIN` frames and
/// its end as `STDIN_EOF`; the server's go back as `STDOUT` frames and its
/// end as `EXIT` (0, or 1 after a read error).
async fn carry(mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf, tcp: TcpStream) {
    let (mut tcp_r, mut tcp_w) = tcp.into_split();
    // The daemon's side: `true` once it ended its data, `false` when it
    // went away (or said something else), which ends everything.
    let up = async {
        loop {
            match wire::read_frame(&mut rd).await {
                Ok(Some(f)) if f.kind == agent::STDIN => {
                    if tcp_w.write_all(&f.payload).await.is_err() {
                        return false;
                    }
                }
                Ok(Some(f)) if f.kind == agent::STDIN_EOF => {
                    let _ = tcp_w.shutdown().await;
                    return true;
                }
                _ => return false,
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tcp_r.read(&mut buf).await {
                Ok(0) => {
                    let _ = wire::write_exit(&mut wr, 0).await;
                    return;
                }
                Ok(n) => {
                    if wr
                        .write_all(&agent::frame(agent::STDOUT, &buf[..n]))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(_) => {
                    let _ = wire::write_exit(&mut wr, 1).await;
                    return;
                }
            }
        }
    };
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            ended = &mut up, if !up_done => {
                if !ended {
                    return;
                }
                up_done = true;
            }
            () = &mut down, if !down_done => down_done = true,
        }
    }
}
