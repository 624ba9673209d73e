//! Usage and cost, and API tokens.

use reqwest::Method;
use sprites_api::token::{CreateTokenRequest, NewToken, TokenInfo, TokenList, TokenScope};
use sprites_api::usage::{OrgUsage, UsageReport};

use crate::client::Client;
use crate::error::Error;
use crate::sprites::SpriteHandle;

/// A time range for usage reports; RFC 3339 times (`None`: the server's
/// default, the last 30 days up to now).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Range {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(f) = &self.from {
            q.push(("from", f.clone()));
        }
        if let Some(t) = &self.to {
            q.push(("to", t.clone()));
        }
        q
    }
}

impl SpriteHandle {
    /// `GET /v1/sprites/{name}/usage`: what the sprite used and what it costs.
    pub async fn usage(&self, range: &Range) -> Result<UsageReport, Error> {
        let url = self.client.url(&["sprites", &self.name, "usage"]);
        self.client
            .send_json(self.client.request(Method::GET, url).query(&range.query()))
            .await
    }
}

impl Client {
    /// `GET /v1/usage`: every sprite's usage, per UTC day.
    pub async fn usage(&self, range: &Range) -> Result<OrgUsage, Error> {
        let url = self.url(&["usage"]);
        self.send_json(self.request(Method::GET, url).query(&range.query()))
            .await
    }

    /// A new API token; its secret is in the answer and nowhere else.
    pub async fn create_token(
        &self,
        name: Option<&str>,
        scope: Option<TokenScope>,
    ) -> Result<NewToken, Error> {
        let url = self.url(&["tokens"]);
        let body = CreateTokenRequest {
            name: name.map(String::from),
            scope,
        };
        self.send_json(self.request(Method::POST, url).json(&body))
            .await
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let url = self.url(&["tokens"]);
        let list: TokenList = self.send_json(self.request(Method::GET, url)).await?;
        Ok(list.tokens)
    }

    /// Revokes a token: it fails from then on.
    pub async fn revoke_token(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["tokens", id]);
        self.send(self.request(Method::DELETE, url)).await?;
        Ok(())
    }
}
