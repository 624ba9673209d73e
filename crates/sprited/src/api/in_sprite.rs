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

use std::future::IntoFuture;
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
pub fn serve_sockets(manager: &Arc<Manager>, mut sockets: UnboundedReceiver<SpriteSocket>) {
    // Weak: the manager holds the sending side.
    let manager = Arc::downgrade(manager);
    tokio::spawn(async move {
        while let Some(socket) = sockets.recv().await {
            serve(&manager, socket);
        }
    });
}

fn serve(manager: &Weak<Manager>, socket: SpriteSocket) {
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
    let app = router(InSprite {
        manager,
        name: name.into(),
    });
    tokio::spawn(async move {
        tokio::select! {
            served = axum::serve(listener, app).into_future() => {
                if let Err(e) = served {
                    tracing::warn!(error = %e, "in-sprite API server ended");
                }
            }
            // The sprite stopped, or a new socket replaced this one.
            _ = stopped => {}
        }
    });
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
