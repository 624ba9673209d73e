//! A bounded ring of recent output chunks, replayed to clients that attach.

use std::collections::VecDeque;
use std::sync::Arc;

/// Default capacity of a session's scrollback.
pub const DEFAULT_CAPACITY: usize = 256 * 1024;

/// One chunk of output: the stream it came from (`STDOUT`/`STDERR`) and its
/// bytes, shared with the clients it is sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub stream: u8,
    pub data: Arc<[u8]>,
}

/// Keeps the newest `capacity` bytes, oldest dropped first; a chunk that is
/// only partly too old is trimmed at its front.
#[derive(Debug)]
pub struct Scrollback {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    capacity: usize,
}

impl Scrollback {
    pub fn new(capacity: usize) -> Scrollback {
        Scrollback {
            chunks: VecDeque::new(),
            bytes: 0,
            capacity,
        }
    }

    /// Append a chunk, evicting the oldest bytes beyond the capacity.
    pub fn push(&mut self, chunk: Chunk) {
        if chunk.data.is_empty() {
            return;
        }
        self.bytes += chunk.data.len();
        self.chunks.push_back(chunk);
        while self.bytes > self.capacity {
            let Some(front) = self.chunks.pop_front() else {
                self.bytes = 0;
                break;
            };
            let excess = self.bytes - self.capacity;
            if front.data.len() > excess {
                let kept: Arc<[u8]> = Arc::from(&front.data[excess..]);
                self.bytes -= excess;
                self.chunks.push_front(Chunk {
                    stream: front.stream,
                    data: kept,
                });
            } else {
                self.bytes -= front.data.len();
            }
        }
    }

    /// The retained chunks, oldest first.
    pub fn snapshot(&self) -> Vec<Chunk> {
        self.chunks.iter().cloned().collect()
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
    }

    /// Bytes retained.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(s: &str) -> Chunk {
        Chunk {
            stream: 1,
            data: Arc::from(s.as_bytes()),
        }
    }

    fn text(sb: &Scrollback) -> String {
        sb.snapshot()
            .iter()
            .map(|c| String::from_utf8_lossy(&c.data).into_owned())
            .collect()
    }

    #[test]
    fn keeps_everything_under_capacity() {
        let mut sb = Scrollback::new(16);
        sb.push(chunk("hello "));
        sb.push(chunk("world"));
        assert_eq!(text(&sb), "hello world");
        assert_eq!(sb.len(), 11);
    }

    #[test]
    fn evicts_oldest_and_trims_partially() {
        let mut sb = Scrollback::new(8);
        sb.push(chunk("abcdef"));
        sb.push(chunk("ghij"));
        assert_eq!(text(&sb), "cdefghij");
        assert_eq!(sb.len(), 8);
        sb.push(chunk("klmnopqrstuv"));
        assert_eq!(text(&sb), "opqrstuv");
        assert_eq!(sb.snapshot().len(), 1);
    }

    #[test]
    fn keeps_stream_tags_and_clears() {
        let mut sb = Scrollback::new(100);
        sb.push(chunk("out"));
        sb.push(Chunk {
            stream: 2,
            data: Arc::from(&b"err"[..]),
        });
        sb.push(chunk(""));
        let s = sb.snapshot();
        assert_eq!(s.iter().map(|c| c.stream).collect::<Vec<_>>(), vec![1, 2]);
        sb.clear();
        assert_eq!(sb.len(), 0);
        assert!(sb.snapshot().is_empty());
    }
}
