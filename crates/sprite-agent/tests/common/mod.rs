//! Test harness: start the real agent binary on a socket in a temp dir and
//! speak the frame protocol to it with blocking std sockets.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sprites_api::agent::{
    self, ExecRequest, Reply, Request, SessionStarted, EXIT, HEADER_LEN, JSON, STDERR, STDOUT,
};
use sprites_test_support::ready::wait_ready;

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "sprite-agent-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Names the agent's state directory (services, logs); `/.sprite` if unset.
pub const STATE_DIR_ENV: &str = "SPRITE_AGENT_STATE_DIR";

/// A running agent, stopped (by its pid) on drop.
pub struct Agent {
    child: Child,
    pub socket: PathBuf,
    _dir: TempDir,
}

impl Agent {
    /// Start an agent that binds its own socket (`--listen`), with its
    /// state in its own temp dir.
    pub fn start() -> Agent {
        let dir = TempDir::new("agent");
        let state = dir.path().join("state");
        Agent::start_in(dir, &state)
    }

    /// Start an agent whose state (service definitions and logs) lives in
    /// `state`, which outlives it: a later agent on the same dir is the
    /// same sprite booting again.
    pub fn start_with_state(state: &Path) -> Agent {
        Agent::start_in(TempDir::new("agent"), state)
    }

    fn start_in(dir: TempDir, state: &Path) -> Agent {
        let socket = dir.path().join("agent.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sprite-agent"));
        cmd.arg("--listen")
            .arg(&socket)
            .env(STATE_DIR_ENV, state)
            .env_remove("SPRITE_AGENT_FD");
        Agent::launch(cmd, socket, dir)
    }

    /// Start an agent on a listening socket made here and passed as fd 3
    /// with `SPRITE_AGENT_FD=3`, the way the daemon does through runc.
    pub fn start_inherited() -> Agent {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let dir = TempDir::new("agent-fd");
        let socket = dir.path().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let fd = listener.as_raw_fd();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sprite-agent"));
        cmd.env("SPRITE_AGENT_FD", "3")
            .env(STATE_DIR_ENV, dir.path().join("state"));
        // SAFETY: runs in the forked child before exec and only calls
        // dup2/fcntl, which are async-signal-safe, on an fd that is open.
        unsafe {
            cmd.pre_exec(move || {
                let rc = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let agent = Agent::launch(cmd, socket, dir);
        drop(listener);
        agent
    }

    fn launch(mut cmd: Command, socket: PathBuf, dir: TempDir) -> Agent {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .expect("start sprite-agent");
        let mut agent = Agent {
            child,
            socket,
            _dir: dir,
        };
        // A Unix socket cannot connect to itself: a connect is an answer.
        let socket = agent.socket.clone();
        let ready = wait_ready(&mut agent.child, Duration::from_secs(20), || {
            UnixStream::connect(&socket)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = ready {
            panic!("sprite-agent on {}: {e}", socket.display());
        }
        agent
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL the agent (by its pid) and wait for it: no clean-up runs,
    /// as when a sprite goes cold.
    pub fn kill(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }

    pub fn connect(&self) -> Conn {
        let s = UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Conn(s)
    }

    /// Open a connection and send a request.
    pub fn request(&self, req: &Request) -> Conn {
        let mut c = self.connect();
        c.send_json(req);
        c
    }

    /// Run a command to completion.
    pub fn run(&self, req: ExecRequest) -> Run {
        let mut c = self.request(&Request::Exec(req));
        c.collect()
    }

    pub fn sessions(&self) -> Vec<sprites_api::sprite::SessionInfo> {
        let mut c = self.request(&Request::Sessions);
        match c.reply() {
            Reply::Sessions { sessions } => sessions,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Resident memory of the agent, in KiB.
    pub fn rss_kib(&self) -> u64 {
        sprites_test_support::rss_kib(self.pid())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One connection to the agent.
pub struct Conn(pub UnixStream);

impl Conn {
    pub fn send_frame(&mut self, kind: u8, payload: &[u8]) {
        self.0
            .write_all(&agent::frame(kind, payload))
            .expect("send frame");
    }

    pub fn send_json<T: serde::Serialize>(&mut self, v: &T) {
        self.0.write_all(&agent::json_frame(v)).expect("send json");
    }

    /// The next frame, or `None` at end of stream.
    pub fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        read_frame(&mut self.0)
    }

    /// The next frame, which must be a JSON reply.
    pub fn reply(&mut self) -> Reply {
        match self.frame() {
            Some((JSON, body)) => serde_json::from_slice(&body).expect("reply json"),
            other => panic!("expected a JSON reply, got {other:?}"),
        }
    }

    /// Read the `session_info` reply; returns the session id and is_owner.
    pub fn session_info(&mut self) -> (u32, bool) {
        match self.reply() {
            Reply::SessionInfo(SessionStarted {
                session_id,
                is_owner,
                ..
            }) => (session_id, is_owner),
            other => panic!("expected session_info, got {other:?}"),
        }
    }

    /// Read output until `needle` shows up in stdout; returns all stdout.
    pub fn read_until(&mut self, needle: &str) -> String {
        let mut out = Vec::new();
        loop {
            match self.frame() {
                Some((STDOUT, d)) | Some((STDERR, d)) => {
                    out.extend_from_slice(&d);
                    if String::from_utf8_lossy(&out).contains(needle) {
                        return String::from_utf8_lossy(&out).into_owned();
                    }
                }
                other => panic!(
                    "waiting for {needle:?}, got {other:?} after {:?}",
                    String::from_utf8_lossy(&out)
                ),
            }
        }
    }

    /// Read everything up to and including `EXIT` (after `session_info`).
    pub fn collect(&mut self) -> Run {
        let info = self.reply();
        let mut run = Run {
            info,
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit: None,
            after_exit: false,
        };
        if matches!(run.info, Reply::Error { .. }) {
            return run;
        }
        self.collect_output(&mut run);
        run
    }

    pub fn collect_output(&mut self, run: &mut Run) {
        while let Some((kind, d)) = self.frame() {
            match kind {
                STDOUT => run.stdout.extend_from_slice(&d),
                STDERR => run.stderr.extend_from_slice(&d),
                EXIT => {
                    run.exit = Some(agent::parse_exit(&d).expect("exit payload"));
                    // Nothing may follow EXIT: the agent closes the connection.
                    run.after_exit = self.frame().is_some();
                    return;
                }
                other => panic!("unexpected frame kind {other}"),
            }
        }
    }
}

pub fn read_frame(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; HEADER_LEN];
    match s.read_exact(&mut h) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return None
        }
        Err(e) => panic!("read header: {e}"),
    }
    let (kind, len) = agent::parse_header(h).expect("header");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("read body");
    Some((kind, body))
}

/// What a command did.
#[derive(Debug)]
pub struct Run {
    pub info: Reply,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Option<i32>,
    /// A frame arrived after EXIT (must never happen).
    pub after_exit: bool,
}

impl Run {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

pub fn cmd(args: &[&str]) -> ExecRequest {
    ExecRequest {
        cmd: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn sh(script: &str) -> ExecRequest {
    cmd(&["sh", "-c", script])
}

/// Poll `f` until it returns `Some`, for up to `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
