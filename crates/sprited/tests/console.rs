//! The web console in a real browser: Debian's headless chromium, driven
//! through chromedriver (WebDriver), against a real daemon. A failing step
//! saves a screenshot under `target/console-failures/`.
//!
//! `SPRITED_CONSOLE_SHOTS=<dir>` also saves the screenshots the docs show
//! (the list, a terminal, the checkpoint timeline, the usage page).

mod common;

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Api, Daemon};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
// The daemons of these tests use the default (kernel) egress, whose
// sprite starts add no address to the host: a browser on the same host
// (this one) fails its requests in flight with ERR_NETWORK_CHANGED when
// the host's addresses change, and the steps here would then fail (the
// page's retries are not counted on: `boot.js` and `api.js` count each
// in the page's session storage, and [`Browser::run`] fails a scenario
// that saw one).
/// How long the page may take to show what a step waits for.
const WAIT: Duration = Duration::from_secs(30);

type Step<T = ()> = Result<T, String>;

/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";

/// chromedriver and one headless chromium session, ended on drop.
struct Browser {
    client: Option<Client>,
    driver: Child,
    profile: tempfile::TempDir,
    base: String,
    test: &'static str,
}

impl Browser {
    async fn open(d: &Daemon, test: &'static str) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the console tests need Debian's chromium and chromium-driver \
                 (`scripts/deps.sh --tests` installs them)"
            );
        }
        let port = sprites_test_support::free_port();
        // Its own process group: the browsers it starts are in it too, and
        // end with it (see Drop).
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let addr = format!("127.0.0.1:{port}").parse().expect("address");
        drop(
            sprites_test_support::ready::connect_when_listening(addr, Duration::from_secs(20))
                .await,
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // Tests run as root, where chromium's sandbox cannot.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session");
        Browser {
            client: Some(client),
            driver,
            profile,
            base: d.url.clone(),
            test,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("open")
    }

    async fn goto(&self, path: &str) -> Step {
        self.c()
            .goto(&format!("{}{path}", self.base))
            .await
            .map_err(|e| format!("opening {path}: {e}"))
    }

    /// Evaluates `script` (a function body) in the page.
    async fn js(&self, script: &str, args: Vec<Value>) -> Step<Value> {
        self.c()
            .execute(script, args)
            .await
            .map_err(|e| format!("running {script}: {e}"))
    }

    /// Waits until `script` returns something truthy, and returns it.
    async fn until(&self, what: &str, script: &str, args: Vec<Value>) -> Step<Value> {
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < WAIT {
            match self.js(script, args.clone()).await {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => last = v,
                Err(e) => last = Value::String(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("waited {WAIT:?} for {what}; last: {last}"))
    }

    async fn visible(&self, css: &str) -> Step {
        self.until(
            &format!("{css} to show"),
            "const e = document.querySelector(arguments[0]); \
             return !!e && e.getClientRects().length > 0;",
            vec![json!(css)],
        )
        .await
        .map(drop)
    }

    async fn click(&self, css: &str) -> Step {
        self.visible(css).await?;
        let e = self
            .c()
            .find(Locator::Css(css))
            .await
            .map_err(|e| format!("finding {css}: {e}"))?;
        e.click().await.map_err(|e| format!("clicking {css}: {e}"))
    }

    async fn type_into(&self, css: &str, text: &str) -> Step {
        self.visible(css).await?;
        let e = self
            .c()
            .find(Locator::Css(css))
            .await
            .map_err(|e| format!("finding {css}: {e}"))?;
        e.send_keys(text)
            .await
            .map_err(|e| format!("typing into {css}: {e}"))
    }

    async fn text_of(&self, css: &str) -> Step<String> {
        let v = self
            .js(
                "const e = document.querySelector(arguments[0]); \
                 return e ? (e.value !== undefined && e.tagName !== 'BUTTON' \
                    ? e.value : e.textContent) : null;",
                vec![json!(css)],
            )
            .await?;
        Ok(v.as_str().unwrap_or("").to_string())
    }

    /// The terminal's screen, a line per row.
    async fn screen(&self) -> Step<Vec<String>> {
        let v = self
            .js(
                "const r = document.querySelector('#terminal .xterm-rows'); \
                 return r ? Array.from(r.children).map(c => c.textContent) : [];",
                vec![],
            )
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|l| {
                        l.as_str()
                            .unwrap_or("")
                            .replace('\u{a0}', " ")
                            .trim_end()
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until some row of the terminal reads exactly `line`.
    async fn screen_shows(&self, line: &str) -> Step {
        let start = Instant::now();
        let mut last = Vec::new();
        while start.elapsed() < WAIT {
            last = self.screen().await?;
            if last.iter().any(|l| l.trim() == line) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "the terminal never showed {line:?}; it shows {last:#?}"
        ))
    }

    /// Types into the terminal (xterm's input is its hidden textarea).
    async fn terminal_type(&self, text: &str) -> Step {
        self.visible("#terminal .xterm-screen").await?;
        let e = self
            .c()
            .find(Locator::Css("#terminal textarea"))
            .await
            .map_err(|e| format!("the terminal's input: {e}"))?;
        e.send_keys(text)
            .await
            .map_err(|e| format!("typing into the terminal: {e}"))
    }

    /// Opens a directory in the file browser, typed as a user would.
    async fn open_dir(&self, dir: &str) -> Step {
        // After the first listing, as a user would.
        self.visible("#files [data-path]").await?;
        self.js("document.querySelector('#files-path').value = '';", vec![])
            .await?;
        self.type_into("#files-path", &format!("{dir}{ENTER}"))
            .await
    }

    async fn sign_in(&self, token: &str) -> Step {
        self.goto("/").await?;
        self.type_into("#token", token).await?;
        self.click("#signin-submit").await?;
        self.visible("#signout").await
    }

    async fn shot(&self, path: &Path) {
        match self.c().screenshot().await {
            Ok(png) => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                if let Err(e) = std::fs::write(path, png) {
                    eprintln!("saving {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("screenshot: {e}"),
        }
    }

    /// A screenshot for the docs, when asked for.
    async fn doc_shot(&self, name: &str) {
        if let Ok(dir) = std::env::var("SPRITED_CONSOLE_SHOTS") {
            self.shot(&PathBuf::from(dir).join(format!("{name}.png")))
                .await;
        }
    }

    /// Runs the scenario; on failure saves a screenshot and fails the test.
    async fn run<'a, F, Fut>(&'a self, scenario: F)
    where
        F: FnOnce(&'a Browser) -> Fut,
        Fut: Future<Output = Step>,
    {
        let result = match scenario(self).await {
            Ok(()) => self.retries().await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
            let path = target
                .parent()
                .unwrap_or(target)
                .join("console-failures")
                .join(format!("{}.png", self.test));
            self.shot(&path).await;
            let page = self
                .js(
                    "return location.href + '\\n' + (document.body ? document.body.innerText : '') \
                     + '\\nloaded: ' + performance.getEntriesByType('resource')\
                         .map(e => e.name.replace(location.origin, '') + ' ' \
                              + Math.round(e.duration) + 'ms').join(', ');",
                    vec![],
                )
                .await
                .unwrap_or_else(Value::String);
            let page = page
                .as_str()
                .unwrap_or("")
                .chars()
                .take(1500)
                .collect::<String>();
            panic!(
                "{e}\n(screenshot: {})\nthe page showed:\n{page}",
                path.display()
            );
        }
    }

    /// Fails if the page had to repeat a request or its own loading after
    /// a network failure (counted by `api.js` and `boot.js`).
    async fn retries(&self) -> Step {
        let n = self
            .js(
                "return sessionStorage.getItem('console:network-retries');",
                vec![],
            )
            .await?;
        match n.as_str() {
            None => Ok(()),
            Some(n) => Err(format!(
                "the page repeated {n} request(s) or its loading after a network failure"
            )),
        }
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a failed step the session was not closed: end chromedriver's
        // process group, then any browser process of this test's profile
        // that left it (by PID, found by the profile only this test uses).
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.driver.wait();
        let mark = format!("--user-data-dir={}", self.profile.path().display());
        for pid in processes_with_arg(&mark) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The PIDs whose command line has argument `arg`.
fn processes_with_arg(arg: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

async fn file(api: &Api, name: &str, path: &str) -> String {
    let out = api.exec(name, &["cat", path]).await;
    out.out()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_create_type_reattach_and_sign_out() {
    let d = Daemon::start();
    let api = d.client();
    let b = Browser::open(&d, "sign_in_create_type_reattach_and_sign_out").await;
    b.run(|b| async {
        // A wrong token is refused with a message; the right one signs in.
        b.goto("/").await?;
        b.type_into("#token", "not-the-token").await?;
        b.click("#signin-submit").await?;
        b.until(
            "the sign-in error",
            "return document.querySelector('#signin-error')?.textContent.trim();",
            vec![],
        )
        .await?;
        b.js("document.querySelector('#token').value = '';", vec![])
            .await?;
        b.type_into("#token", &d.token).await?;
        b.click("#signin-submit").await?;
        b.visible("#signout").await?;
        // No token in the page's storage or address.
        let leaked = b
            .js(
                "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) \
                 + location.href + document.cookie;",
                vec![],
            )
            .await?;
        if leaked.as_str().unwrap_or("").contains(&d.token) {
            return Err(format!("the token is visible to the page: {leaked}"));
        }

        // Create a sprite from the page: it opens on its terminal.
        b.visible("#create").await?;
        b.type_into("#create-name", "web1").await?;
        b.click("#create-submit").await?;
        b.until(
            "the new sprite's page",
            "return location.hash.startsWith('#/sprites/web1');",
            vec![],
        )
        .await?;
        if api.status("web1").await.is_empty() {
            return Err("the sprite was not created".into());
        }
        b.until(
            "the terminal to connect",
            "return document.querySelector('#terminal-status')?.textContent.includes('connected') \
                 && document.querySelector('#terminal-session')?.textContent.trim();",
            vec![],
        )
        .await?;
        let session = b.text_of("#terminal-session").await?;
        b.terminal_type("echo hi\n").await?;
        b.screen_shows("hi").await?;
        b.terminal_type("echo $((40 + 2))\n").await?;
        b.screen_shows("42").await?;
        b.doc_shot("console-terminal").await;

        // A reload attaches to the same shell, its scrollback shown.
        b.c().refresh().await.map_err(|e| format!("reload: {e}"))?;
        b.until(
            "the terminal to re-attach",
            "return document.querySelector('#terminal-status')?.textContent.includes('connected') \
                 && document.querySelector('#terminal-session')?.textContent.trim();",
            vec![],
        )
        .await?;
        let again = b.text_of("#terminal-session").await?;
        if again.trim() != session.trim() {
            return Err(format!("re-attached to {again:?}, not {session:?}"));
        }
        b.screen_shows("42").await?;
        b.terminal_type("echo again\n").await?;
        b.screen_shows("again").await?;

        // The list shows what exists, live (a sprite made elsewhere
        // appears), and filters by name.
        b.click("#nav-sprites").await?;
        b.until(
            "web1 running in the list",
            "return document.querySelector('tr[data-sprite=\"web1\"] td.status')\
                 ?.textContent.trim() === 'running';",
            vec![],
        )
        .await?;
        api.create("agent-2").await;
        b.visible("tr[data-sprite=\"agent-2\"]").await?;
        b.doc_shot("console-list").await;
        b.type_into("#filter", "agent").await?;
        b.until(
            "the filter to leave agent-2 alone",
            "const shown = n => { const r = document.querySelector(`tr[data-sprite=\"${n}\"]`); \
                 return !!r && r.getClientRects().length > 0; }; \
             return shown('agent-2') && !shown('web1');",
            vec![],
        )
        .await?;

        // A destroy asks first; No keeps the sprite, Yes destroys it.
        b.click("tr[data-sprite=\"agent-2\"] button.destroy")
            .await?;
        b.click("#confirm-no").await?;
        if api.status("agent-2").await.is_empty() {
            return Err("No destroyed the sprite".into());
        }
        b.click("tr[data-sprite=\"agent-2\"] button.destroy")
            .await?;
        b.click("#confirm-yes").await?;
        b.until(
            "agent-2 to leave the list",
            "return !document.querySelector('tr[data-sprite=\"agent-2\"]');",
            vec![],
        )
        .await?;
        let gone = api
            .req(reqwest::Method::GET, "/v1/sprites/agent-2")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if gone.status() != 404 {
            return Err(format!("agent-2 after its destroy: {}", gone.status()));
        }
        // Emptied as a user would: select all, delete.
        b.type_into("#filter", "\u{E009}a\u{E000}\u{E003}").await?;

        // A phone-width window: the list and the terminal fit, nothing
        // scrolls sideways.
        let fits = "return document.documentElement.scrollWidth <= window.innerWidth;";
        b.c()
            .set_window_size(390, 844)
            .await
            .map_err(|e| format!("resizing: {e}"))?;
        b.visible("tr[data-sprite=\"web1\"]").await?;
        b.until("the list to fit 390 px", fits, vec![]).await?;
        b.goto("/#/sprites/web1").await?;
        b.visible("#terminal .xterm-screen").await?;
        b.until("the terminal to fit 390 px", fits, vec![]).await?;
        // The shell was told the narrower size.
        b.until(
            "the terminal to reconnect",
            "return document.querySelector('#terminal-status')?.textContent.includes('connected');",
            vec![],
        )
        .await?;
        b.terminal_type("stty size\n").await?;
        let start = Instant::now();
        loop {
            let narrow = b.screen().await?.iter().any(|l| {
                let mut it = l.split_whitespace();
                match (it.next(), it.next(), it.next()) {
                    (Some(r), Some(c), None) => {
                        r.parse::<u32>().is_ok() && c.parse::<u32>().is_ok_and(|c| c < 60)
                    }
                    _ => false,
                }
            });
            if narrow {
                break;
            }
            if start.elapsed() > WAIT {
                return Err(format!(
                    "stty never showed a narrow size: {:#?}",
                    b.screen().await?
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        b.c()
            .set_window_size(1280, 800)
            .await
            .map_err(|e| format!("resizing: {e}"))?;

        // Signed out, the page and the API refuse the browser.
        b.click("#signout").await?;
        b.visible("#signin").await?;
        let status = b
            .js("return fetch('/v1/sprites').then(r => r.status);", vec![])
            .await?;
        if status != json!(401) {
            return Err(format!("after sign-out /v1/sprites answered {status}"));
        }
        b.c().refresh().await.map_err(|e| format!("reload: {e}"))?;
        b.visible("#signin").await?;
        Ok(())
    })
    .await;
    b.close().await;
    api.delete("web1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_checkpoints_and_usage() {
    let d = Daemon::start_with(&["--meter-interval", "1s"]);
    let api = d.client();
    api.create("files1").await;
    api.sh(
        "files1",
        "mkdir -p /srv/notes && echo one > /srv/notes/a.txt",
    )
    .await;
    let upload = tempfile::tempdir().expect("tempdir");
    let local = upload.path().join("upload.txt");
    std::fs::write(&local, "uploaded from the browser\n").expect("write");

    let b = Browser::open(&d, "files_checkpoints_and_usage").await;
    b.run(|b| async {
        b.sign_in(&d.token).await?;

        // Files: the directory lists, a text file opens, an upload lands.
        b.goto("/#/sprites/files1/files").await?;
        b.visible("#files-path").await?;
        b.open_dir("/srv/notes").await?;
        b.click("[data-path=\"/srv/notes/a.txt\"] a, [data-path=\"/srv/notes/a.txt\"] button")
            .await?;
        b.until(
            "a.txt's content",
            "return document.querySelector('#file-view')?.textContent.includes('one');",
            vec![],
        )
        .await?;
        b.type_into("#upload", &local.display().to_string()).await?;
        b.visible("[data-path=\"/srv/notes/upload.txt\"]").await?;
        let got = file(&api, "files1", "/srv/notes/upload.txt").await;
        if got != "uploaded from the browser\n" {
            return Err(format!("the uploaded file holds {got:?}"));
        }
        // Its download link gives it back.
        let down = b
            .js(
                "const a = document.querySelector('[data-path=\"/srv/notes/upload.txt\"] a.download'); \
                 return a ? fetch(a.href).then(r => r.text()) : null;",
                vec![],
            )
            .await?;
        if down != json!("uploaded from the browser\n") {
            return Err(format!("the download link gave {down}"));
        }

        // Checkpoints: make one with a comment, change the file, restore.
        b.goto("/#/sprites/files1/checkpoints").await?;
        b.type_into("#checkpoint-comment", "before the change")
            .await?;
        b.click("#checkpoint-create").await?;
        let id = b
            .until(
                "the new checkpoint in the timeline",
                "for (const e of document.querySelectorAll('#checkpoints [data-checkpoint]')) \
                     if (e.textContent.includes('before the change')) \
                         return e.getAttribute('data-checkpoint'); \
                 return null;",
                vec![],
            )
            .await?;
        let id = id.as_str().unwrap_or("").to_string();
        let progress = b.text_of("#checkpoint-progress").await?;
        if progress.trim().is_empty() {
            return Err("no checkpoint progress was shown".into());
        }
        b.doc_shot("console-checkpoints").await;

        // Fork the checkpoint into a new sprite: it opens, with the file.
        b.click(&format!("[data-checkpoint=\"{id}\"] button.fork"))
            .await?;
        b.type_into("#fork-name", "files2").await?;
        b.click("#fork-submit").await?;
        b.until(
            "the fork's page",
            "return location.hash.startsWith('#/sprites/files2');",
            vec![],
        )
        .await?;
        let forked = file(&api, "files2", "/srv/notes/a.txt").await;
        if forked != "one\n" {
            return Err(format!("the fork holds {forked:?}"));
        }
        b.goto("/#/sprites/files1/checkpoints").await?;
        b.visible(&format!("[data-checkpoint=\"{id}\"] button.restore"))
            .await?;
        let out = api
            .exec("files1", &["sh", "-c", "echo two > /srv/notes/a.txt"])
            .await;
        if out.code != Some(0) {
            return Err(format!("changing the file: {}", out.out()));
        }
        b.click(&format!("[data-checkpoint=\"{id}\"] button.restore"))
            .await?;
        b.click("#confirm-yes").await?;
        let start = Instant::now();
        loop {
            // Read without an exec: one that reaches the sprite just before
            // the restore stops it is ended with it (503, as the API says of
            // sessions at a restore), which is not what this waits for.
            let read = api
                .req(
                    reqwest::Method::GET,
                    "/v1/sprites/files1/fs/read?path=/srv/notes/a.txt",
                )
                .send()
                .await
                .map_err(|e| format!("reading the file: {e}"))?;
            if read.status() == 200 && read.text().await.ok().as_deref() == Some("one\n") {
                break;
            }
            if start.elapsed() > WAIT {
                return Err("the restore did not bring back the old content".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The page shows the old content too.
        b.goto("/#/sprites/files1/files").await?;
        b.visible("#files-path").await?;
        b.open_dir("/srv/notes").await?;
        b.click("[data-path=\"/srv/notes/a.txt\"] a, [data-path=\"/srv/notes/a.txt\"] button")
            .await?;
        b.until(
            "the restored content",
            "const v = document.querySelector('#file-view')?.textContent; \
             return v && v.includes('one') && !v.includes('two');",
            vec![],
        )
        .await?;

        // Usage: once the meter has booked the sprite's memory, its chart
        // shows it.
        let start = Instant::now();
        loop {
            let u = api.get_json("/v1/sprites/files1/usage").await;
            if u["usage"]["ram_gb_seconds"]
                .as_f64()
                .is_some_and(|v| v > 0.0)
            {
                break;
            }
            if start.elapsed() > WAIT {
                return Err(format!("no memory was metered: {u}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        b.goto("/#/sprites/files1/usage").await?;
        // Points with what the meter booked: memory held, not just zeros.
        b.until(
            "a metered point on the memory chart",
            "return Array.from(document.querySelectorAll('#usage-chart-memory circle.point'))\
                 .some(c => Number(c.getAttribute('data-y')) > 0);",
            vec![],
        )
        .await?;
        b.js(
            "document.querySelector('#usage-total').scrollIntoView();",
            vec![],
        )
        .await?;
        b.doc_shot("console-usage").await;
        b.goto("/#/usage").await?;
        b.until(
            "a metered point on the host's memory chart",
            "return Array.from(document.querySelectorAll('#host-chart-memory circle.point'))\
                 .some(c => Number(c.getAttribute('data-y')) > 0);",
            vec![],
        )
        .await?;
        Ok(())
    })
    .await;
    b.close().await;
    api.delete("files1").await;
    api.delete("files2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_settings_and_tokens() {
    let d = Daemon::start();
    let api = d.client();
    api.create("svc1").await;
    api.sh(
        "svc1",
        "mkdir -p /srv && printf 'while true; do echo tick; sleep 1; done\\n' > /srv/tick.sh",
    )
    .await;

    let b = Browser::open(&d, "services_settings_and_tokens").await;
    b.run(|b| async {
        b.sign_in(&d.token).await?;

        // A service made from the page runs, logs, stops and starts.
        b.goto("/#/sprites/svc1/services").await?;
        b.type_into("#service-name", "ticker").await?;
        b.type_into("#service-cmd", "sh").await?;
        b.type_into("#service-args", "/srv/tick.sh").await?;
        b.click("#service-create").await?;
        let state = |want: &'static str| {
            format!(
                "return document.querySelector('tr[data-service=\"ticker\"] .service-state')\
                     ?.textContent.trim() === '{want}';"
            )
        };
        b.until("ticker running", &state("running"), vec![]).await?;
        b.click("tr[data-service=\"ticker\"] button.logs").await?;
        b.until(
            "ticker's log",
            "return document.querySelector('#service-logs')?.textContent.includes('tick');",
            vec![],
        )
        .await?;
        b.click("tr[data-service=\"ticker\"] button.stop").await?;
        b.until("ticker stopped", &state("stopped"), vec![]).await?;
        b.click("tr[data-service=\"ticker\"] button.start").await?;
        b.until("ticker running again", &state("running"), vec![])
            .await?;

        // The URL's auth mode and the network policy, saved from the page.
        b.goto("/#/sprites/svc1/settings").await?;
        b.visible("#sprite-url").await?;
        // Chosen from the keyboard, as a user may.
        b.type_into("#url-auth", "public").await?;
        let start = Instant::now();
        while api.get_json("/v1/sprites/svc1").await["url_settings"]["auth"] != "public" {
            if start.elapsed() > WAIT {
                return Err("the auth mode was not saved".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        b.click("#policy-add").await?;
        b.js(
            "const rows = document.querySelectorAll('#policy-rules li.policy-rule'); \
             rows[rows.length - 1].querySelector('.rule-domain').focus();",
            vec![],
        )
        .await?;
        b.type_into(
            "#policy-rules li.policy-rule:last-child .rule-domain",
            "example.com",
        )
        .await?;
        b.click("#policy-save").await?;
        let start = Instant::now();
        loop {
            let p = api.get_json("/v1/sprites/svc1/policy/network").await;
            let saved = p["rules"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|x| x["domain"] == "example.com" && x["action"] == "allow")
            });
            if saved {
                break;
            }
            if start.elapsed() > WAIT {
                return Err(format!("the policy was not saved: {p}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // A token made on the page works, until it is revoked there.
        b.click("#nav-tokens").await?;
        b.type_into("#token-name", "ci-bot").await?;
        b.click("#token-submit").await?;
        let secret = b
            .until(
                "the new token",
                "return document.querySelector('#new-token')?.value;",
                vec![],
            )
            .await?;
        let secret = secret.as_str().unwrap_or("").to_string();
        let with_token = || {
            reqwest::Client::new()
                .get(format!("{}/v1/sprites", d.url))
                .bearer_auth(&secret)
                .send()
        };
        let ok = with_token().await.map_err(|e| e.to_string())?;
        if ok.status() != 200 {
            return Err(format!("the new token got {}", ok.status()));
        }
        let id = b
            .until(
                "ci-bot in the list",
                "for (const r of document.querySelectorAll('#tokens tr[data-token]')) \
                     if (r.textContent.includes('ci-bot')) return r.getAttribute('data-token'); \
                 return null;",
                vec![],
            )
            .await?;
        let id = id.as_str().unwrap_or("").to_string();
        b.click(&format!("tr[data-token=\"{id}\"] button.revoke"))
            .await?;
        b.click("#confirm-yes").await?;
        let start = Instant::now();
        while with_token().await.map_err(|e| e.to_string())?.status() != 401 {
            if start.elapsed() > WAIT {
                return Err("the revoked token still works".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    })
    .await;
    b.close().await;
    api.delete("svc1").await;
}

/// The cookie is the console page's alone: another origin (a sprite's URL,
/// under the same site) cannot use it, a change needs the CSRF secret, and
/// the console's pages carry a strict policy.
#[tokio::test]
async fn the_session_cookie_works_only_from_the_console() {
    let d = Daemon::start();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", d.url);

    let page = http.get(url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    let body = page.text().await.expect("page");
    assert!(body.contains("nonce"), "the page carries its nonce");
    assert!(!body.contains("{{NONCE}}"));
    let asset = http
        .get(url("/console/app.js"))
        .send()
        .await
        .expect("app.js");
    assert_eq!(asset.status(), 200);
    assert!(asset.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/javascript"));
    let missing = http.get(url("/console/nope.js")).send().await.expect("404");
    assert_eq!(missing.status(), 404);
    // The API's own 404 is unchanged.
    let api404 = http.get(url("/v1/nope")).send().await.expect("404");
    assert_eq!(api404.status(), 401, "the API still wants a token");

    let bad = http
        .post(url("/console/session"))
        .json(&json!({"token": "wrong"}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(bad.status(), 401);
    let elsewhere = http
        .post(url("/console/session"))
        .header("origin", "http://evil.example")
        .json(&json!({"token": d.token}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(elsewhere.status(), 403, "no other page signs a browser in");
    let ok = http
        .post(url("/console/session"))
        .json(&json!({"token": d.token}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(ok.status(), 200);
    let set = ok.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().expect("name=value").to_string();
    let info: Value = ok.json().await.expect("json");
    let csrf = info["csrf"].as_str().expect("csrf").to_string();
    assert_eq!(info["admin"], true);

    let with = |m: reqwest::Method, p: &str| http.request(m, url(p)).header("cookie", &cookie);
    let list = with(reqwest::Method::GET, "/v1/sprites")
        .send()
        .await
        .expect("list");
    assert_eq!(list.status(), 200, "a GET from the console's page");
    let other = with(reqwest::Method::GET, "/v1/sprites")
        .header("origin", format!("http://web.{}", d.addr))
        .send()
        .await
        .expect("list");
    assert_eq!(other.status(), 403, "another origin");
    let site = with(reqwest::Method::GET, "/v1/sprites")
        .header("sec-fetch-site", "same-site")
        .send()
        .await
        .expect("list");
    assert_eq!(site.status(), 403, "a same-site page (a sprite's URL)");
    let body = json!({"name": "c1"});
    let no_csrf = with(reqwest::Method::POST, "/v1/sprites")
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(no_csrf.status(), 403, "a change without the CSRF secret");
    let wrong = with(reqwest::Method::POST, "/v1/sprites")
        .header("x-csrf-token", "0".repeat(64))
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(wrong.status(), 403);
    let created = with(reqwest::Method::POST, "/v1/sprites")
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let ws = with(reqwest::Method::GET, "/v1/sprites/c1/exec?cmd=true")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("ws");
    assert_eq!(ws.status(), 403, "a WebSocket without an Origin");

    // Signing out ends the session for good, not only in this browser.
    let out = with(reqwest::Method::DELETE, "/console/session")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), 204);
    let after = with(reqwest::Method::GET, "/v1/sprites")
        .send()
        .await
        .expect("list");
    assert_eq!(after.status(), 401);
    let me = with(reqwest::Method::GET, "/console/session")
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 401);

    // A session ends with its token.
    let api = d.client();
    let made = api
        .req(reqwest::Method::POST, "/v1/tokens")
        .json(&json!({"name": "browser"}))
        .send()
        .await
        .expect("token");
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.expect("json");
    let token = made["token"].as_str().expect("token").to_string();
    let signed = http
        .post(url("/console/session"))
        .json(&json!({"token": token}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed.status(), 200);
    let cookie2 = signed.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("cookie")
        .to_string();
    let get2 = || {
        http.get(url("/v1/sprites"))
            .header("cookie", &cookie2)
            .send()
    };
    assert_eq!(get2().await.expect("list").status(), 200);
    let id = made["id"].as_str().expect("id");
    let revoked = api
        .req(reqwest::Method::DELETE, &format!("/v1/tokens/{id}"))
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_success());
    assert_eq!(get2().await.expect("list").status(), 401);
    api.delete("c1").await;
}
