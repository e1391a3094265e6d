//! The client end: one HTTP/1.1 request per call over the Unix socket, what `drover status`,
//! `start`, `stop`, `restart`, `signal`, `events` and `reload` send.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long connecting may take (a live drover accepts at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read whole (a status of thousands of services fits many times).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket (or it cannot be reached): drover is not running there.
    #[error("drover is not running at {} ({source})", path.display())]
    NotRunning {
        /// The socket tried.
        path: PathBuf,
        /// Why it could not be reached.
        #[source]
        source: std::io::Error,
    },
    /// The socket is there but this user may not use it.
    #[error("not allowed to use the control socket at {} ({source}): root, drover's user and settings.control.group may", path.display())]
    Forbidden {
        /// The socket.
        path: PathBuf,
        /// What connect said.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke, or the answer was not HTTP.
    #[error("the control socket at {} answered badly: {why}", path.display())]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// A client of the control socket at one path.
#[derive(Clone, Debug)]
pub struct Client {
    path: PathBuf,
}

/// One answer: its status and its body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, as text.
    pub body: String,
}

impl Client {
    /// A client of the socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Client {
        Client { path: path.into() }
    }

    /// The socket it talks to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn send(
        &self,
        method: Method,
        target: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let not_running = |source| ClientError::NotRunning {
            path: self.path.clone(),
            source,
        };
        let protocol = |why: String| ClientError::Protocol {
            path: self.path.clone(),
            why,
        };
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(&self.path))
                .await
                .map_err(|_| not_running(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::PermissionDenied => ClientError::Forbidden {
                        path: self.path.clone(),
                        source,
                    },
                    _ => not_running(source),
                })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| protocol(err.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(target)
            .header(hyper::header::HOST, "drover")
            .body(Empty::<Bytes>::new())
            .map_err(|err| protocol(err.to_string()))?;
        sender
            .send_request(request)
            .await
            .map_err(|err| protocol(err.to_string()))
    }

    /// Sends `method target` (`GET /v1/status`) and reads the whole answer, within `limit`
    /// (a drover that takes the request and never answers must not hold the client forever).
    pub async fn request(
        &self,
        method: Method,
        target: &str,
        limit: Duration,
    ) -> Result<Answer, ClientError> {
        tokio::time::timeout(limit, self.request_unbounded(method, target))
            .await
            .map_err(|_| ClientError::Protocol {
                path: self.path.clone(),
                why: format!("no answer within {}", humantime::format_duration(limit)),
            })?
    }

    async fn request_unbounded(&self, method: Method, target: &str) -> Result<Answer, ClientError> {
        let response = self.send(method, target).await?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|err| ClientError::Protocol {
                path: self.path.clone(),
                why: err.to_string(),
            })?
            .to_bytes();
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Sends `GET target` and hands each line of the answer to `line` as it comes, until the
    /// answer ends (or `line` returns false); the status comes back.
    pub async fn stream(
        &self,
        target: &str,
        mut line: impl FnMut(&str) -> bool,
    ) -> Result<StatusCode, ClientError> {
        let response = self.send(Method::GET, target).await?;
        let status = response.status();
        let mut body = response.into_body();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| ClientError::Protocol {
                path: self.path.clone(),
                why: err.to_string(),
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let rest = pending.split_off(end + 1);
                let text = String::from_utf8_lossy(&pending[..end]).into_owned();
                pending = rest;
                if !line(&text) {
                    return Ok(status);
                }
            }
        }
        if !pending.is_empty() {
            line(&String::from_utf8_lossy(&pending));
        }
        Ok(status)
    }
}
