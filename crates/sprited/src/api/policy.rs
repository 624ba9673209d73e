//! A sprite's policies.
//!
//! `GET`/`POST /v1/sprites/{name}/policy/network`: the sprite's egress
//! policy (semantics in `crate::net::policy`). POST answers 204 and applies
//! at once to a running sprite; a cold one gets it at its next start.
//!
//! `GET`/`POST`/`DELETE /v1/sprites/{name}/policy/resources`: its memory
//! limit (`crate::manager::resources`). POST and DELETE answer 204; the
//! limit applies at the sprite's next start.
//!
//! `GET`/`POST`/`DELETE /v1/sprites/{name}/policy/privileges`: its
//! capabilities and devices (`crate::manager::privileges`). POST and
//! DELETE answer 204; the change applies at the sprite's next start.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sprites_api::policy::{NetworkPolicy, PrivilegesPolicy, ResourcesPolicy};

use super::body::JsonBody;
use crate::error::ApiError;
use crate::AppState;

pub async fn get_network(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<NetworkPolicy>, ApiError> {
    let rec = st.manager.get(&name)?;
    Ok(Json(st.manager.net.policy(&rec.id)?))
}

pub async fn set_network(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(policy): JsonBody<NetworkPolicy>,
) -> Result<StatusCode, ApiError> {
    let rec = st.manager.get(&name)?;
    let dir = st.manager.sprite_dir(&rec.id);
    st.manager.net.set_policy(&rec.id, &dir, &policy).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_resources(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ResourcesPolicy>, ApiError> {
    let rec = st.manager.get(&name)?;
    Ok(Json(st.manager.resources_policy(&rec)))
}

pub async fn set_resources(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(policy): JsonBody<ResourcesPolicy>,
) -> Result<StatusCode, ApiError> {
    let rec = st.manager.get(&name)?;
    st.manager.set_resources_policy(&rec, &policy)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Back to the daemon's default RAM.
pub async fn delete_resources(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let rec = st.manager.get(&name)?;
    st.manager
        .set_resources_policy(&rec, &ResourcesPolicy::default())?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_privileges(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PrivilegesPolicy>, ApiError> {
    let rec = st.manager.get(&name)?;
    Ok(Json(st.manager.privileges_policy(&rec)?))
}

pub async fn set_privileges(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(policy): JsonBody<PrivilegesPolicy>,
) -> Result<StatusCode, ApiError> {
    let rec = st.manager.get(&name)?;
    st.manager.set_privileges_policy(&rec, &policy)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Back to the default capabilities and no devices.
pub async fn delete_privileges(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let rec = st.manager.get(&name)?;
    st.manager
        .set_privileges_policy(&rec, &PrivilegesPolicy::default())?;
    Ok(StatusCode::NO_CONTENT)
}
