//! The pages a sprite URL answers itself: login, 401, 404, 502.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\">\
         <h1>{t}</h1>{body}</body></html>\n",
        t = escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Whether the client is a browser that wants a page.
pub fn wants_html(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// The login form (status 401 when it stands for a refused request).
pub fn login(status: StatusCode, sprite: &str, next: &str, error: Option<&str>) -> Response {
    let err = error
        .map(|e| format!("<p style=\"color:#b00\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{err}<p>The URL of sprite <b>{s}</b> needs a Sprites API token.</p>\
         <form method=\"post\" action=\"/__sprite/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{n}\">\
         <input type=\"password\" name=\"token\" placeholder=\"token\" autofocus size=\"40\"> \
         <button type=\"submit\">Log in</button></form>",
        s = escape(sprite),
        n = escape(next)
    );
    html(status, &format!("Log in to {sprite}"), &body)
}

pub fn unauthorized(
    headers: &axum::http::HeaderMap,
    sprite: &str,
    next: &str,
    bad: bool,
) -> Response {
    let why = if bad {
        "the token is not valid"
    } else {
        "this sprite's URL needs a token"
    };
    if wants_html(headers) {
        return login(StatusCode::UNAUTHORIZED, sprite, next, bad.then_some(why));
    }
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        format!("401 Unauthorized: {why} (send Authorization: Bearer <token>, or log in at /__sprite/login)\n"),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer realm=\"sprite\""),
    );
    r
}

pub fn not_found(host: &str) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("404 Not Found: no sprite URL {host}\n"),
    )
}

pub fn refused(why: &str) -> Response {
    text(StatusCode::BAD_REQUEST, format!("400 Bad Request: {why}\n"))
}

pub fn nothing_listens(html_wanted: bool, sprite: &str, port: u16) -> Response {
    let msg = format!("Nothing is listening on port {port} in sprite {sprite}.");
    let hint = format!(
        "Start a server on port {port} inside the sprite (bound to 0.0.0.0 or localhost), \
         or give one service an http_port."
    );
    if html_wanted {
        return html(
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway",
            &format!("<p>{}</p><p>{}</p>", escape(&msg), escape(&hint)),
        );
    }
    text(
        StatusCode::BAD_GATEWAY,
        format!("502 Bad Gateway: {msg} {hint}\n"),
    )
}

pub fn unavailable(sprite: &str, why: &str) -> Response {
    text(
        StatusCode::BAD_GATEWAY,
        format!("502 Bad Gateway: sprite {sprite} could not be reached: {why}\n"),
    )
}
