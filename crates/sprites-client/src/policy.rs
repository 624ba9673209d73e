//! The sprite's egress policy: `GET`/`POST /v1/sprites/{name}/policy/network`.

use reqwest::Method;
use sprites_api::policy::NetworkPolicy;

use crate::error::Error;
use crate::sprites::SpriteHandle;

impl SpriteHandle {
    /// The rules in force (none: open egress).
    pub async fn network_policy(&self) -> Result<NetworkPolicy, Error> {
        let url = self
            .client
            .url(&["sprites", &self.name, "policy", "network"]);
        self.client
            .send_json(self.client.request(Method::GET, url))
            .await
    }

    /// Replaces the rules; they apply at once and at every boot.
    pub async fn set_network_policy(&self, policy: &NetworkPolicy) -> Result<(), Error> {
        let url = self
            .client
            .url(&["sprites", &self.name, "policy", "network"]);
        self.client
            .send(self.client.request(Method::POST, url).json(policy))
            .await?;
        Ok(())
    }
}
