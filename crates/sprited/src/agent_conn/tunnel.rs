//! `connect`: a connection to a port inside the sprite, made by its agent
//! and carried over the conversation in frames (see
//! [`sprites_api::agent::Request::Connect`]). The caller gets one end of
//! an in-memory pipe; a task carries the other end's bytes to and from
//! the agent.

use sprites_api::agent::Reply;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{unexpected, AgentError, Conversation, Frame};

/// The caller's end of a connection made by the agent.
pub type Tunnel = DuplexStream;

/// Bytes carried per frame (and the pipe's buffer).
const CHUNK: usize = 64 * 1024;

impl Conversation {
    /// The agent's answer to `connect`: `done`, then the connection. The
    /// conversation's hold (an activity) is let go: whoever uses the
    /// connection decides how long it keeps the sprite awake (a URL's
    /// pooled connection must not).
    pub async fn into_tunnel(mut self) -> Result<Tunnel, AgentError> {
        match self.reader.reply().await? {
            Reply::Done => {}
            Reply::Error { code, message } => return Err(AgentError::Refused { code, message }),
            other => return Err(unexpected(&other, "connect")),
        }
        self.reader._hold = None;
        let (ours, theirs) = tokio::io::duplex(CHUNK);
        tokio::spawn(carry(self, theirs));
        Ok(ours)
    }
}

/// Carry `end`'s bytes to the agent and the agent's into `end`, each end
/// of data said in a frame, until both directions have ended; the caller
/// dropping its end, or the agent going away, ends both.
async fn carry(conv: Conversation, end: DuplexStream) {
    let Conversation {
        mut reader,
        mut writer,
    } = conv;
    let (mut end_r, mut end_w) = tokio::io::split(end);
    // To the agent: `true` once the caller ended its data.
    let up = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match end_r.read(&mut buf).await {
                Ok(0) | Err(_) => return writer.send_eof().await.is_ok(),
                Ok(n) => {
                    if writer.send_stdin(&buf[..n]).await.is_err() {
                        return false;
                    }
                }
            }
        }
    };
    // From the agent: `true` once the server ended its data.
    let down = async {
        loop {
            match reader.next().await {
                Ok(Some(Frame::Stdout(b))) => {
                    if end_w.write_all(&b).await.is_err() {
                        return false;
                    }
                }
                Ok(Some(Frame::Exit(_))) => {
                    let _ = end_w.shutdown().await;
                    return true;
                }
                _ => {
                    let _ = end_w.shutdown().await;
                    return false;
                }
            }
        }
    };
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            ok = &mut up, if !up_done => {
                if !ok {
                    return;
                }
                up_done = true;
            }
            ok = &mut down, if !down_done => {
                if !ok {
                    return;
                }
                down_done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fake, read_frame};
    use super::*;
    use sprites_api::agent::{self, AgentErrorCode, Request};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn connect() -> Request {
        Request::Connect {
            ip: "127.0.0.1".parse().expect("ip"),
            port: 8080,
        }
    }

    #[tokio::test]
    async fn bytes_and_ends_of_data_go_both_ways_in_frames() {
        let (conv, mut agent) = fake(&connect()).await;
        // The server's greeting arrives with the answer, in one write.
        let mut first = agent::json_frame(&Reply::Done);
        first.extend_from_slice(&agent::frame(agent::STDOUT, b"220 hello\r\n"));
        agent.write_all(&first).await.expect("answer");
        let mut t = conv.into_tunnel().await.expect("connected");
        let mut got = [0u8; 11];
        t.read_exact(&mut got).await.expect("greeting");
        assert_eq!(&got, b"220 hello\r\n");
        t.write_all(b"QUIT\r\n").await.expect("write");
        t.shutdown().await.expect("half close");
        assert_eq!(
            read_frame(&mut agent).await,
            Some((agent::STDIN, b"QUIT\r\n".to_vec()))
        );
        assert_eq!(
            read_frame(&mut agent).await,
            Some((agent::STDIN_EOF, vec![]))
        );
        // The server still answers after the caller's end, then ends.
        agent
            .write_all(&agent::frame(agent::STDOUT, b"221 bye"))
            .await
            .expect("write");
        agent.write_all(&agent::exit_frame(0)).await.expect("exit");
        let mut rest = Vec::new();
        t.read_to_end(&mut rest).await.expect("rest");
        assert_eq!(rest, b"221 bye");
        // Both ended: the conversation is closed.
        drop(t);
        assert_eq!(read_frame(&mut agent).await, None);
    }

    #[tokio::test]
    async fn the_callers_drop_ends_the_conversation() {
        let (conv, mut agent) = fake(&connect()).await;
        agent
            .write_all(&agent::json_frame(&Reply::Done))
            .await
            .expect("answer");
        let t = conv.into_tunnel().await.expect("connected");
        drop(t);
        assert_eq!(
            read_frame(&mut agent).await,
            Some((agent::STDIN_EOF, vec![]))
        );
        agent
            .write_all(&agent::frame(agent::STDOUT, b"late"))
            .await
            .expect("write");
        assert_eq!(read_frame(&mut agent).await, None, "closed");
    }

    #[tokio::test]
    async fn a_refusal_is_the_agents_answer() {
        let (conv, mut agent) = fake(&connect()).await;
        let no = Reply::Error {
            code: AgentErrorCode::Refused,
            message: "connection refused".into(),
        };
        agent
            .write_all(&agent::json_frame(&no))
            .await
            .expect("answer");
        match conv.into_tunnel().await {
            Err(AgentError::Refused { code, .. }) => assert_eq!(code, AgentErrorCode::Refused),
            other => panic!("{other:?}"),
        }
    }
}
