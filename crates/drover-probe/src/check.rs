//! One check of a probe: an HTTP GET, a TCP connect, or a command run through the supervisor
//! (which owns every fork and every `waitpid`, so exec checks go through [`ExecCheck`]).

use crate::Error;
use drover_spec::model::ProbeAction;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an HTTP response that is read (status line, headers and body).
pub const HTTP_READ_LIMIT: usize = 64 * 1024;

/// How a check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckOutcome {
    /// It passed.
    Success,
    /// It failed.
    Failure,
    /// It took longer than the probe's `timeout` (a failure too).
    Timeout,
}

impl CheckOutcome {
    /// Every outcome, for metrics created up front.
    pub const ALL: [CheckOutcome; 3] = [
        CheckOutcome::Success,
        CheckOutcome::Failure,
        CheckOutcome::Timeout,
    ];

    /// `success`, `failure` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckOutcome::Success => "success",
            CheckOutcome::Failure => "failure",
            CheckOutcome::Timeout => "timeout",
        }
    }
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// How it ended.
    pub outcome: CheckOutcome,
    /// How long it took.
    pub duration: Duration,
    /// What happened, for people: `HTTP 503`, `connection refused`, `exit code 1`.
    pub message: String,
}

impl CheckResult {
    /// A result that took `duration`.
    pub fn new(outcome: CheckOutcome, duration: Duration, message: impl Into<String>) -> Self {
        CheckResult {
            outcome,
            duration,
            message: message.into(),
        }
    }
}

/// A boxed future of a check, for [`ExecCheck`].
pub type CheckFuture = Pin<Box<dyn Future<Output = CheckResult> + Send>>;

/// Runs a probe's command, for exec probes. The supervisor implements it: it owns spawning and
/// reaping, and knows the service's environment, working directory and user. It must kill the
/// command's whole process group when `timeout` runs out and report [`CheckOutcome::Timeout`].
pub trait ExecCheck: Send + Sync {
    /// Runs the command once.
    fn run(&self, timeout: Duration) -> CheckFuture;
}

/// What a probe checks with.
#[derive(Clone)]
pub enum Checker {
    /// Run a command.
    Exec(Arc<dyn ExecCheck>),
    /// HTTP GET.
    Http {
        /// Host to connect to.
        host: String,
        /// Port.
        port: u16,
        /// The request as sent, built once.
        request: Arc<[u8]>,
    },
    /// TCP connect.
    Tcp {
        /// Host to connect to.
        host: String,
        /// Port.
        port: u16,
    },
}

impl Checker {
    /// The checker for `action`; `exec` builds the runner of an exec probe. `None` for
    /// `notify`, whose results are the service's own messages.
    pub fn new(
        action: &ProbeAction,
        exec: impl FnOnce(&drover_spec::model::Command) -> Arc<dyn ExecCheck>,
    ) -> Option<Checker> {
        match action {
            ProbeAction::Exec { command } => Some(Checker::Exec(exec(command))),
            ProbeAction::Http {
                host,
                port,
                path,
                headers,
            } => Some(Checker::Http {
                host: host.clone(),
                port: *port,
                request: http_request(host, *port, path, headers).into(),
            }),
            ProbeAction::Tcp { host, port } => Some(Checker::Tcp {
                host: host.clone(),
                port: *port,
            }),
            ProbeAction::Notify { .. } => None,
        }
    }

    /// Runs one check, bounded by `timeout`.
    pub async fn check(&self, timeout: Duration) -> CheckResult {
        let started = Instant::now();
        if let Checker::Exec(runner) = self {
            return runner.run(timeout).await;
        }
        let attempt = async {
            match self {
                Checker::Http {
                    host,
                    port,
                    request,
                } => http_get(host, *port, request).await,
                Checker::Tcp { host, port } => connect(host, *port)
                    .await
                    .map(|_| (CheckOutcome::Success, format!("connected to {host}:{port}")))
                    .map_err(|source| Error::Connect {
                        host: host.clone(),
                        port: *port,
                        source,
                    }),
                // Exec checks never come here (the match above takes them).
                Checker::Exec(_) => Ok((CheckOutcome::Failure, "not a network check".into())),
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok((outcome, message))) => CheckResult::new(outcome, started.elapsed(), message),
            Ok(Err(err)) => {
                CheckResult::new(CheckOutcome::Failure, started.elapsed(), err.to_string())
            }
            Err(_) => CheckResult::new(
                CheckOutcome::Timeout,
                started.elapsed(),
                format!("no answer within {}", humantime_ms(timeout)),
            ),
        }
    }
}

