//! `POST|GET /v1/tokens`, `DELETE /v1/tokens/{id}` (extension).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sprites_api::token::{CreateTokenRequest, NewToken, TokenList};

use super::body::OptionalJsonBody;
use crate::error::ApiError;
use crate::AppState;

pub async fn create(
    State(s): State<AppState>,
    OptionalJsonBody(req): OptionalJsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.tokens.create(req.name)?)))
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
