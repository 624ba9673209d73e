//! The WebSocket endpoints' common parts: the upgrade, refused in the
//! Sprites error format (axum's own rejection is `text/plain`), and the
//! daemon's stop as every socket sees it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;

pub struct Upgrade(pub WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(Upgrade)
            .map_err(|e| {
                ApiError::BadRequest(format!("this endpoint is a WebSocket: {}", e.body_text()))
            })
    }
}

/// The daemon's WebSockets once upgraded. Each is told when the daemon
/// stops and closes with 1001 ("going away"); the stop waits a bounded
/// time for them to have said so. An upgraded connection is no longer
/// the HTTP server's (its graceful shutdown does not wait for it), and a
/// socket cut by the process's exit is, to its client, a connection lost
/// without a Close: the JS SDK throws that from an idle pooled control
/// connection as an uncaught error.
#[derive(Clone)]
pub struct Sockets {
    tasks: TaskTracker,
    stop: Arc<watch::Sender<bool>>,
}

impl Default for Sockets {
    fn default() -> Self {
        Sockets {
            tasks: TaskTracker::new(),
            stop: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl Sockets {
    /// Serve the upgraded socket with `f`, which is given the daemon's stop
    /// to watch.
    pub fn serve<F, Fut>(&self, ws: WebSocketUpgrade, f: F) -> Response
    where
        F: FnOnce(WebSocket, Stopping) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let tasks = self.tasks.clone();
        let stopping = Stopping(self.stop.subscribe());
        ws.on_upgrade(move |socket| tasks.track_future(f(socket, stopping)))
    }

    /// The daemon is stopping: every socket is told.
    pub fn stop(&self) {
        self.stop.send_replace(true);
        self.tasks.close();
    }

    /// Wait up to `grace` for every socket to end (after [`Sockets::stop`]);
    /// how many were still open when it ran out.
    pub async fn wait(&self, grace: Duration) -> usize {
        match tokio::time::timeout(grace, self.tasks.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tasks.len(),
        }
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.tasks.len()
    }
}

/// One socket's view of the daemon's stop.
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Resolves once the daemon is stopping (at once if it is).
    pub async fn wait(&mut self) {
        if self.0.wait_for(|stopping| *stopping).await.is_err() {
            // The daemon's state is gone without a stop: nothing to say.
            std::future::pending::<()>().await;
        }
    }
}

/// What a socket says when the daemon stops under it.
pub fn stopping_frame() -> CloseFrame {
    CloseFrame {
        code: 1001,
        reason: "sprited is stopping".into(),
    }
}

/// [`stopping_frame`] as a message.
pub fn stopping_close() -> Message {
    Message::Close(Some(stopping_frame()))
}

/// How long a socket that sent its Close waits for the client's.
pub const CLOSE_REPLY: Duration = Duration::from_secs(2);

/// After our Close: read (and drop) what the client still sends until its
/// Close, for a bounded time. A socket dropped with the client's frames
/// unread is reset by the kernel, and a reset can make the client's
/// kernel discard what it had not read yet, our Close included.
pub async fn await_close<S>(rx: &mut S)
where
    S: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    use futures_util::StreamExt;
    let _ = tokio::time::timeout(CLOSE_REPLY, async {
        while let Some(Ok(m)) = rx.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_reaches_every_socket_and_is_waited_for() {
        let sockets = Sockets::default();
        let mut early = Stopping(sockets.stop.subscribe());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        // A socket's task that takes a moment to close after the stop.
        let tasks = sockets.tasks.clone();
        let mut s = Stopping(sockets.stop.subscribe());
        tasks.spawn(async move {
            s.wait().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = done_tx.send(());
        });
        assert_eq!(sockets.open(), 1);
        sockets.stop();
        early.wait().await;
        // One subscribed after the stop sees it at once.
        Stopping(sockets.stop.subscribe()).wait().await;
        assert_eq!(sockets.wait(Duration::from_secs(5)).await, 0);
        assert!(
            done_rx.await.is_ok(),
            "the wait returned before the task ended"
        );
    }

    #[tokio::test]
    async fn the_wait_is_bounded() {
        let sockets = Sockets::default();
        sockets.tasks.spawn(std::future::pending::<()>());
        sockets.stop();
        assert_eq!(sockets.wait(Duration::from_millis(50)).await, 1);
    }
}
