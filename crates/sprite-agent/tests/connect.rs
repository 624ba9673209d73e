//! `connect`: the agent connects to a loopback port and carries the bytes
//! over the conversation, both ways, half-closes included; nothing listens
//! is `refused`; an address that is not loopback is refused outright.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};

use common::Agent;
use sprites_api::agent::{self, AgentErrorCode, Reply, Request};

fn connect(agent: &Agent, ip: &str, port: u16) -> (common::Conn, Reply) {
    let mut c = agent.request(&Request::Connect {
        ip: ip.parse().expect("ip"),
        port,
    });
    let reply = c.reply();
    (c, reply)
}

#[test]
fn bytes_go_both_ways_and_each_end_of_data_is_said() {
    let agent = Agent::start();
    let server = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = server.local_addr().expect("addr").port();
    let serving = std::thread::spawn(move || {
        let (mut s, _) = server.accept().expect("accept");
        s.write_all(b"greeting\n").expect("greet");
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .expect("read until the daemon's end");
        s.write_all(format!("got {} bytes", got.len()).as_bytes())
            .expect("answer after the half-close");
        s.shutdown(Shutdown::Write).expect("end");
        got
    });
    let (mut c, reply) = connect(&agent, "127.0.0.1", port);
    assert_eq!(reply, Reply::Done);
    assert_eq!(c.frame(), Some((agent::STDOUT, b"greeting\n".to_vec())));
    let big = vec![7u8; 3 << 20];
    for chunk in big.chunks(agent::MAX_FRAME) {
        c.send_frame(agent::STDIN, chunk);
    }
    c.send_frame(agent::STDIN_EOF, &[]);
    let mut answer = Vec::new();
    let exit = loop {
        match c.frame() {
            Some((agent::STDOUT, b)) => answer.extend_from_slice(&b),
            Some((agent::EXIT, b)) => break b,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        String::from_utf8_lossy(&answer),
        format!("got {} bytes", big.len())
    );
    assert_eq!(exit, agent::exit_frame(0)[agent::HEADER_LEN..].to_vec());
    assert_eq!(serving.join().expect("server"), big);
    assert!(c.frame().is_none(), "both ended: the agent closes");
    let _ = c.0.shutdown(Shutdown::Both);
}

#[test]
fn the_daemon_going_away_ends_the_connection() {
    let agent = Agent::start();
    let server = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = server.local_addr().expect("addr").port();
    let (c, reply) = connect(&agent, "127.0.0.1", port);
    assert_eq!(reply, Reply::Done);
    let (mut s, _) = server.accept().expect("accept");
    drop(c);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("the agent closed its side");
    assert!(rest.is_empty());
}

#[test]
fn nothing_listening_is_refused_and_only_loopback_is_reached() {
    let agent = Agent::start();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("listen");
        l.local_addr().expect("addr").port()
    };
    let (_, reply) = connect(&agent, "127.0.0.1", port);
    match reply {
        Reply::Error { code, .. } => assert_eq!(code, AgentErrorCode::Refused),
        other => panic!("{other:?}"),
    }
    let (_, reply) = connect(&agent, "10.0.0.1", 80);
    match reply {
        Reply::Error { code, message } => {
            assert_eq!(code, AgentErrorCode::BadRequest);
            assert!(message.contains("not a loopback"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
