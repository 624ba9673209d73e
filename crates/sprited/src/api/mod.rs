//! The `/v1` HTTP and WebSocket API.

mod body;
mod checkpoints;
mod control;
pub mod error;
mod exec;
mod fs;
mod host;
pub(crate) mod in_sprite;
mod mcp;
mod organization;
mod policy;
mod ports;
mod proxy;
mod query;
mod routes;
mod services;
mod sprites;
mod tasks;
mod tokens;
mod usage;
pub mod ws;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use mcp::PATH as MCP_PATH;
pub use routes::Endpoint;
use routes::Routes;
pub(crate) use sprites::run_to_completion;

use crate::db::SpriteRecord;
use crate::error::ApiError;
use crate::manager::Manager;
use crate::AppState;

/// JSON bodies of the control API are small; exec stdin streams separately.
const JSON_BODY_LIMIT: usize = 1 << 20;

/// Every `/v1` endpoint of the TCP API, in one table ([`Routes`]).
fn v1_routes() -> Routes<AppState> {
    Routes::new()
        .get("/openapi.json", openapi)
        .post("/sprites", sprites::create)
        .get("/sprites", sprites::list)
        .get("/sprites/{name}", sprites::get)
        .put("/sprites/{name}", sprites::update)
        .delete("/sprites/{name}", sprites::delete)
        .post("/sprites/{name}/upgrade", sprites::upgrade)
        .post("/sprites/{name}/evict", sprites::evict)
        .post("/sprites/{name}/restart", sprites::restart)
        .get("/sprites/{name}/check", sprites::check)
        .get("/sprites/{name}/exec", exec::exec_or_list)
        .post("/sprites/{name}/exec", exec::http_exec)
        .get("/sprites/{name}/exec/{id}", exec::attach)
        .post("/sprites/{name}/exec/{id}/kill", exec::kill)
        .get("/sprites/{name}/control", control::control)
        .nest("/sprites/{name}", sprite_routes())
        .get("/sprites/{name}/fs/read", fs::read)
        .put("/sprites/{name}/fs/write", fs::write)
        .get("/sprites/{name}/fs/list", fs::list)
        .get("/sprites/{name}/fs/stat", fs::stat)
        .delete("/sprites/{name}/fs/delete", fs::delete)
        .post("/sprites/{name}/fs/rename", fs::rename)
        .post("/sprites/{name}/fs/copy", fs::copy)
        .post("/sprites/{name}/fs/chmod", fs::chmod)
        .post("/sprites/{name}/fs/chown", fs::chown)
        .post("/sprites/{name}/fs/mkdir", fs::mkdir)
        .get("/sprites/{name}/fs/watch", fs::watch)
        .get("/sprites/{name}/policy/network", policy::get_network)
        .post("/sprites/{name}/policy/network", policy::set_network)
        .get("/sprites/{name}/policy/resources", policy::get_resources)
        .post("/sprites/{name}/policy/resources", policy::set_resources)
        .delete("/sprites/{name}/policy/resources", policy::delete_resources)
        .get("/sprites/{name}/policy/privileges", policy::get_privileges)
        .post("/sprites/{name}/policy/privileges", policy::set_privileges)
        .delete(
            "/sprites/{name}/policy/privileges",
            policy::delete_privileges,
        )
        .get("/sprites/{name}/proxy", proxy::proxy)
        .get("/sprites/{name}/ports/watch", ports::watch)
        .get("/sprites/{name}/usage", usage::sprite)
        .get("/usage", usage::org)
        .get("/organization", organization::get)
        .post("/tokens", tokens::create)
        .get("/tokens", tokens::list)
        .delete("/tokens/{id}", tokens::revoke)
        .post("/organizations/{org}/tokens", tokens::create_for_org)
        .post("/host/drain", host::drain)
}

