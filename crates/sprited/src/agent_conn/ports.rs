//! A `watch_ports` conversation: the listening TCP ports, again each time
//! the set changes, until the daemon hangs up.

use sprites_api::agent::Reply;
use sprites_api::port::ListeningPort;

use super::{Conversation, Frame};

/// The sprite's listening ports as they change.
pub struct PortWatch {
    /// The writer stays open: closing it ends the watch.
    conv: Conversation,
}

impl From<Conversation> for PortWatch {
    fn from(conv: Conversation) -> Self {
        PortWatch { conv }
    }
}

impl PortWatch {
    /// Every port listened on now, read when the set changes; `None` when
    /// the watch ended (the agent went, or said something else).
    pub async fn next(&mut self) -> Option<Vec<ListeningPort>> {
        match self.conv.reader.next().await {
            Ok(Some(Frame::Reply(Reply::Ports { ports }))) => Some(ports),
            _ => None,
        }
    }
}
