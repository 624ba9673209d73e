//! `POST|GET /v1/tokens`, `DELETE /v1/tokens/{id}` (extension), and
//! `POST /v1/organizations/{org}/tokens`, where the official SDKs'
//! `CreateToken` asks for one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sprites_api::token::{CreateTokenRequest, NewToken, OrgTokenRequest, TokenList};

use super::body::OptionalJsonBody;
use crate::error::ApiError;
use crate::AppState;

pub async fn create(
    State(s): State<AppState>,
    OptionalJsonBody(req): OptionalJsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.tokens.create(req.name, req.scope)?),
    ))
}

/// The SDKs' `CreateToken`: a new token named by the description, whatever
/// the organization is called (this daemon is one organization, and a
/// caller's code names theirs, often `personal`). The caller's token, sent
/// as `FlyV1 <token>` by the SDKs, is checked like any other
/// ([`crate::auth`]); only an admin token may make tokens. The new one
/// reaches every sprite with every action, and is no admin.
pub async fn create_for_org(
    State(s): State<AppState>,
    Path(_org): Path<String>,
    OptionalJsonBody(req): OptionalJsonBody<OrgTokenRequest>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.tokens.create(req.description, None)?),
    ))
}

pub async fn list(State(s): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList {
        tokens: s.tokens.list()?,
    }))
}

pub async fn revoke(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.tokens.revoke(&id)?;
    Ok(StatusCode::NO_CONTENT)
}
