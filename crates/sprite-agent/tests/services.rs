//! Services through the agent protocol, against the real agent binary with
//! its state (definitions, logs) in a temp dir.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{eventually, Agent, TempDir};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use sprites_api::agent::{AgentErrorCode, Reply, Request, ServiceOp, JSON};
use sprites_api::service::{Service, ServiceEvent, ServiceSpec};

fn spec(cmd: &str, args: &[&str]) -> ServiceSpec {
    ServiceSpec {
        cmd: cmd.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn sh(script: &str) -> ServiceSpec {
    spec("sh", &["-c", script])
}

fn needing(mut s: ServiceSpec, needs: &[&str]) -> ServiceSpec {
    s.needs = needs.iter().map(|n| n.to_string()).collect();
    s
}

/// Every reply of one service op, until the agent closes the connection.
fn replies(agent: &Agent, op: ServiceOp) -> Vec<Reply> {
    let mut c = agent.request(&Request::Service(op));
    let mut out = Vec::new();
    while let Some((kind, body)) = c.frame() {
        assert_eq!(kind, JSON, "service ops answer JSON frames only");
        out.push(serde_json::from_slice(&body).expect("reply json"));
    }
    out
}

/// The events of a streaming op (which must not be refused).
fn events(agent: &Agent, op: ServiceOp) -> Vec<ServiceEvent> {
    replies(agent, op)
        .into_iter()
        .map(|r| match r {
            Reply::ServiceEvent { event } => *event,
            other => panic!("expected service events, got {other:?}"),
        })
        .collect()
}

/// The error code and message of a refused op (one reply, then close).
fn refused(agent: &Agent, op: ServiceOp) -> (AgentErrorCode, String) {
    let got = replies(agent, op);
    match got.as_slice() {
        [Reply::Error { code, message }] => (*code, message.clone()),
        other => panic!("expected one error reply, got {other:?}"),
    }
}

/// The one reply of a non-streaming op.
fn one(agent: &Agent, op: ServiceOp) -> Reply {
    let mut got = replies(agent, op);
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

fn put(agent: &Agent, name: &str, spec: ServiceSpec, stream_ms: u64) -> Vec<ServiceEvent> {
    events(
        agent,
        ServiceOp::Put {
            name: name.into(),
            spec,
            stream_ms,
        },
    )
}

fn try_get(agent: &Agent, name: &str) -> Option<Service> {
    match one(agent, ServiceOp::Get { name: name.into() }) {
        Reply::Service { service } => Some(*service),
        Reply::Error {
            code: AgentErrorCode::NotFound,
            ..
        } => None,
        other => panic!("unexpected {other:?}"),
    }
}

fn get(agent: &Agent, name: &str) -> Service {
    try_get(agent, name).unwrap_or_else(|| panic!("no service {name}"))
}

fn status(agent: &Agent, name: &str) -> String {
    get(agent, name).state.expect("state").status
}

fn pid_of(agent: &Agent, name: &str) -> i32 {
    get(agent, name)
        .state
        .and_then(|s| s.pid)
        .unwrap_or_else(|| panic!("{name} has no pid"))
}

fn list(agent: &Agent) -> Vec<Service> {
    match one(agent, ServiceOp::List) {
        Reply::Services { services } => services,
        other => panic!("unexpected {other:?}"),
    }
}

fn logs(agent: &Agent, name: &str, lines: usize) -> String {
    match one(
        agent,
        ServiceOp::Logs {
            name: name.into(),
            lines,
        },
    ) {
        Reply::Logs { text, .. } => text,
        other => panic!("unexpected {other:?}"),
    }
}

fn stop(agent: &Agent, name: &str, timeout_ms: u64) -> Vec<ServiceEvent> {
    events(
        agent,
        ServiceOp::Stop {
            name: name.into(),
            timeout_ms,
        },
    )
}

fn kinds(events: &[ServiceEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn running(agent: &Agent, name: &str) -> bool {
    try_get(agent, name)
        .and_then(|s| s.state)
        .is_some_and(|s| s.status == "running")
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn gone(pid: i32) -> bool {
    eventually(Duration::from_secs(10), || (!alive(pid)).then_some(())).is_some()
}

/// CPU time (user + system) of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    let at = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0u64)
    };
    at(14) + at(15)
}

fn ping_time(agent: &Agent) -> Duration {
    let t = Instant::now();
    let mut c = agent.request(&Request::Ping);
    assert!(matches!(c.reply(), Reply::Pong { .. }));
    t.elapsed()
}

#[test]
fn create_streams_output_then_completes() {
    let agent = Agent::start();
    let evs = put(
        &agent,
        "web",
        // The pause orders the lines: the two pipes are read side by side.
        sh("echo hello; sleep 0.3; echo oops >&2; exec sleep 300"),
        1000,
    );
    assert_eq!(
        kinds(&evs),
        ["started", "stdout", "stderr", "complete"],
        "{evs:?}"
    );
    let pid = pid_of(&agent, "web");
    assert_eq!(evs[0].data.as_deref(), Some(format!("pid {pid}").as_str()));
    let files = evs[0].log_files.clone().expect("log_files in started");
    assert!(files["stdout"].ends_with("/logs/web.log"), "{files:?}");
    assert_eq!(evs[3].log_files.as_ref(), Some(&files));
    assert_eq!(evs[1].data.as_deref(), Some("hello\n"));
    assert_eq!(evs[2].data.as_deref(), Some("oops\n"));
    assert!(evs.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert!(evs[0].timestamp > 1_600_000_000_000, "milliseconds");

    let svc = get(&agent, "web");
    assert_eq!(svc.cmd, "sh");
    let st = svc.state.expect("state");
    assert_eq!(st.status, "running");
    assert_eq!(st.restart_count, 0);
    assert!(st.started_at.is_some() && st.error.is_none() && st.next_restart_at.is_none());
    assert_eq!(list(&agent).len(), 1);

    let log = logs(&agent, "web", 100);
    assert!(log.contains("hello\n") && log.contains("oops\n"), "{log}");
    assert!(
        log.contains(&format!("[sprite] started (pid {pid})")),
        "{log}"
    );
    assert_eq!(logs(&agent, "web", 1), "oops\n");
    assert!(std::path::Path::new(&files["stdout"]).is_file());
}

#[test]
fn a_run_that_ends_in_the_window_shows_its_exit() {
    let agent = Agent::start();
    let t = Instant::now();
    let evs = put(&agent, "once", sh("echo bye; exit 3"), 20_000);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the exit ends the stream"
    );
    assert_eq!(
        kinds(&evs),
        ["started", "stdout", "exit", "complete"],
        "{evs:?}"
    );
    assert_eq!(evs[1].data.as_deref(), Some("bye\n"));
    assert_eq!(evs[2].exit_code, Some(3));
    // Any exit that was not asked for is a crash: restarted with backoff.
    let st = eventually(Duration::from_secs(5), || {
        get(&agent, "once").state.filter(|s| s.error.is_some())
    })
    .expect("state after the exit");
    assert_eq!(st.error.as_deref(), Some("exited with code 3"));
}

#[test]
fn lifecycle_start_stop_signal_restart_delete() {
    let agent = Agent::start();
    let script = "trap 'echo got-hup' HUP; echo ready; while :; do sleep 0.1; done";
    let evs = put(&agent, "svc", sh(script), 1000);
    assert_eq!(kinds(&evs), ["started", "stdout", "complete"], "{evs:?}");
    let pid = pid_of(&agent, "svc");

    // Start of a running service: nothing restarts; the stream says so.
    let evs = events(
        &agent,
        ServiceOp::Start {
            name: "svc".into(),
            stream_ms: 0,
        },
    );
    assert_eq!(kinds(&evs), ["started", "complete"]);
    assert_eq!(
        evs[0].data.as_deref(),
        Some(format!("already running (pid {pid})").as_str())
    );
    assert_eq!(pid_of(&agent, "svc"), pid);

    let signal = |name: &str, sig: &str| {
        replies(
            &agent,
            ServiceOp::Signal {
                name: name.into(),
                signal: sig.into(),
            },
        )
    };
    assert_eq!(signal("svc", "SIGHUP"), [Reply::Done]);
    assert!(
        eventually(Duration::from_secs(5), || logs(&agent, "svc", 10)
            .contains("got-hup")
            .then_some(()))
        .is_some(),
        "HUP reached the service"
    );
    assert_eq!(signal("svc", "HUP"), [Reply::Done]);
    let code = |r: Vec<Reply>| match r.as_slice() {
        [Reply::Error { code, .. }] => *code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(signal("svc", "SIGNOPE")), AgentErrorCode::BadRequest);
    assert_eq!(code(signal("ghost", "HUP")), AgentErrorCode::NotFound);

    let evs = stop(&agent, "svc", 5000);
    assert_eq!(kinds(&evs), ["stopping", "stopped", "complete"], "{evs:?}");
    assert_eq!(evs[1].exit_code, Some(143), "SIGTERM: 128 + 15");
    assert!(gone(pid));
    let st = get(&agent, "svc").state.expect("state");
    assert_eq!((st.status.as_str(), st.pid), ("stopped", None));
    let (c, m) = refused(
        &agent,
        ServiceOp::Stop {
            name: "svc".into(),
            timeout_ms: 0,
        },
    );
    assert_eq!(c, AgentErrorCode::Conflict, "{m}");
    assert_eq!(code(signal("svc", "HUP")), AgentErrorCode::Conflict);
    assert!(logs(&agent, "svc", 5).contains("[sprite] stopped (exit code 143)"));

    // Restart of a stopped service starts it; of a running one replaces it.
    let evs = events(
        &agent,
        ServiceOp::Restart {
            name: "svc".into(),
            timeout_ms: 0,
            stream_ms: 0,
        },
    );
    assert_eq!(kinds(&evs), ["started", "complete"], "{evs:?}");
    let pid2 = pid_of(&agent, "svc");
    // Its `ready` first: printed during the next restart's window, it would
    // be streamed as that restart's output.
    let readies = || {
        logs(&agent, "svc", 50)
            .lines()
            .filter(|l| *l == "ready")
            .count()
    };
    assert!(
        eventually(Duration::from_secs(5), || (readies() >= 2).then_some(())).is_some(),
        "the restarted service said ready"
    );
    let evs = events(
        &agent,
        ServiceOp::Restart {
            name: "svc".into(),
            timeout_ms: 2000,
            stream_ms: 500,
        },
    );
    assert_eq!(
        kinds(&evs),
        ["stopping", "stopped", "started", "stdout", "complete"],
        "{evs:?}"
    );
    assert!(gone(pid2));
    let pid3 = pid_of(&agent, "svc");
    assert_ne!(pid3, pid2);

    let log_path = evs[2].log_files.as_ref().expect("log_files")["stdout"].clone();
    assert_eq!(
        one(&agent, ServiceOp::Delete { name: "svc".into() }),
        Reply::Done
    );
    assert!(gone(pid3), "delete stops the service");
    assert!(try_get(&agent, "svc").is_none());
    assert!(!Path::new(&log_path).exists(), "its log goes with it");
    let (c, _) = refused(&agent, ServiceOp::Delete { name: "svc".into() });
    assert_eq!(c, AgentErrorCode::NotFound);
    let (c, _) = refused(
        &agent,
        ServiceOp::Logs {
            name: "svc".into(),
            lines: 1,
        },
    );
    assert_eq!(c, AgentErrorCode::NotFound);
    let (c, _) = refused(
        &agent,
        ServiceOp::Start {
            name: "svc".into(),
            stream_ms: 0,
        },
    );
    assert_eq!(c, AgentErrorCode::NotFound);
    assert!(list(&agent).is_empty());
}

#[test]
fn put_replaces_a_running_service() {
    let agent = Agent::start();
    put(&agent, "app", spec("sleep", &["300"]), 0);
    let old = pid_of(&agent, "app");
    let evs = put(&agent, "app", sh("echo v2; exec sleep 300"), 1000);
    assert_eq!(
        kinds(&evs),
        ["stopping", "stopped", "started", "stdout", "complete"],
        "{evs:?}"
    );
    assert_eq!(evs[1].exit_code, Some(143));
    assert_eq!(evs[3].data.as_deref(), Some("v2\n"));
    assert!(gone(old));
    assert_eq!(get(&agent, "app").cmd, "sh");
}

#[test]
fn environment_and_working_directory() {
    let agent = Agent::start();
    let mut s = sh("echo \"foo=$FOO\"; pwd; exec sleep 300");
    s.env = BTreeMap::from([("FOO".to_string(), "bar baz".to_string())]);
    s.dir = Some("/tmp".into());
    let evs = put(&agent, "env", s, 1000);
    let out: Vec<&str> = evs
        .iter()
        .filter(|e| e.kind == "stdout")
        .filter_map(|e| e.data.as_deref())
        .collect();
    assert_eq!(out, ["foo=bar baz\n", "/tmp\n"], "{evs:?}");
}

#[test]
fn bad_definitions_are_refused() {
    let agent = Agent::start();
    let put_op = |name: &str, spec: ServiceSpec| ServiceOp::Put {
        name: name.into(),
        spec,
        stream_ms: 0,
    };
    let (c, m) = refused(&agent, put_op("../x", spec("sleep", &["1"])));
    assert_eq!(c, AgentErrorCode::BadRequest, "{m}");
    let (c, m) = refused(&agent, put_op("x", spec("", &[])));
    assert_eq!(c, AgentErrorCode::BadRequest, "{m}");
    let (c, m) = refused(
        &agent,
        put_op("x", needing(spec("sleep", &["1"]), &["nope"])),
    );
    assert_eq!(c, AgentErrorCode::BadRequest, "{m}");
    assert!(m.contains("nope"), "{m}");
    let (c, _) = refused(&agent, put_op("x", needing(spec("sleep", &["1"]), &["x"])));
    assert_eq!(c, AgentErrorCode::BadRequest);
    assert!(list(&agent).is_empty(), "nothing refused was kept");

    put(&agent, "db", spec("sleep", &["300"]), 0);
    put(&agent, "api", needing(spec("sleep", &["300"]), &["db"]), 0);
    let (c, m) = refused(
        &agent,
        put_op("db", needing(spec("sleep", &["300"]), &["api"])),
    );
    assert_eq!(
        (c, m.as_str()),
        (
            AgentErrorCode::BadRequest,
            "needs would form a cycle: db -> api -> db"
        )
    );
    let (c, m) = refused(&agent, ServiceOp::Delete { name: "db".into() });
    assert_eq!(c, AgentErrorCode::Conflict, "{m}");
    assert!(m.contains("api"), "{m}");

    // One service with an http_port at most.
    let mut web = spec("sleep", &["300"]);
    web.http_port = Some(8080);
    put(&agent, "web", web.clone(), 0);
    put(&agent, "web", web.clone(), 0);
    let mut other = web.clone();
    other.http_port = Some(9090);
    let (c, m) = refused(&agent, put_op("web2", other));
    assert_eq!(c, AgentErrorCode::Conflict, "{m}");
    assert!(try_get(&agent, "web2").is_none());
    assert_eq!(get(&agent, "web").http_port, Some(8080));
}

#[test]
fn a_missing_command_fails_and_is_retried() {
    let agent = Agent::start();
    let evs = put(&agent, "ghost", spec("no-such-command-xyz", &[]), 2000);
    assert_eq!(kinds(&evs), ["error"], "{evs:?}");
    let msg = evs[0].data.clone().unwrap_or_default();
    assert!(msg.contains("command not found"), "{msg}");
    let st = get(&agent, "ghost").state.expect("state");
    assert_eq!(st.status, "failed");
    assert!(st.error.as_deref().unwrap_or("").contains("not found"));
    assert!(st.next_restart_at.is_some());
    // A retry bumps the count, then is `starting` for the instant its
    // launch takes: wait for it to have failed again.
    let st = eventually(Duration::from_secs(5), || {
        get(&agent, "ghost")
            .state
            .filter(|s| s.restart_count >= 1 && s.status != "starting")
    })
    .expect("retried");
    assert_eq!(st.status, "failed");
    assert!(logs(&agent, "ghost", 10).contains("failed to start: no-such-command-xyz"));

    // A missing working directory fails the same way.
    let mut nodir = spec("sleep", &["300"]);
    nodir.dir = Some("/no/such/dir".into());
    let evs = put(&agent, "nodir", nodir, 0);
    assert_eq!(kinds(&evs), ["error"], "{evs:?}");
    assert_eq!(status(&agent, "nodir"), "failed");
}

#[test]
fn a_crash_is_restarted_with_growing_delays() {
    let agent = Agent::start();
    let evs = put(&agent, "crash", sh("echo run; exit 1"), 5000);
    assert_eq!(kinds(&evs), ["started", "stdout", "exit", "complete"]);
    let count = || get(&agent, "crash").state.expect("state").restart_count;
    let first = eventually(Duration::from_secs(5), || (count() >= 1).then(Instant::now))
        .expect("first restart");
    let second = eventually(Duration::from_secs(8), || (count() >= 2).then(Instant::now))
        .expect("second restart");
    let gap = second - first;
    assert!(
        gap >= Duration::from_millis(1500) && gap <= Duration::from_millis(3500),
        "the second delay is about 2 s: {gap:?}"
    );
    // Between runs: failed, with why and when it runs again.
    let st = eventually(Duration::from_secs(5), || {
        get(&agent, "crash").state.filter(|s| s.status == "failed")
    })
    .expect("failed between runs");
    assert_eq!(st.error.as_deref(), Some("exited with code 1"));
    assert!(st.next_restart_at.is_some() && st.pid.is_none());
    let log = logs(&agent, "crash", 100);
    assert!(log.matches("run\n").count() >= 3, "{log}");
    assert!(
        log.contains("restarting in 1s") && log.contains("restarting in 2s"),
        "{log}"
    );
    // A later put starts over: no pending restart, count back to 0.
    put(&agent, "crash", spec("sleep", &["300"]), 0);
    let st = get(&agent, "crash").state.expect("state");
    assert_eq!((st.status.as_str(), st.restart_count), ("running", 0));
    assert!(st.next_restart_at.is_none() && st.error.is_none());
}

#[test]
fn a_crash_loop_costs_little_and_leaves_the_agent_alone() {
    let agent = Agent::start();
    // Crashes at once, and leaves a child behind each time.
    put(&agent, "loop", sh("sleep 300 & exit 1"), 0);
    let ticks_before = cpu_ticks(agent.pid());
    let rss_before = agent.rss_kib();
    std::thread::sleep(Duration::from_secs(8));
    let st = get(&agent, "loop").state.expect("state");
    // Restarts at ~1 s, ~3 s, ~7 s.
    assert!(
        (2..=4).contains(&st.restart_count),
        "restart_count {}",
        st.restart_count
    );
    let ticks = cpu_ticks(agent.pid()) - ticks_before;
    assert!(ticks < 100, "the agent used {ticks} ticks in 8 s");
    assert!(agent.rss_kib() < rss_before + 4096, "agent memory grew");
    assert!(ping_time(&agent) < Duration::from_millis(500));
    // Nothing of the earlier runs is left: their `sleep` children were
    // ended with them.
    let leftovers = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(") ")?.1.to_string();
                    let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
                    Some(ppid == agent.pid() && !rest.starts_with('Z'))
                })
                .unwrap_or(false)
        })
        .count();
    assert!(leftovers <= 2, "{leftovers} children of the agent remain");
}

