//! Running commands in a sprite: a builder shaped like
//! [`std::process::Command`], over the exec WebSocket.

use std::time::Duration;

use reqwest::Url;
use tokio::io::AsyncWriteExt;

use crate::child::{self, ExecChild, ExecEvent};
use crate::error::Error;
use crate::sprites::SpriteHandle;

/// Terminal size of a TTY command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

impl Default for TtySize {
    fn default() -> Self {
        TtySize { rows: 24, cols: 80 }
    }
}

/// What a finished command left: its exit status and everything it wrote.
/// In TTY mode all output arrives as `stdout`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit status (0..=255 over the non-TTY framing).
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Fold one event in; `true` once the exit status has arrived.
    pub(crate) fn record(&mut self, event: ExecEvent) -> bool {
        match event {
            ExecEvent::Stdout(data) => self.stdout.extend_from_slice(&data),
            ExecEvent::Stderr(data) => self.stderr.extend_from_slice(&data),
            ExecEvent::Exit(code) => {
                self.status = code;
                return true;
            }
            ExecEvent::Text(_) => {}
        }
        false
    }
}

/// A command to run in a sprite. Made by [`SpriteHandle::command`].
///
/// ```no_run
/// # async fn demo(client: sprites_client::Client) -> Result<(), sprites_client::Error> {
/// let out = client
///     .sprite("demo")
///     .command("sh")
///     .arg("-c")
///     .arg("echo $GREETING from $(pwd)")
///     .env("GREETING", "hi")
///     .current_dir("/tmp")
///     .output()
///     .await?;
/// assert_eq!(out.stdout, b"hi from /tmp\n");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Command {
    sprite: SpriteHandle,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: Option<String>,
    tty: Option<TtySize>,
    max_run_after_disconnect: Option<Duration>,
}

impl Command {
    pub(crate) fn new(sprite: SpriteHandle, program: String) -> Self {
        Command {
            sprite,
            program,
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            tty: None,
            max_run_after_disconnect: None,
        }
    }

