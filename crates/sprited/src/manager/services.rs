//! Services are the agent's: the daemon wakes the sprite and relays.

use std::sync::Arc;

use sprites_api::agent::{Request, ServiceOp};
use sprites_api::service::Service;

use super::Manager;
use crate::agent_conn::services::{self, ServiceEvents};
use crate::db::SpriteRecord;
use crate::error::Error;

impl Manager {
    /// A number that changes whenever the sprite's services may have (an
    /// operation on them, a start): what was learnt from them at one value
    /// is stale at another.
    pub fn services_generation(&self, rec: &SpriteRecord) -> u64 {
        self.slot(&rec.id).services_generation()
    }

    /// The sprite's services.
    pub async fn services(self: &Arc<Self>, rec: &SpriteRecord) -> Result<Vec<Service>, Error> {
        let conv = self.open(rec, &Request::Service(ServiceOp::List)).await?;
        Ok(services::list(conv).await?)
    }

    /// Service `name`.
    pub async fn service(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        name: String,
    ) -> Result<Service, Error> {
        let conv = self
            .open(rec, &Request::Service(ServiceOp::Get { name }))
            .await?;
        Ok(services::get(conv).await?)
    }

    /// The last `lines` lines of service `name`'s output.
    pub async fn service_logs(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        name: String,
        lines: usize,
    ) -> Result<services::ServiceLog, Error> {
        let op = ServiceOp::Logs { name, lines };
        let conv = self.open(rec, &Request::Service(op)).await?;
        Ok(services::logs(conv).await?)
    }

    /// A service operation answered with a plain `done` (signal, delete).
    pub async fn service_call(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        op: ServiceOp,
    ) -> Result<(), Error> {
        let done = async {
            let conv = self.open(rec, &Request::Service(op)).await?;
            Ok(services::done(conv).await?)
        }
        .await;
        self.slot(&rec.id).services_changed();
        done
    }

    /// A service operation that answers with events (put, start, stop,
    /// restart). An error the agent reports at once is returned as such.
    pub async fn service_events(
        self: &Arc<Self>,
        rec: &SpriteRecord,
        op: ServiceOp,
    ) -> Result<ServiceEvents, Error> {
        let begun = async {
            let conv = self.open(rec, &Request::Service(op)).await?;
            Ok(ServiceEvents::begin(conv).await?)
        }
        .await;
        // After the agent has taken the operation (it answers once the
        // definition is kept), and whatever it answered.
        self.slot(&rec.id).services_changed();
        begun
    }
}
