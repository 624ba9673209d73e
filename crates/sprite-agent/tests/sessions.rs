//! Sessions: listing, detach and re-attach with scrollback, kill, the
//! disconnect limit, reaping of orphans.

mod common;

use std::time::Duration;

use common::{eventually, sh, Agent, Run};
use sprites_api::agent::{AgentErrorCode, ExecRequest, Reply, Request, STDOUT};

const PATIENCE: Duration = Duration::from_secs(20);

fn empty_run() -> Run {
    Run {
        info: Reply::Killed,
        stdout: Vec::new(),
        stderr: Vec::new(),
        exit: None,
        after_exit: false,
    }
}

fn kill_events(agent: &Agent, id: u32, signal: &str, timeout_ms: u64) -> Vec<Reply> {
    let mut c = agent.request(&Request::Kill {
        id,
        signal: signal.into(),
        timeout_ms,
    });
    let mut events = Vec::new();
    while let Some((kind, body)) = c.frame() {
        assert_eq!(kind, sprites_api::agent::JSON);
        events.push(serde_json::from_slice(&body).expect("reply"));
    }
    events
}

#[test]
fn sessions_are_listed_while_they_run() {
    let agent = Agent::start();
    let mut c = agent.request(&Request::Exec(common::cmd(&["sleep", "30"])));
    let (id, _) = c.session_info();
    let list = agent.sessions();
    let s = list
        .iter()
        .find(|s| s.id == id.to_string())
        .expect("listed");
    assert_eq!(s.command, "sleep 30");
    assert!(s.is_active);
    assert!(!s.tty);
    assert!(s.created.ends_with('Z'), "{}", s.created);
    assert!(s.last_activity.is_some());

    let events = kill_events(&agent, id, "SIGTERM", 10_000);
    assert_eq!(
        events,
        vec![
            Reply::Signal {
                signal: "SIGTERM".into()
            },
            Reply::Exited { exit_code: 143 },
            Reply::Complete { exit_code: 143 },
        ]
    );
    let mut run = empty_run();
    c.collect_output(&mut run);
    assert_eq!(run.exit, Some(143));
    assert!(eventually(PATIENCE, || agent
        .sessions()
        .iter()
        .all(|s| s.id != id.to_string())
        .then_some(()))
    .is_some());
}

#[test]
fn kill_escalates_to_sigkill_and_unknown_ids_are_not_found() {
    let agent = Agent::start();
    let mut c = agent.request(&Request::Exec(sh("trap '' TERM; echo ready; sleep 30")));
    let (id, _) = c.session_info();
    c.read_until("ready");
    let events = kill_events(&agent, id, "TERM", 300);
    assert_eq!(
        events,
        vec![
            Reply::Signal {
                signal: "SIGTERM".into()
            },
            Reply::Killed,
            Reply::Complete { exit_code: 137 },
        ]
    );
    let mut run = empty_run();
    c.collect_output(&mut run);
    assert_eq!(run.exit, Some(137));
    // Killed again: it existed and has ended, which is not "unknown".
    assert_refused(&kill_events(&agent, id, "TERM", 100), AgentErrorCode::Gone);
    // And after the agent has forgotten the session, which it does as soon
    // as the exit is delivered.
    std::thread::sleep(Duration::from_millis(500));
    assert_refused(&kill_events(&agent, id, "TERM", 100), AgentErrorCode::Gone);

    assert_refused(
        &kill_events(&agent, 999_999_999, "TERM", 100),
        AgentErrorCode::NotFound,
    );
    let mut c = agent.request(&Request::Attach { id: 999_999_999 });
    assert!(matches!(
        c.reply(),
        Reply::Error {
            code: AgentErrorCode::NotFound,
            ..
        }
    ));
}

#[test]
fn tty_sessions_survive_detach_and_replay_scrollback() {
    let agent = Agent::start();
    let mut c = agent.request(&Request::Exec(ExecRequest {
        tty: true,
        stdin: true,
        ..sh("echo hello-scrollback; read line; echo got-$line; sleep 30")
    }));
    let (id, owner) = c.session_info();
    assert!(owner);
    c.read_until("hello-scrollback");
    drop(c);

    let detached = eventually(PATIENCE, || {
        agent
            .sessions()
            .into_iter()
            .find(|s| s.id == id.to_string() && !s.is_active)
    });
    assert!(detached.is_some(), "session stays, inactive");

    let mut a = agent.request(&Request::Attach { id });
    let (aid, a_owner) = a.session_info();
    assert_eq!(aid, id);
    assert!(a_owner, "the only client owns the session");
    a.read_until("hello-scrollback");

    let mut b = agent.request(&Request::Attach { id });
    let (_, b_owner) = b.session_info();
    assert!(!b_owner, "a second client is not the owner");
    b.read_until("hello-scrollback");

    // Input from an attached client reaches the command; both see output.
    a.send_frame(sprites_api::agent::STDIN, b"again\r");
    a.read_until("got-again");
    b.read_until("got-again");

    let events = kill_events(&agent, id, "SIGTERM", 10_000);
    assert_eq!(events.last(), Some(&Reply::Complete { exit_code: 143 }));
    for conn in [&mut a, &mut b] {
        let mut run = empty_run();
        conn.collect_output(&mut run);
        assert_eq!(run.exit, Some(143));
    }
}

