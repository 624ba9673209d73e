//! The sprite's egress policy: `GET`/`POST /v1/sprites/{name}/policy/network`,
//! and its privileges: `GET`/`POST`/`DELETE /v1/sprites/{name}/policy/privileges`.

use reqwest::Method;
use sprites_api::policy::{NetworkPolicy, PrivilegesPolicy};

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

    /// Capabilities added to and dropped from the default set, and the
    /// devices granted (the empty policy: the default).
    pub async fn privileges_policy(&self) -> Result<PrivilegesPolicy, Error> {
        let url = self
            .client
            .url(&["sprites", &self.name, "policy", "privileges"]);
        self.client
            .send_json(self.client.request(Method::GET, url))
            .await
    }

    /// Replaces the privileges policy; it applies at the sprite's next
    /// start (`restart`).
    pub async fn set_privileges_policy(&self, policy: &PrivilegesPolicy) -> Result<(), Error> {
        let url = self
            .client
            .url(&["sprites", &self.name, "policy", "privileges"]);
        self.client
            .send(self.client.request(Method::POST, url).json(policy))
            .await?;
        Ok(())
    }

    /// Back to the default privileges, at the next start.
    pub async fn delete_privileges_policy(&self) -> Result<(), Error> {
        let url = self
            .client
            .url(&["sprites", &self.name, "policy", "privileges"]);
        self.client
            .send(self.client.request(Method::DELETE, url))
            .await?;
        Ok(())
    }
}