    pub fn arg(&mut self, arg: impl Into<String>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set one environment variable for the command (added to the sprite's).
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Working directory inside the sprite (the server's default is
    /// `/home/sprite`).
    pub fn current_dir(&mut self, dir: impl Into<String>) -> &mut Self {
        self.dir = Some(dir.into());
        self
    }

    /// Run under a pseudo-terminal of this size. Output then arrives raw as
    /// stdout, and the session outlives a disconnect (see
    /// [`SpriteHandle::attach`]).
    pub fn tty(&mut self, rows: u16, cols: u16) -> &mut Self {
        self.tty = Some(TtySize { rows, cols });
        self
    }

    /// How long the command may go on after the client disconnects.
    pub fn max_run_after_disconnect(&mut self, limit: Duration) -> &mut Self {
        self.max_run_after_disconnect = Some(limit);
        self
    }

    pub fn get_program(&self) -> &str {
        &self.program
    }

    pub fn get_args(&self) -> impl Iterator<Item = &str> {
        self.args.iter().map(String::as_str)
    }

    pub fn get_tty(&self) -> Option<TtySize> {
        self.tty
    }

    pub fn sprite(&self) -> &SpriteHandle {
        &self.sprite
    }

    /// Start the command with its stdin open for writing
    /// ([`ExecChild::take_stdin`]).
    pub async fn spawn(&self) -> Result<ExecChild, Error> {
        self.start(true).await
    }

    /// Run to completion with an empty stdin, collecting the output.
    pub async fn output(&self) -> Result<Output, Error> {
        self.start(false).await?.wait_with_output().await
    }

    /// Run to completion with an empty stdin, copying the output to this
    /// process's stdout and stderr (as [`std::process::Command::status`]
    /// inherits them); answers the exit status.
    pub async fn status(&self) -> Result<i32, Error> {
        let mut child = self.start(false).await?;
        let mut stdout = tokio::io::stdout();
        let mut stderr = tokio::io::stderr();
        while let Some(event) = child.next_event().await {
            match event? {
                ExecEvent::Stdout(data) => write_local(&mut stdout, &data).await?,
                ExecEvent::Stderr(data) => write_local(&mut stderr, &data).await?,
                ExecEvent::Exit(code) => return Ok(code),
                ExecEvent::Text(_) => {}
            }
        }
        Err(child::closed_before_exit(None))
    }

    async fn start(&self, stdin_open: bool) -> Result<ExecChild, Error> {
        let url = self.exec_url(true);
        let ws = child::connect(self.sprite.client(), url).await?;
        Ok(ExecChild::start(
            ws,
            self.tty.is_some(),
            stdin_open,
            Vec::new(),
        ))
    }

    /// `…/v1/sprites/{name}/exec?cmd=…`, with a `ws` scheme when `websocket`.
    pub(crate) fn exec_url(&self, websocket: bool) -> Url {
        let segments = ["sprites", self.sprite.name(), "exec"];
        let client = self.sprite.client();
        let mut url = if websocket {
            client.ws_url(&segments)
        } else {
            client.url(&segments)
        };
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("cmd", &self.program);
            for arg in &self.args {
                q.append_pair("cmd", arg);
            }
            q.append_pair("path", &self.program);
            for (key, value) in &self.env {
                q.append_pair("env", &format!("{key}={value}"));
            }
            if let Some(dir) = &self.dir {
                q.append_pair("dir", dir);
            }
            if let Some(size) = self.tty {
                q.append_pair("tty", "true");
                q.append_pair("rows", &size.rows.to_string());
                q.append_pair("cols", &size.cols.to_string());
            }
            // Always announce stdin and close it with an EOF frame when unused,
            // as the official SDKs do.
            q.append_pair("stdin", "true");
            if let Some(limit) = self.max_run_after_disconnect {
                q.append_pair("max_run_after_disconnect", &go_duration(limit));
            }
        }
        url
    }
}

async fn write_local(out: &mut (impl AsyncWriteExt + Unpin), data: &[u8]) -> Result<(), Error> {
    out.write_all(data)
        .await
        .map_err(|e| Error::Network(format!("writing output: {e}")))?;
    out.flush()
        .await
        .map_err(|e| Error::Network(format!("writing output: {e}")))
}

/// A duration as Go's `time.ParseDuration` reads it (`10s`, `1500ms`).
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;

    fn sprite() -> SpriteHandle {
        Client::new("http://127.0.0.1:7070", "t")
            .expect("client")
            .sprite("demo")
    }

    #[test]
    fn exec_url_carries_argv_env_dir_and_tty() {
        let mut cmd = sprite().command("sh");
        cmd.arg("-c")
            .arg("echo a&b")
            .env("K", "V=1")
            .current_dir("/tmp")
            .tty(30, 100);
        assert_eq!(
            cmd.exec_url(true).as_str(),
            "ws://127.0.0.1:7070/v1/sprites/demo/exec?cmd=sh&cmd=-c&cmd=echo+a%26b&path=sh\
             &env=K%3DV%3D1&dir=%2Ftmp&tty=true&rows=30&cols=100&stdin=true"
        );
    }

    #[test]
    fn plain_exec_url_has_no_tty_and_http_scheme() {
        let mut cmd = sprite().command("ls");
        cmd.max_run_after_disconnect(Duration::from_secs(10));
        assert_eq!(
            cmd.exec_url(false).as_str(),
            "http://127.0.0.1:7070/v1/sprites/demo/exec?cmd=ls&path=ls&stdin=true\
             &max_run_after_disconnect=10s"
        );
    }

    #[test]
    fn durations_read_like_go() {
        assert_eq!(go_duration(Duration::from_secs(0)), "0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn builder_mirrors_std_command() {
        let mut cmd = sprite().command("echo");
        cmd.args(["a", "b"]).envs([("X", "1")]);
        assert_eq!(cmd.get_program(), "echo");
        assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(cmd.get_tty(), None);
        assert_eq!(TtySize::default(), TtySize { rows: 24, cols: 80 });
    }
}