#[test]
fn output_of_a_session_that_ended_while_detached_can_still_be_collected() {
    let agent = Agent::start();
    let dir = common::TempDir::new("trigger");
    let trigger = dir.path().join("go");
    let script = format!(
        "echo started; while [ ! -e '{}' ]; do sleep 0.02; done; echo done-late",
        trigger.display()
    );
    let mut c = agent.request(&Request::Exec(ExecRequest {
        tty: true,
        ..sh(&script)
    }));
    let (id, _) = c.session_info();
    c.read_until("started");
    drop(c);
    let detached = eventually(PATIENCE, || {
        agent
            .sessions()
            .into_iter()
            .find(|s| s.id == id.to_string() && !s.is_active)
    });
    assert!(detached.is_some(), "the session is detached");
    std::fs::write(&trigger, b"").expect("trigger");
    let ended = eventually(PATIENCE, || {
        agent
            .sessions()
            .iter()
            .all(|s| s.id != id.to_string())
            .then_some(())
    });
    assert!(ended.is_some(), "the session ends");
    let mut late = agent.request(&Request::Attach { id });
    late.session_info();
    let mut run = empty_run();
    late.collect_output(&mut run);
    assert!(run.out().contains("started"), "{:?}", run.out());
    assert!(run.out().contains("done-late"), "{:?}", run.out());
    assert_eq!(run.exit, Some(0));
}

#[test]
fn disconnect_limit_kills_detached_commands() {
    let agent = Agent::start();
    let mut c = agent.request(&Request::Exec(ExecRequest {
        max_run_after_disconnect_ms: Some(100),
        ..common::cmd(&["sleep", "30"])
    }));
    let (id, _) = c.session_info();
    drop(c);
    let gone = eventually(PATIENCE, || {
        agent
            .sessions()
            .iter()
            .all(|s| s.id != id.to_string())
            .then_some(())
    });
    assert!(gone.is_some(), "the detached command was killed");
    let mut late = agent.request(&Request::Attach { id });
    late.session_info();
    let mut run = empty_run();
    late.collect_output(&mut run);
    assert_eq!(run.exit, Some(137));
}

#[test]
fn orphaned_grandchildren_are_reaped() {
    let agent = Agent::start();
    let run = agent.run(sh("sleep 1 >/dev/null 2>&1 & echo $!"));
    assert_eq!(run.exit, Some(0));
    let pid: u32 = run.out().trim().parse().expect("pid");
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .map(|v| v.trim().to_string());
        assert_eq!(
            ppid,
            Some(agent.pid().to_string()),
            "reparented to the agent"
        );
    }
    let reaped = eventually(PATIENCE, || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    assert!(reaped.is_some(), "pid {pid} was left a zombie");
}

#[test]
fn kill_sees_the_exit_while_a_client_stalls_the_output() {
    let agent = Agent::start();
    // The client reads the first output, then no more: the rest backs up
    // into the command. (Killing before `yes` ran at all would leave no
    // output to check on a busy machine.)
    let mut c = agent.request(&Request::Exec(common::cmd(&["yes", "spam"])));
    let (id, _) = c.session_info();
    let mut run = empty_run();
    match c.frame() {
        Some((STDOUT, first)) => run.stdout = first,
        other => panic!("expected output first, got {other:?}"),
    }
    let events = kill_events(&agent, id, "SIGTERM", 20_000);
    assert_eq!(
        events,
        vec![
            Reply::Signal {
                signal: "SIGTERM".into()
            },
            Reply::Exited { exit_code: 143 },
            Reply::Complete { exit_code: 143 },
        ]
    );
    // The stalled client still gets all the output and then the exit.
    c.collect_output(&mut run);
    assert_eq!(run.exit, Some(143));
    assert!(run.out().starts_with("spam\nspam\n"));
}

/// `events` is the agent's refusal with `code`, alone.
fn assert_refused(events: &[Reply], code: AgentErrorCode) {
    assert!(
        matches!(events, [Reply::Error { code: c, .. }] if *c == code),
        "{events:?}"
    );
}
