//! A real sprited for end-to-end tests: its own data dir, port and token;
//! helpers that speak the wire protocol directly (reqwest + tungstenite).
#![allow(dead_code)]

pub mod cli;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sprites_test_support::ready;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub const BIN: &str = env!("CARGO_BIN_EXE_sprited");

pub struct Daemon {
    child: Option<Child>,
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
    pub addr: String,
    pub extra_args: Vec<String>,
    /// Extra environment of the daemon (e.g. `SPRITED_FAILPOINTS`).
    pub env: Vec<(String, String)>,
}

/// The isolation level the suites run their sprites at: `container`, or
/// what `SPRITED_TEST_ISOLATION` names (CI runs the suites whose cases
/// differ again with `gvisor`: a matrix, not a copy).
pub fn isolation() -> String {
    std::env::var("SPRITED_TEST_ISOLATION").unwrap_or_else(|_| "container".into())
}

/// How long the daemon may take to answer (it builds the tiny image first).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// Built images shared by every test daemon of this target dir: `standard`
/// (minutes of mmdebstrap) is built once per checkout, then copied.
pub fn image_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-cache")
}

/// `--ca-file` for each CA certificate this host trusts beyond the system's
/// (a TLS-intercepting proxy's, on some networks; none elsewhere), so that
/// sprites reach the package registries the host reaches.
pub fn host_ca_args() -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("/usr/local/share/ca-certificates")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|p| ["--ca-file".to_string(), p.display().to_string()])
        .collect()
}

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Daemon {
        Self::start_with_env(extra, &[])
    }

    /// Start with extra flags and environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut d = Self::start_unready(extra, env);
        d.wait_ready();
        d
    }

    /// Start without waiting for it to answer: [`Daemon::wait_ready`] then.
    pub fn start_unready(extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let data_dir = tempfile::Builder::new()
            .prefix("sprited-test-")
            .tempdir_in("/var/tmp")
            .expect("temp data dir")
            .keep();
        let token = format!("test-token-{}", std::process::id());
        let addr = format!("127.0.0.1:{}", sprites_test_support::free_port());
        let mut d = Daemon {
            child: None,
            url: format!("http://{addr}"),
            token,
            data_dir,
            addr,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.spawn_unready();
        d
    }

    pub fn spawn(&mut self) {
        self.spawn_unready();
        self.wait_ready();
    }

    fn spawn_unready(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .expect("daemon log");
        // The run's isolation level, unless the test names one.
        let isolation = match self.extra_args.iter().any(|a| a == "--isolation") {
            true => Vec::new(),
            false => vec!["--isolation".to_string(), isolation()],
        };
        // No sandboxes made ahead unless the test asks: each would cost a
        // start of its own, and most tests count what runs.
        let pool = match self.extra_args.iter().any(|a| a == "--start-pool") {
            true => Vec::new(),
            false => vec!["--start-pool".to_string(), "0".to_string()],
        };
        let child = Command::new(BIN)
            .process_group(0)
            .args(&isolation)
            .args(&pool)
            .args(["--listen", &self.addr, "--data-dir"])
            .arg(&self.data_dir)
            .args(["--default-image", "tiny"])
            .arg("--image-cache")
            .arg(image_cache())
            .args(&self.extra_args)
            .env("SPRITED_TOKEN", &self.token)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // SPRITED_TEST_LOG (a RUST_LOG filter) for a closer look.
            .env(
                "RUST_LOG",
                std::env::var("SPRITED_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start sprited");
        self.child = Some(child);
    }

    /// Ready when this daemon answers an API request: a header only sprited
    /// sets, whatever the status (a test may change the token).
    pub fn wait_ready(&mut self) {
        let (addr, auth) = (self.addr.clone(), format!("Bearer {}", self.token));
        let child = self.child.as_mut().expect("a daemon just spawned");
        let ready = ready::wait_ready(child, START_TIMEOUT, || {
            let auth = [("authorization", auth.as_str())];
            ready::http_answer(&addr, "GET /v1/sprites", &auth, "sprite-version").map(|_| ())
        });
        if let Err(e) = ready {
            panic!("sprited on {addr}: {e}; its log:\n{}", self.log());
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends `sig` to the daemon's process (not its sandboxes).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("kill");
        }
    }

    /// Waits at most `within` for the daemon to exit by itself: its exit
    /// code, or None if it is still running.
    pub fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            match c.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return status.code();
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => return None,
            }
        }
    }

    /// SIGKILL the daemon and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL the daemon and reap it, waiting at most `within`: false
    /// if it did not end (a thread stuck in the kernel keeps a killed
    /// process from exiting); it can be waited for again.
    pub fn kill9_within(&mut self, within: Duration) -> bool {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
        self.wait_exit(within)
    }

    /// Wait at most `within` for the daemon to exit (after a signal the
    /// test sent), reaping it: false if it did not.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let Some(c) = self.child.as_mut() else {
            return true;
        };
        let deadline = Instant::now() + within;
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => {
                    self.child = None;
                    return true;
                }
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Wait until the daemon's log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        self.wait_log_since(0, needle, timeout)
    }

    /// The log's length now, for [`Daemon::wait_log_since`].
    pub fn log_mark(&self) -> usize {
        self.log().len()
    }

    /// Wait until the log, past byte `mark`, contains `needle`.
    pub fn wait_log_since(&self, mark: usize, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().get(mark..).unwrap_or("").contains(needle) {
            assert!(
                Instant::now() < deadline,
                "daemon log never said {needle:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `runc state` of sprite `id` in this daemon's runc root: its JSON, or
    /// None when runc knows no such container. A gvisor sprite's comes
    /// from runsc's state file (`runsc state` asks the Sentry, which does
    /// not answer while it is frozen): `status` and `pid` (the sandbox's),
    /// `paused` while its cgroup is frozen, as runc says of a container.
    fn runc_state_json(&self, id: &str) -> Option<serde_json::Value> {
        let runsc_file = self
            .data_dir
            .join("runsc")
            .join(format!("{id}_sandbox:{id}.state"));
        if let Ok(bytes) = std::fs::read(&runsc_file) {
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("runsc state json");
            let pid = v["sandbox"]["pid"].as_u64().unwrap_or(0);
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z"));
            let status = match v["status"].as_str() {
                Some("running") if !alive => "stopped",
                Some("running") if frozen(pid) => "paused",
                Some(s) => s,
                None => "",
            };
            return Some(serde_json::json!({"status": status, "pid": pid}));
        }
        // The container driver's state file (runc's, or sprited's own
        // starter's, which runc's CLI cannot read), judged as runc does.
        let v = self.container_state(id)?;
        let pid = v["init_process_pid"].as_u64().unwrap_or(0);
        let start = v["init_process_start"].as_u64().unwrap_or(0);
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            let fields: Vec<&str> = s
                .rsplit_once(')')
                .map(|(_, r)| r.split_ascii_whitespace().collect())
                .unwrap_or_default();
            fields.first().is_some_and(|st| !matches!(*st, "Z" | "X"))
                && fields.get(19).and_then(|t| t.parse::<u64>().ok()) == Some(start)
        });
        let status = if pid == 0 || !alive {
            "stopped"
        } else if frozen(pid) {
            "paused"
        } else if self
            .data_dir
            .join("runc")
            .join(id)
            .join("exec.fifo")
            .exists()
        {
            "created"
        } else {
            "running"
        };
        let pid = if status == "stopped" { 0 } else { pid };
        Some(serde_json::json!({"status": status, "pid": pid}))
    }

    /// The container driver's state file of sandbox `id` (runc's, or
    /// sprited's own starter's, which runc's CLI cannot read).
    fn container_state(&self, id: &str) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.data_dir.join("runc").join(id).join("state.json")).ok()?;
        Some(serde_json::from_slice(&bytes).expect("state json"))
    }

    /// Thaws the cgroup of the sandbox whose state file is `state`: a
    /// frozen task dies only once thawed (as `runc kill --all` thaws what
    /// it signals).
    fn thaw(state: &serde_json::Value) {
        if let Some(dir) = state["cgroup_paths"]["freezer"].as_str() {
            let _ = std::fs::write(format!("{dir}/freezer.state"), "THAWED");
        } else if let Some(dir) = state["cgroup_paths"][""].as_str() {
            let _ = std::fs::write(format!("{dir}/cgroup.freeze"), "0");
        }
    }

    /// SIGKILLs sprite `id`'s init (the kernel ends the rest of its pid
    /// namespace with it), as a crash of the sandbox would.
    pub fn kill_sandbox(&self, id: &str) {
        let pid = self.init_pid(id);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill init");
    }

    /// Every sandbox of the container driver killed and removed (its
    /// cgroups and state), as a host that lost them would be.
    pub fn remove_sandboxes(&self) {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join("runc")) else {
            return;
        };
        for e in entries.flatten() {
            self.remove_sandbox(&e.file_name().to_string_lossy());
        }
    }

    /// Sandbox `id` of the container driver killed and removed (its
    /// cgroups and state), as `runc delete --force` does.
    pub fn remove_sandbox(&self, id: &str) {
        let dir = self.data_dir.join("runc").join(id);
        let state = self.container_state(id).unwrap_or_default();
        if self
            .runc_state_json(id)
            .and_then(|v| v["pid"].as_i64())
            .is_some_and(|p| p > 0)
        {
            self.kill_sandbox(id);
        }
        Self::thaw(&state);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !matches!(self.runc_state(id).as_str(), "stopped" | "absent") {
            assert!(
                std::time::Instant::now() < deadline,
                "{id} outlived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(dirs) = state["cgroup_paths"].as_object() {
            for cgroup in dirs.values().filter_map(|d| d.as_str()) {
                for _ in 0..500 {
                    match std::fs::remove_dir(cgroup) {
                        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        _ => break,
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What runc says sprite `id` is doing (`running`, `paused`, ...), or
    /// `absent`.
    pub fn runc_state(&self, id: &str) -> String {
        self.runc_state_json(id).map_or_else(
            || "absent".into(),
            |v| v["status"].as_str().unwrap_or("").to_string(),
        )
    }

    /// The host pid of sprite `id`'s init (it must be running): for a
    /// gvisor sprite, its sandbox (the Sentry).
    pub fn init_pid(&self, id: &str) -> u32 {
        let v = self.runc_state_json(id).expect("the sprite runs");
        u32::try_from(v["pid"].as_u64().expect("pid")).expect("pid")
    }

    /// SIGKILLs every process of every sandbox of this daemon, runc's and
    /// runsc's (the Sentry and the Gofer), as a host reboot would.
    pub fn kill_all_sandboxes(&self) {
        if let Ok(entries) = std::fs::read_dir(self.data_dir.join("runc")) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = self.runc_state_json(&id).and_then(|v| v["pid"].as_i64()) {
                    if pid > 0 {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                Self::thaw(&self.container_state(&id).unwrap_or_default());
            }
        }
        let Ok(entries) = std::fs::read_dir(self.data_dir.join("runsc")) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().ends_with(".state") {
                continue;
            }
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("runsc state json");
            for pid in [v["sandbox"]["pid"].as_i64(), v["goferPid"].as_i64()]
                .into_iter()
                .flatten()
                .filter(|p| *p > 0)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    pub fn pool_dir(&self) -> PathBuf {
        self.data_dir.join("pool")
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn client(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            url: self.url.clone(),
            token: self.token.clone(),
        }
    }
}

/// How much of a daemon's log a failed test prints.
const LOG_TAIL_LINES: usize = 60;

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        let _ = Command::new(BIN)
            .args(["purge", "--data-dir"])
            .arg(&self.data_dir)
            .status();
        let log = self.data_dir.with_extension("log");
        if std::thread::panicking() || std::env::var_os("SPRITED_TEST_LOG").is_some() {
            // Kept for the post-mortem of a failed test (or when asked);
            // its end goes with the failure, for a CI run's output.
            if std::thread::panicking() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
                eprintln!("the daemon's last log lines:\n{}", tail.join("\n"));
            }
            eprintln!("daemon log kept at {}", log.display());
        } else {
            let _ = std::fs::remove_file(log);
        }
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

#[derive(Debug, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: Option<i32>,
    pub texts: Vec<String>,
    pub close: Option<String>,
}

impl Output {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Api {
    pub fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// GET a path and parse its JSON body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.req(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET request")
            .json()
            .await
            .expect("JSON body")
    }

    /// The sprite's `status` (`""` if the answer has none).
    pub async fn status(&self, name: &str) -> String {
        self.get_json(&format!("/v1/sprites/{name}")).await["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Poll until the sprite's status is `want`; panics after `within`.
    pub async fn wait_status(&self, name: &str, want: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status(name).await;
            if s == want {
                return;
            }
            assert!(Instant::now() < deadline, "{name} is {s}, never {want}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The daemon's metrics, as text.
    pub async fn metrics(&self) -> String {
        let r = self
            .req(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("metrics");
        assert_eq!(r.status(), 200);
        r.text().await.expect("metrics text")
    }

    /// The value of metric line `name` (with its labels), 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_in(&self.metrics().await, name)
    }

    /// Waits (up to 60 s) until `n` sandboxes are made ahead (`--start-pool`).
    pub async fn wait_made_ahead(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self.metric("sprited_sandboxes_made_ahead").await;
            if ready >= n as f64 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ready} sandboxes made ahead after 60 s, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn create(&self, name: &str) -> serde_json::Value {
        self.create_with(serde_json::json!({"name": name})).await
    }

    /// Creates a sprite from a whole request body (image, config, ...).
    pub async fn create_with(&self, request: serde_json::Value) -> serde_json::Value {
        let r = self
            .req(reqwest::Method::POST, "/v1/sprites")
            .json(&request)
            .send()
            .await
            .expect("create request");
        let status = r.status();
        let body = r.text().await.expect("body");
        assert_eq!(status, 201, "create {request}: {body}");
        serde_json::from_str(&body).expect("sprite json")
    }

    pub async fn delete(&self, name: &str) {
        let r = self
            .req(reqwest::Method::DELETE, &format!("/v1/sprites/{name}"))
            .send()
            .await
            .expect("delete request");
        assert_eq!(r.status(), 204, "delete {name}");
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.url.replacen("http", "ws", 1), path_and_query)
    }

    pub async fn ws(
        &self,
        path_and_query: &str,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tokio_tungstenite::tungstenite::Error,
    > {
        let mut req = self
            .ws_url(path_and_query)
            .into_client_request()
            .expect("ws request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().expect("header"),
        );
        tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
    }

    /// Run a command over the WebSocket exec (non-TTY) with `stdin` bytes.
    pub async fn exec_with(&self, name: &str, argv: &[&str], extra: &str, stdin: &[u8]) -> Output {
        let mut q: Vec<String> = argv
            .iter()
            .map(|a| format!("cmd={}", sprites_api::fs::percent_encode(a.as_bytes())))
            .collect();
        q.push("stdin=true".into());
        let mut path = format!("/v1/sprites/{name}/exec?{}", q.join("&"));
        if !extra.is_empty() {
            path.push('&');
            path.push_str(extra);
        }
        let mut ws = self.ws(&path).await.expect("ws exec");
        if !stdin.is_empty() {
            for chunk in stdin.chunks(64 * 1024) {
                let mut f = vec![0u8];
                f.extend_from_slice(chunk);
                ws.send(Message::Binary(f.into())).await.expect("stdin");
            }
        }
        ws.send(Message::Binary(vec![4u8].into()))
            .await
            .expect("eof");
        collect(&mut ws).await
    }

    pub async fn exec(&self, name: &str, argv: &[&str]) -> Output {
        self.exec_with(name, argv, "", &[]).await
    }

    /// `sh -c script` in the sprite; panics unless it exits 0; its stdout.
    pub async fn sh(&self, name: &str, script: &str) -> String {
        let out = self.exec(name, &["sh", "-c", script]).await;
        assert_eq!(
            out.code,
            Some(0),
            "{script}: {} {}",
            out.out(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.out()
    }

    /// Poll `sh -c script` in the sprite until it prints `want` (20 s at most).
    pub async fn eventually(&self, name: &str, script: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.exec(name, &["sh", "-c", script]).await;
            if out.out() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{script}: wanted {want:?}, got {:?} / {:?}",
                out.out(),
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The sprite's internal id (its directories are named by it).
    pub async fn id_of(&self, name: &str) -> String {
        self.get_json(&format!("/v1/sprites/{name}")).await["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    /// POST and read an NDJSON answer: (status, parsed lines).
    pub async fn post_ndjson(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, Vec<serde_json::Value>) {
        let mut req = self.req(reqwest::Method::POST, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        if status != 200 {
            return (
                status,
                vec![serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))],
            );
        }
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("NDJSON line"))
            .collect();
        (status, lines)
    }

    /// Create a checkpoint; panics unless it completes. Returns its id.
    pub async fn checkpoint(&self, name: &str, comment: Option<&str>) -> String {
        let body = comment.map(|c| serde_json::json!({ "comment": c }));
        let (status, lines) = self
            .post_ndjson(&format!("/v1/sprites/{name}/checkpoint"), body)
            .await;
        assert_eq!(status, 200, "{lines:?}");
        let last = lines.last().expect("a line");
        assert_eq!(last["type"], "complete", "{lines:?}");
        let msg = last["data"].as_str().expect("data");
        msg.split_whitespace()
            .find(|w| w.starts_with('v') && w[1..].chars().all(|c| c.is_ascii_digit()))
            .expect("checkpoint id in the complete message")
            .to_string()
    }

    /// Restore a checkpoint; panics unless it completes.
    pub async fn restore(&self, name: &str, id: &str) -> Vec<serde_json::Value> {
        let (status, lines) = self
            .post_ndjson(
                &format!("/v1/sprites/{name}/checkpoints/{id}/restore"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{lines:?}");
        assert_eq!(
            lines.last().expect("a line")["type"],
            "complete",
            "{lines:?}"
        );
        lines
    }
}

pub async fn collect<S>(ws: &mut S) -> Output
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut out = Output::default();
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Binary(b)) => match b.first() {
                Some(1) => out.stdout.extend_from_slice(&b[1..]),
                Some(2) => out.stderr.extend_from_slice(&b[1..]),
                Some(3) => {
                    out.code = Some(b.get(1).copied().unwrap_or(0) as i32);
                }
                _ => {}
            },
            Ok(Message::Text(t)) => out.texts.push(t.to_string()),
            Ok(Message::Close(c)) => {
                out.close = c.map(|c| format!("{} {}", c.code, c.reason));
                break;
            }
            Err(e) => {
                out.close = Some(format!("error: {e}"));
                break;
            }
            _ => {}
        }
    }
    out
}

/// Whether the cgroup of process `pid` is frozen (v1 freezer or v2).
fn frozen(pid: u64) -> bool {
    let Ok(groups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "freezer") {
            let state =
                std::fs::read_to_string(format!("/sys/fs/cgroup/freezer/{path}/freezer.state"));
            return state.is_ok_and(|s| s.trim() != "THAWED");
        }
        if controllers.is_empty() {
            let freeze = std::fs::read_to_string(format!("/sys/fs/cgroup/{path}/cgroup.freeze"));
            if freeze.is_ok_and(|s| s.trim() == "1") {
                return true;
            }
        }
    }
    false
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// The value of metric line `name` (with its labels) in a `/metrics`
/// text, 0 when absent.
pub fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Start `path` as a POST in the background: the daemon will stop dead in
/// the middle of it.
pub fn post_in_background(d: &Daemon, api: &Api, path: &str) {
    in_background(
        d,
        api.req(reqwest::Method::POST, path)
            .json(&serde_json::json!({})),
    );
}

/// Send `req` in the background and wait until the daemon stops dead in
/// it (at an armed failpoint).
pub fn in_background(d: &Daemon, req: reqwest::RequestBuilder) {
    let mark = d.log_mark();
    tokio::spawn(async move {
        let _ = req.send().await;
    });
    d.wait_log_since(mark, "failpoint reached", Duration::from_secs(20));
}

/// Mount points under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(String::from))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}
