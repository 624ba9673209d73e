//! A fake HTTP server on a Unix socket: an axum `Router` written by a test,
//! served where a client expects the daemon's in-sprite API.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// Serves from a thread (and runtime) of its own, so blocking tests can
/// call it; stopped, and its connections cut, when dropped.
pub struct UnixHttpServer {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Holds the socket; removed after the thread has ended.
    _dir: tempfile::TempDir,
}

impl UnixHttpServer {
    /// Serves `app` on `api.sock` in a new temp dir. The socket listens
    /// before this returns.
    pub fn start(app: axum::Router) -> UnixHttpServer {
        let dir = tempfile::tempdir().expect("a temp dir for the socket");
        let socket = dir.path().join("api.sock");
        let listener = UnixListener::bind(&socket).expect("bind the server's socket");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking socket");
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the server's runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::UnixListener::from_std(listener).expect("the server's socket");
                tokio::select! {
                    served = axum::serve(listener, app) => served.expect("serving"),
                    _ = stopped => {}
                }
            });
            // Dropping the runtime ends the connections still open: a test
            // that is done may leave a response streaming.
        });
        UnixHttpServer {
            socket,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for UnixHttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
