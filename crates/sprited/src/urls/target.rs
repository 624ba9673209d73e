//! Where a sprite URL's requests go: port 8080 inside, or the `http_port`
//! of a service; and whether a refused connection is worth waiting out (the
//! service is still coming up, e.g. right after a wake from cold).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::db::SpriteRecord;
use crate::manager::Manager;

/// The port a sprite URL reaches when no service names one.
pub const DEFAULT_PORT: u16 = 8080;
/// How long the port found from the services is trusted while they have
/// not changed through the daemon (a definition edited on the volume by
/// hand is seen within this).
const TTL: Duration = Duration::from_secs(5);

/// A URL's destination inside the sprite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub port: u16,
    /// The service whose `http_port` it is.
    pub service: Option<String>,
}

/// Targets found recently, by sprite id: when, at which generation of
/// its services ([`Manager::services_generation`]), and what.
#[derive(Default)]
pub struct Targets {
    found: Mutex<HashMap<String, (Instant, u64, Target)>>,
}

impl Targets {
    /// 8080, or the `http_port` of a service (asked of the agent, which
    /// wakes the sprite; remembered for a few seconds).
    pub async fn find(&self, m: &Arc<Manager>, rec: &SpriteRecord) -> Target {
        // Read before asking: a change made while the agent answers leaves
        // the answer under the older number.
        let generation = m.services_generation(rec);
        if let Some((at, g, t)) = self.lock().get(&rec.id) {
            if at.elapsed() < TTL && *g == generation {
                return t.clone();
            }
        }
        let target = match m.services(rec).await {
            Ok(services) => services
                .iter()
                .find_map(|s| {
                    s.http_port.map(|port| Target {
                        port,
                        service: Some(s.name.clone()),
                    })
                })
                .unwrap_or(Target {
                    port: DEFAULT_PORT,
                    service: None,
                }),
            _ => Target {
                port: DEFAULT_PORT,
                service: None,
            },
        };
        self.lock()
            .insert(rec.id.clone(), (Instant::now(), generation, target.clone()));
        target
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, u64, Target)>> {
        self.found.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `service` is on its way to listening: starting, running (its
/// server may not have bound yet) or waiting to be restarted. A stopped or
/// failed service, or one that is gone, will not answer.
pub async fn service_coming(m: &Arc<Manager>, rec: &SpriteRecord, service: &str) -> bool {
    match m.service(rec, service.to_string()).await {
        Ok(service) => service.state.is_some_and(|s| {
            matches!(s.status.as_str(), "starting" | "running") || s.next_restart_at.is_some()
        }),
        _ => false,
    }
}
