//! `GET /v1/sprites` asked for as `application/x-ndjson` (the SDKs'
//! `watchSprites`): a stream of [`SpriteStateEvent`] lines. First the
//! sprites whose name starts with `prefix` as they are now (at most
//! `max_results` of them, by name), then a line each time one of them
//! changes status, appears or goes (`status: "destroyed"`), and a
//! `heartbeat` line every [`HEARTBEAT`] so that proxies and clients see a
//! live connection. Every line carries the organization's counts.
//!
//! The stream ends when the client goes away (the body is dropped, and
//! with it the change receiver) or the daemon stops.

use sprites_api::token::TokenScope;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use sprites_api::sprite::{OrgCounts, SpriteStateEvent, Status};
use tokio::sync::broadcast::error::RecvError;

use crate::db::SpriteRecord;
use crate::error::ApiError;
use crate::manager::changes::SpriteChange;
use crate::manager::Manager;
use crate::time::now_rfc3339;

pub const NDJSON: &str = "application/x-ndjson";

/// How often a quiet stream says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// What a gone sprite's last line says.
const DESTROYED: &str = "destroyed";

/// Whether the request asks for the stream rather than the list.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().map(str::trim) == Some(NDJSON))
}

pub fn respond(
    m: Arc<Manager>,
    prefix: String,
    max: Option<usize>,
    scope: TokenScope,
) -> Result<Response, ApiError> {
    // Subscribed before the first look: no change falls between the two.
    let changes = m.watch_changes();
    let mut watch = Watch {
        m,
        prefix,
        scope,
        changes,
        told: HashMap::new(),
        pending: VecDeque::new(),
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT),
        held: None,
        shared: None,
    };
    watch.held = watch.m.held_statuses();
    if watch.held.is_some() {
        let mut every = tokio::time::interval(SHARED_LOOK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        watch.shared = Some(every);
    }
    watch.snapshot(max)?;
    let lines = stream::unfold(watch, |mut w| async move {
        let line = w.next_line().await?;
        Some((Ok::<_, Infallible>(line), w))
    });
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON))],
        Body::from_stream(lines),
    )
        .into_response())
}

struct Watch {
    m: Arc<Manager>,
    prefix: String,
    /// The caller's token's: sprites it does not reach are never told.
    scope: TokenScope,
    changes: tokio::sync::broadcast::Receiver<SpriteChange>,
    /// What the client was last told of each sprite: id → (name, status).
    told: HashMap<String, (String, String)>,
    /// Lines decided on and not yet sent.
    pending: VecDeque<SpriteStateEvent>,
    heartbeat: tokio::time::Interval,
    /// Where hosts share the database: what they hold, and a look at all
    /// every [`SHARED_LOOK`] (their changes are not told here).
    held: Option<HashMap<String, crate::db::hosts::Held>>,
    shared: Option<tokio::time::Interval>,
}

/// How often a watch on a host sharing its database looks at every sprite.
const SHARED_LOOK: Duration = Duration::from_millis(500);

/// How long after its record is made a cold sprite not told yet is taken
/// to be in its create, by [`Watch::look_all`].
const BEING_MADE: Duration = Duration::from_secs(10);

impl Watch {
    fn snapshot(&mut self, max: Option<usize>) -> Result<(), ApiError> {
        let recs = self
            .m
            .db
            .list(&self.prefix, None, max.unwrap_or(usize::MAX >> 1))?;
        for rec in recs {
            self.tell(&rec);
        }
        Ok(())
    }

