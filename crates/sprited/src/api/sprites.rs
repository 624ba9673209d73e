//! Sprite CRUD: create, list (prefix + pagination, or a stream of
//! changes: [`watch`]), get, update, delete.

mod watch;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use base64::Engine;
use sprites_api::sprite::{
    CreateSpriteRequest, OrgCounts, Sprite, SpriteCheck, SpriteConfig, SpriteList, Status,
    UpdateSpriteRequest, UrlSettings,
};
use sprites_api::token::Action;

use super::body::JsonBody;
use super::query::Query;
use crate::db::SpriteRecord;
use crate::error::ApiError;
use crate::manager::Manager;
use crate::time::now_rfc3339;
use crate::AppState;

/// The one organization a sprited serves.
pub(crate) const ORGANIZATION: &str = "local";

pub fn to_api(state: &AppState, rec: &SpriteRecord) -> Sprite {
    let held = state.cluster.as_ref().map(|_| {
        let host = state.manager.db.held_by(&rec.id).ok().flatten();
        (host, None)
    });
    shown(state, rec, held)
}

/// A sprite object; `held`: its holder (and its status as the holder last
/// recorded it) where hosts share the database.
fn shown(state: &AppState, rec: &SpriteRecord, held: Option<crate::db::hosts::Held>) -> Sprite {
    shown_with(state, rec, held, state.manager.storage_info(rec).ok())
}

/// [`shown`] with the sprite's storage already looked up (a listing looks
/// up its page's at once).
fn shown_with(
    state: &AppState,
    rec: &SpriteRecord,
    held: Option<crate::db::hosts::Held>,
    storage: Option<sprites_api::sprite::StorageInfo>,
) -> Sprite {
    let status = held
        .as_ref()
        .and_then(|h| state.manager.status_elsewhere(h))
        .unwrap_or_else(|| state.manager.shown_status(&rec.id));
    let host = held.and_then(|(h, _)| h);
    Sprite {
        id: rec.id.clone(),
        name: rec.name.clone(),
        organization: ORGANIZATION.into(),
        status,
        url: state.manager.url_of(&rec.name),
        url_settings: UrlSettings {
            auth: Some(rec.url_auth.clone()),
        },
        labels: rec.labels.clone(),
        environment: rec.environment.clone(),
        primary_region: Some(state.manager.cfg.region.clone()),
        created_at: rec.created_at.clone(),
        updated_at: rec.updated_at.clone(),
        last_running_at: rec.last_running_at.clone(),
        last_active_at: rec.last_active_at.clone(),
        image: Some(rec.image.clone()),
        config: Some(SpriteConfig {
            ram_mb: Some(rec.limits.ram_mb),
            cpus: Some(whole_cpus(rec.limits.cpus)),
            storage_gb: Some(rec.limits.storage_gb),
            // A create may name any region; the sprite runs in this host's.
            region: Some(state.manager.cfg.region.clone()),
            isolation: Some(rec.limits.isolation.as_str().to_string()),
        }),
        error: state.manager.error_of(&rec.id),
        storage,
        host,
    }
}

/// The CPU limit as the API states it. Sprites made before the API took
/// whole numbers only may have a fraction: they are shown rounded up (the
/// cgroup keeps the fraction).
fn whole_cpus(cpus: f64) -> u32 {
    cpus.ceil().clamp(1.0, u32::MAX as f64) as u32
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<crate::auth::Caller>,
    JsonBody(mut req): JsonBody<CreateSpriteRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.may(&req.name, Action::Manage)?;
    if let Some(src) = &req.source {
        // A fork reads the source's checkpoint.
        caller.may(&src.sprite, Action::Read)?;
    }
    req.image = image_for_runtime(req.runtime.take().as_deref(), req.image.take())?;
    let m = state.manager.clone();
    let rec = run_to_completion(async move { m.create(req).await }).await?;
    Ok((StatusCode::CREATED, Json(to_api(&state, &rec))))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<crate::auth::Caller>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw.as_deref());
    let prefix = q.get("prefix").unwrap_or("").to_string();
    // At most MAX_PAGE a page, as the service caps it: a larger ask gets
    // full pages and a continuation token.
    let max = q
        .number::<usize>("max_results", 1..=usize::MAX)?
        .map(|n| n.min(MAX_PAGE));
    if watch::wanted(&headers) {
        return watch::respond(state.manager.clone(), prefix, max, caller.0.clone());
    }
    let max = max.unwrap_or(50);
    let after = match q.get("continuation_token").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(decode_token(t)?),
    };
    let labels = label_filter(&q);
    // Every sprite object is whole here, which is what `bulk_load=true`
    // asks the service for (its default list entries are a summary); the
    // flag is read only to refuse a malformed one.
    q.bool("bulk_load")?;
    let mut recs = state
        .manager
        .db
        .list_labelled(&prefix, &labels, after.as_deref(), max + 1)?;
    let has_more = recs.len() > max;
    recs.truncate(max);
    let next = if has_more {
        recs.last().map(|r| encode_token(&r.name))
    } else {
        None
    };
    // A scoped token sees the sprites it reaches (a page may come short;
    // the continuation goes on from where the page ended).
    recs.retain(|r| caller.0.reaches(&r.name));
    let counts = org_counts(&state.manager);
    Ok(Json(SpriteList {
        sprites: {
            let held = state.manager.held_statuses();
            let storage: Vec<Option<_>> = match state.manager.storage_infos(&recs) {
                Ok(all) => all.into_iter().map(Some).collect(),
                Err(_) => vec![None; recs.len()],
            };
            recs.iter()
                .zip(storage)
                .map(|(r, st)| {
                    let h = held
                        .as_ref()
                        .map(|h| h.get(&r.id).cloned().unwrap_or((None, None)));
                    shown_with(&state, r, h, st)
                })
                .collect()
        },
        has_more,
        next_continuation_token: next,
        org: Some(counts.clone()),
        counts: Some(counts),
    })
    .into_response())
}

