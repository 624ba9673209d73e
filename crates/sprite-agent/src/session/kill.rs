//! The `kill` operation: signal a session, wait for it, escalate to SIGKILL.

use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use sprites_api::agent::Reply;
use tokio::net::unix::OwnedWriteHalf;

use crate::session::registry::Sessions;
use crate::session::signame;
use crate::wire;

/// Longest wait honoured, whatever the request says.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// How long to wait for the exit after SIGKILL.
const AFTER_SIGKILL: Duration = Duration::from_secs(5);

pub async fn kill(
    wr: &mut OwnedWriteHalf,
    sessions: &Arc<Sessions>,
    id: u32,
    signal: &str,
    timeout_ms: u64,
) -> std::io::Result<()> {
    let Some(session) = sessions.get(id).filter(|s| s.is_live()) else {
        let reply = if sessions.has_ended(id) {
            wire::gone(format!("session {id} has already ended"))
        } else {
            wire::not_found(format!("no session {id}"))
        };
        return wire::write_json(wr, &reply).await;
    };
    let sig = match signame::parse(signal) {
        Ok(s) => s,
        Err(m) => return wire::write_json(wr, &wire::bad_request(m)).await,
    };
    match session.signal(sig) {
        // The group is already gone: the exit is on its way.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            let reply = wire::internal(format!("signal {sig}: {e}"));
            return wire::write_json(wr, &reply).await;
        }
    }
    wire::write_json(
        wr,
        &Reply::Signal {
            signal: sig.as_str().to_string(),
        },
    )
    .await?;
    let wait = Duration::from_millis(timeout_ms).min(MAX_WAIT);
    let code = match session.wait_exit(wait).await {
        Some(code) => {
            wire::write_json(wr, &Reply::Exited { exit_code: code }).await?;
            code
        }
        None => {
            let _ = session.signal(Signal::SIGKILL);
            wire::write_json(wr, &Reply::Killed).await?;
            session
                .wait_exit(AFTER_SIGKILL)
                .await
                .unwrap_or(128 + Signal::SIGKILL as i32)
        }
    };
    wire::write_json(wr, &Reply::Complete { exit_code: code }).await
}
