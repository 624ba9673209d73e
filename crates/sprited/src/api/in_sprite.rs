//! The API a sprite sees at `/.sprite/api.sock`: its own checkpoints,
//! services and tasks (`sprite-env ...`), with no token. The socket is bound in
//! `<data>/sprites/<id>/run`, bound read-only into that sprite alone, so
//! reaching it is the proof of who calls. The daemon serves it (rather
//! than the agent) because the work it asks for (checkpoint, restore) is
//! the daemon's, and a restore must complete after it has ended the caller.
//!
//! The manager binds the socket when the sprite starts and hands it here
//! ([`SpriteSocket`]); its routes are the public API's handlers, the sprite
//! being the socket's owner rather than a path segment.

use std::sync::{Arc, Weak};

use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{checkpoints, Sprite};
use crate::error::ApiError;
use crate::manager::{Manager, SpriteSocket};

/// The state of one sprite's socket.
#[derive(Clone)]
struct InSprite {
    manager: Arc<Manager>,
    /// The sprite this socket belongs to.
    name: Arc<str>,
}

impl FromRef<InSprite> for Arc<Manager> {
    fn from_ref(state: &InSprite) -> Self {
        state.manager.clone()
    }
}

/// On its socket, a sprite acts on itself.
impl FromRequestParts<InSprite> for Sprite {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &InSprite) -> Result<Self, ApiError> {
        Ok(Sprite(state.manager.get(&state.name)?))
    }
}

/// Bodies sent from inside a sprite are small (a checkpoint comment, a
/// service definition).
const IN_SPRITE_BODY_LIMIT: usize = 64 << 10;

fn router(state: InSprite) -> Router {
    Router::new()
        .nest("/v1", super::sprite_routes().into_parts().0)
        // Inside, `POST /v1/checkpoints` takes one too.
        .route("/v1/checkpoints", post(checkpoints::create))
        .fallback(super::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), busy))
        .layer(axum::extract::DefaultBodyLimit::max(IN_SPRITE_BODY_LIMIT))
        .layer(axum::Extension(super::body::BodyLimit(
            IN_SPRITE_BODY_LIMIT,
        )))
        .layer(axum::middleware::map_response(super::version_header))
        .with_state(state)
}

/// Serves each socket the manager hands over, until its sprite stops.
///
/// Each sprite may hold [`Config::in_sprite_connections`] connections, and
/// all sprites together a quarter of the daemon's file descriptors: what a
/// sprite opens to its socket can never take the descriptors the API and
/// the other sprites need. Idle connections are closed after
/// [`Config::header_read_timeout`].
///
/// [`Config::in_sprite_connections`]: crate::config::Config::in_sprite_connections
/// [`Config::header_read_timeout`]: crate::config::Config::header_read_timeout
pub fn serve_sockets(manager: &Arc<Manager>, mut sockets: UnboundedReceiver<SpriteSocket>) {
    let budget = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(4096, |(soft, _)| usize::try_from(soft / 4).unwrap_or(4096))
        .max(64);
    let shared = Arc::new(tokio::sync::Semaphore::new(budget));
    // Weak: the manager holds the sending side.
    let manager = Arc::downgrade(manager);
    tokio::spawn(async move {
        while let Some(socket) = sockets.recv().await {
            serve(&manager, socket, &shared);
        }
    });
}

fn serve(manager: &Weak<Manager>, socket: SpriteSocket, shared: &Arc<tokio::sync::Semaphore>) {
    let Some(manager) = manager.upgrade() else {
        return;
    };
    let SpriteSocket {
        name,
        listener,
        stopped,
    } = socket;
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(sprite = %name, error = %e, "cannot serve the in-sprite API");
            return;
        }
    };
    let limits = crate::server::Limits {
        max_connections: manager.cfg.in_sprite_connections,
        shared: Some(shared.clone()),
        header_read_timeout: manager.cfg.header_read_timeout,
    };
    let app = router(InSprite {
        manager,
        name: name.into(),
    });
    // Until the sprite stops, or a new socket replaces this one.
    tokio::spawn(crate::server::serve_unix(
        listener,
        app,
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
}

/// Every in-sprite call keeps the sprite awake while it runs (its answer
/// streamed to the end included).
async fn busy(State(s): State<InSprite>, req: Request, next: Next) -> Response {
    let activity = s
        .manager
        .get(&s.name)
        .ok()
        .map(|rec| s.manager.activity(&rec.id));
    let res = next.run(req).await;
    let Some(activity) = activity else { return res };
    let (parts, body) = res.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _keep = &activity;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}
