//! The filesystem API: `SpriteHandle::fs()` → [`Filesystem`].
//!
//! Paths are [`std::path::Path`]s, so names that are not UTF-8 work as they
//! are (they travel percent-encoded in queries and as `{"base64": ...}` in
//! JSON bodies). Relative paths resolve inside the sprite against the
//! working directory ([`Filesystem::working_dir`], default the user's
//! home). Calls run as the sprite's `sprite` user unless
//! [`Filesystem::user`] or [`Filesystem::as_root`] says otherwise.
//!
//! Reads and writes stream: [`Filesystem::read_stream`] is a `Stream` of
//! chunks, [`Filesystem::read_to`] copies into any `AsyncWrite`, and
//! [`Filesystem::write_from`] uploads from any `AsyncRead`, so files of any
//! size move with constant memory.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::{Method, Response, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sprites_api::fs::{
    percent_encode, ChangeResponse, ChmodRequest, ChownRequest, CopyRequest, DeleteResponse,
    FsEntry, FsErrorBody, ListResponse, MkdirRequest, PathBytes, RenameRequest, RunAs,
    WriteResponse,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::sprites::SpriteHandle;

/// The response header that carries a read file's mode (sprited's
/// extension).
pub const MODE_HEADER: &str = "x-sprite-file-mode";

/// Upload chunks read from an `AsyncRead`.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// The filesystem of one sprite, as one user, from one working directory.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Filesystem {
    sprite: SpriteHandle,
    working_dir: Option<PathBytes>,
    user: Option<String>,
}

/// How [`Filesystem::write_with`] and [`Filesystem::write_from`] write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Permission bits. `None`: 0644 for a new file; a replaced file keeps
    /// its mode.
    pub mode: Option<u32>,
    /// Make every missing directory above the file (`true`), or only its
    /// own directory when that one's parent exists (`false`).
    pub mkdir_parents: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            mode: None,
            mkdir_parents: true,
        }
    }
}

impl WriteOptions {
    pub fn mode(mode: u32) -> Self {
        WriteOptions {
            mode: Some(mode),
            ..Default::default()
        }
    }
}

impl SpriteHandle {
    /// The sprite's filesystem, as its `sprite` user, relative paths from
    /// the user's home.
    pub fn fs(&self) -> Filesystem {
        Filesystem {
            sprite: self.clone(),
            working_dir: None,
            user: None,
        }
    }
}

fn bytes_of(path: &Path) -> PathBytes {
    PathBytes(path.as_os_str().as_bytes().to_vec())
}

