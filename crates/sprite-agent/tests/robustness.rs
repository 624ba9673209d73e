//! Garbage on the socket gets an error and a closed connection, never a
//! dead agent.

mod common;

use common::{sh, Agent};
use sprites_api::agent::{AgentErrorCode, Reply, Request, JSON, STDIN};

fn assert_bad_request(reply: Reply) {
    match reply {
        Reply::Error { code, message } => {
            assert_eq!(code, AgentErrorCode::BadRequest);
            assert!(!message.is_empty());
        }
        other => panic!("expected bad_request, got {other:?}"),
    }
}

fn assert_alive(agent: &Agent) {
    let mut c = agent.request(&Request::Ping);
    assert_eq!(
        c.reply(),
        Reply::Pong {
            version: env!("CARGO_PKG_VERSION").into()
        }
    );
    assert!(c.frame().is_none(), "the agent closes after pong");
}

#[test]
fn bad_first_frames_get_bad_request() {
    let agent = Agent::start();

    let mut c = agent.connect();
    c.send_frame(JSON, b"{not json");
    assert_bad_request(c.reply());
    assert!(c.frame().is_none());

    let mut c = agent.connect();
    c.send_frame(JSON, br#"{"op":"launch_missiles"}"#);
    assert_bad_request(c.reply());

    let mut c = agent.connect();
    c.send_frame(STDIN, b"hello");
    assert_bad_request(c.reply());

    let mut c = agent.connect();
    let mut header = vec![JSON];
    header.extend_from_slice(&u32::MAX.to_be_bytes());
    std::io::Write::write_all(&mut c.0, &header).expect("send header");
    assert_bad_request(c.reply());

    let mut c = agent.request(&Request::Exec(common::cmd(&[])));
    assert_bad_request(c.reply());

    // A connection that goes away half way through a frame.
    let mut c = agent.connect();
    std::io::Write::write_all(&mut c.0, &[JSON, 0, 0]).expect("partial header");
    drop(c);

    assert_alive(&agent);
}

#[test]
fn bad_control_frames_detach_but_keep_the_session() {
    let agent = Agent::start();
    let mut c = agent.request(&Request::Exec(sh("echo up; sleep 30")));
    let (id, _) = c.session_info();
    c.read_until("up");
    c.send_frame(JSON, b"[1,2,3]");
    assert_bad_request(c.reply());
    assert!(c.frame().is_none(), "connection closed after the error");

    let listed = agent.sessions().into_iter().any(|s| s.id == id.to_string());
    assert!(listed, "the command keeps running");
    let mut k = agent.request(&Request::Kill {
        id,
        signal: "KILL".into(),
        timeout_ms: 10_000,
    });
    assert_eq!(
        k.reply(),
        Reply::Signal {
            signal: "SIGKILL".into()
        }
    );
    assert_eq!(k.reply(), Reply::Exited { exit_code: 137 });
    assert_eq!(k.reply(), Reply::Complete { exit_code: 137 });
    assert_alive(&agent);
}

#[test]
fn sessions_and_ping_answer_once_and_close() {
    let agent = Agent::start();
    let mut c = agent.request(&Request::Sessions);
    assert_eq!(c.reply(), Reply::Sessions { sessions: vec![] });
    assert!(c.frame().is_none());
    assert_alive(&agent);
}

#[test]
fn inherited_listener_is_used_and_not_leaked_to_commands() {
    let agent = Agent::start_inherited();
    assert_alive(&agent);
    for tty in [false, true] {
        // No shell: its own pipes would muddy the listing. `ls` adds one fd
        // of its own (the directory it reads).
        let run = agent.run(sprites_api::agent::ExecRequest {
            tty,
            ..common::cmd(&["ls", "-l", "/proc/self/fd/"])
        });
        assert_eq!(run.exit, Some(0));
        let out = run.out();
        let fds = out.lines().filter(|l| l.contains(" -> ")).count();
        assert_eq!(fds, 4, "only stdio and ls's own fd: {out}");
        assert!(!out.contains("socket:"), "{out}");
        assert!(!out.contains("anon_inode:"), "{out}");
    }
}

#[test]
fn a_name_is_refused_outside_a_sprite_and_the_hosts_file_is_left_alone() {
    let agent = Agent::start();
    let before = std::fs::read("/etc/hosts").ok();
    let host = nix::unistd::gethostname().expect("host name");
    let host = host.to_string_lossy().into_owned();
    for name in [host.as_str(), "not-this-host-name"] {
        let mut c = agent.request(&Request::Named {
            hostname: name.to_string(),
        });
        match c.reply() {
            Reply::Error { code, message } => {
                assert_eq!(code, AgentErrorCode::Conflict);
                assert!(message.contains("not a sprite's init"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read("/etc/hosts").ok(), before);
    assert_alive(&agent);
}
