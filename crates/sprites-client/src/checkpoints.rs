//! Checkpoints of a sprite's writable filesystem: list, get, create, restore,
//! delete; and forks, new sprites started from a checkpoint.

use reqwest::header::ACCEPT;
use reqwest::Method;
use sprites_api::checkpoint::{self, Checkpoint, CreateCheckpointRequest, ForkSource, Snapshot};
use sprites_api::sprite::{CreateSpriteRequest, Sprite};

use crate::client::Client;
use crate::error::Error;
use crate::event_stream::{Completion, EventStream};
use crate::sprites::SpriteHandle;

const NDJSON: &str = "application/x-ndjson";

/// A checkpoint create or restore that ran to its `complete` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointOutcome {
    /// The checkpoint created, or the one restored.
    pub id: String,
    /// The `complete` line's text, e.g. `Checkpoint v3 created`.
    pub message: String,
    /// The `info` lines, in order.
    pub info: Vec<String>,
}

impl CheckpointOutcome {
    fn new(id: String, done: Completion) -> Self {
        CheckpointOutcome {
            id,
            message: done.message,
            info: done.info,
        }
    }
}

impl SpriteHandle {
    /// `GET /v1/sprites/{name}/checkpoints`: newest first.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, Error> {
        let url = self.client.url(&["sprites", &self.name, "checkpoints"]);
        self.client
            .send_json(self.client.request(Method::GET, url))
            .await
    }

    /// `GET /v1/sprites/{name}/checkpoints/{id}`; an unknown id is a 404
    /// ([`Error::is_not_found`]).
    pub async fn checkpoint(&self, id: &str) -> Result<Checkpoint, Error> {
        let url = self.checkpoint_url(id, None)?;
        self.client
            .send_json(self.client.request(Method::GET, url))
            .await
    }

    /// Checkpoint the sprite's filesystem and wait until it is done. The
    /// answer names the new checkpoint; a failure the server reports while
    /// working is [`Error::Operation`].
    pub async fn create_checkpoint(
        &self,
        comment: Option<&str>,
    ) -> Result<CheckpointOutcome, Error> {
        let done = self
            .create_checkpoint_stream(comment)
            .await?
            .finish()
            .await?;
        let id = self.created_checkpoint_id(&done).await?;
        Ok(CheckpointOutcome::new(id, done))
    }

    /// The id of the checkpoint a finished create made: the one its
    /// `complete` message names (`Checkpoint v3 created`), else, for a
    /// server that does not name it, the one the sprite now stands on.
    pub async fn created_checkpoint_id(&self, done: &Completion) -> Result<String, Error> {
        match checkpoint_id_in(&done.message) {
            Some(id) => Ok(id),
            None => self.current_checkpoint_id().await,
        }
    }

    /// `POST /v1/sprites/{name}/checkpoint`: the progress events as they
    /// arrive (for a progress display); see [`EventStream`]. Once it has
    /// finished, [`SpriteHandle::created_checkpoint_id`] names the new one.
    pub async fn create_checkpoint_stream(
        &self,
        comment: Option<&str>,
    ) -> Result<EventStream, Error> {
        let url = self.client.url(&["sprites", &self.name, "checkpoint"]);
        let body = CreateCheckpointRequest {
            comment: comment.map(str::to_string),
        };
        let req = self
            .client
            .request(Method::POST, url)
            .header(ACCEPT, NDJSON)
            .json(&body);
        Ok(EventStream::new(self.client.send(req).await?))
    }

    /// Put the sprite's filesystem back to checkpoint `id` and wait until it
    /// is done. This restarts the sprite's processes and ends its sessions.
    pub async fn restore_checkpoint(&self, id: &str) -> Result<CheckpointOutcome, Error> {
        let done = self.restore_checkpoint_stream(id).await?.finish().await?;
        Ok(CheckpointOutcome::new(id.to_string(), done))
    }

    /// `POST /v1/sprites/{name}/checkpoints/{id}/restore`: the progress
    /// events as they arrive; see [`EventStream`].
    pub async fn restore_checkpoint_stream(&self, id: &str) -> Result<EventStream, Error> {
        let url = self.checkpoint_url(id, Some("restore"))?;
        let req = self
            .client
            .request(Method::POST, url)
            .header(ACCEPT, NDJSON);
        Ok(EventStream::new(self.client.send(req).await?))
    }

    /// Extension: `GET /v1/sprites/{name}/snapshots`, the snapshots of the
    /// sprite's volume replicated to the object store, newest first.
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, Error> {
        let url = self.client.url(&["sprites", &self.name, "snapshots"]);
        self.client
            .send_json(self.client.request(Method::GET, url))
            .await
    }

    /// Extension: `POST /v1/sprites/{name}/snapshots/{id}/restore`, as a
    /// stream of progress events (like a checkpoint restore).
    pub async fn restore_snapshot_stream(&self, id: &str) -> Result<EventStream, Error> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidInput(format!("{id:?} is not a snapshot id")));
        }
        let url = self
            .client
            .url(&["sprites", &self.name, "snapshots", id, "restore"]);
        let req = self
            .client
            .request(Method::POST, url)
            .header(ACCEPT, NDJSON);
        Ok(EventStream::new(self.client.send(req).await?))
    }

    /// `DELETE /v1/sprites/{name}/checkpoints/{id}`. The checkpoint the
    /// sprite stands on cannot be deleted: the server answers 409.
    pub async fn delete_checkpoint(&self, id: &str) -> Result<(), Error> {
        let url = self.checkpoint_url(id, None)?;
        self.client
            .send(self.client.request(Method::DELETE, url))
            .await?;
        Ok(())
    }

    /// Create the sprite `name` from this sprite's checkpoint `checkpoint`.
    pub async fn fork(&self, name: &str, checkpoint: &str) -> Result<Sprite, Error> {
        self.client.fork_sprite(name, &self.name, checkpoint).await
    }

    /// The checkpoint marked current, else the newest.
    async fn current_checkpoint_id(&self) -> Result<String, Error> {
        let list = self.checkpoints().await?;
        list.iter()
            .find(|c| c.is_current == Some(true))
            .or_else(|| list.first())
            .map(|c| c.id.clone())
            .ok_or_else(|| {
                Error::Protocol("the checkpoint was reported created but is not listed".into())
            })
    }

    fn checkpoint_url(&self, id: &str, action: Option<&str>) -> Result<reqwest::Url, Error> {
        // An empty or dot segment would name another resource.
        if matches!(id, "" | "." | "..") {
            return Err(Error::InvalidInput(format!("bad checkpoint id {id:?}")));
        }
        let mut segments = vec!["sprites", self.name.as_str(), "checkpoints", id];
        segments.extend(action);
        Ok(self.client.url(&segments))
    }
}

