//! One connection from the daemon: read the request, dispatch it.

use std::sync::Arc;
use std::time::Duration;

use sprites_api::agent::{Reply, Request, JSON};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;

use crate::fs;
use crate::ports::{self, PortTable};
use crate::services::{self, Services};
use crate::session::attach;
use crate::session::kill;
use crate::session::registry::Sessions;
use crate::wire::{self, ReadError};

/// How long a new connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Serve one connection to its end. Never fails: errors the peer can be told
/// about are answered with an `error` frame, then the connection is closed.
pub async fn serve(
    stream: UnixStream,
    sessions: Arc<Sessions>,
    services: Arc<Services>,
    ports: PortTable,
) {
    let (mut rd, mut wr) = stream.into_split();
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut rd)).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return,
        Err(_elapsed) => {
            let reply = wire::bad_request("no request received in time");
            let _ = wire::write_json(&mut wr, &reply).await;
            return;
        }
        Ok(Err(reply)) => {
            let _ = wire::write_json(&mut wr, &reply).await;
            return;
        }
    };
    match request {
        Request::Ping => {
            let pong = Reply::Pong {
                version: env!("CARGO_PKG_VERSION").to_string(),
            };
            let _ = wire::write_json(&mut wr, &pong).await;
        }
        Request::Sessions => {
            let list = Reply::Sessions {
                sessions: sessions.list(),
            };
            let _ = wire::write_json(&mut wr, &list).await;
        }
        Request::Kill {
            id,
            signal,
            timeout_ms,
        } => {
            let _ = kill::kill(&mut wr, &sessions, id, &signal, timeout_ms).await;
        }
        Request::Busy => {
            let busy = Reply::Busy {
                running_sessions: u32::try_from(sessions.live().len()).unwrap_or(u32::MAX),
            };
            let _ = wire::write_json(&mut wr, &busy).await;
        }
        Request::Service(op) => services::serve(&services, op, &mut wr).await,
        Request::WatchPorts => ports::watch(rd, wr, &ports).await,
        Request::Exec(req) => attach::exec(rd, wr, &sessions, &ports, req).await,
        Request::Attach { id } => attach::attach(rd, wr, &sessions, &ports, id).await,
        Request::Fs(req) => fs::serve(rd, wr, &sessions, req).await,
        Request::Connect { ip, port } => crate::tunnel::serve(rd, wr, ip, port).await,
        Request::Named { hostname } => {
            let reply = match named(&hostname) {
                Ok(()) => Reply::Done,
                Err(reply) => reply,
            };
            let _ = wire::write_json(&mut wr, &reply).await;
        }
    }
}

/// The daemon set the sandbox's host name to `hostname`: `/etc/hosts`
/// follows. Refused unless this is the sprite's init (an agent run by hand
/// on a host leaves the host's file alone) and the kernel's host name is
/// that.
fn named(hostname: &str) -> Result<(), Reply> {
    if std::process::id() != 1 {
        return Err(Reply::Error {
            code: sprites_api::agent::AgentErrorCode::Conflict,
            message: "this agent is not a sprite's init: /etc/hosts is not its to change".into(),
        });
    }
    let current = crate::hosts::kernel_hostname();
    if current != hostname {
        return Err(Reply::Error {
            code: sprites_api::agent::AgentErrorCode::Conflict,
            message: format!("the host name is {current:?}, not {hostname:?}"),
        });
    }
    crate::hosts::rename(std::path::Path::new("/etc/hosts"), hostname).map_err(|e| Reply::Error {
        code: sprites_api::agent::AgentErrorCode::Internal,
        message: format!("/etc/hosts: {e}"),
    })
}

/// The first frame: a JSON request. `Err` is the reply to send before
/// closing; `Ok(None)` a connection closed before any request.
async fn read_request(rd: &mut OwnedReadHalf) -> Result<Option<Request>, Reply> {
    let frame = match wire::read_frame(rd).await {
        Ok(Some(f)) => f,
        Ok(None) | Err(ReadError::Broken) => return Ok(None),
        Err(ReadError::Malformed(m)) => return Err(wire::bad_request(m)),
    };
    if frame.kind != JSON {
        return Err(wire::bad_request(format!(
            "expected a JSON request frame, got kind {:#04x}",
            frame.kind
        )));
    }
    serde_json::from_slice(&frame.payload)
        .map(Some)
        .map_err(|e| wire::bad_request(format!("bad request: {e}")))
}
