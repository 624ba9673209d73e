//! MCP (the Model Context Protocol) at `/mcp` on the API's listener, for
//! agents: tools to list, create and destroy sprites, run a command, read
//! and write files, take, list and restore checkpoints, and read a
//! service's logs.
//!
//! The transport is rmcp's Streamable HTTP service, stateless (no
//! `Mcp-Session-Id`: every POST carries one JSON-RPC message and is
//! answered in JSON), so the daemon keeps nothing per client. It sits
//! behind the same bearer-token middleware as `/v1`, and every tool calls
//! the manager the way the matching endpoint does: limits, wake-up and
//! errors are the API's. A tool that fails answers an MCP tool error
//! (`isError`) whose content is the API's error body, `{"error": code,
//! "message": ...}`.

mod files;
mod run;

use std::sync::Arc;

use axum::middleware;
use axum::routing::post_service;
use axum::Router;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use sprites_api::sprite::CreateSpriteRequest;

use super::fs::FsApiError;
use crate::error::ApiError;
use crate::manager::checkpoints::CheckpointFilter;
use crate::AppState;

/// Where the MCP endpoint is served.
pub const PATH: &str = "/mcp";

/// Most sprites `list_sprites` answers (the API's page size).
const MAX_LIST: usize = 100;

/// `/mcp`, with the API's token check in front. Only POST reaches the MCP
/// service: a stateless server has no stream to GET and no session to
/// DELETE, and axum answers those 405.
pub(super) fn router(state: AppState) -> Router<AppState> {
    let tools = state.clone();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        // rmcp's Host allowlist defends unauthenticated local servers from
        // DNS rebinding; here every request needs a token, and the API is
        // reached under whatever name its operator gives it.
        .disable_allowed_hosts();
    let service = StreamableHttpService::new(
        move || Ok(Tools::new(tools.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route(PATH, post_service(service))
        .layer(middleware::from_fn_with_state(
            state,
            crate::auth::require_token,
        ))
}

/// The tools, over the daemon's state.
#[derive(Clone)]
pub(super) struct Tools {
    state: AppState,
}

/// Why a tool failed: the API's error body for the same failure.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure {
            code: e.code().into(),
            message: e.to_string(),
        }
    }
}