#[test]
fn a_chatty_service_cannot_fill_the_volume() {
    let agent = Agent::start();
    let evs = put(
        &agent,
        "chatty",
        spec("yes", &["spam spam spam spam spam spam"]),
        0,
    );
    let log = std::path::PathBuf::from(&evs[0].log_files.as_ref().expect("files")["stdout"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        ping_time(&agent) < Duration::from_secs(1),
        "agent stays responsive"
    );
    let text = logs(&agent, "chatty", 3);
    assert_eq!(text.lines().count(), 3, "{text}");
    let evs = stop(&agent, "chatty", 2000);
    assert_eq!(kinds(&evs).last(), Some(&"complete"));
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let rotated = log.with_extension("log.1");
    assert!(size(&rotated) > 0, "the log was rotated");
    let total = size(&log) + size(&rotated);
    assert!(total <= 4 * 1024 * 1024 + 64 * 1024, "{total} bytes of log");
}

#[test]
fn boot_starts_services_in_needs_order() {
    let state = TempDir::new("state");
    let agent = Agent::start_with_state(state.path());
    // Names sort the other way round from the order the needs ask for.
    put(&agent, "c-db", spec("sleep", &["300"]), 0);
    put(
        &agent,
        "b-api",
        needing(spec("sleep", &["300"]), &["c-db"]),
        0,
    );
    put(
        &agent,
        "a-web",
        needing(spec("sleep", &["300"]), &["b-api"]),
        0,
    );
    let old: Vec<i32> = ["a-web", "b-api", "c-db"]
        .iter()
        .map(|n| pid_of(&agent, n))
        .collect();
    // A clean agent stop ends services without marking them stopped.
    drop(agent);
    for pid in old {
        assert!(gone(pid), "services end with the agent");
    }
    // A definition written by hand with a need that does not exist.
    std::fs::write(
        state.path().join("services/e-orphan.json"),
        r#"{"name":"e-orphan","cmd":"sleep","args":["300"],"needs":["ghost"]}"#,
    )
    .expect("write definition");

    let agent = Agent::start_with_state(state.path());
    let names = ["c-db", "b-api", "a-web", "e-orphan"];
    // Service calls wait for boot to have started them: no polling.
    for n in names {
        assert!(running(&agent, n), "{n} runs after boot");
    }
    let pids: Vec<i32> = names.iter().map(|n| pid_of(&agent, n)).collect();
    assert!(
        pids[0] < pids[1] && pids[1] < pids[2],
        "c-db, then b-api, then a-web: {pids:?}"
    );
    let log = logs(&agent, "e-orphan", 10);
    assert!(
        log.contains("needs \"ghost\", which is not defined; starting anyway"),
        "{log}"
    );
}

#[test]
fn stop_is_sticky_across_an_agent_kill() {
    let state = TempDir::new("state");
    let agent = Agent::start_with_state(state.path());
    put(&agent, "keep", spec("sleep", &["300"]), 0);
    put(&agent, "halt", spec("sleep", &["300"]), 0);
    let evs = stop(&agent, "halt", 2000);
    assert_eq!(kinds(&evs), ["stopping", "stopped", "complete"]);
    let keep = pid_of(&agent, "keep");
    agent.kill();
    // In a sprite the whole container goes with its PID 1; here the orphan
    // is ended by hand.
    let _ = killpg(Pid::from_raw(keep), Signal::SIGKILL);
    assert!(gone(keep));

    let agent = Agent::start_with_state(state.path());
    assert!(running(&agent, "keep"), "keep starts again at boot");
    assert_ne!(pid_of(&agent, "keep"), keep);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&agent, "halt"), "stopped");
    let (c, _) = refused(
        &agent,
        ServiceOp::Stop {
            name: "halt".into(),
            timeout_ms: 0,
        },
    );
    assert_eq!(c, AgentErrorCode::Conflict);

    // Start clears the mark, for the next boot too.
    let evs = events(
        &agent,
        ServiceOp::Start {
            name: "halt".into(),
            stream_ms: 0,
        },
    );
    assert_eq!(kinds(&evs), ["started", "complete"]);
    drop(agent);
    let agent = Agent::start_with_state(state.path());
    assert!(running(&agent, "halt"), "halt starts at boot now");
}

