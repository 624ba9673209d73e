//! JSON request bodies. Every endpoint that takes JSON takes it through
//! these extractors, so a body that does not parse is a 400 in the Sprites
//! error format and one over the limit a 413, on every route: no endpoint
//! answers axum's own `422 text/plain`.

use std::time::Duration;

use axum::extract::{FromRequest, Request};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body that must be there.
pub struct JsonBody<T>(pub T);

/// A JSON body that may be left out (empty means `T::default()`).
pub struct OptionalJsonBody<T>(pub T);

/// Parses `bytes` as a `T`, or says why not as the API says it.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// The most a JSON body may be on a router (an extension its layers set;
/// 1 MiB where none is set).
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

const DEFAULT_LIMIT: usize = 1 << 20;

/// What a body over the limit is still read (and dropped) for, so that the
/// client, still sending, gets to read the 413 rather than a reset.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

async fn bytes(req: Request) -> Result<Vec<u8>, ApiError> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(DEFAULT_LIMIT, |l| l.0);
    let mut stream = req.into_body().into_data_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            let mut seen = body.len() + chunk.len();
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while seen < DRAIN_BYTES {
                    match stream.next().await {
                        Some(Ok(c)) => seen += c.len(),
                        _ => break,
                    }
                }
            })
            .await;
            return Err(ApiError::PayloadTooLarge(format!(
                "request body too large: the limit is {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        Ok(JsonBody(parse(&bytes(req).await?)?))
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let body = bytes(req).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        Ok(OptionalJsonBody(parse(&body)?))
    }
}