impl Client {
    /// `POST /v1/sprites` with a `source`: a new sprite `name` whose
    /// filesystem starts as checkpoint `checkpoint` of `source_sprite`. For
    /// more settings, set [`CreateSpriteRequest::source`] and call
    /// [`Client::create_sprite`].
    pub async fn fork_sprite(
        &self,
        name: &str,
        source_sprite: &str,
        checkpoint: &str,
    ) -> Result<Sprite, Error> {
        self.create_sprite(&CreateSpriteRequest {
            name: name.to_string(),
            source: Some(ForkSource {
                sprite: source_sprite.to_string(),
                checkpoint: checkpoint.to_string(),
                snapshot: None,
            }),
            ..Default::default()
        })
        .await
    }
}

/// The first checkpoint id (`v0`, `v1`, ...) named in a text such as
/// `Checkpoint v3 created`.
pub fn checkpoint_id_in(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|word| checkpoint::parse_id(word).is_some())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_messages() {
        assert_eq!(
            checkpoint_id_in("Checkpoint v3 created").as_deref(),
            Some("v3")
        );
        assert_eq!(
            checkpoint_id_in("created checkpoint 'v12'.").as_deref(),
            Some("v12")
        );
        assert_eq!(checkpoint_id_in("v0").as_deref(), Some("v0"));
        for none in ["", "Checkpoint created", "version v01", "dev1 v", "V3"] {
            assert_eq!(checkpoint_id_in(none), None, "{none:?}");
        }
    }

    #[test]
    fn checkpoint_urls() {
        let c = Client::new("http://127.0.0.1:7070", "t").expect("client");
        let s = c.sprite("demo");
        assert_eq!(
            s.checkpoint_url("v1", Some("restore"))
                .expect("url")
                .as_str(),
            "http://127.0.0.1:7070/v1/sprites/demo/checkpoints/v1/restore"
        );
        assert_eq!(
            s.checkpoint_url("a/b", None).expect("url").as_str(),
            "http://127.0.0.1:7070/v1/sprites/demo/checkpoints/a%2Fb"
        );
        for bad in ["", ".", ".."] {
            assert!(matches!(
                s.checkpoint_url(bad, None),
                Err(Error::InvalidInput(_))
            ));
        }
    }

    #[tokio::test]
    async fn bad_ids_fail_before_any_request() {
        // Port 9 (discard) is never a Sprites server: a request would fail
        // with a network error instead.
        let c = Client::new("http://127.0.0.1:9", "t").expect("client");
        let s = c.sprite("demo");
        assert!(matches!(
            s.delete_checkpoint("").await,
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            s.restore_checkpoint("..").await,
            Err(Error::InvalidInput(_))
        ));
    }
}