impl Filesystem {
    /// Resolve relative paths against `dir` (itself relative to the home).
    pub fn working_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.working_dir = Some(bytes_of(dir.as_ref()));
        self
    }

    /// Act as `user` (a name or uid inside the sprite).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Act as root inside the sprite.
    pub fn as_root(self) -> Self {
        self.user("root")
    }

    fn run_as(&self) -> RunAs {
        RunAs {
            user: self.user.clone(),
            as_root: None,
        }
    }

    fn call_url(&self, call: &str) -> Url {
        self.sprite
            .client
            .url(&["sprites", &self.sprite.name, "fs", call])
    }

    /// The URL of a call whose parameters are in the query.
    fn url(&self, call: &str, params: &[(&str, &[u8])]) -> Url {
        let mut url = self.call_url(call);
        let mut pairs: Vec<(&str, &[u8])> = params.to_vec();
        if let Some(dir) = &self.working_dir {
            pairs.push(("workingDir", dir.as_bytes()));
        }
        if let Some(user) = &self.user {
            pairs.push(("user", user.as_bytes()));
        }
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        url.set_query((!query.is_empty()).then_some(query.as_str()));
        url
    }

    /// Send; a failure becomes [`Error::Api`] with the errno name
    /// (`ENOENT`, `EACCES`, ...) as its code.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Response, Error> {
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        if let Ok(fs) = serde_json::from_slice::<FsErrorBody>(&body) {
            return Err(Error::Api {
                status: status.as_u16(),
                code: fs.code,
                message: fs.error,
            });
        }
        Err(Error::from_response(status.as_u16(), &body))
    }

    async fn json<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, Error> {
        let body = self.send(req).await?.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::Protocol(format!(
                "unexpected answer from the server ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        call: &str,
        body: &B,
    ) -> Result<T, Error> {
        let url = self.call_url(call);
        let req = self.sprite.client.request(Method::POST, url).json(body);
        self.json(req).await
    }

    /// The whole file.
    pub async fn read(&self, path: impl AsRef<Path>) -> Result<Bytes, Error> {
        let mut stream = self.read_stream(path).await?;
        let mut out = BytesMut::with_capacity(stream.len().unwrap_or(0).min(64 << 20) as usize);
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }

    /// The file as a stream of chunks, as they arrive.
    pub async fn read_stream(&self, path: impl AsRef<Path>) -> Result<FileStream, Error> {
        let p = bytes_of(path.as_ref());
        let url = self.url("read", &[("path", p.as_bytes())]);
        let resp = self
            .send(self.sprite.client.request(Method::GET, url))
            .await?;
        let len = resp.content_length();
        let mode = resp
            .headers()
            .get(MODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|m| sprites_api::fs::parse_mode(m).ok());
        Ok(FileStream {
            len,
            mode,
            inner: Box::pin(resp.bytes_stream()),
        })
    }

    /// Copy the file into `out`; the bytes copied.
    pub async fn read_to<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        path: impl AsRef<Path>,
        out: &mut W,
    ) -> Result<u64, Error> {
        let mut stream = self.read_stream(path).await?;
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            out.write_all(&chunk)
                .await
                .map_err(|e| Error::InvalidInput(format!("writing the local copy: {e}")))?;
            total += chunk.len() as u64;
        }
        out.flush()
            .await
            .map_err(|e| Error::InvalidInput(format!("writing the local copy: {e}")))?;
        Ok(total)
    }

    /// Write `data` as the file (parents made, mode as described in
    /// [`WriteOptions`]).
    pub async fn write(
        &self,
        path: impl AsRef<Path>,
        data: impl Into<Bytes>,
    ) -> Result<WriteResponse, Error> {
        self.write_with(
            path,
            reqwest::Body::from(data.into()),
            &WriteOptions::default(),
        )
        .await
    }

    /// Upload everything `reader` yields as the file, streamed. The file
    /// changes only once the upload is complete.
    pub async fn write_from<R: AsyncRead + Send + 'static>(
        &self,
        path: impl AsRef<Path>,
        reader: R,
        opts: &WriteOptions,
    ) -> Result<WriteResponse, Error> {
        self.write_with(
            path,
            reqwest::Body::wrap_stream(reader_stream(reader)),
            opts,
        )
        .await
    }

    /// Write any request body as the file.
    pub async fn write_with(
        &self,
        path: impl AsRef<Path>,
        body: reqwest::Body,
        opts: &WriteOptions,
    ) -> Result<WriteResponse, Error> {
        let p = bytes_of(path.as_ref());
        let mode = opts.mode.map(sprites_api::fs::format_mode);
        let parents: &[u8] = if opts.mkdir_parents {
            b"true"
        } else {
            b"false"
        };
        let mut params: Vec<(&str, &[u8])> =
            vec![("path", p.as_bytes()), ("mkdirParents", parents)];
        if let Some(m) = &mode {
            params.push(("mode", m.as_bytes()));
        }
        let url = self.url("write", &params);
        let req = self
            .sprite
            .client
            .request(Method::PUT, url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        match self.json(req).await {
            // A server that refuses the upload (no such sprite, say) answers
            // before reading the body and closes; sending the rest can then
            // break the connection before its answer is read. Asked again
            // without a body, it says why.
            Err(Error::Network(broken)) => match self.sprite.get().await {
                Err(e @ Error::Api { .. }) => Err(e),
                _ => Err(Error::Network(broken)),
            },
            other => other,
        }
    }

    /// A directory's entries (a file lists itself).
    pub async fn list(&self, path: impl AsRef<Path>) -> Result<ListResponse, Error> {
        self.list_matching(path, None, false).await
    }

    /// Everything below a directory; names are relative to it.
    pub async fn list_recursive(&self, path: impl AsRef<Path>) -> Result<ListResponse, Error> {
        self.list_matching(path, None, true).await
    }

    /// Entries whose names match a glob (`*`, `?`, `[...]`).
    pub async fn list_matching(
        &self,
        path: impl AsRef<Path>,
        pattern: Option<&str>,
        recursive: bool,
    ) -> Result<ListResponse, Error> {
        let p = bytes_of(path.as_ref());
        let mut params: Vec<(&str, &[u8])> = vec![("path", p.as_bytes())];
        if recursive {
            params.push(("recursive", b"true"));
        }
        if let Some(pat) = pattern {
            params.push(("pattern", pat.as_bytes()));
        }
        let url = self.url("list", &params);
        self.json(self.sprite.client.request(Method::GET, url))
            .await
    }

    /// The path's own entry (symlinks followed).
    pub async fn stat(&self, path: impl AsRef<Path>) -> Result<FsEntry, Error> {
        let p = bytes_of(path.as_ref());
        let url = self.url("stat", &[("path", p.as_bytes())]);
        self.json(self.sprite.client.request(Method::GET, url))
            .await
    }

    /// Whether the path exists (a 404 is `false`, other errors are errors).
    pub async fn exists(&self, path: impl AsRef<Path>) -> Result<bool, Error> {
        match self.stat(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Remove a file, a symlink or an empty directory.
    pub async fn remove(&self, path: impl AsRef<Path>) -> Result<DeleteResponse, Error> {
        self.delete(path.as_ref(), false).await
    }

    /// Remove a whole tree.
    pub async fn remove_all(&self, path: impl AsRef<Path>) -> Result<DeleteResponse, Error> {
        self.delete(path.as_ref(), true).await
    }

    async fn delete(&self, path: &Path, recursive: bool) -> Result<DeleteResponse, Error> {
        let p = bytes_of(path);
        let r: &[u8] = if recursive { b"true" } else { b"false" };
        let url = self.url("delete", &[("path", p.as_bytes()), ("recursive", r)]);
        self.json(self.sprite.client.request(Method::DELETE, url))
            .await
    }

    /// Make a directory; `parents`: missing ones above it too, and an
    /// existing directory is fine (`mkdir -p`).
    pub async fn create_dir(
        &self,
        path: impl AsRef<Path>,
        mode: Option<u32>,
        parents: bool,
    ) -> Result<ChangeResponse, Error> {
        let body = MkdirRequest {
            path: bytes_of(path.as_ref()),
            working_dir: self.working_dir.clone(),
            mode: mode.map(|m| serde_json::Value::String(sprites_api::fs::format_mode(m))),
            parents: Some(parents),
            run_as: self.run_as(),
        };
        self.post("mkdir", &body).await
    }

    /// `mkdir -p`.
    pub async fn create_dir_all(&self, path: impl AsRef<Path>) -> Result<ChangeResponse, Error> {
        self.create_dir(path, None, true).await
    }

    /// Rename (move) `from` to the exact path `to`.
    pub async fn rename(
        &self,
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
    ) -> Result<ChangeResponse, Error> {
        let body = RenameRequest {
            source: bytes_of(from.as_ref()),
            dest: bytes_of(to.as_ref()),
            working_dir: self.working_dir.clone(),
            run_as: self.run_as(),
        };
        self.post("rename", &body).await
    }

    /// Copy a file or (recursively) a directory to the exact path `to`.
    pub async fn copy(
        &self,
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
    ) -> Result<ChangeResponse, Error> {
        let body = CopyRequest {
            source: bytes_of(from.as_ref()),
            dest: bytes_of(to.as_ref()),
            working_dir: self.working_dir.clone(),
            recursive: Some(true),
            preserve_attrs: None,
            run_as: self.run_as(),
        };
        self.post("copy", &body).await
    }

    /// Set permission bits (of a whole tree when `recursive`).
    pub async fn chmod(
        &self,
        path: impl AsRef<Path>,
        mode: u32,
        recursive: bool,
    ) -> Result<ChangeResponse, Error> {
        let body = ChmodRequest {
            path: bytes_of(path.as_ref()),
            working_dir: self.working_dir.clone(),
            mode: serde_json::Value::String(sprites_api::fs::format_mode(mode)),
            recursive: Some(recursive),
            run_as: self.run_as(),
        };
        self.post("chmod", &body).await
    }

    /// Change owner and/or group (names or ids); root's call.
    pub async fn chown(
        &self,
        path: impl AsRef<Path>,
        user: Option<&str>,
        group: Option<&str>,
        recursive: bool,
    ) -> Result<ChangeResponse, Error> {
        let body = ChownRequest {
            path: bytes_of(path.as_ref()),
            working_dir: self.working_dir.clone(),
            uid: user.map(|u| serde_json::Value::String(u.into())),
            gid: group.map(|g| serde_json::Value::String(g.into())),
            recursive: Some(recursive),
            run_as: self.run_as(),
        };
        self.post("chown", &body).await
    }
}

/// A file being read: a `Stream` of chunks.
pub struct FileStream {
    len: Option<u64>,
    mode: Option<u32>,
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
}

impl std::fmt::Debug for FileStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStream")
            .field("len", &self.len)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl FileStream {
    /// The file's length, when the server knows it (not for `/proc` files).
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the server said the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// The file's permission bits, when the server says (sprited does).
    pub fn mode(&self) -> Option<u32> {
        self.mode
    }
}

impl Stream for FileStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner
            .as_mut()
            .poll_next(cx)
            .map(|o| o.map(|r| r.map_err(Error::from)))
    }
}