/// Every endpoint the TCP API serves, as `(method, path template)`: what
/// the contract test holds against `docs/api`. Beside the `/v1` table,
/// the routes [`router`] mounts on their own: `/metrics` and `/mcp` (a
/// tower service that speaks MCP's JSON-RPC; its body is MCP's, not ours).
pub fn endpoints() -> Vec<Endpoint> {
    let (_, v1) = v1_routes().into_parts();
    v1.into_iter()
        .map(|e| Endpoint {
            method: e.method,
            path: format!("/v1{}", e.path),
        })
        .chain([
            Endpoint {
                method: axum::http::Method::GET,
                path: "/metrics".into(),
            },
            Endpoint {
                method: axum::http::Method::POST,
                path: mcp::PATH.into(),
            },
        ])
        .collect()
}

pub fn router(state: AppState) -> Router {
    let (v1, _) = v1_routes().into_parts();
    let v1 = v1.fallback(not_found).layer(middleware::from_fn_with_state(
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
        .merge(mcp::router(state.clone()))
        .merge(crate::console::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::Extension(body::BodyLimit(JSON_BODY_LIMIT)))
        .layer(middleware::map_response(version_header))
        // A sprite URL's host never reaches the API's routes.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::urls::dispatch,
        ))
        // Outermost: a draining host takes no work, sprite URLs included.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            host::refuse_while_draining,
        ))
        // First of all: a request for a sprite another host holds goes there.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::cluster::route,
        ))
        .with_state(state)
}

/// A sprite's checkpoints, services and tasks: served at
/// `/v1/sprites/{name}` by this API and at `/v1` on the sprite's own socket
/// ([`in_sprite`]), the handlers finding the sprite with [`Sprite`].
fn sprite_routes<S>() -> Routes<S>
where
    S: Clone + Send + Sync + 'static,
    Sprite: FromRequestParts<S>,
    Arc<Manager>: FromRef<S>,
{
    Routes::new()
        .post("/checkpoint", checkpoints::create)
        .get("/checkpoints", checkpoints::list)
        .get("/checkpoints/{id}", checkpoints::get)
        .delete("/checkpoints/{id}", checkpoints::delete)
        .post("/checkpoints/{id}/restore", checkpoints::restore)
        .get("/snapshots", checkpoints::list_snapshots)
        .post("/snapshots/{id}/restore", checkpoints::restore_snapshot)
        .get("/services", services::list)
        .post("/services/signal", services::signal)
        .get("/services/signal", services::get)
        .put("/services/signal", services::put)
        .delete("/services/signal", services::delete)
        .get("/services/{svc}", services::get)
        .put("/services/{svc}", services::put)
        .delete("/services/{svc}", services::delete)
        .post("/services/{svc}/start", services::start)
        .post("/services/{svc}/stop", services::stop)
        .post("/services/{svc}/restart", services::restart)
        .get("/services/{svc}/logs", services::logs)
        .get("/tasks", tasks::list)
        .post("/tasks", tasks::create)
        .put("/tasks/{task}", tasks::update)
        .delete("/tasks/{task}", tasks::delete)
}

/// The API description (`docs/api`, assembled by `build.rs`): OpenAPI 3.1,
/// whose component schemas are the JSON Schemas the contract test checks
/// real responses against.
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

const OPENAPI: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

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
    let mut text = state.manager.render_metrics();
    // Where hosts share a database: this host, its epoch, what it holds.
    if let Some(cluster) = &state.cluster {
        let lease = &cluster.lease;
        let host: String = lease
            .host_id
            .chars()
            .map(|c| {
                if c == '"' || c == '\\' || c == '\n' {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        text.push_str(&format!(
            "# HELP sprited_host_epoch The epoch under which this host joined the hosts of the shared database.\n\
             # TYPE sprited_host_epoch gauge\n\
             sprited_host_epoch{{host=\"{host}\"}} {}\n",
            lease.epoch
        ));
        if let Ok(held) = state.manager.db.mine_ids() {
            text.push_str(&format!(
                "# HELP sprited_host_sprites The sprites this host holds.\n\
                 # TYPE sprited_host_sprites gauge\n\
                 sprited_host_sprites{{host=\"{host}\"}} {}\n",
                held.len()
            ));
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
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

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}
