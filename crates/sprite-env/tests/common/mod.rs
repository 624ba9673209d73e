//! A fake in-sprite API (`sprites_test_support::unix_http`) that records
//! what it saw, and `sprite-env` run in-process against it.

use std::io::Write;

use axum::Router;
use sprites_test_support::unix_http::UnixHttpServer;

/// The server of `routes`, and `seen`: what its handlers recorded.
pub struct FakeApi<S> {
    http: UnixHttpServer,
    pub seen: S,
}

impl<S: Clone + Default> FakeApi<S> {
    /// Serves `routes`, handed the record its handlers write to.
    pub fn start(routes: fn(S) -> Router) -> FakeApi<S> {
        let seen = S::default();
        FakeApi {
            http: UnixHttpServer::start(routes(seen.clone())),
            seen,
        }
    }

    /// Runs `sprite-env --socket SOCKET ARGS` against it, its stdout into
    /// `out`: (exit status, stderr).
    pub fn sprite_env(&self, args: &[&str], out: &mut dyn Write) -> (u8, String) {
        let mut err = Vec::new();
        let socket = self.http.socket().to_string_lossy().into_owned();
        let argv = ["sprite-env", "--socket", &socket]
            .into_iter()
            .chain(args.iter().copied());
        let code = sprite_env::run(argv, &mut sprite_env::Streams { out, err: &mut err });
        (code, String::from_utf8_lossy(&err).into_owned())
    }
}
