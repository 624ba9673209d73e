//! Services (processes the sprite's agent supervises: started at boot,
//! restarted when they crash) and tasks (leases that keep a sprite awake).

use std::time::Duration;

use reqwest::header::ACCEPT;
use reqwest::Method;
use sprites_api::service::{log_text, Service, ServiceEvent, ServiceSpec, SignalRequest};
use sprites_api::task::{Task, TaskList, TaskRequest};

use crate::error::Error;
use crate::event_stream::ServiceEvents;
use crate::sprites::SpriteHandle;

const NDJSON: &str = "application/x-ndjson";

/// `5s`, `1.5s`: durations as the API's query parameters take them.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

impl SpriteHandle {
    fn service_url(&self, name: &str, action: Option<&str>) -> Result<reqwest::Url, Error> {
        sprites_api::service::validate_name(name).map_err(Error::InvalidInput)?;
        let mut segments = vec!["sprites", self.name.as_str(), "services", name];
        segments.extend(action);
        Ok(self.client.url(&segments))
    }

    /// `GET /v1/sprites/{name}/services`.
    pub async fn services(&self) -> Result<Vec<Service>, Error> {
        let url = self.client.url(&["sprites", &self.name, "services"]);
        self.client
            .send_json(self.client.request(Method::GET, url))
            .await
    }

    /// `GET /v1/sprites/{name}/services/{svc}`.
    pub async fn service(&self, name: &str) -> Result<Service, Error> {
        let url = self.service_url(name, None)?;
        self.client
            .send_json(self.client.request(Method::GET, url))
            .await
    }

    /// Create or replace a service and start it; the events stream for
    /// `watch` (its output, its exit if it exits), then `complete`.
    pub async fn create_service(
        &self,
        name: &str,
        spec: &ServiceSpec,
        watch: Duration,
    ) -> Result<ServiceEvents, Error> {
        let url = self.service_url(name, None)?;
        let req = self
            .client
            .request(Method::PUT, url)
            .query(&[("duration", secs(watch))])
            .header(ACCEPT, NDJSON)
            .json(spec);
        Ok(ServiceEvents::new(self.client.send(req).await?))
    }

    /// Start a stopped service (clears a sticky stop).
    pub async fn start_service(&self, name: &str, watch: Duration) -> Result<ServiceEvents, Error> {
        let url = self.service_url(name, Some("start"))?;
        let req = self
            .client
            .request(Method::POST, url)
            .query(&[("duration", secs(watch))])
            .header(ACCEPT, NDJSON);
        Ok(ServiceEvents::new(self.client.send(req).await?))
    }

    /// Stop a service: SIGTERM, SIGKILL after `timeout`. It stays stopped
    /// across restarts of the sprite until started again.
    pub async fn stop_service(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<ServiceEvents, Error> {
        let url = self.service_url(name, Some("stop"))?;
        let req = self
            .client
            .request(Method::POST, url)
            .query(&[("timeout", secs(timeout))])
            .header(ACCEPT, NDJSON);
        Ok(ServiceEvents::new(self.client.send(req).await?))
    }

    /// Stop, then start (extension).
    pub async fn restart_service(
        &self,
        name: &str,
        timeout: Duration,
        watch: Duration,
    ) -> Result<ServiceEvents, Error> {
        let url = self.service_url(name, Some("restart"))?;
        let req = self
            .client
            .request(Method::POST, url)
            .query(&[("timeout", secs(timeout)), ("duration", secs(watch))])
            .header(ACCEPT, NDJSON);
        Ok(ServiceEvents::new(self.client.send(req).await?))
    }

    /// `POST /v1/sprites/{name}/services/signal`.
    pub async fn signal_service(&self, name: &str, signal: &str) -> Result<(), Error> {
        let url = self
            .client
            .url(&["sprites", &self.name, "services", "signal"]);
        let body = SignalRequest {
            name: name.to_string(),
            signal: signal.to_string(),
        };
        self.client
            .send(self.client.request(Method::POST, url).json(&body))
            .await?;
        Ok(())
    }

    /// `DELETE /v1/sprites/{name}/services/{svc}`: stops it and forgets it.
    pub async fn delete_service(&self, name: &str) -> Result<(), Error> {
        let url = self.service_url(name, None)?;
        self.client
            .send(self.client.request(Method::DELETE, url))
            .await?;
        Ok(())
    }

    /// The last `lines` lines of a service's output, as the text they make.
    pub async fn service_logs(&self, name: &str, lines: usize) -> Result<String, Error> {
        let events = self.service_log_events(name, lines).await?;
        Ok(log_text(&events))
    }

    /// The last `lines` lines of a service's output as the endpoint sends
    /// them: one `stdout` event per line, then `complete` with the log's
    /// files.
    pub async fn service_log_events(
        &self,
        name: &str,
        lines: usize,
    ) -> Result<Vec<ServiceEvent>, Error> {
        let url = self.service_url(name, Some("logs"))?;
        let req = self
            .client
            .request(Method::GET, url)
            .query(&[("lines", lines)])
            .header(ACCEPT, NDJSON);
        ServiceEvents::new(self.client.send(req).await?)
            .collect_events()
            .await
    }

    /// Tasks that keep the sprite awake (extension of the API; the same as
    /// `/v1/tasks` on the in-sprite socket).
    pub async fn tasks(&self) -> Result<Vec<Task>, Error> {
        let url = self.client.url(&["sprites", &self.name, "tasks"]);
        let list: TaskList = self
            .client
            .send_json(self.client.request(Method::GET, url))
            .await?;
        Ok(list.tasks)
    }

    /// A task that keeps the sprite awake for `expire` (at most 1 h).
    pub async fn create_task(&self, name: &str, expire: Duration) -> Result<Task, Error> {
        let url = self.client.url(&["sprites", &self.name, "tasks"]);
        let body = TaskRequest {
            name: Some(name.to_string()),
            expire: serde_json::json!(expire.as_secs_f64()),
        };
        self.client
            .send_json(self.client.request(Method::POST, url).json(&body))
            .await
    }

    /// Sets a running task to expire `expire` from now.
    pub async fn extend_task(&self, name: &str, expire: Duration) -> Result<Task, Error> {
        let url = self.client.url(&["sprites", &self.name, "tasks", name]);
        let body = TaskRequest {
            name: None,
            expire: serde_json::json!(expire.as_secs_f64()),
        };
        self.client
            .send_json(self.client.request(Method::PUT, url).json(&body))
            .await
    }

    pub async fn delete_task(&self, name: &str) -> Result<(), Error> {
        let url = self.client.url(&["sprites", &self.name, "tasks", name]);
        self.client
            .send(self.client.request(Method::DELETE, url))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;

    #[test]
    fn urls_and_durations() {
        let c = Client::new("http://127.0.0.1:7070", "t").expect("client");
        let s = c.sprite("demo");
        assert_eq!(
            s.service_url("web", Some("start")).expect("url").as_str(),
            "http://127.0.0.1:7070/v1/sprites/demo/services/web/start"
        );
        assert!(s.service_url("../x", None).is_err());
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(secs(Duration::from_secs(5)), "5s");
    }
}
