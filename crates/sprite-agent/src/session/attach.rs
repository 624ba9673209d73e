//! A client attached to a session (after `exec` or `attach`): output and the
//! exit go one way, stdin and control frames the other.
//!
//! The two directions run side by side on the connection. The session is
//! left (detached, the command keeps running) when the client's side of the
//! connection ends or fails; the connection is closed right after `EXIT`.

use std::sync::Arc;
use std::time::SystemTime;

use sprites_api::agent::{
    Control, ExecRequest, Reply, SessionStarted, JSON, STDERR, STDIN, STDIN_EOF, STDOUT,
};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, Mutex};

use crate::log::log;
use crate::ports::{self, PortTable};
use crate::session::registry::{Sessions, StartError, Started};
use crate::session::signame;
use crate::session::{Attachment, Event, Session};
use crate::timestamp::rfc3339;
use crate::wire::{self, ReadError};

/// `exec`: start the command and stream it.
pub async fn exec(
    rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    sessions: &Arc<Sessions>,
    ports: &PortTable,
    req: ExecRequest,
) {
    match sessions.start(req.clone()).await {
        Ok(Started::Running(session, attachment)) => {
            serve(rd, wr, session, attachment, ports).await
        }
        Ok(Started::Failed { message, code }) => {
            let _ = report_failure(&mut wr, &req, &message, code).await;
        }
        Err(StartError::BadRequest(m)) => {
            let _ = wire::write_json(&mut wr, &wire::bad_request(m)).await;
        }
        Err(StartError::Internal(m)) => {
            log!("exec {:?}: {m}", req.cmd);
            let _ = wire::write_json(&mut wr, &wire::internal(m)).await;
        }
    }
}

/// `attach`: join an existing session.
pub async fn attach(
    rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    sessions: &Arc<Sessions>,
    ports: &PortTable,
    id: u32,
) {
    match sessions.get(id) {
        Some(session) => {
            let attachment = session.attach();
            serve(rd, wr, session, attachment, ports).await;
        }
        None => {
            let reply = wire::not_found(format!("no session {id}"));
            let _ = wire::write_json(&mut wr, &reply).await;
        }
    }
}

/// A command that could not start still answers like one that ran: a
/// `session_info` (id 0: there is no process), the shell's message, `EXIT`.
async fn report_failure(
    wr: &mut OwnedWriteHalf,
    req: &ExecRequest,
    message: &str,
    code: i32,
) -> std::io::Result<()> {
    let info = Reply::SessionInfo(SessionStarted {
        session_id: 0,
        command: req.cmd.join(" "),
        workdir: req.dir.clone().unwrap_or_default(),
        created: rfc3339(SystemTime::now()),
        cols: req.cols,
        rows: req.rows,
        is_owner: true,
        tty: req.tty,
    });
    wire::write_json(wr, &info).await?;
    if req.tty {
        let text = message.replace('\n', "\r\n");
        wire::write_frame(wr, STDOUT, text.as_bytes()).await?;
    } else {
        wire::write_frame(wr, STDERR, message.as_bytes()).await?;
    }
    wire::write_exit(wr, code).await
}

async fn serve(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    session: Arc<Session>,
    att: Attachment,
    ports: &PortTable,
) {
    let client = att.client;
    if wire::write_json(&mut wr, &session.info_reply(att.is_owner))
        .await
        .is_ok()
    {
        let writer = Mutex::new(wr);
        // Port events stop with the output: none follows the exit.
        tokio::select! {
            _ = deliver(&writer, att.backlog, att.live) => {}
            _ = receive(&mut rd, &session, &writer) => {}
            _ = announce_ports(&writer, session.id, ports) => {}
        }
    }
    session.detach(client);
}

/// How long a session runs before its ports are first looked at.
const FIRST_LOOK: std::time::Duration = std::time::Duration::from_millis(100);

/// `port_opened` and `port_closed` for the ports the session's processes
/// listen on, while the client is attached; ends only if writing fails.
/// The first look is [`FIRST_LOOK`] in: a command that is over by then
/// (most are) costs no read of the socket tables, and one that listens
/// sooner is still reported at that first read.
async fn announce_ports(writer: &Mutex<OwnedWriteHalf>, leader: u32, ports: &PortTable) {
    tokio::time::sleep(FIRST_LOOK).await;
    let mut rx = ports.subscribe();
    let mut reported = Vec::new();
    while let Some(now) = ports::next(&mut rx).await {
        for event in ports::session_events(leader, &mut reported, &now) {
            let mut w = writer.lock().await;
            if wire::write_json(&mut *w, &event).await.is_err() {
                return;
            }
        }
    }
    std::future::pending::<()>().await
}

/// Send the replay, then live output, until `EXIT` is sent or writing fails.
async fn deliver(
    writer: &Mutex<OwnedWriteHalf>,
    backlog: Vec<Event>,
    live: Option<mpsc::Receiver<Event>>,
) {
    for event in backlog {
        match send(writer, event).await {
            Ok(false) => {}
            _ => return,
        }
    }
    let Some(mut live) = live else {
        return;
    };
    while let Some(event) = live.recv().await {
        match send(writer, event).await {
            Ok(false) => {}
            _ => return,
        }
    }
}

/// Write one event; `Ok(true)` once the exit went out.
async fn send(writer: &Mutex<OwnedWriteHalf>, event: Event) -> std::io::Result<bool> {
    let mut w = writer.lock().await;
    match event {
        Event::Output(chunk) => {
            wire::write_frame(&mut *w, chunk.stream, &chunk.data).await?;
            Ok(false)
        }
        Event::Exit(code) => {
            wire::write_exit(&mut *w, code).await?;
            Ok(true)
        }
    }
}

/// Apply the client's frames until its side ends or it sends garbage.
async fn receive(rd: &mut OwnedReadHalf, session: &Session, writer: &Mutex<OwnedWriteHalf>) {
    loop {
        let frame = match wire::read_frame(rd).await {
            Ok(Some(f)) => f,
            Ok(None) | Err(ReadError::Broken) => return,
            Err(ReadError::Malformed(m)) => return refuse(writer, m).await,
        };
        match frame.kind {
            STDIN => session.write_input(&frame.payload).await,
            STDIN_EOF => session.close_input().await,
            JSON => match serde_json::from_slice::<Control>(&frame.payload) {
                Ok(Control::Resize { cols, rows }) => {
                    if let Err(e) = session.resize(rows, cols) {
                        log!("session {}: resize: {e}", session.id);
                    }
                }
                Ok(Control::Signal { signal }) => match signame::parse(&signal) {
                    Ok(sig) => {
                        if let Err(e) = session.signal(sig) {
                            log!("session {}: {sig}: {e}", session.id);
                        }
                    }
                    Err(m) => log!("session {}: {m}", session.id),
                },
                Err(e) => return refuse(writer, format!("bad control frame: {e}")).await,
            },
            other => return refuse(writer, format!("unexpected frame kind {other:#04x}")).await,
        }
    }
}

async fn refuse(writer: &Mutex<OwnedWriteHalf>, message: String) {
    let mut w = writer.lock().await;
    let _ = wire::write_json(&mut *w, &wire::bad_request(message)).await;
}
