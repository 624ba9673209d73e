//! Sprite CRUD: create, list (with pagination), get, update, delete.

use reqwest::Method;
use sprites_api::sprite::{
    CreateSpriteRequest, EvictReport, Sprite, SpriteList, UpdateSpriteRequest,
};

use crate::client::Client;
use crate::error::Error;
use crate::exec::Command;

/// The largest page the API serves.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Query of `GET /v1/sprites`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only sprites whose name starts with this.
    pub prefix: Option<String>,
    /// Page size, 1..=100 (the server's default when `None`).
    pub max_results: Option<u32>,
    /// `next_continuation_token` of the previous page.
    pub continuation_token: Option<String>,
}

impl ListOptions {
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        ListOptions {
            prefix: Some(prefix.into()),
            ..Default::default()
        }
    }
}

impl Client {
    /// `POST /v1/sprites`.
    pub async fn create_sprite(&self, req: &CreateSpriteRequest) -> Result<Sprite, Error> {
        let url = self.url(&["sprites"]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// One page of `GET /v1/sprites`.
    pub async fn list_sprites(&self, opts: &ListOptions) -> Result<SpriteList, Error> {
        let url = self.list_url(opts);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// Every sprite (whose name starts with `prefix`), following the pages.
    pub async fn list_all_sprites(&self, prefix: Option<&str>) -> Result<Vec<Sprite>, Error> {
        let mut opts = ListOptions {
            prefix: prefix.map(str::to_string),
            max_results: Some(MAX_PAGE_SIZE),
            continuation_token: None,
        };
        let mut all = Vec::new();
        loop {
            let page = self.list_sprites(&opts).await?;
            all.extend(page.sprites);
            match page.next_continuation_token {
                Some(token) if page.has_more => {
                    // A server that hands back the same token would loop forever.
                    if opts.continuation_token.as_deref() == Some(token.as_str()) {
                        return Err(Error::Protocol(
                            "the server repeated a continuation token".into(),
                        ));
                    }
                    opts.continuation_token = Some(token);
                }
                _ => return Ok(all),
            }
        }
    }

    /// `GET /v1/sprites/{name}`.
    pub async fn get_sprite(&self, name: &str) -> Result<Sprite, Error> {
        let url = self.url(&["sprites", name]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `PUT /v1/sprites/{name}`: a partial update.
    pub async fn update_sprite(
        &self,
        name: &str,
        req: &UpdateSpriteRequest,
    ) -> Result<Sprite, Error> {
        let url = self.url(&["sprites", name]);
        self.send_json(self.request(Method::PUT, url).json(req))
            .await
    }

    /// `POST /v1/sprites/{name}/evict` (sprited extension): stop the sprite
    /// and move its volume and checkpoints to the object store now.
    pub async fn evict_sprite(&self, name: &str) -> Result<EvictReport, Error> {
        let url = self.url(&["sprites", name, "evict"]);
        self.send_json(self.request(Method::POST, url)).await
    }

    /// `DELETE /v1/sprites/{name}`.
    pub async fn delete_sprite(&self, name: &str) -> Result<(), Error> {
        let url = self.url(&["sprites", name]);
        self.send(self.request(Method::DELETE, url)).await?;
        Ok(())
    }

    fn list_url(&self, opts: &ListOptions) -> reqwest::Url {
        let mut url = self.url(&["sprites"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(prefix) = &opts.prefix {
                query.append_pair("prefix", prefix);
            }
            if let Some(max) = opts.max_results {
                query.append_pair("max_results", &max.to_string());
            }
            if let Some(token) = &opts.continuation_token {
                query.append_pair("continuation_token", token);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        url
    }
}

/// One sprite of a [`Client`]: the calls that act on it by name.
#[derive(Debug, Clone)]
pub struct SpriteHandle {
    pub(crate) client: Client,
    pub(crate) name: String,
}

impl SpriteHandle {
    pub(crate) fn new(client: Client, name: String) -> Self {
        SpriteHandle { client, name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A command to run in this sprite, built like [`std::process::Command`].
    pub fn command(&self, program: impl Into<String>) -> Command {
        Command::new(self.clone(), program.into())
    }

    pub async fn get(&self) -> Result<Sprite, Error> {
        self.client.get_sprite(&self.name).await
    }

    pub async fn update(&self, req: &UpdateSpriteRequest) -> Result<Sprite, Error> {
        self.client.update_sprite(&self.name, req).await
    }

    pub async fn delete(&self) -> Result<(), Error> {
        self.client.delete_sprite(&self.name).await
    }

    /// Moves the sprite to object storage now (see [`Client::evict_sprite`]).
    pub async fn evict(&self) -> Result<EvictReport, Error> {
        self.client.evict_sprite(&self.name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_urls_carry_only_the_given_options() {
        let c = Client::new("http://127.0.0.1:7070", "t").expect("client");
        assert_eq!(
            c.list_url(&ListOptions::default()).as_str(),
            "http://127.0.0.1:7070/v1/sprites"
        );
        let opts = ListOptions {
            prefix: Some("dev-".into()),
            max_results: Some(1),
            continuation_token: Some("a b&c".into()),
        };
        assert_eq!(
            c.list_url(&opts).as_str(),
            "http://127.0.0.1:7070/v1/sprites?prefix=dev-&max_results=1&continuation_token=a+b%26c"
        );
    }

    #[test]
    fn sprite_handles_know_their_name() {
        let c = Client::new("http://127.0.0.1:7070", "t").expect("client");
        assert_eq!(c.sprite("demo").name(), "demo");
    }
}