impl From<crate::error::Error> for Failure {
    fn from(e: crate::error::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<FsApiError> for Failure {
    fn from(e: FsApiError) -> Self {
        match e {
            FsApiError::Api(e) => e.into(),
            FsApiError::Fs { body, .. } => Failure {
                code: body.code,
                message: body.error,
            },
        }
    }
}

type Outcome = Result<Value, Failure>;

/// A tool's answer: its JSON object as structured content (and as text),
/// or the API's error body as a tool error.
fn answer(outcome: Outcome) -> CallToolResult {
    match outcome {
        Ok(v) => CallToolResult::structured(v),
        Err(f) => {
            if f.code == "internal_error" {
                tracing::warn!(error = %f.message, "an MCP tool failed");
            }
            CallToolResult::structured_error(json!({"error": f.code, "message": f.message}))
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ListSprites {
    /// Only sprites whose name starts with this.
    #[serde(default)]
    prefix: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct CreateSprite {
    /// The new sprite's name: 1-63 lowercase letters, digits and dashes, not
    /// starting or ending with a dash.
    name: String,
    /// The base image: "standard" (a development image with python, node,
    /// go, rust and sudo) or "tiny" (busybox). Default: the daemon's.
    #[serde(default)]
    image: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SpriteName {
    /// The sprite's name.
    sprite: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct CreateCheckpoint {
    /// The sprite's name.
    sprite: String,
    /// A note kept with the checkpoint.
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct RestoreCheckpoint {
    /// The sprite's name.
    sprite: String,
    /// The checkpoint's id, e.g. "v3" (see list_checkpoints).
    checkpoint: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ServiceLogs {
    /// The sprite's name.
    sprite: String,
    /// The service's name.
    service: String,
    /// How many of the last lines (1-10000, default 100).
    #[serde(default)]
    lines: Option<usize>,
}

#[tool_router]
impl Tools {
    fn new(state: AppState) -> Self {
        Tools { state }
    }

    /// List sprites (persistent Linux sandboxes): name, status (running,
    /// warm = paused, cold = stopped; any request wakes one), URL, image.
    /// At most 100, by name; `has_more` says there are more (narrow with
    /// `prefix`).
    #[tool(annotations(read_only_hint = true))]
    async fn list_sprites(&self, Parameters(args): Parameters<ListSprites>) -> CallToolResult {
        answer(self.list_sprites_(args.prefix.unwrap_or_default()))
    }

    /// Create a sprite: a persistent Linux computer whose files survive
    /// restarts. Answers the new sprite, running.
    #[tool]
    async fn create_sprite(&self, Parameters(args): Parameters<CreateSprite>) -> CallToolResult {
        answer(self.create_sprite_(args).await)
    }

    /// Destroy a sprite, with its files and checkpoints. Cannot be undone.
    #[tool(annotations(destructive_hint = true))]
    async fn destroy_sprite(&self, Parameters(args): Parameters<SpriteName>) -> CallToolResult {
        answer(self.destroy_sprite_(args.sprite).await)
    }

    /// Run a command in a sprite (waking it if needed) and wait for it:
    /// answers stdout, stderr and exit_code. Give `command` (argv, run
    /// directly) or `shell` (a string run by `sh -c`). The command is killed
    /// at the timeout; output beyond the cap is dropped (`truncated`).
    #[tool]
    async fn run_command(&self, Parameters(args): Parameters<run::RunCommand>) -> CallToolResult {
        answer(run::run(&self.state, args).await)
    }

    /// Read a file in a sprite, as the sprite's user. Answers `content`
    /// (UTF-8 text) or `content_base64` (other bytes), `size` and `mode`.
    #[tool(annotations(read_only_hint = true))]
    async fn read_file(&self, Parameters(args): Parameters<files::ReadFile>) -> CallToolResult {
        answer(files::read(&self.state, args).await)
    }

    /// Write a file in a sprite, as the sprite's user, replacing it whole;
    /// missing parent directories are made.
    #[tool]
    async fn write_file(&self, Parameters(args): Parameters<files::WriteFile>) -> CallToolResult {
        answer(files::write(&self.state, args).await)
    }

    /// Checkpoint a sprite's whole filesystem (not its processes), in well
    /// under a second. Answers the checkpoint, e.g. id "v3".
    #[tool]
    async fn create_checkpoint(
        &self,
        Parameters(args): Parameters<CreateCheckpoint>,
    ) -> CallToolResult {
        answer(self.create_checkpoint_(args).await)
    }

    /// List a sprite's checkpoints, newest first; `is_current` marks the one
    /// its filesystem stands on.
    #[tool(annotations(read_only_hint = true))]
    async fn list_checkpoints(&self, Parameters(args): Parameters<SpriteName>) -> CallToolResult {
        answer(self.list_checkpoints_(args.sprite))
    }

    /// Put a sprite's filesystem back to a checkpoint. Its processes end and
    /// it starts again; changes since the checkpoint are lost.
    #[tool(annotations(destructive_hint = true))]
    async fn restore_checkpoint(
        &self,
        Parameters(args): Parameters<RestoreCheckpoint>,
    ) -> CallToolResult {
        answer(self.restore_checkpoint_(args).await)
    }

    /// The last lines of a sprite's service's output (stdout and stderr).
    #[tool(annotations(read_only_hint = true))]
    async fn service_logs(&self, Parameters(args): Parameters<ServiceLogs>) -> CallToolResult {
        answer(self.service_logs_(args).await)
    }
}

#[tool_handler(
    name = "sprited",
    instructions = "Sprites are persistent Linux computers: files survive restarts, idle \
        sprites are paused and then stopped, and any call wakes them. Run commands with \
        run_command, move files with read_file and write_file, and take a checkpoint \
        before risky changes (restore_checkpoint puts the filesystem back). Inside every \
        sprite, /.sprite/llm.txt describes the environment."
)]
impl ServerHandler for Tools {}

/// The tools' bodies: each one what its endpoint does, answering JSON.
impl Tools {
    fn list_sprites_(&self, prefix: String) -> Outcome {
        let mut recs = self
            .state
            .manager
            .db
            .list(&prefix, None, MAX_LIST + 1)
            .map_err(crate::error::Error::from)?;
        let has_more = recs.len() > MAX_LIST;
        recs.truncate(MAX_LIST);
        let sprites: Vec<_> = recs
            .iter()
            .map(|r| super::sprites::to_api(&self.state, r))
            .collect();
        Ok(json!({"sprites": sprites, "has_more": has_more}))
    }

    async fn create_sprite_(&self, args: CreateSprite) -> Outcome {
        let req = CreateSpriteRequest {
            name: args.name,
            image: args.image,
            ..Default::default()
        };
        let m = self.state.manager.clone();
        let rec = super::run_to_completion(async move { m.create(req).await }).await?;
        Ok(json!({"sprite": super::sprites::to_api(&self.state, &rec)}))
    }

    async fn destroy_sprite_(&self, name: String) -> Outcome {
        let rec = self.state.manager.get(&name)?;
        let m = self.state.manager.clone();
        super::run_to_completion(async move { m.destroy(&rec).await }).await?;
        Ok(json!({"destroyed": name}))
    }

    async fn create_checkpoint_(&self, args: CreateCheckpoint) -> Outcome {
        let m = self.state.manager.clone();
        let rec = m.get(&args.sprite)?;
        let checkpoint = super::run_to_completion(async move {
            // Progress lines have no reader here.
            let (progress, _) = tokio::sync::mpsc::unbounded_channel();
            let made = m.create_checkpoint(&rec, args.comment, &progress).await?;
            m.checkpoint(&rec, &made.id)
        })
        .await?;
        Ok(json!({"checkpoint": checkpoint}))
    }

    fn list_checkpoints_(&self, name: String) -> Outcome {
        let m = &self.state.manager;
        let rec = m.get(&name)?;
        let all = m.list_checkpoints(&rec, &CheckpointFilter::default())?;
        Ok(json!({"checkpoints": all}))
    }

    async fn restore_checkpoint_(&self, args: RestoreCheckpoint) -> Outcome {
        let m = self.state.manager.clone();
        let rec = m.get(&args.sprite)?;
        // Unknown ids are a plain not_found, before any work.
        let id = m.checkpoint(&rec, &args.checkpoint)?.id;
        let restored = id.clone();
        super::run_to_completion(async move {
            let (progress, _) = tokio::sync::mpsc::unbounded_channel();
            m.restore_checkpoint(&rec, &id, &progress).await
        })
        .await?;
        Ok(json!({
            "restored": restored,
            "message": format!("Restored to checkpoint {restored}"),
        }))
    }

    async fn service_logs_(&self, args: ServiceLogs) -> Outcome {
        use super::services::{checked, DEFAULT_LOG_LINES, MAX_LOG_LINES};
        let lines = args.lines.unwrap_or(DEFAULT_LOG_LINES);
        if !(1..=MAX_LOG_LINES).contains(&lines) {
            return Err(ApiError::BadRequest(format!(
                "lines must be between 1 and {MAX_LOG_LINES}"
            ))
            .into());
        }
        let m = &self.state.manager;
        let rec = m.get(&args.sprite)?;
        let log = m.service_logs(&rec, checked(&args.service)?, lines).await?;
        Ok(json!({"service": args.service, "logs": log.text}))
    }
}