/// The labels a listed sprite must all have: `labels=a,b`, repeatable,
/// and `label=a` (the service does not document its name for the filter).
fn label_filter(q: &Query) -> Vec<String> {
    let mut labels: Vec<String> = q
        .all("labels")
        .iter()
        .chain(q.all("label").iter())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

fn encode_token(name: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)
}

fn decode_token(t: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::BadRequest("continuation_token is not valid".into()))
}

pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Sprite>, ApiError> {
    let rec = state.manager.get(&name)?;
    Ok(Json(to_api(&state, &rec)))
}

pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<UpdateSpriteRequest>,
) -> Result<Json<Sprite>, ApiError> {
    let mut rec = state.manager.get(&name)?;
    if let Some(auth) = req.url_settings.and_then(|u| u.auth) {
        rec.url_auth = crate::manager::validate_url_auth(auth)?;
    }
    if req.clear_labels == Some(true) {
        rec.labels.clear();
    }
    if let Some(labels) = req.labels {
        rec.labels = labels;
    }
    rec.updated_at = now_rfc3339();
    state.manager.db.update(&rec)?;
    Ok(Json(to_api(&state, &rec)))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let rec = state.manager.get(&name)?;
    let m = state.manager.clone();
    run_to_completion(async move { m.destroy(&rec).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Extension: `POST /v1/sprites/{name}/evict` stops the sprite and moves
/// its volume and checkpoints to the object store now (what `--evict-after`
/// does to a long-cold sprite). Answers what was sent; any later request
/// wakes the sprite and brings its volume back.
pub async fn evict(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<sprites_api::sprite::EvictReport>, ApiError> {
    let rec = state.manager.get(&name)?;
    let m = state.manager.clone();
    Ok(Json(
        run_to_completion(async move { m.evict(&rec).await }).await?,
    ))
}

/// Restart the sprite on the current agent build (its files stay).
pub async fn upgrade(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let rec = state.manager.get(&name)?;
    let m = state.manager.clone();
    run_to_completion(async move {
        m.stop(&rec).await?;
        m.ensure_running(&rec).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/sprites/{name}/restart`: its processes stopped and started
/// again (its files stay; a changed resources policy applies).
pub async fn restart(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<sprites_api::sprite::RestartReport>, ApiError> {
    let m = state.manager.clone();
    let rec = run_to_completion(async move { m.restart(&name).await }).await?;
    Ok(Json(sprites_api::sprite::RestartReport {
        message: format!("sprite {} restarted", rec.name),
        sprite_name: rec.name,
        machine_id: rec.id,
    }))
}

/// Run a lifecycle change in a task of its own: a client that hangs up must
/// not cancel it halfway (a row without a volume, a volume without a row).
pub(crate) async fn run_to_completion<T, F>(work: F) -> Result<T, crate::error::Error>
where
    F: std::future::Future<Output = Result<T, crate::error::Error>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(work)
        .await
        .map_err(|e| crate::error::Error::Internal(format!("lifecycle task failed: {e}")))?
}

/// The organization's sprites by status (this daemon is one organization),
/// with its limit on running sprites when `--max-running` sets one.
pub(crate) fn org_counts(m: &Manager) -> OrgCounts {
    let c = m.status_counts().unwrap_or_default();
    let limit = m.cfg.max_running;
    OrgCounts {
        name: ORGANIZATION.into(),
        running: c.running,
        warm: c.warm,
        cold: c.cold,
        running_limit: (limit > 0).then_some(limit),
        warm_limit: None,
    }
}

/// The most sprites one page of the list holds.
const MAX_PAGE: usize = 100;

/// The image a create's `runtime` asks for: `dev` is the development image
/// (`standard`), `default` the daemon's default; an `image` given beside it
/// must agree.
fn image_for_runtime(
    runtime: Option<&str>,
    image: Option<String>,
) -> Result<Option<String>, ApiError> {
    match (runtime, image) {
        (None | Some("default"), image) => Ok(image),
        (Some("dev"), None) => Ok(Some("standard".into())),
        (Some("dev"), Some(image)) if image == "standard" => Ok(Some(image)),
        (Some("dev"), Some(image)) => Err(ApiError::BadRequest(format!(
            "runtime \"dev\" is the standard image, but image {image:?} was asked for"
        ))),
        (Some(other), _) => Err(ApiError::BadRequest(format!(
            "runtime {other:?} is not one of \"default\", \"dev\""
        ))),
    }
}

const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `GET /v1/sprites/{name}/check`: a running sprite is healthy when its
/// agent answers; a warm or cold one is not woken (it is healthy: the next
/// request starts it); one in `error` is unhealthy, with the error.
pub async fn check(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SpriteCheck>, ApiError> {
    let started = std::time::Instant::now();
    let rec = state.manager.get(&name)?;
    let status = state.manager.peek_status(&rec.id).unwrap_or(Status::Cold);
    let (healthy, reason) = match status {
        // A request the agent answers at once (its session list).
        Status::Running => {
            match tokio::time::timeout(CHECK_TIMEOUT, state.manager.sessions(&rec)).await {
                Ok(Ok(_)) => (true, None),
                Ok(Err(e)) => (false, Some(format!("the sprite's agent failed: {e}"))),
                Err(_) => (
                    false,
                    Some(format!(
                        "the sprite's agent did not answer in {} s",
                        CHECK_TIMEOUT.as_secs()
                    )),
                ),
            }
        }
        Status::Warm | Status::Cold => (true, Some(status.as_str().to_string())),
        Status::Error => (
            false,
            Some(
                state
                    .manager
                    .error_of(&rec.id)
                    .unwrap_or_else(|| "the sprite could not be started".into()),
            ),
        ),
    };
    Ok(Json(SpriteCheck {
        sprite_name: rec.name.clone(),
        sprite_id: rec.id.clone(),
        status: if healthy { "healthy" } else { "unhealthy" }.into(),
        reason,
        checked_at: now_rfc3339(),
        elapsed: started.elapsed().as_secs_f64() * 1000.0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_picks_the_image() {
        assert_eq!(image_for_runtime(None, None).ok(), Some(None));
        assert_eq!(
            image_for_runtime(Some("default"), Some("tiny".into())).ok(),
            Some(Some("tiny".into()))
        );
        assert_eq!(
            image_for_runtime(Some("dev"), None).ok(),
            Some(Some("standard".into()))
        );
        assert_eq!(
            image_for_runtime(Some("dev"), Some("standard".into())).ok(),
            Some(Some("standard".into()))
        );
        assert!(image_for_runtime(Some("dev"), Some("tiny".into())).is_err());
        assert!(image_for_runtime(Some("gpu"), None).is_err());
    }

    #[test]
    fn label_filters_split_and_merge() {
        let q = Query::parse(Some("labels=b,a&labels=c&label=a&label=%20d%20&labels="));
        assert_eq!(label_filter(&q), ["a", "b", "c", "d"]);
        assert!(label_filter(&Query::parse(None)).is_empty());
    }

    #[test]
    fn continuation_tokens_round_trip() {
        let t = encode_token("my-sprite-9");
        assert_eq!(decode_token(&t).expect("decode"), "my-sprite-9");
        assert!(decode_token("!!!").is_err());
    }

    #[test]
    fn cpus_are_stated_whole() {
        assert_eq!(whole_cpus(1.0), 1);
        assert_eq!(whole_cpus(4.0), 4);
        // A fraction recorded before the API took whole numbers only.
        assert_eq!(whole_cpus(0.5), 1);
        assert_eq!(whole_cpus(1.5), 2);
    }
}
