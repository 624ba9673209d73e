//! One filesystem call (`sprites_api::fs`): the agent answers with
//! [`FsReply`] JSON frames; a file's bytes come as stdout frames (read) or
//! go as stdin frames ended by an EOF frame (write).

use bytes::Bytes;
use sprites_api::agent;
use sprites_api::fs::FsReply;

use super::{AgentError, Conversation, Reader, Writer};

/// What the agent sends during a filesystem call.
#[derive(Debug)]
pub enum FsEvent {
    /// File bytes (a read).
    Data(Bytes),
    Reply(FsReply),
}

/// A filesystem call in progress. Dropping it (its upload half, once
/// split) tells the agent the client left.
pub struct FsSession {
    replies: FsReplies,
    upload: FsUpload,
}

impl From<Conversation> for FsSession {
    fn from(conv: Conversation) -> Self {
        FsSession {
            replies: FsReplies {
                reader: conv.reader,
            },
            upload: FsUpload {
                writer: conv.writer,
            },
        }
    }
}

impl FsSession {
    /// The first reply: what the call's answer starts with (or its error).
    pub async fn answer(&mut self) -> Result<FsReply, AgentError> {
        match self.replies.next().await? {
            Some(FsEvent::Reply(reply)) => Ok(reply),
            Some(FsEvent::Data(_)) => Err(AgentError::Protocol("data before the answer".into())),
            None => Err(AgentError::Protocol(
                "the agent closed the connection".into(),
            )),
        }
    }

    /// The next reply or bytes, `None` when the agent closed the connection.
    pub async fn next(&mut self) -> Result<Option<FsEvent>, AgentError> {
        self.replies.next().await
    }

    /// The two directions, to be pumped on their own (an upload).
    pub fn split(self) -> (FsReplies, FsUpload) {
        (self.replies, self.upload)
    }
}

/// What the agent sends. Holds the activity that keeps the sprite awake.
pub struct FsReplies {
    reader: Reader,
}

impl FsReplies {
    /// The next reply or bytes, read when asked (one frame at a time).
    pub async fn next(&mut self) -> Result<Option<FsEvent>, AgentError> {
        match self.reader.next_raw().await? {
            None => Ok(None),
            Some((agent::STDOUT, data)) => Ok(Some(FsEvent::Data(data.into()))),
            Some((agent::JSON, json)) => serde_json::from_slice(&json)
                .map(|r| Some(FsEvent::Reply(r)))
                .map_err(|e| AgentError::Protocol(format!("bad filesystem reply: {e}"))),
            Some((kind, _)) => Err(AgentError::Protocol(format!(
                "unexpected frame kind {kind:#x} in a filesystem call"
            ))),
        }
    }

    /// How an upload ends: the call's `done` or `error`, whatever comes
    /// before it skipped.
    pub async fn outcome(&mut self) -> Result<FsReply, AgentError> {
        loop {
            match self.next().await? {
                Some(FsEvent::Reply(reply @ (FsReply::Done { .. } | FsReply::Error { .. }))) => {
                    return Ok(reply)
                }
                Some(_) => continue,
                None => {
                    return Err(AgentError::Protocol(
                        "the agent closed the connection during the upload".into(),
                    ))
                }
            }
        }
    }
}

/// The file's bytes to the agent (a write).
pub struct FsUpload {
    writer: Writer,
}

impl FsUpload {
    /// More of the file, in frames of at most `MAX_FRAME`.
    pub async fn data(&mut self, data: &[u8]) -> Result<(), AgentError> {
        self.writer.send_stdin(data).await
    }

    /// The end of the file.
    pub async fn end(&mut self) -> Result<(), AgentError> {
        self.writer.send_eof().await
    }
}

#[cfg(test)]
mod tests {
    use sprites_api::agent::Request;
    use sprites_api::fs::{FsCall, FsRequest, MkdirParents, PathBytes};
    use tokio::io::AsyncWriteExt;

    use super::super::tests::{fake, read_frame};
    use super::*;

    fn request(call: FsCall) -> Request {
        Request::Fs(FsRequest {
            user: None,
            working_dir: None,
            call,
        })
    }

    fn done() -> FsReply {
        FsReply::Done {
            path: PathBytes::from("/f"),
            dest: None,
            size: 3,
            mode: 0o644,
            count: 0,
        }
    }

    #[tokio::test]
    async fn a_read_is_replies_and_bytes() {
        let call = FsCall::Read {
            path: PathBytes::from("/f"),
            range: None,
        };
        let (conv, mut agent) = fake(&request(call)).await;
        let opened = FsReply::Opened {
            path: PathBytes::from("/f"),
            size: Some(3),
            mode: 0o644,
        };
        let mut out = agent::json_frame(&opened);
        out.extend(agent::frame(agent::STDOUT, b"abc"));
        out.extend(agent::json_frame(&done()));
        agent.write_all(&out).await.expect("write");
        drop(agent);
        let mut session = FsSession::from(conv);
        assert_eq!(session.answer().await.expect("answer"), opened);
        assert!(matches!(
            session.next().await.expect("data"),
            Some(FsEvent::Data(b)) if b.as_ref() == b"abc"
        ));
        assert!(matches!(
            session.next().await.expect("done"),
            Some(FsEvent::Reply(FsReply::Done { .. }))
        ));
        assert!(session.next().await.expect("end").is_none());
    }

    #[tokio::test]
    async fn an_upload_sends_stdin_frames_and_ends_with_done() {
        let call = FsCall::Write {
            path: PathBytes::from("/f"),
            mode: None,
            mkdir_parents: MkdirParents::All,
        };
        let (conv, mut agent) = fake(&request(call)).await;
        let (mut replies, mut upload) = FsSession::from(conv).split();
        upload.data(b"abc").await.expect("data");
        upload.end().await.expect("end");
        assert_eq!(
            read_frame(&mut agent).await,
            Some((agent::STDIN, b"abc".to_vec()))
        );
        assert_eq!(
            read_frame(&mut agent).await,
            Some((agent::STDIN_EOF, vec![]))
        );
        agent
            .write_all(&agent::json_frame(&done()))
            .await
            .expect("write");
        assert_eq!(replies.outcome().await.expect("outcome"), done());
        drop(agent);
        assert!(matches!(
            replies.outcome().await,
            Err(AgentError::Protocol(_))
        ));
    }
}
