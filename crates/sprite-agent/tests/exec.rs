//! Exec over the agent protocol: output, exit codes, stdin, environment,
//! users, terminals, signals.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{cmd, sh, Agent};
use sprites_api::agent::{
    AgentErrorCode, Control, ExecRequest, Reply, Request, SessionStarted, STDIN, STDIN_EOF,
};

#[test]
fn echo_round_trip() {
    let agent = Agent::start();
    let run = agent.run(cmd(&["echo", "hello", "world"]));
    match &run.info {
        Reply::SessionInfo(SessionStarted {
            session_id,
            command,
            is_owner,
            tty,
            ..
        }) => {
            assert!(*session_id > 0);
            assert_eq!(command, "echo hello world");
            assert!(*is_owner);
            assert!(!*tty);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(run.out(), "hello world\n");
    assert_eq!(run.exit, Some(0));
    assert!(!run.after_exit);
}

#[test]
fn every_fast_command_delivers_output_before_exit() {
    let agent = Agent::start();
    for i in 0..200 {
        let run = agent.run(cmd(&["echo", "x"]));
        assert_eq!(run.out(), "x\n", "run {i}");
        assert_eq!(run.exit, Some(0), "run {i}");
        assert!(!run.after_exit, "run {i}");
    }
}

#[test]
fn fast_tty_commands_deliver_output_before_exit() {
    let agent = Agent::start();
    for i in 0..50 {
        let run = agent.run(ExecRequest {
            tty: true,
            ..cmd(&["echo", "x"])
        });
        assert_eq!(run.out(), "x\r\n", "run {i}");
        assert_eq!(run.exit, Some(0), "run {i}");
    }
}

#[test]
fn stderr_is_separate_and_exit_codes_pass_through() {
    let agent = Agent::start();
    let run = agent.run(sh("echo out; echo err >&2; exit 3"));
    assert_eq!(run.out(), "out\n");
    assert_eq!(run.err(), "err\n");
    assert_eq!(run.exit, Some(3));

    let run = agent.run(sh("kill -9 $$"));
    assert_eq!(run.exit, Some(128 + 9));
    let run = agent.run(sh("kill -TERM $$"));
    assert_eq!(run.exit, Some(128 + 15));
}

#[test]
fn missing_and_unrunnable_commands_behave_like_a_shell() {
    let agent = Agent::start();
    let run = agent.run(cmd(&["no-such-command-xyz", "arg"]));
    assert_eq!(run.exit, Some(127));
    assert_eq!(run.err(), "no-such-command-xyz: command not found\n");

    let dir = common::TempDir::new("noexec");
    let script = dir.path().join("script");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").expect("write");
    let run = agent.run(cmd(&[script.to_str().expect("utf8")]));
    assert_eq!(run.exit, Some(126));
    assert!(run.err().contains("Permission denied"), "{}", run.err());
}

#[test]
fn stdin_is_null_unless_asked_for() {
    let agent = Agent::start();
    // Without stdin the command reads EOF at once rather than hanging.
    let run = agent.run(cmd(&["cat"]));
    assert_eq!(run.out(), "");
    assert_eq!(run.exit, Some(0));

    let mut c = agent.request(&Request::Exec(ExecRequest {
        stdin: true,
        ..cmd(&["cat"])
    }));
    c.session_info();
    c.send_frame(STDIN, b"piped ");
    c.send_frame(STDIN, b"input");
    c.send_frame(STDIN_EOF, b"");
    let mut run = common::Run {
        info: Reply::Killed,
        stdout: Vec::new(),
        stderr: Vec::new(),
        exit: None,
        after_exit: false,
    };
    c.collect_output(&mut run);
    assert_eq!(run.out(), "piped input");
    assert_eq!(run.exit, Some(0));
}

/// xorshift64: deterministic bytes to stream.
struct Gen(u64);
impl Gen {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

fn fnv(hash: &mut u64, data: &[u8]) {
    for b in data {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x100000001b3);
    }
}

#[test]
fn large_stdin_streams_through_with_flat_memory() {
    const TOTAL: usize = 50 * 1024 * 1024;
    const FRAME: usize = 256 * 1024;
    let agent = Agent::start();
    let mut c = agent.request(&Request::Exec(ExecRequest {
        stdin: true,
        ..cmd(&["cat"])
    }));
    c.session_info();

    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), agent.pid());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(sprites_test_support::rss_kib(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let mut w = c.0.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let mut buf = vec![0u8; FRAME];
        let mut sent = 0;
        while sent < TOTAL {
            let n = FRAME.min(TOTAL - sent);
            g.fill(&mut buf[..n]);
            fnv(&mut hash, &buf[..n]);
            w.write_all(&sprites_api::agent::frame(STDIN, &buf[..n]))
                .expect("stdin frame");
            sent += n;
        }
        w.write_all(&sprites_api::agent::frame(STDIN_EOF, b""))
            .expect("eof");
        hash
    });

    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut received = 0usize;
    let mut exit = None;
    while let Some((kind, d)) = c.frame() {
        match kind {
            sprites_api::agent::STDOUT => {
                received += d.len();
                fnv(&mut hash, &d);
            }
            sprites_api::agent::EXIT => {
                exit = Some(sprites_api::agent::parse_exit(&d).expect("exit"));
                break;
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    let sent_hash = writer.join().expect("writer");
    done.store(true, Ordering::SeqCst);
    sampler.join().expect("sampler");

    assert_eq!(exit, Some(0));
    assert_eq!(received, TOTAL);
    assert_eq!(hash, sent_hash);
    let peak_kib = peak.load(Ordering::SeqCst);
    eprintln!("agent RSS peak while streaming: {peak_kib} KiB");
    assert!(peak_kib > 0, "RSS was sampled");
    assert!(
        peak_kib < 20 * 1024,
        "agent RSS peaked at {peak_kib} KiB while streaming {TOTAL} bytes"
    );
}

#[test]
fn environment_and_directory() {
    let agent = Agent::start();
    let dir = common::TempDir::new("cwd");
    let run = agent.run(ExecRequest {
        env: vec!["FOO=bar baz".into(), "PATH=/usr/bin:/bin".into()],
        dir: Some(dir.path().to_string_lossy().into_owned()),
        ..sh("echo \"$FOO|$PATH|$USER|$(pwd -P)\"; [ -z \"$TERM\" ] && echo no-term")
    });
    let expected_dir = std::fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(
        run.out(),
        format!(
            "bar baz|/usr/bin:/bin|root|{}\nno-term\n",
            expected_dir.display()
        )
    );
    assert_eq!(run.exit, Some(0));

    let run = agent.run(ExecRequest {
        dir: Some("/no/such/dir/xyz".into()),
        ..cmd(&["true"])
    });
    match run.info {
        Reply::Error { code, .. } => assert_eq!(code, AgentErrorCode::BadRequest),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn runs_as_another_user() {
    let agent = Agent::start();
    let run = agent.run(ExecRequest {
        user: Some("65534".into()),
        ..sh("id -u; id -g; echo $HOME")
    });
    let out = run.out();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"65534"), "{out}");
    assert_eq!(lines.get(1), Some(&"65534"), "{out}");
    assert_eq!(run.exit, Some(0));

    let run = agent.run(ExecRequest {
        user: Some("no-such-user-xyz".into()),
        ..cmd(&["true"])
    });
    assert!(matches!(
        run.info,
        Reply::Error {
            code: AgentErrorCode::BadRequest,
            ..
        }
    ));
}

#[test]
fn tty_mode_has_a_terminal_of_the_requested_size() {
    let agent = Agent::start();
    let run = agent.run(ExecRequest {
        tty: true,
        rows: 33,
        cols: 111,
        ..sh("tty; stty size; echo $TERM")
    });
    let out = run.out();
    assert!(out.starts_with("/dev/pts/"), "{out}");
    assert!(out.contains("33 111\r\n"), "{out}");
    assert!(out.contains("xterm-256color"), "{out}");
    assert_eq!(run.exit, Some(0));
    assert!(matches!(
        run.info,
        Reply::SessionInfo(SessionStarted {
            tty: true,
            rows: 33,
            cols: 111,
            ..
        })
    ));
}

#[test]
fn resize_reaches_the_terminal() {
    let agent = Agent::start();
    let mut c = agent.request(&Request::Exec(ExecRequest {
        tty: true,
        stdin: true,
        rows: 30,
        cols: 100,
        ..sh("stty size; read x; stty size")
    }));
    c.session_info();
    c.read_until("30 100");
    c.send_json(&Control::Resize {
        cols: 132,
        rows: 50,
    });
    c.send_frame(STDIN, b"\r");
    let out = c.read_until("50 132");
    assert!(out.contains("50 132"));
    let mut run = common::Run {
        info: Reply::Killed,
        stdout: Vec::new(),
        stderr: Vec::new(),
        exit: None,
        after_exit: false,
    };
    c.collect_output(&mut run);
    assert_eq!(run.exit, Some(0));
}

#[test]
fn signal_control_reaches_the_process_group() {
    let agent = Agent::start();
    let mut c = agent.request(&Request::Exec(sh(
        "echo started; sleep 30; echo not reached",
    )));
    c.session_info();
    c.read_until("started");
    c.send_json(&Control::Signal {
        signal: "TERM".into(),
    });
    let mut run = common::Run {
        info: Reply::Killed,
        stdout: Vec::new(),
        stderr: Vec::new(),
        exit: None,
        after_exit: false,
    };
    c.collect_output(&mut run);
    assert_eq!(run.exit, Some(128 + 15));
    assert!(!run.out().contains("not reached"));
}

#[test]
fn background_holders_of_the_pipe_do_not_hold_the_exit() {
    let agent = Agent::start();
    let run = agent.run(sh("echo before; sleep 30 & echo \"after $!\""));
    let out = run.out();
    let holder: i32 = out
        .strip_prefix("before\nafter ")
        .and_then(|rest| rest.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {out:?}"));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_eq!(run.exit, Some(0));
}

/// The terminal's foreground job of `session` (a child in its own process
/// group that owns the terminal), once there is one.
fn foreground_job(session: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{session}/task/{session}/children")).ok()?;
    let child: u32 = children.split_whitespace().next()?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
    // After the command name: state ppid pgrp session tty_nr tpgid ...
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (pgrp, tpgid) = (fields.get(2)?, fields.get(5)?);
    (*pgrp == child.to_string() && tpgid == pgrp).then_some(child)
}

#[test]
fn tty_signals_reach_the_foreground_job() {
    let agent = Agent::start();
    let mut c = agent.request(&Request::Exec(ExecRequest {
        tty: true,
        ..sh("set -m; trap 'echo shell-got-int' INT; sleep 30; echo \"job-status $?\"")
    }));
    let (id, _) = c.session_info();
    let job = common::eventually(Duration::from_secs(20), || foreground_job(id));
    assert!(job.is_some(), "the job became the foreground group");
    c.send_json(&Control::Signal {
        signal: "SIGINT".into(),
    });
    let mut run = common::Run {
        info: Reply::Killed,
        stdout: Vec::new(),
        stderr: Vec::new(),
        exit: None,
        after_exit: false,
    };
    c.collect_output(&mut run);
    assert!(run.out().contains("job-status 130"), "{:?}", run.out());
    assert_eq!(run.exit, Some(0));
}
