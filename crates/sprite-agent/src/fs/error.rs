//! A failed filesystem call, as the API reports it: the errno name, a
//! sentence, and the path it concerns.

use std::io;

use nix::errno::Errno;
use sprites_api::fs::{FsReply, PathBytes};

#[derive(Debug)]
pub struct FsError {
    pub code: String,
    pub message: String,
    pub path: Vec<u8>,
}

impl FsError {
    /// `op path: reason`, with the errno of `err` as the code.
    pub fn io(op: &str, path: &[u8], err: &io::Error) -> FsError {
        let errno = err.raw_os_error().map(Errno::from_raw);
        let code = match errno {
            Some(e) if e != Errno::UnknownErrno => format!("{e:?}"),
            _ => "EIO".to_string(),
        };
        let reason = match errno {
            Some(e) if e != Errno::UnknownErrno => e.desc().to_lowercase(),
            _ => err.to_string(),
        };
        FsError {
            code,
            message: format!("{op} {}: {reason}", String::from_utf8_lossy(path)),
            path: path.to_vec(),
        }
    }

    pub fn errno(op: &str, path: &[u8], e: Errno) -> FsError {
        FsError::io(op, path, &io::Error::from(e))
    }

    /// A request the worker refuses (`EINVAL`).
    pub fn invalid(path: &[u8], message: impl Into<String>) -> FsError {
        FsError {
            code: "EINVAL".into(),
            message: message.into(),
            path: path.to_vec(),
        }
    }

    pub fn reply(self) -> FsReply {
        FsReply::Error {
            code: self.code,
            message: self.message,
            path: PathBytes(self.path),
        }
    }
}

/// Why a call ended without its normal answer.
#[derive(Debug)]
pub enum Failure {
    /// Tell the daemon (an `error` frame).
    Fs(FsError),
    /// The daemon connection broke: nobody is left to tell.
    Gone,
}

impl From<FsError> for Failure {
    fn from(e: FsError) -> Self {
        Failure::Fs(e)
    }
}

pub type CallResult<T = ()> = Result<T, Failure>;

/// Map a socket error to [`Failure::Gone`].
pub fn gone(_: io::Error) -> Failure {
    Failure::Gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_and_sentences() {
        let e = FsError::io("open", b"/x y", &io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(e.code, "ENOENT");
        assert_eq!(e.message, "open /x y: no such file or directory");
        let e = FsError::errno("rmdir", b"/d", Errno::ENOTEMPTY);
        assert_eq!(e.code, "ENOTEMPTY");
        assert!(e.message.contains("not empty"), "{}", e.message);
        let e = FsError::io("read", b"/f", &io::Error::other("odd"));
        assert_eq!(e.code, "EIO");
    }
}
