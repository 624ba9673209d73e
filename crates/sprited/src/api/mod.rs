//! The `/v1` HTTP and WebSocket API.

mod body;
mod checkpoints;
pub mod error;
mod exec;
mod fs;
pub(crate) mod in_sprite;
mod policy;
mod ports;
mod proxy;
mod query;
mod services;
mod sprites;
mod tasks;
mod tokens;
mod usage;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;

pub(crate) use sprites::run_to_completion;

use crate::db::SpriteRecord;
use crate::error::ApiError;
use crate::manager::Manager;
use crate::AppState;

/// JSON bodies of the control API are small; exec stdin streams separately.
const JSON_BODY_LIMIT: usize = 1 << 20;

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/sprites", post(sprites::create).get(sprites::list))
        .route(
            "/sprites/{name}",
            get(sprites::get)
                .put(sprites::update)
                .delete(sprites::delete),
        )
        .route("/sprites/{name}/upgrade", post(sprites::upgrade))
        .route("/sprites/{name}/evict", post(sprites::evict))
        .route("/sprites/{name}/restart", post(sprites::restart))
        .route(
            "/sprites/{name}/exec",
            get(exec::exec_or_list).post(exec::http_exec),
        )
        .route("/sprites/{name}/exec/{id}", get(exec::attach))
        .route("/sprites/{name}/exec/{id}/kill", post(exec::kill))
        .route("/sprites/{name}/control", get(no_control))
        .nest("/sprites/{name}", sprite_routes())
        .route("/sprites/{name}/fs/read", get(fs::read))
        .route("/sprites/{name}/fs/write", put(fs::write))
        .route("/sprites/{name}/fs/list", get(fs::list))
        .route("/sprites/{name}/fs/stat", get(fs::stat))
        .route(
            "/sprites/{name}/fs/delete",
            axum::routing::delete(fs::delete),
        )
        .route("/sprites/{name}/fs/rename", post(fs::rename))
        .route("/sprites/{name}/fs/copy", post(fs::copy))
        .route("/sprites/{name}/fs/chmod", post(fs::chmod))
        .route("/sprites/{name}/fs/chown", post(fs::chown))
        .route("/sprites/{name}/fs/mkdir", post(fs::mkdir))
        .route("/sprites/{name}/fs/watch", get(fs::watch))
        .route(
            "/sprites/{name}/policy/network",
            get(policy::get_network).post(policy::set_network),
        )
        .route(
            "/sprites/{name}/policy/resources",
            get(policy::get_resources)
                .post(policy::set_resources)
                .delete(policy::delete_resources),
        )
        .route("/sprites/{name}/proxy", get(proxy::proxy))
        .route("/sprites/{name}/ports/watch", get(ports::watch))
        .route("/sprites/{name}/usage", get(usage::sprite))
        .route("/usage", get(usage::org))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/organizations/{org}/tokens", post(tokens::create_for_org))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_token,
        ));
    let metrics =
        Router::new()
            .route("/metrics", get(metrics))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                crate::auth::require_token,
            ));
    Router::new()
        .nest("/v1", v1)
        .merge(metrics)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::Extension(body::BodyLimit(JSON_BODY_LIMIT)))
        .layer(middleware::map_response(version_header))
        // Outermost: a sprite URL's host never reaches the API's routes.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::urls::dispatch,
        ))
        .with_state(state)
}

/// A sprite's checkpoints, services and tasks: served at
/// `/v1/sprites/{name}` by this API and at `/v1` on the sprite's own socket
/// ([`in_sprite`]), the handlers finding the sprite with [`Sprite`].
fn sprite_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Sprite: FromRequestParts<S>,
    Arc<Manager>: FromRef<S>,
{
    Router::new()
        .route("/checkpoint", post(checkpoints::create))
        .route("/checkpoints", get(checkpoints::list))
        .route(
            "/checkpoints/{id}",
            get(checkpoints::get).delete(checkpoints::delete),
        )
        .route("/checkpoints/{id}/restore", post(checkpoints::restore))
        .route("/services", get(services::list))
        .route(
            "/services/signal",
            post(services::signal)
                .get(services::get)
                .put(services::put)
                .delete(services::delete),
        )
        .route(
            "/services/{svc}",
            get(services::get)
                .put(services::put)
                .delete(services::delete),
        )
        .route("/services/{svc}/start", post(services::start))
        .route("/services/{svc}/stop", post(services::stop))
        .route("/services/{svc}/restart", post(services::restart))
        .route("/services/{svc}/logs", get(services::logs))
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route("/tasks/{task}", put(tasks::update).delete(tasks::delete))
}

/// The sprite a request acts on. The handlers shared by this router and
/// the in-sprite one take it: here it is the `{name}` path segment; on a
/// sprite's socket, the sprite whose socket it is ([`in_sprite`]).
pub struct Sprite(pub SpriteRecord);

impl FromRequestParts<AppState> for Sprite {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        #[derive(serde::Deserialize)]
        struct Named {
            name: String,
        }
        let Path(Named { name }) = Path::<Named>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        state
            .manager
            .get(&name)
            .map(Sprite)
            .map_err(|e| ApiError::from(e).into_response())
    }
}

/// Prometheus text exposition.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.manager.render_metrics(),
    )
        .into_response()
}

pub(crate) async fn version_header(mut res: Response) -> Response {
    res.headers_mut().insert(
        "sprite-version",
        HeaderValue::from_static(sprites_api::SPRITE_VERSION),
    );
    res
}

/// The multiplexed control channel is not offered: the SDKs fall back to the
/// plain endpoints on a 404, so answer it at once.
async fn no_control() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(sprites_api::error::ErrorBody::new(
            "not_found",
            "the control endpoint is not available on this server",
        )),
    )
        .into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}