#[test]
fn boot_with_many_services_answers_at_once() {
    let state = TempDir::new("state");
    let dir = state.path().join("services");
    std::fs::create_dir_all(&dir).expect("services dir");
    let n = 40;
    for i in 0..n {
        let needs = if i > 0 {
            format!(r#","needs":["s{:02}"]"#, i - 1)
        } else {
            String::new()
        };
        std::fs::write(
            dir.join(format!("s{i:02}.json")),
            format!(r#"{{"name":"s{i:02}","cmd":"sleep","args":["300"]{needs}}}"#),
        )
        .expect("definition");
    }
    let t = Instant::now();
    let agent = Agent::start_with_state(state.path());
    let ping = ping_time(&agent);
    assert!(
        ping < Duration::from_millis(500),
        "first ping took {ping:?}"
    );
    // The first list waits for boot: every service is running by then.
    let all = list(&agent);
    assert_eq!(all.len(), n);
    for s in &all {
        let st = s.state.as_ref().expect("state");
        assert_eq!(st.status, "running", "{}", s.name);
    }
    let rss = agent.rss_kib();
    eprintln!(
        "{n} chained services running {:?} after the agent started; agent RSS {rss} KiB",
        t.elapsed()
    );
    assert!(rss < 32 * 1024, "agent RSS {rss} KiB with {n} services");
}
