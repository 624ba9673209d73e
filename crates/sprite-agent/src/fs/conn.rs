//! The worker's end of the daemon connection: blocking frame I/O on the
//! socket it got as stdin (see `sprites_api::agent` for the format).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::os::unix::net::UnixStream;

use sprites_api::agent::{self, HEADER_LEN, MAX_FRAME, STDOUT};
use sprites_api::fs::FsReply;

/// How large file chunks are: the largest frame.
pub const CHUNK: usize = MAX_FRAME;

pub struct Conn {
    sock: UnixStream,
}

/// A frame from the daemon.
pub enum Incoming {
    /// `STDIN` bytes, in the buffer passed to [`Conn::next`].
    Data(usize),
    Eof,
    /// Any other frame (ignored by the calls).
    Other,
}

impl Conn {
    /// The connection the agent handed over as fd 0.
    pub fn from_stdin() -> io::Result<Conn> {
        // SAFETY: the agent starts the worker with the daemon connection as
        // stdin and nothing else in the worker uses fd 0, so this is its
        // only owner. fstat proves it open and a socket.
        let st = nix::sys::stat::fstat(0).map_err(io::Error::from)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(io::Error::other("stdin is not the daemon's socket"));
        }
        // SAFETY: see above: fd 0 is open, a socket, and owned by nobody else.
        let sock = unsafe { UnixStream::from_raw_fd(0) };
        Ok(Conn { sock })
    }

    pub fn reply(&mut self, r: &FsReply) -> io::Result<()> {
        self.sock.write_all(&agent::json_frame(r))
    }

    /// A buffer for [`Conn::send_data`]: room for the header, then a chunk.
    pub fn data_buffer() -> Vec<u8> {
        vec![0u8; HEADER_LEN + CHUNK]
    }

    /// Send `buf[HEADER_LEN..HEADER_LEN + len]` as one `STDOUT` frame; the
    /// header is written in front of the data, so it costs one write.
    pub fn send_data(&mut self, buf: &mut [u8], len: usize) -> io::Result<()> {
        let n = u32::try_from(len)
            .ok()
            .filter(|&n| n as usize <= CHUNK)
            .ok_or_else(|| io::Error::other("chunk larger than a frame"))?;
        buf[0] = STDOUT;
        buf[1..HEADER_LEN].copy_from_slice(&n.to_be_bytes());
        self.sock.write_all(&buf[..HEADER_LEN + len])
    }

    /// The next frame; `STDIN` payloads land in `buf` (at least
    /// [`CHUNK`] long). `Err` when the daemon went away or broke framing.
    pub fn next(&mut self, buf: &mut [u8]) -> io::Result<Incoming> {
        let mut h = [0u8; HEADER_LEN];
        self.sock.read_exact(&mut h)?;
        let (kind, len) = agent::parse_header(h).map_err(io::Error::other)?;
        match kind {
            agent::STDIN => {
                let dst = buf
                    .get_mut(..len)
                    .ok_or_else(|| io::Error::other("buffer smaller than a frame"))?;
                self.sock.read_exact(dst)?;
                Ok(Incoming::Data(len))
            }
            agent::STDIN_EOF => {
                self.skip(len)?;
                Ok(Incoming::Eof)
            }
            _ => {
                self.skip(len)?;
                Ok(Incoming::Other)
            }
        }
    }

    /// Whether the daemon hung up, asked when the socket turned readable
    /// during a call where the daemon sends nothing (a watch); whatever it
    /// did send is dropped.
    pub fn hung_up(&mut self) -> bool {
        let mut buf = [0u8; 512];
        !matches!(self.sock.read(&mut buf), Ok(n) if n > 0)
    }

    fn skip(&mut self, len: usize) -> io::Result<()> {
        io::copy(&mut (&mut self.sock).take(len as u64), &mut io::sink()).map(|_| ())
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Sends items in `FsReply` frames of bounded size.
pub struct Batcher<T> {
    items: Vec<T>,
    bytes: usize,
    wrap: fn(Vec<T>) -> FsReply,
    pub total: u64,
}

/// Flush a batch once its JSON is about this large (frames stay ≤ 1 MiB).
const BATCH_BYTES: usize = 256 * 1024;

impl<T> Batcher<T> {
    pub fn new(wrap: fn(Vec<T>) -> FsReply) -> Self {
        Batcher {
            items: Vec::new(),
            bytes: 0,
            wrap,
            total: 0,
        }
    }

    /// Queue an item whose JSON is about `approx_len` bytes.
    pub fn push(&mut self, conn: &mut Conn, item: T, approx_len: usize) -> io::Result<()> {
        self.items.push(item);
        self.bytes += approx_len;
        self.total += 1;
        if self.bytes >= BATCH_BYTES {
            self.flush(conn)?;
        }
        Ok(())
    }

    pub fn flush(&mut self, conn: &mut Conn) -> io::Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(&mut self.items);
        self.bytes = 0;
        conn.reply(&(self.wrap)(items))
    }
}
