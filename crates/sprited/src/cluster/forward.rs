//! Forwarding a request to the host that holds its sprite (see
//! [`crate::cluster`]). The request goes as it came (method, path,
//! headers, the `Host` a sprite URL is routed by, a streamed body) to that
//! host's `--advertise` address, which authenticates it as its own; the
//! response streams back, and an upgrade (an exec or proxy WebSocket)
//! becomes a relay of the two connections.
//!
//! A forwarded request carries `sprited-forwarded-by`, and is never
//! forwarded again: two hosts that disagree on who holds a sprite (it
//! moved meanwhile) would otherwise pass it back and forth; it gets a 503
//! in the API's error format, and the client's retry finds the new holder.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, Uri};
use axum::response::IntoResponse;
use hyper_util::rt::TokioIo;

use crate::api::error::ApiError;

/// The header a forwarded request carries: the forwarding host's id.
pub const FORWARDED_BY: &str = "sprited-forwarded-by";

/// How long connecting to the other host may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the other host may take to start answering (a response's
/// head; its body and an upgraded connection may last as long as they do).
/// A host frozen with the connection open would otherwise hold the request
/// forever.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// 503 in the API's error format, to be asked again in a second.
pub fn unavailable(why: impl Into<String>) -> Response<Body> {
    let mut res = ApiError::Unavailable(why.into()).into_response();
    res.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    res
}

/// Sends `req` to the host at `advertise` (`http://host:port`).
pub async fn to(
    advertise: &str,
    me: &str,
    mut req: Request<Body>,
) -> Result<Response<Body>, String> {
    let base: Uri = advertise
        .parse()
        .map_err(|e| format!("its address {advertise:?}: {e}"))?;
    let authority = base
        .authority()
        .ok_or_else(|| format!("its address {advertise:?} names no host"))?
        .to_string();
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&authority))
        .await
        .map_err(|_| format!("no connection in {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });

    let upgrade = crate::urls::proxy::is_upgrade(req.headers());
    crate::urls::proxy::strip_hop_headers(req.headers_mut(), upgrade);
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = pq.parse::<Uri>().map_err(|e| e.to_string())?;
    if let Ok(v) = HeaderValue::from_str(me) {
        req.headers_mut().insert(FORWARDED_BY, v);
    }
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let mut res = tokio::time::timeout(ANSWER_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| format!("no answer in {ANSWER_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    if let (Some(client), axum::http::StatusCode::SWITCHING_PROTOCOLS) =
        (client_upgrade, res.status())
    {
        let server = hyper::upgrade::on(&mut res);
        tokio::spawn(async move {
            let (Ok(c), Ok(s)) = (client.await, server.await) else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(s)).await;
        });
        let (parts, _) = res.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = res.into_parts();
    crate::urls::proxy::strip_hop_headers(&mut parts.headers, false);
    Ok(Response::from_parts(parts, Body::new(body)))
}
