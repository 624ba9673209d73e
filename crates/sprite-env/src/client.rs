//! HTTP/1.1 to the sprite's API over its Unix socket: one connection per
//! request, virtual host `sprite`, no token (the socket is the sprite's own).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
pub use hyper::Method;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::error::{describe_io, Error};
use crate::ndjson::{LineError, Lines};

/// The `Host` the daemon routes the in-sprite API by.
pub const VIRTUAL_HOST: &str = "sprite";

const AGENT: &str = concat!("sprite-env/", env!("CARGO_PKG_VERSION"));

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET path`, answer parsed as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let answer = self
            .send(Method::GET, path, None, "application/json")
            .await?;
        let body = self.read_all(answer).await?;
        serde_json::from_slice(&body).map_err(|e| Error::BadAnswer(format!("GET {path}: {e}")))
    }

    /// A request whose answer has no content that matters (`204`).
    pub async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), Error> {
        let json = body.map(encode).transpose()?;
        let answer = self.send(method, path, json, "application/json").await?;
        self.read_all(answer).await?;
        Ok(())
    }

    /// `POST path` with a JSON body, answered by NDJSON: `each` sees every
    /// line's value as soon as it arrives.
    pub async fn post_ndjson<B, T>(
        &self,
        path: &str,
        body: &B,
        each: impl FnMut(T) -> Result<(), Error>,
    ) -> Result<(), Error>
    where
        B: Serialize,
        T: DeserializeOwned,
    {
        self.ndjson(Method::POST, path, Some(body), each).await
    }

    /// `method path` with an optional JSON body, answered by NDJSON: `each`
    /// sees every line's value as soon as it arrives.
    pub async fn ndjson<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        mut each: impl FnMut(T) -> Result<(), Error>,
    ) -> Result<(), Error>
    where
        B: Serialize,
        T: DeserializeOwned,
    {
        let json = body.map(encode).transpose()?;
        let what = format!("{method} {path}");
        let answer = self
            .send(method, path, json, "application/x-ndjson")
            .await?;
        let mut handle = |line: &[u8]| -> Result<(), Error> {
            let value = serde_json::from_slice(line).map_err(|e| {
                Error::BadAnswer(format!(
                    "{what}: {e} in line {:?}",
                    String::from_utf8_lossy(line)
                ))
            })?;
            each(value)
        };
        let flatten = |e: LineError<Error>| match e {
            LineError::Handler(e) => e,
            LineError::TooLong => Error::BadAnswer(format!("{what}: a line without end")),
        };
        let mut lines = Lines::default();
        let mut body = answer.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.transport(e))?;
            if let Ok(chunk) = frame.into_data() {
                lines.push(&chunk, &mut handle).map_err(flatten)?;
            }
        }
        lines.finish(&mut handle).map_err(flatten)
    }

    /// One request on a fresh connection; an error status becomes
    /// [`Error::Api`] with the body's message.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        accept: &str,
    ) -> Result<Response<Incoming>, Error> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| Error::Unreachable {
                path: self.socket.clone(),
                reason: describe_io(&e),
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.transport(e))?;
        // Ends by itself once the answer is read and `sender` dropped; its
        // errors surface through the request and body futures too.
        tokio::spawn(connection);

        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, VIRTUAL_HOST)
            .header(USER_AGENT, AGENT)
            .header(ACCEPT, accept);
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::BadAnswer(format!("building the request for {path}: {e}")))?;
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| self.transport(e))?;
        if answer.status().is_success() {
            return Ok(answer);
        }
        let status = answer.status().as_u16();
        let body = self.read_all(answer).await?;
        Err(Error::from_answer(status, &body))
    }

    async fn read_all(&self, answer: Response<Incoming>) -> Result<Bytes, Error> {
        Ok(answer
            .into_body()
            .collect()
            .await
            .map_err(|e| self.transport(e))?
            .to_bytes())
    }

    fn transport(&self, e: hyper::Error) -> Error {
        Error::Transport {
            path: self.socket.clone(),
            reason: e.to_string(),
        }
    }
}

fn encode<B: Serialize>(body: &B) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(body).map_err(|e| Error::BadAnswer(format!("encoding the request: {e}")))
}