/// An `AsyncRead` as a stream of chunks for a request body.
fn reader_stream<R: AsyncRead + Send + 'static>(
    reader: R,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(Box::pin(reader)), |st| async move {
        let mut reader = st?;
        let mut buf = BytesMut::zeroed(UPLOAD_CHUNK);
        let mut filled = 0;
        // Fill the chunk (small reads from pipes would make small frames).
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Some((Err(e), None)),
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some((Ok(buf.freeze()), Some(reader)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;

    #[test]
    fn queries_carry_raw_bytes_and_the_caller() {
        let c = Client::new("http://127.0.0.1:7070", "t").expect("client");
        let fs = c.sprite("demo").fs();
        let url = fs.url("read", &[("path", b"a b/\xff.txt")]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7070/v1/sprites/demo/fs/read?path=a%20b%2F%FF.txt"
        );
        let fs = fs.working_dir("/srv/app").as_root();
        let url = fs.url("list", &[("path", b"."), ("recursive", b"true")]);
        assert_eq!(
            url.query(),
            Some("path=.&recursive=true&workingDir=%2Fsrv%2Fapp&user=root")
        );
    }

    #[tokio::test]
    async fn readers_become_full_chunks() {
        let data = vec![5u8; UPLOAD_CHUNK * 2 + 10];
        let chunks: Vec<Bytes> = reader_stream(std::io::Cursor::new(data))
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [UPLOAD_CHUNK, UPLOAD_CHUNK, 10]);
    }
}