    /// The next line; `None` ends the stream.
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                let mut line = serde_json::to_vec(&ev).ok()?;
                line.push(b'\n');
                return Some(Bytes::from(line));
            }
            tokio::select! {
                change = self.changes.recv() => match change {
                    Ok(SpriteChange::Sprite(id)) => self.look(&id),
                    // Fell behind: whatever changed, a look at all shows.
                    Err(RecvError::Lagged(_)) => self.look_all(),
                    Ok(SpriteChange::Closing) | Err(RecvError::Closed) => return None,
                },
                _ = async {
                    match self.shared.as_mut() {
                        Some(every) => every.tick().await,
                        None => std::future::pending().await,
                    }
                } => self.look_all(),
                _ = self.heartbeat.tick() => {
                    let ev = SpriteStateEvent {
                        kind: Some("heartbeat".into()),
                        name: None,
                        status: None,
                        running_version: None,
                        last_running_at: None,
                        timestamp: now_rfc3339(),
                        org: self.org(),
                    };
                    self.pending.push_back(ev);
                }
            }
        }
    }

    /// A line for sprite `id` if it differs from what the client knows.
    fn look(&mut self, id: &str) {
        if self.shared.is_some() {
            self.held = self.m.held_statuses();
        }
        match self.m.db.get_by_id(id) {
            Ok(Some(rec)) => self.tell(&rec),
            Ok(None) => self.gone(id),
            Err(e) => tracing::warn!(error = %e, "sprite watch: reading a sprite"),
        }
    }

    fn look_all(&mut self) {
        if self.shared.is_some() {
            self.held = self.m.held_statuses();
        }
        let recs = match self.m.db.list(&self.prefix, None, usize::MAX >> 1) {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "sprite watch: listing sprites"),
        };
        let gone: Vec<String> = self
            .told
            .keys()
            .filter(|id| !recs.iter().any(|r| &r.id == *id))
            .cloned()
            .collect();
        for id in gone {
            self.gone(&id);
        }
        for rec in &recs {
            // A sprite this watch has not told yet, made moments ago and
            // shown cold, is being created: its row is written before its
            // start (and, held elsewhere, before its holder records a
            // status). Told now it would read cold, then running; its
            // start's announcement, or a later look, tells it.
            let status = self.status_of(rec);
            let being_made = !self.told.contains_key(&rec.id)
                && status == Status::Cold
                && crate::time::age(&rec.created_at).is_some_and(|a| a < BEING_MADE);
            if !being_made {
                self.tell_as(rec, status);
            }
        }
    }

    /// The sprite's status as a line tells it; no slot yet (made and not
    /// started) is cold.
    fn status_of(&self, rec: &SpriteRecord) -> Status {
        self.m
            .status_anywhere(&rec.id, self.held.as_ref())
            .unwrap_or(Status::Cold)
    }

    fn tell(&mut self, rec: &SpriteRecord) {
        let status = self.status_of(rec);
        self.tell_as(rec, status);
    }

    /// A line for `rec` at `status`, if it differs from what the client knows.
    fn tell_as(&mut self, rec: &SpriteRecord, status: Status) {
        if !rec.name.starts_with(&self.prefix) || !self.scope.reaches(&rec.name) {
            return;
        }
        let now = (rec.name.clone(), status.as_str().to_string());
        if self.told.get(&rec.id) == Some(&now) {
            return;
        }
        self.told.insert(rec.id.clone(), now);
        let running = matches!(status, Status::Running | Status::Warm);
        let ev = SpriteStateEvent {
            kind: None,
            name: Some(rec.name.clone()),
            status: Some(status.as_str().into()),
            running_version: running.then(|| sprites_api::SPRITE_VERSION.to_string()),
            last_running_at: rec.last_running_at.clone(),
            timestamp: now_rfc3339(),
            org: self.org(),
        };
        self.pending.push_back(ev);
    }

    /// The sprite is no longer in the DB: its last line, if it had one.
    fn gone(&mut self, id: &str) {
        let Some((name, _)) = self.told.remove(id) else {
            return;
        };
        let ev = SpriteStateEvent {
            kind: None,
            name: Some(name),
            status: Some(DESTROYED.into()),
            running_version: None,
            last_running_at: None,
            timestamp: now_rfc3339(),
            org: self.org(),
        };
        self.pending.push_back(ev);
    }

    fn org(&self) -> OrgCounts {
        super::org_counts(&self.m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_asked_for_by_accept() {
        let mut h = HeaderMap::new();
        assert!(!wanted(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wanted(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/plain, application/x-ndjson; q=0.9"),
        );
        assert!(wanted(&h));
    }
}