/// Connects to `host:port`. `localhost` is the loopback address without asking the resolver
/// (RFC 6761 6.3): a static binary in an image without `/etc/hosts` (or whose NSS cannot be
/// loaded) still reaches its own services. Other names go to the system resolver.
async fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.eq_ignore_ascii_case("localhost") {
        let v4 = (std::net::Ipv4Addr::LOCALHOST, port);
        return match TcpStream::connect(v4).await {
            Ok(stream) => Ok(stream),
            Err(v4_err) => TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port))
                .await
                .map_err(|v6_err| {
                    std::io::Error::new(
                        v4_err.kind(),
                        format!("127.0.0.1: {v4_err}; [::1]: {v6_err}"),
                    )
                }),
        };
    }
    TcpStream::connect((host, port)).await
}

fn humantime_ms(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// `GET path HTTP/1.1` with `Connection: close`: the server ends the response by closing.
fn http_request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> Vec<u8> {
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: drover-probe\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        // The spec crate refuses names and values with CR or LF; stay safe regardless.
        if !name.contains(['\r', '\n']) && !value.contains(['\r', '\n']) {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// Sends `request` and reads the status: 200–399 pass. Redirects are not followed. At most
/// [`HTTP_READ_LIMIT`] bytes are read, then the connection is dropped.
async fn http_get(host: &str, port: u16, request: &[u8]) -> Result<(CheckOutcome, String), Error> {
    let at = || (host.to_owned(), port);
    let mut stream = connect(host, port).await.map_err(|source| {
        let (host, port) = at();
        Error::Connect { host, port, source }
    })?;
    stream.write_all(request).await.map_err(|source| {
        let (host, port) = at();
        Error::Send { host, port, source }
    })?;
    let mut response = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    // Read the headers, then the body up to its Content-Length (or to the end, as
    // `Connection: close` asks), never beyond the limit: the server is not cut off mid-write.
    let mut body_end = None;
    while response.len() < HTTP_READ_LIMIT && body_end.is_none_or(|end| response.len() < end) {
        let n = stream.read(&mut chunk).await.map_err(|source| {
            let (host, port) = at();
            Error::Read { host, port, source }
        })?;
        if n == 0 {
            break;
        }
        let room = HTTP_READ_LIMIT.saturating_sub(response.len());
        response.extend_from_slice(&chunk[..n.min(room)]);
        if body_end.is_none() {
            body_end = headers_end(&response).map(|end| {
                end.saturating_add(content_length(&response[..end]).unwrap_or(usize::MAX))
            });
        }
    }
    let status = parse_status(&response).ok_or_else(|| {
        let (host, port) = at();
        Error::NotHttp { host, port }
    })?;
    let outcome = if (200..400).contains(&status) {
        CheckOutcome::Success
    } else {
        CheckOutcome::Failure
    };
    Ok((outcome, format!("HTTP {status}")))
}

/// Where the headers end (after the blank line), once they have.
fn headers_end(response: &[u8]) -> Option<usize> {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The `Content-Length` among `headers`.
fn content_length(headers: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(headers).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// The status code of `HTTP/1.x NNN ...`.
fn parse_status(response: &[u8]) -> Option<u16> {
    let line_end = response.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&response[..line_end]).ok()?;
    let mut parts = line.split_ascii_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 302 Found\r\nLocation: /\r\n"),
            Some(302)
        );
        assert_eq!(parse_status(b"HTTP/1.1 503\r\n"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 20"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2000 x\n"), None);
    }

    #[test]
    fn the_request_carries_host_and_headers() {
        let request = http_request(
            "127.0.0.1",
            8080,
            "/healthz?x=1",
            &[
                ("X-Probe".into(), "1".into()),
                ("Bad".into(), "a\r\nb".into()),
            ],
        );
        let text = String::from_utf8(request).expect("utf8");
        assert!(text.starts_with("GET /healthz?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("X-Probe: 1\r\n"));
        assert!(!text.contains("Bad"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
