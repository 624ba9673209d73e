//! Prometheus metrics at `GET /metrics` (bearer token as for the API):
//! sprites by status, wakes, hibernations, exec count and start latency,
//! control WebSocket operations,
//! checkpoint durations, and each sprite's CPU and memory as last sampled.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

pub struct Metrics {
    registry: Registry,
    sprites: Family<Labels, Gauge>,
    wakes: Family<Labels, Counter>,
    hibernations: Family<Labels, Counter>,
    execs: Counter,
    exec_start: Histogram,
    control_ops: Family<Labels, Counter>,
    checkpoint_seconds: Histogram,
    checkpoint_uploads: Family<Labels, Counter>,
    checkpoint_upload_bytes: Counter,
    checkpoints_not_uploaded: Gauge,
    replications: Family<Labels, Counter>,
    replication_bytes: Counter,
    replication_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    sprite_cpu: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    sprite_memory: Family<Labels, Gauge>,
    gvisor: Family<Labels, Gauge>,
    pool: Family<Labels, Gauge>,
    sandboxes_ahead: Gauge,
    uploads_running: Gauge,
    uploads_peak: Gauge,
    creates: Family<Labels, Counter>,
    /// name → (cpu seconds, memory bytes), from the meter.
    last: Mutex<HashMap<String, (f64, i64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sprited");
        let sprites = Family::<Labels, Gauge>::default();
        registry.register("sprites", "Sprites by status", sprites.clone());
        let wakes = Family::<Labels, Counter>::default();
        registry.register(
            "wakes",
            "Sprites woken, by the state they left",
            wakes.clone(),
        );
        let hibernations = Family::<Labels, Counter>::default();
        registry.register(
            "hibernations",
            "Idle sprites paused (warm) or stopped (cold)",
            hibernations.clone(),
        );
        let execs = Counter::default();
        registry.register("execs", "Commands started", execs.clone());
        // 0.5 ms .. ~8 s
        let exec_start = Histogram::new(exponential_buckets(0.0005, 2.0, 15));
        registry.register(
            "exec_start_seconds",
            "From an exec request to its command running (waking included)",
            exec_start.clone(),
        );
        let control_ops = Family::<Labels, Counter>::default();
        registry.register(
            "control_operations",
            "Operations run on control WebSockets, by kind (exec, fs, proxy)",
            control_ops.clone(),
        );
        let checkpoint_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "checkpoint_seconds",
            "Duration of checkpoint creates",
            checkpoint_seconds.clone(),
        );
        let checkpoint_uploads = Family::<Labels, Counter>::default();
        registry.register(
            "checkpoint_uploads",
            "Checkpoints copied to the object store, by result (ok, failed)",
            checkpoint_uploads.clone(),
        );
        let checkpoint_upload_bytes = Counter::default();
        registry.register(
            "checkpoint_upload_bytes",
            "Bytes sent to the object store for checkpoints (new chunks, compressed)",
            checkpoint_upload_bytes.clone(),
        );
        let checkpoints_not_uploaded = Gauge::default();
        registry.register(
            "checkpoints_not_uploaded",
            "Checkpoints only on local disk, as of the uploader's last round",
            checkpoints_not_uploaded.clone(),
        );
        let replications = Family::<Labels, Counter>::default();
        registry.register(
            "replications",
            "Snapshots of volumes replicated to the object store, by result (ok, failed)",
            replications.clone(),
        );
        let replication_bytes = Counter::default();
        registry.register(
            "replication_bytes",
            "Bytes sent to the object store by replication (new chunks, compressed)",
            replication_bytes.clone(),
        );
        let replication_lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "replication_lag_seconds",
            "How long the sprite furthest behind has had changes not yet replicated",
            replication_lag.clone(),
        );
        let sprite_cpu = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "sprite_cpu_seconds",
            "CPU time of a sprite's processes since it started, as last sampled",
            sprite_cpu.clone(),
        );
        let sprite_memory = Family::<Labels, Gauge>::default();
        registry.register(
            "sprite_memory_bytes",
            "Memory of a sprite, as last sampled",
            sprite_memory.clone(),
        );
        let gvisor = Family::<Labels, Gauge>::default();
        registry.register(
            "gvisor_info",
            "What runs gvisor sprites here (1): runsc's version, the Sentry's platform and why it was chosen",
            gvisor.clone(),
        );
        let pool = Family::<Labels, Gauge>::default();
        registry.register(
            "pool_bytes",
            "The sprite pool's file system: its size and what is free in it",
            pool.clone(),
        );
        let sandboxes_ahead = Gauge::default();
        registry.register(
            "sandboxes_made_ahead",
            "Sandboxes made ahead for default creates (--start-pool), ready to be taken",
            sandboxes_ahead.clone(),
        );
        let uploads_running = Gauge::default();
        registry.register(
            "uploads_running",
            "Uploads to the object store under way (replications, evictions, checkpoints, base images)",
            uploads_running.clone(),
        );
        let uploads_peak = Gauge::default();
        registry.register(
            "uploads_running_peak",
            "The most uploads to the object store that were under way at once since the daemon started",
            uploads_peak.clone(),
        );
        let creates = Family::<Labels, Counter>::default();
        registry.register(
            "creates",
            "Sprites created, by how their sandbox was had (ahead: made ahead; new: made for them)",
            creates.clone(),
        );
        Metrics {
            registry,
            sprites,
            wakes,
            hibernations,
            execs,
            exec_start,
            control_ops,
            checkpoint_seconds,
            checkpoint_uploads,
            checkpoint_upload_bytes,
            checkpoints_not_uploaded,
            replications,
            replication_bytes,
            replication_lag,
            sprite_cpu,
            sprite_memory,
            gvisor,
            pool,
            sandboxes_ahead,
            uploads_running,
            uploads_peak,
            creates,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// What runs gvisor sprites (set once, at start).
    pub fn gvisor(&self, info: &crate::config::GvisorInfo) {
        let labels = vec![
            ("runsc".to_string(), info.runsc.clone()),
            ("platform".to_string(), info.platform.to_string()),
            ("chosen".to_string(), info.why.clone()),
        ];
        self.gvisor.get_or_create(&labels).set(1);
    }

    /// Sandboxes made ahead, ready now.
    pub fn start_pool(&self, ready: usize) {
        self.sandboxes_ahead
            .set(i64::try_from(ready).unwrap_or(i64::MAX));
    }

    /// An upload to the object store began; it ends when the guard goes.
    pub fn upload_began(&self) -> UploadRunning<'_> {
        let now = self.uploads_running.inc() + 1;
        self.uploads_peak
            .inner()
            .fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        UploadRunning(self)
    }

    /// A sprite was created: `ahead` when it took a sandbox made ahead.
    pub fn created(&self, ahead: bool) {
        let how = if ahead { "ahead" } else { "new" };
        self.creates.get_or_create(&label("start", how)).inc();
    }

    pub fn woke(&self, from: &str) {
        self.wakes.get_or_create(&label("from", from)).inc();
    }

    pub fn evicted(&self) {
        self.hibernations
            .get_or_create(&label("to", "object"))
            .inc();
    }

    pub fn hibernated(&self, to: &str) {
        self.hibernations.get_or_create(&label("to", to)).inc();
    }

    pub fn exec_started(&self, seconds: f64) {
        self.execs.inc();
        self.exec_start.observe(seconds);
    }

    /// An operation started on a control WebSocket.
    pub fn control_op(&self, kind: &str) {
        self.control_ops.get_or_create(&label("op", kind)).inc();
    }

    pub fn checkpointed(&self, seconds: f64) {
        self.checkpoint_seconds.observe(seconds);
    }

    /// One checkpoint upload: whether it worked, the bytes it sent.
    pub fn checkpoint_uploaded(&self, ok: bool, bytes_sent: u64) {
        let result = if ok { "ok" } else { "failed" };
        self.checkpoint_uploads
            .get_or_create(&label("result", result))
            .inc();
        self.checkpoint_upload_bytes.inc_by(bytes_sent);
    }

    /// One replication: whether it worked, the bytes it sent.
    pub fn replicated(&self, ok: bool, bytes_sent: u64) {
        let result = if ok { "ok" } else { "failed" };
        self.replications
            .get_or_create(&label("result", result))
            .inc();
        self.replication_bytes.inc_by(bytes_sent);
    }

    pub fn replication_lag(&self, seconds: f64) {
        self.replication_lag.set(seconds);
    }

    pub fn checkpoints_not_uploaded(&self, n: usize) {
        self.checkpoints_not_uploaded.set(n as i64);
    }

    /// The meter's last sample of a running sprite.
    pub fn sampled(&self, name: &str, cpu_seconds: f64, memory_bytes: u64) {
        if let Ok(mut last) = self.last.lock() {
            last.insert(
                name.to_string(),
                (cpu_seconds, i64::try_from(memory_bytes).unwrap_or(i64::MAX)),
            );
        }
    }

    /// The sprite stopped or went: no more samples of it.
    pub fn forget(&self, name: &str) {
        if let Ok(mut last) = self.last.lock() {
            last.remove(name);
        }
    }

    /// The text exposition, with the sprite counts as given.
    /// The text exposition, with the sprites by status and the pool's
    /// `(size, free)` bytes (absent when they could not be read) as of now.
    pub fn render(&self, by_status: &[(&str, i64)], pool: Option<(u64, u64)>) -> String {
        self.pool.clear();
        if let Some((size, free)) = pool {
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.pool
                .get_or_create(&label("kind", "size"))
                .set(gauge(size));
            self.pool
                .get_or_create(&label("kind", "free"))
                .set(gauge(free));
        }
        self.sprites.clear();
        for (status, n) in by_status {
            self.sprites.get_or_create(&label("status", status)).set(*n);
        }
        self.sprite_cpu.clear();
        self.sprite_memory.clear();
        if let Ok(last) = self.last.lock() {
            for (name, (cpu, mem)) in last.iter() {
                self.sprite_cpu
                    .get_or_create(&label("sprite", name))
                    .set(*cpu);
                self.sprite_memory
                    .get_or_create(&label("sprite", name))
                    .set(*mem);
            }
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// An upload under way, counted in `uploads_running` until dropped.
pub struct UploadRunning<'a>(&'a Metrics);

impl Drop for UploadRunning<'_> {
    fn drop(&mut self) {
        self.0.uploads_running.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        m.woke("cold");
        m.hibernated("warm");
        m.exec_started(0.002);
        m.checkpointed(0.04);
        m.sampled("demo", 1.5, 1024);
        let text = m.render(&[("running", 2), ("cold", 1)], Some((1 << 30, 1 << 20)));
        for want in [
            "sprited_sprites{status=\"running\"} 2",
            "sprited_wakes_total{from=\"cold\"} 1",
            "sprited_hibernations_total{to=\"warm\"} 1",
            "sprited_execs_total 1",
            "sprited_exec_start_seconds_count 1",
            "sprited_checkpoint_seconds_count 1",
            "sprited_sprite_cpu_seconds{sprite=\"demo\"} 1.5",
            "sprited_sprite_memory_bytes{sprite=\"demo\"} 1024",
            "sprited_pool_bytes{kind=\"size\"} 1073741824",
            "sprited_pool_bytes{kind=\"free\"} 1048576",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        m.forget("demo");
        assert!(!m.render(&[], None).contains("demo"));
    }
}
